//! Checking a resource on its way in: well-formed JSON, the expected type, and the R4B model.

use super::json::Json;
use super::outcome::Issue;

/// Parse and validate one resource given as JSON bytes.
///
/// `expected_type` is the type named by the URL, when there is one. Every problem is returned
/// as issues with an `expression` that points at the offending element.
pub fn resource(bytes: &[u8], expected_type: Option<&str>) -> Result<Json, Vec<Issue>> {
    let tree = Json::parse(bytes).map_err(|e| {
        vec![Issue::error(
            "structure",
            format!("the body is not valid JSON: {e}"),
        )]
    })?;
    check_tree(&tree, bytes, expected_type)?;
    Ok(tree)
}

/// Validate a resource already parsed into a tree (for example converted from XML or patched).
pub fn tree(tree: &Json, expected_type: Option<&str>) -> Result<(), Vec<Issue>> {
    check_tree(tree, &tree.to_bytes(), expected_type)
}

fn check_tree(tree: &Json, bytes: &[u8], expected_type: Option<&str>) -> Result<(), Vec<Issue>> {
    let Json::Object(_) = tree else {
        return Err(vec![Issue::error(
            "structure",
            "a resource must be a JSON object",
        )]);
    };
    let Some(rt) = tree.get("resourceType").and_then(Json::as_str) else {
        return Err(vec![
            Issue::error("required", "resourceType is missing").at("resourceType"),
        ]);
    };
    if let Some(expected) = expected_type
        && rt != expected
    {
        return Err(vec![
            Issue::error(
                "invalid",
                format!("resourceType '{rt}' does not match the type '{expected}' in the URL"),
            )
            .at("resourceType"),
        ]);
    }
    if !huimin_model::is_resource_type(rt) {
        return Err(vec![
            Issue::error(
                "not-supported",
                format!("'{rt}' is not a FHIR R4B resource type"),
            )
            .at("resourceType"),
        ]);
    }
    if let Some(id) = tree.get("id") {
        match id.as_str() {
            Some(s) if is_valid_id(s) => {}
            _ => {
                return Err(vec![
                    Issue::error("value", "id must be 1-64 characters of A-Z a-z 0-9 - .")
                        .at(format!("{rt}.id")),
                ]);
            }
        }
    }
    let kept = huimin_model::kept(rt, bytes)
        .map_err(|e| vec![Issue::error(issue_code(&e.message), e.message).at(e.path)])?;
    compare(&Path::Root(rt), tree, &kept, true)
        .map_err(|(path, message)| vec![Issue::error(issue_code(&message), message).at(path)])
}

/// Where an element is, built only when an issue names it (formatting every element's path
/// up front was half of the comparison's time).
enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(r) => f.write_str(r),
            Path::Key(p, k) => write!(f, "{p}.{k}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// (where, why) of the first element the model did not keep.
type Mismatch = (String, String);

fn mismatch(path: &Path<'_>, message: impl Into<String>) -> Mismatch {
    (path.to_string(), message.into())
}

/// The first element of the input (`input`, as parsed) that the typed model did not keep
/// (`kept`): unknown, invalid, empty, or of the wrong JSON type.
fn compare(
    path: &Path<'_>,
    input: &Json,
    kept: &serde_json::Value,
    root: bool,
) -> Result<(), Mismatch> {
    use serde_json::Value;
    match (input, kept) {
        (Json::Object(a), Value::Object(b)) => {
            if a.is_empty() {
                return Err(mismatch(path, "an object must not be empty"));
            }
            for (k, v) in a {
                if root && k == "resourceType" {
                    continue;
                }
                let child = Path::Key(path, k);
                match v {
                    Json::Array(a) if a.is_empty() => {
                        return Err(mismatch(&child, "an array must not be empty"));
                    }
                    Json::Object(o) if o.is_empty() => {
                        return Err(mismatch(&child, "an object must not be empty"));
                    }
                    _ => {}
                }
                match b.get(k.as_str()) {
                    Some(w) => compare(&child, v, w, false)?,
                    None if matches!(v, Json::Null) => {
                        return Err(mismatch(&child, "null is not a valid value here"));
                    }
                    None => {
                        return Err(mismatch(
                            &child,
                            format!("unknown element '{k}' or invalid content"),
                        ));
                    }
                }
            }
            Ok(())
        }
        (Json::Array(a), Value::Array(b)) => {
            if a.is_empty() {
                return Err(mismatch(path, "an array must not be empty"));
            }
            if a.len() != b.len() {
                return Err(mismatch(path, "some items of this array are not valid"));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                compare(&Path::Index(path, i), v, w, false)?;
            }
            Ok(())
        }
        // Parsed as the typed model parsed it (serde_json), so that equal means kept.
        (Json::Number(a), Value::Number(b)) => {
            if serde_json::from_str::<f64>(a).ok() == b.as_f64() {
                Ok(())
            } else {
                Err(mismatch(path, "number out of range for this element"))
            }
        }
        (Json::String(a), Value::String(_)) => {
            if a.is_empty() {
                Err(mismatch(path, "a string must not be empty"))
            } else {
                Ok(())
            }
        }
        (Json::Bool(_), Value::Bool(_)) | (Json::Null, Value::Null) => Ok(()),
        (Json::Object(_), _) | (Json::Array(_), _) => {
            Err(mismatch(path, "unexpected structure for this element"))
        }
        _ => Err(mismatch(path, "wrong type for this element")),
    }
}

fn issue_code(message: &str) -> &'static str {
    if message.starts_with("unknown element") || message.contains("unknown field") {
        "structure"
    } else if message.starts_with("missing field") {
        "required"
    } else {
        "value"
    }
}

/// The FHIR id syntax: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_element() {
        let e = resource(
            br#"{"resourceType":"Patient","birthDate":12}"#,
            Some("Patient"),
        )
        .unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("Patient.birthDate"));
        let e = resource(br#"{"resourceType":"Patient"}"#, Some("Observation")).unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("resourceType"));
        let e = resource(br#"{"resourceType":"Patient","id":"a b"}"#, None).unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("Patient.id"));
        let e = resource(
            br#"{"resourceType":"Patient","name":[{"famly":"x"}]}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("Patient.name[0].famly"));
        assert!(resource(b"{", None).is_err());
    }

    #[test]
    fn keeps_decimals_as_written_and_names_what_the_model_dropped() {
        let obs = |value: &str| {
            format!(
                r#"{{"resourceType":"Observation","status":"final","code":{{"text":"t"}},{value}}}"#
            )
        };
        for ok in [
            r#""valueQuantity":{"value":36.60,"unit":"C"}"#,
            r#""valueQuantity":{"value":1e2}"#,
            r#""valueInteger":12"#,
        ] {
            assert!(resource(obs(ok).as_bytes(), None).is_ok(), "{ok}");
        }
        let e = resource(obs(r#""valueFoo":{"value":1}"#).as_bytes(), None).unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("Observation.valueFoo"));
        assert_eq!(e[0].code, "structure");
        let e = resource(obs(r#""note":[]"#).as_bytes(), None).unwrap_err();
        assert_eq!(e[0].expression.as_deref(), Some("Observation.note"));
        let e = resource(
            obs(r#""component":[{"code":{"text":"a"}},{"code":{"text":"b"},"valueQuantity":{"value":1,"x":2}}]"#)
                .as_bytes(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e[0].expression.as_deref(),
            Some("Observation.component[1].valueQuantity.x")
        );
    }

    #[test]
    fn ids() {
        assert!(is_valid_id("abc-1.2"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id("a/b"));
    }
}
