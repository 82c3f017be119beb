//! Repository functions for the audit trail: append, seal into the SM3 chain, walk, list, purge.

use diesel::prelude::*;
use diesel::result::QueryResult;

use super::DbConn;
use super::schema::{audit_chain, audit_events};

/// An audit record to append.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewEvent {
    pub recorded: i64,
    pub resident: Option<String>,
    pub flagged: bool,
    pub content: String,
}

/// A stored audit record.
#[derive(Debug, Clone, Queryable)]
pub struct Event {
    pub id: i64,
    pub recorded: i64,
    pub resident: Option<String>,
    pub flagged: bool,
    pub content: String,
    pub chain_seq: Option<i64>,
    pub hash: Option<String>,
}

/// Append records (in the caller's transaction).
pub fn append(conn: &mut DbConn, events: &[NewEvent]) -> QueryResult<()> {
    for chunk in events.chunks(500) {
        native!(conn, c => diesel::insert_into(audit_events::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// Where the stored chain starts: (first position, hash before it).
pub fn chain_start(conn: &mut DbConn) -> QueryResult<(i64, String)> {
    audit_chain::table
        .filter(audit_chain::id.eq(1))
        .select((audit_chain::start_seq, audit_chain::start_prev))
        .first(conn)
}

/// The last sealed record's position and hash, if any record is sealed.
pub fn head(conn: &mut DbConn) -> QueryResult<Option<(i64, String)>> {
    let row: Option<(Option<i64>, Option<String>)> = audit_events::table
        .filter(audit_events::chain_seq.is_not_null())
        .order(audit_events::chain_seq.desc())
        .select((audit_events::chain_seq, audit_events::hash))
        .first(conn)
        .optional()?;
    Ok(row.and_then(|(s, h)| Some((s?, h?))))
}

/// Up to `limit` records not sealed yet, oldest first.
pub fn unsealed(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<Event>> {
    audit_events::table
        .filter(audit_events::chain_seq.is_null())
        .order(audit_events::id)
        .limit(limit)
        .select(audit_events::all_columns)
        .load(conn)
}

/// Give a record its chain position and hash.
pub fn seal(conn: &mut DbConn, id: i64, seq: i64, hash: &str) -> QueryResult<()> {
    let q = diesel::update(audit_events::table.filter(audit_events::id.eq(id)))
        .set((audit_events::chain_seq.eq(seq), audit_events::hash.eq(hash)));
    native!(conn, c => q.execute(c))?;
    Ok(())
}

/// Sealed records from position `from` on, in chain order (at most `limit`).
pub fn chain_from(conn: &mut DbConn, from: i64, limit: i64) -> QueryResult<Vec<Event>> {
    audit_events::table
        .filter(audit_events::chain_seq.ge(from))
        .order(audit_events::chain_seq)
        .limit(limit)
        .select(audit_events::all_columns)
        .load(conn)
}

/// Records not sealed and older than `before` (ms): the sealer is not keeping up or not running.
pub fn unsealed_before(conn: &mut DbConn, before: i64) -> QueryResult<Vec<i64>> {
    audit_events::table
        .filter(audit_events::chain_seq.is_null())
        .filter(audit_events::recorded.lt(before))
        .order(audit_events::id)
        .limit(100)
        .select(audit_events::id)
        .load(conn)
}

/// Records of one resident (or of everyone), newest first, below id `before` when paging.
pub fn list(
    conn: &mut DbConn,
    resident: Option<&str>,
    flagged_only: bool,
    since: Option<i64>,
    until: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Event>> {
    let mut q = audit_events::table
        .select(audit_events::all_columns)
        .order(audit_events::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(r) = resident {
        q = q.filter(audit_events::resident.eq(r.to_owned()));
    }
    if flagged_only {
        q = q.filter(audit_events::flagged.eq(true));
    }
    if let Some(s) = since {
        q = q.filter(audit_events::recorded.ge(s));
    }
    if let Some(u) = until {
        q = q.filter(audit_events::recorded.le(u));
    }
    if let Some(b) = before {
        q = q.filter(audit_events::id.lt(b));
    }
    q.load(conn)
}

/// One record by id.
pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Event>> {
    audit_events::table
        .filter(audit_events::id.eq(id))
        .select(audit_events::all_columns)
        .first(conn)
        .optional()
}

/// Delete the sealed records recorded before `cutoff` (ms) that begin the chain, and move the
/// chain's start past them. Returns how many were deleted.
pub fn purge_before(conn: &mut DbConn, cutoff: i64) -> QueryResult<usize> {
    let (start, _) = chain_start(conn)?;
    // The first stored position recorded at or after the cutoff (or past the head): everything
    // before it goes, so that the stored chain stays contiguous.
    let keep_from: Option<i64> = audit_events::table
        .filter(audit_events::chain_seq.is_not_null())
        .filter(audit_events::recorded.ge(cutoff))
        .select(diesel::dsl::min(audit_events::chain_seq))
        .first::<Option<i64>>(conn)?;
    let keep_from = match keep_from {
        Some(k) => k,
        None => match head(conn)? {
            Some((h, _)) => h + 1,
            None => return Ok(0),
        },
    };
    if keep_from <= start {
        return Ok(0);
    }
    let prev: Option<Option<String>> = audit_events::table
        .filter(audit_events::chain_seq.eq(keep_from - 1))
        .select(audit_events::hash)
        .first(conn)
        .optional()?;
    let Some(Some(prev)) = prev else {
        return Ok(0);
    };
    let n = diesel::delete(audit_events::table.filter(audit_events::chain_seq.lt(keep_from)))
        .execute(conn)?;
    diesel::update(audit_chain::table.filter(audit_chain::id.eq(1)))
        .set((
            audit_chain::start_seq.eq(keep_from),
            audit_chain::start_prev.eq(prev),
        ))
        .execute(conn)?;
    Ok(n)
}
