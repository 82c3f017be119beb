//! Search requests: parameters parsed against the registry into typed conditions (no SQL here;
//! `store::search` compiles them).
//!
//! Values of one parameter separated by `,` are ORed; repeated parameters are ANDed.
//! Supported: every parameter of type token, string, date, reference, number, quantity and uri,
//! plus `_id` and `_lastUpdated`; modifiers `:missing`, `:not` (token), `:exact`, `:contains`
//! (string), `:text`, `:of-type` (token), `:[Type]`, `:identifier` (reference), `:below` (uri);
//! prefixes `eq ne gt lt ge le sa eb ap` on date, number and quantity.

use super::index::normalize;
use super::outcome::Issue;
use super::search_params::{Alias, ParamType, REGISTRY, SearchParam};
use crate::clock;

/// Comparison prefixes of date, number and quantity values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// Which index table a clause reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Token,
    String,
    Date,
    Reference,
    Number,
    Quantity,
    Uri,
    Composite,
    /// `_text` and `_content`.
    Text,
}

/// One value condition on an index row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `None` = any.
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    StringPrefix(String),
    StringExact(String),
    StringContains(String),
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    /// A number with the range its precision implies (`[low, high)`).
    Number {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
    },
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Reference {
        target_type: Option<String>,
        target_id: String,
    },
    ReferenceUrl(String),
    Uri(String),
    UriBelow(String),
    /// `_text` / `_content`: every word occurs in the text (a contains match per word).
    Words(Vec<String>),
    /// A reference to any resource of this type (a narrowed parameter's `:missing`).
    TargetType(String),
    /// Matches no row (a narrowed parameter asked for another type).
    Nothing,
    /// A composite value: the first component's token, and a condition on the second.
    Composite {
        system: Option<String>,
        code: Option<String>,
        second: Box<Cond>,
    },
}

/// One parameter of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// A match on index rows of `param` in `table`: any of `any` (OR); `negate` for `:not`.
    Index {
        table: Table,
        param: String,
        any: Vec<Cond>,
        negate: bool,
    },
    /// `:missing=true|false`.
    Missing {
        table: Table,
        param: String,
        missing: bool,
    },
    /// `_id`.
    Id(Vec<String>),
    /// `_lastUpdated` (each value ORed).
    LastUpdated(Vec<(Prefix, i64, i64)>),
    /// A chained parameter (`subject:Patient.name=x`): the reference `param` points at a
    /// resource of one of the target types that matches that type's inner clause.
    Chain {
        param: String,
        targets: Vec<(String, Clause)>,
    },
    /// Reverse chaining (`_has:Observation:patient:code=x`): some `source_type` resource whose
    /// reference `param` points here matches `inner`.
    Has {
        source_type: String,
        param: String,
        inner: Box<Clause>,
    },
    /// Any of these (compartment membership through one of several parameters).
    Or(Vec<Clause>),
    /// All of these (`:not` and `:missing=true` on a union parameter).
    All(Vec<Clause>),
    /// `_id:not`: none of these ids.
    NotId(Vec<String>),
    /// Access control (`services::access`), never parsed from a request: resources of this
    /// golden resident only (`Some`), or none (`None`).
    Resident(Option<String>),
    /// Custody (`services::access`): resources this institution (`Organization/<id>`) wrote.
    Custodian(String),
    /// Consent (`services::consent`): resources of a resident not listed (of any resident when
    /// the list is empty).
    NotResidents(Vec<String>),
    /// Consent under an opt-in default: resources of a listed resident, or of a
    /// resident who is a patient of this institution (`Organization` id), save the residents
    /// listed with it (those whose Consents decide for themselves whether it is theirs).
    ResidentsOrPatientsOf(Vec<String>, Option<(String, Vec<String>)>),
}

/// The clause that keeps resources of `resource_type` in the compartment of `compartment/id`
/// (`Patient/123/Observation`): any of the compartment's parameters refers to it.
pub fn compartment(compartment: &str, id: &str, resource_type: &str) -> Result<Clause, Issue> {
    let params =
        super::search_params::compartment_params(compartment, resource_type).ok_or_else(|| {
            Issue::error(
                "not-supported",
                format!("{resource_type} is not in the {compartment} compartment"),
            )
        })?;
    let clauses: Vec<Clause> = params
        .iter()
        .map(|p| {
            if p == "{def}" {
                Clause::Id(vec![id.to_owned()])
            } else {
                let mut cond = Cond::Reference {
                    target_type: Some(compartment.to_owned()),
                    target_id: id.to_owned(),
                };
                if let Some(Alias::Narrow { target, .. }) = REGISTRY.alias(resource_type, p) {
                    narrow(&mut cond, target);
                }
                Clause::Index {
                    table: Table::Reference,
                    param: stored_reference(resource_type, p),
                    any: vec![cond],
                    negate: false,
                }
            }
        })
        .collect();
    // A narrowed parameter and its base are the same rows.
    let mut unique: Vec<Clause> = Vec::with_capacity(clauses.len());
    for c in clauses {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    let mut clauses = unique;
    // The compartment's own resource is in it.
    if resource_type == compartment {
        clauses.push(Clause::Id(vec![id.to_owned()]));
    }
    Ok(Clause::Or(clauses))
}

/// The words of a `_text` / `_content` value: whitespace separates words, a quoted phrase is
/// one word.
fn search_words(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, part) in v.split('"').enumerate() {
        if i % 2 == 1 {
            let phrase = super::index::words(part);
            if !phrase.is_empty() {
                out.push(phrase);
            }
        } else {
            out.extend(
                super::index::words(part)
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    out
}

/// The index table of a parameter type (`None` for composite and special parameters).
pub fn table_of(kind: ParamType) -> Option<Table> {
    match kind {
        ParamType::Token => Some(Table::Token),
        ParamType::String => Some(Table::String),
        ParamType::Date => Some(Table::Date),
        ParamType::Reference => Some(Table::Reference),
        ParamType::Number => Some(Table::Number),
        ParamType::Quantity => Some(Table::Quantity),
        ParamType::Uri => Some(Table::Uri),
        ParamType::Composite => Some(Table::Composite),
        ParamType::Special => None,
    }
}

/// Parameters that shape results rather than select them.
pub const RESULT_PARAMS: &[&str] = &[
    "_include",
    "_revinclude",
    "_include:iterate",
    "_revinclude:iterate",
    "_count",
    "_format",
    "_pretty",
    "_cursor",
    "_total",
    "_summary",
    "_elements",
    "_sort",
];

/// Most values one parameter may OR together, and most parameters one search may AND.
const MAX_OR: usize = 100;
const MAX_AND: usize = 30;
/// Deepest chain or `_has` nesting.
const MAX_DEPTH: usize = 3;

/// A parsed search: clauses ANDed together, and the parameters ignored under
/// `Prefer: handling=lenient`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub clauses: Vec<Clause>,
    pub ignored: Vec<String>,
}

fn err(param: &str, code: &'static str, text: impl Into<String>) -> Issue {
    Issue::error(code, text).at(param)
}

/// Parse the selection parameters of a search on `resource_type`. `base` is this server's
/// FHIR base URL (absolute references to it are local); with `lenient`, unknown or unsupported
/// parameters are ignored and listed instead of refused.
pub fn parse(
    resource_type: &str,
    pairs: &[(String, String)],
    base: &str,
    lenient: bool,
) -> Result<Query, Issue> {
    let mut q = Query::default();
    for (key, raw) in pairs {
        if RESULT_PARAMS.contains(&key.as_str()) {
            continue;
        }
        if key == "_contained" || key == "_containedType" {
            // Contained resources are not indexed on their own: searches match containers,
            // which is `_contained=false`, the default.
            match (key.as_str(), raw.as_str()) {
                ("_contained", "false") | ("_containedType", "container") => continue,
                _ if lenient => {
                    q.ignored.push(key.clone());
                    continue;
                }
                _ => {
                    return Err(err(
                        key,
                        "not-supported",
                        format!(
                            "{key}={raw} is not supported: searches match container resources only (_contained=false)"
                        ),
                    ));
                }
            }
        }
        if q.clauses.len() >= MAX_AND {
            return Err(err(
                key,
                "too-costly",
                format!("too many search parameters (at most {MAX_AND})"),
            ));
        }
        match parse_one(resource_type, key, raw, base, 0) {
            Ok(c) => q.clauses.push(c),
            Err(issue) if lenient && issue.code != "too-costly" && issue.code != "invalid" => {
                q.ignored.push(key.clone())
            }
            Err(issue) => return Err(issue),
        }
    }
    Ok(q)
}

fn parse_one(
    resource_type: &str,
    key: &str,
    raw: &str,
    base: &str,
    depth: usize,
) -> Result<Clause, Issue> {
    if depth > MAX_DEPTH {
        return Err(err(
            key,
            "too-costly",
            format!("chains and _has nest at most {MAX_DEPTH} levels"),
        ));
    }
    if let Some(rest) = key.strip_prefix("_has:") {
        return parse_has(resource_type, key, rest, raw, base, depth);
    }
    let (head, chain) = match key.split_once('.') {
        Some((h, c)) => (h, Some(c)),
        None => (key, None),
    };
    let (code, modifier) = match head.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (head, None),
    };
    if let Some(inner_key) = chain {
        return parse_chain(
            resource_type,
            key,
            code,
            modifier,
            inner_key,
            raw,
            base,
            depth,
        );
    }
    let values = split_or(raw);
    if values.len() > MAX_OR {
        return Err(err(
            key,
            "too-costly",
            format!("too many values for '{key}' (at most {MAX_OR})"),
        ));
    }
    if values.iter().any(|v| v.is_empty()) {
        return Err(err(key, "invalid", format!("empty value in '{key}'")));
    }
    let Some(param) = REGISTRY.get(resource_type, code) else {
        return Err(err(
            key,
            "not-supported",
            format!("'{code}' is not a search parameter of {resource_type}"),
        ));
    };
    if let Some(alias) = REGISTRY.alias(resource_type, code) {
        return parse_alias(resource_type, key, modifier, alias, raw, base, depth);
    }
    let table = match table_of(param.kind) {
        Some(t) => t,
        None => {
            return Err(err(
                key,
                "not-supported",
                format!(
                    "{} parameter '{code}' is not supported yet",
                    param.kind.as_str()
                ),
            ));
        }
    };
    let table = if matches!(code, "_text" | "_content") {
        Table::Text
    } else {
        table
    };
    if modifier == Some("missing") {
        let missing = missing_value(key, raw)?;
        if code == "_id" || code == "_lastUpdated" {
            return Err(err(
                key,
                "not-supported",
                format!(":missing is not supported on {code}"),
            ));
        }
        return Ok(Clause::Missing {
            table,
            param: code.to_owned(),
            missing,
        });
    }
    if code == "_id" {
        let ids = values.iter().map(|v| unescape(v)).collect();
        return match modifier {
            None => Ok(Clause::Id(ids)),
            Some("not") => Ok(Clause::NotId(ids)),
            Some(m) => Err(err(
                key,
                "not-supported",
                format!("modifier ':{m}' is not supported on _id"),
            )),
        };
    }
    if code == "_lastUpdated" && modifier.is_none() {
        let mut ranges = Vec::new();
        for v in &values {
            let (prefix, rest) = split_prefix(v);
            let (lo, hi) = clock::period_of(rest)
                .ok_or_else(|| err(key, "invalid", format!("'{rest}' is not a date")))?;
            ranges.push((prefix, lo, hi));
        }
        return Ok(Clause::LastUpdated(ranges));
    }
    if matches!(code, "_text" | "_content") && modifier.is_none() {
        let mut any = Vec::new();
        for v in &values {
            let words = search_words(&unescape(v));
            if words.is_empty() {
                return Err(err(key, "invalid", format!("empty value in '{key}'")));
            }
            any.push(Cond::Words(words));
        }
        return Ok(Clause::Index {
            table: Table::Text,
            param: code.to_owned(),
            any,
            negate: false,
        });
    }
    if param.expr.is_none() {
        return Err(err(
            key,
            "not-supported",
            format!("'{code}' is not supported yet"),
        ));
    }
    let mut table = table;
    let mut name = code.to_owned();
    let mut negate = false;
    let mut any = Vec::new();
    let bad_modifier = || {
        err(
            key,
            "not-supported",
            format!(
                "modifier ':{}' is not supported on {} parameter '{code}'",
                modifier.unwrap_or(""),
                param.kind.as_str()
            ),
        )
    };
    for v in &values {
        let cond = match (param.kind, modifier) {
            (ParamType::Token, None | Some("not")) => {
                negate = modifier == Some("not");
                token(v)
            }
            (ParamType::Token, Some("text")) => {
                table = Table::String;
                name = format!("{code}:text");
                Cond::StringPrefix(normalize(&unescape(v)))
            }
            (ParamType::Token, Some("of-type")) => {
                name = format!("{code}:of-type");
                let parts: Vec<&str> = v.splitn(3, '|').collect();
                let [system, type_code, value] = parts.as_slice() else {
                    return Err(err(key, "invalid", ":of-type takes system|code|value"));
                };
                Cond::Token {
                    system: Some(unescape(system)),
                    code: Some(format!("{}|{}", unescape(type_code), unescape(value))),
                }
            }
            (ParamType::String, None) if param.pinyin => {
                Cond::StringPrefix(super::pinyin::search_form(&unescape(v)))
            }
            (ParamType::String, None) => Cond::StringPrefix(normalize(&unescape(v))),
            (ParamType::String, Some("exact")) => Cond::StringExact(unescape(v)),
            (ParamType::String, Some("contains")) => Cond::StringContains(normalize(&unescape(v))),
            (ParamType::Date | ParamType::Number | ParamType::Quantity, None) => {
                plain_value(param.kind, v).map_err(|what| err(key, "invalid", what))?
            }
            (ParamType::Reference, None) => reference(v, base, None),
            (ParamType::Reference, Some("identifier")) => {
                table = Table::Token;
                name = format!("{code}:identifier");
                token(v)
            }
            (ParamType::Reference, Some(t)) if huimin_model::is_resource_type(t) => {
                if !param.targets.is_empty() && !param.targets.iter().any(|x| x == t) {
                    return Err(err(key, "invalid", format!("'{code}' cannot refer to {t}")));
                }
                reference(v, base, Some(t))
            }
            (ParamType::Composite, None) => composite(param, key, v, base)?,
            (ParamType::Uri, None) => Cond::Uri(unescape(v)),
            (ParamType::Uri, Some("below")) => Cond::UriBelow(unescape(v)),
            _ => return Err(bad_modifier()),
        };
        any.push(cond);
    }
    Ok(Clause::Index {
        table,
        param: name,
        any,
        negate,
    })
}

/// A parameter answered from other parameters' rows (see [`Alias`]).
fn parse_alias(
    resource_type: &str,
    key: &str,
    modifier: Option<&str>,
    alias: &Alias,
    raw: &str,
    base: &str,
    depth: usize,
) -> Result<Clause, Issue> {
    let with = |code: &str| match modifier {
        Some(m) => format!("{code}:{m}"),
        None => code.to_owned(),
    };
    match alias {
        Alias::Union(parts) => {
            let clauses = parts
                .iter()
                .map(|part| parse_one(resource_type, &with(part), raw, base, depth))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|i| Issue {
                    expression: Some(key.to_owned()),
                    ..i
                })?;
            // No part has it / no part has it missing; otherwise one part suffices.
            if modifier == Some("not") || (modifier == Some("missing") && raw == "true") {
                Ok(Clause::All(clauses))
            } else {
                Ok(Clause::Or(clauses))
            }
        }
        Alias::Narrow { base: of, target } => match modifier {
            Some("missing") => {
                let missing = missing_value(key, raw)?;
                Ok(Clause::Index {
                    table: Table::Reference,
                    param: of.clone(),
                    any: vec![Cond::TargetType(target.clone())],
                    negate: missing,
                })
            }
            Some(t) if huimin_model::is_resource_type(t) && t != target => {
                Err(err(key, "invalid", format!("'{key}' cannot refer to {t}")))
            }
            _ => {
                let mut clause = parse_one(resource_type, &with(of), raw, base, depth)?;
                if let Clause::Index {
                    table: Table::Reference,
                    any,
                    ..
                } = &mut clause
                {
                    for cond in any.iter_mut() {
                        narrow(cond, target);
                    }
                }
                Ok(clause)
            }
        },
    }
}

/// The value of a `:missing` parameter.
fn missing_value(key: &str, raw: &str) -> Result<bool, Issue> {
    match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(err(key, "invalid", ":missing takes true or false")),
    }
}

/// Restrict a reference condition to references to `target`.
fn narrow(cond: &mut Cond, target: &str) {
    match cond {
        Cond::Reference { target_type, .. } => match target_type {
            None => *target_type = Some(target.to_owned()),
            Some(t) if t == target => {}
            Some(_) => *cond = Cond::Nothing,
        },
        Cond::ReferenceUrl(url) => {
            if let Some((t, _)) = super::fhirpath::split_reference(url)
                && t != target
            {
                *cond = Cond::Nothing;
            }
        }
        _ => {}
    }
}

/// The parameter whose rows hold a reference parameter's values (itself, or a narrowed
/// parameter's base).
pub fn stored_reference(resource_type: &str, code: &str) -> String {
    match REGISTRY.alias(resource_type, code) {
        Some(Alias::Narrow { base, .. }) => base.clone(),
        _ => code.to_owned(),
    }
}

fn reference_param<'a>(
    resource_type: &str,
    code: &str,
    key: &str,
) -> Result<&'a std::sync::Arc<super::search_params::SearchParam>, Issue> {
    let param = REGISTRY.get(resource_type, code).ok_or_else(|| {
        err(
            key,
            "not-supported",
            format!("'{code}' is not a search parameter of {resource_type}"),
        )
    })?;
    if param.kind != ParamType::Reference {
        return Err(err(
            key,
            "invalid",
            format!("'{code}' is not a reference parameter"),
        ));
    }
    Ok(param)
}

#[expect(clippy::too_many_arguments, reason = "the parts of one chained key")]
fn parse_chain(
    resource_type: &str,
    key: &str,
    code: &str,
    type_modifier: Option<&str>,
    inner_key: &str,
    raw: &str,
    base: &str,
    depth: usize,
) -> Result<Clause, Issue> {
    let param = reference_param(resource_type, code, key)?;
    let inner_code = inner_key.split([':', '.']).next().unwrap_or(inner_key);
    let candidates: Vec<String> = match type_modifier {
        Some(t) => {
            if !huimin_model::is_resource_type(t)
                || (!param.targets.is_empty() && !param.targets.iter().any(|x| x == t))
            {
                return Err(err(key, "invalid", format!("'{code}' cannot refer to {t}")));
            }
            vec![t.to_owned()]
        }
        None => param
            .targets
            .iter()
            .filter(|t| inner_code == "_has" || REGISTRY.get(t, inner_code).is_some())
            .cloned()
            .collect(),
    };
    if candidates.is_empty() {
        return Err(err(
            key,
            "not-supported",
            format!("no target of '{code}' has a parameter '{inner_code}'"),
        ));
    }
    let mut targets = Vec::new();
    for t in candidates {
        targets.push((t.clone(), parse_one(&t, inner_key, raw, base, depth + 1)?));
    }
    Ok(Clause::Chain {
        param: stored_reference(resource_type, code),
        targets,
    })
}

fn parse_has(
    resource_type: &str,
    key: &str,
    rest: &str,
    raw: &str,
    base: &str,
    depth: usize,
) -> Result<Clause, Issue> {
    let mut parts = rest.splitn(3, ':');
    let (Some(source), Some(code), Some(inner_key)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(err(
            key,
            "invalid",
            "_has takes _has:Type:reference-parameter:parameter",
        ));
    };
    if !huimin_model::is_resource_type(source) {
        return Err(err(
            key,
            "invalid",
            format!("'{source}' is not a resource type"),
        ));
    }
    let param = reference_param(source, code, key)?;
    if !param.targets.is_empty() && !param.targets.iter().any(|x| x == resource_type) {
        return Err(err(
            key,
            "invalid",
            format!("{source}.{code} cannot refer to {resource_type}"),
        ));
    }
    let inner = parse_one(source, inner_key, raw, base, depth + 1)?;
    Ok(Clause::Has {
        source_type: source.to_owned(),
        param: stored_reference(source, code),
        inner: Box::new(inner),
    })
}

/// What one `_sort` key orders by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortBy {
    Id,
    LastUpdated,
    /// The lowest (ascending) or highest (descending) indexed value of a parameter (the rows
    /// of these parameters: one, or the parts of a union alias).
    Index {
        table: Table,
        params: Vec<String>,
    },
}

/// One `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub by: SortBy,
    pub desc: bool,
}

/// Most `_sort` keys.
const MAX_SORT: usize = 5;

/// Parse `_sort=-date,name`: any parameter of a sortable type, `_id`, `_lastUpdated`.
pub fn parse_sort(resource_type: &str, pairs: &[(String, String)]) -> Result<Vec<SortKey>, Issue> {
    let Some((_, v)) = pairs.iter().find(|(k, _)| k == "_sort") else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (desc, code) = match item.strip_prefix('-') {
            Some(c) => (true, c),
            None => (false, item),
        };
        let by = match code {
            "_id" => SortBy::Id,
            "_lastUpdated" => SortBy::LastUpdated,
            _ => {
                let param = REGISTRY.get(resource_type, code).ok_or_else(|| {
                    err(
                        "_sort",
                        "not-supported",
                        format!("'{code}' is not a search parameter of {resource_type}"),
                    )
                })?;
                let table = match table_of(param.kind).filter(|t| *t != Table::Composite) {
                    Some(t) => t,
                    None => {
                        return Err(err(
                            "_sort",
                            "not-supported",
                            format!("cannot sort by '{code}'"),
                        ));
                    }
                };
                let params = REGISTRY
                    .alias(resource_type, code)
                    .map_or_else(|| vec![code.to_owned()], Alias::bases);
                SortBy::Index { table, params }
            }
        };
        keys.push(SortKey { by, desc });
    }
    if keys.len() > MAX_SORT {
        return Err(err(
            "_sort",
            "too-costly",
            format!("at most {MAX_SORT} sort keys"),
        ));
    }
    Ok(keys)
}

/// An `_include` or `_revinclude` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// The resource type holding the reference.
    pub source: String,
    /// The reference parameter; `None` for `*` (every reference parameter).
    pub param: Option<String>,
    /// Only references to this type.
    pub target: Option<String>,
    pub iterate: bool,
    /// `_revinclude`: resources of `source` that refer to the results.
    pub reverse: bool,
}

/// Most `_include` and `_revinclude` parameters in one search.
const MAX_INCLUDES: usize = 10;

/// Parse the `_include` and `_revinclude` parameters.
pub fn parse_includes(pairs: &[(String, String)]) -> Result<Vec<Include>, Issue> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        let (reverse, iterate) = match key.as_str() {
            "_include" => (false, false),
            "_include:iterate" => (false, true),
            "_revinclude" => (true, false),
            "_revinclude:iterate" => (true, true),
            _ => continue,
        };
        if out.len() >= MAX_INCLUDES {
            return Err(err(
                key,
                "too-costly",
                format!("at most {MAX_INCLUDES} includes"),
            ));
        }
        let parts: Vec<&str> = value.split(':').collect();
        let (source, param, target) = match parts.as_slice() {
            ["*"] if !reverse => (String::new(), None, None),
            [s, "*"] => ((*s).to_owned(), None, None),
            [s, p] => ((*s).to_owned(), Some((*p).to_owned()), None),
            [s, p, t] => (
                (*s).to_owned(),
                Some((*p).to_owned()),
                Some((*t).to_owned()),
            ),
            _ => {
                return Err(err(
                    key,
                    "invalid",
                    format!("'{value}' is not Type:parameter[:TargetType]"),
                ));
            }
        };
        if !source.is_empty() && !huimin_model::is_resource_type(&source) {
            return Err(err(
                key,
                "invalid",
                format!("'{source}' is not a resource type"),
            ));
        }
        if let Some(t) = &target
            && !huimin_model::is_resource_type(t)
        {
            return Err(err(key, "invalid", format!("'{t}' is not a resource type")));
        }
        let (mut param, mut target) = (param, target);
        if let Some(p) = &param {
            reference_param(&source, p, key)?;
            if let Some(Alias::Narrow { base, target: only }) = REGISTRY.alias(&source, p) {
                if target.as_ref().is_some_and(|t| t != only) {
                    return Err(err(
                        key,
                        "invalid",
                        format!("'{p}' cannot refer to {}", target.unwrap_or_default()),
                    ));
                }
                param = Some(base.clone());
                target = Some(only.clone());
            }
        }
        out.push(Include {
            source,
            param,
            target,
            iterate,
            reverse,
        });
    }
    Ok(out)
}

/// Whether searches on `param` are answered: every non-special parameter with a supported
/// expression, and composites of two components whose first is a token.
pub fn is_supported(param: &SearchParam) -> bool {
    match param.kind {
        ParamType::Special => false,
        ParamType::Composite => match param.components.as_slice() {
            [(u1, Some(_)), (u2, Some(_))] => {
                REGISTRY
                    .by_url(u1)
                    .is_some_and(|c| c.kind == ParamType::Token)
                    && REGISTRY.by_url(u2).is_some_and(|c| {
                        matches!(
                            c.kind,
                            ParamType::Token
                                | ParamType::String
                                | ParamType::Date
                                | ParamType::Number
                                | ParamType::Quantity
                        )
                    })
            }
            _ => false,
        },
        _ => param.expr.is_some() || param.code == "_id" || param.code == "_lastUpdated",
    }
}

/// `system|code$value` for a two-component composite whose first component is a token; the
/// second part follows the rules of the second component's type.
fn composite(param: &SearchParam, key: &str, v: &str, base: &str) -> Result<Cond, Issue> {
    let unsupported = || {
        err(
            key,
            "not-supported",
            format!("composite parameter '{}' is not supported yet", param.code),
        )
    };
    let [(url1, _), (url2, _)] = param.components.as_slice() else {
        return Err(unsupported());
    };
    let (Some(c1), Some(c2)) = (REGISTRY.by_url(url1), REGISTRY.by_url(url2)) else {
        return Err(unsupported());
    };
    if !matches!(c1.kind, ParamType::Token | ParamType::Reference) {
        return Err(unsupported());
    }
    let bytes = v.as_bytes();
    let mut split = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'$' => {
                split = Some(i);
                break;
            }
            _ => i += 1,
        }
    }
    let Some(at) = split else {
        return Err(err(key, "invalid", "a composite value is first$second"));
    };
    let (system, code) = if c1.kind == ParamType::Reference {
        match reference(&v[..at], base, None) {
            Cond::Reference {
                target_type: Some(t),
                target_id,
            } => (None, Some(format!("{t}/{target_id}"))),
            Cond::ReferenceUrl(url) => (None, Some(url)),
            _ => {
                return Err(err(
                    key,
                    "invalid",
                    "the reference of a composite value is Type/id or a URL",
                ));
            }
        }
    } else {
        match token(&v[..at]) {
            Cond::Token { system, code } => (system, code),
            _ => return Err(unsupported()),
        }
    };
    let rest = &v[at + 1..];
    let second = match c2.kind {
        ParamType::Token
        | ParamType::String
        | ParamType::Date
        | ParamType::Number
        | ParamType::Quantity => {
            plain_value(c2.kind, rest).map_err(|what| err(key, "invalid", what))?
        }
        _ => return Err(unsupported()),
    };
    Ok(Cond::Composite {
        system,
        code,
        second: Box::new(second),
    })
}

/// A value without modifier of a token, string, date, number or quantity parameter (also the
/// second part of a composite value). The error says what the value is not.
fn plain_value(kind: ParamType, v: &str) -> Result<Cond, String> {
    let (prefix, rest) = split_prefix(v);
    Ok(match kind {
        ParamType::Token => token(v),
        ParamType::String => Cond::StringPrefix(normalize(&unescape(v))),
        ParamType::Date => {
            let (low, high) =
                clock::period_of(rest).ok_or_else(|| format!("'{rest}' is not a date"))?;
            Cond::Date { prefix, low, high }
        }
        ParamType::Number => {
            let (value, low, high) =
                number(rest).ok_or_else(|| format!("'{rest}' is not a number"))?;
            Cond::Number {
                prefix,
                value,
                low,
                high,
            }
        }
        ParamType::Quantity => {
            let mut parts = rest.splitn(3, '|');
            let num = parts.next().unwrap_or("");
            let (value, low, high) =
                number(num).ok_or_else(|| format!("'{num}' is not a number"))?;
            let system = parts.next().filter(|s| !s.is_empty()).map(unescape);
            let code = parts.next().filter(|s| !s.is_empty()).map(unescape);
            Cond::Quantity {
                prefix,
                value,
                low,
                high,
                system,
                code,
            }
        }
        _ => return Err("a value of this parameter type cannot be parsed here".to_owned()),
    })
}

/// Split on commas not escaped with a backslash.
pub fn split_or(v: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let bytes = v.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => {
                parts.push(&v[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    parts.push(&v[start.min(v.len())..]);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `system|code`, `|code`, `code`, `system|` (the first unescaped `|` separates).
fn token(s: &str) -> Cond {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => {
                let code = unescape(&s[i + 1..]);
                return Cond::Token {
                    system: Some(unescape(&s[..i])),
                    code: (!code.is_empty()).then_some(code),
                };
            }
            _ => i += 1,
        }
    }
    Cond::Token {
        system: None,
        code: Some(unescape(s)),
    }
}

fn reference(v: &str, base: &str, forced_type: Option<&str>) -> Cond {
    let v = unescape(v);
    let local = v
        .strip_prefix(base)
        .map(|r| r.trim_start_matches('/').to_owned());
    let candidate = local.as_deref().unwrap_or(&v);
    let is_url = candidate.contains("://") || candidate.starts_with("urn:");
    if !is_url {
        let candidate = candidate.split('|').next().unwrap_or(candidate);
        if let Some((t, id)) = candidate.split_once('/') {
            if huimin_model::is_resource_type(t) && !id.contains('/') {
                return Cond::Reference {
                    target_type: Some(t.to_owned()),
                    target_id: id.to_owned(),
                };
            }
        } else {
            return Cond::Reference {
                target_type: forced_type.map(str::to_owned),
                target_id: candidate.to_owned(),
            };
        }
    }
    Cond::ReferenceUrl(v.split('|').next().unwrap_or(&v).to_owned())
}

fn split_prefix(v: &str) -> (Prefix, &str) {
    let p = match v.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, v),
    };
    (p, &v[2..])
}

/// A number with its implicit precision range: `100` → [99.5, 100.5), `1.50` → [1.495, 1.505).
fn number(s: &str) -> Option<(f64, f64, f64)> {
    let value: f64 = s.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let mantissa = s.split(['e', 'E']).next().unwrap_or(s);
    let exponent: i32 = s
        .split(['e', 'E'])
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len());
    let half = 0.5 * 10f64.powi(exponent - i32::try_from(decimals).ok()?);
    Some((value, value - half, value + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str, q: &[(&str, &str)]) -> Result<Query, Issue> {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse(t, &pairs, "http://h/fhir", false)
    }

    #[test]
    fn tokens_and_modifiers() {
        let q = p("Patient", &[("identifier", "urn:x|1,|2,3,urn:y|,a\\|b")]).unwrap();
        let Clause::Index { table, any, .. } = &q.clauses[0] else {
            panic!()
        };
        assert_eq!(*table, Table::Token);
        assert_eq!(
            any[0],
            Cond::Token {
                system: Some("urn:x".into()),
                code: Some("1".into())
            }
        );
        assert_eq!(
            any[1],
            Cond::Token {
                system: Some(String::new()),
                code: Some("2".into())
            }
        );
        assert_eq!(
            any[2],
            Cond::Token {
                system: None,
                code: Some("3".into())
            }
        );
        assert_eq!(
            any[3],
            Cond::Token {
                system: Some("urn:y".into()),
                code: None
            }
        );
        assert_eq!(
            any[4],
            Cond::Token {
                system: None,
                code: Some("a|b".into())
            }
        );
        let q = p("Patient", &[("gender:not", "male")]).unwrap();
        assert!(matches!(&q.clauses[0], Clause::Index { negate: true, .. }));
        let q = p("Observation", &[("code:text", "Body Wéight")]).unwrap();
        assert_eq!(
            q.clauses[0],
            Clause::Index {
                table: Table::String,
                param: "code:text".into(),
                any: vec![Cond::StringPrefix("body weight".into())],
                negate: false
            }
        );
        let q = p("Patient", &[("birthdate:missing", "true")]).unwrap();
        assert_eq!(
            q.clauses[0],
            Clause::Missing {
                table: Table::Date,
                param: "birthdate".into(),
                missing: true
            }
        );
    }

    #[test]
    fn references() {
        let q = p(
            "Observation",
            &[(
                "subject",
                "Patient/1,2,http://h/fhir/Patient/3,http://other/fhir/Patient/4",
            )],
        )
        .unwrap();
        let Clause::Index { any, .. } = &q.clauses[0] else {
            panic!()
        };
        assert_eq!(
            any[0],
            Cond::Reference {
                target_type: Some("Patient".into()),
                target_id: "1".into()
            }
        );
        assert_eq!(
            any[1],
            Cond::Reference {
                target_type: None,
                target_id: "2".into()
            }
        );
        assert_eq!(
            any[2],
            Cond::Reference {
                target_type: Some("Patient".into()),
                target_id: "3".into()
            }
        );
        assert_eq!(
            any[3],
            Cond::ReferenceUrl("http://other/fhir/Patient/4".into())
        );
        let q = p("Observation", &[("subject:Patient", "5")]).unwrap();
        let Clause::Index { any, .. } = &q.clauses[0] else {
            panic!()
        };
        assert_eq!(
            any[0],
            Cond::Reference {
                target_type: Some("Patient".into()),
                target_id: "5".into()
            }
        );
        assert!(p("Observation", &[("subject:Account", "5")]).is_err());
    }

    #[test]
    fn numbers_dates_and_errors() {
        let (v, lo, hi) = number("100").unwrap();
        assert_eq!((v, lo, hi), (100.0, 99.5, 100.5));
        let (_, lo, hi) = number("1.50").unwrap();
        assert!((lo - 1.495).abs() < 1e-9 && (hi - 1.505).abs() < 1e-9);
        let q = p("Patient", &[("birthdate", "ge1980-01")]).unwrap();
        assert!(
            matches!(&q.clauses[0], Clause::Index { any, .. } if matches!(any[0], Cond::Date { prefix: Prefix::Ge, .. }))
        );
        assert_eq!(
            p("Patient", &[("birthdate", "1980-13")])
                .unwrap_err()
                .expression
                .as_deref(),
            Some("birthdate")
        );
        assert_eq!(
            p("Patient", &[("nonsense", "x")]).unwrap_err().code,
            "not-supported"
        );
        assert!(p("Patient", &[("name:exactly", "x")]).is_err());
        assert!(p("Observation", &[("subject.nonsense", "x")]).is_err());
        let lenient = parse(
            "Patient",
            &[
                ("nonsense".into(), "x".into()),
                ("gender".into(), "male".into()),
            ],
            "",
            true,
        )
        .unwrap();
        assert_eq!(lenient.ignored, ["nonsense"]);
        assert_eq!(lenient.clauses.len(), 1);
        let many = vec!["x"; 101].join(",");
        assert_eq!(
            p("Patient", &[("gender", &many)]).unwrap_err().code,
            "too-costly"
        );
    }
}
