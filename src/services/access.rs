//! Who may see which resident's data, by role: the filter every search applies inside its
//! database query, and the check of every direct read.
//!
//! - `resident`: only their own record, the resources whose golden resident is the one their
//!   token's `fhirUser` Patient belongs to; registries and other resources outside the Patient
//!   compartment (Organization, Practitioner, Location, …) stay visible.
//! - `official`: never an individual's resource (aggregates come from the statistics
//!   service); registries stay visible.
//! - `admin`, `his`, `doctor`: every resident's (the consent engine narrows `his` and `doctor`).
//!
//! Searches (type, compartment, system), `_include` / `_revinclude` and conditional matches
//! are narrowed by [`AccessFilter::clause`] *inside* the database query, before paging, so that
//! totals, includes and page boundaries never reveal what the caller may not see; a direct
//! read of a hidden resource is 403 with an OperationOutcome that names nothing of it.

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::fhir::search::Clause;
use crate::fhir::search_params;
use crate::store::{DbConn, resources};

/// The restriction applied to one caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessFilter {
    /// Every resident's data.
    #[default]
    Unrestricted,
    /// One resident's own record (the golden resident's id).
    OwnRecord(String),
    /// No individual's data at all.
    NoPersonalData,
}

/// Whether resources of type `t` are an individual's data: Patient, and every type in the
/// Patient compartment.
pub fn is_personal(t: &str) -> bool {
    t == "Patient" || search_params::compartment_params("Patient", t).is_some()
}

impl AccessFilter {
    /// The filter for this caller. A resident's token must name their Patient (`fhirUser`),
    /// which must belong to a resident record.
    pub fn for_caller(conn: &mut DbConn, caller: &Caller) -> Result<AccessFilter, ApiError> {
        match AccessFilter::of_role(caller) {
            Some(f) => Ok(f),
            None => {
                let Some(pid) = caller
                    .fhir_user
                    .as_deref()
                    .and_then(|u| u.strip_prefix("Patient/"))
                else {
                    return Err(ApiError::Forbidden(
                        "a resident's token must name their Patient (fhirUser)".to_owned(),
                    ));
                };
                match resources::resident(conn, "Patient", pid)? {
                    Some(golden) => Ok(AccessFilter::OwnRecord(golden)),
                    None => Err(ApiError::Forbidden(
                        "the token's Patient belongs to no resident record".to_owned(),
                    )),
                }
            }
        }
    }

    /// The filter of the caller's role when it needs no lookup (every role but `resident`).
    pub fn of_role(caller: &Caller) -> Option<AccessFilter> {
        match caller.role {
            Role::Admin | Role::His | Role::Doctor => Some(AccessFilter::Unrestricted),
            Role::Official => Some(AccessFilter::NoPersonalData),
            Role::Resident => None,
        }
    }

    /// The clause that keeps only the resources of type `resource_type` the caller may see;
    /// `None` when nothing is hidden.
    pub fn clause(&self, resource_type: &str) -> Option<Clause> {
        match self {
            AccessFilter::Unrestricted => None,
            _ if !is_personal(resource_type) => None,
            AccessFilter::OwnRecord(golden) => Some(Clause::Resident(Some(golden.clone()))),
            AccessFilter::NoPersonalData => Some(Clause::Resident(None)),
        }
    }

    /// Whether the caller may see a resource of type `t` that belongs to `resident`.
    pub fn allows(&self, t: &str, resident: Option<&str>) -> bool {
        match self {
            AccessFilter::Unrestricted => true,
            _ if !is_personal(t) => true,
            AccessFilter::OwnRecord(golden) => resident == Some(golden.as_str()),
            AccessFilter::NoPersonalData => false,
        }
    }

    /// A direct read's answer when [`AccessFilter::allows`] says no: 403, naming nothing of
    /// the resource.
    pub fn denied() -> ApiError {
        ApiError::Forbidden("the caller may not see this resource".to_owned())
    }

    /// Whether the caller is limited to less than every resident's data.
    pub fn is_restricted(&self) -> bool {
        *self != AccessFilter::Unrestricted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resident_sees_their_own_record_and_the_registries() {
        let f = AccessFilter::OwnRecord("g1".to_owned());
        assert!(f.allows("Observation", Some("g1")));
        assert!(!f.allows("Observation", Some("g2")));
        assert!(!f.allows("Observation", None));
        assert!(f.allows("Organization", None));
        assert!(f.clause("Organization").is_none());
        assert_eq!(
            f.clause("Observation"),
            Some(Clause::Resident(Some("g1".to_owned())))
        );
    }

    #[test]
    fn an_official_sees_no_individual() {
        let f = AccessFilter::NoPersonalData;
        assert!(!f.allows("Patient", Some("g1")));
        assert!(!f.allows("Encounter", None));
        assert!(f.allows("Practitioner", None));
        assert_eq!(f.clause("Condition"), Some(Clause::Resident(None)));
    }
}
