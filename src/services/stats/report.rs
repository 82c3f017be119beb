//! An evaluation as it is published: suppressed ([`super::suppress`]), counts rounded, then
//! written as a `MeasureReport` (type `summary`) or as CSV rows (UTF-8 with a byte-order mark,
//! so that spreadsheet programs open the Chinese headers).

use std::fmt::Write as _;

use super::suppress::{Cell, suppress};
use super::{Counts, Denominator, Evaluation, Indicator, Period, Publication, Scoring, UNKNOWN};
use crate::fhir::bundle::{obj, s};
use crate::fhir::json::Json;

const POPULATION: &str = "http://terminology.hl7.org/CodeSystem/measure-population";
const DATA_ABSENT: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
const STRATIFIER: &str = "urn:huimin:CodeSystem:measure-stratifier";
const GENDER: &str = "http://hl7.org/fhir/administrative-gender";
const UCUM: &str = "http://unitsofmeasure.org";

/// One published count: shown (rounded), masked, or not applicable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shown {
    Count(i64),
    Masked,
    Absent,
}

/// One published row: the whole report (`stratifier` None) or a stratum.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub stratifier: Option<&'static str>,
    pub stratum: String,
    pub numerator: Shown,
    pub denominator: Shown,
    pub score: Option<f64>,
}

/// A published report: its rows, whole first, then each stratifier's strata.
#[derive(Debug, Clone)]
pub struct Published {
    pub measure: &'static str,
    pub period: Period,
    pub area: String,
    pub rows: Vec<Row>,
    /// The prevalence version used, when the denominator is an estimate of patients.
    pub prevalence: Option<(String, f64)>,
}

/// Suppress and round `e` for publication.
pub fn publish(
    ind: &Indicator,
    period: Period,
    area: &str,
    e: &Evaluation,
    p: &Publication,
) -> Published {
    let record_based = matches!(ind.denominator, Some(Denominator::Members));
    let split = |c: &Counts| match ind.scoring {
        Scoring::Proportion if record_based => (c.yes, Some(c.all - c.yes)),
        Scoring::Proportion => (c.yes, None),
        Scoring::Cohort | Scoring::Continuous => (c.all, None),
    };
    // Cell 0 is the whole; each stratifier's strata form groups under their parent: a
    // township under its district, an institution under its category, others the whole.
    let mut cells = vec![{
        let (yes, no) = split(&e.whole);
        Cell::new(yes, no, None, 0)
    }];
    // Every stratum's cell first, then each one's parent and group of siblings.
    let mut index: Vec<(&'static str, &str)> = Vec::new();
    for (s, strata) in &e.strata {
        for (key, counts) in strata {
            let (yes, no) = split(counts);
            index.push((s, key.as_str()));
            cells.push(Cell::new(yes, no, Some(0), 0));
        }
    }
    let position = |s: &str, key: &str| {
        index
            .iter()
            .position(|(st, k)| *st == s && *k == key)
            .map(|i| i + 1)
    };
    let mut groups: Vec<(usize, &'static str)> = Vec::new();
    for (i, (s, key)) in index.iter().enumerate() {
        let parent = match *s {
            "township" if *key != UNKNOWN => key.get(..6).and_then(|d| position("district", d)),
            "organization" => e
                .org_types
                .get(*key)
                .and_then(|t| position("organization-type", t)),
            _ => None,
        }
        .unwrap_or(0);
        let group = match groups.iter().position(|g| *g == (parent, *s)) {
            Some(g) => g + 1,
            None => {
                groups.push((parent, s));
                groups.len()
            }
        };
        cells[i + 1].parent = Some(parent);
        cells[i + 1].group = group;
    }
    suppress(&mut cells, p.min_cell);
    let round = |n: i64| {
        let r = p.rounding.max(1);
        (n + r / 2) / r * r
    };
    let row = |s: Option<&'static str>, key: String, counts: &Counts, cell: &Cell| {
        let numerator = if cell.yes_masked {
            Shown::Masked
        } else {
            Shown::Count(round(cell.yes))
        };
        let denominator = match (ind.scoring, ind.denominator) {
            (Scoring::Proportion, Some(Denominator::Members)) if cell.den_masked => Shown::Masked,
            (Scoring::Proportion, Some(Denominator::Members)) => Shown::Count(round(counts.all)),
            (Scoring::Proportion, _) => match counts.population {
                Some(n) => Shown::Count(n.round() as i64),
                None => Shown::Absent,
            },
            _ => Shown::Absent,
        };
        let score = match (ind.scoring, numerator, denominator) {
            (Scoring::Proportion, Shown::Count(n), Shown::Count(d)) if d > 0 => {
                Some(n as f64 / d as f64)
            }
            (Scoring::Continuous, Shown::Count(_), _) if counts.all > 0 => {
                Some(counts.total / counts.all as f64)
            }
            _ => None,
        };
        Row {
            stratifier: s,
            stratum: key,
            numerator,
            denominator,
            score,
        }
    };
    let mut rows = vec![row(None, String::new(), &e.whole, &cells[0])];
    for (i, (s, key, counts)) in e
        .strata
        .iter()
        .flat_map(|(s, strata)| strata.iter().map(move |(k, c)| (*s, k, c)))
        .enumerate()
    {
        rows.push(row(Some(s), key.clone(), counts, &cells[i + 1]));
    }
    let prevalence = match ind.denominator {
        Some(Denominator::Population { factor, .. }) => match factor {
            super::Factor::One => None,
            super::Factor::Hypertension => {
                Some((p.prevalence.version.clone(), p.prevalence.hypertension))
            }
            super::Factor::Diabetes => Some((p.prevalence.version.clone(), p.prevalence.diabetes)),
        },
        _ => None,
    };
    Published {
        measure: ind.name,
        period,
        area: area.to_owned(),
        rows,
        prevalence,
    }
}

fn coding(system: &str, code: &str) -> Json {
    obj(vec![(
        "coding",
        Json::Array(vec![obj(vec![("system", s(system)), ("code", s(code))])]),
    )])
}

fn number(v: f64, places: i32) -> Json {
    let f = 10f64.powi(places);
    let v = (v * f).round() / f;
    Json::Number(format!("{v}"))
}

/// The population codes a report of `ind` shows: numerator and denominator of a proportion,
/// the initial population of a cohort, the measure population of a continuous variable.
fn codes(ind: &Indicator) -> (&'static str, Option<&'static str>) {
    match ind.scoring {
        Scoring::Proportion => ("numerator", Some("denominator")),
        Scoring::Cohort => ("initial-population", None),
        Scoring::Continuous => ("measure-population", None),
    }
}

fn population(code: &str, shown: Shown) -> Option<Json> {
    let code = ("code", coding(POPULATION, code));
    match shown {
        Shown::Count(n) => Some(obj(vec![code, ("count", Json::Number(n.to_string()))])),
        Shown::Masked => Some(obj(vec![
            code,
            (
                "_count",
                obj(vec![(
                    "extension",
                    Json::Array(vec![obj(vec![
                        ("url", s(DATA_ABSENT)),
                        ("valueCode", s("masked")),
                    ])]),
                )]),
            ),
        ])),
        Shown::Absent => None,
    }
}

fn counts_of(ind: &Indicator, row: &Row) -> Vec<(&'static str, Json)> {
    let (num, den) = codes(ind);
    let mut pops: Vec<Json> = population(num, row.numerator).into_iter().collect();
    if let Some(den) = den {
        pops.extend(population(den, row.denominator));
    }
    let mut out = vec![("population", Json::Array(pops))];
    if let Some(score) = row.score {
        let q = match ind.scoring {
            Scoring::Continuous => obj(vec![
                ("value", number(score, 2)),
                ("unit", s("d")),
                ("system", s(UCUM)),
                ("code", s("d")),
            ]),
            _ => obj(vec![("value", number(score, 4))]),
        };
        out.push(("measureScore", q));
    }
    out
}

fn stratum_value(stratifier: &str, key: &str) -> Json {
    match stratifier {
        "sex" if key != UNKNOWN => obj(vec![
            (
                "coding",
                Json::Array(vec![obj(vec![("system", s(GENDER)), ("code", s(key))])]),
            ),
            ("text", s(key)),
        ]),
        _ => obj(vec![("text", s(key))]),
    }
}

/// The report as a `MeasureReport` (status complete, type summary).
pub fn measure_report(ind: &Indicator, r: &Published, p: &Publication, now: i64) -> Json {
    let (start, end) = r.period.dates();
    let mut ext = vec![
        obj(vec![
            ("url", s("urn:huimin:StructureDefinition:report-area")),
            (
                "valueString",
                s(if r.area.is_empty() { "*" } else { &r.area }),
            ),
        ]),
        obj(vec![
            ("url", s("urn:huimin:StructureDefinition:suppression")),
            (
                "extension",
                Json::Array(vec![
                    obj(vec![
                        ("url", s("minCell")),
                        ("valueInteger", Json::Number(p.min_cell.to_string())),
                    ]),
                    obj(vec![
                        ("url", s("rounding")),
                        ("valueInteger", Json::Number(p.rounding.to_string())),
                    ]),
                ]),
            ),
        ]),
    ];
    if let Some((version, rate)) = &r.prevalence {
        ext.push(obj(vec![
            ("url", s("urn:huimin:StructureDefinition:prevalence")),
            (
                "extension",
                Json::Array(vec![
                    obj(vec![("url", s("version")), ("valueString", s(version))]),
                    obj(vec![("url", s("rate")), ("valueDecimal", number(*rate, 4))]),
                ]),
            ),
        ]));
    }
    let mut group = counts_of(ind, &r.rows[0]);
    let mut stratifiers: Vec<Json> = Vec::new();
    let mut current: Option<(&str, Vec<Json>)> = None;
    for row in &r.rows[1..] {
        let Some(st) = row.stratifier else { continue };
        if current.as_ref().is_some_and(|(c, _)| *c != st)
            && let Some((c, strata)) = current.take()
        {
            stratifiers.push(stratifier(c, strata));
        }
        let entry = current.get_or_insert((st, Vec::new()));
        let mut fields = vec![("value", stratum_value(st, &row.stratum))];
        fields.extend(counts_of(ind, row));
        entry.1.push(obj(fields));
    }
    if let Some((c, strata)) = current.take() {
        stratifiers.push(stratifier(c, strata));
    }
    if !stratifiers.is_empty() {
        group.push(("stratifier", Json::Array(stratifiers)));
    }
    obj(vec![
        ("resourceType", s("MeasureReport")),
        ("extension", Json::Array(ext)),
        ("status", s("complete")),
        ("type", s("summary")),
        ("measure", s(super::url_of(ind.name))),
        ("date", s(crate::clock::instant(now))),
        ("period", obj(vec![("start", s(&start)), ("end", s(&end))])),
        ("group", Json::Array(vec![obj(group)])),
    ])
}

fn stratifier(code: &str, strata: Vec<Json>) -> Json {
    obj(vec![
        (
            "code",
            Json::Array(vec![obj(vec![
                (
                    "coding",
                    Json::Array(vec![obj(vec![
                        ("system", s(STRATIFIER)),
                        ("code", s(code)),
                    ])]),
                ),
                ("text", s(code)),
            ])]),
        ),
        ("stratum", Json::Array(strata)),
    ])
}

/// The CSV header (Chinese, then English).
pub const CSV_HEADER: &str = "指标 measure,开始 period start,结束 period end,地区 area,分层 stratifier,分组 stratum,分子 numerator,分母 denominator,得分 score\r\n";

/// The reports as CSV: a byte-order mark, the header, one row per stratum (and the whole).
pub fn csv(reports: &[Published]) -> String {
    let mut out = String::from("\u{feff}");
    out.push_str(CSV_HEADER);
    let shown = |v: Shown| match v {
        Shown::Count(n) => n.to_string(),
        Shown::Masked => "masked".to_owned(),
        Shown::Absent => String::new(),
    };
    for r in reports {
        let (start, end) = r.period.dates();
        for row in &r.rows {
            let score = row.score.map(|v| format!("{:.4}", v)).unwrap_or_default();
            let _ = write!(
                out,
                "{},{start},{end},{},{},{},{},{},{score}\r\n",
                super::url_of(r.measure),
                if r.area.is_empty() { "*" } else { &r.area },
                row.stratifier.unwrap_or("all"),
                csv_field(&row.stratum),
                shown(row.numerator),
                shown(row.denominator),
            );
        }
    }
    out
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}
