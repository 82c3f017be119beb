//! Conditional-create keys (`match_keys`): the database, not a process-local lock, decides which
//! of several concurrent identical conditional creates creates the resource.

use diesel::prelude::*;
use diesel::result::QueryResult;

use super::DbConn;
use super::schema::match_keys;
use crate::fhir::index::key;

/// Claim `criteria` for the new resource `t/id`. `false` means another resource holds it: the
/// caller searches again (a concurrent create has committed, and on PostgreSQL this call waited
/// for it). A key whose holder no longer matches (updated, deleted) is taken over when the
/// caller's search found nothing twice; see [`take_over`].
pub fn claim(conn: &mut DbConn, t: &str, criteria: &str, id: &str) -> QueryResult<bool> {
    let row = (
        match_keys::res_type.eq(t),
        match_keys::criteria.eq(key(criteria)),
        match_keys::res_id.eq(id),
    );
    let q = diesel::insert_into(match_keys::table)
        .values(row)
        .on_conflict_do_nothing();
    let inserted = native!(conn, c => q.execute(c))?;
    Ok(inserted == 1)
}

/// The resource currently holding `criteria`.
pub fn holder(conn: &mut DbConn, t: &str, criteria: &str) -> QueryResult<Option<String>> {
    let q = match_keys::table
        .filter(match_keys::res_type.eq(t))
        .filter(match_keys::criteria.eq(key(criteria)))
        .select(match_keys::res_id);
    native!(conn, c => q.first::<String>(c).optional())
}

/// Move a stale key from `old` to `id`; `false` when someone else moved it first.
pub fn take_over(
    conn: &mut DbConn,
    t: &str,
    criteria: &str,
    old: &str,
    id: &str,
) -> QueryResult<bool> {
    let q = diesel::update(
        match_keys::table
            .filter(match_keys::res_type.eq(t))
            .filter(match_keys::criteria.eq(key(criteria)))
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
