//! Business rules, one module per capability. Services take the store, run transactions and
//! return domain results or [`crate::error::ApiError`].

pub mod access;
pub mod audit;
pub mod bundle;
pub mod bus;
pub mod notify;
pub mod record;
pub mod rekey;
pub mod residents;
pub mod scheduling;
pub mod stats;
pub mod workflow;

use crate::fhir::json::Json;

// Readings of stored resources the services share.

/// The `Type/id` a reference element names (relative references only).
pub(crate) fn reference_of(r: Option<&Json>) -> Option<(&str, &str)> {
    r?.get_str("reference")?.split_once('/')
}

/// The id of the `t` that `tree[key]` refers to (the first of a list).
pub(crate) fn referenced<'a>(tree: &'a Json, key: &str, t: &str) -> Option<&'a str> {
    let r = match tree.get(key)? {
        Json::Array(items) => items.first(),
        one => Some(one),
    };
    match reference_of(r)? {
        (rt, id) if rt == t => Some(id),
        _ => None,
    }
}

/// Whether a coding of the CodeableConcepts `tree[key]` is one `wanted` takes (its system, when
/// it has one, and code).
pub(crate) fn has_coding(
    tree: &Json,
    key: &str,
    wanted: impl Fn(Option<&str>, &str) -> bool,
) -> bool {
    let Some(Json::Array(concepts)) = tree.get(key) else {
        return false;
    };
    concepts.iter().any(|cc| match cc.get("coding") {
        Some(Json::Array(codings)) => codings.iter().any(|c| {
            c.get_str("code")
                .is_some_and(|code| wanted(c.get_str("system"), code))
        }),
        _ => false,
    })
}

/// A stored resource's current content (`None` when it is absent, deleted or unreadable): the
/// registries and workflow resources the services consult (Organizations, Schedules,
/// ServiceRequests).
pub(crate) fn stored(conn: &mut crate::store::Tx<'_>, t: &str, id: &str) -> Option<Json> {
    let rec = record::read_in(conn, t, id).ok()?;
    Json::parse(rec.content.as_bytes()).ok()
}
