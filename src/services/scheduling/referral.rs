//! Referral bookings (转诊预约): a primary-care institution (WS 218 categories B, C, D: community
//! health service centres, township health centres, village clinics) books for a resident it
//! refers up, naming its referral as the Appointment's `basedOn`: an active `ServiceRequest` of
//! category `referral-up` that the institution holds, whose subject is that resident. Only
//! such a booking takes a place of a Slot's referral reserve, and it may take one before the
//! Slot's public release. A referral the booker does not hold answers as an absent one.

use super::{has_coding, referenced, stored};
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::access::{Guard, Writer};
use crate::services::record;
use crate::store::Tx;
use crate::store::record::{self as repo, search};

/// The code system of request categories (`referral-up`, `referral-down`).
pub const REQUEST_CATEGORY: &str = "urn:huimin:CodeSystem:request-category";
/// The code system of institution categories (WS 218: A100, B100, C210, C220, D600, …).
pub const INSTITUTION_CATEGORY: &str = "urn:huimin:institution-category";

/// A referral a booking may use.
#[derive(Debug, Clone)]
pub struct Referral {
    /// The `ServiceRequest`'s id.
    pub id: String,
    /// The golden resident referred.
    pub resident: String,
    /// The referring institution (`Organization/<id>`).
    pub referrer: String,
    /// The referral's subject (`Patient/<id>` stripped to the id).
    pub patient: Option<String>,
    /// The receiving institutions it names (`Organization/<id>`; empty: any).
    receivers: Vec<String>,
}

impl Referral {
    /// Whether the referral sends the resident to `institution`.
    pub fn goes_to(&self, institution: &str) -> bool {
        self.receivers.is_empty() || self.receivers.iter().any(|r| r == institution)
    }
}

/// The ServiceRequest an Appointment is based on (`basedOn`), if any.
pub fn based_on(tree: &Json) -> Option<&str> {
    let Some(Json::Array(refs)) = tree.get("basedOn") else {
        return None;
    };
    refs.iter().find_map(|r| {
        r.get_str("reference")
            .and_then(|r| r.strip_prefix("ServiceRequest/"))
    })
}

/// Whether `org` (`Organization/<id>`) is a primary-care institution of the registry: its
/// `type` has a WS 218 category of class B, C or D.
fn primary_care(conn: &mut Tx<'_>, org: &str) -> bool {
    let Some(tree) = org
        .strip_prefix("Organization/")
        .and_then(|id| stored(conn, "Organization", id))
    else {
        return false;
    };
    has_code(&tree, "type", INSTITUTION_CATEGORY, |c| {
        c.starts_with(['B', 'C', 'D'])
    })
}

fn has_code(tree: &Json, key: &str, system: &str, wanted: impl Fn(&str) -> bool) -> bool {
    has_coding(tree, key, |s, c| s == Some(system) && wanted(c))
}

/// The referring institution `guard` books as (an administrator books with any referral).
fn booker(guard: &Guard) -> Result<Option<&str>, ApiError> {
    match &guard.writer {
        Writer::Institution(org) => Ok(Some(org)),
        Writer::Platform | Writer::Admin => Ok(None),
        Writer::Resident { .. } | Writer::Nobody => Err(ApiError::Forbidden(
            "a referral booking is made by the referring primary-care institution".to_owned(),
        )),
    }
}

/// `ServiceRequest/<id>` as a referral `guard` may book with: held by the booker's
/// institution (else: as if absent), a primary-care institution, active and `referral-up`.
pub fn referral_in(conn: &mut Tx<'_>, guard: &Guard, id: &str) -> Result<Referral, ApiError> {
    let booker = booker(guard)?;
    let absent = || {
        ApiError::Unprocessable(format!(
            "ServiceRequest/{id} is not a referral {} holds",
            booker.unwrap_or("the platform")
        ))
    };
    let Some((Some(resident), Some(custodian))) = repo::custody(conn, "ServiceRequest", id)? else {
        return Err(absent());
    };
    if booker.is_some_and(|b| b != custodian) {
        return Err(absent());
    }
    let Ok(rec) = record::read_in(conn, "ServiceRequest", id) else {
        return Err(absent());
    };
    if !primary_care(conn, &custodian) {
        return Err(ApiError::Forbidden(format!(
            "{custodian} is not a primary-care institution of the registry (WS 218 categories B, C, D); only those book referral places"
        )));
    }
    let tree = Json::parse(rec.content.as_bytes()).map_err(ApiError::internal)?;
    if tree.get_str("status") != Some("active") {
        return Err(ApiError::Unprocessable(format!(
            "ServiceRequest/{id} is not active (status {}); only an active referral books",
            tree.get_str("status").unwrap_or("absent")
        )));
    }
    if !has_code(&tree, "category", REQUEST_CATEGORY, |c| c == "referral-up") {
        return Err(ApiError::Unprocessable(format!(
            "ServiceRequest/{id} is not an up-referral (category {REQUEST_CATEGORY}|referral-up)"
        )));
    }
    let receivers = match tree.get("performer") {
        Some(Json::Array(ps)) => ps
            .iter()
            .filter_map(|p| p.get_str("reference"))
            .filter(|r| r.starts_with("Organization/"))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Referral {
        id: id.to_owned(),
        resident,
        referrer: custodian,
        patient: referenced(&tree, "subject", "Patient").map(str::to_owned),
        receivers,
    })
}

/// The referral with identifier `system|value` that `guard` may book with (`$find`'s
/// `referral-identifier`).
pub fn by_identifier(
    conn: &mut Tx<'_>,
    guard: &Guard,
    identifier: &str,
) -> Result<Referral, ApiError> {
    let Some((system, value)) = identifier
        .split_once('|')
        .filter(|(s, v)| !s.is_empty() && !v.is_empty())
    else {
        return Err(ApiError::invalid(
            "invalid",
            "referral-identifier",
            format!("referral-identifier '{identifier}' must be system|value"),
        ));
    };
    let booker = booker(guard)?;
    let ids = search::token_matches(conn, "ServiceRequest", "identifier", system, &[value])?;
    let mut refused = None;
    for (_, id) in ids {
        // Only the booker's own referrals are looked at: another's confirms nothing.
        let held = match repo::custody(conn, "ServiceRequest", &id)? {
            Some((_, Some(custodian))) => booker.is_none_or(|b| b == custodian),
            _ => false,
        };
        if !held {
            continue;
        }
        match referral_in(conn, guard, &id) {
            Ok(r) => return Ok(r),
            Err(e) => refused = refused.or(Some(e)),
        }
    }
    Err(refused.unwrap_or_else(|| {
        ApiError::Unprocessable(format!(
            "referral-identifier: no referral {} holds has the identifier {identifier}",
            booker.unwrap_or("the platform")
        ))
    }))
}
