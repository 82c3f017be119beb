//! The statistics tables (see [`crate::services::stats`]): `stat_residents` (a golden
//! resident's strata), `stat_facts` (what one resource counts for), kept in step with the
//! record in the writes' transactions, the aggregates summed from them ([`cells`]), and
//! `stat_population` (the denominators). An evaluation reads counts by the finest cells (home
//! area, sex, age band, institution, yes or no), which the service rolls up into strata.

use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};

use crate::store::schema::{stat_facts as f, stat_population as pop};
use crate::store::{DbConn, Tx};

pub mod cells;
pub use cells::touch;

/// What a fact counts (`stat_facts.kind`).
pub mod kind {
    /// Diagnoses: hypertension, type-2 diabetes.
    pub const HYPERTENSION: &str = "htn";
    pub const DIABETES: &str = "dm";
    /// Follow-ups of the two programmes.
    pub const HYPERTENSION_FOLLOW_UP: &str = "fu-htn";
    pub const DIABETES_FOLLOW_UP: &str = "fu-dm";
    /// Health checks of the elderly (65+) and of children (0–6).
    pub const ELDERLY_CHECK: &str = "chk-elderly";
    pub const CHILD_CHECK: &str = "chk-child";
    /// Any encounter (a dynamic entry of the record), at its start.
    pub const ENCOUNTER: &str = "enc";
    /// An encounter's end; flag: it reached the platform within a day of it.
    pub const ENCOUNTER_END: &str = "enc-end";
    /// An outpatient visit (not a follow-up or check); flag: booked.
    pub const VISIT: &str = "visit";
    /// Blood pressure (flag: below 140/90) and fasting glucose (flag: below 7.0 mmol/L).
    pub const BLOOD_PRESSURE: &str = "bp";
    pub const GLUCOSE: &str = "glu";
    /// A booked appointment, at its start; value: days booked ahead; flag: no-show.
    pub const APPOINTMENT: &str = "appt";
    /// A family-doctor contract in force from `at` until `until_at`.
    pub const SIGNED: &str = "signed";
    /// A referral up or down, at its authoring, for the referring institution.
    pub const REFERRAL_UP: &str = "ref-up";
    pub const REFERRAL_DOWN: &str = "ref-down";
    /// A referral not cancelled, for the receiving institution; flag: accepted.
    pub const REFERRAL_RECEIVED: &str = "ref-recv";
    /// A completed referral, at its completion; value: days from authoring.
    pub const REFERRAL_DONE: &str = "ref-done";

    /// Every kind.
    pub const ALL: &[&str] = &[
        HYPERTENSION,
        DIABETES,
        HYPERTENSION_FOLLOW_UP,
        DIABETES_FOLLOW_UP,
        ELDERLY_CHECK,
        CHILD_CHECK,
        ENCOUNTER,
        ENCOUNTER_END,
        VISIT,
        BLOOD_PRESSURE,
        GLUCOSE,
        APPOINTMENT,
        SIGNED,
        REFERRAL_UP,
        REFERRAL_DOWN,
        REFERRAL_RECEIVED,
        REFERRAL_DONE,
    ];
}

/// What one resource counts for (one row per kind).
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = crate::store::schema::stat_facts)]
pub struct Fact {
    pub res_type: String,
    pub res_id: String,
    pub kind: &'static str,
    pub resident: Option<String>,
    pub org: Option<String>,
    pub at: i64,
    pub until_at: Option<i64>,
    pub value: Option<f64>,
    pub flag: i32,
}

impl Fact {
    /// A fact of `kind` of resource `t/id`, at `at`, with no end, value or flag yet.
    pub fn new(
        t: &str,
        id: &str,
        kind: &'static str,
        resident: Option<&str>,
        org: Option<String>,
        at: i64,
    ) -> Fact {
        Fact {
            res_type: t.to_owned(),
            res_id: id.to_owned(),
            kind,
            resident: resident.map(str::to_owned),
            org,
            at,
            until_at: None,
            value: None,
            flag: 0,
        }
    }
}

/// Replace what resource `t/id` counts for (`is_new`: it has no rows yet). While the
/// transaction holds new rows back (a PostgreSQL bundle), they wait with them.
pub fn put_facts(
    tx: &mut Tx<'_>,
    t: &str,
    id: &str,
    facts: Vec<Fact>,
    is_new: bool,
) -> QueryResult<()> {
    if !is_new {
        touch_holders(tx, t, id)?;
        if let Some(held) = tx.held.as_mut() {
            held.facts.retain(|f| f.res_type != t || f.res_id != id);
        }
        let q = diesel::delete(f::table.filter(f::res_type.eq(t)).filter(f::res_id.eq(id)));
        native!(tx.conn(), c => q.execute(c))?;
    }
    if facts.is_empty() {
        return Ok(());
    }
    let mut last: Option<Option<&str>> = None;
    for fact in &facts {
        let who = fact.resident.as_deref();
        if last != Some(who) {
            touch_one(tx, t, id, who)?;
            last = Some(who);
        }
    }
    if let Some(held) = tx.held.as_mut() {
        held.facts.extend(facts);
        return Ok(());
    }
    insert(tx.conn(), &facts)
}

/// The residents the stored facts of `t/id` count for are about to change: see
/// [`cells::touch`]. Those held back were touched when they were written.
fn touch_holders(tx: &mut Tx<'_>, t: &str, id: &str) -> QueryResult<()> {
    let q = f::table
        .filter(f::res_type.eq(t))
        .filter(f::res_id.eq(id))
        .select(f::resident)
        .distinct();
    let holders: Vec<Option<String>> = native!(tx.conn(), c => q.load(c))?;
    for who in holders {
        touch_one(tx, t, id, who.as_deref())?;
    }
    Ok(())
}

fn touch_one(tx: &mut Tx<'_>, t: &str, id: &str, who: Option<&str>) -> QueryResult<()> {
    match who {
        Some(r) => touch(tx, r),
        None => touch(tx, &cells::unlinked(t, id)),
    }
}

/// Insert facts: one binary COPY on PostgreSQL, cached single-row statements on SQLite (as
/// the search index's rows, see `record::index`).
pub(super) fn insert(conn: &mut DbConn, facts: &[Fact]) -> QueryResult<()> {
    match conn {
        DbConn::Postgres(c) => {
            let rows: Vec<_> = facts
                .iter()
                .map(|x| {
                    (
                        f::res_type.eq(x.res_type.as_str()),
                        f::res_id.eq(x.res_id.as_str()),
                        f::kind.eq(x.kind),
                        f::resident.eq(x.resident.as_deref()),
                        f::org.eq(x.org.as_deref()),
                        f::at.eq(x.at),
                        f::until_at.eq(x.until_at),
                        f::value.eq(x.value),
                        f::flag.eq(x.flag),
                    )
                })
                .collect();
            copy_rows!(c, f, rows);
        }
        DbConn::Sqlite(c) => {
            for fact in facts {
                diesel::insert_or_ignore_into(f::table)
                    .values(fact)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// When the fact `kind` of resource `t/id` was first recorded (its `until_at`), if it was.
pub fn fact_time(conn: &mut DbConn, t: &str, id: &str, kind: &str) -> QueryResult<Option<i64>> {
    let q = f::table
        .filter(f::res_type.eq(t))
        .filter(f::res_id.eq(id))
        .filter(f::kind.eq(kind))
        .select(f::until_at);
    let found: Option<Option<i64>> = native!(conn, c => q.first(c).optional())?;
    Ok(found.flatten())
}

/// The golden resident of resource `t/id` is now `golden` (linked after it was written).
pub fn set_resident(tx: &mut Tx<'_>, t: &str, id: &str, golden: &str) -> QueryResult<()> {
    touch_holders(tx, t, id)?;
    touch(tx, golden)?;
    if let Some(held) = tx.held.as_mut() {
        for fact in held
            .facts
            .iter_mut()
            .filter(|f| f.res_type == t && f.res_id == id)
        {
            fact.resident = Some(golden.to_owned());
        }
    }
    let q = diesel::update(f::table.filter(f::res_type.eq(t)).filter(f::res_id.eq(id)))
        .set(f::resident.eq(golden));
    native!(tx.conn(), c => q.execute(c)).map(|_| ())
}

/// Move what golden resident `from` counts for to `to` (a merge), or only the given
/// resources' (an unmerge).
pub fn repoint(
    tx: &mut Tx<'_>,
    from: &str,
    to: &str,
    only: Option<&[(String, String)]>,
) -> QueryResult<()> {
    touch(tx, from)?;
    touch(tx, to)?;
    let conn = tx.conn();
    match only {
        None => {
            // Kind by kind: the (kind, resident) index finds them.
            let q = diesel::update(
                f::table
                    .filter(f::kind.eq_any(kind::ALL))
                    .filter(f::resident.eq(from)),
            )
            .set(f::resident.eq(to));
            native!(conn, c => q.execute(c))?;
        }
        Some(members) => {
            for (t, id) in members {
                let q = diesel::update(
                    f::table
                        .filter(f::res_type.eq(t))
                        .filter(f::res_id.eq(id))
                        .filter(f::resident.eq(from)),
                )
                .set(f::resident.eq(to));
                native!(conn, c => q.execute(c))?;
            }
        }
    }
    Ok(())
}

/// An institution's record of golden resident `resident` was written: the first institution
/// to record the resident is kept (建档机构), and whether any holds a health card number.
/// One statement whose text never changes, so both backends keep it prepared.
pub fn source_written(
    tx: &mut Tx<'_>,
    resident: &str,
    org: Option<&str>,
    now: i64,
    card: bool,
) -> QueryResult<()> {
    touch(tx, resident)?;
    let conn = tx.conn();
    let (least, greatest) = match conn {
        DbConn::Postgres(_) => ("LEAST", "GREATEST"),
        DbConn::Sqlite(_) => ("MIN", "MAX"),
    };
    let q = diesel::sql_query(format!(
        "INSERT INTO stat_residents (resident, org, since, card) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (resident) DO UPDATE SET \
         org = COALESCE(stat_residents.org, excluded.org), \
         since = {least}(COALESCE(stat_residents.since, excluded.since), excluded.since), \
         card = {greatest}(stat_residents.card, excluded.card)"
    ))
    .bind::<Text, _>(resident)
    .bind::<Nullable<Text>, _>(org)
    .bind::<BigInt, _>(now)
    .bind::<Integer, _>(i32::from(card));
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// A golden resident no longer counts (its record was deleted).
pub fn retire(tx: &mut Tx<'_>, resident: &str) -> QueryResult<()> {
    use crate::store::schema::stat_residents as r;
    touch(tx, resident)?;
    let conn = tx.conn();
    let q = diesel::update(r::table.filter(r::resident.eq(resident))).set(r::golden.eq(0));
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// A golden resident's strata as its record now shows them (`live`: false once it is
/// retired by a merge or deleted, and it no longer counts).
/// `is_new`: this write creates the golden resident.
pub fn golden_written(
    tx: &mut Tx<'_>,
    resident: &str,
    strata: &Strata,
    live: bool,
    is_new: bool,
    now: i64,
) -> QueryResult<()> {
    if is_new {
        cells::touch_new(tx, resident);
    } else {
        touch(tx, resident)?;
    }
    let conn = tx.conn();
    let q = diesel::sql_query(
        "INSERT INTO stat_residents (resident, area, sex, birth, since, golden) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resident) DO UPDATE SET \
         area = excluded.area, sex = excluded.sex, birth = excluded.birth, \
         golden = excluded.golden",
    )
    .bind::<Text, _>(resident)
    .bind::<Nullable<Text>, _>(strata.area.as_deref())
    .bind::<Nullable<Text>, _>(strata.sex.as_deref())
    .bind::<Nullable<Integer>, _>(strata.birth)
    .bind::<BigInt, _>(now)
    .bind::<Integer, _>(i32::from(live));
    native!(conn, c => q.execute(c)).map(|_| ())
}

/// A golden resident's strata: home area code (GB/T 2260, or longer: township, village),
/// `male` or `female`, birth date as YYYYMMDD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strata {
    pub area: Option<String>,
    pub sex: Option<String>,
    pub birth: Option<i32>,
}

/// One row of the area populations.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = crate::store::schema::stat_population)]
pub struct Population {
    pub area: String,
    pub year: i32,
    pub sex: String,
    pub age_from: i32,
    pub age_to: i32,
    pub population: i64,
}

/// Load area populations: the rows of every (area, year) in `rows` replace what was there.
pub fn put_population(conn: &mut DbConn, rows: &[Population]) -> QueryResult<usize> {
    let mut keys: Vec<(&str, i32)> = rows.iter().map(|p| (p.area.as_str(), p.year)).collect();
    keys.sort_unstable();
    keys.dedup();
    for (area, year) in keys {
        let q = diesel::delete(
            pop::table
                .filter(pop::area.eq(area))
                .filter(pop::year.eq(year)),
        );
        native!(conn, c => q.execute(c))?;
    }
    for chunk in rows.chunks(500) {
        let q = diesel::insert_into(pop::table).values(chunk);
        native!(conn, c => q.execute(c))?;
    }
    Ok(rows.len())
}

/// The populations of `year` of areas under `prefix` (every area when empty).
pub fn population(conn: &mut DbConn, year: i32, prefix: &str) -> QueryResult<Vec<Population>> {
    let q = pop::table
        .filter(pop::year.eq(year))
        .filter(pop::area.like(format!("{prefix}%")))
        .order((pop::area, pop::sex, pop::age_from));
    native!(conn, c => q.load(c))
}

/// A page of live resources of type `t` after id `after` (at most `limit`), as a rebuild of
/// the facts reads them: id, JSON (revealed), golden resident, custodian.
pub type Stored = (String, String, Option<String>, Option<String>);

pub fn live_page(tx: &mut Tx<'_>, t: &str, after: &str, limit: i64) -> QueryResult<Vec<Stored>> {
    use crate::store::schema::resources as res;
    let (protection, conn) = (tx.protection(), tx.conn());
    let q = res::table
        .filter(res::res_type.eq(t))
        .filter(res::deleted.eq(false))
        .filter(res::res_id.gt(after))
        .order(res::res_id)
        .limit(limit)
        .select((res::res_id, res::content, res::resident, res::custodian));
    let rows: Vec<Stored> = native!(conn, c => q.load(c))?;
    rows.into_iter()
        .map(|(id, content, resident, custodian)| {
            Ok((
                id,
                crate::protect::reveal(protection, content)?,
                resident,
                custodian,
            ))
        })
        .collect()
}

/// Forget every fact and resident row (a rebuild writes them again).
pub fn clear(conn: &mut DbConn) -> QueryResult<()> {
    native!(conn, c => diesel::delete(f::table).execute(c))?;
    native!(conn, c => diesel::delete(crate::store::schema::stat_residents::table).execute(c))?;
    native!(conn, c => diesel::delete(crate::store::schema::stat_cells::table).execute(c))?;
    Ok(())
}

/// Every live Organization: (id, JSON). Institutions are few (hundreds in a city), and their
/// categories are read from the registry as it stands.
pub fn organizations(conn: &mut DbConn) -> QueryResult<Vec<(String, String)>> {
    use crate::store::schema::resources as res;
    let q = res::table
        .filter(res::res_type.eq("Organization"))
        .filter(res::deleted.eq(false))
        .select((res::res_id, res::content));
    native!(conn, c => q.load(c))
}

/// The finest cell of an evaluation: members with the same home area, sex, age band,
/// institution and yes-or-no, their number and the sum of their observations.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Cell {
    #[diesel(sql_type = Nullable<Text>)]
    pub area: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub sex: Option<String>,
    /// Index into the age bands of the evaluation; -1 when the birth date is unknown.
    #[diesel(sql_type = Integer)]
    pub band: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub org: Option<String>,
    #[diesel(sql_type = Integer)]
    pub flag: i32,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
    #[diesel(sql_type = Nullable<Double>)]
    pub total: Option<f64>,
}

/// Who an evaluation counts, as the service defines each indicator.
#[derive(Debug, Clone)]
pub enum Members {
    /// Golden residents (as the record stands: history loaded later counts for its period);
    /// yes when `Yes` holds for them.
    Residents(Yes),
    /// Residents with a diagnosis of kind `condition` (before the end) and at least one
    /// fact of kind `follow_up` in the period; yes when `Yes` holds.
    Managed {
        condition: &'static str,
        follow_up: &'static str,
        yes: Managed,
    },
    /// Facts of `kind` at a time in the period, counted for their own institution; yes
    /// their flag, observation their value.
    Events(&'static str),
}

/// Which residents are a yes.
#[derive(Debug, Clone)]
pub enum Yes {
    All,
    /// A health card number is recorded.
    Card,
    /// A fact of this kind at a time in the period.
    Fact(&'static str),
    /// A fact of this kind in force during the period (`at` before the end, `until_at`
    /// absent or not before the start).
    InForce(&'static str),
}

/// Which managed patients are a yes.
#[derive(Debug, Clone)]
pub enum Managed {
    All,
    /// At least [`cells::STANDARD_FOLLOW_UPS`] follow-ups in the period.
    Standard,
    /// The latest fact of this kind in the period is on target (its flag).
    LatestOnTarget(&'static str),
}

/// What an evaluation covers: the period `[start, end)` in ms and its first and last months
/// (`YYYYMM`), its code when it is a calendar month, quarter or year (see [`cells::month`]),
/// the year ages are reckoned in (years reached in it: the year of the period's end), the
/// home areas (a code prefix; empty: every area, and members with no known area too), and
/// the members' ages in that year.
#[derive(Debug, Clone)]
pub struct Scope {
    pub start: i64,
    pub end: i64,
    pub months: (i32, i32),
    pub calendar: Option<i32>,
    pub year: i32,
    pub area: String,
    pub from_age: Option<i32>,
    pub to_age: Option<i32>,
}

impl Scope {
    /// Whether every age of band `b` is within the members' ages (the indicators' age limits
    /// are band limits).
    fn band_within(&self, b: i32) -> bool {
        let Ok(i) = usize::try_from(b) else {
            return self.from_age.is_none() && self.to_age.is_none();
        };
        let lo = if i == 0 {
            i32::MIN
        } else {
            cells::AGE_BANDS[i - 1]
        };
        let hi = cells::AGE_BANDS.get(i).map_or(i32::MAX, |a| a - 1);
        self.from_age.is_none_or(|f| lo >= f) && self.to_age.is_none_or(|t| hi <= t)
    }

    /// Whether a member born in year `born` (-1: unknown) is within the members' ages.
    fn born_within(&self, born: i32) -> bool {
        if self.from_age.is_none() && self.to_age.is_none() {
            return true;
        }
        born >= 0
            && self.from_age.is_none_or(|f| self.year - born >= f)
            && self.to_age.is_none_or(|t| self.year - born <= t)
    }
}

/// Count `members` in `scope`, by the finest cells: from the aggregates ([`cells`]) where
/// they hold the period (events always, residents for calendar periods), else from the
/// members themselves.
pub fn cells(conn: &mut DbConn, members: &Members, scope: &Scope) -> QueryResult<Vec<Cell>> {
    let area = scope.area.as_str();
    let known = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    // A cell's row as an evaluation's cell; its `age` is a band by now.
    let cell = |r: &cells::Row, flag: i32| Cell {
        area: known(&r.area),
        sex: known(&r.sex),
        band: r.age,
        org: known(&r.org),
        flag,
        n: r.n,
        total: Some(r.total),
    };
    match (members, scope.calendar) {
        (Members::Events(kind), _) => {
            let rows = cells::read(conn, kind, scope.months.0, scope.months.1, area)?;
            Ok(rows.iter().map(|r| cell(r, r.flag)).collect())
        }
        (Members::Residents(yes), calendar) => {
            let flagged = match yes {
                Yes::All | Yes::Card => Vec::new(),
                Yes::Fact(kind) | Yes::InForce(kind) => match calendar {
                    Some(code) => cells::read(conn, kind, code, code, area)?,
                    None => return members_counted(conn, members, scope),
                },
            };
            // Residents' rows hold birth years: their bands in the year reckoned at.
            let mut residents = cells::read(conn, cells::RESIDENTS, 0, 0, area)?;
            residents.retain(|r| scope.born_within(r.age));
            for r in &mut residents {
                r.age = if r.age < 0 {
                    -1
                } else {
                    cells::band(scope.year - r.age)
                };
            }
            match yes {
                Yes::All => return Ok(residents.iter().map(|r| cell(r, 1)).collect()),
                Yes::Card => return Ok(residents.iter().map(|r| cell(r, r.flag)).collect()),
                Yes::Fact(_) | Yes::InForce(_) => {}
            }
            // The members of each stratum less its yes are its no.
            let stratum = |r: &cells::Row| (r.area.clone(), r.sex.clone(), r.age, r.org.clone());
            let mut no: std::collections::BTreeMap<_, cells::Row> = Default::default();
            for r in residents {
                let entry = no.entry(stratum(&r)).or_insert(cells::Row {
                    n: 0,
                    flag: 0,
                    ..r.clone()
                });
                entry.n += r.n;
            }
            let mut out = Vec::new();
            for r in flagged.iter().filter(|r| scope.band_within(r.age)) {
                if let Some(members) = no.get_mut(&stratum(r)) {
                    members.n -= r.n;
                }
                out.push(cell(r, 1));
            }
            out.extend(no.values().filter(|r| r.n > 0).map(|r| cell(r, 0)));
            Ok(out)
        }
        (Members::Managed { condition, yes, .. }, Some(code)) => {
            let rows = cells::read(conn, condition, code, code, area)?;
            Ok(rows
                .iter()
                .filter(|r| scope.band_within(r.age))
                .map(|r| {
                    let flag = match yes {
                        Managed::All => 1,
                        Managed::Standard => i32::from(r.flag & cells::STANDARD != 0),
                        Managed::LatestOnTarget(_) => i32::from(r.flag & cells::ON_TARGET != 0),
                    };
                    cell(r, flag)
                })
                .collect())
        }
        (Members::Managed { .. }, None) => members_counted(conn, members, scope),
    }
}

/// Count `members` in `scope` from the facts of each member (a period the aggregates do not
/// hold: not a calendar month, quarter or year).
fn members_counted(conn: &mut DbConn, members: &Members, scope: &Scope) -> QueryResult<Vec<Cell>> {
    let (start, end, year) = (scope.start, scope.end, scope.year);
    // The age band of a birth date B in year Y: the age reached is Y - B / 10000.
    let mut band = String::from("CASE WHEN p.birth IS NULL THEN -1");
    for (i, age) in cells::AGE_BANDS.iter().enumerate() {
        let _ = std::fmt::Write::write_fmt(
            &mut band,
            format_args!(" WHEN {year} - p.birth / 10000 < {age} THEN {i}"),
        );
    }
    let _ = std::fmt::Write::write_fmt(
        &mut band,
        format_args!(" ELSE {} END", cells::AGE_BANDS.len()),
    );
    let mut filter = String::new();
    if let Some(a) = scope.from_age {
        filter.push_str(&format!(" AND p.birth / 10000 <= {}", year - a));
    }
    if let Some(a) = scope.to_age {
        filter.push_str(&format!(" AND p.birth / 10000 >= {}", year - a));
    }
    let area = if scope.area.is_empty() {
        "1 = 1".to_owned()
    } else {
        "p.area LIKE $1".to_owned()
    };
    let sql = match members {
        Members::Residents(yes) => {
            let flag = match yes {
                Yes::All => "1".to_owned(),
                Yes::Card => "p.card".to_owned(),
                // One seek per resident in (kind, resident, at): a join to a derived table
                // is a scan of it per resident on SQLite, which builds no index for it.
                Yes::Fact(kind) => format!(
                    "CASE WHEN EXISTS (SELECT 1 FROM stat_facts y WHERE y.kind = '{kind}' \
                         AND y.resident = p.resident AND y.at >= {start} AND y.at < {end}) \
                         THEN 1 ELSE 0 END"
                ),
                Yes::InForce(kind) => format!(
                    "CASE WHEN EXISTS (SELECT 1 FROM stat_facts y WHERE y.kind = '{kind}' \
                         AND y.resident = p.resident AND y.at < {end} \
                         AND (y.until_at IS NULL OR y.until_at >= {start})) THEN 1 ELSE 0 END"
                ),
            };
            format!(
                "SELECT p.area AS area, p.sex AS sex, {band} AS band, p.org AS org, \
                 {flag} AS flag, COUNT(*) AS n, CAST(NULL AS DOUBLE PRECISION) AS total \
                 FROM stat_residents p \
                 WHERE p.golden = 1 AND {area}{filter} \
                 GROUP BY 1, 2, 3, 4, 5"
            )
        }
        Members::Managed {
            condition,
            follow_up,
            yes,
        } => {
            let flag = match yes {
                Managed::All => "1".to_owned(),
                Managed::Standard => format!(
                    "CASE WHEN m.n >= {} THEN 1 ELSE 0 END",
                    cells::STANDARD_FOLLOW_UPS
                ),
                Managed::LatestOnTarget(kind) => format!(
                    "CASE WHEN (SELECT MAX(b.at * 2 + b.flag) FROM stat_facts b \
                         WHERE b.kind = '{kind}' AND b.resident = m.resident \
                         AND b.at >= {start} AND b.at < {end}) % 2 = 1 THEN 1 ELSE 0 END"
                ),
            };
            format!(
                "SELECT p.area AS area, p.sex AS sex, {band} AS band, p.org AS org, \
                 {flag} AS flag, COUNT(*) AS n, CAST(NULL AS DOUBLE PRECISION) AS total \
                 FROM (SELECT resident, COUNT(*) AS n FROM stat_facts WHERE kind = '{follow_up}' \
                 AND at >= {start} AND at < {end} AND resident IS NOT NULL GROUP BY resident) m \
                 JOIN stat_residents p ON p.resident = m.resident \
                 WHERE p.golden = 1 AND {area}{filter} AND EXISTS (SELECT 1 FROM stat_facts c \
                 WHERE c.kind = '{condition}' AND c.resident = m.resident AND c.at < {end}) \
                 GROUP BY 1, 2, 3, 4, 5"
            )
        }
        // Events are always counted from the aggregates.
        Members::Events(_) => return cells(conn, members, scope),
    };
    let like = format!("{}%", scope.area);
    if scope.area.is_empty() {
        let q = diesel::sql_query(sql);
        native!(conn, c => q.load(c))
    } else {
        let q = diesel::sql_query(sql).bind::<Text, _>(like);
        native!(conn, c => q.load(c))
    }
}
