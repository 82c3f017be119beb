//! Public-health statistics (国家基本公共卫生服务规范): the national indicators as the
//! Measures shipped in `fhir-profiles/measures.json`, evaluated from what the record's writes
//! keep in `stat_facts` and `stat_residents` ([`facts`]), broken down by district, township,
//! institution, institution category, sex and age band, with small cells suppressed
//! ([`suppress`]) and counts rounded before anyone sees them. Officials read them for their
//! area; nothing about an individual ever leaves.

pub mod facts;
pub mod population;
pub mod report;
pub mod suppress;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::audit::Draft;
use crate::store::Store;
use crate::store::stats::{self as rows, Cell, Managed, Members, Population, Scope, Yes};

/// The Measures the platform ships, as `fhir-profiles/measures.json` holds them.
pub fn shipped() -> &'static [Json] {
    static MEASURES: OnceLock<Vec<Json>> = OnceLock::new();
    MEASURES.get_or_init(|| {
        let bundle = Json::parse(include_bytes!("../../../fhir-profiles/measures.json"));
        match bundle.ok().and_then(|b| b.get("entry").cloned()) {
            Some(Json::Array(entries)) => entries
                .into_iter()
                .filter_map(|mut e| e.remove("resource"))
                .collect(),
            _ => Vec::new(),
        }
    })
}

/// The canonical URL of indicator `name`.
pub fn url_of(name: &str) -> String {
    format!("urn:huimin:Measure:{name}")
}

/// The prevalences the management indicators estimate their patients with (fractions of the
/// adult population), and the version of that estimate a report names.
#[derive(Debug, Clone, PartialEq)]
pub struct Prevalence {
    pub version: String,
    pub hypertension: f64,
    pub diabetes: f64,
}

impl Prevalence {
    /// `VERSION;hypertension=PERCENT;diabetes=PERCENT`.
    pub fn parse(s: &str) -> Result<Prevalence, String> {
        let mut parts = s.split(';');
        let version = parts.next().unwrap_or("").trim();
        if version.is_empty() {
            return Err("expected VERSION;hypertension=PERCENT;diabetes=PERCENT".to_owned());
        }
        let (mut hypertension, mut diabetes) = (None, None);
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}' is not NAME=PERCENT"))?;
            let pct: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                .ok_or_else(|| format!("'{v}' is not a percentage above 0 and at most 100"))?;
            match k.trim() {
                "hypertension" => hypertension = Some(pct / 100.0),
                "diabetes" => diabetes = Some(pct / 100.0),
                other => return Err(format!("unknown prevalence '{other}'")),
            }
        }
        Ok(Prevalence {
            version: version.to_owned(),
            hypertension: hypertension.ok_or("hypertension=PERCENT is missing")?,
            diabetes: diabetes.ok_or("diabetes=PERCENT is missing")?,
        })
    }
}

/// How the statistics are published: the smallest count shown, the base counts are rounded
/// to, the prevalence estimate.
#[derive(Debug, Clone)]
pub struct Publication {
    pub min_cell: i64,
    pub rounding: i64,
    pub prevalence: Prevalence,
}

impl Publication {
    pub fn of(settings: &crate::config::Settings) -> Result<Publication, ApiError> {
        Ok(Publication {
            min_cell: i64::from(settings.stats_min_cell.max(5)),
            rounding: i64::from(settings.stats_rounding.max(1)),
            prevalence: Prevalence::parse(&settings.stats_prevalence)
                .map_err(ApiError::internal)?,
        })
    }
}

/// How an indicator is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// Numerator over denominator.
    Proportion,
    /// A count.
    Cohort,
    /// The mean of an observation (days) over the measure population.
    Continuous,
}

/// What a proportion divides by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Denominator {
    /// The area's resident population of these ages, times a factor (a prevalence).
    Population {
        from_age: Option<i32>,
        to_age: Option<i32>,
        factor: Factor,
    },
    /// The members counted (the numerator is those of them who are a yes).
    Members,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    One,
    Hypertension,
    Diabetes,
}

/// One indicator's definition (see `fhir-profiles/measures.json` for the words).
#[derive(Debug, Clone)]
pub struct Indicator {
    pub name: &'static str,
    pub scoring: Scoring,
    pub members: Members,
    pub denominator: Option<Denominator>,
    /// The members' ages (reached in the year of the period's end), inclusive.
    pub from_age: Option<i32>,
    pub to_age: Option<i32>,
}

const ADULT: i32 = 18;
const ELDERLY: i32 = 65;
const CHILD: i32 = 6;

fn population(from_age: Option<i32>, to_age: Option<i32>, factor: Factor) -> Option<Denominator> {
    Some(Denominator::Population {
        from_age,
        to_age,
        factor,
    })
}

/// The indicator called `name`, if the platform computes it.
pub fn indicator(name: &str) -> Option<Indicator> {
    use facts::*;
    let (scoring, members, denominator, from_age, to_age) = match name {
        "ehr-coverage" => (
            Scoring::Proportion,
            Members::Residents(Yes::All),
            population(None, None, Factor::One),
            None,
            None,
        ),
        "ehr-use" => (
            Scoring::Proportion,
            Members::Residents(Yes::Fact(ENCOUNTER)),
            Some(Denominator::Members),
            None,
            None,
        ),
        "health-card-issuance" => (
            Scoring::Proportion,
            Members::Residents(Yes::Card),
            population(None, None, Factor::One),
            None,
            None,
        ),
        "hypertension-management" | "diabetes-management" => {
            let (condition, follow_up, factor) = programme(name);
            (
                Scoring::Proportion,
                Members::Managed {
                    condition,
                    follow_up,
                    yes: Managed::All,
                },
                population(Some(ADULT), None, factor),
                None,
                None,
            )
        }
        "hypertension-standard-management" | "diabetes-standard-management" => {
            let (condition, follow_up, _) = programme(name);
            (
                Scoring::Proportion,
                Members::Managed {
                    condition,
                    follow_up,
                    yes: Managed::Standard,
                },
                Some(Denominator::Members),
                None,
                None,
            )
        }
        "hypertension-control" | "diabetes-control" => {
            let (condition, follow_up, _) = programme(name);
            let measurement = if condition == HYPERTENSION {
                BLOOD_PRESSURE
            } else {
                GLUCOSE
            };
            (
                Scoring::Proportion,
                Members::Managed {
                    condition,
                    follow_up,
                    yes: Managed::LatestOnTarget(measurement),
                },
                Some(Denominator::Members),
                None,
                None,
            )
        }
        "elderly-health-management" => (
            Scoring::Proportion,
            Members::Residents(Yes::Fact(ELDERLY_CHECK)),
            population(Some(ELDERLY), None, Factor::One),
            Some(ELDERLY),
            None,
        ),
        "child-health-management" => (
            Scoring::Proportion,
            Members::Residents(Yes::Fact(CHILD_CHECK)),
            population(Some(0), Some(CHILD), Factor::One),
            None,
            Some(CHILD),
        ),
        "family-doctor-signing" => (
            Scoring::Proportion,
            Members::Residents(Yes::InForce(SIGNED)),
            population(None, None, Factor::One),
            None,
            None,
        ),
        "booking-rate" => (
            Scoring::Proportion,
            Members::Events(VISIT),
            Some(Denominator::Members),
            None,
            None,
        ),
        "booking-lead-time" => (
            Scoring::Continuous,
            Members::Events(APPOINTMENT),
            None,
            None,
            None,
        ),
        "no-show-rate" => (
            Scoring::Proportion,
            Members::Events(APPOINTMENT),
            Some(Denominator::Members),
            None,
            None,
        ),
        "referral-up" => (
            Scoring::Cohort,
            Members::Events(REFERRAL_UP),
            None,
            None,
            None,
        ),
        "referral-down" => (
            Scoring::Cohort,
            Members::Events(REFERRAL_DOWN),
            None,
            None,
            None,
        ),
        "referral-acceptance" => (
            Scoring::Proportion,
            Members::Events(REFERRAL_RECEIVED),
            Some(Denominator::Members),
            None,
            None,
        ),
        "referral-completion-time" => (
            Scoring::Continuous,
            Members::Events(REFERRAL_DONE),
            None,
            None,
            None,
        ),
        "data-timeliness" => (
            Scoring::Proportion,
            Members::Events(ENCOUNTER_END),
            Some(Denominator::Members),
            None,
            None,
        ),
        _ => return None,
    };
    let name = shipped()
        .iter()
        .filter_map(|m| m.get_str("id"))
        .find(|id| *id == name)?;
    Some(Indicator {
        name,
        scoring,
        members,
        denominator,
        from_age,
        to_age,
    })
}

fn programme(name: &str) -> (&'static str, &'static str, Factor) {
    if name.starts_with("hypertension") {
        (
            facts::HYPERTENSION,
            facts::HYPERTENSION_FOLLOW_UP,
            Factor::Hypertension,
        )
    } else {
        (facts::DIABETES, facts::DIABETES_FOLLOW_UP, Factor::Diabetes)
    }
}

/// The stratifiers, in the order a report lists them.
pub const STRATIFIERS: [&str; 6] = [
    "district",
    "township",
    "organization",
    "organization-type",
    "sex",
    "age-band",
];

/// The age bands (see [`rows::cells::AGE_BANDS`]): ages reached in the year of the period's
/// end, or of the event for indicators that count events.
const BANDS: [i32; 4] = rows::cells::AGE_BANDS;
const BAND_NAMES: [&str; 5] = ["0-6", "7-17", "18-44", "45-64", "65+"];

/// A whole-month period: the first day of its first month to the last of its last (dates as
/// YYYYMMDD), and as ms `[start, end)` local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub first: i32,
    pub last: i32,
    pub start: i64,
    pub end: i64,
}

impl Period {
    /// `periodStart` and `periodEnd` as dates: the first day of a month and the last day of
    /// a month at or after it. Periods of whole months only: a report differs from another
    /// by whole months, whose own counts are published under the same suppression.
    pub fn parse(start: &str, end: &str) -> Result<Period, ApiError> {
        let bad = |name: &str, why: &str| ApiError::bad_request(format!("{name}: {why}"));
        let (y1, m1, d1) =
            ymd(start).ok_or_else(|| bad("periodStart", "expected a date YYYY-MM-DD"))?;
        let (y2, m2, d2) =
            ymd(end).ok_or_else(|| bad("periodEnd", "expected a date YYYY-MM-DD"))?;
        if d1 != 1 {
            return Err(bad(
                "periodStart",
                "periods are whole months: start on the first day of a month",
            ));
        }
        if d2 != days_in(y2, m2) {
            return Err(bad(
                "periodEnd",
                "periods are whole months: end on the last day of a month",
            ));
        }
        let (first, last) = (y1 * 10_000 + m1 * 100 + d1, y2 * 10_000 + m2 * 100 + d2);
        if last < first {
            return Err(bad("periodEnd", "is before periodStart"));
        }
        Period::months(y1, m1, y2, m2)
    }

    /// The months `y1-m1` to `y2-m2`, both included.
    pub fn months(y1: i32, m1: i32, y2: i32, m2: i32) -> Result<Period, ApiError> {
        // A month's span in local time, its last millisecond included.
        let month = |y: i32, m: i32| {
            crate::clock::period_of(&format!("{y:04}-{m:02}"))
                .ok_or_else(|| ApiError::bad_request(format!("{y:04}-{m:02}: not a month")))
        };
        Ok(Period {
            first: y1 * 10_000 + m1 * 100 + 1,
            last: y2 * 10_000 + m2 * 100 + days_in(y2, m2),
            start: month(y1, m1)?.0,
            end: month(y2, m2)?.1 + 1,
        })
    }

    pub fn year(&self) -> i32 {
        self.last / 10_000
    }

    /// The aggregates' code of this period when it is a calendar month, quarter or year.
    pub fn calendar(&self) -> Option<i32> {
        use rows::cells;
        let (y, m1, m2) = (
            self.first / 10_000,
            self.first / 100 % 100,
            self.last / 100 % 100,
        );
        if self.last / 10_000 != y {
            return None;
        }
        match (m1, m2) {
            (1, 12) => Some(cells::year(y)),
            (a, b) if a == b => Some(cells::month(y, a)),
            (a, b) if a % 3 == 1 && b == a + 2 => Some(cells::quarter(y, (a - 1) / 3 + 1)),
            _ => None,
        }
    }

    pub fn dates(&self) -> (String, String) {
        let f = |d: i32| format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100);
        (f(self.first), f(self.last))
    }

    /// The calendar periods of `unit` (`month`, `quarter`, `year`) that cover this one.
    pub fn split(&self, unit: &str) -> Result<Vec<Period>, ApiError> {
        let step = match unit {
            "month" => 1,
            "quarter" => 3,
            "year" => 12,
            other => {
                return Err(ApiError::bad_request(format!(
                    "period: '{other}' is not month, quarter or year"
                )));
            }
        };
        let (mut y, mut m) = (self.first / 10_000, self.first / 100 % 100);
        // Calendar-aligned: a quarter starts in January, April, July or October.
        m -= (m - 1) % step;
        let mut out = Vec::new();
        while y * 100 + m <= self.last / 100 {
            let (mut ey, mut em) = (y, m + step - 1);
            if em > 12 {
                ey += 1;
                em -= 12;
            }
            out.push(Period::months(y, m, ey, em)?);
            (y, m) = if em == 12 { (ey + 1, 1) } else { (ey, em + 1) };
            if out.len() > 240 {
                return Err(ApiError::bad_request(
                    "period: at most 240 periods in one series".to_owned(),
                ));
            }
        }
        Ok(out)
    }
}

fn ymd(s: &str) -> Option<(i32, i32, i32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s.get(..4)?.parse().ok()?;
    let m: i32 = s.get(5..7)?.parse().ok()?;
    let d: i32 = s.get(8..)?.parse().ok()?;
    ((1900..=2200).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in(y, m))
        .then_some((y, m, d))
}

fn days_in(y: i32, m: i32) -> i32 {
    let days = u32::try_from(m).map_or(0, |m| crate::clock::days_in_month(y, m));
    i32::try_from(days).unwrap_or(0)
}

/// What an evaluation asks for.
#[derive(Debug, Clone)]
pub struct Request {
    pub indicator: Indicator,
    pub period: Period,
    pub stratifiers: Vec<&'static str>,
    /// The areas covered: a code prefix (empty: the whole region, members of no known area
    /// included).
    pub area: String,
}

/// The areas a caller may ask about, as a code prefix: an official's area, the whole region
/// for an administrator; `asked` (an `area` parameter) narrows it and must lie inside.
pub fn area_of(caller: &Caller, asked: Option<&str>) -> Result<String, ApiError> {
    let own = match caller.role {
        Role::Admin => String::new(),
        Role::Official => match caller.area.as_deref() {
            Some(a) => crate::auth::area_prefix(a).to_owned(),
            None => return Err(ApiError::Forbidden("the token names no area".to_owned())),
        },
        _ => {
            return Err(ApiError::Forbidden(
                "statistics are for officials and administrators".to_owned(),
            ));
        }
    };
    match asked {
        None => Ok(own),
        Some(a) if crate::auth::is_area(Some(a)) => {
            let prefix = crate::auth::area_prefix(a);
            if prefix.starts_with(&own) {
                Ok(prefix.to_owned())
            } else {
                Err(ApiError::Forbidden(format!(
                    "area {a} is outside the area this token answers for"
                )))
            }
        }
        Some(a) => Err(ApiError::bad_request(format!(
            "area: '{a}' is not a GB/T 2260 code (6 digits) or a township's (9)"
        ))),
    }
}

/// One stratum's (or the whole report's) counts before publication.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Members who are a yes (the numerator of a proportion, the count of a cohort or a
    /// continuous variable's population).
    pub yes: i64,
    /// Every member counted (the denominator of a record-based proportion).
    pub all: i64,
    /// The sum of the members' observations (continuous variables).
    pub total: f64,
    /// The population denominator (already multiplied by its factor), when it is one.
    pub population: Option<f64>,
}

/// An evaluation's result before publication: the whole and each stratifier's strata
/// (value, counts), in order.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub whole: Counts,
    pub strata: Vec<(&'static str, Vec<(String, Counts)>)>,
    /// Each institution's category (an institution's stratum adds up into its category's).
    pub org_types: HashMap<String, String>,
}

/// Evaluate `req` as the data stands now.
pub fn evaluate(store: &Store, req: &Request, p: &Publication) -> Result<Evaluation, ApiError> {
    let ind = &req.indicator;
    let scope = Scope {
        start: req.period.start,
        end: req.period.end,
        months: (req.period.first / 100, req.period.last / 100),
        calendar: req.period.calendar(),
        year: req.period.year(),
        area: req.area.clone(),
        from_age: ind.from_age,
        to_age: ind.to_age,
    };
    let members = ind.members.clone();
    let needs_population = matches!(ind.denominator, Some(Denominator::Population { .. }));
    let needs_orgs = req
        .stratifiers
        .iter()
        .any(|s| matches!(*s, "organization" | "organization-type"));
    let year = req.period.year();
    let area = req.area.clone();
    let (cells, pop, orgs) = store.read(move |tx| {
        let cells = rows::cells(tx.conn(), &members, &scope)?;
        let pop = if needs_population {
            rows::population(tx.conn(), year, &area)?
        } else {
            Vec::new()
        };
        let orgs = if needs_orgs {
            rows::organizations(tx.conn())?
        } else {
            Vec::new()
        };
        Ok::<_, ApiError>((cells, pop, orgs))
    })?;
    let categories: HashMap<String, String> = orgs
        .iter()
        .filter_map(|(id, content)| {
            let tree = Json::parse(content.as_bytes()).ok()?;
            Some((format!("Organization/{id}"), org_category(&tree)?))
        })
        .collect();
    let factor = match ind.denominator {
        Some(Denominator::Population { factor, .. }) => match factor {
            Factor::One => 1.0,
            Factor::Hypertension => p.prevalence.hypertension,
            Factor::Diabetes => p.prevalence.diabetes,
        },
        _ => 1.0,
    };
    let pops = Populations { rows: &pop };
    let (pop_from, pop_to) = match ind.denominator {
        Some(Denominator::Population {
            from_age, to_age, ..
        }) => (from_age, to_age),
        _ => (None, None),
    };
    let with_population = |mut c: Counts, pick: &dyn Fn(&Population) -> bool, area: &str| {
        if needs_population {
            c.population = pops
                .sum(area, |r| pick(r) && within(r, pop_from, pop_to))
                .map(|n| n as f64 * factor);
        }
        c
    };
    let mut whole = Counts::default();
    for c in &cells {
        add(&mut whole, c);
    }
    let whole = with_population(whole, &|_| true, &req.area);
    let mut strata = Vec::new();
    for &s in &req.stratifiers {
        let mut by: BTreeMap<String, Counts> = BTreeMap::new();
        for c in &cells {
            let key = stratum_of(s, c, &categories);
            add(by.entry(key).or_default(), c);
        }
        // Strata the population knows of appear even when nobody in them is counted.
        if needs_population {
            for key in pops.keys(s, &req.area) {
                by.entry(key).or_default();
            }
        }
        let list = by
            .into_iter()
            .map(|(key, counts)| {
                let counts = match s {
                    "district" | "township" if key != UNKNOWN => {
                        with_population(counts, &|_| true, &key)
                    }
                    "sex" if key != UNKNOWN => {
                        with_population(counts, &|r| r.sex == key, &req.area)
                    }
                    "age-band" if key != UNKNOWN => {
                        let band = BAND_NAMES.iter().position(|b| *b == key).unwrap_or(0);
                        let lo = if band == 0 { 0 } else { BANDS[band - 1] };
                        let hi = BANDS.get(band).map(|b| b - 1);
                        with_population(
                            counts,
                            &|r| r.age_from >= lo && hi.is_none_or(|h| r.age_to <= h),
                            &req.area,
                        )
                    }
                    _ => counts,
                };
                (key, counts)
            })
            .collect();
        strata.push((s, list));
    }
    Ok(Evaluation {
        whole,
        strata,
        org_types: categories,
    })
}

/// A stratum's value for members of unknown area, sex, age or institution.
pub const UNKNOWN: &str = "unknown";

fn add(c: &mut Counts, cell: &Cell) {
    c.all += cell.n;
    if cell.flag == 1 {
        c.yes += cell.n;
    }
    c.total += cell.total.unwrap_or(0.0);
}

fn stratum_of(s: &str, c: &Cell, categories: &HashMap<String, String>) -> String {
    let v = match s {
        "district" => c
            .area
            .as_deref()
            .and_then(|a| a.get(..6))
            .map(str::to_owned),
        "township" => c
            .area
            .as_deref()
            .and_then(|a| a.get(..9))
            .map(str::to_owned),
        "organization" => c.org.clone(),
        "organization-type" => c.org.as_ref().and_then(|o| categories.get(o)).cloned(),
        "sex" => c.sex.clone(),
        "age-band" => usize::try_from(c.band)
            .ok()
            .and_then(|b| BAND_NAMES.get(b))
            .map(|b| (*b).to_owned()),
        _ => None,
    };
    v.unwrap_or_else(|| UNKNOWN.to_owned())
}

/// An institution's WS 218 category, as its Organization's `type` codes it.
fn org_category(tree: &Json) -> Option<String> {
    let category = crate::services::scheduling::referral::INSTITUTION_CATEGORY;
    facts::codes(tree.get("type"), category)
        .first()
        .map(|c| (*c).to_owned())
}

fn within(r: &Population, from: Option<i32>, to: Option<i32>) -> bool {
    from.is_none_or(|f| r.age_from >= f) && to.is_none_or(|t| r.age_to <= t)
}

/// The loaded populations under the report's area, each area counted once: the rows of an
/// area are its own, or else those of the areas just below it.
struct Populations<'a> {
    rows: &'a [Population],
}

impl<'a> Populations<'a> {
    /// The rows for area prefix `area` (the topmost under it: an area with rows of its own
    /// and of its townships counts its own).
    fn topmost(&self, area: &str) -> Vec<&'a Population> {
        let under: Vec<&Population> = self
            .rows
            .iter()
            .filter(|r| r.area.starts_with(area))
            .collect();
        under
            .iter()
            .copied()
            .filter(|r| {
                !under
                    .iter()
                    .any(|o| o.area.len() < r.area.len() && r.area.starts_with(&o.area))
            })
            .collect()
    }

    fn sum(&self, area: &str, pick: impl Fn(&Population) -> bool) -> Option<i64> {
        let rows = self.topmost(area);
        if rows.is_empty() {
            return None;
        }
        Some(rows.iter().filter(|r| pick(r)).map(|r| r.population).sum())
    }

    /// The strata of stratifier `s` the populations know under `area`.
    fn keys(&self, s: &str, area: &str) -> Vec<String> {
        let mut out: Vec<String> = match s {
            "district" => self
                .rows
                .iter()
                .filter(|r| r.area.starts_with(area))
                .filter_map(|r| r.area.get(..6).map(str::to_owned))
                .collect(),
            "township" => self
                .rows
                .iter()
                .filter(|r| r.area.starts_with(area) && r.area.len() >= 9)
                .filter_map(|r| r.area.get(..9).map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        out.sort();
        out.dedup();
        out
    }
}

/// The types whose resources count for the indicators (see [`facts::written`]); golden
/// residents after the institutions' Patients.
const COUNTED: &[&str] = &[
    "Patient",
    "Condition",
    "Encounter",
    "Observation",
    "Appointment",
    "CareTeam",
    "DocumentReference",
];

/// Write the statistics' facts again from the stored record (`huimin stats rebuild`): every
/// fact and resident row is forgotten, then each counted resource's are written from its
/// live version, a page per write; referral Tasks from their workflow rows. For a database
/// that holds records written before the statistics existed. The statistics are partial while
/// it runs. Returns the resources read.
pub fn rebuild(store: &Store) -> Result<usize, ApiError> {
    let draft = || Draft::platform("huimin:stats-rebuild", "stats-rebuild", "stat_facts");
    crate::services::record::write(store, draft(), |tx| Ok(rows::clear(tx.conn())?))?;
    let mut read = 0;
    for t in COUNTED.iter().copied().chain(["Task"]) {
        let mut after = String::new();
        loop {
            let from = after.clone();
            let n = crate::services::record::write(store, draft(), move |tx| {
                let page = rows::live_page(tx, t, &from, 500)?;
                let last = page.last().map(|(id, ..)| id.clone());
                for (id, content, resident, custodian) in &page {
                    if t == "Task" {
                        if let Some(row) = crate::store::workflow::get(tx.conn(), id)? {
                            facts::referral(tx, &row, content)?;
                        }
                        continue;
                    }
                    let tree = Json::parse(content.as_bytes()).map_err(ApiError::internal)?;
                    let golden =
                        if t == "Patient" && crate::services::residents::mpi::is_golden(&tree) {
                            Some(id.as_str())
                        } else {
                            resident.as_deref()
                        };
                    let at = facts::recorded_at(&tree);
                    facts::written(
                        tx,
                        t,
                        id,
                        &tree,
                        golden,
                        resident.as_deref(),
                        custodian.as_deref(),
                        true,
                        at,
                    )?;
                }
                Ok((page.len(), last))
            })?;
            read += n.0;
            match n.1 {
                Some(last) if n.0 == 500 => after = last,
                _ => break,
            }
        }
    }
    Ok(read)
}

/// Sum the aggregates from the facts when a database kept facts before the aggregates
/// existed (at start-up, once). Returns the residents counted, if it had to.
pub fn backfill(store: &Store) -> Result<Option<usize>, ApiError> {
    if !store.read(|tx| Ok::<_, ApiError>(rows::cells::missing(tx.conn())?))? {
        return Ok(None);
    }
    let draft = Draft::platform("huimin:stats-backfill", "stats-backfill", "stat_cells");
    crate::services::record::write(store, draft, |tx| {
        if !rows::cells::missing(tx.conn())? {
            return Ok(None);
        }
        Ok(Some(rows::cells::rebuild(tx.conn())?))
    })
}

/// Shipped Measure `id` as a record (version 1): the definitions are part of the platform,
/// read like a stored conformance resource where none of that id is stored.
pub fn shipped_record(id: &str) -> Option<crate::services::record::Record> {
    let m = shipped().iter().find(|m| m.get_str("id") == Some(id))?;
    let mut tree = m.clone();
    tree.set_at(
        "meta",
        Json::Object(vec![
            ("versionId".to_owned(), Json::String("1".to_owned())),
            (
                "lastUpdated".to_owned(),
                Json::String(crate::clock::instant(SHIPPED_AT)),
            ),
        ]),
        2,
    );
    Some(crate::services::record::Record {
        res_type: "Measure".to_owned(),
        id: id.to_owned(),
        version_id: 1,
        last_updated: SHIPPED_AT,
        content: String::from_utf8(tree.to_bytes()).ok()?,
        resident: None,
    })
}

/// When the shipped definitions were written (2026-12-04T00:00:00Z).
const SHIPPED_AT: i64 = 1_796_342_400_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::stats::cells;

    /// Every indicator counts kinds the aggregates keep as it reads them: a kind kept another
    /// way would read as nobody.
    #[test]
    fn every_indicator_reads_kinds_the_aggregates_keep() {
        for m in shipped() {
            let name = m.get_str("id").unwrap();
            let ind = indicator(name).unwrap_or_else(|| panic!("{name} is not computed"));
            match ind.members {
                Members::Residents(Yes::Fact(k)) => assert!(cells::PRESENCE.contains(&k), "{name}"),
                Members::Residents(Yes::InForce(k)) => assert_eq!(k, facts::SIGNED, "{name}"),
                Members::Residents(_) => {}
                Members::Managed {
                    condition,
                    follow_up,
                    yes,
                } => {
                    let (c, f, reading) = cells::PROGRAMMES
                        .into_iter()
                        .find(|p| p.0 == condition)
                        .unwrap_or_else(|| panic!("{name}"));
                    assert_eq!((c, f), (condition, follow_up), "{name}");
                    if let Managed::LatestOnTarget(k) = yes {
                        assert_eq!(k, reading, "{name}");
                    }
                }
                Members::Events(k) => assert!(cells::EVENTS.contains(&k), "{name}"),
            }
        }
    }

    #[test]
    fn calendar_periods_have_codes() {
        let p = |a: &str, b: &str| Period::parse(a, b).unwrap().calendar();
        assert_eq!(p("2026-01-01", "2026-12-31"), Some(202_600));
        assert_eq!(p("2026-04-01", "2026-06-30"), Some(202_614));
        assert_eq!(p("2026-05-01", "2026-05-31"), Some(202_605));
        assert_eq!(p("2026-04-01", "2026-05-31"), None);
        assert_eq!(p("2026-02-01", "2026-04-30"), None);
        assert_eq!(p("2025-12-01", "2026-12-31"), None);
        assert_eq!(p("2025-01-01", "2026-12-31"), None);
    }
}
