//! Result shaping: `_summary` and `_elements` (returned resources are marked SUBSETTED).

use super::definitions::DEFINITIONS;
use super::json::Json;
use super::outcome::Issue;

/// What part of each resource a search returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Full,
    /// `_summary=true`: the elements marked as summary.
    Summary,
    /// `_summary=text`: text, id, meta and mandatory elements.
    Text,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_summary=count`: no resources, only the total.
    Count,
    /// `_elements=a,b`: these top-level elements plus id, meta and mandatory elements.
    Elements(Vec<String>),
}

/// Parse `_summary` and `_elements`.
pub fn parse(pairs: &[(String, String)]) -> Result<Shape, Issue> {
    let summary = pairs
        .iter()
        .find(|(k, _)| k == "_summary")
        .map(|(_, v)| v.as_str());
    let elements = pairs
        .iter()
        .find(|(k, _)| k == "_elements")
        .map(|(_, v)| v.as_str());
    match (summary, elements) {
        (Some(_), Some(_)) => Err(Issue::error(
            "invalid",
            "_summary and _elements cannot be combined",
        )
        .at("_elements")),
        (None, Some(e)) => {
            let list: Vec<String> = e
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if list.is_empty() {
                return Err(Issue::error("invalid", "_elements names no element").at("_elements"));
            }
            Ok(Shape::Elements(list))
        }
        (Some("true"), None) => Ok(Shape::Summary),
        (Some("text"), None) => Ok(Shape::Text),
        (Some("data"), None) => Ok(Shape::Data),
        (Some("count"), None) => Ok(Shape::Count),
        (Some("false"), None) | (None, None) => Ok(Shape::Full),
        (Some(other), None) => Err(Issue::error(
            "invalid",
            format!("_summary '{other}' is not true, text, data, count or false"),
        )
        .at("_summary")),
    }
}

const SUBSETTED: &str = "SUBSETTED";
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// Shape a stored resource; returns the JSON to send (unchanged for `Full`).
pub fn apply(shape: &Shape, content: String) -> String {
    if matches!(shape, Shape::Full | Shape::Count) {
        return content;
    }
    let Ok(mut tree) = Json::parse(content.as_bytes()) else {
        return content;
    };
    let rt = tree
        .get("resourceType")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_owned();
    let defs = DEFINITIONS.children(&rt);
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let def = defs.iter().find(|d| d.holds(key));
        match shape {
            Shape::Summary => def.is_some_and(|d| d.summary),
            Shape::Text => key == "text" || def.is_some_and(|d| d.required),
            Shape::Data => key != "text",
            Shape::Elements(list) => {
                let bare = key.strip_prefix('_').unwrap_or(key);
                list.iter()
                    .any(|e| e == bare || def.is_some_and(|d| d.name == *e))
                    || def.is_some_and(|d| d.required)
            }
            Shape::Full | Shape::Count => true,
        }
    };
    if let Json::Object(members) = &mut tree {
        members.retain(|(k, _)| keep(k));
    }
    mark_subsetted(&mut tree);
    String::from_utf8(tree.to_bytes()).unwrap_or_default()
}

fn mark_subsetted(tree: &mut Json) {
    let tag = Json::Object(vec![
        (
            "system".to_owned(),
            Json::String(SUBSETTED_SYSTEM.to_owned()),
        ),
        ("code".to_owned(), Json::String(SUBSETTED.to_owned())),
    ]);
    let mut meta = tree.remove("meta").unwrap_or(Json::Object(Vec::new()));
    match meta.get_mut("tag") {
        Some(Json::Array(tags)) => tags.push(tag),
        _ => meta.set_at("tag", Json::Array(vec![tag]), usize::MAX),
    }
    tree.set_at("meta", meta, 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = r#"{"resourceType":"Patient","id":"a","meta":{"versionId":"1"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},"name":[{"family":"Li"}],"photo":[{"url":"http://x"}],"gender":"male","deceasedBoolean":false,"contact":[{"name":{"text":"c"}}]}"#;

    fn keys(s: &str) -> Vec<String> {
        match Json::parse(s.as_bytes()).unwrap() {
            Json::Object(m) => m.into_iter().map(|(k, _)| k).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn shapes() {
        let k = keys(&apply(&Shape::Summary, P.into()));
        assert_eq!(
            k,
            [
                "resourceType",
                "id",
                "meta",
                "name",
                "gender",
                "deceasedBoolean"
            ]
        );
        assert_eq!(
            keys(&apply(&Shape::Text, P.into())),
            ["resourceType", "id", "meta", "text"]
        );
        assert!(!keys(&apply(&Shape::Data, P.into())).contains(&"text".to_owned()));
        let e = apply(&Shape::Elements(vec!["gender".into()]), P.into());
        assert_eq!(keys(&e), ["resourceType", "id", "meta", "gender"]);
        assert!(e.contains("SUBSETTED"));
        assert_eq!(apply(&Shape::Full, P.into()), P);
    }

    #[test]
    fn parsing() {
        let p = |k: &str, v: &str| parse(&[(k.to_owned(), v.to_owned())]);
        assert_eq!(p("_summary", "count").unwrap(), Shape::Count);
        assert_eq!(
            p("_elements", "name,gender").unwrap(),
            Shape::Elements(vec!["name".into(), "gender".into()])
        );
        assert!(p("_summary", "maybe").is_err());
    }
}
