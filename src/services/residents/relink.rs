//! `huimin residents relink`: data written before the resident index existed, linked.

use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::protect;
use crate::services::access::Guard;
use crate::services::record;
use crate::services::residents::mpi;
use crate::store::record as repo;
use crate::store::{Store, Tx};

/// Resources per transaction when linking existing data.
const RELINK_BATCH: i64 = 500;

/// Link data written before the resident index existed: every institution Patient without a
/// golden resident gets one (a new version with its link), then every resource of the
/// Patient compartment without a golden resident gets its own. Returns (Patients, resources)
/// linked. Safe to run again: what is linked is skipped.
pub fn relink_existing(store: &Store) -> Result<(usize, usize), ApiError> {
    let patients = relink_type(store, "Patient", |conn, _, id, tree| {
        record::update_in(conn, &Guard::platform(), "Patient", id, tree, None, false)?;
        Ok(true)
    })?;
    let mut resources = 0;
    for t in mpi::resident_types() {
        if t == "Patient" {
            continue;
        }
        resources += relink_type(store, t, |conn, t, id, tree| {
            // In the index's form, where identifiers are compared.
            let blinded =
                protect::blinded(conn.protection(), t, &tree).map_err(ApiError::internal)?;
            let entries = crate::fhir::index::extract(t, blinded.as_ref().unwrap_or(&tree));
            match mpi::resident_of(conn, t, id, &entries, &tree)? {
                Some(g) => {
                    repo::set_resident(conn, t, id, &g)?;
                    Ok(true)
                }
                None => Ok(false),
            }
        })?;
    }
    Ok((patients, resources))
}

/// Link, page by page (one transaction each), the resources of type `t` without a golden
/// resident; `link` says whether it linked one. Returns how many it linked.
fn relink_type(
    store: &Store,
    t: &str,
    link: fn(&mut Tx<'_>, &str, &str, Json) -> Result<bool, ApiError>,
) -> Result<usize, ApiError> {
    let mut linked = 0;
    let mut after = String::new();
    loop {
        let (from, t) = (after.clone(), t.to_owned());
        let (n, last) = store.write(move |conn| {
            record::linked(conn, |conn| {
                let page =
                    crate::store::record::search::without_resident(conn, &t, &from, RELINK_BATCH)?;
                let mut n = 0;
                for (id, content) in &page {
                    let tree = Json::parse(content.as_bytes()).map_err(ApiError::internal)?;
                    if link(conn, &t, id, tree)? {
                        n += 1;
                    }
                }
                Ok((n, page.last().map(|(id, _)| id.clone())))
            })
        })?;
        linked += n;
        match last {
            Some(l) => after = l,
            None => return Ok(linked),
        }
    }
}
