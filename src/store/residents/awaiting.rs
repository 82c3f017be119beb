//! Records waiting for their resident (`awaiting_residents`): written before the Patient they
//! name (by id or by identifier) was stored, linked when it arrives.

use diesel::prelude::*;
use diesel::result::QueryResult;

use crate::store::schema::awaiting_residents as a;
use crate::store::{DbConn, Tx};

/// Note that `t/id` waits for a Patient known as each of `awaited` (`Patient/<id>`, or
/// `<system>|<code>` of an identifier).
pub fn add(conn: &mut DbConn, t: &str, id: &str, awaited: &[String]) -> QueryResult<()> {
    for w in awaited {
        let q = diesel::insert_into(a::table)
            .values((a::awaited.eq(w), a::res_type.eq(t), a::res_id.eq(id)))
            .on_conflict_do_nothing();
        native!(conn, c => q.execute(c))?;
    }
    Ok(())
}

/// A Patient known as any of `names` arrived with golden resident `golden`: the records waiting
/// for it take that resident and stop waiting (for any name). Returns how many were linked.
pub fn arrive(tx: &mut Tx<'_>, names: &[String], golden: &str) -> QueryResult<usize> {
    let q = a::table
        .filter(a::awaited.eq_any(names))
        .select((a::res_type, a::res_id));
    let mut waiting: Vec<(String, String)> = native!(tx, c => q.load(c))?;
    if waiting.is_empty() {
        return Ok(0);
    }
    waiting.sort_unstable();
    waiting.dedup();
    for (t, id) in &waiting {
        crate::store::record::set_resident(tx, t, id, golden)?;
        forget(tx, t, id)?;
    }
    Ok(waiting.len())
}

/// `t/id` waits for nothing any more (it was written again or deleted).
pub fn forget(conn: &mut DbConn, t: &str, id: &str) -> QueryResult<()> {
    let q = diesel::delete(a::table.filter(a::res_type.eq(t)).filter(a::res_id.eq(id)));
    native!(conn, c => q.execute(c))?;
    Ok(())
}
