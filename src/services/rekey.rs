//! Moving protected identifiers onto the active key (`huimin keys reencrypt`) and checking
//! that a key protects nothing any more (`huimin keys retire`). See [`crate::protect`].
//!
//! Re-encryption walks the live resources type by type and the stored versions by position,
//! a page per transaction. A resource whose protected values are in the clear or sealed under
//! an older key is sealed again under the active key and its index rows are rebuilt (their
//! blind values change with the key); a golden resident's resident key moves to its new blind
//! form. A resource updated meanwhile by a server is left as that server wrote it. Running it
//! again finishes what an interrupted run left.

use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::protect::{self, Protection};
use crate::services::residents::mpi;
use crate::store::record::index;
use crate::store::record::raw;
use crate::store::{Store, Tx};

const PAGE: i64 = 500;

/// What a re-encryption changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Live resources sealed again (with their index rows rebuilt).
    pub resources: usize,
    /// Stored versions sealed again.
    pub versions: usize,
    /// Resident keys moved to the active key's blind form.
    pub resident_keys: usize,
    /// Conditional-create keys of older keys dropped.
    pub stale_keys: usize,
}

/// Seal every protected identifier of `store` under its active key.
pub fn reencrypt(store: &Store) -> Result<Report, ApiError> {
    let Some(active) = store.protection().active().map(|k| k.id.clone()) else {
        return Err(ApiError::bad_request(
            "identifiers are not protected (protect_identifiers is off): nothing to re-encrypt",
        ));
    };
    let mut report = Report::default();
    let types = store.read(|c| raw::types(c).map_err(ApiError::from))?;
    for t in types {
        let mut after = String::new();
        loop {
            let (t2, from, active2) = (t.clone(), after.clone(), active.clone());
            let (n, keys, last) = store.write(move |c| current_page(c, &t2, &from, &active2))?;
            report.resources += n;
            report.resident_keys += keys;
            match last {
                Some(l) => after = l,
                None => break,
            }
        }
    }
    let mut after = 0;
    loop {
        let active2 = active.clone();
        let (n, last) = store.write(move |c| versions_page(c, after, &active2))?;
        report.versions += n;
        match last {
            Some(l) => after = l,
            None => break,
        }
    }
    let old: Vec<String> = store
        .protection()
        .keys()
        .iter()
        .filter(|k| k.id != active)
        .map(|k| protect::blind_marker(&k.id))
        .collect();
    report.stale_keys = store.write(move |c| {
        old.iter().try_fold(0, |n, m| {
            Ok::<_, ApiError>(n + raw::drop_keys_holding(c, m)?)
        })
    })?;
    Ok(report)
}

/// One page of live resources: (sealed again, resident keys moved, last id seen).
fn current_page(
    conn: &mut Tx<'_>,
    t: &str,
    after: &str,
    active: &str,
) -> Result<(usize, usize, Option<String>), ApiError> {
    let rows = raw::page(conn, t, after, PAGE)?;
    let last = rows.last().map(|(id, _, _)| id.clone());
    let (mut sealed, mut keys) = (0, 0);
    for (id, version, stored) in rows {
        let Some((tree, g)) = guarded(conn.protection(), t, &stored)? else {
            continue;
        };
        if t == "Patient" && mpi::is_golden(&tree) {
            keys += move_resident_key(conn, &tree)?;
        }
        if !protect::needs_rekey(&stored, active) {
            continue;
        }
        let content = String::from_utf8(g.sealed.to_bytes()).map_err(ApiError::internal)?;
        if raw::set_current(conn, t, &id, version, &content)? {
            let entries = crate::fhir::index::extract(t, &g.blinded);
            index::replace(conn, t, &id, &entries, false)?;
            sealed += 1;
        }
    }
    Ok((sealed, keys, last))
}

/// One page of stored versions: (sealed again, last position seen).
fn versions_page(
    conn: &mut Tx<'_>,
    after: i64,
    active: &str,
) -> Result<(usize, Option<i64>), ApiError> {
    let rows = raw::versions(conn, after, PAGE)?;
    let last = rows.last().map(|(seq, _, _)| *seq);
    let mut sealed = 0;
    for (seq, t, stored) in rows {
        if !protect::needs_rekey(&stored, active) {
            continue;
        }
        if let Some((_, g)) = guarded(conn.protection(), &t, &stored)? {
            let content = String::from_utf8(g.sealed.to_bytes()).map_err(ApiError::internal)?;
            raw::set_version(conn, seq, &content)?;
            sealed += 1;
        }
    }
    Ok((sealed, last))
}

/// The plain tree of stored JSON and its protected forms, when it holds protected values.
fn guarded(
    p: &Protection,
    t: &str,
    stored: &str,
) -> Result<Option<(Json, protect::Guarded)>, ApiError> {
    let plain = protect::reveal(p, stored.to_owned())?;
    let tree = Json::parse(plain.as_bytes()).map_err(ApiError::internal)?;
    match protect::guard(p, t, &tree) {
        Ok(Some(g)) => Ok(Some((tree, g))),
        Ok(None) => Ok(None),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Move a golden resident's resident key (`resident|<number>`) from its clear or older blind
/// forms to the active key's; rows moved.
fn move_resident_key(conn: &mut Tx<'_>, tree: &Json) -> Result<usize, ApiError> {
    let Some(n) = mpi::person_number(tree) else {
        return Ok(0);
    };
    let p = conn.protection();
    let forms = (|| {
        let active = p.active().map(|k| k.blind(&n)).transpose()?;
        let old = p
            .keys()
            .iter()
            .map(|k| k.blind(&n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, crate::crypto::CryptoError>((active, old))
    })()
    .map_err(ApiError::internal)?;
    let (Some(active), old) = forms else {
        return Ok(0);
    };
    let new = format!("resident|{active}");
    let mut moved = 0;
    for from in old.iter().filter(|b| **b != active).cloned().chain([n]) {
        moved += raw::rename_key(conn, &format!("resident|{from}"), &new)?;
    }
    Ok(moved)
}

/// Stored rows that still hold values sealed or blinded under key `id` (audit records, which
/// are never rewritten, aside).
pub fn rows_under(store: &Store, id: &str) -> Result<i64, ApiError> {
    let (sealed, blind) = (protect::sealed_marker(id), protect::blind_marker(id));
    store
        .read(|c| Ok::<_, ApiError>(raw::rows_holding(c, &sealed)? + raw::rows_holding(c, &blind)?))
}

/// Seals of the audit chain made under key `id`: the key verifies them, so it stays in the
/// keyring until retention has purged them (seals are never rewritten).
pub fn seals_under(store: &Store, id: &str) -> Result<i64, ApiError> {
    let chained = format!("k:{id}:");
    store.read(|c| Ok::<_, ApiError>(crate::store::audit::seals_under(c, &chained)?))
}
