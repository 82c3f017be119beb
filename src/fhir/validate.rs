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
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        vec![Issue::error(
            "structure",
            format!("the body is not valid JSON: {e}"),
        )]
    })?;
    huimin_model::check(rt, bytes, &value)
        .map_err(|e| vec![Issue::error(issue_code(&e.message), e.message).at(e.path)])
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
    fn ids() {
        assert!(is_valid_id("abc-1.2"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id("a/b"));
    }
}
