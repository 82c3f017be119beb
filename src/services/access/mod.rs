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

pub mod break_glass;
pub mod consent;

use crate::auth::{Caller, Role};
use crate::error::{ApiError, RecordError};
use crate::fhir::search::Clause;
use crate::fhir::search::Query;
use crate::fhir::search_params;
use crate::store::record as resources;
use crate::store::record::Locked;
use crate::store::{Store, Tx};

/// The restriction applied to one caller.
#[derive(Debug, Clone, Default)]
pub enum AccessFilter {
    /// Every resident's data.
    #[default]
    Unrestricted,
    /// One resident's own record (the golden resident's id).
    OwnRecord(String),
    /// No individual's data at all.
    NoPersonalData,
    /// What the residents' Consents and the regional default allow this caller, the
    /// residents an emergency grant lets this doctor see (break-glass, see
    /// [`crate::services::access::break_glass`]), and the residents referred to the caller's
    /// institution, whose records it reads for coordination of care (sensitive data excepted,
    /// see [`crate::services::workflow::access`]). Each list sorted.
    Consent(std::sync::Arc<consent::View>, Vec<String>, Vec<String>),
    /// An institution's caller when no Consent restricts anything: every resident's data, and
    /// of personal records without a resident only those it wrote (`Organization/<id>`).
    Institution(String),
}

impl PartialEq for AccessFilter {
    fn eq(&self, other: &AccessFilter) -> bool {
        match (self, other) {
            (AccessFilter::Unrestricted, AccessFilter::Unrestricted)
            | (AccessFilter::NoPersonalData, AccessFilter::NoPersonalData) => true,
            (AccessFilter::OwnRecord(a), AccessFilter::OwnRecord(b))
            | (AccessFilter::Institution(a), AccessFilter::Institution(b)) => a == b,
            (AccessFilter::Consent(a, ga, ra), AccessFilter::Consent(b, gb, rb)) => {
                std::sync::Arc::ptr_eq(a, b) && ga == gb && ra == rb
            }
            _ => false,
        }
    }
}

/// The elements that name the institution a record belongs to (a hospital system writes and
/// changes only its own institution's records).
const CUSTODIANS: &[(&str, &str)] = &[
    ("Patient", "managingOrganization"),
    ("Encounter", "serviceProvider"),
];

/// Whether `body`, a resource of type `t`, may be written by institution `org` (a reference,
/// `Organization/…`): it names no institution, or `org`. Otherwise 403 naming the element.
pub fn custodian_check(t: &str, body: &crate::fhir::json::Json, org: &str) -> Result<(), ApiError> {
    let Some((_, element)) = CUSTODIANS.iter().find(|(ct, _)| *ct == t) else {
        return Ok(());
    };
    match body.get(element) {
        None => Ok(()),
        Some(named) if named.get_str("reference") == Some(org) => Ok(()),
        Some(_) => Err(ApiError::Forbidden(format!(
            "{t}.{element} names another institution: a hospital system writes for its own ({org})"
        ))),
    }
}

/// Whether resources of type `t` are an individual's data (decided from the definitions, see
/// [`search_params::is_personal_type`]).
pub fn is_personal(t: &str) -> bool {
    search_params::is_personal_type(t)
}

impl AccessFilter {
    /// [`AccessFilter::for_caller`] in a read transaction of its own.
    pub fn load(store: &Store, caller: &Caller, doors: &Doors) -> Result<AccessFilter, ApiError> {
        store.read(|conn| AccessFilter::for_caller(conn, caller, doors))
    }

    /// The filter for this caller. A resident's token must name their Patient (`fhirUser`),
    /// which must belong to a resident record.
    pub fn for_caller(
        conn: &mut Tx<'_>,
        caller: &Caller,
        doors: &Doors,
    ) -> Result<AccessFilter, ApiError> {
        match AccessFilter::of_role(caller, &doors.consent) {
            Some(f) => Ok(f),
            None if matches!(caller.role, Role::His | Role::Doctor) => {
                let (practitioner, purpose) = acting_as(caller);
                let view =
                    doors
                        .consent
                        .view(conn, caller.org.as_deref(), practitioner, purpose)?;
                let granted = if caller.role == Role::Doctor {
                    sorted_residents(doors.grants.active(conn, &caller.sub)?.as_ref())
                } else {
                    Vec::new()
                };
                let referred = match referral_org(caller) {
                    Some(org) => referred(&view, doors.referrals.open(conn, org)?.as_ref()),
                    None => Vec::new(),
                };
                Ok(AccessFilter::Consent(view, granted, referred))
            }
            None => {
                if let Some(rp) = caller
                    .fhir_user
                    .as_deref()
                    .and_then(|u| u.strip_prefix("RelatedPerson/"))
                {
                    return guardian_of(conn, rp).map(AccessFilter::OwnRecord);
                }
                let Some(pid) = caller
                    .fhir_user
                    .as_deref()
                    .and_then(|u| u.strip_prefix("Patient/"))
                else {
                    return Err(ApiError::Forbidden(
                        "a resident's token must name their Patient or, for a guardian, their RelatedPerson (fhirUser)".to_owned(),
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

    /// [`AccessFilter::for_caller`] when it needs no database (the caller's consent view, and a
    /// doctor's emergency grants, cached and fresh): most requests decide their access without
    /// taking a connection or a thread hop.
    pub fn cached_for_caller(caller: &Caller, doors: &Doors) -> Option<AccessFilter> {
        if let Some(f) = AccessFilter::of_role(caller, &doors.consent) {
            return Some(f);
        }
        if !matches!(caller.role, Role::His | Role::Doctor) {
            return None;
        }
        let (practitioner, purpose) = acting_as(caller);
        let view = doors
            .consent
            .view_cached(caller.org.as_deref(), practitioner, purpose)?;
        let granted = if caller.role == Role::Doctor {
            sorted_residents(doors.grants.cached(&caller.sub)?.as_ref())
        } else {
            Vec::new()
        };
        let referred = match referral_org(caller) {
            Some(org) => referred(&view, doors.referrals.cached(org)?.as_ref()),
            None => Vec::new(),
        };
        Some(AccessFilter::Consent(view, granted, referred))
    }

    /// The filter of the caller's role when it needs no lookup (every role but `resident`).
    pub fn of_role(caller: &Caller, consent: &consent::Engine) -> Option<AccessFilter> {
        match caller.role {
            Role::Admin => Some(AccessFilter::Unrestricted),
            // Emergency access: consent does not apply to this request, which is audited as
            // such (flagged, purpose ETREAT) and listed for the resident.
            Role::Doctor if caller.break_glass.is_some() => Some(AccessFilter::Unrestricted),
            Role::His | Role::Doctor if consent.nothing_restricted() => Some(
                AccessFilter::Institution(caller.org.clone().unwrap_or_default()),
            ),
            Role::Official => Some(AccessFilter::NoPersonalData),
            Role::His | Role::Doctor | Role::Resident => None,
        }
    }

    /// The clause that keeps only the resources of type `resource_type` the caller may see;
    /// `None` when nothing is hidden. For an institution's caller a personal record without a
    /// resident (subject by identifier, pushed before its Patient, or of a type that names
    /// none) is shown only to the institution that wrote it.
    pub fn clause(&self, resource_type: &str) -> Option<Clause> {
        let with_resident = || Clause::NotResidents(Vec::new());
        match self {
            AccessFilter::Unrestricted => None,
            _ if !is_personal(resource_type) => None,
            AccessFilter::OwnRecord(golden) => Some(Clause::Resident(Some(golden.clone()))),
            AccessFilter::NoPersonalData => Some(Clause::Resident(None)),
            AccessFilter::Institution(org) => Some(Clause::Or(vec![
                with_resident(),
                Clause::Custodian(org.clone()),
            ])),
            AccessFilter::Consent(view, ..) => {
                let of_residents = match self.resident_rows_clause(resource_type) {
                    Some(c) => Clause::All(vec![with_resident(), c]),
                    None => with_resident(),
                };
                Some(match view.writer() {
                    Some(org) => Clause::Or(vec![of_residents, Clause::Custodian(org)]),
                    None => of_residents,
                })
            }
        }
    }

    /// The clause for records known to belong to a resident (a resident's own record, as
    /// `$everything` pages it): consent by resident and type only; `None` when it hides nothing.
    fn resident_rows_clause(&self, resource_type: &str) -> Option<Clause> {
        match self {
            AccessFilter::Institution(_) => None,
            AccessFilter::Consent(view, granted, referred) => {
                let mut opened = Vec::new();
                if !granted.is_empty() {
                    opened.push(Clause::ResidentsOrPatientsOf(granted.clone(), None));
                }
                if !referred.is_empty() {
                    opened.push(Clause::All(vec![
                        Clause::ResidentsOrPatientsOf(referred.clone(), None),
                        not_sensitive(),
                    ]));
                }
                opened.extend(addressed(resource_type, view.writer().as_deref()));
                match view.clause(resource_type) {
                    Some(c) if !opened.is_empty() => {
                        opened.insert(0, c);
                        Some(Clause::Or(opened))
                    }
                    c => c,
                }
            }
            _ => self.clause(resource_type),
        }
    }

    /// Search criteria for type `t` as this caller may use them: the filter on `t` itself, and
    /// on every type a chain or `_has` inside them reaches, so that a criterion never matches
    /// through a record the caller may not see (which institution holds this ID number).
    pub fn restrict(&self, t: &str, criteria: &Query) -> Query {
        let mut q = criteria.clone();
        for c in &mut q.clauses {
            self.restrict_clause(c);
        }
        q.clauses.extend(self.clause(t));
        q
    }

    fn restrict_clause(&self, c: &mut Clause) {
        let narrowed = |inner: &mut Clause, t: &str| {
            if let Some(f) = self.clause(t) {
                let own = std::mem::replace(inner, Clause::All(Vec::new()));
                *inner = Clause::All(vec![own, f]);
            }
        };
        match c {
            Clause::Chain { targets, .. } => {
                for (target, inner) in targets {
                    self.restrict_clause(inner);
                    narrowed(inner, target);
                }
            }
            Clause::Has {
                source_type, inner, ..
            } => {
                self.restrict_clause(inner);
                narrowed(inner, source_type);
            }
            Clause::Or(cs) | Clause::All(cs) => {
                for c in cs {
                    self.restrict_clause(c);
                }
            }
            _ => {}
        }
    }

    /// Whether the caller may see resource `t/id`, which belongs to `resident` (the check of a
    /// direct read; under consent the search clause is run on the one resource).
    pub fn visible(
        &self,
        conn: &mut Tx<'_>,
        t: &str,
        id: &str,
        resident: Option<&str>,
    ) -> Result<bool, ApiError> {
        self.decided(t, resident)
            .or_else(|c| Self::matches(conn, t, id, c))
    }

    /// Whether the caller may see a resource of type `t` of `resident`, when that is decided
    /// without the database (always, except under a consent clause for the type); otherwise
    /// the clause to run on the resource.
    fn decided(&self, t: &str, resident: Option<&str>) -> Result<bool, Clause> {
        match (self, resident) {
            (AccessFilter::Consent(..) | AccessFilter::Institution(_), Some(_))
                if is_personal(t) =>
            {
                self.resident_rows_clause(t).map_or(Ok(true), Err)
            }
            (AccessFilter::Consent(..) | AccessFilter::Institution(_), _) => {
                self.clause(t).map_or(Ok(true), Err)
            }
            _ => Ok(self.allows(t, resident)),
        }
    }

    /// The institution (`Organization/<id>`) the caller acts for, when its access is an
    /// institution's.
    pub fn institution(&self) -> Option<String> {
        match self {
            AccessFilter::Institution(org) => Some(org.clone()),
            AccessFilter::Consent(view, ..) => view.writer(),
            _ => None,
        }
    }

    /// Whether resource `t/id` satisfies `clause`.
    fn matches(conn: &mut Tx<'_>, t: &str, id: &str, clause: Clause) -> Result<bool, ApiError> {
        let query = crate::fhir::search::Query {
            clauses: vec![Clause::Id(vec![id.to_owned()]), clause],
            ignored: Vec::new(),
        };
        Ok(!crate::store::record::search::run(conn, t, &query, &[], None, 1)?.is_empty())
    }

    /// Whether the caller's role lets it see a resource of type `t` that belongs to
    /// `resident` (consent is decided per resource by [`AccessFilter::visible`]).
    fn allows(&self, t: &str, resident: Option<&str>) -> bool {
        match self {
            AccessFilter::Unrestricted => true,
            _ if !is_personal(t) => true,
            AccessFilter::OwnRecord(golden) => resident == Some(golden.as_str()),
            AccessFilter::NoPersonalData => false,
            // Decided per resource by `visible`.
            AccessFilter::Consent(..) | AccessFilter::Institution(_) => true,
        }
    }

    /// Keep of a resident's resources `(type, id, JSON)` those the caller may see: one query
    /// per type whose clause hides anything (consent by type, grants), none otherwise.
    pub fn retain_visible(
        &self,
        conn: &mut Tx<'_>,
        rows: &mut Vec<(String, String, String)>,
    ) -> Result<(), ApiError> {
        let types: std::collections::BTreeSet<String> =
            rows.iter().map(|(t, _, _)| t.clone()).collect();
        let mut hidden: std::collections::HashSet<(String, String)> = Default::default();
        for t in types {
            // The rows are a resident's: consent by resident and type decides.
            let Some(c) = self.resident_rows_clause(&t) else {
                continue;
            };
            let ids: Vec<String> = rows
                .iter()
                .filter(|(rt, _, _)| *rt == t)
                .map(|(_, id, _)| id.clone())
                .collect();
            let shown = Self::satisfying(conn, &t, ids.clone(), c)?;
            hidden.extend(
                ids.into_iter()
                    .filter(|id| !shown.contains(id))
                    .map(|id| (t.clone(), id)),
            );
        }
        if !hidden.is_empty() {
            rows.retain(|(t, id, _)| !hidden.contains(&(t.clone(), id.clone())));
        }
        Ok(())
    }

    /// Of resources `t/ids`, those the caller may see (one query when anything may be hidden).
    pub fn visible_among(
        &self,
        conn: &mut Tx<'_>,
        t: &str,
        ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, ApiError> {
        match self.clause(t) {
            Some(c) => Self::satisfying(conn, t, ids, c),
            None => Ok(ids.into_iter().collect()),
        }
    }

    /// Of resources `t/ids`, those that satisfy `clause`.
    fn satisfying(
        conn: &mut Tx<'_>,
        t: &str,
        ids: Vec<String>,
        clause: Clause,
    ) -> Result<std::collections::HashSet<String>, ApiError> {
        let limit = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let query = Query {
            clauses: vec![Clause::Id(ids), clause],
            ignored: Vec::new(),
        };
        Ok(
            crate::store::record::search::run(conn, t, &query, &[], None, limit)?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        )
    }

    /// [`AccessFilter::visible`] taking a pooled connection only when the decision needs a
    /// query: most callers need none (and a checkout is a round trip on PostgreSQL).
    pub fn visible_in(
        &self,
        store: &crate::store::Store,
        t: &str,
        id: &str,
        resident: Option<&str>,
    ) -> Result<bool, ApiError> {
        self.decided(t, resident)
            .or_else(|clause| store.read(|c| Self::matches(c, t, id, clause)))
    }

    /// A direct read's answer for a record the caller may not see: the 404 of an absent one
    /// (the same text), so that existence does not leak; an official, who sees no individual's
    /// record of any kind, is told so (403, whatever the record).
    pub fn hidden(&self, t: &str, id: &str) -> ApiError {
        match self {
            AccessFilter::NoPersonalData => ApiError::Forbidden(format!(
                "officials read aggregates: {t} holds personal data"
            )),
            _ => RecordError::Absent {
                t: t.to_owned(),
                id: id.to_owned(),
            }
            .into(),
        }
    }

    /// A search of type `t` the caller may run at all: an official searches no type that
    /// holds personal data (403, as its reads), whatever the criteria would find.
    pub fn may_search(&self, t: &str) -> Result<(), ApiError> {
        match self {
            AccessFilter::NoPersonalData if is_personal(t) => Err(self.hidden(t, "")),
            _ => Ok(()),
        }
    }

    /// Whether the caller's role limits it to less than every resident's data (resident,
    /// official); consent limits are per resident and type.
    pub fn is_restricted(&self) -> bool {
        matches!(
            self,
            AccessFilter::OwnRecord(_) | AccessFilter::NoPersonalData
        )
    }

    /// Whether anything of type `t` (any type: `None`) may be hidden from the caller, for the
    /// interactions that cannot be filtered per resident yet (history across resources, reads
    /// inside Bundles).
    pub fn may_hide(&self, t: Option<&str>) -> bool {
        match (self, t) {
            (AccessFilter::Unrestricted, _) => false,
            (_, Some(t)) => self.clause(t).is_some(),
            // Personal records without a resident are hidden from other institutions.
            (_, None) => true,
        }
    }
}

/// The resource types a caller's token lets it read (its SMART scopes): what a search's
/// includes, `$everything` and `$summary` may return, whatever the request asked for. The
/// default reads every type (the platform's own reads).
#[derive(Debug, Clone, Default)]
pub struct Readable(Option<std::sync::Arc<Vec<crate::auth::Scope>>>);

impl Readable {
    /// The types `caller`'s scopes grant reading.
    pub fn of(caller: &Caller) -> Readable {
        Readable(Some(std::sync::Arc::new(caller.scopes.clone())))
    }

    /// Whether resources of type `t` may be returned.
    pub fn allows(&self, t: &str) -> bool {
        self.0.as_ref().is_none_or(|scopes| {
            scopes
                .iter()
                .any(|s| s.grants(crate::auth::Perm::Read, Some(t)))
        })
    }
}

/// Whose records a write may change (custody, architecture principle 9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// The platform itself (the resident index, merges, maintenance): no custody applies.
    Platform,
    /// An administrator: changes any record but golden residents, and leaves custody as stored.
    Admin,
    /// An institution (`Organization/<id>`: a hospital system or a doctor working there):
    /// changes only the records it wrote.
    Institution(String),
    /// A resident (the golden resident's id), or their guardian (`guardian`: the token's
    /// `RelatedPerson/<id>`): changes only the Consents about that record. A guardian's
    /// Consents name the guardian as performer; a resident's own name no RelatedPerson.
    Resident {
        resident: String,
        guardian: Option<String>,
    },
    /// A caller that writes nothing (an official).
    Nobody,
}

/// The door every write passes, in its own transaction: what the caller may see (a record it
/// may not see answers as an absent one, so a write never reveals or confirms what a read
/// would hide) and whose records it may change.
#[derive(Debug, Clone)]
pub struct Guard {
    pub filter: AccessFilter,
    pub writer: Writer,
    /// The largest resource the write may store (the request body limit): what a JSON Patch
    /// makes is bounded like what a body carries.
    pub max_bytes: usize,
    /// The caller writing (`None`: the platform): a Subscription delivers as its writer.
    pub caller: Option<std::sync::Arc<Caller>>,
    /// Where a Subscription may send notifications.
    pub endpoints: std::sync::Arc<crate::services::notify::Endpoints>,
}

impl Guard {
    /// The platform's own writes: everything visible, no custody.
    pub fn platform() -> Guard {
        Guard {
            filter: AccessFilter::Unrestricted,
            writer: Writer::Platform,
            max_bytes: usize::MAX,
            caller: None,
            endpoints: Default::default(),
        }
    }

    /// The guard of `caller`'s writes, given what it may see, storing at most `max_bytes` per
    /// resource.
    pub fn of(
        caller: &Caller,
        filter: AccessFilter,
        max_bytes: usize,
        endpoints: std::sync::Arc<crate::services::notify::Endpoints>,
    ) -> Guard {
        let writer = match (caller.role, &filter) {
            (Role::Admin, _) => Writer::Admin,
            (Role::His | Role::Doctor, _) => match caller.org.as_deref() {
                Some(org) => Writer::Institution(org.to_owned()),
                None => Writer::Nobody,
            },
            (Role::Resident, AccessFilter::OwnRecord(golden)) => Writer::Resident {
                resident: golden.clone(),
                guardian: caller
                    .fhir_user
                    .clone()
                    .filter(|u| u.starts_with("RelatedPerson/")),
            },
            _ => Writer::Nobody,
        };
        Guard {
            filter,
            writer,
            max_bytes,
            caller: Some(std::sync::Arc::new(caller.clone())),
            endpoints,
        }
    }

    /// The institution a new version of a record held by `stored` records as its custodian:
    /// the writing institution, or for an administrator's or the platform's write the holder
    /// it had (`None` for a new record).
    pub fn holder<'a>(&'a self, stored: Option<&'a str>) -> Option<&'a str> {
        match &self.writer {
            Writer::Institution(org) => Some(org),
            _ => stored,
        }
    }

    /// What a write may store as `tree`, a `t`: 403 when the writer may not write a `t` at
    /// all; when it is an institution and the content names another institution as the
    /// record's own (naming the element); when it is a resident and the Consent is not about
    /// their own record (its `patient` a Patient of another resident, or none).
    pub fn check_content(
        &self,
        conn: &mut Tx<'_>,
        t: &str,
        tree: &crate::fhir::json::Json,
    ) -> Result<(), ApiError> {
        self.may_write(t)?;
        match &self.writer {
            Writer::Institution(org) => custodian_check(t, tree, org),
            Writer::Resident {
                resident: own,
                guardian,
            } => {
                performer_check(tree, guardian.as_deref())?;
                let pid = tree
                    .get("patient")
                    .and_then(|p| p.get_str("reference"))
                    .and_then(|r| r.strip_prefix("Patient/"));
                let whose = match pid {
                    Some(pid) => resources::resident(conn, "Patient", pid)?,
                    None => None,
                };
                if whose.as_deref() == Some(own.as_str()) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(
                        "a resident writes only Consents about their own record".to_owned(),
                    ))
                }
            }
            _ => Ok(()),
        }
    }

    /// Whether the writer may write resources of type `t` at all: a Consent is the resident's
    /// word, written by the resident or an administrator acting on their request, never by the
    /// institutions it governs; an official writes nothing.
    pub fn may_write(&self, t: &str) -> Result<(), ApiError> {
        match (&self.writer, t) {
            (Writer::Nobody, _) => Err(ApiError::Forbidden(
                "this caller writes nothing: officials read aggregates".to_owned(),
            )),
            (Writer::Institution(_), "Consent") => Err(ApiError::Forbidden(
                "a Consent is written by the resident it is about (or an administrator on their request), never by the institutions it governs".to_owned(),
            )),
            (Writer::Resident { .. }, t) if t != "Consent" => Err(ApiError::Forbidden(
                "a resident writes only Consents about their own record".to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// Conditional criteria as this caller may match them: only what it may see.
    pub fn criteria(&self, t: &str, criteria: &Query) -> Query {
        self.filter.restrict(t, criteria)
    }

    /// The key a conditional create claims (`match_keys`): an institution's criteria are its
    /// own, so that a record it may not see never answers its create, by a match or by a
    /// key held.
    pub fn key(&self, key: &str) -> String {
        match &self.writer {
            // A pair of the key's own form, so that its values are blinded as the rest are.
            Writer::Institution(org) => format!("_custodian={org}&{key}"),
            _ => key.to_owned(),
        }
    }

    /// Whether the writer may change (update, patch, delete) `t/id`, whose current row is
    /// `current`: Ok, 403 for a record the caller sees but does not hold, or 404 as for an
    /// absent one when it may not see it.
    pub fn may_change(
        &self,
        conn: &mut Tx<'_>,
        t: &str,
        id: &str,
        current: &Locked,
    ) -> Result<(), ApiError> {
        let golden = t == "Patient" && current.resident.as_deref() == Some(id);
        let why = match &self.writer {
            Writer::Platform => return Ok(()),
            _ if golden => "is a golden resident: it changes only through the resident index",
            Writer::Admin => return Ok(()),
            Writer::Institution(org) if current.custodian.as_deref() == Some(org.as_str()) => {
                return Ok(());
            }
            Writer::Resident { resident, .. }
                if t == "Consent" && current.resident.as_deref() == Some(resident) =>
            {
                return Ok(());
            }
            Writer::Institution(_) => {
                "belongs to another institution: an institution changes only the records it wrote"
            }
            Writer::Resident { .. } => "is not a Consent about the resident's own record",
            Writer::Nobody => "may not be changed by this caller",
        };
        if self
            .filter
            .visible(conn, t, id, current.resident.as_deref())?
        {
            Err(ApiError::Forbidden(format!("{t}/{id} {why}")))
        } else {
            Err(self.filter.hidden(t, id))
        }
    }
}

/// The relationships (HL7 v3 RoleCode) that make a RelatedPerson a child's guardian: parents
/// (for a resident under 14) and legal guardians (at any age).
const PARENTS: &[&str] = &[
    "PRN", "MTH", "FTH", "NPRN", "NMTH", "NFTH", "ADOPTP", "ADOPTM", "ADOPTF",
];
const GUARDIANS: &[&str] = &["GUARD"];

/// The golden resident a guardian's token (`RelatedPerson/<rp>`) acts for: the resident of the
/// RelatedPerson's `patient`, when the RelatedPerson is active and a legal guardian, or a parent
/// of a resident under 14. Anything else: 403, saying which.
fn guardian_of(conn: &mut Tx<'_>, rp: &str) -> Result<String, ApiError> {
    let refused = |why: &str| Err(ApiError::Forbidden(format!("RelatedPerson/{rp} {why}")));
    let Some(current) = resources::find_current(conn, "RelatedPerson", rp)?.filter(|c| !c.deleted)
    else {
        return refused("is not known");
    };
    let person =
        crate::fhir::json::Json::parse(current.content.as_bytes()).map_err(ApiError::internal)?;
    if person.get("active") == Some(&crate::fhir::json::Json::Bool(false)) {
        return refused("is not active");
    }
    let codes: Vec<String> = match person.get("relationship") {
        Some(crate::fhir::json::Json::Array(rs)) => rs.iter().flat_map(consent::codes).collect(),
        _ => Vec::new(),
    };
    let guardian = codes.iter().any(|c| GUARDIANS.contains(&c.as_str()));
    let parent = codes.iter().any(|c| PARENTS.contains(&c.as_str()));
    if !guardian && !parent {
        return refused("is no guardian (relationship GUARD, or a parent's)");
    }
    let child = person
        .get("patient")
        .and_then(|p| p.get_str("reference"))
        .and_then(|r| r.strip_prefix("Patient/"));
    let Some(golden) = (match child {
        Some(pid) => resources::resident(conn, "Patient", pid)?,
        None => None,
    }) else {
        return refused("names no Patient of a resident record");
    };
    if !guardian {
        let today = crate::clock::today_digits();
        let minor = resources::find_current(conn, "Patient", &golden)?
            .and_then(|c| crate::fhir::json::Json::parse(c.content.as_bytes()).ok())
            .and_then(|p| p.get_str("birthDate").map(|b| consent::under_14(b, &today)))
            .unwrap_or(false);
        if !minor {
            return refused("is a parent of a resident 14 or older, who speaks for themself");
        }
    }
    Ok(golden)
}

/// A Consent's performers as its writer may give them: a guardian names themself (the consent
/// engine counts a guardian's word for a child by it); a resident names no RelatedPerson, whose
/// word they could otherwise forge.
fn performer_check(tree: &crate::fhir::json::Json, guardian: Option<&str>) -> Result<(), ApiError> {
    let related = consent::guardian_performers(tree);
    match guardian {
        Some(g) if related != [g] => Err(ApiError::Forbidden(format!(
            "a guardian's Consent names the guardian ({g}) as its one RelatedPerson performer"
        ))),
        None if !related.is_empty() => Err(ApiError::Forbidden(
            "a resident's own Consent names no RelatedPerson as performer: a guardian gives theirs with their own token".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// The practitioner (`fhirUser`, when a Practitioner) and purpose of use a caller acts as.
fn acting_as(caller: &Caller) -> (Option<&str>, &str) {
    let practitioner = caller
        .fhir_user
        .as_deref()
        .filter(|u| u.starts_with("Practitioner/"));
    (practitioner, caller.purpose.as_deref().unwrap_or("TREAT"))
}

/// The consent engine, the emergency grants and the referrals: what the access door consults
/// for an institution's callers.
pub struct Doors {
    pub consent: std::sync::Arc<consent::Engine>,
    pub grants: std::sync::Arc<break_glass::Grants>,
    pub referrals: std::sync::Arc<crate::services::workflow::access::Referrals>,
}

/// The institution whose referrals open access for `caller`: its own, when it acts for
/// coordination of care (purpose COC).
fn referral_org(caller: &Caller) -> Option<&str> {
    let (_, purpose) = acting_as(caller);
    (purpose == consent::COC)
        .then_some(caller.org.as_deref())
        .flatten()
}

/// The residents `open` refers to the caller whose Consent does not deny it coordination of
/// care, sorted.
fn referred(view: &consent::View, open: &crate::services::workflow::access::Open) -> Vec<String> {
    let mut r: Vec<String> = open
        .keys()
        .filter(|resident| !view.refuses_referral(resident))
        .cloned()
        .collect();
    r.sort_unstable();
    r
}

/// The work addressed to institution `org` (`Organization/<id>`), which it sees whatever the
/// resident's Consent says of its other records: the Tasks it owns and the requests it
/// performs (its referral inbox). Their writer addressed them to it.
fn addressed(t: &str, org: Option<&str>) -> Option<Clause> {
    let param = match t {
        "Task" => "owner",
        "ServiceRequest" => "performer",
        _ => return None,
    };
    let id = org?.strip_prefix("Organization/")?;
    Some(Clause::Index {
        table: crate::fhir::search::Table::Reference,
        param: param.to_owned(),
        any: vec![crate::fhir::search::Cond::Reference {
            target_type: Some("Organization".to_owned()),
            target_id: id.to_owned(),
        }],
        negate: false,
    })
}

/// Resources that carry no sensitive label (what a referral opens).
fn not_sensitive() -> Clause {
    Clause::Index {
        table: crate::fhir::search::Table::Token,
        param: "_security".to_owned(),
        any: consent::SENSITIVE_LABELS
            .iter()
            .map(|l| crate::fhir::search::Cond::Token {
                system: None,
                code: Some((*l).to_owned()),
            })
            .collect(),
        negate: true,
    }
}

/// The residents of a doctor's emergency grants, in order.
fn sorted_residents(granted: &crate::services::access::break_glass::Granted) -> Vec<String> {
    let mut g: Vec<String> = granted.keys().cloned().collect();
    g.sort_unstable();
    g
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
