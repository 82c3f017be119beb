//! Two-way referral (双向转诊) and remote consultation (远程会诊): a `ServiceRequest` of category
//! `urn:huimin:CodeSystem:request-category|referral-up`, `|referral-down` or `|consultation`
//! (the referral form: subject, requester, performer, reason, supporting documents) and a
//! `Task` whose `focus` it is (who receives it, its state, its deadline), written together in
//! one transaction or by `ServiceRequest/$refer` ([`refer`]).
//!
//! - **Checked as written.** The request names a resident (`subject`, a Patient of a resident
//!   record the writer may see) and a receiver of the registry (`performer`: an Organization,
//!   or a PractitionerRole of one); the Task is made `requested` by the institution holding the
//!   request, for its subject, owned by one of its receivers. Anything else is 422 naming the
//!   element. A resident whose Consent denies coordination of care (COC) to the receiver is not
//!   referred (403).
//! - **The state machine.** requested → received → accepted | rejected (with `statusReason`)
//!   → in-progress → completed; cancelled from any open state. The receiver's institution
//!   receives, accepts, rejects, starts and completes; the requester's cancels (403 for the
//!   other side); any other move is 409 naming both states. Completing needs its answer in
//!   `Task.output`: a referral's return slip (回转单, a DocumentReference or Composition of the
//!   resident), a consultation's reply (a Communication, DiagnosticReport or
//!   ClinicalImpression, or a document). Both institutions change the Task (the receiver
//!   through its moves); it stays held by the requester.
//! - **Access follows the referral** ([`access`]): from the request until the Task ends (and
//!   for a completed one, the access window after it), the receiving institution reads the
//!   resident's record for purpose COC, where the resident's general Consent would deny it.
//!   The resident's agreement is recorded with the Task as a Consent (scope `treatment`,
//!   purpose COC, the receiver as actor, the Task as source), listed in their record.
//! - **Overdue.** A Task not accepted by `restriction.period.end` is flagged `businessStatus`
//!   overdue by a background sweep ([`sweep_due`]).
//!
//! Each workflow Task has a row in `workflow_tasks`, written with it: what the access, the
//! sweep and the state machine read.

pub mod access;
pub mod refer;

use std::time::Duration;

use crate::clock;
use crate::error::{ApiError, RecordError, WorkflowError};
use crate::fhir::json::Json;
use crate::services::access::consent;
use crate::services::access::{Guard, Writer};
use crate::services::audit::Draft;
use crate::services::record::{self, Record};
use crate::services::{has_coding, referenced, stored};
use crate::store::record as repo;
use crate::store::workflow::{self as rows, TaskRow};
use crate::store::{Signal, Store, Tx};

pub use crate::services::scheduling::referral::REQUEST_CATEGORY;

/// The code system of a workflow Task's `businessStatus` (`arrived`, `return-slip-sent`,
/// `overdue`).
pub const BUSINESS_STATUS: &str = "urn:huimin:CodeSystem:task-business-status";

/// The request categories that make a workflow.
const KINDS: &[&str] = &["referral-up", "referral-down", "consultation"];

/// The Task states in which a workflow is open.
const OPEN: &[&str] = &["requested", "received", "accepted", "in-progress"];

/// A Task's elements fixed once the referral is made.
const FIXED: &[&str] = &[
    "focus",
    "for",
    "requester",
    "owner",
    "intent",
    "restriction",
    "authoredOn",
    "basedOn",
];

/// The workflow a ServiceRequest makes, by its category (`None`: an ordinary request).
pub fn kind_of(request: &Json) -> Option<&'static str> {
    KINDS.iter().copied().find(|k| {
        has_coding(request, "category", |s, c| {
            s == Some(REQUEST_CATEGORY) && c == *k
        })
    })
}

fn malformed(element: &str, why: impl Into<String>) -> ApiError {
    WorkflowError::malformed(element, why).into()
}

/// The institution (`Organization/<id>`) and practitioner (`Practitioner/<id>`) a receiver
/// reference names: an Organization of the registry, or a PractitionerRole of one.
fn receiver(conn: &mut Tx<'_>, reference: &str) -> Option<(String, Option<String>)> {
    let (t, id) = reference.split_once('/')?;
    match t {
        "Organization" => stored(conn, "Organization", id).map(|_| (reference.to_owned(), None)),
        "PractitionerRole" => {
            let role = stored(conn, "PractitionerRole", id)?;
            let org = referenced(&role, "organization", "Organization")?.to_owned();
            stored(conn, "Organization", &org)?;
            let practitioner = referenced(&role, "practitioner", "Practitioner")
                .map(|p| format!("Practitioner/{p}"));
            Some((format!("Organization/{org}"), practitioner))
        }
        _ => None,
    }
}

/// A workflow request, checked.
struct Request {
    kind: &'static str,
    /// The subject's Patient id and golden resident.
    patient: String,
    resident: String,
    /// The receivers it names: (reference, institution, practitioner).
    receivers: Vec<(String, String, Option<String>)>,
}

/// Check a workflow ServiceRequest as `guard`'s writer stores it (`None`: not one).
fn check_request(
    conn: &mut Tx<'_>,
    guard: &Guard,
    tree: &Json,
) -> Result<Option<Request>, ApiError> {
    let Some(kind) = kind_of(tree) else {
        return Ok(None);
    };
    // The subject and receivers may be written by earlier entries of the same bundle.
    crate::store::flush_held(conn)?;
    let not_resident = || {
        malformed(
            "ServiceRequest.subject",
            "a referral's subject is a Patient of a resident record (the resident referred)",
        )
    };
    let patient = referenced(tree, "subject", "Patient").ok_or_else(not_resident)?;
    let resident = repo::resident(conn.conn(), "Patient", patient)?.ok_or_else(not_resident)?;
    // A Patient the writer may not see answers as one that does not exist.
    if !guard
        .filter
        .visible(conn, "Patient", patient, Some(&resident))?
    {
        return Err(not_resident());
    }
    let performers: Vec<String> = match tree.get("performer") {
        Some(Json::Array(ps)) => ps
            .iter()
            .map(|p| p.get_str("reference").unwrap_or("").to_owned())
            .collect(),
        _ => Vec::new(),
    };
    if performers.is_empty() {
        return Err(malformed(
            "ServiceRequest.performer",
            "a referral names who receives it: an Organization of the registry or a PractitionerRole of one",
        ));
    }
    let mut receivers = Vec::with_capacity(performers.len());
    for (i, p) in performers.into_iter().enumerate() {
        let Some((org, practitioner)) = receiver(conn, &p) else {
            return Err(malformed(
                &format!("ServiceRequest.performer[{i}]"),
                format!(
                    "'{p}' is not an institution of the registry (an Organization, or a PractitionerRole of one)"
                ),
            ));
        };
        receivers.push((p, org, practitioner));
    }
    if let (Some(role), Writer::Institution(own)) = (
        referenced(tree, "requester", "PractitionerRole"),
        &guard.writer,
    ) {
        let org = stored(conn, "PractitionerRole", role)
            .and_then(|r| referenced(&r, "organization", "Organization").map(str::to_owned));
        if org.map(|o| format!("Organization/{o}")).as_deref() != Some(own.as_str()) {
            return Err(malformed(
                "ServiceRequest.requester",
                format!(
                    "PractitionerRole/{role} is not a role at {own}, the referring institution"
                ),
            ));
        }
    }
    Ok(Some(Request {
        kind,
        patient: patient.to_owned(),
        resident,
        receivers,
    }))
}

/// A new workflow Task's row, before its id and version are known.
pub struct NewTask {
    row: TaskRow,
    patient: String,
}

/// What storing a new `t` needs of the workflow, checked before it is stored: a workflow
/// ServiceRequest is checked; a Task whose focus is one becomes a workflow Task (its row, to be
/// written by [`created`]).
pub fn check_new(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    tree: &Json,
) -> Result<Option<NewTask>, ApiError> {
    match t {
        "ServiceRequest" => check_request(conn, guard, tree).map(|_| None),
        "Task" => new_task(conn, guard, tree),
        _ => Ok(None),
    }
}

/// What a write of a stored `t/id` needs of the workflow: a workflow ServiceRequest is checked
/// again; a Task cannot become a workflow Task by an update.
pub fn check_change(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    tree: &Json,
) -> Result<(), ApiError> {
    match t {
        "ServiceRequest" => check_request(conn, guard, tree).map(|_| ()),
        "Task" if new_task(conn, guard, tree)?.is_some() => Err(malformed(
            "Task.focus",
            "a Task is a referral's when it is created requested, not made one by an update",
        )),
        _ => Ok(()),
    }
}

/// The workflow request a Task's `focus` names that `guard`'s caller may see, and its holder.
fn focus_of(
    conn: &mut Tx<'_>,
    guard: &Guard,
    tree: &Json,
) -> Result<Option<(String, Json, String)>, ApiError> {
    let Some(id) = referenced(tree, "focus", "ServiceRequest") else {
        return Ok(None);
    };
    // The request may be written by an earlier entry of the same bundle.
    crate::store::flush_held(conn)?;
    let Some((resident, Some(holder))) = repo::custody(conn.conn(), "ServiceRequest", id)? else {
        return Ok(None);
    };
    if !guard
        .filter
        .visible(conn, "ServiceRequest", id, resident.as_deref())?
    {
        return Ok(None);
    }
    let Some(request) = stored(conn, "ServiceRequest", id) else {
        return Ok(None);
    };
    if kind_of(&request).is_none() {
        return Ok(None);
    }
    Ok(Some((id.to_owned(), request, holder)))
}

fn new_task(conn: &mut Tx<'_>, guard: &Guard, tree: &Json) -> Result<Option<NewTask>, ApiError> {
    let Some((request_id, request, holder)) = focus_of(conn, guard, tree)? else {
        return Ok(None);
    };
    if let Writer::Institution(own) = &guard.writer
        && *own != holder
    {
        return Err(malformed(
            "Task.focus",
            format!(
                "ServiceRequest/{request_id} is a referral of another institution: the institution that refers makes its Task"
            ),
        ));
    }
    let Some(req) = check_request(conn, &Guard::platform(), &request)? else {
        return Ok(None);
    };
    if tree.get_str("status") != Some("requested") {
        return Err(malformed(
            "Task.status",
            format!(
                "a referral's Task is made requested (not {})",
                tree.get_str("status").unwrap_or("absent")
            ),
        ));
    }
    if referenced(tree, "for", "Patient") != Some(req.patient.as_str()) {
        return Err(malformed(
            "Task.for",
            format!(
                "a referral's Task is for its subject, Patient/{}",
                req.patient
            ),
        ));
    }
    let owner = tree
        .get("owner")
        .and_then(|o| o.get_str("reference"))
        .unwrap_or("");
    let Some((_, org, practitioner)) = req
        .receivers
        .iter()
        .find(|(r, org, _)| r == owner || org == owner)
        .cloned()
    else {
        return Err(malformed(
            "Task.owner",
            format!(
                "a referral's Task is owned by a receiver its request names ({})",
                req.receivers
                    .iter()
                    .map(|(r, _, _)| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let practitioner =
        practitioner.or_else(|| owner.starts_with("Practitioner/").then(|| owner.to_owned()));
    refuses_referral(conn, &req.resident, &org, practitioner.as_deref())?;
    let deadline = tree
        .get("restriction")
        .and_then(|r| r.get("period"))
        .and_then(|p| p.get_str("end"))
        .and_then(clock::period_of)
        .map(|(_, high)| high);
    Ok(Some(NewTask {
        row: TaskRow {
            task_id: String::new(),
            request_id,
            kind: req.kind.to_owned(),
            resident: req.resident,
            requester: holder,
            owner: org,
            owner_practitioner: practitioner,
            status: "requested".to_owned(),
            deadline,
            overdue: false,
            opened: clock::now_millis(),
            closes: None,
        },
        patient: req.patient,
    }))
}

/// 403 when the resident's Consent denies coordination of care to the receiver.
fn refuses_referral(
    conn: &mut Tx<'_>,
    resident: &str,
    org: &str,
    practitioner: Option<&str>,
) -> Result<(), ApiError> {
    let policies: Vec<consent::Policy> = repo::live_of_resident(conn, "Consent", resident)?
        .iter()
        .filter_map(|c| Json::parse(c.as_bytes()).ok())
        .filter_map(|tree| consent::parse(&tree))
        .collect();
    let today = clock::today_digits();
    let minor = stored(conn, "Patient", resident)
        .and_then(|p| p.get_str("birthDate").map(|b| consent::under_14(b, &today)))
        .unwrap_or(false);
    let actors: Vec<&str> = std::iter::once(org).chain(practitioner).collect();
    if consent::refuses_referral(&policies, minor, &actors, clock::now_millis()) {
        return Err(ApiError::Forbidden(format!(
            "the resident's Consent denies coordination of care (purpose COC) to {org}: the resident is not referred there"
        )));
    }
    Ok(())
}

/// The new workflow Task `rec` was stored: its row, and the resident's agreement to the
/// access it opens (a Consent the platform records for the referring institution).
pub fn created(conn: &mut Tx<'_>, task: NewTask, rec: &Record) -> Result<(), ApiError> {
    let mut row = task.row;
    row.task_id = rec.id.clone();
    rows::put(conn.conn(), &row)?;
    crate::services::stats::facts::referral(conn, &row, &rec.content)?;
    let agreement = agreement(&row, &task.patient, &rec.id);
    record::create_with_id_held_in(
        conn,
        "Consent",
        &record::new_id(),
        agreement,
        &row.requester,
    )?;
    conn.note(Signal::Workflow);
    Ok(())
}

/// The Consent recording the resident's agreement to the receiver's access for Task `task`.
fn agreement(row: &TaskRow, patient: &str, task: &str) -> Json {
    let v = serde_json::json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": clock::instant(row.opened),
        "performer": [{"reference": format!("Patient/{patient}")}],
        "organization": [{"reference": row.requester}],
        "sourceReference": {"reference": format!("Task/{task}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": clock::instant(row.opened)},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"reference": row.owner}
            }],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": consent::COC}]
        }
    });
    // Built from plain values: it always parses.
    Json::parse(v.to_string().as_bytes()).unwrap_or(Json::Null)
}

/// Which side of a workflow Task a writer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Owner,
    Requester,
    /// An administrator or the platform: any allowed move.
    Any,
}

fn side_of(guard: &Guard, row: &TaskRow) -> Option<Side> {
    match &guard.writer {
        Writer::Platform | Writer::Admin => Some(Side::Any),
        Writer::Institution(org) if *org == row.owner => Some(Side::Owner),
        Writer::Institution(org) if *org == row.requester => Some(Side::Requester),
        _ => None,
    }
}

/// Whether `guard`'s writer is one of the institutions of the workflow Task of `row` (or an
/// administrator).
pub fn participant(guard: &Guard, row: &TaskRow) -> bool {
    side_of(guard, row).is_some()
}

/// Who moves a Task from `from` to `to` (`None`: no such move).
fn mover(from: &str, to: &str) -> Option<Side> {
    match (from, to) {
        ("requested", "received")
        | ("requested" | "received", "accepted" | "rejected")
        | ("accepted", "in-progress")
        | ("in-progress", "completed") => Some(Side::Owner),
        (f, "cancelled") if OPEN.contains(&f) => Some(Side::Requester),
        _ => None,
    }
}

/// The row of Task `id` when it is a workflow Task.
pub fn row_of(conn: &mut Tx<'_>, t: &str, id: &str) -> Result<Option<TaskRow>, ApiError> {
    if t != "Task" {
        return Ok(None);
    }
    Ok(rows::get(conn.conn(), id)?)
}

/// A new version of workflow Task `id` (its `row`) as `guard`'s writer wants it, checked by
/// the state machine; stored held by the requester.
pub fn update_task(
    conn: &mut Tx<'_>,
    guard: &Guard,
    id: &str,
    mut row: TaskRow,
    mut wanted: Json,
    if_match: Option<i64>,
    method: &str,
) -> Result<Record, ApiError> {
    let Some(locked) = repo::lock_current(conn.conn(), "Task", id)? else {
        return Err(RecordError::Absent {
            t: "Task".to_owned(),
            id: id.to_owned(),
        }
        .into());
    };
    let Some(side) = side_of(guard, &row) else {
        // Neither institution of the referral: as any record it does not hold.
        guard.may_change(conn, "Task", id, &locked)?;
        return Err(ApiError::Forbidden(format!(
            "Task/{id} is changed by the institutions of its referral"
        )));
    };
    let current = record::read_in(conn, "Task", id)?;
    if let Some(want) = if_match
        && want != current.version_id
    {
        return Err(RecordError::VersionConflict {
            want,
            have: Some(current.version_id),
        }
        .into());
    }
    let stored_tree = Json::parse(current.content.as_bytes()).map_err(ApiError::internal)?;
    for element in FIXED {
        if stored_tree.get(element) != wanted.get(element) {
            return Err(malformed(
                &format!("Task.{element}"),
                "is fixed once the referral is made",
            ));
        }
    }
    let from = row.status.clone();
    let to = wanted.get_str("status").unwrap_or("").to_owned();
    if from != to {
        let refused = |by: String| -> ApiError {
            WorkflowError::Transition {
                task: id.to_owned(),
                from: from.clone(),
                to: to.clone(),
                by,
            }
            .into()
        };
        match (mover(&from, &to), side) {
            (None, _) => return Err(refused(String::new())),
            (Some(_), Side::Any) => {}
            (Some(who), side) if who == side => {}
            (Some(Side::Owner), _) => {
                return Err(ApiError::Forbidden(format!(
                    "Task/{id} moves from {from} to {to} by the receiving institution ({})",
                    row.owner
                )));
            }
            (Some(_), _) => {
                return Err(ApiError::Forbidden(format!(
                    "Task/{id} moves from {from} to {to} by the requesting institution ({})",
                    row.requester
                )));
            }
        }
        match to.as_str() {
            "rejected" if wanted.get("statusReason").is_none() => {
                return Err(malformed(
                    "Task.statusReason",
                    "a rejected referral says why (statusReason)",
                ));
            }
            "completed" => answered(conn, &row, &wanted)?,
            _ => {}
        }
    }
    let now = clock::now_millis();
    stamp_execution(&mut wanted, &from, &to, now);
    let rec = record::update_held_in(
        conn,
        "Task",
        id,
        wanted,
        current.version_id + 1,
        method,
        Some(row.requester.as_str()),
    )?;
    row.closes = match to.as_str() {
        t if OPEN.contains(&t) => None,
        _ => row.closes.or(Some(now)),
    };
    row.status = to;
    rows::put(conn.conn(), &row)?;
    crate::services::stats::facts::referral(conn, &row, &rec.content)?;
    conn.note(Signal::Workflow);
    Ok(rec)
}

/// `executionPeriod` as the moves make it, unless the writer gave it: its start when the work
/// starts, its end when the Task ends.
fn stamp_execution(task: &mut Json, from: &str, to: &str, now: i64) {
    if from == to {
        return;
    }
    let mut period = task
        .remove("executionPeriod")
        .unwrap_or(Json::Object(Vec::new()));
    if to == "in-progress" && period.get("start").is_none() {
        period.set_at("start", Json::String(clock::instant(now)), 0);
    }
    if !OPEN.contains(&to) && period.get("end").is_none() {
        period.set_at("end", Json::String(clock::instant(now)), 1);
    }
    if !matches!(&period, Json::Object(o) if o.is_empty()) {
        task.set_at("executionPeriod", period, usize::MAX);
    }
}

/// The types a completed Task's answer may be: a referral's return slip, a consultation's
/// reply.
fn answer_types(kind: &str) -> &'static [&'static str] {
    match kind {
        "consultation" => &[
            "Communication",
            "DiagnosticReport",
            "ClinicalImpression",
            "DocumentReference",
            "Composition",
        ],
        _ => &["DocumentReference", "Composition"],
    }
}

/// Whether a Task completing holds its answer: an `output` whose `valueReference` is a
/// resource of [`answer_types`] about the Task's resident.
fn answered(conn: &mut Tx<'_>, row: &TaskRow, task: &Json) -> Result<(), ApiError> {
    let types = answer_types(&row.kind);
    let outputs: Vec<&str> = match task.get("output") {
        Some(Json::Array(os)) => os
            .iter()
            .filter_map(|o| o.get("valueReference").and_then(|r| r.get_str("reference")))
            .collect(),
        _ => Vec::new(),
    };
    for r in outputs {
        let Some((t, id)) = r.split_once('/') else {
            continue;
        };
        if types.contains(&t)
            && repo::resident(conn.conn(), t, id)?.as_deref() == Some(&row.resident)
        {
            return Ok(());
        }
    }
    let what = if row.kind == "consultation" {
        "completing a consultation needs its reply: an output whose valueReference is a Communication, DiagnosticReport or ClinicalImpression (or a document) about the resident"
    } else {
        "completing a referral needs the return slip (回转单): an output whose valueReference is a DocumentReference or Composition of the resident with the diagnosis, results, treatment and next-step plan"
    };
    Err(malformed("Task.output", what))
}

/// A workflow Task is not deleted: it is cancelled (or, by its receiver, rejected).
pub fn refuse_delete(row: &TaskRow) -> ApiError {
    WorkflowError::Transition {
        task: row.task_id.clone(),
        from: row.status.clone(),
        to: "deleted".to_owned(),
        by: " (a referral's Task is cancelled, not deleted)".to_owned(),
    }
    .into()
}

/// Flag overdue the Tasks not accepted by their deadline, a batch at a time, every
/// `interval`, as the platform's audited writes.
pub fn start_sweep(store: Store, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("huimin-referral-sweep".to_owned())
        .spawn(move || {
            let mut failing = false;
            while !store.is_closed() {
                std::thread::sleep(interval);
                if store.is_closed() {
                    break;
                }
                let round = sweep_due(&store);
                match (&round, failing) {
                    (Err(e), false) => {
                        tracing::error!(error = %e, "flagging overdue referrals failed; retrying")
                    }
                    (Ok(_), true) => tracing::info!("flagging overdue referrals resumed"),
                    _ => {}
                }
                failing = round.is_err();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the referral sweep thread could not start");
    }
}

/// Tasks a sweep flags at most per write.
const SWEEP_BATCH: i64 = 200;

/// One sweep: the Tasks past their deadline and still not accepted get `businessStatus`
/// overdue; how many.
pub fn sweep_due(store: &Store) -> Result<usize, ApiError> {
    let now = clock::now_millis();
    if store
        .read(|conn| rows::due(conn.conn(), now, 1).map_err(ApiError::from))?
        .is_empty()
    {
        return Ok(0);
    }
    let draft = Draft::platform("huimin:referral-sweep", "referral-overdue", "Task");
    record::write(store, draft, move |conn| {
        let due = rows::due(conn.conn(), now, SWEEP_BATCH)?;
        for id in &due {
            let Some(mut row) = rows::get(conn.conn(), id)? else {
                continue;
            };
            let current = record::read_in(conn, "Task", id)?;
            let mut task = Json::parse(current.content.as_bytes()).map_err(ApiError::internal)?;
            task.set_at("businessStatus", overdue_status(), usize::MAX);
            record::update_held_in(
                conn,
                "Task",
                id,
                task,
                current.version_id + 1,
                "PUT",
                Some(row.requester.as_str()),
            )?;
            row.overdue = true;
            rows::put(conn.conn(), &row)?;
        }
        Ok(due.len())
    })
}

fn overdue_status() -> Json {
    let v = serde_json::json!({
        "coding": [{"system": BUSINESS_STATUS, "code": "overdue", "display": "not accepted by its deadline"}],
        "text": "overdue"
    });
    Json::parse(v.to_string().as_bytes()).unwrap_or(Json::Null)
}
