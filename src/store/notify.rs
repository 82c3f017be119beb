//! The notification tables (see [`crate::services::notify`]): `subscriptions`, one row per
//! Subscription, and `notifications`, the outbox a change writes in its own transaction.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Text};

use crate::store::schema::{notifications as n, subscriptions as s};
use crate::store::{DbConn, Signal, Tx};

/// A Subscription's row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, AsChangeset)]
#[diesel(table_name = crate::store::schema::subscriptions)]
#[diesel(treat_none_as_null = true)]
pub struct SubscriptionRow {
    pub id: String,
    pub res_type: String,
    /// The criteria's query (after `?`).
    pub criteria: String,
    pub endpoint: String,
    /// JSON array of `Name: value`.
    pub headers: String,
    pub payload: Option<String>,
    /// JSON: who the subscriber is (see [`crate::services::notify::Subscriber`]).
    pub subscriber: String,
    pub active: bool,
    pub failures: i32,
    pub retry_at: i64,
    pub error: Option<String>,
}

/// One change to tell one Subscription of.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Notification {
    pub seq: i64,
    pub subscription: String,
    pub res_type: String,
    pub res_id: String,
    pub version_id: i64,
    pub created: i64,
    pub lease_until: i64,
    pub lease_owner: i64,
}

/// Write a Subscription's row (its delivery state starts afresh when it is written again).
pub fn put(conn: &mut DbConn, row: &SubscriptionRow) -> QueryResult<()> {
    let q = diesel::insert_into(s::table)
        .values(row)
        .on_conflict(s::id)
        .do_update()
        .set(row);
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// Forget Subscription `id` and what waits for it.
pub fn remove(conn: &mut DbConn, id: &str) -> QueryResult<()> {
    let q = diesel::delete(s::table.filter(s::id.eq(id)));
    native!(conn, c => q.execute(c))?;
    let q = diesel::delete(n::table.filter(n::subscription.eq(id)));
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// The row of Subscription `id`.
pub fn get(conn: &mut DbConn, id: &str) -> QueryResult<Option<SubscriptionRow>> {
    let q = s::table.filter(s::id.eq(id));
    native!(conn, c => q.first::<SubscriptionRow>(c).optional())
}

/// How long a process trusts its list of subscribed types before it reads it again (another
/// process may have written a Subscription).
const RECHECK: Duration = Duration::from_secs(1);

/// The types some active Subscription searches, as a process last read them: when, at which
/// epoch of [`Signal::Subscriptions`].
type Read = (Instant, u64, Arc<HashSet<String>>);

/// The subscribed types a process read last.
#[derive(Default)]
pub struct Subscribed(std::sync::Mutex<Option<Read>>);

/// Whether an active Subscription searches type `t` (read at most once a second, and at once
/// after this process wrote a Subscription).
pub fn subscribed(tx: &mut Tx<'_>, t: &str) -> QueryResult<bool> {
    let ctx = tx.context();
    let epoch = ctx.epoch(Signal::Subscriptions);
    let cached = {
        let guard = ctx
            .subscribed
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard
            .as_ref()
            .filter(|(at, e, _)| *e == epoch && at.elapsed() < RECHECK)
            .map(|(_, _, types)| types.clone())
    };
    let types = match cached {
        Some(t) => t,
        None => {
            let q = s::table
                .filter(s::active.eq(true))
                .select(s::res_type)
                .distinct();
            let list: Vec<String> = native!(tx.conn(), c => q.load(c))?;
            let types = Arc::new(list.into_iter().collect::<HashSet<String>>());
            *ctx.subscribed
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((Instant::now(), epoch, types.clone()));
            types
        }
    };
    Ok(types.contains(t))
}

/// Put version `version` of `t/id` in the outbox of every active Subscription of type `t`.
pub fn enqueue(conn: &mut DbConn, t: &str, id: &str, version: i64, now: i64) -> QueryResult<()> {
    let q = diesel::insert_into(n::table)
        .values(
            s::table
                .filter(s::res_type.eq(t))
                .filter(s::active.eq(true))
                .select((
                    s::id,
                    t.into_sql::<Text>(),
                    id.into_sql::<Text>(),
                    version.into_sql::<BigInt>(),
                    now.into_sql::<BigInt>(),
                )),
        )
        .into_columns((
            n::subscription,
            n::res_type,
            n::res_id,
            n::version_id,
            n::created,
        ));
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// Lease up to `limit` rows due at `now` to `owner` until `until`, oldest first: rows of
/// Subscriptions not waiting to retry, not leased by a running deliverer.
pub fn claim(
    conn: &mut DbConn,
    now: i64,
    until: i64,
    owner: i64,
    limit: i64,
) -> QueryResult<Vec<Notification>> {
    let due = due(conn, now, limit)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let q = diesel::update(
        n::table
            .filter(n::seq.eq_any(&due))
            .filter(n::lease_until.lt(now)),
    )
    .set((n::lease_until.eq(until), n::lease_owner.eq(owner)));
    native!(conn, c => q.execute(c))?;
    let q = n::table
        .filter(n::seq.eq_any(&due))
        .filter(n::lease_owner.eq(owner))
        .filter(n::lease_until.eq(until))
        .order(n::seq.asc());
    native!(conn, c => q.load::<Notification>(c))
}

/// The oldest rows due at `now` (at most `limit`): of Subscriptions not waiting to retry, not
/// leased by a running deliverer. Read Subscription by Subscription through the outbox's
/// `(subscription, seq)` index: a join ordered by `seq` walks every row of a Subscription that
/// waits to retry (an outbox of 100,000 read fifty times a second while its endpoint is down).
pub fn due(conn: &mut DbConn, now: i64, limit: i64) -> QueryResult<Vec<i64>> {
    let q = s::table
        .filter(s::active.eq(true))
        .filter(s::retry_at.le(now))
        .select(s::id);
    let ready: Vec<String> = native!(conn, c => q.load(c))?;
    let mut seqs = Vec::new();
    for id in ready {
        let q = n::table
            .filter(n::subscription.eq(id))
            .filter(n::lease_until.lt(now))
            .order(n::seq.asc())
            .limit(limit)
            .select(n::seq);
        seqs.extend(native!(conn, c => q.load::<i64>(c))?);
    }
    seqs.sort_unstable();
    seqs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(seqs)
}

/// The newest row's position (`None`: the outbox is empty): when it has not moved, nothing was
/// added since it was read.
pub fn newest(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    let q = n::table.select(diesel::dsl::max(n::seq));
    native!(conn, c => q.get_result(c))
}

/// Rows delivered (or not to be delivered): gone.
pub fn done(conn: &mut DbConn, seqs: &[i64]) -> QueryResult<()> {
    for chunk in seqs.chunks(1000) {
        let q = diesel::delete(n::table.filter(n::seq.eq_any(chunk)));
        native!(conn, c => q.execute(c))?;
    }
    Ok(())
}

/// Rows not delivered this time: free for the next attempt.
pub fn release(conn: &mut DbConn, seqs: &[i64]) -> QueryResult<()> {
    for chunk in seqs.chunks(1000) {
        let q = diesel::update(n::table.filter(n::seq.eq_any(chunk))).set(n::lease_until.eq(0));
        native!(conn, c => q.execute(c))?;
    }
    Ok(())
}

/// A Subscription's delivery state after an attempt.
pub fn set_state(
    conn: &mut DbConn,
    id: &str,
    failures: i32,
    retry_at: i64,
    error: Option<&str>,
) -> QueryResult<()> {
    let q = diesel::update(s::table.filter(s::id.eq(id))).set((
        s::failures.eq(failures),
        s::retry_at.eq(retry_at),
        s::error.eq(error),
    ));
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// Rows in the outbox.
pub fn backlog(conn: &mut DbConn) -> QueryResult<i64> {
    let q = n::table.count();
    native!(conn, c => q.get_result(c))
}
