//! Sensitive data marked by its codes (`fhir-profiles/sensitive-codes.json`): a resource coded
//! with a listed ICD-10 code (mental health, substance use, HIV, sexually transmitted disease,
//! reproductive health) is labelled in `meta.security`, so that the consent engine withholds it
//! like data its sender labelled (see `services::consent`).

use std::sync::OnceLock;

use serde::Deserialize;

use super::index::Entry;
use super::json::Json;

static RAW: &str = include_str!("../../fhir-profiles/sensitive-codes.json");

#[derive(Debug, Deserialize)]
struct Lists {
    label_system: String,
    systems: Vec<String>,
    labels: Vec<List>,
}

#[derive(Debug, Deserialize)]
struct List {
    label: String,
    display: String,
    prefixes: Vec<String>,
}

fn lists() -> &'static Lists {
    static LISTS: OnceLock<Lists> = OnceLock::new();
    LISTS.get_or_init(|| {
        #[expect(
            clippy::expect_used,
            reason = "the embedded file is checked by a unit test"
        )]
        serde_json::from_str(RAW).expect("fhir-profiles/sensitive-codes.json is valid")
    })
}

/// The labels a resource's index rows call for by their codes, and which it lacks.
fn missing(tree: &Json, entries: &[Entry]) -> Vec<&'static List> {
    let l = lists();
    let has: Vec<&str> = match tree.get("meta").and_then(|m| m.get("security")) {
        Some(Json::Array(items)) => items.iter().filter_map(|c| c.get_str("code")).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<&'static List> = Vec::new();
    for e in entries {
        let Entry::Token { system, code, .. } = e else {
            continue;
        };
        if !l.systems.iter().any(|s| s == system) {
            continue;
        }
        for list in &l.labels {
            if list.prefixes.iter().any(|p| code.starts_with(p.as_str()))
                && !has.contains(&list.label.as_str())
                && !out.iter().any(|o| o.label == list.label)
            {
                out.push(list);
            }
        }
    }
    out
}

/// Label `tree` (a stamped resource) for the sensitive codes its index rows show; whether it
/// changed (its index rows are then to be computed again).
pub fn label(tree: &mut Json, entries: &[Entry]) -> bool {
    let add = missing(tree, entries);
    if add.is_empty() {
        return false;
    }
    let system = &lists().label_system;
    let mut meta = tree.remove("meta").unwrap_or(Json::Object(Vec::new()));
    let mut security = match meta.remove("security") {
        Some(Json::Array(items)) => items,
        _ => Vec::new(),
    };
    for list in add {
        security.push(Json::Object(vec![
            ("system".to_owned(), Json::String(system.clone())),
            ("code".to_owned(), Json::String(list.label.clone())),
            ("display".to_owned(), Json::String(list.display.clone())),
        ]));
    }
    let at = match &meta {
        Json::Object(m) => m.len(),
        _ => 0,
    };
    meta.set_at("security", Json::Array(security), at);
    tree.set_at("meta", meta, 2);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_load_and_label_by_prefix() {
        assert!(lists().labels.len() >= 5);
        let mut tree = Json::parse(
            br#"{"resourceType":"Condition","id":"c","meta":{"versionId":"1"},
                "code":{"coding":[{"system":"urn:oid:2.16.156.10011.2.3.3.11","code":"F10.2"}]}}"#,
        )
        .unwrap();
        let entries = crate::fhir::index::extract("Condition", &tree);
        assert!(label(&mut tree, &entries));
        let codes: Vec<String> = match tree.get("meta").and_then(|m| m.get("security")) {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|c| c.get_str("code").map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        assert_eq!(codes, ["PSY", "SUD"]);
        // Already labelled: nothing to add.
        let entries = crate::fhir::index::extract("Condition", &tree);
        assert!(!label(&mut tree, &entries));
        let mut plain = Json::parse(
            br#"{"resourceType":"Condition","code":{"coding":[{"system":"urn:oid:2.16.156.10011.2.3.3.11","code":"I10"}]}}"#,
        )
        .unwrap();
        let entries = crate::fhir::index::extract("Condition", &plain);
        assert!(!label(&mut plain, &entries));
    }
}
