//! `$find` (IHE ITI-115): the places a caller may book now, as proposed Appointments, earliest
//! first: offered Slots starting in the window, released, with a free place (held places count
//! as taken), narrowed by specialty, service type, institution, district, practitioner or
//! location. Slots are not personal data; a proposed Appointment names the patient only when
//! the request gave one.

use super::book::{appointment, refusal};
use super::referenced;
use crate::clock;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::record;
use crate::store::scheduling::{self as pool, Places};
use crate::store::{Store, Tx};

/// What `$find` asks for.
#[derive(Debug, Clone, Default)]
pub struct FindRequest {
    pub start: i64,
    pub end: i64,
    /// `system|code` or `code` of the Slot's specialty.
    pub specialty: Option<String>,
    /// `system|code` or `code` of the Slot's service type (`visit-type`).
    pub visit_type: Option<String>,
    /// `Organization/<id>`: the publishing institution.
    pub organization: Option<String>,
    /// A GB/T 2260 code the institution's address carries (`address.district`).
    pub district: Option<String>,
    /// `Practitioner/<id>`, `PractitionerRole/<id>`, `Location/<id>`, …: a Schedule actor.
    pub actor: Option<String>,
    /// The patient to propose the Appointments for (`Patient/<id>`).
    pub patient: Option<String>,
    pub count: usize,
}

/// The page found: the proposed Appointments (at most `count`) and how many there are.
pub struct Found {
    pub appointments: Vec<Json>,
    pub total: usize,
}

/// Slots looked at, at most, for one `$find`.
const LOOK_AT: i64 = 5000;

fn codes_match(tree: &Json, key: &str, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, wanted),
    };
    let Some(Json::Array(concepts)) = tree.get(key) else {
        return false;
    };
    concepts.iter().any(|cc| match cc.get("coding") {
        Some(Json::Array(codings)) => codings.iter().any(|c| {
            c.get_str("code") == Some(code)
                && system.is_none_or(|s| s.is_empty() || c.get_str("system") == Some(s))
        }),
        _ => false,
    })
}

fn in_district(conn: &mut Tx<'_>, institution: &str, district: &str) -> bool {
    let Some(id) = institution.strip_prefix("Organization/") else {
        return false;
    };
    let Ok(org) = record::read_in(conn, "Organization", id) else {
        return false;
    };
    let Ok(org) = Json::parse(org.content.as_bytes()) else {
        return false;
    };
    matches!(org.get("address"), Some(Json::Array(addrs))
        if addrs.iter().any(|a| a.get_str("district") == Some(district)))
}

fn has_actor(conn: &mut Tx<'_>, slot_tree: &Json, actor: &str) -> bool {
    let Some(schedule) = referenced(slot_tree, "schedule", "Schedule") else {
        return false;
    };
    let Ok(sched) = record::read_in(conn, "Schedule", schedule) else {
        return false;
    };
    let Ok(sched) = Json::parse(sched.content.as_bytes()) else {
        return false;
    };
    matches!(sched.get("actor"), Some(Json::Array(actors))
        if actors.iter().any(|a| a.get_str("reference") == Some(actor)))
}

/// Whether `places` (and its Slot, `tree`) is what the request looks for.
fn wanted(conn: &mut Tx<'_>, req: &FindRequest, places: &Places, tree: &Json) -> bool {
    req.specialty
        .as_deref()
        .is_none_or(|w| codes_match(tree, "specialty", w))
        && req
            .visit_type
            .as_deref()
            .is_none_or(|w| codes_match(tree, "serviceType", w))
        && req
            .organization
            .as_deref()
            .is_none_or(|o| o == places.institution)
        && req
            .district
            .as_deref()
            .is_none_or(|d| in_district(conn, &places.institution, d))
        && req
            .actor
            .as_deref()
            .is_none_or(|a| has_actor(conn, tree, a))
}

/// The bookable places of the window, as proposed Appointments.
pub fn find(store: &Store, req: &FindRequest) -> Result<Found, ApiError> {
    let now = clock::now_millis();
    store.read(|conn| {
        let offered = pool::offered_between(conn, req.start, req.end, now, LOOK_AT)?;
        let mut appointments = Vec::new();
        let mut total = 0;
        for places in offered {
            if refusal(&places, now).is_some() {
                continue;
            }
            let Ok(slot) = record::read_in(conn, "Slot", &places.slot_id) else {
                continue;
            };
            let tree = Json::parse(slot.content.as_bytes()).map_err(ApiError::internal)?;
            if !wanted(conn, req, &places, &tree) {
                continue;
            }
            total += 1;
            if appointments.len() < req.count {
                let patient = req
                    .patient
                    .as_deref()
                    .and_then(|p| p.strip_prefix("Patient/"));
                appointments.push(appointment(
                    conn,
                    &tree,
                    &places.slot_id,
                    patient,
                    "proposed",
                    None,
                )?);
            }
        }
        Ok(Found {
            appointments,
            total,
        })
    })
}
