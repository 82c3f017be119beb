//! Reading stored records for a caller: `read` and `vread` through the caller's access (a
//! record it may not see answers as an absent one, deleted or not), reads inside a write's
//! transaction, and the residents of what a request returned, for its audit events.

use super::{Record, gone, not_found};
use crate::error::{ApiError, RecordError};
use crate::services::access::AccessFilter;
use crate::services::audit::{self, Accessed};
use crate::store::record as repo;
use crate::store::{Store, Tx};

/// The audit view of resources given as (type, id): (`Type/id`, golden resident), in the
/// given order (a resource that no longer exists has no resident).
pub fn residents(
    conn: &mut Tx<'_>,
    resources: &[(&str, &str)],
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (t, id) in resources {
        by_type.entry(t).or_default().push(id);
    }
    let mut found = std::collections::HashMap::new();
    for (t, ids) in by_type {
        for (id, resident) in repo::residents_of(conn, t, &ids)? {
            found.insert(format!("{t}/{id}"), resident);
        }
    }
    Ok(resources
        .iter()
        .map(|(t, id)| {
            let key = format!("{t}/{id}");
            let resident = found.get(&key).cloned().flatten();
            (key, resident)
        })
        .collect())
}

/// [`residents`] in a read transaction of its own.
pub fn residents_in(store: &Store, resources: &[(&str, &str)]) -> Result<Accessed, ApiError> {
    store.read(|conn| residents(conn, resources))
}

/// `GET [type]/[id]` for a caller with `access`: a record it may not see answers as an absent
/// one, deleted or not (a tombstone keeps its resident and custodian for this).
pub fn read_for(
    store: &Store,
    access: &AccessFilter,
    t: &str,
    id: &str,
) -> Result<Record, ApiError> {
    match store.read(|conn| read_in(conn, t, id)) {
        Ok(rec) => shown(store, access, rec),
        Err(gone @ ApiError::Record(RecordError::Deleted { .. })) => {
            Err(store.read(|conn| tombstone_refused(conn, access, t, id, gone))?)
        }
        // The indicators' Measures ship with the platform: readable where none is stored.
        Err(absent @ ApiError::Record(RecordError::Absent { .. })) if t == "Measure" => {
            crate::services::stats::shipped_record(id).ok_or(absent)
        }
        Err(e) => Err(e),
    }
}

/// A record read directly, if the caller may see it (see [`AccessFilter::hidden`]).
fn shown(store: &Store, access: &AccessFilter, rec: Record) -> Result<Record, ApiError> {
    if access.visible_in(store, &rec.res_type, &rec.id, rec.resident.as_deref())? {
        Ok(rec)
    } else {
        Err(access.hidden(&rec.res_type, &rec.id))
    }
}

/// What a caller is told of a deleted record: that it is gone when it may see the record, else
/// that it is not known. Its writer may; others are decided from its resident (where consent
/// would need the record's own index rows, which a tombstone no longer has, it is not known).
pub fn tombstone_refused(
    conn: &mut Tx<'_>,
    access: &AccessFilter,
    t: &str,
    id: &str,
    gone: ApiError,
) -> Result<ApiError, ApiError> {
    let (resident, custodian) = repo::custody(conn, t, id)?.unwrap_or_default();
    let own = custodian.is_some() && custodian.as_deref() == access.institution().as_deref();
    Ok(
        if own || access.visible(conn, t, id, resident.as_deref())? {
            gone
        } else {
            access.hidden(t, id)
        },
    )
}

/// A read inside the caller's transaction.
pub fn read_in(conn: &mut Tx<'_>, t: &str, id: &str) -> Result<Record, ApiError> {
    match repo::find_current(conn, t, id)? {
        None => Err(not_found(t, id)),
        Some(c) if c.deleted => Err(gone(t, id)),
        Some(c) => {
            audit::touched(conn, t, id, c.resident.as_deref());
            Ok(Record {
                res_type: t.to_owned(),
                id: id.to_owned(),
                version_id: c.version_id,
                last_updated: c.last_updated,
                content: c.content,
                resident: c.resident,
            })
        }
    }
}

/// `GET [type]/[id]/_history/[vid]` for a caller with `access`: a version of a record it may
/// not see (a deletion's included) answers as an absent one.
pub fn vread_for(
    store: &Store,
    access: &AccessFilter,
    t: &str,
    id: &str,
    vid: i64,
) -> Result<Record, ApiError> {
    let refused = |e| version_refused(e, t, id, vid);
    match store.read(|conn| vread_in(conn, t, id, vid)) {
        Ok(rec) => shown(store, access, rec).map_err(refused),
        Err(gone @ ApiError::Record(RecordError::Deleted { .. })) => {
            Err(refused(store.read(|conn| {
                tombstone_refused(conn, access, t, id, gone)
            })?))
        }
        Err(e) => Err(e),
    }
}

/// A version read inside the caller's transaction.
pub fn vread_in(conn: &mut Tx<'_>, t: &str, id: &str, vid: i64) -> Result<Record, ApiError> {
    match repo::find_version(conn, t, id, vid)? {
        None => Err(no_version(t, id, vid)),
        Some(v) if v.deleted => Err(RecordError::Deleted {
            t: t.to_owned(),
            id: id.to_owned(),
            version: Some(vid),
        }
        .into()),
        Some(v) => Ok(Record {
            resident: {
                let resident = repo::resident(conn, t, id)?;
                audit::touched(conn, t, id, resident.as_deref());
                resident
            },
            res_type: v.res_type,
            id: v.res_id,
            version_id: v.version_id,
            last_updated: v.last_updated,
            content: v.content,
        }),
    }
}

/// The answer for a version that does not exist (or that the caller may not see).
pub fn no_version(t: &str, id: &str, vid: i64) -> ApiError {
    RecordError::NoVersion {
        t: t.to_owned(),
        id: id.to_owned(),
        vid,
    }
    .into()
}

/// A vread's refusal: a hidden version answers as an absent one ([`no_version`]).
pub fn version_refused(e: ApiError, t: &str, id: &str, vid: i64) -> ApiError {
    match e {
        ApiError::Record(RecordError::Absent { .. }) => no_version(t, id, vid),
        e => e,
    }
}
