//! The slot pool's tables: `slot_places` (one row per published Slot: its capacity, reserve,
//! release and how many places are taken) and `slot_claims` (the Appointments holding a place).
//! A place is taken by locking the Slot's row and a guarded `UPDATE` inside the booking's
//! transaction; the table's CHECK refuses any count above capacity, whatever the caller.

use diesel::prelude::*;
use diesel::result::QueryResult;

use crate::store::DbConn;
use crate::store::schema::{slot_claims as c, slot_places as p};

/// A Slot's places, as published and as taken.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = crate::store::schema::slot_places)]
pub struct Places {
    pub slot_id: String,
    /// The institution that published the Slot (`Organization/<id>`).
    pub institution: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub capacity: i32,
    /// Places kept for referred residents until `reserve_until`.
    pub reserve: i32,
    pub reserve_until: Option<i64>,
    /// When the public may book (`None`: now).
    pub release_at: Option<i64>,
    /// Whether the publisher offers the Slot (not withdrawn, not entered in error).
    pub open: bool,
    pub taken_public: i32,
    pub taken_referral: i32,
}

impl Places {
    /// Places taken, booked or held.
    pub fn taken(&self) -> i32 {
        self.taken_public + self.taken_referral
    }

    /// Untaken reserve places still kept for referred residents at `now`: until
    /// `reserve_until`, or while the Slot is offered when it names no instant.
    pub fn reserve_left(&self, now: i64) -> i32 {
        if self.reserve_until.is_some_and(|u| now >= u) {
            return 0;
        }
        (self.reserve - self.taken_referral)
            .min(self.capacity - self.taken())
            .max(0)
    }

    /// Places free for the public at `now`: the untaken reserve stays aside while it is kept.
    pub fn free_public(&self, now: i64) -> i32 {
        (self.capacity - self.taken() - self.reserve_left(now)).max(0)
    }

    /// Whether every place is taken.
    pub fn full(&self) -> bool {
        self.taken() >= self.capacity
    }

    /// Whether the public may book at `now` (a referral may take a reserve place before the
    /// release).
    pub fn released(&self, now: i64) -> bool {
        self.release_at.is_none_or(|r| r <= now)
    }
}

/// Write a Slot's published terms (`existing`: whether it has a row, which the caller read
/// under its lock), keeping the places it has taken. Fails on the CHECK when the new capacity
/// is below the places taken.
pub fn publish(conn: &mut DbConn, places: &Places, existing: bool) -> QueryResult<()> {
    match existing {
        false => {
            diesel::insert_into(p::table).values(places).execute(conn)?;
        }
        true => {
            diesel::update(p::table.find(&places.slot_id))
                .set((
                    p::institution.eq(&places.institution),
                    p::start_ms.eq(places.start_ms),
                    p::end_ms.eq(places.end_ms),
                    p::capacity.eq(places.capacity),
                    p::reserve.eq(places.reserve),
                    p::reserve_until.eq(places.reserve_until),
                    p::release_at.eq(places.release_at),
                    p::open.eq(places.open),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Withdraw a deleted Slot: nothing more may be booked on it.
pub fn close(conn: &mut DbConn, slot_id: &str) -> QueryResult<()> {
    diesel::update(p::table.find(slot_id))
        .set(p::open.eq(false))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConn, slot_id: &str) -> QueryResult<Option<Places>> {
    p::table
        .find(slot_id)
        .select(Places::as_select())
        .first(conn)
        .optional()
}

/// A Slot's places, locked for the rest of the transaction (PostgreSQL: `FOR UPDATE`, so
/// concurrent bookings of the Slot take turns; SQLite has one writer).
pub fn lock(conn: &mut DbConn, slot_id: &str) -> QueryResult<Option<Places>> {
    let q = p::table.find(slot_id);
    match conn {
        DbConn::Postgres(c) => q
            .select(Places::as_select())
            .for_update()
            .first(c)
            .optional(),
        DbConn::Sqlite(c) => q.select(Places::as_select()).first(c).optional(),
    }
}

/// Take one place (a referral's or a public one); whether one was free. The guard repeats the
/// capacity so that the row, not the caller's reading of it, decides.
pub fn take(conn: &mut DbConn, slot_id: &str, referral: bool) -> QueryResult<bool> {
    let row = p::table
        .find(slot_id)
        .filter((p::taken_public + p::taken_referral).lt(p::capacity));
    let n = if referral {
        diesel::update(row)
            .set(p::taken_referral.eq(p::taken_referral + 1))
            .execute(conn)?
    } else {
        diesel::update(row)
            .set(p::taken_public.eq(p::taken_public + 1))
            .execute(conn)?
    };
    Ok(n == 1)
}

/// Give a place back (a cancellation, an expired hold).
pub fn give_back(conn: &mut DbConn, slot_id: &str, referral: bool) -> QueryResult<()> {
    let row = p::table.find(slot_id);
    if referral {
        diesel::update(row.filter(p::taken_referral.gt(0)))
            .set(p::taken_referral.eq(p::taken_referral - 1))
            .execute(conn)?;
    } else {
        diesel::update(row.filter(p::taken_public.gt(0)))
            .set(p::taken_public.eq(p::taken_public - 1))
            .execute(conn)?;
    }
    Ok(())
}

/// An Appointment holding a place.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = crate::store::schema::slot_claims)]
pub struct Claim {
    pub appointment_id: String,
    pub slot_id: String,
    /// The golden resident the Appointment is for.
    pub resident: String,
    /// Whether the place is a referral's.
    pub referral: bool,
    /// `pending` (held) or `booked`; later `cancelled`, `arrived`, `fulfilled`, `noshow`.
    pub state: String,
    pub hold_until: Option<i64>,
    /// The visit's local day (`YYYY-MM-DD`) and specialty (`system|code`, or empty): one
    /// active booking per resident, specialty and day (a unique index).
    pub day: String,
    pub specialty: String,
    pub start_ms: i64,
    /// For a referral booking, the referring institution (`Organization/<id>`): it changes
    /// the booking as the resident may.
    pub referrer: Option<String>,
}

/// Record a claim; fails on the unique index when the resident already has an active booking
/// of that specialty that day.
pub fn insert_claim(conn: &mut DbConn, claim: &Claim) -> QueryResult<()> {
    diesel::insert_into(c::table).values(claim).execute(conn)?;
    Ok(())
}

pub fn claim_of(conn: &mut DbConn, appointment_id: &str) -> QueryResult<Option<Claim>> {
    c::table
        .find(appointment_id)
        .select(Claim::as_select())
        .first(conn)
        .optional()
}

/// Move a claim to `state` (a booked hold has no `hold_until`).
pub fn set_state(
    conn: &mut DbConn,
    appointment_id: &str,
    state: &str,
    hold_until: Option<i64>,
) -> QueryResult<()> {
    diesel::update(c::table.find(appointment_id))
        .set((c::state.eq(state), c::hold_until.eq(hold_until)))
        .execute(conn)?;
    Ok(())
}

/// Holds of `slot_id` (or of any Slot) that expired before `now`, oldest first.
pub fn expired_holds(
    conn: &mut DbConn,
    slot_id: Option<&str>,
    now: i64,
    limit: i64,
) -> QueryResult<Vec<Claim>> {
    let pending = c::table
        .filter(c::state.eq("pending"))
        .filter(c::hold_until.lt(now));
    match slot_id {
        Some(s) => pending
            .filter(c::slot_id.eq(s))
            .select(Claim::as_select())
            .order(c::hold_until.asc())
            .limit(limit)
            .load(conn),
        None => pending
            .select(Claim::as_select())
            .order(c::hold_until.asc())
            .limit(limit)
            .load(conn),
    }
}

/// A resident's active bookings and holds that start after `now`.
pub fn active_future(conn: &mut DbConn, resident: &str, now: i64) -> QueryResult<i64> {
    c::table
        .filter(c::resident.eq(resident))
        .filter(c::state.eq_any(["pending", "booked"]))
        .filter(c::start_ms.gt(now))
        .count()
        .get_result(conn)
}

/// A resident's no-shows with a visit after `since`, latest first (their start instants).
pub fn no_shows(conn: &mut DbConn, resident: &str, since: i64) -> QueryResult<Vec<i64>> {
    c::table
        .filter(c::resident.eq(resident))
        .filter(c::state.eq("noshow"))
        .filter(c::start_ms.gt(since))
        .select(c::start_ms)
        .order(c::start_ms.desc())
        .load(conn)
}

/// Offered Slots starting within `[from, to]` and after `now`, earliest first (at most `limit`).
pub fn offered_between(
    conn: &mut DbConn,
    from: i64,
    to: i64,
    now: i64,
    limit: i64,
) -> QueryResult<Vec<Places>> {
    p::table
        .filter(p::open.eq(true))
        .filter(p::start_ms.ge(from.max(now + 1)))
        .filter(p::start_ms.le(to))
        .select(Places::as_select())
        .order((p::start_ms.asc(), p::slot_id.asc()))
        .limit(limit)
        .load(conn)
}

/// Make a resident's bookings take turns for the rest of the transaction, so that the rules
/// counting their bookings count them all (PostgreSQL: a transaction-scoped advisory lock on
/// the resident; SQLite has one writer). Taken before any Slot's row, never after one.
pub fn lock_resident(conn: &mut DbConn, resident: &str) -> QueryResult<()> {
    if let DbConn::Postgres(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind::<diesel::sql_types::Text, _>(resident)
            .execute(c)?;
    }
    Ok(())
}
