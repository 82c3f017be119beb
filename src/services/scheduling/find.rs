//! `$find` (IHE ITI-115): the places a caller may book now, as proposed Appointments, earliest
//! first: offered Slots starting in the window, released, with a free place (held places count
//! as taken), narrowed by specialty, service type, institution, district, practitioner or
//! location. Slots are not personal data; a proposed Appointment names the patient only when
//! the request gave one.

use super::book::{Proposal, appointment, place};
use super::referral::{self, Referral};
use super::{has_coding, referenced, stored};
use crate::clock;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::access::Guard;
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
    /// `system|value` of the caller's referral (`referral-identifier`): the reserve's places
    /// are proposed too, at the institutions it refers to, for its subject.
    pub referral: Option<String>,
    pub count: usize,
}

/// The page found: the proposed Appointments (at most `count`) and how many there are.
pub struct Found {
    pub appointments: Vec<Json>,
    pub total: usize,
    /// The referral looked at (`ServiceRequest/<id>`, its resident), for the audit record.
    pub referral: Option<(String, String)>,
}

/// The extension of an address that carries its GB/T 2260 code.
const AREA_CODE: &str = "urn:huimin:StructureDefinition:area-code";

/// Slots looked at, at most, for one `$find`.
const LOOK_AT: i64 = 5000;

fn codes_match(tree: &Json, key: &str, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, wanted),
    };
    has_coding(tree, key, |sys, c| {
        c == code && system.is_none_or(|s| s.is_empty() || sys == Some(s))
    })
}

fn in_district(conn: &mut Tx<'_>, institution: &str, district: &str) -> bool {
    let Some(org) = institution
        .strip_prefix("Organization/")
        .and_then(|id| stored(conn, "Organization", id))
    else {
        return false;
    };
    // The district as written, or its GB/T 2260 code (the area-code extension, which may
    // name an area inside it: a township's code starts with its district's).
    let prefix = crate::auth::is_area(Some(district)).then(|| crate::auth::area_prefix(district));
    let coded = |a: &Json| match (a.get("extension"), prefix) {
        (Some(Json::Array(exts)), Some(prefix)) => exts.iter().any(|e| {
            e.get_str("url") == Some(AREA_CODE)
                && e.get_str("valueCode")
                    .is_some_and(|c| c.starts_with(prefix))
        }),
        _ => false,
    };
    matches!(org.get("address"), Some(Json::Array(addrs))
        if addrs.iter().any(|a| a.get_str("district") == Some(district) || coded(a)))
}

fn has_actor(conn: &mut Tx<'_>, slot_tree: &Json, actor: &str) -> bool {
    let Some(schedule) = referenced(slot_tree, "schedule", "Schedule") else {
        return false;
    };
    let Some(sched) = stored(conn, "Schedule", schedule) else {
        return false;
    };
    matches!(sched.get("actor"), Some(Json::Array(actors))
        if actors.iter().any(|a| a.get_str("reference") == Some(actor)))
}

/// Whether `places` (and its Slot, `tree`) is what the request looks for.
fn wanted(
    conn: &mut Tx<'_>,
    req: &FindRequest,
    referral: Option<&Referral>,
    places: &Places,
    tree: &Json,
) -> bool {
    referral.is_none_or(|r| r.goes_to(&places.institution))
        && req
            .specialty
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

/// The bookable places of the window, as proposed Appointments (for `guard`'s referral when
/// the request names one).
pub fn find(store: &Store, guard: &Guard, req: &FindRequest) -> Result<Found, ApiError> {
    let now = clock::now_millis();
    store.read(|conn| {
        let referral = req
            .referral
            .as_deref()
            .map(|r| referral::by_identifier(conn, guard, r))
            .transpose()?;
        let patient = req
            .patient
            .as_deref()
            .and_then(|p| p.strip_prefix("Patient/"))
            .or(referral.as_ref().and_then(|r| r.patient.as_deref()));
        let offered = pool::offered_between(conn, req.start, req.end, now, LOOK_AT)?;
        let mut appointments = Vec::new();
        let mut total = 0;
        for places in offered {
            if place(&places, now, referral.is_some()).is_err() {
                continue;
            }
            let Ok(slot) = record::read_in(conn, "Slot", &places.slot_id) else {
                continue;
            };
            let tree = Json::parse(slot.content.as_bytes()).map_err(ApiError::internal)?;
            if !wanted(conn, req, referral.as_ref(), &places, &tree) {
                continue;
            }
            total += 1;
            if appointments.len() < req.count {
                let proposal = Proposal {
                    patient,
                    referral: referral.as_ref(),
                };
                appointments.push(appointment(
                    conn,
                    &tree,
                    &places.slot_id,
                    proposal,
                    "proposed",
                    None,
                )?);
            }
        }
        Ok(Found {
            appointments,
            total,
            referral: referral.map(|r| (format!("ServiceRequest/{}", r.id), r.resident)),
        })
    })
}
