//! Search criteria understood by conditional create, update, delete and the basic type search:
//! `_id` and `identifier` (token), with `,` for OR and repeated parameters for AND.
//! The full search engine (every parameter type) replaces this module's evaluation later.

use super::outcome::Issue;

/// One token value: `system|code`, `|code` (no system), `code` (any system), `system|` (any code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    /// `None` = any system; `Some("")` = no system.
    pub system: Option<String>,
    /// `None` = any code.
    pub code: Option<String>,
}

/// One parameter with its OR-ed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    Id(Vec<String>),
    Identifier(Vec<TokenValue>),
}

/// Parameters that shape results rather than select them.
pub const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_format",
    "_pretty",
    "_summary",
    "_elements",
    "_total",
    "_cursor",
];

/// Most values one parameter may OR together.
const MAX_OR_VALUES: usize = 100;

/// Parse selection criteria from query pairs; result-shaping parameters are skipped.
pub fn parse(pairs: &[(String, String)]) -> Result<Vec<Criterion>, Issue> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        if RESULT_PARAMS.contains(&k.as_str()) {
            continue;
        }
        let values: Vec<&str> = split_or(v);
        if values.len() > MAX_OR_VALUES {
            return Err(Issue::error(
                "too-costly",
                format!("too many values for '{k}' (at most {MAX_OR_VALUES})"),
            )
            .at(k.as_str()));
        }
        if values.iter().any(|s| s.is_empty()) {
            return Err(Issue::error("invalid", format!("empty value for '{k}'")).at(k.as_str()));
        }
        match k.as_str() {
            "_id" => out.push(Criterion::Id(values.iter().map(|s| unescape(s)).collect())),
            "identifier" => out.push(Criterion::Identifier(
                values.iter().map(|s| token(s)).collect(),
            )),
            other => {
                return Err(Issue::error(
                    "not-supported",
                    format!("search parameter '{other}' is not supported here (supported: _id, identifier)"),
                )
                .at(other));
            }
        }
    }
    Ok(out)
}

/// Split on commas not escaped with a backslash.
fn split_or(v: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let bytes = v.as_bytes();
    let mut i = 0;
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

fn token(s: &str) -> TokenValue {
    // The first unescaped '|' separates system and code.
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => {
                let system = unescape(&s[..i]);
                let code = unescape(&s[i + 1..]);
                return TokenValue {
                    system: Some(system),
                    code: (!code.is_empty()).then_some(code),
                };
            }
            _ => i += 1,
        }
    }
    TokenValue {
        system: None,
        code: Some(unescape(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &[(&str, &str)]) -> Result<Vec<Criterion>, Issue> {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse(&pairs)
    }

    #[test]
    fn tokens() {
        let c = p(&[("identifier", "urn:x|1,|2,3,urn:y|,a\\|b")]).unwrap();
        let Criterion::Identifier(v) = &c[0] else {
            panic!()
        };
        assert_eq!(
            v[0],
            TokenValue {
                system: Some("urn:x".into()),
                code: Some("1".into())
            }
        );
        assert_eq!(
            v[1],
            TokenValue {
                system: Some(String::new()),
                code: Some("2".into())
            }
        );
        assert_eq!(
            v[2],
            TokenValue {
                system: None,
                code: Some("3".into())
            }
        );
        assert_eq!(
            v[3],
            TokenValue {
                system: Some("urn:y".into()),
                code: None
            }
        );
        assert_eq!(
            v[4],
            TokenValue {
                system: None,
                code: Some("a|b".into())
            }
        );
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert_eq!(
            p(&[("name", "x")]).unwrap_err().expression.as_deref(),
            Some("name")
        );
        assert!(p(&[("_id", "")]).is_err());
        assert!(p(&[("_count", "5"), ("_id", "a,b")]).is_ok());
    }
}
