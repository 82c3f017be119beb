//! Repository functions for the audit trail: append, seal into the SM3 chain, walk, list, purge.

use diesel::prelude::*;
use diesel::result::QueryResult;

use super::DbConn;
use super::schema::{audit_chain, audit_events, audit_log_copied, audit_seals};

/// An audit record to append.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
pub struct NewEvent {
    pub recorded: i64,
    pub resident: Option<String>,
    pub flagged: bool,
    pub content: String,
}

/// A stored audit record.
#[derive(Debug, Clone, Queryable, QueryableByName)]
#[diesel(table_name = audit_events)]
pub struct Event {
    pub id: i64,
    pub recorded: i64,
    pub resident: Option<String>,
    pub flagged: bool,
    pub content: String,
    /// The writing transaction's id on PostgreSQL (0 on SQLite): with `id`, the record's place
    /// in the sealer's order. Not part of the hash.
    pub txid: i64,
}

/// One chain position: the seal, and the record it seals if that is still stored.
#[derive(Debug, Clone)]
pub struct Link {
    pub seq: i64,
    pub event_id: i64,
    pub hash: String,
    pub event: Option<Event>,
}

/// Append records (in the caller's transaction); the sealer finds them after its cursor. SQLite
/// inserts them one statement each (a cached statement), PostgreSQL with one binary `COPY`.
pub fn append(conn: &mut DbConn, events: &[NewEvent]) -> QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => {
            for e in events {
                diesel::insert_into(audit_events::table)
                    .values(e)
                    .execute(c)?;
            }
        }
        DbConn::Postgres(c) => {
            if !events.is_empty() {
                diesel::copy_from(audit_events::table)
                    .from_insertable(events)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// How many bytes of the node audit log file `log` have been copied (0 when none).
pub fn log_copied(conn: &mut DbConn, log: &str) -> QueryResult<i64> {
    Ok(audit_log_copied::table
        .filter(audit_log_copied::log.eq(log))
        .select(audit_log_copied::copied)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Note (in the transaction that appended them) that `log` is copied up to `copied` bytes. Only
/// one process copies a file at a time (it holds the file's lock).
pub fn set_log_copied(conn: &mut DbConn, log: &str, copied: i64) -> QueryResult<()> {
    let updated = diesel::update(audit_log_copied::table.filter(audit_log_copied::log.eq(log)))
        .set(audit_log_copied::copied.eq(copied))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(audit_log_copied::table)
            .values((
                audit_log_copied::log.eq(log),
                audit_log_copied::copied.eq(copied),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Forget a copied and removed log file.
pub fn forget_log(conn: &mut DbConn, log: &str) -> QueryResult<()> {
    diesel::delete(audit_log_copied::table.filter(audit_log_copied::log.eq(log)))
        .execute(conn)
        .map(|_| ())
}

/// Where the stored chain starts: (first position, hash before it).
pub fn chain_start(conn: &mut DbConn) -> QueryResult<(i64, String)> {
    audit_chain::table
        .filter(audit_chain::id.eq(1))
        .select((audit_chain::start_seq, audit_chain::start_prev))
        .first(conn)
}

/// The last position and its hash, if anything is sealed.
pub fn head(conn: &mut DbConn) -> QueryResult<Option<(i64, String)>> {
    audit_seals::table
        .order(audit_seals::chain_seq.desc())
        .select((audit_seals::chain_seq, audit_seals::hash))
        .first(conn)
        .optional()
}

/// The last sealed record's (txid, id): the sealer's cursor.
pub fn sealed_up_to(conn: &mut DbConn) -> QueryResult<(i64, i64)> {
    audit_chain::table
        .filter(audit_chain::id.eq(1))
        .select((audit_chain::sealed_txid, audit_chain::sealed_id))
        .first(conn)
}

/// Up to `limit` committed records after the cursor `after` (txid, id), in (txid, id) order.
/// On PostgreSQL only records of transactions older than every one still running: a running
/// transaction may yet commit records that sort before those of a younger one. SQLite has one
/// writer, and the caller is in a write transaction: everything it sees is final.
pub fn unsealed(conn: &mut DbConn, after: (i64, i64), limit: i64) -> QueryResult<Vec<Event>> {
    use diesel::sql_types::BigInt;
    match conn {
        DbConn::Postgres(c) => diesel::sql_query(
            "SELECT id, recorded, resident, flagged, content, txid FROM audit_events \
             WHERE (txid, id) > ($1, $2) \
               AND txid < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint \
             ORDER BY txid, id LIMIT $3",
        )
        .bind::<BigInt, _>(after.0)
        .bind::<BigInt, _>(after.1)
        .bind::<BigInt, _>(limit)
        .load(c),
        DbConn::Sqlite(c) => diesel::sql_query(
            "SELECT id, recorded, resident, flagged, content, txid FROM audit_events \
             WHERE (txid, id) > (?, ?) ORDER BY txid, id LIMIT ?",
        )
        .bind::<BigInt, _>(after.0)
        .bind::<BigInt, _>(after.1)
        .bind::<BigInt, _>(limit)
        .load(c),
    }
}

/// Record seals as (position, record id, hash) and move the cursor to `last` (txid, id).
pub fn seal(conn: &mut DbConn, seals: &[(i64, i64, String)], last: (i64, i64)) -> QueryResult<()> {
    for chunk in seals.chunks(500) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(seq, id, hash)| {
                (
                    audit_seals::chain_seq.eq(*seq),
                    audit_seals::event_id.eq(*id),
                    audit_seals::hash.eq(hash.as_str()),
                )
            })
            .collect();
        native!(conn, c => diesel::insert_into(audit_seals::table).values(&rows).execute(c))?;
    }
    diesel::update(audit_chain::table.filter(audit_chain::id.eq(1)))
        .set((
            audit_chain::sealed_txid.eq(last.0),
            audit_chain::sealed_id.eq(last.1),
        ))
        .execute(conn)?;
    Ok(())
}

/// Chain positions from `from` on, in order (at most `limit`), with their records.
pub fn chain_from(conn: &mut DbConn, from: i64, limit: i64) -> QueryResult<Vec<Link>> {
    let rows: Vec<((i64, i64, String), Option<Event>)> = audit_seals::table
        .left_join(audit_events::table)
        .filter(audit_seals::chain_seq.ge(from))
        .order(audit_seals::chain_seq)
        .limit(limit)
        .select((
            (
                audit_seals::chain_seq,
                audit_seals::event_id,
                audit_seals::hash,
            ),
            audit_events::all_columns.nullable(),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|((seq, event_id, hash), event)| Link {
            seq,
            event_id,
            hash,
            event,
        })
        .collect())
}

/// Whether a record sorts after the cursor `c` (txid, id).
macro_rules! after_cursor {
    ($c:expr) => {
        audit_events::txid
            .gt($c.0)
            .or(audit_events::txid.eq($c.0).and(audit_events::id.gt($c.1)))
    };
}

/// Records after the sealer's cursor recorded before `before` (ms): the sealer is not running.
pub fn unsealed_before(conn: &mut DbConn, before: i64) -> QueryResult<Vec<i64>> {
    let c = sealed_up_to(conn)?;
    audit_events::table
        .filter(after_cursor!(c))
        .filter(audit_events::recorded.lt(before))
        .order(audit_events::id)
        .limit(100)
        .select(audit_events::id)
        .load(conn)
}

/// Records at or before the sealer's cursor without a seal: the cursor was moved past them.
pub fn unchained(conn: &mut DbConn) -> QueryResult<Vec<i64>> {
    let c = sealed_up_to(conn)?;
    audit_events::table
        .filter(diesel::dsl::not(after_cursor!(c)))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            audit_seals::table.filter(audit_seals::event_id.eq(audit_events::id)),
        )))
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

/// Delete the sealed records recorded before `cutoff` (ms) that begin the chain, with their
/// seals, and move the chain's start past them. Returns how many records were deleted.
pub fn purge_before(conn: &mut DbConn, cutoff: i64) -> QueryResult<usize> {
    let (start, _) = chain_start(conn)?;
    // The first position whose record was recorded at or after the cutoff (or past the head):
    // everything before it goes, so that the stored chain stays contiguous.
    let keep_from: Option<i64> = audit_seals::table
        .inner_join(audit_events::table)
        .filter(audit_events::recorded.ge(cutoff))
        .select(diesel::dsl::min(audit_seals::chain_seq))
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
    let Some(prev) = audit_seals::table
        .filter(audit_seals::chain_seq.eq(keep_from - 1))
        .select(audit_seals::hash)
        .first::<String>(conn)
        .optional()?
    else {
        return Ok(0);
    };
    let gone = audit_seals::table
        .filter(audit_seals::chain_seq.lt(keep_from))
        .select(audit_seals::event_id);
    let n =
        diesel::delete(audit_events::table.filter(audit_events::id.eq_any(gone))).execute(conn)?;
    diesel::delete(audit_seals::table.filter(audit_seals::chain_seq.lt(keep_from)))
        .execute(conn)?;
    diesel::update(audit_chain::table.filter(audit_chain::id.eq(1)))
        .set((
            audit_chain::start_seq.eq(keep_from),
            audit_chain::start_prev.eq(prev),
        ))
        .execute(conn)?;
    Ok(n)
}

/// How many seals of the chain begin with `prefix` (those made under one key: `k:<id>:`).
pub fn seals_under(conn: &mut DbConn, prefix: &str) -> QueryResult<i64> {
    let end = format!("{prefix}\u{10FFFF}");
    let q = audit_seals::table
        .filter(audit_seals::hash.ge(prefix))
        .filter(audit_seals::hash.lt(end))
        .count();
    native!(conn, c => q.get_result(c))
}
