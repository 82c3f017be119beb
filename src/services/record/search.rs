//! Search by type and across types, with `_include` / `_revinclude`: the caller's access
//! narrows the query inside the database, before paging and counting.

use std::collections::HashSet;

use super::{After, residents};
use crate::error::ApiError;
use crate::fhir::search::{Clause, Include, Query, SortKey};
use crate::services::access::{AccessFilter, Readable};
use crate::services::audit::Accessed;
use crate::store::record::search as store_search;
use crate::store::{Store, Tx};

/// One page of search results.
pub struct SearchPage {
    /// Matches as (id, stored JSON), in the requested order.
    pub matches: Vec<(String, String)>,
    /// Resources added by `_include` / `_revinclude`, as (type, id, stored JSON).
    pub included: Vec<(String, String, String)>,
    /// Where the next page starts, when there is one.
    pub next: Option<After>,
    /// The number of matches, when asked for.
    pub total: Option<i64>,
    /// What the page shows, for its audit events: (`Type/id`, resident), matches first.
    pub touched: Accessed,
}

/// What a search asks for beyond its selection criteria.
pub struct SearchRequest {
    pub criteria: Query,
    /// What the caller may see (applied to matches and includes alike).
    pub access: AccessFilter,
    /// The types the caller's token may read (includes of other types are left out).
    pub readable: Readable,
    pub sort: Vec<SortKey>,
    pub includes: Vec<Include>,
    pub after: Option<After>,
    pub count: i64,
    pub total: bool,
}

/// A resource found by a search across types: (type, id, stored JSON).
pub type Found = (String, String, String);

/// A page of a search across types.
pub struct SystemPage {
    pub found: Vec<Found>,
    /// The (type, id) the page ends with, when another page follows.
    pub next: Option<(String, String)>,
    /// What the page shows, for its audit events: (`Type/id`, resident).
    pub touched: Accessed,
}

/// A page of a system-wide search (`GET [base]?_type=…`), of what the caller may see: per type,
/// in type order, then id order; `after` is the (type, id) the previous page ended with, and so is the cursor returned.
pub fn search_system(
    store: &Store,
    access: &AccessFilter,
    per_type: &[(String, Query)],
    after: Option<(String, String)>,
    count: i64,
) -> Result<SystemPage, ApiError> {
    store.read(|conn| {
        let want = usize::try_from(count).unwrap_or(usize::MAX);
        let mut out: Vec<Found> = Vec::new();
        for (t, query) in per_type {
            let resume = match &after {
                Some((at, _)) if t < at => continue,
                Some((at, id)) if t == at => Some(After::Id(id.clone())),
                _ => None,
            };
            let room = i64::try_from(want + 1 - out.len()).unwrap_or(i64::MAX);
            let query = access.restrict(t, query);
            for (id, content) in store_search::run(conn, t, &query, &[], resume.as_ref(), room)? {
                out.push((t.clone(), id, content));
            }
            if out.len() > want {
                break;
            }
        }
        let next = if out.len() > want {
            out.truncate(want);
            out.last().map(|(t, id, _)| (t.clone(), id.clone()))
        } else {
            None
        };
        let keys: Vec<(&str, &str)> = out
            .iter()
            .map(|(t, id, _)| (t.as_str(), id.as_str()))
            .collect();
        let touched = residents(conn, &keys)?;
        Ok(SystemPage {
            found: out,
            next,
            touched,
        })
    })
}

/// Rounds of `:iterate` and resources included at most, per page.
const INCLUDE_ROUNDS: usize = 3;
const MAX_INCLUDED: usize = 1000;

/// Live resources matching the criteria, a page at a time in the requested order (keyset
/// paging), with the resources `_include` and `_revinclude` ask for (each at most once).
pub fn search(store: &Store, t: &str, req: &SearchRequest) -> Result<SearchPage, ApiError> {
    req.access.may_search(t)?;
    // What the caller may not see is filtered inside the query, before paging and counting.
    let criteria = req.access.restrict(t, &req.criteria);
    store.read(|conn| {
        let limit = usize::try_from(req.count).unwrap_or(usize::MAX);
        let mut matches = store_search::run(
            conn,
            t,
            &criteria,
            &req.sort,
            req.after.as_ref(),
            req.count + 1,
        )?;
        let more = matches.len() > limit;
        matches.truncate(limit);
        let next = match matches.last() {
            Some((last, _)) if more => Some(if req.sort.is_empty() {
                After::Id(last.clone())
            } else {
                After::Sorted(
                    store_search::sort_values(conn, t, &req.sort, last)?,
                    last.clone(),
                )
            }),
            _ => None,
        };
        let total = if req.total {
            Some(store_search::count(conn, t, &criteria)?)
        } else {
            None
        };
        let included = if req.includes.is_empty() || matches.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<String> = matches.iter().map(|(id, _)| id.clone()).collect();
            include(conn, t, ids, &req.includes, &req.access, &req.readable)?
        };
        let keys: Vec<(&str, &str)> = matches
            .iter()
            .map(|(id, _)| (t, id.as_str()))
            .chain(
                included
                    .iter()
                    .map(|(ty, id, _)| (ty.as_str(), id.as_str())),
            )
            .collect();
        let touched = residents(conn, &keys)?;
        Ok(SearchPage {
            matches,
            included,
            next,
            total,
            touched,
        })
    })
}

fn include(
    conn: &mut Tx<'_>,
    t: &str,
    ids: Vec<String>,
    includes: &[Include],
    access: &AccessFilter,
    readable: &Readable,
) -> Result<Vec<(String, String, String)>, ApiError> {
    let mut seen: HashSet<(String, String)> =
        ids.iter().map(|id| (t.to_owned(), id.clone())).collect();
    let mut frontier: Vec<(String, String)> = seen.iter().cloned().collect();
    let mut out = Vec::new();
    for round in 0..INCLUDE_ROUNDS {
        let mut found: Vec<(String, String)> = Vec::new();
        for inc in includes.iter().filter(|i| round == 0 || i.iterate) {
            let by_type = |ty: &str| -> Vec<String> {
                frontier
                    .iter()
                    .filter(|(ft, _)| ft == ty)
                    .map(|(_, id)| id.clone())
                    .collect()
            };
            if inc.reverse {
                for target_type in frontier
                    .iter()
                    .map(|(ft, _)| ft.clone())
                    .collect::<HashSet<_>>()
                {
                    let targets = by_type(&target_type);
                    for id in store_search::referring(
                        conn,
                        &inc.source,
                        inc.param.as_deref(),
                        &target_type,
                        &targets,
                    )? {
                        found.push((inc.source.clone(), id));
                    }
                }
            } else {
                let sources: Vec<String> = if inc.source.is_empty() {
                    frontier
                        .iter()
                        .map(|(ft, _)| ft.clone())
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect()
                } else {
                    vec![inc.source.clone()]
                };
                for src in sources {
                    let src_ids = by_type(&src);
                    if src_ids.is_empty() {
                        continue;
                    }
                    found.extend(store_search::references_from(
                        conn,
                        &src,
                        &src_ids,
                        inc.param.as_deref(),
                        inc.target.as_deref(),
                    )?);
                }
            }
        }
        let fresh: Vec<(String, String)> = found
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        let mut types: Vec<&String> = fresh.iter().map(|(ty, _)| ty).collect();
        types.sort();
        types.dedup();
        for ty in types.into_iter().filter(|ty| readable.allows(ty)) {
            let ids: Vec<String> = fresh
                .iter()
                .filter(|(ft, _)| ft == ty)
                .map(|(_, id)| id.clone())
                .collect();
            let mut visible = Query {
                clauses: vec![Clause::Id(ids)],
                ignored: Vec::new(),
            };
            visible.clauses.extend(access.clause(ty));
            for (id, content) in store_search::run(conn, ty, &visible, &[], None, i64::MAX)? {
                if out.len() >= MAX_INCLUDED {
                    return Ok(out);
                }
                out.push((ty.clone(), id, content));
            }
        }
        frontier = fresh;
    }
    Ok(out)
}
