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

pub struct Registry {
    /// Per resource type: its own parameters plus those of Resource and DomainResource.
    by_type: HashMap<String, HashMap<String, Arc<SearchParam>>>,
    by_url: HashMap<String, Arc<SearchParam>>,
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
        for mut p in raw.parameters {
            fix_swapped_components(&mut p, &expressions);
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
        for t in PINYIN_TYPES {
            let expression = format!("{t}.name");
            let param = Arc::new(SearchParam {
                code: "name-pinyin".to_owned(),
                url: NAME_PINYIN_URL.to_owned(),
                kind: ParamType::String,
                expr: fhirpath::parse(&expression).ok(),
                expression: Some(expression),
                unsupported: None,
                targets: Vec::new(),
                components: Vec::new(),
                pinyin: true,
            });
            by_type
                .entry((*t).to_owned())
                .or_default()
                .insert(param.code.clone(), param);
        }
        for t in huimin_model::RESOURCE_TYPES {
            let entry = by_type.entry((*t).to_owned()).or_default();
            for c in &common {
                entry.entry(c.code.clone()).or_insert_with(|| c.clone());
            }
        }
        Registry { by_type, by_url }
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
    use super::*;

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
