//! Bundle building for history and search results.
//!
//! Entries embed stored resource JSON as [`Json::Raw`] so that a JSON response is assembled
//! from stored bytes without parsing them.

use super::json::Json;

/// A Bundle link (`self`, `next`, …).
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

/// A JSON string.
pub fn s(v: impl Into<String>) -> Json {
    Json::String(v.into())
}

/// A JSON object from (member, value) pairs, in order.
pub fn obj(members: Vec<(&str, Json)>) -> Json {
    Json::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// Build a Bundle of `bundle_type` with links, entries and an optional total.
pub fn bundle(
    bundle_type: &str,
    id: &str,
    timestamp: &str,
    total: Option<usize>,
    links: Vec<Link>,
    entries: Vec<Json>,
) -> Json {
    let mut m = vec![
        ("resourceType", s("Bundle")),
        ("id", s(id)),
        ("meta", obj(vec![("lastUpdated", s(timestamp))])),
        ("type", s(bundle_type)),
    ];
    if let Some(t) = total {
        m.push(("total", Json::Number(t.to_string())));
    }
    if !links.is_empty() {
        let links = links
            .into_iter()
            .map(|l| {
                obj(vec![
                    ("relation", s(l.relation)),
                    ("url", Json::String(l.url)),
                ])
            })
            .collect();
        m.push(("link", Json::Array(links)));
    }
    if !entries.is_empty() {
        m.push(("entry", Json::Array(entries)));
    }
    obj(m)
}

/// A history entry. `content` is the stored JSON (None for a deletion).
#[expect(
    clippy::too_many_arguments,
    reason = "one entry's fields, named at the call site"
)]
pub fn history_entry(
    full_url: &str,
    content: Option<String>,
    method: &str,
    request_url: &str,
    status: &str,
    etag: &str,
    last_modified: &str,
    created: bool,
) -> Json {
    let mut m = vec![("fullUrl", s(full_url))];
    if let Some(c) = content {
        m.push(("resource", Json::Raw(c)));
    }
    let http_method = if method == "PATCH" { "PATCH" } else { method };
    m.push((
        "request",
        obj(vec![("method", s(http_method)), ("url", s(request_url))]),
    ));
    let status = if created { "201 Created" } else { status };
    m.push((
        "response",
        obj(vec![
            ("status", s(status)),
            ("etag", s(etag)),
            ("lastModified", s(last_modified)),
        ]),
    ));
    obj(m)
}

/// A search entry with `search.mode` `match` or `include`.
pub fn search_entry(full_url: &str, content: String, mode: &str) -> Json {
    obj(vec![
        ("fullUrl", s(full_url)),
        ("resource", Json::Raw(content)),
        ("search", obj(vec![("mode", s(mode))])),
    ])
}
