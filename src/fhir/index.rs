//! Search index extraction: the rows a resource contributes to the index tables, computed from
//! the search parameter registry (each parameter's FHIRPath expression and type).

use super::fhirpath::{self, Item, split_reference};
use super::json::Json;
use super::search_params::{ParamType, REGISTRY, SearchParam};
use crate::clock;

/// One index row (the parameter code is `param`; derived forms use a suffix such as
/// `code:text` or `subject:identifier`).
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `system` is `''` when the value has no system.
    Token {
        param: String,
        system: String,
        code: String,
    },
    /// `value` is normalised (lower case, accents removed) for default and `:contains` search;
    /// `exact` is the value as written, for `:exact`.
    String {
        param: String,
        value: String,
        exact: String,
    },
    /// Inclusive millisecond bounds; open ends are `i64::MIN` / `i64::MAX`.
    Date {
        param: String,
        low: i64,
        high: i64,
    },
    /// A reference by type and id (`target_type` is `''` when unknown), and as written when it
    /// is more than `Type/id` (absolute and canonical references; `url` is empty otherwise).
    Reference {
        param: String,
        target_type: String,
        target_id: String,
        url: String,
    },
    Number {
        param: String,
        value: f64,
    },
    Quantity {
        param: String,
        value: f64,
        system: String,
        code: String,
    },
    Uri {
        param: String,
        uri: String,
    },
    /// `_text` or `_content`: the normalised words of the narrative or of the whole resource.
    Text {
        param: String,
        content: String,
    },
    /// A composite parameter: the first component's token and the second component's value,
    /// taken from the same item.
    Composite {
        param: String,
        system1: String,
        code1: String,
        second: Second,
    },
}

/// The second component of a composite row.
#[derive(Debug, Clone, PartialEq)]
pub enum Second {
    Token {
        system: String,
        code: String,
    },
    Quantity {
        value: f64,
        system: String,
        code: String,
    },
    Number(f64),
    Date {
        low: i64,
        high: i64,
    },
    String(String),
}

pub use super::text::normalize;

/// Longest indexed key in bytes: longer values are cut (at a character boundary) so that every
/// row fits a B-tree entry on both backends; searches cut their values the same way.
pub const KEY_BYTES: usize = 1000;

/// `s` cut to at most [`KEY_BYTES`] bytes.
pub fn key(s: &str) -> &str {
    if s.len() <= KEY_BYTES {
        return s;
    }
    let mut end = KEY_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Most text kept for `_content` per resource, in bytes.
const CONTENT_BYTES: usize = 64 * 1024;

/// Elements left out of `_content`: the narrative (that is `_text`), attachment data,
/// and references, ids and URIs, which are searched by their own parameters.
const NOT_CONTENT: &[&str] = &[
    "data",
    "reference",
    "id",
    "url",
    "system",
    "fullUrl",
    "profile",
    "div",
];

/// Every index row of `resource` (of type `resource_type`).
pub fn extract(resource_type: &str, resource: &Json) -> Vec<Entry> {
    let mut out = Vec::new();
    // Parameters searched and sorted on the resources table's own columns, or answered from
    // other parameters' rows, need no rows and are not in this list.
    for p in REGISTRY.indexed(resource_type) {
        let Some(expr) = &p.expr else {
            continue;
        };
        let items = fhirpath::evaluate(expr, resource);
        for item in &items {
            let Item::Node(node, _) = item else {
                continue;
            };
            match p.kind {
                ParamType::Token => token_entries(&p.code, node, &mut out),
                ParamType::String if p.pinyin => pinyin_entries(&p.code, node, &mut out),
                ParamType::String => string_entries(&p.code, node, &mut out),
                ParamType::Date => date_entries(&p.code, node, &mut out),
                ParamType::Reference => reference_entries(&p.code, node, &mut out),
                ParamType::Number => {
                    if let Some(v) = number(node) {
                        out.push(Entry::Number {
                            param: p.code.clone(),
                            value: v,
                        });
                    }
                }
                ParamType::Quantity => quantity_entries(&p.code, node, &mut out),
                ParamType::Uri => {
                    if let Some(s) = node.as_str() {
                        out.push(Entry::Uri {
                            param: p.code.clone(),
                            uri: s.to_owned(),
                        });
                    }
                }
                ParamType::Composite => composite_entries(p, node, &mut out),
                ParamType::Special => {}
            }
        }
    }
    dedup(&mut out);
    text_entries(resource, &mut out);
    out
}

/// The `_text` row (narrative without markup) and the `_content` row (every other string).
fn text_entries(resource: &Json, out: &mut Vec<Entry>) {
    if let Some(div) = resource
        .get("text")
        .and_then(|t| t.get("div"))
        .and_then(Json::as_str)
    {
        let words = words(&strip_markup(div));
        if !words.is_empty() {
            out.push(Entry::Text {
                param: "_text".to_owned(),
                content: words,
            });
        }
    }
    let mut content = String::new();
    if let Json::Object(members) = resource {
        for (k, v) in members {
            // The narrative is `_text`; meta is searched by `_tag`, `_profile` and `_security`.
            if !matches!(k.as_str(), "resourceType" | "text" | "meta") {
                collect_strings(v, &mut content);
            }
        }
    }
    let words = words(&content);
    if !words.is_empty() {
        out.push(Entry::Text {
            param: "_content".to_owned(),
            content: words,
        });
    }
}

fn collect_strings(node: &Json, out: &mut String) {
    if out.len() >= CONTENT_BYTES {
        return;
    }
    match node {
        Json::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Json::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Json::Object(members) => {
            for (k, v) in members {
                if !NOT_CONTENT.contains(&k.as_str()) {
                    collect_strings(v, out);
                }
            }
        }
        _ => {}
    }
}

/// XHTML narrative as plain text: tags dropped (block elements separate words, inline ones such
/// as `<b>` do not), the common entities decoded.
fn strip_markup(div: &str) -> String {
    const INLINE: &[&str] = &[
        "a", "abbr", "b", "big", "cite", "code", "em", "i", "small", "span", "strong", "sub",
        "sup", "u",
    ];
    let mut out = String::with_capacity(div.len());
    let mut tag: Option<String> = None;
    for c in div.chars() {
        match (&mut tag, c) {
            (None, '<') => tag = Some(String::new()),
            (Some(name), '>') => {
                let name = name.trim_start_matches('/');
                let name = name.split([' ', '/', '\t', '\n']).next().unwrap_or("");
                if !INLINE.contains(&name.to_ascii_lowercase().as_str()) {
                    out.push(' ');
                }
                tag = None;
            }
            (Some(name), c) => {
                if name.len() < 16 {
                    name.push(c);
                }
            }
            (None, c) => out.push(c),
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Normalised text with whitespace collapsed to single spaces, cut to [`CONTENT_BYTES`].
pub fn words(text: &str) -> String {
    let norm = normalize(text);
    let mut out = String::with_capacity(norm.len().min(CONTENT_BYTES));
    for w in norm.split_whitespace() {
        if out.len() + w.len() + 1 > CONTENT_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Rows of a two-component composite whose first component is a token, for one item of its
/// base expression (the resource, or for example one `Observation.component`).
fn composite_entries(p: &SearchParam, item: &Json, out: &mut Vec<Entry>) {
    let [(url1, Some(e1)), (url2, Some(e2))] = p.components.as_slice() else {
        return;
    };
    let (Some(c1), Some(c2)) = (REGISTRY.by_url(url1), REGISTRY.by_url(url2)) else {
        return;
    };
    let mut first_rows = Vec::new();
    for n in fhirpath::evaluate(e1, item) {
        if let Item::Node(j, _) = n {
            match c1.kind {
                ParamType::Token => token_entries("", j, &mut first_rows),
                ParamType::Reference => reference_entries("", j, &mut first_rows),
                _ => return,
            }
        }
    }
    // The first component as (system, code): a token, or a reference as `Type/id` (its URL
    // when it names no local resource).
    let firsts: Vec<(String, String)> = first_rows
        .into_iter()
        .filter_map(|e| match e {
            Entry::Token {
                param,
                system,
                code,
            } if param.is_empty() => Some((system, code)),
            Entry::Reference {
                param,
                target_type,
                target_id,
                url,
            } if param.is_empty() => Some((
                String::new(),
                if target_type.is_empty() || target_id.is_empty() {
                    url
                } else {
                    format!("{target_type}/{target_id}")
                },
            )),
            _ => None,
        })
        .collect();
    let mut seconds = Vec::new();
    for n in fhirpath::evaluate(e2, item) {
        let Item::Node(j, _) = n else { continue };
        match c2.kind {
            ParamType::Token => token_entries("", j, &mut seconds),
            ParamType::Quantity => quantity_entries("", j, &mut seconds),
            ParamType::Date => date_entries("", j, &mut seconds),
            ParamType::String => string_entries("", j, &mut seconds),
            ParamType::Number => {
                if let Some(v) = number(j) {
                    seconds.push(Entry::Number {
                        param: String::new(),
                        value: v,
                    });
                }
            }
            _ => {}
        }
    }
    for (system1, code1) in &firsts {
        for sc in &seconds {
            let second = match sc {
                Entry::Token {
                    param,
                    system,
                    code,
                } if param.is_empty() => Second::Token {
                    system: system.clone(),
                    code: code.clone(),
                },
                Entry::Quantity {
                    value,
                    system,
                    code,
                    ..
                } => Second::Quantity {
                    value: *value,
                    system: system.clone(),
                    code: code.clone(),
                },
                Entry::Number { value, .. } => Second::Number(*value),
                Entry::Date { low, high, .. } => Second::Date {
                    low: *low,
                    high: *high,
                },
                Entry::String { param, value, .. } if param.is_empty() => {
                    Second::String(value.clone())
                }
                _ => continue,
            };
            out.push(Entry::Composite {
                param: p.code.clone(),
                system1: system1.clone(),
                code1: code1.clone(),
                second,
            });
        }
    }
}

fn dedup(v: &mut Vec<Entry>) {
    // A resource has tens of rows: comparing each with those before it costs less than hashing
    // (and copying every row into a set of seen ones cost an allocation per string).
    let first: Vec<bool> = (0..v.len()).map(|i| !v[..i].contains(&v[i])).collect();
    let mut first = first.into_iter();
    v.retain(|_| first.next().unwrap_or(true));
}

fn s<'a>(j: &'a Json, key: &str) -> Option<&'a str> {
    j.get_str(key)
}

fn each<'a>(j: &'a Json, key: &str) -> Vec<&'a Json> {
    match j.get(key) {
        Some(Json::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    }
}

fn number(j: &Json) -> Option<f64> {
    match j {
        Json::Number(n) => n.parse().ok(),
        _ => None,
    }
}

fn token(param: &str, system: &str, code: &str, out: &mut Vec<Entry>) {
    out.push(Entry::Token {
        param: param.to_owned(),
        system: system.to_owned(),
        code: code.to_owned(),
    });
}

fn text(param: &str, value: &str, out: &mut Vec<Entry>) {
    out.push(Entry::String {
        param: format!("{param}:text"),
        value: normalize(value),
        exact: value.to_owned(),
    });
}

fn token_entries(param: &str, node: &Json, out: &mut Vec<Entry>) {
    match node {
        Json::String(v) => {
            token(param, "", v, out);
            // An area inside a district (a township's nine digits, a village's twelve) is
            // found by its district's code, and a village by its township's.
            if param == "district" && v.len() > 6 && v.bytes().all(|b| b.is_ascii_digit()) {
                token(param, "", &v[..6], out);
                if v.len() > 9 {
                    token(param, "", &v[..9], out);
                }
            }
        }
        Json::Bool(b) => token(param, "", if *b { "true" } else { "false" }, out),
        Json::Object(_) => {
            // Coding
            if let Some(code) = s(node, "code") {
                token(param, s(node, "system").unwrap_or(""), code, out);
            }
            if let Some(d) = s(node, "display") {
                text(param, d, out);
            }
            // CodeableConcept
            for c in each(node, "coding") {
                if let Some(code) = s(c, "code") {
                    token(param, s(c, "system").unwrap_or(""), code, out);
                }
                if let Some(d) = s(c, "display") {
                    text(param, d, out);
                }
            }
            if let Some(t) = s(node, "text") {
                text(param, t, out);
            }
            // Identifier and ContactPoint
            if let Some(value) = s(node, "value") {
                token(param, s(node, "system").unwrap_or(""), value, out);
                if let Some(ty) = node.get("type") {
                    for c in each(ty, "coding") {
                        if let Some(code) = s(c, "code") {
                            token(
                                &format!("{param}:of-type"),
                                s(c, "system").unwrap_or(""),
                                &format!("{code}|{value}"),
                                out,
                            );
                        }
                    }
                    if let Some(t) = s(ty, "text") {
                        text(param, t, out);
                    }
                }
            }
        }
        _ => {}
    }
}

fn string_entries(param: &str, node: &Json, out: &mut Vec<Entry>) {
    let mut push = |v: &str| {
        out.push(Entry::String {
            param: param.to_owned(),
            value: normalize(v),
            exact: v.to_owned(),
        })
    };
    match node {
        Json::String(v) => push(v),
        Json::Object(_) => {
            // HumanName, Address and other structures: their string parts.
            for key in [
                "text",
                "family",
                "given",
                "prefix",
                "suffix",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                for v in each(node, key) {
                    if let Some(t) = v.as_str() {
                        push(t);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Pinyin spellings of a name: of its text, and of family name followed by given names.
fn pinyin_entries(param: &str, node: &Json, out: &mut Vec<Entry>) {
    let mut names: Vec<String> = Vec::new();
    match node {
        Json::String(v) => names.push(v.clone()),
        Json::Object(_) => {
            if let Some(t) = s(node, "text") {
                names.push(t.to_owned());
            }
            let mut full = s(node, "family").unwrap_or("").to_owned();
            for g in each(node, "given") {
                full.push_str(g.as_str().unwrap_or(""));
            }
            names.push(full);
        }
        _ => {}
    }
    for name in names {
        for spelling in super::pinyin::spellings(&name) {
            out.push(Entry::String {
                param: param.to_owned(),
                value: spelling.clone(),
                exact: spelling,
            });
        }
    }
}

fn date_entries(param: &str, node: &Json, out: &mut Vec<Entry>) {
    let mut push = |low: i64, high: i64| {
        out.push(Entry::Date {
            param: param.to_owned(),
            low,
            high,
        })
    };
    match node {
        Json::String(v) => {
            if let Some((lo, hi)) = clock::period_of(v) {
                push(lo, hi);
            }
        }
        Json::Object(_) => {
            // Period
            let start = s(node, "start").and_then(clock::period_of);
            let end = s(node, "end").and_then(clock::period_of);
            if start.is_some() || end.is_some() {
                push(
                    start.map_or(i64::MIN, |p| p.0),
                    end.map_or(i64::MAX, |p| p.1),
                );
            }
            // Timing
            for e in each(node, "event") {
                if let Some((lo, hi)) = e.as_str().and_then(clock::period_of) {
                    push(lo, hi);
                }
            }
        }
        _ => {}
    }
}

fn reference_entries(param: &str, node: &Json, out: &mut Vec<Entry>) {
    let (reference, declared_type) = match node {
        Json::String(v) => (Some(v.as_str()), None),
        Json::Object(_) => (s(node, "reference"), s(node, "type")),
        _ => (None, None),
    };
    if let Some(r) = reference {
        // Canonical references may carry a version: url|version.
        let url = r.split('|').next().unwrap_or(r);
        let (t, id) = split_reference(url)
            .unwrap_or_else(|| (declared_type.unwrap_or("").to_owned(), String::new()));
        // A plain `Type/id` says nothing its target does not.
        let plain = url.len() == t.len() + 1 + id.len()
            && url.starts_with(t.as_str())
            && url.ends_with(id.as_str())
            && url.as_bytes().get(t.len()) == Some(&b'/');
        out.push(Entry::Reference {
            param: param.to_owned(),
            url: if plain { String::new() } else { url.to_owned() },
            target_type: t,
            target_id: id,
        });
    }
    if let Some(ident) = node.get("identifier")
        && let Some(v) = s(ident, "value")
    {
        token(
            &format!("{param}:identifier"),
            s(ident, "system").unwrap_or(""),
            v,
            out,
        );
    }
}

fn quantity_entries(param: &str, node: &Json, out: &mut Vec<Entry>) {
    let Some(value) = node.get("value").and_then(number) else {
        return;
    };
    let (system, code) = match (s(node, "currency"), s(node, "code")) {
        (Some(cur), _) => ("urn:iso:std:iso:4217", cur),
        (None, Some(c)) => (s(node, "system").unwrap_or(""), c),
        (None, None) => ("", s(node, "unit").unwrap_or("")),
    };
    out.push(Entry::Quantity {
        param: param.to_owned(),
        value,
        system: system.to_owned(),
        code: code.to_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Json {
        let path = format!("{}/fixtures/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        Json::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    fn has(entries: &[Entry], e: &Entry) -> bool {
        entries.contains(e)
    }

    #[test]
    fn patient_example() {
        let p = example("Patient-example.json");
        let e = extract("Patient", &p);
        assert!(has(
            &e,
            &Entry::Token {
                param: "identifier".into(),
                system: "urn:oid:1.2.36.146.595.217.0.1".into(),
                code: "12345".into()
            }
        ));
        assert!(has(
            &e,
            &Entry::Token {
                param: "gender".into(),
                system: "".into(),
                code: "male".into()
            }
        ));
        // `_id` is searched on the resources table: no row of its own.
        assert!(
            !e.iter()
                .any(|x| matches!(x, Entry::Token { param, .. } if param == "_id"))
        );
        assert!(has(
            &e,
            &Entry::String {
                param: "family".into(),
                value: "chalmers".into(),
                exact: "Chalmers".into()
            }
        ));
        assert!(has(
            &e,
            &Entry::String {
                param: "name".into(),
                value: "peter".into(),
                exact: "Peter".into()
            }
        ));
        let birth = clock::period_of("1974-12-25").unwrap();
        assert!(has(
            &e,
            &Entry::Date {
                param: "birthdate".into(),
                low: birth.0,
                high: birth.1
            }
        ));
        assert!(has(
            &e,
            &Entry::Reference {
                param: "organization".into(),
                target_type: "Organization".into(),
                target_id: "1".into(),
                url: String::new()
            }
        ));
        assert!(has(
            &e,
            &Entry::Token {
                param: "identifier:of-type".into(),
                system: "http://terminology.hl7.org/CodeSystem/v2-0203".into(),
                code: "MR|12345".into()
            }
        ));
    }

    #[test]
    fn observation_example() {
        let o = example("Observation-example.json");
        let e = extract("Observation", &o);
        assert!(has(
            &e,
            &Entry::Token {
                param: "code".into(),
                system: "http://loinc.org".into(),
                code: "29463-7".into()
            }
        ));
        assert!(has(
            &e,
            &Entry::Reference {
                param: "subject".into(),
                target_type: "Patient".into(),
                target_id: "example".into(),
                url: String::new()
            }
        ));
        // `patient` is answered from `subject` (a narrowed alias): no rows of its own.
        assert!(
            !e.iter()
                .any(|x| matches!(x, Entry::Reference { param, .. } if param == "patient"))
        );
        assert!(has(
            &e,
            &Entry::Quantity {
                param: "value-quantity".into(),
                value: 185.0,
                system: "http://unitsofmeasure.org".into(),
                code: "[lb_av]".into()
            }
        ));
        assert!(
            e.iter()
                .any(|x| matches!(x, Entry::Date { param, .. } if param == "date"))
        );
        assert!(e.iter().any(|x| matches!(x, Entry::String { param, value, .. } if param == "code:text" && value.contains("body weight"))));
    }

    #[test]
    fn normalization_and_references() {
        assert_eq!(normalize("Élodie ZHĀNG 张伟"), "elodie zhang 张伟");
        assert_eq!(
            split_reference("Patient/1"),
            Some(("Patient".into(), "1".into()))
        );
        assert_eq!(
            split_reference("http://h/fhir/Patient/1/_history/2"),
            Some(("Patient".into(), "1".into()))
        );
        assert_eq!(split_reference("#contained"), None);
        assert_eq!(
            split_reference("http://hl7.org/fhir/ValueSet/x"),
            Some(("ValueSet".into(), "x".into()))
        );
    }

    #[test]
    fn every_official_example_indexes() {
        let dir = format!("{}/fixtures/examples", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let j = Json::parse(&std::fs::read(&path).unwrap()).unwrap();
            let t = j
                .get("resourceType")
                .and_then(Json::as_str)
                .unwrap()
                .to_owned();
            let e = extract(&t, &j);
            assert!(!e.is_empty(), "{}", path.display());
        }
    }
}
