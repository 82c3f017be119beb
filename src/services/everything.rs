//! The longitudinal record (`Patient/[id]/$everything`): every live resource of a resident from
//! every institution, found through the `_resident` rows of the golden resident (one indexed
//! lookup), with the Organizations, Practitioners, PractitionerRoles and Locations they refer to.

use std::collections::HashSet;

use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::mpi;
use crate::store::residents::RESIDENT_PARAM;
use crate::store::{DbConn, Store, index, resources as repo, search as store_search};

/// What `$everything` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Only these types (`_type`); all when empty.
    pub types: Vec<String>,
    /// Changed at or after (`_since`, ms).
    pub since: Option<i64>,
    /// Care between (`start`, `end`, ms; open ends are `i64::MIN` / `i64::MAX`).
    pub care: Option<(i64, i64)>,
    /// Resume after this (type, id) (the `next` link's cursor).
    pub after: Option<(String, String)>,
    pub count: i64,
}

/// One page: the resident's resources (type, id, JSON), the registry resources they refer to,
/// and where the next page starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub golden: String,
    pub found: Vec<(String, String, String)>,
    pub included: Vec<(String, String, String)>,
    pub next: Option<(String, String)>,
}

/// Types a page includes when its resources refer to them.
const REFERENCED: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
];

/// The golden resident of `Patient/id` (itself when it is one): 404 or 410 like a read.
pub fn golden_of(conn: &mut DbConn, id: &str) -> Result<String, ApiError> {
    let rec = super::record::read_in(conn, "Patient", id)?;
    let tree = Json::parse(rec.content.as_bytes()).map_err(ApiError::internal)?;
    if mpi::is_golden(&tree) {
        return Ok(id.to_owned());
    }
    Ok(
        index::reference_of(conn, "Patient", id, RESIDENT_PARAM, "Patient")?
            .unwrap_or_else(|| id.to_owned()),
    )
}

/// `Patient/[id]/$everything`, one page.
pub fn everything(store: &Store, id: &str, req: &Request) -> Result<Page, ApiError> {
    store.read(|conn| {
        let golden = golden_of(conn, id)?;
        let want = usize::try_from(req.count).unwrap_or(usize::MAX);
        let mut found = store_search::resident_members(
            conn,
            &golden,
            &req.types,
            req.since,
            req.care,
            req.after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
            req.count.saturating_add(1),
        )?;
        let next = if found.len() > want {
            found.truncate(want);
            found.last().map(|(t, id, _)| (t.clone(), id.clone()))
        } else {
            None
        };
        let mut seen: HashSet<(String, String)> = found
            .iter()
            .map(|(t, id, _)| (t.clone(), id.clone()))
            .collect();
        let mut included = Vec::new();
        for (_, _, content) in &found {
            let Ok(tree) = Json::parse(content.as_bytes()) else {
                continue;
            };
            let mut refs = Vec::new();
            references(&tree, &mut refs);
            for (t, rid) in refs {
                if !seen.insert((t.clone(), rid.clone())) {
                    continue;
                }
                if let Some(c) = repo::find_current(conn, &t, &rid)?
                    && !c.deleted
                {
                    included.push((t, rid, c.content));
                }
            }
        }
        Ok(Page {
            golden,
            found,
            included,
            next,
        })
    })
}

/// Relative references `Type/id` to the [`REFERENCED`] types anywhere in `node`.
fn references(node: &Json, out: &mut Vec<(String, String)>) {
    match node {
        Json::Object(members) => {
            for (k, v) in members {
                if k == "reference"
                    && let Some(r) = v.as_str()
                    && let Some((t, id)) = r.split_once('/')
                    && REFERENCED.contains(&t)
                    && !id.contains('/')
                {
                    out.push((t.to_owned(), id.to_owned()));
                } else {
                    references(v, out);
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}
