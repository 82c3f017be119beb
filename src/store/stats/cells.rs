//! The statistics' aggregates (`stat_cells`): what every golden resident and every event
//! counts for, summed by indicator, period and finest stratum (home area, sex, age band,
//! institution, yes or no), so that an evaluation reads a few thousand cells instead of its
//! members, whatever the size of the city.
//!
//! They are kept exact in each write's own transaction, resident by resident: the first time
//! a write touches a resident's facts or strata ([`touch`]), what the resident counts for is
//! computed from the rows as they stand (on PostgreSQL under a lock on the resident's row, so
//! that two writes for one resident take turns); when the write's work is done ([`settle`]),
//! it is computed again, and the difference is added to the cells, in key order (two writes
//! never wait for each other's cells in opposite orders). A resident's part is a pure function
//! of its strata and facts ([`contribution`]), so the cells are always the sum of every
//! resident's part, and [`rebuild`] writes them again from the facts.
//!
//! Rows, by `ind`:
//! - [`RESIDENTS`]: golden residents, period 0, `age` the birth year (an age band depends on
//!   the period), `flag` 1 when a health card is recorded;
//! - a presence kind (an encounter, a health check, a family-doctor contract in force): the
//!   residents with one in a calendar month, quarter or year (`period`, see [`month`],
//!   [`quarter`], [`year`]), `age` the band in the period's year;
//! - a diagnosis kind (a programme): its patients with a follow-up in the period and the
//!   diagnosis made by its end, `flag` [`STANDARD`] and [`ON_TARGET`];
//! - an event kind: events by month (at the event's institution, `age` the band in the
//!   event's year), `flag` the fact's, `total` the sum of the facts' values.
//!
//! Unknown strata are `''` (area, sex, institution) and `-1` (age).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Double, Integer, Text};

use super::kind::*;
use crate::store::schema::{stat_facts as f, stat_residents as r};
use crate::store::{DbConn, Tx};

/// `ind` of the rows counting golden residents themselves.
pub const RESIDENTS: &str = "res";
/// Follow-ups in a period that make a patient's management standard (规范管理).
pub const STANDARD_FOLLOW_UPS: usize = 4;
/// A programme row's flags: managed to the standard, latest reading on target.
pub const STANDARD: i32 = 1;
pub const ON_TARGET: i32 = 2;
/// The age bands: the lower ages of the bands after the first (0–6, 7–17, 18–44, 45–64, 65+).
pub const AGE_BANDS: [i32; 4] = [7, 18, 45, 65];

/// Kinds counted as events, by month.
pub const EVENTS: &[&str] = &[
    ENCOUNTER_END,
    VISIT,
    APPOINTMENT,
    REFERRAL_UP,
    REFERRAL_DOWN,
    REFERRAL_RECEIVED,
    REFERRAL_DONE,
];
/// Kinds counted as the residents with one in a period.
pub const PRESENCE: &[&str] = &[ENCOUNTER, ELDERLY_CHECK, CHILD_CHECK];
/// The programmes: diagnosis, follow-up, the reading whose latest is on target or not.
pub const PROGRAMMES: [(&str, &str, &str); 2] = [
    (HYPERTENSION, HYPERTENSION_FOLLOW_UP, BLOOD_PRESSURE),
    (DIABETES, DIABETES_FOLLOW_UP, GLUCOSE),
];

/// The code of month `m` (1–12) of year `y`.
pub fn month(y: i32, m: i32) -> i32 {
    y * 100 + m
}

/// The code of quarter `q` (1–4) of year `y`.
pub fn quarter(y: i32, q: i32) -> i32 {
    y * 100 + 12 + q
}

/// The code of year `y`.
pub fn year(y: i32) -> i32 {
    y * 100
}

/// The first and last month (`YYYYMM`) of the period with code `p`.
fn months_of(p: i32) -> (i32, i32) {
    let (y, k) = (p / 100, p % 100);
    match k {
        0 => (y * 100 + 1, y * 100 + 12),
        13..=16 => {
            let q = k - 12;
            (y * 100 + 3 * q - 2, y * 100 + 3 * q)
        }
        _ => (p, p),
    }
}

/// The calendar periods (month, quarter, year) of month `ym` (`YYYYMM`).
fn periods_of(ym: i32) -> [i32; 3] {
    let (y, m) = (ym / 100, ym % 100);
    [ym, quarter(y, (m - 1) / 3 + 1), year(y)]
}

fn month_at(ms: i64) -> i32 {
    let (y, m) = crate::clock::local_month(ms);
    month(y, i32::try_from(m).unwrap_or(1))
}

/// The month after `ym`.
fn next_month(ym: i32) -> i32 {
    if ym % 100 >= 12 {
        month(ym / 100 + 1, 1)
    } else {
        ym + 1
    }
}

/// The band of an age (in years reached in the year reckoned at).
pub fn band(age: i32) -> i32 {
    AGE_BANDS.iter().take_while(|lo| age >= **lo).count() as i32
}

/// A cell's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub ind: &'static str,
    pub period: i32,
    pub area: String,
    pub sex: String,
    pub age: i32,
    pub org: String,
    pub flag: i32,
}

/// What a cell holds: members (or events) and the sum of their values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sum {
    pub n: i64,
    pub total: f64,
}

/// What one resident counts for.
pub type Contribution = BTreeMap<Key, Sum>;

/// Add `part` to `into`, or take it away (`sign` -1).
fn merge(into: &mut Contribution, part: Contribution, sign: i64) {
    for (key, s) in part {
        let d = into.entry(key).or_default();
        d.n += sign * s.n;
        d.total += sign as f64 * s.total;
    }
}

/// The columns a [`Resident`] and a [`FactRow`] are read from.
fn resident_columns() -> (r::area, r::sex, r::birth, r::org, r::card, r::golden) {
    (r::area, r::sex, r::birth, r::org, r::card, r::golden)
}

fn fact_columns() -> (f::kind, f::org, f::at, f::until_at, f::value, f::flag) {
    (f::kind, f::org, f::at, f::until_at, f::value, f::flag)
}

/// A golden resident's row, as the cells read it.
#[derive(Debug, Clone, Default, PartialEq, Queryable)]
pub struct Resident {
    pub area: Option<String>,
    pub sex: Option<String>,
    pub birth: Option<i32>,
    pub org: Option<String>,
    pub card: i32,
    pub golden: i32,
}

/// A resident's fact, as the cells read it.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct FactRow {
    pub kind: String,
    pub org: Option<String>,
    pub at: i64,
    pub until_at: Option<i64>,
    pub value: Option<f64>,
    pub flag: i32,
}

/// What a resident counts for, from its row (`None`: there is none) and its facts.
pub fn contribution(resident: Option<&Resident>, facts: &[FactRow]) -> Contribution {
    let mut out = Contribution::new();
    let live = resident.filter(|p| p.golden == 1);
    let strata = |p: &Resident| {
        (
            p.area.clone().unwrap_or_default(),
            p.sex.clone().unwrap_or_default(),
            p.org.clone().unwrap_or_default(),
        )
    };
    let born = live.and_then(|p| p.birth).map(|b| b / 10_000);
    let band_in = |y: i32| born.map_or(-1, |b| band(y - b));
    let mut add = |key: Key, value: f64| {
        let s = out.entry(key).or_default();
        s.n += 1;
        s.total += value;
    };
    // Events, with the strata of a live resident (else unknown).
    let (area, sex, org) = live.map(strata).unwrap_or_default();
    for fact in facts {
        let Some(kind) = EVENTS.iter().find(|k| **k == fact.kind) else {
            continue;
        };
        let m = month_at(fact.at);
        let key = Key {
            ind: kind,
            period: m,
            area: area.clone(),
            sex: sex.clone(),
            age: band_in(m / 100),
            org: fact.org.clone().unwrap_or_default(),
            flag: fact.flag,
        };
        add(key, fact.value.unwrap_or(0.0));
    }
    let Some(p) = live else { return out };
    let person = |ind: &'static str, period: i32, flag: i32| Key {
        ind,
        period,
        area: area.clone(),
        sex: sex.clone(),
        age: band_in(period / 100),
        org: org.clone(),
        flag,
    };
    add(
        Key {
            ind: RESIDENTS,
            period: 0,
            area: area.clone(),
            sex: sex.clone(),
            age: born.unwrap_or(-1),
            org: org.clone(),
            flag: p.card,
        },
        0.0,
    );
    let of = |kind: &'static str| facts.iter().filter(move |x| x.kind == kind);
    for kind in PRESENCE {
        let periods: BTreeSet<i32> = of(kind).flat_map(|x| periods_of(month_at(x.at))).collect();
        for period in periods {
            add(person(kind, period, 0), 0.0);
        }
    }
    // Contracts in force: from the month of their start to that of their end.
    let mut signed = BTreeSet::new();
    for x in of(SIGNED) {
        let (mut m, last) = (month_at(x.at), month_at(x.until_at.unwrap_or(x.at)));
        while m <= last {
            signed.extend(periods_of(m));
            m = next_month(m);
        }
    }
    for period in signed {
        add(person(SIGNED, period, 0), 0.0);
    }
    for (diagnosis, follow_up, reading) in PROGRAMMES {
        let Some(first) = of(diagnosis).map(|x| month_at(x.at)).min() else {
            continue;
        };
        let mut visits: BTreeMap<i32, usize> = BTreeMap::new();
        for x in of(follow_up) {
            for period in periods_of(month_at(x.at)) {
                *visits.entry(period).or_default() += 1;
            }
        }
        // The latest reading of each period (at the same instant, one on target wins).
        let mut latest: HashMap<i32, (i64, i32)> = HashMap::new();
        for x in of(reading) {
            for period in periods_of(month_at(x.at)) {
                let e = latest.entry(period).or_insert((x.at, x.flag));
                if (x.at, x.flag) > *e {
                    *e = (x.at, x.flag);
                }
            }
        }
        for (period, n) in visits {
            if first > months_of(period).1 {
                continue;
            }
            let mut flag = 0;
            if n >= STANDARD_FOLLOW_UPS {
                flag |= STANDARD;
            }
            if latest.get(&period).is_some_and(|(_, on)| *on == 1) {
                flag |= ON_TARGET;
            }
            add(person(diagnosis, period, flag), 0.0);
        }
    }
    out
}

/// A resident's row and facts as they stand (`lock`: on PostgreSQL, the row is locked for the
/// rest of the transaction).
fn current(conn: &mut DbConn, resident: &str, lock: bool) -> QueryResult<Contribution> {
    if let Some(pseudo) = resident.strip_prefix(UNLINKED) {
        let (t, id) = pseudo.split_once('/').unwrap_or((pseudo, ""));
        let q = f::table
            .filter(f::res_type.eq(t))
            .filter(f::res_id.eq(id))
            .filter(f::resident.is_null())
            .select(fact_columns());
        let facts: Vec<FactRow> = native!(conn, c => q.load(c))?;
        return Ok(contribution(None, &facts));
    }
    let q = r::table
        .filter(r::resident.eq(resident))
        .select(resident_columns());
    let row: Option<Resident> = match conn {
        DbConn::Postgres(c) if lock => q.for_update().first(c).optional()?,
        DbConn::Postgres(c) => q.first(c).optional()?,
        DbConn::Sqlite(c) => q.first(c).optional()?,
    };
    let q = f::table
        .filter(f::kind.eq_any(ALL))
        .filter(f::resident.eq(resident))
        .select(fact_columns());
    let facts: Vec<FactRow> = native!(conn, c => q.load(c))?;
    Ok(contribution(row.as_ref(), &facts))
}

/// What each of golden residents `ids` counts for as the rows stand, read a page of
/// residents at a time.
fn currents(
    c: &mut diesel::PgConnection,
    ids: &[&str],
) -> QueryResult<HashMap<String, Contribution>> {
    let mut out = HashMap::new();
    for page in ids.chunks(500) {
        let q = r::table
            .filter(r::resident.eq_any(page))
            .select((r::resident, resident_columns()));
        let rows: HashMap<String, Resident> =
            q.load::<(String, Resident)>(c)?.into_iter().collect();
        let q = f::table
            .filter(f::kind.eq_any(ALL))
            .filter(f::resident.eq_any(page))
            .select((f::resident.assume_not_null(), fact_columns()));
        let mut facts: HashMap<String, Vec<FactRow>> = HashMap::new();
        for (who, fact) in q.load::<(String, FactRow)>(c)? {
            facts.entry(who).or_default().push(fact);
        }
        for id in page {
            let mine = facts.remove(*id).unwrap_or_default();
            out.insert((*id).to_owned(), contribution(rows.get(*id), &mine));
        }
    }
    Ok(out)
}

/// The key a resource's facts that belong to no resident are counted under (as events of
/// unknown strata).
const UNLINKED: &str = "\u{1}";

/// The key of resource `t/id`'s facts of no resident.
pub fn unlinked(t: &str, id: &str) -> String {
    format!("{UNLINKED}{t}/{id}")
}

/// The residents whose part a write changes, with their part before it.
#[derive(Default)]
struct Touched {
    before: HashMap<String, Contribution>,
    /// The residents in the order they were touched (see [`forget_since`]).
    order: Vec<String>,
}

/// How many residents this write has touched so far (before a savepoint).
pub(crate) fn mark(tx: &mut Tx<'_>) -> usize {
    tx.work::<Touched>().order.len()
}

/// A savepoint begun at `mark` was rolled back: the residents first touched inside it are
/// as they were (and, on PostgreSQL, no longer locked), so they are forgotten; a later
/// change touches them again.
pub(crate) fn forget_since(tx: &mut Tx<'_>, mark: usize) {
    let touched = tx.work::<Touched>();
    for id in touched.order.split_off(mark.min(touched.order.len())) {
        touched.before.remove(&id);
    }
}

/// This write is about to change what `resident` (a golden resident, or [`unlinked`]) counts
/// for: its part as it stands is kept for [`settle`], once per write.
pub fn touch(tx: &mut Tx<'_>, resident: &str) -> QueryResult<()> {
    if tx.work::<Touched>().before.contains_key(resident) {
        return Ok(());
    }
    let before = current(tx.conn(), resident, true)?;
    let touched = tx.work::<Touched>();
    touched.before.insert(resident.to_owned(), before);
    touched.order.push(resident.to_owned());
    Ok(())
}

/// Like [`touch`], for a golden resident this write creates: it counted for nothing before.
pub fn touch_new(tx: &mut Tx<'_>, resident: &str) {
    let touched = tx.work::<Touched>();
    if !touched.before.contains_key(resident) {
        touched
            .before
            .insert(resident.to_owned(), Contribution::new());
        touched.order.push(resident.to_owned());
    }
}

/// The write's work is done: add the difference its touched residents' parts make to the
/// cells. Called by the store once the write's function returns.
pub fn settle(tx: &mut Tx<'_>) -> QueryResult<()> {
    let touched = tx.take_work::<Touched>();
    if touched.before.is_empty() {
        return Ok(());
    }
    if tx.held.is_some() {
        crate::store::flush_writes(tx)?;
    }
    let mut afters = match tx.conn() {
        // One round trip for the rows and one for the facts of a PostgreSQL write's residents
        // (a bundle's dozens), instead of two per resident.
        DbConn::Postgres(c) => {
            let ids: Vec<&str> = touched
                .before
                .keys()
                .map(String::as_str)
                .filter(|id| !id.starts_with(UNLINKED))
                .collect();
            currents(c, &ids)?
        }
        DbConn::Sqlite(_) => HashMap::new(),
    };
    let mut delta = Contribution::new();
    for (resident, before) in touched.before {
        let after = match afters.remove(&resident) {
            Some(after) => after,
            None => current(tx.conn(), &resident, false)?,
        };
        merge(&mut delta, after, 1);
        merge(&mut delta, before, -1);
    }
    add(tx.conn(), &delta)
}

/// Add `delta` to the cells, in key order.
fn add(conn: &mut DbConn, delta: &Contribution) -> QueryResult<()> {
    use crate::store::schema::stat_cells as c;
    use diesel::upsert::excluded;
    let rows: Vec<_> = delta
        .iter()
        .filter(|(_, s)| s.n != 0 || s.total != 0.0)
        .map(|(k, s)| {
            (
                c::ind.eq(k.ind),
                c::period.eq(k.period),
                c::area.eq(k.area.as_str()),
                c::sex.eq(k.sex.as_str()),
                c::age.eq(k.age),
                c::org.eq(k.org.as_str()),
                c::flag.eq(k.flag),
                c::n.eq(s.n),
                c::total.eq(s.total),
            )
        })
        .collect();
    // Chunks of a few fixed sizes, so that each statement's text recurs and stays prepared.
    let mut rest = &rows[..];
    while !rest.is_empty() {
        let size = [64, 16, 4, 1]
            .into_iter()
            .find(|n| *n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let q = diesel::insert_into(c::table)
            .values(chunk)
            .on_conflict((c::ind, c::period, c::area, c::sex, c::age, c::org, c::flag))
            .do_update()
            .set((
                c::n.eq(c::n + excluded(c::n)),
                c::total.eq(c::total + excluded(c::total)),
            ));
        native!(conn, x => q.execute(x))?;
    }
    Ok(())
}

/// One cell as an evaluation reads it.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Row {
    #[diesel(sql_type = Integer)]
    pub period: i32,
    #[diesel(sql_type = Text)]
    pub area: String,
    #[diesel(sql_type = Text)]
    pub sex: String,
    #[diesel(sql_type = Integer)]
    pub age: i32,
    #[diesel(sql_type = Text)]
    pub org: String,
    #[diesel(sql_type = Integer)]
    pub flag: i32,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
    #[diesel(sql_type = Double)]
    pub total: f64,
}

/// The cells of `ind` with a period code from `first` to `last`, of areas under `area` (a
/// code prefix; empty: every area, unknown included).
pub fn read(
    conn: &mut DbConn,
    ind: &str,
    first: i32,
    last: i32,
    area: &str,
) -> QueryResult<Vec<Row>> {
    let q = diesel::sql_query(
        "SELECT period, area, sex, age, org, flag, n, total FROM stat_cells \
         WHERE ind = $1 AND period >= $2 AND period <= $3 AND area LIKE $4 AND n <> 0",
    )
    .bind::<Text, _>(ind)
    .bind::<Integer, _>(first)
    .bind::<Integer, _>(last)
    .bind::<Text, _>(format!("{area}%"));
    native!(conn, c => q.load(c))
}

/// Write the cells again from the facts and residents' rows (after a rebuild of the facts, or
/// for a database whose facts were kept before the cells existed). Returns the residents.
pub fn rebuild(conn: &mut DbConn) -> QueryResult<usize> {
    native!(conn, c => diesel::delete(crate::store::schema::stat_cells::table).execute(c))?;
    let (total, residents) = summed(conn)?;
    add(conn, &total)?;
    Ok(residents)
}

/// The cells as the facts and residents' rows make them, and the residents counted.
fn summed(conn: &mut DbConn) -> QueryResult<(Contribution, usize)> {
    let mut total = Contribution::new();
    let mut after = String::new();
    let mut residents = 0;
    loop {
        let q = r::table
            .filter(r::resident.gt(&after))
            .order(r::resident)
            .limit(1000)
            .select(r::resident);
        let page: Vec<String> = native!(conn, c => q.load(c))?;
        for id in &page {
            merge(&mut total, current(conn, id, false)?, 1);
        }
        residents += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 => after = last.clone(),
            _ => break,
        }
    }
    // Events of no resident, or of one without a row: unknown strata, whoever they are.
    let rowless = diesel::dsl::not(diesel::dsl::exists(
        r::table.filter(r::resident.nullable().eq(f::resident)),
    ));
    let q = f::table
        .filter(f::kind.eq_any(EVENTS))
        .filter(f::resident.is_null().or(rowless))
        .select(fact_columns());
    let orphans: Vec<FactRow> = native!(conn, c => q.load(c))?;
    merge(&mut total, contribution(None, &orphans), 1);
    total.retain(|_, s| s.n != 0 || s.total != 0.0);
    Ok((total, residents))
}

/// Where the cells differ from what the facts make them (none: they are exact), for the
/// tests and for checking a database.
pub fn differences(conn: &mut DbConn) -> QueryResult<Vec<String>> {
    use crate::store::schema::stat_cells as c;
    let (expected, _) = summed(conn)?;
    let q = c::table.filter(c::n.ne(0)).select((
        c::ind,
        c::period,
        c::area,
        c::sex,
        c::age,
        c::org,
        c::flag,
        c::n,
        c::total,
    ));
    type Stored = (String, i32, String, String, i32, String, i32, i64, f64);
    let stored: Vec<Stored> = native!(conn, x => q.load(x))?;
    let label = |ind: &str, period, area: &str, sex: &str, age, org: &str, flag| {
        format!("{ind} {period} {area} {sex} {age} {org} {flag}")
    };
    let mut kept: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for (ind, period, area, sex, age, org, flag, n, total) in stored {
        kept.insert(
            label(&ind, period, &area, &sex, age, &org, flag),
            (n, total),
        );
    }
    let mut out = Vec::new();
    for (k, s) in expected {
        let key = label(k.ind, k.period, &k.area, &k.sex, k.age, &k.org, k.flag);
        match kept.remove(&key) {
            Some((n, t)) if n == s.n && (t - s.total).abs() < 1e-6 => {}
            got => out.push(format!(
                "{key}: kept {got:?}, facts make ({}, {})",
                s.n, s.total
            )),
        }
    }
    for (key, got) in kept {
        out.push(format!("{key}: kept {got:?}, facts make nothing"));
    }
    Ok(out)
}

/// Whether the cells are empty while residents are counted (a database from before them).
pub fn missing(conn: &mut DbConn) -> QueryResult<bool> {
    use crate::store::schema::stat_cells as c;
    let q = c::table.select(c::ind).limit(1);
    let any_cell: Option<String> = native!(conn, x => q.first(x).optional())?;
    if any_cell.is_some() {
        return Ok(false);
    }
    let q = r::table.select(r::resident).limit(1);
    let any_resident: Option<String> = native!(conn, x => q.first(x).optional())?;
    Ok(any_resident.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        crate::clock::period_of(s).map(|p| p.0).unwrap_or_default()
    }

    fn fact(kind: &str, when: &str, flag: i32) -> FactRow {
        FactRow {
            kind: kind.to_owned(),
            org: Some("Organization/a".to_owned()),
            at: at(when),
            until_at: None,
            value: None,
            flag,
        }
    }

    fn resident() -> Resident {
        Resident {
            area: Some("510104001".to_owned()),
            sex: Some("female".to_owned()),
            birth: Some(19_600_315),
            org: Some("Organization/b".to_owned()),
            card: 1,
            golden: 1,
        }
    }

    fn count(c: &Contribution, ind: &str, period: i32) -> Vec<(i32, i32, i64)> {
        c.iter()
            .filter(|(k, _)| k.ind == ind && k.period == period)
            .map(|(k, s)| (k.age, k.flag, s.n))
            .collect()
    }

    #[test]
    fn periods() {
        assert_eq!(periods_of(202_605), [202_605, 202_614, 202_600]);
        assert_eq!(months_of(202_614), (202_604, 202_606));
        assert_eq!(months_of(202_600), (202_601, 202_612));
        assert_eq!(next_month(202_612), 202_701);
        assert_eq!(
            [0, 6, 7, 17, 18, 44, 45, 64, 65, 90].map(band),
            [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        );
        // Local time: the first hours of a month in UTC+8 belong to it.
        assert_eq!(month_at(at("2026-03-01T00:30:00+08:00")), 202_603);
    }

    #[test]
    fn a_resident_counts_once_per_period() {
        let facts = vec![
            fact(ENCOUNTER, "2026-01-10", 0),
            fact(ENCOUNTER, "2026-01-20", 0),
            fact(ENCOUNTER, "2026-05-02", 0),
            fact(VISIT, "2026-01-10", 1),
            fact(VISIT, "2026-01-20", 0),
        ];
        let c = contribution(Some(&resident()), &facts);
        // Born 1960: 66 in 2026, band 65+.
        assert_eq!(count(&c, RESIDENTS, 0), vec![(1960, 1, 1)]);
        assert_eq!(count(&c, ENCOUNTER, 202_601), vec![(4, 0, 1)]);
        assert_eq!(count(&c, ENCOUNTER, 202_613), vec![(4, 0, 1)]);
        assert_eq!(count(&c, ENCOUNTER, 202_600), vec![(4, 0, 1)]);
        assert_eq!(count(&c, ENCOUNTER, 202_602), vec![]);
        // Events are counted each, at their institution.
        assert_eq!(count(&c, VISIT, 202_601), vec![(4, 0, 1), (4, 1, 1)]);
        assert!(
            c.keys()
                .filter(|k| k.ind == VISIT)
                .all(|k| k.org == "Organization/a")
        );
        // A retired resident's events count with unknown strata, and nothing else.
        let mut gone = resident();
        gone.golden = 0;
        let c = contribution(Some(&gone), &facts);
        assert!(
            c.keys()
                .all(|k| k.ind == VISIT && k.area.is_empty() && k.age == -1)
        );
    }

    #[test]
    fn programmes_and_contracts() {
        let mut facts = vec![fact(HYPERTENSION, "2026-04-15", 0)];
        for m in [
            "2026-02-01",
            "2026-05-01",
            "2026-08-01",
            "2026-11-01",
            "2026-11-20",
        ] {
            facts.push(fact(HYPERTENSION_FOLLOW_UP, m, 0));
        }
        facts.push(fact(BLOOD_PRESSURE, "2026-11-01", 0));
        facts.push(fact(BLOOD_PRESSURE, "2026-11-20", 1));
        facts.push(fact(BLOOD_PRESSURE, "2026-12-05", 0));
        let mut contract = fact(SIGNED, "2026-11-10", 0);
        contract.until_at = Some(at("2027-02-01"));
        facts.push(contract);
        let c = contribution(Some(&resident()), &facts);
        // February's follow-up precedes the diagnosis: not a patient yet in February or Q1.
        assert_eq!(count(&c, HYPERTENSION, 202_602), vec![]);
        assert_eq!(count(&c, HYPERTENSION, 202_613), vec![]);
        assert_eq!(count(&c, HYPERTENSION, 202_605), vec![(4, 0, 1)]);
        // The year: five follow-ups (standard); the latest reading (December) off target.
        assert_eq!(count(&c, HYPERTENSION, 202_600), vec![(4, STANDARD, 1)]);
        // November: two follow-ups, latest reading on target.
        assert_eq!(count(&c, HYPERTENSION, 202_611), vec![(4, ON_TARGET, 1)]);
        let signed: Vec<i32> = c
            .keys()
            .filter(|k| k.ind == SIGNED)
            .map(|k| k.period)
            .collect();
        assert_eq!(
            signed,
            vec![
                202_600, 202_611, 202_612, 202_616, 202_700, 202_701, 202_702, 202_713
            ]
        );
    }
}
