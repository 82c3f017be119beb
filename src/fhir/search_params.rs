//! The search parameter registry, loaded from `fhir-profiles/r4b-search-parameters.json`
//! (the official R4B SearchParameter definitions, extracted by `scripts/extract-profiles.py`).
//!
//! Parameters are data: each carries its type and parsed FHIRPath expression, and the index
//! writer and query compiler work from them alone. Parameters whose expression uses FHIRPath
//! beyond the supported subset are listed by [`Registry::uncovered`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use super::fhirpath::{self, Expr};

static RAW: &str = include_str!("../../fhir-profiles/r4b-search-parameters.json");
static COMPARTMENTS_RAW: &str = include_str!("../../fhir-profiles/r4b-compartments.json");

#[derive(Deserialize)]
struct CompartmentFile {
    compartments: HashMap<String, HashMap<String, Vec<String>>>,
}

/// Compartment → resource type → the parameters that place a resource in the compartment.
static COMPARTMENTS: LazyLock<HashMap<String, HashMap<String, Vec<String>>>> =
    LazyLock::new(|| {
        serde_json::from_str::<CompartmentFile>(COMPARTMENTS_RAW)
            .map(|f| f.compartments)
            .unwrap_or_default()
    });

/// The parameters of `resource_type` that place it in `compartment` (`Patient`, `Encounter`,
/// `Practitioner`, `RelatedPerson`, `Device`); `None` when it cannot be in that compartment.
pub fn compartment_params(compartment: &str, resource_type: &str) -> Option<&'static [String]> {
    COMPARTMENTS
        .get(compartment)?
        .get(resource_type)
        .map(Vec::as_slice)
}

/// Whether resources of type `t` may hold an individual's data, decided from the definitions:
/// Patient; every type of the Patient compartment; every type with a reference search
/// parameter made to name a patient (its only target Patient: `Task.patient`,
/// `Device.patient`, `Contract.patient`; not references that may also name one, such as
/// `Schedule.actor` or `Measure.depends-on`); and every type whose elements carry other
/// resources or stand for one (an element of type `Resource` other than `contained`:
/// `Bundle.entry.resource`,
/// `Parameters.parameter.resource`; a `securityContext`: `Binary`, whose content is another
/// resource's).
pub fn is_personal_type(t: &str) -> bool {
    PERSONAL.contains(t)
}

static PERSONAL: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
    let defs = &crate::fhir::definitions::DEFINITIONS;
    let all = defs.resource_types();
    let mut out: std::collections::HashSet<String> = compartment_members("Patient")
        .into_iter()
        .map(|(t, _)| t.to_owned())
        .collect();
    out.insert("Patient".to_owned());
    // A Subscription holds its subscriber's endpoint and the secrets of its headers: only the
    // institution that made it (and administrators) see it.
    out.insert("Subscription".to_owned());
    for t in &all {
        if !patient_params(t).is_empty() || carries_resources(defs, t) {
            out.insert((*t).to_owned());
        }
    }
    out
});

/// The reference parameters of type `t` made to name a patient: their only target is Patient
/// (`Task.patient`, `Device.patient`, the Patient compartment's `patient` parameters).
pub fn patient_params(t: &str) -> Vec<String> {
    REGISTRY
        .for_type(t)
        .iter()
        .filter(|p| {
            p.kind == ParamType::Reference && p.targets.len() == 1 && p.targets[0] == "Patient"
        })
        .map(|p| p.code.clone())
        .collect()
}

/// Whether a type's elements (at any depth) hold another resource or stand for one.
fn carries_resources(defs: &crate::fhir::definitions::Definitions, t: &str) -> bool {
    let mut contexts = vec![t.to_owned()];
    let mut seen = std::collections::HashSet::new();
    while let Some(c) = contexts.pop() {
        if !seen.insert(c.clone()) {
            continue;
        }
        for e in defs.children(&c) {
            if (e.types.iter().any(|x| x == "Resource") && e.name != "contained")
                || (e.name == "securityContext" && c == t)
            {
                return true;
            }
            if let Some(inner) = &e.children_of
                && inner.starts_with(t)
            {
                contexts.push(inner.clone());
            }
        }
    }
    false
}

/// Every resource type that can be in `compartment`, with the parameters that place it there.
pub fn compartment_members(compartment: &str) -> Vec<(&'static str, &'static [String])> {
    COMPARTMENTS
        .get(compartment)
        .map(|types| {
            types
                .iter()
                .map(|(t, p)| (t.as_str(), p.as_slice()))
                .collect()
        })
        .unwrap_or_default()
}

/// The registry, built once on first use.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::load);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    fn parse(s: &str) -> ParamType {
        match s {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            _ => ParamType::Special,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// One search parameter.
#[derive(Debug)]
pub struct SearchParam {
    pub code: String,
    pub url: String,
    pub kind: ParamType,
    /// The FHIRPath expression as published.
    pub expression: Option<String>,
    /// The parsed expression; `None` when absent or outside the supported subset.
    pub expr: Option<Expr>,
    /// Why the expression could not be parsed.
    pub unsupported: Option<String>,
    pub targets: Vec<String>,
    /// Composite components: the component parameter's URL and its expression.
    pub components: Vec<(String, Option<Expr>)>,
    /// A Huimin extension: string values are indexed and searched as pinyin.
    pub pinyin: bool,
}

/// The URL of the `name-pinyin` extension search parameter.
pub const NAME_PINYIN_URL: &str = "urn:huimin:SearchParameter:name-pinyin";

/// Resource types that get `name-pinyin` (match by full pinyin or initials of a Chinese name).
const PINYIN_TYPES: &[&str] = &["Patient", "Practitioner", "RelatedPerson", "Person"];

/// The URL of the `district` extension search parameter: the GB/T 2260 area code of an
/// address (`urn:huimin:StructureDefinition:area-code` extension), for registries (IHE mCSD)
/// and statistics by district.
pub const DISTRICT_URL: &str = "urn:huimin:SearchParameter:district";

/// Resource types that get `district`.
const DISTRICT_TYPES: &[&str] = &["Organization", "Location", "Patient", "Practitioner"];

pub struct Registry {
    /// Per resource type: its own parameters plus those of Resource and DomainResource.
    by_type: HashMap<String, HashMap<String, Arc<SearchParam>>>,
    by_url: HashMap<String, Arc<SearchParam>>,
    /// Per (resource type, code): parameters answered from other parameters' index rows.
    aliases: HashMap<(String, String), Alias>,
    /// Per resource type, in code order: the parameters that have index rows of their own
    /// (an expression, not an alias, not searched on the resources table's columns).
    indexed: HashMap<String, Vec<Arc<SearchParam>>>,
}

/// A parameter that has no index rows of its own because other parameters of the same
/// resource type already hold them (about a third of an Observation's rows were such copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alias {
    /// `X.where(resolve() is T)` where `base` is `X`: the base's rows that refer to a `T`
    /// (`Observation.patient` is `subject` pointing at a Patient).
    Narrow { base: String, target: String },
    /// `A | B | …` where each part is another parameter's whole expression: the union of their
    /// rows (`combo-code` is `code` or `component-code`); or, with one part, a parameter whose
    /// expression is the same as another's (`phonetic` is `name`). Not used for reference
    /// parameters.
    Union(Vec<String>),
}

impl Alias {
    /// The parameters whose rows answer this one.
    pub fn bases(&self) -> Vec<String> {
        match self {
            Alias::Narrow { base, .. } => vec![base.clone()],
            Alias::Union(parts) => parts.clone(),
        }
    }
}

/// The top-level `|` branches of `expression` that apply to `resource_type`.
fn branches<'a>(expression: &'a str, resource_type: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut start = 0;
    let bytes = expression.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b'|' if !quoted && depth == 0 => {
                out.push(expression[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(expression[start..].trim());
    let prefix = format!("{resource_type}.");
    out.retain(|b| {
        let b = b.trim_start_matches('(');
        b.starts_with(&prefix) || b == resource_type
    });
    out
}

/// The aliases among one resource type's parameters (see [`Alias`]).
fn find_aliases(
    resource_type: &str,
    params: &HashMap<String, Arc<SearchParam>>,
    components: &HashMap<String, Vec<String>>,
) -> Vec<(String, Alias)> {
    let own: HashMap<&str, Vec<&str>> = params
        .values()
        .filter(|p| p.expr.is_some() && p.unsupported.is_none())
        .filter_map(|p| {
            let b = branches(p.expression.as_deref()?, resource_type);
            (!b.is_empty()).then_some((p.code.as_str(), b))
        })
        .collect();
    // Parameters of the same shape as `like` (kind, composite components, pinyin) whose every
    // branch is one of `within`, other than `like` itself; in code order.
    let same_shape = |like: &SearchParam, within: &[&str]| {
        let mut found: Vec<(&str, &Vec<&str>)> = own
            .iter()
            .filter(|(code, b)| {
                **code != like.code
                    && b.len() < within.len().max(2)
                    && b.iter().all(|x| within.contains(x))
            })
            .filter(|(code, _)| {
                params.get(**code).is_some_and(|q| {
                    q.kind == like.kind
                        && q.pinyin == like.pinyin
                        && components.get(&q.url) == components.get(&like.url)
                })
            })
            .map(|(code, b)| (*code, b))
            .collect();
        found.sort_unstable_by_key(|(code, _)| *code);
        found
    };
    let mut out = Vec::new();
    for (code, b) in &own {
        let Some(p) = params.get(*code) else {
            continue;
        };
        if code.starts_with('_') {
            continue;
        }
        if let [one] = b.as_slice()
            && p.kind == ParamType::Reference
            && let Some(inner) = one.strip_suffix(')')
            && let Some((x, target)) = inner.split_once(".where(resolve() is ")
            && huimin_model::is_resource_type(target)
            && let Some((base, _)) = same_shape(p, &[x]).first()
        {
            out.push((
                (*code).to_owned(),
                Alias::Narrow {
                    base: (*base).to_owned(),
                    target: target.to_owned(),
                },
            ));
            continue;
        }
        if p.kind == ParamType::Reference || p.kind == ParamType::Special {
            continue;
        }
        if b.len() < 2 {
            // The same expression as a parameter earlier in code order (`phonetic` is
            // `Patient.name`, like `name`): that parameter's rows.
            if let Some((twin, _)) = same_shape(p, b).into_iter().find(|(q, _)| q < code) {
                out.push(((*code).to_owned(), Alias::Union(vec![twin.to_owned()])));
            }
            continue;
        }
        // Cover every branch with smaller parameters, the largest first.
        let mut candidates = same_shape(p, b);
        candidates.sort_by_key(|(_, qb)| std::cmp::Reverse(qb.len()));
        let mut covered: Vec<&str> = Vec::new();
        let mut parts: Vec<String> = Vec::new();
        for branch in b {
            if covered.contains(branch) {
                continue;
            }
            let Some((q, qb)) = candidates.iter().find(|(_, qb)| qb.contains(branch)) else {
                parts.clear();
                break;
            };
            covered.extend(qb.iter());
            parts.push((*q).to_owned());
        }
        if parts.len() >= 2 {
            out.push(((*code).to_owned(), Alias::Union(parts)));
        }
    }
    out
}

#[derive(Deserialize)]
struct RawFile {
    parameters: Vec<RawParam>,
}

#[derive(Deserialize)]
struct RawParam {
    url: String,
    code: String,
    base: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
    expr: Option<String>,
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    component: Vec<RawComponent>,
}

#[derive(Deserialize)]
struct RawComponent {
    definition: String,
    expr: String,
}

/// R4B publishes `DocumentReference-relationship` with its two component expressions swapped
/// (the reference component reads `code`, the token component `target`). When each component's
/// expression is the tail of the other component's own definition, swap them back.
fn fix_swapped_components(p: &mut RawParam, expressions: &HashMap<String, String>) {
    let [a, b] = p.component.as_mut_slice() else {
        return;
    };
    let tail = |url: &str| {
        expressions
            .get(url)
            .and_then(|e| e.rsplit('.').next())
            .map(str::to_owned)
    };
    let (Some(ta), Some(tb)) = (tail(&a.definition), tail(&b.definition)) else {
        return;
    };
    if a.expr != ta && b.expr != tb && a.expr == tb && b.expr == ta {
        std::mem::swap(&mut a.expr, &mut b.expr);
    }
}

impl Registry {
    #[expect(
        clippy::expect_used,
        reason = "the embedded table is part of the binary"
    )]
    fn load() -> Registry {
        let raw: RawFile =
            serde_json::from_str(RAW).expect("embedded r4b-search-parameters.json is valid");
        let mut by_type: HashMap<String, HashMap<String, Arc<SearchParam>>> = HashMap::new();
        let mut by_url = HashMap::new();
        let mut common = Vec::new();
        let expressions: HashMap<String, String> = raw
            .parameters
            .iter()
            .filter_map(|p| Some((p.url.clone(), p.expr.clone()?)))
            .collect();
        // Composite components by parameter URL (their expressions), to compare composites.
        let mut components_of: HashMap<String, Vec<String>> = HashMap::new();
        for mut p in raw.parameters {
            fix_swapped_components(&mut p, &expressions);
            components_of.insert(
                p.url.clone(),
                p.component.iter().map(|c| c.expr.clone()).collect(),
            );
            let (expr, unsupported) = match &p.expr {
                None => (None, None),
                Some(text) => match fhirpath::parse(text) {
                    Ok(e) => (Some(e), None),
                    Err(why) => (None, Some(why)),
                },
            };
            let components: Vec<(String, Option<Expr>)> = p
                .component
                .iter()
                .map(|c| (c.definition.clone(), fhirpath::parse(&c.expr).ok()))
                .collect();
            // Composites are indexed as a pair whose first part is a token or a reference.
            let unsupported = if p.kind == "composite" && components.len() != 2 {
                Some(format!(
                    "composite of {} components (only two are indexed)",
                    components.len()
                ))
            } else {
                unsupported
            };
            let param = Arc::new(SearchParam {
                code: p.code.clone(),
                url: p.url.clone(),
                kind: ParamType::parse(&p.kind),
                expression: p.expr,
                expr,
                unsupported,
                targets: p.target,
                components,
                pinyin: false,
            });
            by_url.insert(p.url, param.clone());
            for base in p.base {
                if base == "Resource" || base == "DomainResource" {
                    common.push(param.clone());
                } else {
                    by_type
                        .entry(base)
                        .or_default()
                        .insert(param.code.clone(), param.clone());
                }
            }
        }
        // Huimin's extension parameters.
        let mut extension = |t: &str, code: &str, url: &str, kind, expression: String| {
            let param = Arc::new(SearchParam {
                code: code.to_owned(),
                url: url.to_owned(),
                kind,
                expr: fhirpath::parse(&expression).ok(),
                expression: Some(expression),
                unsupported: None,
                targets: Vec::new(),
                components: Vec::new(),
                pinyin: code == "name-pinyin",
            });
            by_type
                .entry(t.to_owned())
                .or_default()
                .insert(param.code.clone(), param);
        };
        for t in PINYIN_TYPES {
            let expression = format!("{t}.name");
            extension(
                t,
                "name-pinyin",
                NAME_PINYIN_URL,
                ParamType::String,
                expression,
            );
        }
        for t in DISTRICT_TYPES {
            let expression = format!(
                "{t}.address.extension.where(url = 'urn:huimin:StructureDefinition:area-code').value"
            );
            extension(t, "district", DISTRICT_URL, ParamType::Token, expression);
        }
        for t in huimin_model::RESOURCE_TYPES {
            let entry = by_type.entry((*t).to_owned()).or_default();
            for c in &common {
                entry.entry(c.code.clone()).or_insert_with(|| c.clone());
            }
        }
        let mut aliases = HashMap::new();
        for (t, params) in &by_type {
            for (code, alias) in find_aliases(t, params, &components_of) {
                aliases.insert((t.clone(), code), alias);
            }
        }
        let indexed = by_type
            .iter()
            .map(|(t, params)| {
                let mut own: Vec<Arc<SearchParam>> = params
                    .values()
                    .filter(|p| {
                        p.expr.is_some()
                            && p.code != "_lastUpdated"
                            && p.code != "_id"
                            && !aliases.contains_key(&(t.clone(), p.code.clone()))
                    })
                    .cloned()
                    .collect();
                own.sort_by(|a, b| a.code.cmp(&b.code));
                (t.clone(), own)
            })
            .collect();
        Registry {
            by_type,
            by_url,
            aliases,
            indexed,
        }
    }

    /// The types and reference parameters (as two sorted lists) whose rows may refer to a
    /// resource of type `target`: parameters with rows of their own that name `target`, or
    /// no type at all, among their targets.
    pub fn referring_to(&self, target: &str) -> (Vec<String>, Vec<String>) {
        let mut types = std::collections::BTreeSet::new();
        let mut params = std::collections::BTreeSet::new();
        for (t, own) in &self.indexed {
            for p in own {
                if p.kind == ParamType::Reference
                    && (p.targets.is_empty() || p.targets.iter().any(|x| x == target))
                {
                    types.insert(t.clone());
                    params.insert(p.code.clone());
                }
            }
        }
        (types.into_iter().collect(), params.into_iter().collect())
    }

    /// The parameters of `resource_type` that have index rows of their own, in code order:
    /// what a resource's index rows are extracted for.
    pub fn indexed(&self, resource_type: &str) -> &[Arc<SearchParam>] {
        self.indexed.get(resource_type).map_or(&[], Vec::as_slice)
    }

    /// How `code` of `resource_type` is answered from other parameters' rows, if it is.
    pub fn alias(&self, resource_type: &str, code: &str) -> Option<&Alias> {
        self.aliases
            .get(&(resource_type.to_owned(), code.to_owned()))
    }

    /// The parameter `code` of `resource_type`.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&Arc<SearchParam>> {
        self.by_type.get(resource_type)?.get(code)
    }

    pub fn by_url(&self, url: &str) -> Option<&Arc<SearchParam>> {
        self.by_url.get(url)
    }

    /// Every parameter of `resource_type`, in code order.
    pub fn for_type(&self, resource_type: &str) -> Vec<&Arc<SearchParam>> {
        let mut v: Vec<_> = self
            .by_type
            .get(resource_type)
            .map(|m| m.values().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }

    /// Parameters whose expression is outside the supported FHIRPath subset:
    /// (resource type, code, reason).
    pub fn uncovered(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = self
            .by_type
            .iter()
            .flat_map(|(t, m)| {
                m.values().filter_map(move |p| {
                    p.unsupported
                        .as_ref()
                        .map(|why| (t.clone(), p.code.clone(), why.clone()))
                })
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn personal_types_come_from_the_definitions() {
        for t in [
            "Patient",
            "Observation",
            "Task",
            "Device",
            "Binary",
            "Bundle",
            "Group",
            "Consent",
        ] {
            assert!(is_personal_type(t), "{t}");
        }
        for t in [
            "Organization",
            "Practitioner",
            "Location",
            "Measure",
            "StructureDefinition",
            "ActivityDefinition",
            "HealthcareService",
            "Slot",
        ] {
            assert!(!is_personal_type(t), "{t}");
        }
    }

    use super::*;

    #[test]
    fn aliases_share_their_bases_rows() {
        let r = &*REGISTRY;
        let narrow = |t: &str, base: &str| Alias::Narrow {
            base: base.to_owned(),
            target: t.to_owned(),
        };
        assert_eq!(
            r.alias("Observation", "patient"),
            Some(&narrow("Patient", "subject"))
        );
        assert_eq!(
            r.alias("Encounter", "patient"),
            Some(&narrow("Patient", "subject"))
        );
        assert_eq!(
            r.alias("DiagnosticReport", "patient"),
            Some(&narrow("Patient", "subject"))
        );
        // Immunization.patient is its own element, not a narrowed subject.
        assert_eq!(r.alias("Immunization", "patient"), None);
        assert_eq!(r.alias("Observation", "subject"), None);
        let union = |parts: &[&str]| Alias::Union(parts.iter().map(|p| (*p).to_owned()).collect());
        assert_eq!(
            r.alias("Observation", "combo-code"),
            Some(&union(&["code", "component-code"]))
        );
        assert_eq!(
            r.alias("Observation", "combo-value-quantity"),
            Some(&union(&["value-quantity", "component-value-quantity"]))
        );
        assert_eq!(
            r.alias("Observation", "combo-code-value-quantity"),
            Some(&union(&[
                "code-value-quantity",
                "component-code-value-quantity"
            ]))
        );
        assert_eq!(r.alias("Observation", "code"), None);
        assert_eq!(r.alias("Patient", "name"), None);
        assert_eq!(r.alias("Patient", "phonetic"), Some(&union(&["name"])));
        assert_eq!(r.alias("Practitioner", "phonetic"), Some(&union(&["name"])));
        assert_eq!(r.alias("CodeSystem", "url"), Some(&union(&["system"])));
        assert_eq!(r.alias("CodeSystem", "system"), None);
        // Every part of a union is a parameter of the same type with rows of its own.
        for ((t, code), alias) in &r.aliases {
            for part in alias.bases() {
                assert!(r.get(t, &part).is_some(), "{t}.{code} → {part}");
                assert!(r.alias(t, &part).is_none(), "{t}.{code} → {part}");
            }
        }
    }

    #[test]
    fn loads_parameters_for_every_type() {
        let r = &*REGISTRY;
        let birthdate = r.get("Patient", "birthdate").unwrap();
        assert_eq!(birthdate.kind, ParamType::Date);
        assert!(birthdate.expr.is_some());
        assert_eq!(
            r.get("Patient", "_lastUpdated").unwrap().kind,
            ParamType::Date
        );
        assert_eq!(r.get("Observation", "_id").unwrap().kind, ParamType::Token);
        let subject = r.get("Observation", "subject").unwrap();
        assert!(subject.targets.contains(&"Patient".to_owned()));
        assert_eq!(
            r.get("Observation", "code-value-quantity")
                .unwrap()
                .components
                .len(),
            2
        );
        assert!(r.get("Patient", "nonsense").is_none());
    }

    #[test]
    fn compartments() {
        let p = compartment_params("Patient", "Observation").unwrap();
        assert!(p.contains(&"subject".to_owned()));
        assert!(compartment_params("Patient", "ValueSet").is_none());
        assert!(compartment_params("Encounter", "Observation").is_some());
    }

    #[test]
    fn every_expression_is_covered_but_molecular_sequence_coordinates() {
        let uncovered = REGISTRY.uncovered();
        let codes: Vec<_> = uncovered
            .iter()
            .map(|(t, c, _)| format!("{t}.{c}"))
            .collect();
        assert_eq!(
            codes,
            [
                "MolecularSequence.chromosome-variant-coordinate",
                "MolecularSequence.chromosome-window-coordinate",
                "MolecularSequence.referenceseqid-variant-coordinate",
                "MolecularSequence.referenceseqid-window-coordinate",
            ]
        );
    }
}
