//! Emergency access grants (`break_glass`): see [`crate::services::access::break_glass`].

use diesel::prelude::*;
use diesel::result::QueryResult;

use crate::store::DbConn;
use crate::store::schema::break_glass as g;

/// Grant `sub` access to each of `residents` until `expires` (a grant already there is
/// extended, with the new reason).
pub fn grant(
    conn: &mut DbConn,
    sub: &str,
    residents: &[String],
    reason: &str,
    now: i64,
    expires: i64,
) -> QueryResult<()> {
    for r in residents {
        let row = (
            g::sub.eq(sub),
            g::resident.eq(r),
            g::reason.eq(reason),
            g::granted.eq(now),
            g::expires.eq(expires),
        );
        let q = diesel::insert_into(g::table)
            .values(row)
            .on_conflict((g::sub, g::resident))
            .do_update()
            .set((
                g::reason.eq(reason),
                g::granted.eq(now),
                g::expires.eq(expires),
            ));
        native!(conn, c => q.execute(c))?;
    }
    Ok(())
}

/// The grants of `sub` still running at `now`: (resident, reason, expires).
pub fn active(conn: &mut DbConn, sub: &str, now: i64) -> QueryResult<Vec<(String, String, i64)>> {
    let q = g::table
        .filter(g::sub.eq(sub))
        .filter(g::expires.gt(now))
        .select((g::resident, g::reason, g::expires));
    native!(conn, c => q.load(c))
}

/// Forget grants that ran out before `now`; rows removed.
pub fn purge_expired(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
    let q = diesel::delete(g::table.filter(g::expires.le(now)));
    native!(conn, c => q.execute(c))
}
