//! OperationOutcome building.

use super::json::Json;

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: &'static str,
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: &'static str, text: impl Into<String>) -> Issue {
        Issue {
            severity: "error",
            code,
            diagnostics: text.into(),
            expression: None,
        }
    }

    pub fn fatal(code: &'static str, text: impl Into<String>) -> Issue {
        Issue {
            severity: "fatal",
            ..Issue::error(code, text)
        }
    }

    pub fn information(code: &'static str, text: impl Into<String>) -> Issue {
        Issue {
            severity: "information",
            ..Issue::error(code, text)
        }
    }

    /// Point the issue at an element (a FHIRPath expression such as `Patient.name[0].given`).
    /// The same issue with `prefix: ` before its text.
    pub fn with_prefix(mut self, prefix: &str) -> Issue {
        self.diagnostics = format!("{prefix}: {}", self.diagnostics);
        self
    }

    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        let e = expression.into();
        if !e.is_empty() {
            self.expression = Some(e);
        }
        self
    }
}

#[derive(Debug, Clone)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn to_json(&self) -> Json {
        let issues = self
            .issues
            .iter()
            .map(|i| {
                let mut m = vec![
                    ("severity".to_owned(), Json::String(i.severity.to_owned())),
                    ("code".to_owned(), Json::String(i.code.to_owned())),
                    (
                        "diagnostics".to_owned(),
                        Json::String(i.diagnostics.clone()),
                    ),
                ];
                if let Some(e) = &i.expression {
                    m.push((
                        "expression".to_owned(),
                        Json::Array(vec![Json::String(e.clone())]),
                    ));
                }
                Json::Object(m)
            })
            .collect();
        Json::Object(vec![
            (
                "resourceType".to_owned(),
                Json::String("OperationOutcome".to_owned()),
            ),
            ("issue".to_owned(), Json::Array(issues)),
        ])
    }
}
