//! Which resources a caller may see in search results: the hook the consent engine fills.
//!
//! Every search (type, compartment, system), every `_include` / `_revinclude` and every
//! conditional interaction's match set is narrowed by [`AccessFilter::clause`] *inside* the
//! database query, before paging, so that totals, includes and page boundaries never reveal
//! what the caller may not see. Today every authenticated caller with the right scope sees
//! every resource of the type; the consent capability replaces [`AccessFilter::for_caller`].

use crate::auth::Caller;
use crate::fhir::search::Clause;

/// The restriction applied to one caller's searches.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    _private: (),
}

impl AccessFilter {
    /// The filter for this caller.
    pub fn for_caller(_caller: &Caller) -> AccessFilter {
        AccessFilter::default()
    }

    /// The clause that keeps only the resources of type `resource_type` the caller may see;
    /// `None` when nothing is hidden.
    pub fn clause(&self, _resource_type: &str) -> Option<Clause> {
        None
    }
}
