//! Conditional-create keys (`match_keys`): the database, not a process-local lock, decides which
//! of several concurrent identical conditional creates creates the resource.

use diesel::prelude::*;
use diesel::result::QueryResult;
use std::collections::HashSet;

use crate::fhir::index::key;
use crate::protect::Protection;
use crate::store::schema::match_keys;
use crate::store::{DbConn, Tx};

/// Claim `criteria` for the new resource `t/id`. `false` means another resource holds it: the
/// caller searches again (a concurrent create has committed, and on PostgreSQL this call waited
/// for it). A key whose holder no longer matches (updated, deleted) is taken over when the
/// caller's search found nothing twice; see [`take_over`].
pub fn claim(tx: &mut Tx<'_>, t: &str, criteria: &str, id: &str) -> QueryResult<bool> {
    let (protection, conn) = (tx.protection(), tx.conn());
    claim_stored(conn, t, key(&stored(protection, criteria)?), id)
}

/// [`claim`] of a key already in its stored form.
fn claim_stored(conn: &mut DbConn, t: &str, stored: &str, id: &str) -> QueryResult<bool> {
    let row = (
        match_keys::res_type.eq(t),
        match_keys::criteria.eq(stored),
        match_keys::res_id.eq(id),
    );
    let q = diesel::insert_into(match_keys::table)
        .values(row)
        .on_conflict_do_nothing();
    let inserted = native!(conn, c => q.execute(c))?;
    Ok(inserted == 1)
}

/// Claim many keys of type `t` at once, each for its own new id (`(criteria, id)` pairs, the
/// criteria distinct): the criteria claimed. Keys are inserted in sorted order, so two
/// transactions claiming overlapping sets wait for each other instead of deadlocking. A key not
/// claimed is held by another resource: its caller settles it one by one (see [`claim`]).
pub fn claim_many(
    tx: &mut Tx<'_>,
    t: &str,
    wanted: &[(&str, &str)],
) -> QueryResult<HashSet<String>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let forms: Vec<(String, &str, &str)> = wanted
        .iter()
        .map(|&(c, id)| Ok((key(&stored(protection, c)?).to_owned(), c, id)))
        .collect::<QueryResult<_>>()?;
    let mut sorted: Vec<(&str, &str)> = forms.iter().map(|(f, _, id)| (f.as_str(), *id)).collect();
    sorted.sort_unstable();
    let mut claimed = HashSet::new();
    for chunk in sorted.chunks(1000) {
        match conn {
            DbConn::Postgres(c) => {
                let rows: Vec<_> = chunk
                    .iter()
                    .map(|&(criteria, id)| {
                        (
                            match_keys::res_type.eq(t),
                            match_keys::criteria.eq(criteria),
                            match_keys::res_id.eq(id),
                        )
                    })
                    .collect();
                let got: Vec<String> = diesel::insert_into(match_keys::table)
                    .values(rows)
                    .on_conflict_do_nothing()
                    .returning(match_keys::criteria)
                    .get_results(c)?;
                claimed.extend(got);
            }
            // One cached statement per key: SQLite has no round trips to save.
            DbConn::Sqlite(_) => {
                for &(criteria, id) in chunk {
                    if claim_stored(conn, t, criteria, id)? {
                        claimed.insert(criteria.to_owned());
                    }
                }
            }
        }
    }
    // Answered in the callers' terms.
    Ok(forms
        .into_iter()
        .filter(|(f, _, _)| claimed.contains(f))
        .map(|(_, c, _)| c.to_owned())
        .collect())
}

/// `criteria` as stored: protected identifiers in their blind form (see [`crate::protect`]).
fn stored(protection: &Protection, criteria: &str) -> QueryResult<String> {
    crate::protect::match_key(protection, criteria)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// The resource currently holding `criteria`.
pub fn holder(tx: &mut Tx<'_>, t: &str, criteria: &str) -> QueryResult<Option<String>> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let criteria = stored(protection, criteria)?;
    let q = match_keys::table
        .filter(match_keys::res_type.eq(t))
        .filter(match_keys::criteria.eq(key(&criteria)))
        .select(match_keys::res_id);
    native!(conn, c => q.first::<String>(c).optional())
}

/// Move a stale key from `old` to `id`; `false` when someone else moved it first.
pub fn take_over(
    tx: &mut Tx<'_>,
    t: &str,
    criteria: &str,
    old: &str,
    id: &str,
) -> QueryResult<bool> {
    let (protection, conn) = (tx.protection(), tx.conn());
    let criteria = stored(protection, criteria)?;
    let q = diesel::update(
        match_keys::table
            .filter(match_keys::res_type.eq(t))
            .filter(match_keys::criteria.eq(key(&criteria)))
            .filter(match_keys::res_id.eq(old)),
    )
    .set(match_keys::res_id.eq(id));
    Ok(native!(conn, c => q.execute(c))? == 1)
}

/// Forget every key held by `t/id` (it was deleted).
pub fn release(conn: &mut DbConn, t: &str, id: &str) -> QueryResult<()> {
    let q = diesel::delete(
        match_keys::table
            .filter(match_keys::res_type.eq(t))
            .filter(match_keys::res_id.eq(id)),
    );
    native!(conn, c => q.execute(c))?;
    Ok(())
}
