//! What a written resource counts for in the indicators (`stat_facts`, `stat_residents`),
//! read from its content in the write's own transaction. The definitions are those of the
//! shipped Measures (`fhir-profiles/measures.json`, docs/ARCHITECTURE.md "Statistics").

use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::store::Tx;
use crate::store::stats::{self as rows, Fact, Strata};

/// ICD-10 code systems: the national edition and HL7's.
const ICD10: [&str; 2] = [
    "urn:oid:2.16.156.10011.2.3.3.11",
    "http://hl7.org/fhir/sid/icd-10",
];
const LOINC: &str = "http://loinc.org";
/// Encounter types the follow-ups and health checks are coded with.
pub const ENCOUNTER_TYPE: &str = "urn:huimin:CodeSystem:encounter-type";
/// The category of a family-doctor contract's CareTeam.
pub const CARE_TEAM_CATEGORY: &str = "urn:huimin:CodeSystem:care-team-category";
const HEALTH_CARD: &str = "urn:oid:2.16.156.10011.1.19";
const AREA_CODE: &str = "urn:huimin:StructureDefinition:area-code";
/// A day in ms.
const DAY: f64 = 86_400_000.0;
/// A year of a contract in ms.
const YEAR_MS: i64 = 365 * 86_400_000;
/// How soon after its end an encounter is to reach the platform (data timeliness).
const TIMELY_MS: i64 = 24 * 3_600_000;

/// The kinds of fact, named where the rows are kept.
pub use crate::store::stats::kind::*;

/// Keep the statistics of resource `t/id` in step with its new version `tree`: `golden` is
/// the golden resident of a Patient (itself for a golden record), `resident` the resident
/// the resource belongs to, `custodian` its writing institution.
#[expect(clippy::too_many_arguments, reason = "the parts of one version")]
pub fn written(
    tx: &mut Tx<'_>,
    t: &str,
    id: &str,
    tree: &Json,
    golden: Option<&str>,
    resident: Option<&str>,
    custodian: Option<&str>,
    is_new: bool,
    now: i64,
) -> Result<(), ApiError> {
    if t == "Patient" {
        return patient(tx, id, tree, golden, custodian, is_new, now);
    }
    let mut facts: Vec<Fact> = Vec::new();
    let fact = |kind, org, at| Fact::new(t, id, kind, resident, org, at);
    let own = |key: &str| org_of(tree, key).or_else(|| custodian.map(str::to_owned));
    match t {
        "Condition" => {
            if let Some(kind) = diagnosis(tree) {
                let at = first_time(tree, &["onsetDateTime", "recordedDate"]).unwrap_or(now);
                facts.push(fact(kind, own("recorder"), at));
            }
        }
        "Encounter" => {
            let status = tree.get_str("status").unwrap_or("");
            if !matches!(status, "cancelled" | "entered-in-error") {
                let period = tree.get("period");
                let start = period.and_then(|p| time_of(p.get_str("start")));
                let end = period.and_then(|p| time_of(p.get_str("end")));
                let org = own("serviceProvider");
                let types = codes(tree.get("type"), ENCOUNTER_TYPE);
                if let Some(start) = start.or(end) {
                    facts.push(fact(ENCOUNTER, org.clone(), start));
                    let mut programme = false;
                    for (code, kind) in [
                        ("hypertension-follow-up", HYPERTENSION_FOLLOW_UP),
                        ("diabetes-follow-up", DIABETES_FOLLOW_UP),
                        ("elderly-health-check", ELDERLY_CHECK),
                        ("child-health-check", CHILD_CHECK),
                    ] {
                        if types.contains(&code) {
                            facts.push(fact(kind, org.clone(), start));
                            programme = true;
                        }
                    }
                    let class = tree.get("class").and_then(|c| c.get_str("code"));
                    if class == Some("AMB") && !programme {
                        let mut f = fact(VISIT, org.clone(), start);
                        f.flag = i32::from(
                            tree.get("appointment")
                                .is_some_and(|a| !matches!(a, Json::Array(v) if v.is_empty())),
                        );
                        facts.push(f);
                    }
                }
                if let Some(end) = end {
                    // Timeliness is that of the first version that carried the end.
                    let arrived = if is_new {
                        now
                    } else {
                        rows::fact_time(tx.conn(), t, id, ENCOUNTER_END)?.unwrap_or(now)
                    };
                    let mut f = fact(ENCOUNTER_END, org, end);
                    f.flag = i32::from(arrived - end <= TIMELY_MS);
                    f.until_at = Some(arrived);
                    facts.push(f);
                }
            }
        }
        "Observation" => {
            let status = tree.get_str("status").unwrap_or("");
            if matches!(status, "final" | "amended" | "corrected")
                && let Some(at) = first_time(tree, &["effectiveDateTime", "issued"]).or_else(|| {
                    tree.get("effectivePeriod")
                        .and_then(|p| time_of(p.get_str("start")))
                })
            {
                let org = own("performer");
                let loinc = codes(tree.get("code"), LOINC);
                if loinc.contains(&"85354-9") {
                    let sys = component(tree, "8480-6");
                    let dia = component(tree, "8462-4");
                    if let (Some(sys), Some(dia)) = (sys, dia) {
                        let mut f = fact(BLOOD_PRESSURE, org, at);
                        f.flag = i32::from(sys < 140.0 && dia < 90.0);
                        facts.push(f);
                    }
                } else if (loinc.contains(&"1558-6") || loinc.contains(&"14771-0"))
                    && let Some(mmol) = glucose_mmol(tree.get("valueQuantity"))
                {
                    let mut f = fact(GLUCOSE, org, at);
                    f.flag = i32::from(mmol < 7.0);
                    facts.push(f);
                }
            }
        }
        "Appointment" => {
            let status = tree.get_str("status").unwrap_or("");
            if matches!(
                status,
                "booked" | "arrived" | "checked-in" | "fulfilled" | "noshow"
            ) && let Some(start) = time_of(tree.get_str("start"))
            {
                let created = time_of(tree.get_str("created")).unwrap_or(now);
                let org = custodian.map(str::to_owned);
                let mut f = fact(APPOINTMENT, org, start);
                f.flag = i32::from(status == "noshow");
                f.value = Some(((start - created).max(0) as f64) / DAY);
                facts.push(f);
            }
        }
        "CareTeam" => {
            let family = codes(tree.get("category"), CARE_TEAM_CATEGORY).contains(&"family-doctor");
            if family && tree.get_str("status") == Some("active") {
                let period = tree.get("period");
                let start = period
                    .and_then(|p| time_of(p.get_str("start")))
                    .unwrap_or(now);
                let mut f = fact(SIGNED, own("managingOrganization"), start);
                // A contract runs a year unless its period says otherwise (签约服务一年一签),
                // and at most five.
                let end = period.and_then(|p| time_of(p.get_str("end")));
                f.until_at = Some(end.unwrap_or(start + YEAR_MS).min(start + 5 * YEAR_MS));
                facts.push(f);
            }
        }
        "DocumentReference" => {
            // WS/T 483 follow-up documents (B0012 hypertension, B0013 type-2 diabetes).
            let types = codes(tree.get("type"), "");
            let at = first_time(tree, &["date"]).unwrap_or(now);
            if types.contains(&"B0012") {
                facts.push(fact(HYPERTENSION_FOLLOW_UP, own("custodian"), at));
            }
            if types.contains(&"B0013") {
                facts.push(fact(DIABETES_FOLLOW_UP, own("custodian"), at));
            }
        }
        _ => return Ok(()),
    }
    rows::put_facts(tx, t, id, facts, is_new)?;
    Ok(())
}

/// A referral Task's row was written (see [`crate::services::workflow`]): what it counts for.
/// Consultations are not referrals and count for nothing here.
pub fn referral(
    tx: &mut Tx<'_>,
    row: &crate::store::workflow::TaskRow,
    content: &str,
) -> Result<(), ApiError> {
    let sent = match row.kind.as_str() {
        "referral-up" => REFERRAL_UP,
        "referral-down" => REFERRAL_DOWN,
        _ => return Ok(()),
    };
    let tree = Json::parse(content.as_bytes()).map_err(ApiError::internal)?;
    let authored = time_of(tree.get_str("authoredOn")).unwrap_or(row.opened);
    let fact = |kind, org: &str, at| {
        Fact::new(
            "Task",
            &row.task_id,
            kind,
            Some(&row.resident),
            Some(org.to_owned()),
            at,
        )
    };
    let mut facts = vec![fact(sent, &row.requester, authored)];
    if row.status != "cancelled" {
        let mut f = fact(REFERRAL_RECEIVED, &row.owner, authored);
        f.flag = i32::from(matches!(
            row.status.as_str(),
            "accepted" | "in-progress" | "completed"
        ));
        facts.push(f);
    }
    if row.status == "completed" {
        let end = tree
            .get("executionPeriod")
            .and_then(|p| time_of(p.get_str("end")))
            .or(row.closes)
            .unwrap_or(authored);
        let mut f = fact(REFERRAL_DONE, &row.owner, end);
        f.value = Some(((end - authored).max(0) as f64) / DAY);
        facts.push(f);
    }
    rows::put_facts(tx, "Task", &row.task_id, facts, false)?;
    Ok(())
}

/// Resource `t/id` was deleted: it counts for nothing (a golden resident no longer counts).
pub fn removed(tx: &mut Tx<'_>, t: &str, id: &str) -> Result<(), ApiError> {
    if t == "Patient" {
        rows::retire(tx, id)?;
    }
    rows::put_facts(tx, t, id, Vec::new(), false)?;
    Ok(())
}

fn patient(
    tx: &mut Tx<'_>,
    id: &str,
    tree: &Json,
    golden: Option<&str>,
    custodian: Option<&str>,
    is_new: bool,
    now: i64,
) -> Result<(), ApiError> {
    let Some(golden) = golden else { return Ok(()) };
    if golden == id {
        // Golden residents are made by the resident index alone, each under a new id.
        golden_written(tx, id, tree, &strata(tree), is_new, now)?;
    } else {
        let org = org_of(tree, "managingOrganization").or_else(|| custodian.map(str::to_owned));
        let card = match tree.get("identifier") {
            Some(Json::Array(ids)) => ids.iter().any(|i| i.get_str("system") == Some(HEALTH_CARD)),
            _ => false,
        };
        rows::source_written(tx, golden, org.as_deref(), now, card)?;
    }
    Ok(())
}

/// A golden resident's record gained a link (its version over `old`): its row is written
/// again only when its strata changed, as they mostly do not.
pub fn golden_relinked(
    tx: &mut Tx<'_>,
    id: &str,
    old: &Json,
    tree: &Json,
    now: i64,
) -> Result<(), ApiError> {
    let new = strata(tree);
    if strata(old) == new {
        return Ok(());
    }
    golden_written(tx, id, tree, &new, false, now)
}

fn golden_written(
    tx: &mut Tx<'_>,
    id: &str,
    tree: &Json,
    strata: &Strata,
    is_new: bool,
    now: i64,
) -> Result<(), ApiError> {
    // A resident retired by a merge no longer counts.
    let live = tree.get("active") != Some(&Json::Bool(false));
    rows::golden_written(tx, id, strata, live, is_new, now)?;
    Ok(())
}

/// When a stored version was written (`meta.lastUpdated`), for facts written again later.
pub fn recorded_at(tree: &Json) -> i64 {
    tree.get("meta")
        .and_then(|m| time_of(m.get_str("lastUpdated")))
        .unwrap_or_else(crate::clock::now_millis)
}

/// A golden record's strata: the home address's area code, sex, birth date.
pub fn strata(tree: &Json) -> Strata {
    let area = match tree.get("address") {
        Some(Json::Array(addresses)) => {
            let home = addresses
                .iter()
                .find(|a| a.get_str("use") == Some("home"))
                .or_else(|| addresses.first());
            home.and_then(area_code)
        }
        _ => None,
    };
    let sex = match tree.get_str("gender") {
        Some(g @ ("male" | "female")) => Some(g.to_owned()),
        _ => None,
    };
    let birth = tree.get_str("birthDate").and_then(birth_digits);
    Strata { area, sex, birth }
}

fn area_code(address: &Json) -> Option<String> {
    let Some(Json::Array(exts)) = address.get("extension") else {
        return None;
    };
    exts.iter()
        .find(|e| e.get_str("url") == Some(AREA_CODE))
        .and_then(|e| e.get_str("valueCode"))
        .filter(|c| c.len() >= 6 && c.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

/// `YYYY-MM-DD` (or a year, or a month: its middle) as YYYYMMDD.
fn birth_digits(s: &str) -> Option<i32> {
    let mut parts = s.splitn(3, '-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: i32 = parts.next().map_or(Ok(7), str::parse).ok()?;
    let d: i32 = parts.next().map_or(Ok(1), str::parse).ok()?;
    Some(y * 10_000 + m * 100 + d)
}

/// Which programme a Condition puts its resident in: hypertension (I10–I15) or type-2
/// diabetes (E11), unless resolved, inactive, refuted or entered in error.
fn diagnosis(tree: &Json) -> Option<&'static str> {
    let clinical = codes(tree.get("clinicalStatus"), "");
    if clinical
        .iter()
        .any(|c| matches!(*c, "resolved" | "inactive" | "remission"))
    {
        return None;
    }
    let verification = codes(tree.get("verificationStatus"), "");
    if verification
        .iter()
        .any(|c| matches!(*c, "refuted" | "entered-in-error"))
    {
        return None;
    }
    let Some(Json::Array(codings)) = tree.get("code").and_then(|c| c.get("coding")) else {
        return None;
    };
    codings.iter().find_map(|c| {
        if !ICD10.contains(&c.get_str("system")?) {
            return None;
        }
        let code = c.get_str("code")?.to_ascii_uppercase();
        let head = code.get(..3)?;
        match head {
            "I10" | "I11" | "I12" | "I13" | "I14" | "I15" => Some(HYPERTENSION),
            "E11" => Some(DIABETES),
            _ => None,
        }
    })
}

/// Codes of a CodeableConcept (or a list of them) in `system` (`""`: any system).
pub(super) fn codes<'a>(concept: Option<&'a Json>, system: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut one = |cc: &'a Json| {
        if let Some(Json::Array(codings)) = cc.get("coding") {
            for c in codings {
                if (system.is_empty() || c.get_str("system") == Some(system))
                    && let Some(code) = c.get_str("code")
                {
                    out.push(code);
                }
            }
        }
    };
    match concept {
        Some(Json::Array(list)) => list.iter().for_each(&mut one),
        Some(cc) => one(cc),
        None => {}
    }
    out
}

fn time_of(s: Option<&str>) -> Option<i64> {
    crate::clock::period_of(s?).map(|(low, _)| low)
}

fn first_time(tree: &Json, keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| time_of(tree.get_str(k)))
}

/// The institution `tree[key]` refers to (the first of a list), as `Organization/<id>`.
fn org_of(tree: &Json, key: &str) -> Option<String> {
    let r = match tree.get(key)? {
        Json::Array(items) => items.iter().find(|i| {
            i.get_str("reference")
                .is_some_and(|r| r.starts_with("Organization/"))
        })?,
        one => one,
    };
    r.get_str("reference")
        .filter(|r| r.starts_with("Organization/"))
        .map(str::to_owned)
}

fn number(q: Option<&Json>) -> Option<f64> {
    match q?.get("value")? {
        Json::Number(n) => n.parse().ok(),
        _ => None,
    }
}

/// The value of the blood-pressure component coded `code` (LOINC), in mmHg.
fn component(tree: &Json, code: &str) -> Option<f64> {
    let Some(Json::Array(components)) = tree.get("component") else {
        return None;
    };
    components
        .iter()
        .find(|c| codes(c.get("code"), LOINC).contains(&code))
        .and_then(|c| number(c.get("valueQuantity")))
}

/// A glucose quantity in mmol/L (mg/dL converted).
fn glucose_mmol(q: Option<&Json>) -> Option<f64> {
    let v = number(q)?;
    let unit = q?
        .get_str("code")
        .or_else(|| q?.get_str("unit"))
        .unwrap_or("mmol/L");
    match unit {
        "mg/dL" => Some(v / 18.0),
        _ => Some(v),
    }
}
