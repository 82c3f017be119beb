//! Publishing the slot pool: a hospital writes its `Schedule`s (whose actors are its own) and
//! `Slot`s (on its own Schedules), by REST or in bundles. Each Slot write, in its own
//! transaction, also writes the Slot's row of places (`store::scheduling`): capacity, referral
//! reserve, release instant, whether it is offered.

use super::{reference_of, referenced};
use crate::clock;
use crate::error::{ApiError, SchedulingError};
use crate::fhir::json::Json;
use crate::store::Tx;
use crate::store::record as repo;
use crate::store::scheduling::{self as pool, Places};

/// Extension: the places a Slot offers (valueInteger, default 1).
pub const CAPACITY: &str = "urn:huimin:StructureDefinition:slot-capacity";
/// Extension: when the public may book the Slot (valueDateTime; absent: now).
pub const RELEASE: &str = "urn:huimin:StructureDefinition:slot-release";
/// Extension: places kept for referred residents (valueInteger).
pub const RESERVE: &str = "urn:huimin:StructureDefinition:slot-referral-reserve";
/// Extension: until when the reserve is kept (valueDateTime); then its places join the pool.
pub const RESERVE_UNTIL: &str = "urn:huimin:StructureDefinition:slot-reserve-until";

/// The types a Schedule's actor may be, with the element naming their institution.
const ACTORS: &[(&str, &str)] = &[
    ("PractitionerRole", "organization"),
    ("Practitioner", ""),
    ("Location", "managingOrganization"),
    ("HealthcareService", "providedBy"),
];

fn unprocessable(text: String) -> ApiError {
    ApiError::Unprocessable(text)
}

fn extension<'a>(tree: &'a Json, url: &str) -> Option<&'a Json> {
    match tree.get("extension") {
        Some(Json::Array(items)) => items.iter().find(|e| e.get_str("url") == Some(url)),
        _ => None,
    }
}

fn integer(tree: &Json, url: &str, default: i32) -> Result<i32, ApiError> {
    let Some(e) = extension(tree, url) else {
        return Ok(default);
    };
    match e.get("valueInteger") {
        Some(Json::Number(n)) => n
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| unprocessable(format!("Slot.extension '{url}' must be a count"))),
        _ => Err(unprocessable(format!(
            "Slot.extension '{url}' needs a valueInteger"
        ))),
    }
}

fn instant(tree: &Json, url: &str) -> Result<Option<i64>, ApiError> {
    let Some(e) = extension(tree, url) else {
        return Ok(None);
    };
    e.get_str("valueDateTime")
        .and_then(clock::period_of)
        .map(|(low, _)| Some(low))
        .ok_or_else(|| unprocessable(format!("Slot.extension '{url}' needs a valueDateTime")))
}

/// The institution holding a stored resource of the pool (`None` when it does not exist).
fn holder(conn: &mut Tx<'_>, t: &str, id: &str) -> Result<Option<Option<String>>, ApiError> {
    Ok(repo::lock_current(conn, t, id)?
        .filter(|l| !l.deleted)
        .map(|l| l.custodian))
}

/// A Schedule written by `institution`: every actor is one of the pool's kinds, exists, and is
/// the institution's own (held by it, or naming it as its organization).
pub fn schedule_written(
    conn: &mut Tx<'_>,
    tree: &Json,
    institution: Option<&str>,
) -> Result<(), ApiError> {
    let Some(Json::Array(actors)) = tree.get("actor") else {
        return Err(unprocessable("Schedule.actor is required".to_owned()));
    };
    // The actors may be written by earlier entries of the same bundle.
    crate::store::flush_held(conn)?;
    for (i, actor) in actors.iter().enumerate() {
        let at = format!("Schedule.actor[{i}]");
        let Some((t, id)) = reference_of(Some(actor)) else {
            return Err(unprocessable(format!("{at} must be a reference Type/id")));
        };
        let Some((_, org_element)) = ACTORS.iter().find(|(k, _)| *k == t) else {
            return Err(unprocessable(format!(
                "{at} must be a PractitionerRole, Practitioner, Location or HealthcareService"
            )));
        };
        let Some(current) = repo::find_current(conn, t, id)?.filter(|c| !c.deleted) else {
            return Err(unprocessable(format!("{at}: {t}/{id} is not known")));
        };
        let Some(institution) = institution else {
            continue;
        };
        let named = Json::parse(current.content.as_bytes())
            .ok()
            .and_then(|c| reference_of(c.get(org_element)).map(|(rt, rid)| format!("{rt}/{rid}")));
        let held = repo::custody(conn, t, id)?.and_then(|(_, c)| c);
        if named.as_deref() != Some(institution) && held.as_deref() != Some(institution) {
            return Err(ApiError::Forbidden(format!(
                "{at}: {t}/{id} is not of {institution}"
            )));
        }
    }
    Ok(())
}

/// A Slot written (held by `institution`): its Schedule is the institution's own, its terms
/// are well formed, and its row of places says what it now offers.
pub fn slot_written(
    conn: &mut Tx<'_>,
    id: &str,
    tree: &Json,
    institution: Option<&str>,
) -> Result<(), ApiError> {
    let Some(schedule) = referenced(tree, "schedule", "Schedule") else {
        return Err(unprocessable(
            "Slot.schedule must refer to a Schedule (Schedule/id)".to_owned(),
        ));
    };
    // The Schedule may be written by an earlier entry of the same bundle.
    crate::store::flush_held(conn)?;
    let Some(schedule_holder) = holder(conn, "Schedule", schedule)? else {
        return Err(unprocessable(format!(
            "Slot.schedule: Schedule/{schedule} is not known"
        )));
    };
    let institution = match (institution, schedule_holder) {
        (Some(i), Some(h)) if i == h => i.to_owned(),
        (None, Some(h)) => h,
        (Some(i), _) => {
            return Err(ApiError::Forbidden(format!(
                "Slot.schedule: Schedule/{schedule} is not of {i}"
            )));
        }
        (None, None) => {
            return Err(unprocessable(format!(
                "Slot.schedule: Schedule/{schedule} belongs to no institution"
            )));
        }
    };
    let when = |name: &str| {
        tree.get_str(name)
            .and_then(clock::period_of)
            .map(|(low, _)| low)
            .ok_or_else(|| unprocessable(format!("Slot.{name} must be an instant")))
    };
    let (start_ms, end_ms) = (when("start")?, when("end")?);
    if end_ms <= start_ms {
        return Err(unprocessable(
            "Slot.end must be after Slot.start".to_owned(),
        ));
    }
    let capacity = integer(tree, CAPACITY, 1)?;
    let reserve = integer(tree, RESERVE, 0)?;
    if capacity == 0 || reserve > capacity {
        return Err(unprocessable(format!(
            "Slot.extension: the capacity ({capacity}) must be at least 1 and at least the referral reserve ({reserve})"
        )));
    }
    let open = matches!(tree.get_str("status"), Some("free" | "busy"));
    let locked = pool::lock(conn, id)?;
    let taken = locked.as_ref().map_or(0, Places::taken);
    if capacity < taken {
        return Err(SchedulingError::CapacityBelowTaken {
            slot: id.to_owned(),
            taken,
        }
        .into());
    }
    pool::publish(
        conn,
        &Places {
            slot_id: id.to_owned(),
            institution,
            start_ms,
            end_ms,
            capacity,
            reserve,
            reserve_until: instant(tree, RESERVE_UNTIL)?,
            release_at: instant(tree, RELEASE)?,
            open,
            taken_public: 0,
            taken_referral: 0,
        },
        locked.is_some(),
    )?;
    Ok(())
}

/// A Slot deleted: nothing more is booked on it (what is booked stays booked).
pub fn slot_deleted(conn: &mut Tx<'_>, id: &str) -> Result<(), ApiError> {
    pool::close(conn, id)?;
    Ok(())
}

/// An Appointment written: one that takes a place of the pool (it names a Slot) is the booking
/// service's to write, so that its place is counted; any other write of one is refused.
pub fn appointment_written(conn: &mut Tx<'_>, tree: &Json) -> Result<(), ApiError> {
    let names_slot = matches!(tree.get("slot"), Some(Json::Array(s)) if !s.is_empty());
    if names_slot && !conn.work::<super::Booking>().0 {
        return Err(unprocessable(
            "an Appointment on a Slot of the pool is made, changed and cancelled with \
             Appointment/$hold and Appointment/$book"
                .to_owned(),
        ));
    }
    Ok(())
}

/// An Appointment deleted: one holding a place is cancelled through `$book` instead, so that
/// its place is given back.
pub fn appointment_deleted(conn: &mut Tx<'_>, id: &str) -> Result<(), ApiError> {
    if pool::claim_of(conn, id)?.is_some() && !conn.work::<super::Booking>().0 {
        return Err(unprocessable(format!(
            "Appointment/{id} holds a place of the pool: cancel it with Appointment/$book"
        )));
    }
    Ok(())
}
