//! `$hold`, `$book` and cancelling (IHE ITI-116, ITI-117): each one write transaction that
//! locks the Slot's row of places, frees the places of expired holds, checks the Slot and the
//! region's rules, takes (or gives back) a place with a guarded `UPDATE`, records the claim
//! (one active booking per resident, specialty and day is a unique index) and writes the
//! Appointment, held by the Slot's institution, and the Slot's `status` (`busy` when full).
//!
//! Who books: a resident for themselves (or a child they guard); an institution's system for
//! any resident, on its own institution's Slots; a primary-care institution for a resident it
//! refers, on any institution's Slots (`referral`: only such a booking takes a reserve place);
//! an administrator. The Appointment's patient must belong to a golden resident of the index
//! (real-name booking).

use std::sync::Arc;

use super::admission::FullSlots;
use super::referral::{self, Referral};
use super::{Booking, Rules, referenced, stored};
use crate::clock;
use crate::error::{ApiError, RecordError, SchedulingError};
use crate::fhir::bundle::{obj, s};
use crate::fhir::json::Json;
use crate::services::access::{Guard, Writer};
use crate::services::audit::Draft;
use crate::services::record::{self, Record};
use crate::store::record as repo;
use crate::store::scheduling::{self as pool, Claim, Places};
use crate::store::{Spare, Store, Tx, is_unique_violation};

/// Extension: until when a `pending` Appointment holds its place (valueInstant).
pub const HOLD_UNTIL: &str = "urn:huimin:StructureDefinition:appointment-hold-until";

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Hold a place for a while (`$hold`).
    Hold,
    /// Book a place, or the place a hold keeps (`$book`).
    Book,
    /// Give a place back (`$book` with a cancelled Appointment).
    Cancel,
}

/// A `$hold` or `$book` request.
#[derive(Debug, Clone)]
pub struct Request {
    pub step: Step,
    /// `appointment-resource`: a proposed Appointment (from `$find`), a pending one, or a
    /// cancelled one to cancel.
    pub resource: Option<Json>,
    /// `appointment-reference`: the id of a stored Appointment.
    pub reference: Option<String>,
}

/// Run a `$hold` or `$book` as one write, audited with its draft; the stored Appointment.
/// The caller asks [`refused_at_the_door`] first.
pub async fn run(
    store: &Store,
    guard: Guard,
    rules: Rules,
    req: Request,
    draft: Draft,
    full: Arc<FullSlots>,
) -> Result<Record, ApiError> {
    let slot = new_booking(&req).map(|(slot, _)| slot.to_owned());
    let mut req = Spare::new(req);
    let step = move |conn: &mut Tx<'_>| {
        // Seen full while this booking queued for the writer: refused without a statement.
        if let Some(refused) = slot
            .as_deref()
            .and_then(|s| full.refused(s, clock::now_millis()))
        {
            return Err(refused.into());
        }
        conn.work::<Booking>().0 = true;
        let req = req.for_run(conn)?;
        step_in(conn, &guard, &rules, req)
    };
    // On PostgreSQL a booking is a transaction of its own: it holds the Slot's row lock only
    // while it runs, not until a group of other writes commits (in a rush, groups holding
    // locks of several Slots waited on each other and met in deadlocks). SQLite has one
    // writer: its bookings commit in groups.
    record::write_async(store, draft, !store.is_embedded(), step).await
}

/// A new booking of a Slot that has no place for it, refused from a read before it queues
/// for the writer (the release rush: once the places are gone, the thousands who come after
/// do not wait behind each other for the Slot's lock to hear so). Slots are not personal
/// data; a caller who books nothing is refused first.
pub fn refused_at_the_door(
    store: &Store,
    guard: &Guard,
    req: &Request,
) -> Result<Option<SchedulingError>, ApiError> {
    let Some((slot, referral)) = new_booking(req) else {
        return Ok(None);
    };
    if matches!(guard.writer, Writer::Nobody) {
        return Ok(None);
    }
    store.read(|conn| match pool::find(conn, slot)? {
        Some(places) => refused_unlocked(conn, &places, referral, clock::now_millis()),
        None => Ok(None),
    })
}

/// The Slot a request asks a new place of, and whether it names a referral (`None`: the
/// request holds or books a stored Appointment, or cancels).
pub fn new_booking(req: &Request) -> Option<(&str, bool)> {
    let new = matches!(req.step, Step::Hold | Step::Book) && req.reference.is_none();
    let tree = req
        .resource
        .as_ref()
        .filter(|t| new && t.get_str("id").is_none())?;
    let slot = referenced(tree, "slot", "Slot")?;
    Some((slot, referral::based_on(tree).is_some()))
}

/// Why `places`, read without the Slot's lock, has no place for a new booking (`referral`:
/// even for a referral). Only a refusal is decided from such a reading, which may be a moment
/// old (a place it shows is taken, or not, under the lock). A hold that expired but still
/// counts frees its place under the lock, so it refuses nothing here.
fn refused_unlocked(
    conn: &mut Tx<'_>,
    places: &Places,
    referral: bool,
    now: i64,
) -> Result<Option<SchedulingError>, ApiError> {
    let refused = place(places, now, referral).err();
    if matches!(refused, Some(SchedulingError::SlotFull { .. }))
        && !pool::expired_holds(conn, Some(&places.slot_id), now, 1)?.is_empty()
    {
        return Ok(None);
    }
    Ok(refused)
}

fn step_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    rules: &Rules,
    req: Request,
) -> Result<Record, ApiError> {
    if matches!(guard.writer, Writer::Nobody) {
        return Err(ApiError::Forbidden(
            "booking is for residents and institutions' systems".to_owned(),
        ));
    }
    let stored = req
        .reference
        .clone()
        .or_else(|| {
            req.resource
                .as_ref()
                .and_then(|r| r.get_str("id"))
                .map(str::to_owned)
        })
        .map(|id| pool::claim_of(conn, &id).map(|c| c.map(|c| (id, c))))
        .transpose()?
        .flatten();
    match (req.step, stored) {
        (Step::Cancel, Some((id, claim))) => cancel_in(conn, guard, &id, claim),
        (Step::Book, Some((id, claim))) => book_held_in(conn, guard, &id, claim),
        (Step::Hold, Some((id, claim))) => Err(SchedulingError::Transition {
            from: claim.state,
            to: format!("pending (Appointment/{id} already holds its place)"),
        }
        .into()),
        (_, None) if req.reference.is_some() => Err(RecordError::Absent {
            t: "Appointment".to_owned(),
            id: req.reference.unwrap_or_default(),
        }
        .into()),
        (Step::Cancel, None) => Err(ApiError::invalid(
            "required",
            "Parameters.parameter",
            "cancelling needs the booked Appointment (its id, or appointment-reference)",
        )),
        (step, None) => match req.resource {
            Some(tree) => new_in(conn, guard, rules, &tree, step == Step::Hold),
            None => Err(ApiError::invalid(
                "required",
                "Parameters.parameter",
                "appointment-resource or appointment-reference is required",
            )),
        },
    }
}

/// Book `tree`, a proposed Appointment, inside the caller's write (a referral made with its
/// booking, see [`crate::services::workflow::refer`]): the booking rules as for `$book`.
pub fn book_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    rules: &Rules,
    tree: &Json,
) -> Result<Record, ApiError> {
    conn.work::<Booking>().0 = true;
    new_in(conn, guard, rules, tree, false)
}

fn unprocessable(text: String) -> ApiError {
    ApiError::Unprocessable(text)
}

/// The Patient an Appointment is for: its participant whose actor is a Patient.
fn patient_of(tree: &Json) -> Option<&str> {
    let Some(Json::Array(ps)) = tree.get("participant") else {
        return None;
    };
    ps.iter().find_map(|p| referenced(p, "actor", "Patient"))
}

/// Whether `guard`'s writer may book for `resident` on `places` (`referrer`: the institution
/// referring the resident, which books on any institution's Slots).
fn may_book(
    guard: &Guard,
    places: &Places,
    resident: &str,
    referrer: Option<&str>,
) -> Result<(), ApiError> {
    match &guard.writer {
        Writer::Platform | Writer::Admin => Ok(()),
        Writer::Resident { resident: own, .. } if own == resident => Ok(()),
        Writer::Resident { .. } => Err(ApiError::Forbidden(
            "a resident books for themselves".to_owned(),
        )),
        Writer::Institution(org) if *org == places.institution || referrer == Some(org) => Ok(()),
        Writer::Institution(org) => Err(ApiError::Forbidden(format!(
            "{org} books on its own institution's Slots; Slot/{} is of {}",
            places.slot_id, places.institution
        ))),
        Writer::Nobody => Err(ApiError::Forbidden(
            "booking is for residents and institutions' systems".to_owned(),
        )),
    }
}

/// The Slot's places, locked, after its expired holds gave theirs back.
fn places_in(conn: &mut Tx<'_>, slot: &str, now: i64) -> Result<Places, ApiError> {
    let absent = || {
        ApiError::from(RecordError::Absent {
            t: "Slot".to_owned(),
            id: slot.to_owned(),
        })
    };
    pool::lock(conn, slot)?.ok_or_else(absent)?;
    expire_in(conn, Some(slot), now)?;
    pool::find(conn, slot)?.ok_or_else(absent)
}

/// Free the places of holds that expired before `now` (of one Slot, or of any, a batch at a
/// time): their Appointments become `cancelled`. How many were freed.
pub fn expire_in(conn: &mut Tx<'_>, slot: Option<&str>, now: i64) -> Result<usize, ApiError> {
    let expired = pool::expired_holds(conn, slot, now, 100)?;
    let mut freed = 0;
    for candidate in &expired {
        let id = &candidate.appointment_id;
        if slot.is_none() {
            pool::lock(conn, &candidate.slot_id)?;
        }
        // Under the Slot's lock, the claim as it is now: another process may have freed it.
        match pool::claim_of(conn, id)? {
            Some(claim)
                if claim.state == "pending" && claim.hold_until.is_some_and(|u| u < now) =>
            {
                release_in(conn, id, &claim)?;
                freed += 1;
            }
            _ => {}
        }
    }
    Ok(freed)
}

/// Give a claim's place back and cancel its Appointment.
fn release_in(conn: &mut Tx<'_>, id: &str, claim: &Claim) -> Result<Record, ApiError> {
    pool::set_state(conn, id, "cancelled", None)?;
    pool::give_back(conn, &claim.slot_id, claim.referral)?;
    let rec = set_status(conn, id, "cancelled", None)?;
    slot_status_in(conn, &claim.slot_id)?;
    Ok(rec)
}

/// Write a stored Appointment's new status (and hold), as the platform: its institution keeps
/// custody.
fn set_status(
    conn: &mut Tx<'_>,
    id: &str,
    status: &str,
    hold_until: Option<i64>,
) -> Result<Record, ApiError> {
    let current = record::read_in(conn, "Appointment", id)?;
    let mut tree = Json::parse(current.content.as_bytes()).map_err(ApiError::internal)?;
    tree.set_at("status", s(status), 2);
    tree.remove("extension");
    if let Some(until) = hold_until {
        tree.set_at("extension", hold_extension(until), 1);
    }
    let (rec, _) = record::update_in(
        conn,
        &Guard::platform(),
        "Appointment",
        id,
        tree,
        None,
        false,
    )?;
    Ok(rec)
}

fn hold_extension(until: i64) -> Json {
    Json::Array(vec![obj(vec![
        ("url", s(HOLD_UNTIL)),
        ("valueInstant", s(clock::instant(until))),
    ])])
}

/// The Slot's `status` as its places say: `busy` when every place is taken, else `free` (a
/// Slot its publisher marked otherwise is left as it is).
fn slot_status_in(conn: &mut Tx<'_>, slot: &str) -> Result<(), ApiError> {
    let Some(places) = pool::find(conn, slot)? else {
        return Ok(());
    };
    let want = if places.full() { "busy" } else { "free" };
    let current = record::read_in(conn, "Slot", slot)?;
    let mut tree = Json::parse(current.content.as_bytes()).map_err(ApiError::internal)?;
    match tree.get_str("status") {
        Some(have) if have == want => return Ok(()),
        Some("free" | "busy") => {}
        _ => return Ok(()),
    }
    tree.set_at("status", s(want), 3);
    record::update_in(conn, &Guard::platform(), "Slot", slot, tree, None, false)?;
    Ok(())
}

/// The place a booking takes of `places` at `now` (`referral`: a referral booking), or why
/// there is none: `Ok(true)` a reserve place, `Ok(false)` a public one. `$find` proposes only
/// the Slots this lets through, and `$hold` / `$book` refuse with its answer.
pub(super) fn place(places: &Places, now: i64, referral: bool) -> Result<bool, SchedulingError> {
    let slot = places.slot_id.clone();
    if !places.open || places.start_ms <= now {
        return Err(SchedulingError::Closed { slot });
    }
    if referral && places.reserve_left(now) > 0 {
        return Ok(true);
    }
    if let Some(at) = places.release_at.filter(|_| !places.released(now)) {
        return Err(SchedulingError::NotReleased {
            slot,
            at: clock::instant(at),
        });
    }
    if places.free_public(now) > 0 {
        return Ok(false);
    }
    Err(match places.reserve_left(now) {
        0 => SchedulingError::SlotFull { slot },
        _ => SchedulingError::HeldOut {
            slot,
            until: clock::instant(places.reserve_until.unwrap_or(places.start_ms)),
        },
    })
}

/// The region's rules for one more booking of `resident` at `now`.
fn check_rules(conn: &mut Tx<'_>, rules: &Rules, resident: &str, now: i64) -> Result<(), ApiError> {
    let missed = pool::no_shows(conn, resident, now - rules.no_show_window_ms)?;
    if rules.no_show_limit > 0
        && missed.len() >= rules.no_show_limit
        && let Some(last) = missed.first()
    {
        let until = last + rules.no_show_pause_ms;
        if now < until {
            return Err(SchedulingError::NoShowPause {
                count: missed.len(),
                days: rules.no_show_window_ms / super::DAY_MS,
                until: clock::instant(until),
            }
            .into());
        }
    }
    if pool::active_future(conn, resident, now)? >= rules.max_active {
        return Err(SchedulingError::TooMany {
            limit: rules.max_active,
        }
        .into());
    }
    Ok(())
}

/// The first `specialty` coding of a resource, as `system|code` (empty without one).
fn specialty_of(tree: &Json) -> String {
    let Some(Json::Array(specs)) = tree.get("specialty") else {
        return String::new();
    };
    specs
        .first()
        .and_then(|cc| match cc.get("coding") {
            Some(Json::Array(codings)) => codings.first(),
            _ => None,
        })
        .map(|c| {
            format!(
                "{}|{}",
                c.get_str("system").unwrap_or(""),
                c.get_str("code").unwrap_or("")
            )
        })
        .unwrap_or_default()
}

/// A new hold or booking of one place of the Slot `tree` names.
fn new_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    rules: &Rules,
    tree: &Json,
    hold: bool,
) -> Result<Record, ApiError> {
    let slot = referenced(tree, "slot", "Slot")
        .ok_or_else(|| unprocessable("Appointment.slot must refer to a Slot (Slot/id)".to_owned()))?
        .to_owned();
    let now = clock::now_millis();
    // A Slot whose places went while this booking queued refuses before anything else is
    // read or any lock waited for (in a rush, most bookings of a Slot end here).
    let Some(seen) = pool::find(conn, &slot)? else {
        return Err(RecordError::Absent {
            t: "Slot".to_owned(),
            id: slot,
        }
        .into());
    };
    if let Some(refused) = refused_unlocked(conn, &seen, referral::based_on(tree).is_some(), now)? {
        return Err(refused.into());
    }
    let patient = patient_of(tree)
        .ok_or_else(|| {
            unprocessable("Appointment.participant must name the Patient (Patient/id)".to_owned())
        })?
        .to_owned();
    // A Patient the booker may not see answers as one that is not a resident: the booking
    // confirms nothing of it.
    let not_resident = || {
        unprocessable(format!(
            "Appointment.participant: Patient/{patient} is not a resident of the index (real-name booking)"
        ))
    };
    let resident = repo::resident(conn, "Patient", &patient)?.ok_or_else(not_resident)?;
    if !guard
        .filter
        .visible(conn, "Patient", &patient, Some(&resident))?
    {
        return Err(not_resident());
    }
    let referral = referral::based_on(tree)
        .map(|id| referral::referral_in(conn, guard, id))
        .transpose()?;
    if let Some(r) = referral.as_ref().filter(|r| r.resident != resident) {
        return Err(unprocessable(format!(
            "Appointment.basedOn: ServiceRequest/{} refers another resident than Patient/{patient}",
            r.id
        )));
    }
    // The Appointment is written before the locks are taken, so that they are held only for
    // the counting below (a refusal there rolls it back with the rest).
    let slot_tree = record::read_in(conn, "Slot", &slot)?;
    let slot_tree = Json::parse(slot_tree.content.as_bytes()).map_err(ApiError::internal)?;
    let id = repo::new_id();
    let hold_until = hold.then_some(now + rules.hold_ms);
    let state = if hold { "pending" } else { "booked" };
    let proposal = Proposal {
        patient: Some(&patient),
        referral: referral.as_ref(),
    };
    let appointment = appointment(conn, &slot_tree, &slot, proposal, state, hold_until)?;
    let rec =
        record::create_with_id_held_in(conn, "Appointment", &id, appointment, &seen.institution)?;

    // The resident's lock before the Slot's: the rules below count all their bookings.
    pool::lock_resident(conn, &resident)?;
    let places = places_in(conn, &slot, now)?;
    // Republished while this booking read it: run the booking again on what it is now.
    if (places.start_ms, places.end_ms, &places.institution)
        != (seen.start_ms, seen.end_ms, &seen.institution)
    {
        return Err(ApiError::Contention);
    }
    may_book(
        guard,
        &places,
        &resident,
        referral.as_ref().map(|r| r.referrer.as_str()),
    )?;
    if let Some(r) = referral
        .as_ref()
        .filter(|r| !r.goes_to(&places.institution))
    {
        return Err(unprocessable(format!(
            "Appointment.slot: ServiceRequest/{} refers the resident to another institution than {}",
            r.id, places.institution
        )));
    }
    let reserve = place(&places, now, referral.is_some())?;
    check_rules(conn, rules, &resident, now)?;
    if !pool::take(conn, &slot, reserve)? {
        return Err(SchedulingError::SlotFull { slot }.into());
    }
    let day = clock::local_day(places.start_ms);
    let claim = Claim {
        appointment_id: id,
        slot_id: slot.clone(),
        resident,
        referral: reserve,
        state: state.to_owned(),
        hold_until,
        day: day.clone(),
        specialty: specialty_of(&slot_tree),
        start_ms: places.start_ms,
        referrer: referral.as_ref().map(|r| r.referrer.clone()),
    };
    conn.savepoint(|c| pool::insert_claim(c, &claim))
        .map_err(|e| match is_unique_violation(&e) {
            true => ApiError::from(SchedulingError::OnePerDay { day }),
            false => ApiError::from(e),
        })?;
    slot_status_in(conn, &slot)?;
    Ok(rec)
}

/// Who an Appointment is for: the patient, and the referral it is based on.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Proposal<'a> {
    pub patient: Option<&'a str>,
    pub referral: Option<&'a Referral>,
}

/// The Appointment of a claim: the Slot's times, service and specialty; the referral it is
/// based on; the patient and the Schedule's actors as participants.
pub(super) fn appointment(
    conn: &mut Tx<'_>,
    slot_tree: &Json,
    slot: &str,
    proposal: Proposal<'_>,
    status: &str,
    hold_until: Option<i64>,
) -> Result<Json, ApiError> {
    let patient = proposal.patient;
    let mut participants = Vec::new();
    if let Some(patient) = patient {
        participants.push(obj(vec![
            (
                "actor",
                obj(vec![("reference", s(format!("Patient/{patient}")))]),
            ),
            ("status", s("accepted")),
        ]));
    }
    if let Some(schedule) = referenced(slot_tree, "schedule", "Schedule")
        && let Some(sched) = stored(conn, "Schedule", schedule)
        && let Some(Json::Array(actors)) = sched.get("actor")
    {
        for actor in actors {
            if let Some(r) = actor.get_str("reference") {
                participants.push(obj(vec![
                    ("actor", obj(vec![("reference", s(r))])),
                    ("status", s("accepted")),
                ]));
            }
        }
    }
    let mut members = vec![("resourceType", s("Appointment"))];
    if let Some(until) = hold_until {
        members.push(("extension", hold_extension(until)));
    }
    members.push(("status", s(status)));
    for key in ["serviceType", "specialty"] {
        if let Some(v) = slot_tree.get(key) {
            members.push((key, v.clone()));
        }
    }
    for key in ["start", "end"] {
        if let Some(v) = slot_tree.get(key) {
            members.push((key, v.clone()));
        }
    }
    members.push((
        "slot",
        Json::Array(vec![obj(vec![("reference", s(format!("Slot/{slot}")))])]),
    ));
    if let Some(r) = proposal.referral {
        members.push((
            "basedOn",
            Json::Array(vec![obj(vec![(
                "reference",
                s(format!("ServiceRequest/{}", r.id)),
            )])]),
        ));
    }
    members.push(("participant", Json::Array(participants)));
    Ok(obj(members))
}

/// The claim as it is under its Slot's lock, for its booker: the resident it is for, the
/// Slot's institution, or an administrator.
fn may_change(
    conn: &mut Tx<'_>,
    guard: &Guard,
    id: &str,
    claim: &Claim,
) -> Result<Claim, ApiError> {
    let places = pool::lock(conn, &claim.slot_id)?.ok_or_else(|| {
        ApiError::from(RecordError::Absent {
            t: "Slot".to_owned(),
            id: claim.slot_id.clone(),
        })
    })?;
    match may_book(guard, &places, &claim.resident, claim.referrer.as_deref()) {
        // The claim as it is under the Slot's lock (a concurrent cancel or expiry may have
        // moved it).
        Ok(()) => pool::claim_of(conn, id)?.ok_or_else(|| {
            RecordError::Absent {
                t: "Appointment".to_owned(),
                id: id.to_owned(),
            }
            .into()
        }),
        // A booking the caller may not see answers as an absent one.
        Err(e) => {
            let seen = !matches!(guard.writer, Writer::Resident { .. })
                && guard
                    .filter
                    .visible(conn, "Appointment", id, Some(&claim.resident))?;
            if seen {
                Err(e)
            } else {
                Err(RecordError::Absent {
                    t: "Appointment".to_owned(),
                    id: id.to_owned(),
                }
                .into())
            }
        }
    }
}

/// Book the place a hold keeps (before it expires).
fn book_held_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    id: &str,
    claim: Claim,
) -> Result<Record, ApiError> {
    let claim = may_change(conn, guard, id, &claim)?;
    let now = clock::now_millis();
    match claim.state.as_str() {
        "pending" if claim.hold_until.is_some_and(|u| u < now) => {
            release_in(conn, id, &claim)?;
            Err(SchedulingError::HoldExpired {
                appointment: id.to_owned(),
            }
            .into())
        }
        "pending" => {
            pool::set_state(conn, id, "booked", None)?;
            set_status(conn, id, "booked", None)
        }
        // Booking a booked Appointment again answers it as it is (a client's retry).
        "booked" => record::read_in(conn, "Appointment", id),
        other => Err(SchedulingError::Transition {
            from: other.to_owned(),
            to: "booked".to_owned(),
        }
        .into()),
    }
}

/// Cancel a hold or a booking: its place is free at once. A resident cancels until the start
/// of the visit's day, local time.
fn cancel_in(conn: &mut Tx<'_>, guard: &Guard, id: &str, claim: Claim) -> Result<Record, ApiError> {
    let claim = may_change(conn, guard, id, &claim)?;
    if !matches!(claim.state.as_str(), "pending" | "booked") {
        return Err(SchedulingError::Transition {
            from: claim.state,
            to: "cancelled".to_owned(),
        }
        .into());
    }
    if matches!(guard.writer, Writer::Resident { .. })
        && clock::now_millis() >= clock::local_midnight(claim.start_ms)
    {
        return Err(SchedulingError::CancelDeadline { day: claim.day }.into());
    }
    release_in(conn, id, &claim)
}

/// A REST write of an Appointment (`PUT`, or `PATCH` with a JSON Patch).
#[derive(Debug, Clone)]
pub enum RestWrite {
    Put(Json),
    Patch(json_patch::Patch),
}

/// A REST `PUT` or `PATCH` of an Appointment that holds a place of the pool, as a status
/// change: `cancelled` cancels (the place is free at once; a resident until the visit's day),
/// `arrived`, `fulfilled` and `noshow` are the Slot's institution's to mark. Anything else of
/// the Appointment stays as booked (422 otherwise). `None` when the Appointment holds no
/// place: an ordinary write then.
pub fn rest_write(
    store: &Store,
    guard: Guard,
    id: &str,
    write: RestWrite,
    if_match: Option<i64>,
    draft: Draft,
) -> Result<Option<Record>, ApiError> {
    let probe = id.to_owned();
    if store
        .read(move |conn| pool::claim_of(conn, &probe).map_err(ApiError::from))?
        .is_none()
    {
        return Ok(None);
    }
    let id = id.to_owned();
    let mut write = Spare::new(write);
    record::write(store, draft, move |conn| {
        conn.work::<Booking>().0 = true;
        let Some(claim) = pool::claim_of(conn, &id)? else {
            return Err(RecordError::Absent {
                t: "Appointment".to_owned(),
                id: id.clone(),
            }
            .into());
        };
        let claim = may_change(conn, &guard, &id, &claim)?;
        let current = record::read_in(conn, "Appointment", &id)?;
        if let Some(want) = if_match
            && want != current.version_id
        {
            return Err(RecordError::VersionConflict {
                want,
                have: Some(current.version_id),
            }
            .into());
        }
        let stored = Json::parse(current.content.as_bytes()).map_err(ApiError::internal)?;
        let wanted = match write.for_run(conn)? {
            RestWrite::Put(tree) => tree,
            RestWrite::Patch(patch) => {
                let mut doc: serde_json::Value =
                    serde_json::from_str(&current.content).map_err(ApiError::internal)?;
                record::apply_bounded(&mut doc, &patch, current.content.len(), guard.max_bytes)?;
                let bytes = serde_json::to_vec(&doc).map_err(ApiError::internal)?;
                Json::parse(&bytes).map_err(ApiError::internal)?
            }
        };
        let status = wanted.get_str("status").unwrap_or("").to_owned();
        if without_status(&stored) != without_status(&wanted) {
            return Err(unprocessable(format!(
                "Appointment/{id} holds a place of the pool: only its status changes by PUT or PATCH"
            )));
        }
        transition_in(conn, &guard, &id, claim, &status).map(Some)
    })
}

/// An Appointment without what a client does not choose (`meta`, `status`), for comparison.
fn without_status(tree: &Json) -> Json {
    let mut t = tree.clone();
    t.remove("meta");
    t.remove("status");
    t.remove("text");
    t
}

/// Move a claim's Appointment to `status`.
fn transition_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    id: &str,
    claim: Claim,
    status: &str,
) -> Result<Record, ApiError> {
    let refused = |from: &str| -> ApiError {
        SchedulingError::Transition {
            from: from.to_owned(),
            to: status.to_owned(),
        }
        .into()
    };
    match (claim.state.as_str(), status) {
        (from, to) if from == to => record::read_in(conn, "Appointment", id),
        (_, "cancelled") => cancel_in(conn, guard, id, claim),
        ("booked", "arrived" | "fulfilled" | "noshow") | ("arrived", "fulfilled") => {
            if matches!(guard.writer, Writer::Resident { .. }) {
                return Err(ApiError::Forbidden(format!(
                    "the Slot's institution marks an Appointment {status}"
                )));
            }
            pool::set_state(conn, id, status, None)?;
            set_status(conn, id, status, None)
        }
        (from, _) => Err(refused(from)),
    }
}
