//! The consent engine's decision: may this actor, for this purpose, see this resident's data
//! of this class, given the resident's R4B `Consent` resources (scope `patient-privacy`) and the
//! region's default.
//!
//! - A Consent's provisions nest: the root provision says permit or deny (a root without a
//!   type follows `policyRule`: `OPTIN` permits, `OPTOUT` denies), and a nested provision that
//!   matches the request overrides its parent, the deepest match winning (permit with nested
//!   deny, deny with nested permit).
//! - A provision matches when every criterion it names matches: `actor` (the caller's
//!   institution or practitioner reference), `purpose` (HL7 v3 ActReason: TREAT, ETREAT,
//!   HRESCH, PUBHLTH, …), `class` (resource types), `securityLabel`, and `period`.
//! - Of a resident's Consents, the newest active one in force governs (a new directive replaces
//!   the old); with none, the regional default applies (opt-in: deny; opt-out: permit).
//! - Sensitive data (a security label such as HIV, PSY, SUD, SEX/ETH, R) is withheld unless a
//!   matching permit names that label explicitly, whatever the default.
//! - Residents under 14 are governed by Consents their guardian gave (a `performer` that is a
//!   RelatedPerson); a Consent the child gave alone does not count (个人信息保护法 Art. 31).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::result::QueryResult;

use crate::clock;
use crate::fhir::json::Json;
use crate::fhir::search::Clause;
use crate::store::Tx;
use crate::store::record as resources;

/// The regional default when a resident has given no Consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// Sharing needs a Consent that permits it.
    OptIn,
    /// Sharing is allowed unless a Consent denies it.
    OptOut,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Permit,
    Deny,
}

/// Security labels that mark sensitive data (HL7 v3 ActCode / Confidentiality).
pub const SENSITIVE_LABELS: &[&str] = &["HIV", "PSY", "SUD", "ETH", "SEX", "STD", "SDV", "R"];

/// One provision of a Consent, parsed.
#[derive(Debug, Clone, Default)]
pub struct Provision {
    /// `Some(true)` permit, `Some(false)` deny, `None` inherit.
    pub permit: Option<bool>,
    pub period: Option<(i64, i64)>,
    pub actors: Vec<String>,
    pub purposes: Vec<String>,
    pub classes: Vec<String>,
    pub labels: Vec<String>,
    pub nested: Vec<Provision>,
}

/// A resident's Consent, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    /// When it was given (ms), to find the newest.
    pub given: i64,
    /// When it was last recorded on the platform (ms, `meta.lastUpdated`): the institutions
    /// that had registered the resident by then are the resident's own for it.
    pub recorded: i64,
    /// Whether the performer is a guardian (a RelatedPerson) rather than the resident.
    pub by_guardian: bool,
    pub root: Provision,
}

/// What is asked.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The caller's institution and practitioner (`Organization/1`, `Practitioner/2`).
    pub actors: &'a [&'a str],
    /// HL7 v3 ActReason code.
    pub purpose: &'a str,
    pub resource_type: &'a str,
    /// The resource's security label codes.
    pub labels: &'a [&'a str],
    /// When (ms since the epoch).
    pub now: i64,
}

/// Parse an active `patient-privacy` Consent; `None` for any other Consent.
pub fn parse(consent: &Json) -> Option<Policy> {
    if consent.get_str("status") != Some("active") {
        return None;
    }
    let scope_ok = consent
        .get("scope")
        .map(|s| codes(s).iter().any(|c| c == "patient-privacy"))
        .unwrap_or(false);
    if !scope_ok {
        return None;
    }
    let given = consent
        .get_str("dateTime")
        .and_then(clock::parse_fhir_datetime)
        .unwrap_or(0);
    let recorded = consent
        .get("meta")
        .and_then(|m| m.get_str("lastUpdated"))
        .and_then(clock::parse_fhir_datetime)
        .unwrap_or(0);
    let by_guardian = !guardian_performers(consent).is_empty();
    let policy_permits = consent
        .get("policyRule")
        .map(|p| codes(p).iter().any(|c| c == "OPTIN"));
    let mut root = consent.get("provision").map(provision).unwrap_or_default();
    if root.permit.is_none() {
        root.permit = Some(policy_permits.unwrap_or(true));
    }
    Some(Policy {
        given,
        recorded,
        by_guardian,
        root,
    })
}

fn provision(p: &Json) -> Provision {
    let list = |name: &str| -> Vec<&Json> {
        match p.get(name) {
            Some(Json::Array(items)) => items.iter().collect(),
            _ => Vec::new(),
        }
    };
    Provision {
        permit: match p.get_str("type") {
            Some("permit") => Some(true),
            Some("deny") => Some(false),
            _ => None,
        },
        period: p.get("period").map(|per| {
            let start = per
                .get_str("start")
                .and_then(clock::period_of)
                .map_or(i64::MIN, |(low, _)| low);
            let end = per
                .get_str("end")
                .and_then(clock::period_of)
                .map_or(i64::MAX, |(_, high)| high);
            (start, end)
        }),
        actors: list("actor")
            .into_iter()
            .filter_map(|a| a.get("reference").and_then(|r| r.get_str("reference")))
            .map(str::to_owned)
            .collect(),
        purposes: list("purpose")
            .into_iter()
            .filter_map(|c| c.get_str("code"))
            .map(str::to_owned)
            .collect(),
        classes: list("class")
            .into_iter()
            .filter_map(|c| c.get_str("code"))
            .map(str::to_owned)
            .collect(),
        labels: list("securityLabel")
            .into_iter()
            .filter_map(|c| c.get_str("code"))
            .map(str::to_owned)
            .collect(),
        nested: list("provision").into_iter().map(provision).collect(),
    }
}

/// The RelatedPersons a Consent names as performers (`RelatedPerson/<id>`): a guardian giving
/// it for the resident.
pub fn guardian_performers(consent: &Json) -> Vec<&str> {
    match consent.get("performer") {
        Some(Json::Array(ps)) => ps
            .iter()
            .filter_map(|p| p.get_str("reference"))
            .filter(|r| r.starts_with("RelatedPerson/"))
            .collect(),
        _ => Vec::new(),
    }
}

/// The codes of a CodeableConcept.
pub fn codes(cc: &Json) -> Vec<String> {
    match cc.get("coding") {
        Some(Json::Array(cs)) => cs
            .iter()
            .filter_map(|c| c.get_str("code"))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl Provision {
    fn matches(&self, req: &Request<'_>) -> bool {
        let in_period = self
            .period
            .is_none_or(|(start, end)| req.now >= start && req.now <= end);
        let actor =
            self.actors.is_empty() || self.actors.iter().any(|a| req.actors.contains(&a.as_str()));
        let purpose = self.purposes.is_empty() || self.purposes.iter().any(|p| p == req.purpose);
        let class = self.classes.is_empty() || self.classes.iter().any(|c| c == req.resource_type);
        let label =
            self.labels.is_empty() || self.labels.iter().any(|l| req.labels.contains(&l.as_str()));
        in_period && actor && purpose && class && label
    }

    /// The decision of the deepest matching provision under this one (which matched), and
    /// whether a permit on the way named the request's sensitive labels.
    fn decide(&self, req: &Request<'_>, inherited: bool) -> (bool, bool) {
        let permit = self.permit.unwrap_or(inherited);
        let names_label = permit && self.labels.iter().any(|l| req.labels.contains(&l.as_str()));
        let mut out = (permit, names_label);
        for n in &self.nested {
            if n.matches(req) {
                out = n.decide(req, permit);
                break;
            }
        }
        out
    }
}

/// Decide with the resident's policies (`minor`: the resident is under 14).
pub fn decide(policies: &[Policy], default: Default, minor: bool, req: &Request<'_>) -> Decision {
    let sensitive = req.labels.iter().any(|l| SENSITIVE_LABELS.contains(l));
    let governing = policies
        .iter()
        .filter(|p| !minor || p.by_guardian)
        .filter(|p| {
            p.root
                .period
                .is_none_or(|(s, e)| req.now >= s && req.now <= e)
        })
        .max_by_key(|p| p.given);
    let (permit, names_label) = match governing {
        Some(p) if p.root.matches(req) => p.root.decide(req, true),
        // The root names criteria this request does not meet: outside its scope, the default.
        Some(_) | None => (default == Default::OptOut, false),
    };
    if permit && (!sensitive || names_label) {
        Decision::Permit
    } else {
        Decision::Deny
    }
}

/// The purpose of use of care that follows a referral or a consultation (HL7 v3 ActReason
/// COC, coordination of care).
pub const COC: &str = "COC";

/// Whether the resident's governing Consent explicitly denies coordination of care (a `deny`
/// provision whose `purpose` names COC) to any of `actors` at `now`: such a resident is not
/// referred to them, and a referral opens no access for them.
pub fn refuses_referral(policies: &[Policy], minor: bool, actors: &[&str], now: i64) -> bool {
    fn denies(p: &Provision, actors: &[&str], now: i64) -> bool {
        let in_force = p.period.is_none_or(|(s, e)| now >= s && now <= e);
        let to_them = p.actors.is_empty() || p.actors.iter().any(|a| actors.contains(&a.as_str()));
        (in_force && to_them && p.permit == Some(false) && p.purposes.iter().any(|c| c == COC))
            || p.nested.iter().any(|n| denies(n, actors, now))
    }
    policies
        .iter()
        .filter(|p| !minor || p.by_guardian)
        .filter(|p| p.root.period.is_none_or(|(s, e)| now >= s && now <= e))
        .max_by_key(|p| p.given)
        .is_some_and(|p| denies(&p.root, actors, now))
}

// ---------------------------------------------------------------------------------------------
// Enforcement: the residents a caller may not see (or, under opt-in, may), from every active
// Consent, cached until a Consent changes.

/// The Consents of every resident who gave one, parsed: golden id → policies.
type Policies = HashMap<String, Vec<Policy>>;

/// How long a process trusts what it loaded before it asks the database whether a Consent
/// changed (another server process may have written one), unless configured otherwise.
pub const RECHECK: Duration = Duration::from_secs(1);

/// How long loaded Consents are used at most before they are read again regardless.
const RELOAD: Duration = Duration::from_secs(60);

/// The loaded Consents: the newest Consent version (`resource_versions.seq`) they reflect, when
/// that was last confirmed, and the views built on them.
struct Loaded {
    stamp: Option<i64>,
    /// When the Consents were read.
    loaded: Instant,
    checked: Option<Instant>,
    policies: Arc<Policies>,
    /// The types of which some resource carries a sensitive label.
    labelled: Arc<HashSet<String>>,
    /// The store's sensitive epoch ([`crate::store::Context::sensitive_epoch`]) when
    /// `labelled` was read.
    epoch: u64,
    views: HashMap<(Option<String>, Option<String>, String), Arc<View>>,
}

/// The consent engine of one database: the regional default and what it loaded.
pub struct Engine {
    default: Default,
    /// The store's context, whose sensitive epoch moves when a write there made a type newly
    /// hold sensitive data.
    store: Arc<crate::store::Context>,
    recheck: Duration,
    cache: Mutex<Option<Loaded>>,
}

impl Engine {
    pub fn new(default: Default, store: Arc<crate::store::Context>) -> Engine {
        Engine::with_recheck(default, store, RECHECK)
    }

    /// An engine that asks the database every `recheck` whether a Consent changed (longer when
    /// Redis tells every process of each change, see [`crate::services::bus`]).
    pub fn with_recheck(
        default: Default,
        store: Arc<crate::store::Context>,
        recheck: Duration,
    ) -> Engine {
        Engine {
            default,
            store,
            recheck,
            cache: Mutex::new(None),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Loaded>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A Consent may have been written here: the next request asks the database.
    pub fn changed(&self) {
        if let Some(l) = self.cache().as_mut() {
            l.checked = None;
        }
    }

    /// Residents changed shape here (a `$merge` or `$unmerge` moved records and Patients
    /// between golden residents): the next request reads every Consent again. Other server
    /// processes see it at their next full reload (a minute at most).
    pub fn reload(&self) {
        *self.cache() = None;
    }

    /// Whether consent hides nothing from anyone right now (opt-out, no Consent, confirmed
    /// within the last second), so that a request needs no lookup.
    pub fn nothing_restricted(&self) -> bool {
        self.default == Default::OptOut
            && self.cache().as_ref().is_some_and(|l| {
                l.policies.is_empty()
                    && l.labelled.is_empty()
                    && l.epoch == self.store.sensitive_epoch()
                    && l.checked.is_some_and(|c| c.elapsed() < self.recheck)
            })
    }

    /// [`Engine::view`] when it needs no database: the Consents were checked within the
    /// recheck interval and this caller's view is built already.
    pub fn view_cached(
        &self,
        org: Option<&str>,
        practitioner: Option<&str>,
        purpose: &str,
    ) -> Option<Arc<View>> {
        let guard = self.cache();
        let l = guard.as_ref()?;
        if l.epoch != self.store.sensitive_epoch()
            || l.checked.is_none_or(|c| c.elapsed() >= self.recheck)
        {
            return None;
        }
        l.views
            .get(&(
                org.map(str::to_owned),
                practitioner.map(str::to_owned),
                purpose.to_owned(),
            ))
            .cloned()
    }

    /// The view of a caller acting for `org` (`Organization/<id>`) as `practitioner`, for
    /// `purpose`, built once per state of the Consents.
    pub fn view(
        &self,
        conn: &mut Tx<'_>,
        org: Option<&str>,
        practitioner: Option<&str>,
        purpose: &str,
    ) -> QueryResult<Arc<View>> {
        let key = (
            org.map(str::to_owned),
            practitioner.map(str::to_owned),
            purpose.to_owned(),
        );
        let fresh = self.cache().as_ref().is_some_and(|l| {
            l.epoch == self.store.sensitive_epoch()
                && l.checked.is_some_and(|c| c.elapsed() < self.recheck)
        });
        if !fresh {
            let epoch = self.store.sensitive_epoch();
            let stamp = resources::latest_version_seq(conn, "Consent")?;
            let labelled: HashSet<String> = resources::sensitive_types(conn)?.into_iter().collect();
            // Also read again once a minute: on PostgreSQL a Consent committed late with a
            // lower version number than one already seen leaves the newest number unchanged.
            let same = self
                .cache()
                .as_ref()
                .is_some_and(|l| l.stamp == stamp && l.loaded.elapsed() < RELOAD);
            if same {
                if let Some(l) = self.cache().as_mut() {
                    l.checked = Some(Instant::now());
                    l.epoch = epoch;
                    if *l.labelled != labelled {
                        // Another type now holds sensitive data: views are built again.
                        l.labelled = Arc::new(labelled);
                        l.views.clear();
                    }
                }
            } else {
                let mut policies: Policies = HashMap::new();
                for (resident, content) in resources::live_of_type_with_resident(conn, "Consent")? {
                    let Ok(tree) = Json::parse(content.as_bytes()) else {
                        continue;
                    };
                    if let Some(p) = parse(&tree) {
                        policies.entry(resident).or_default().push(p);
                    }
                }
                *self.cache() = Some(Loaded {
                    stamp,
                    loaded: Instant::now(),
                    checked: Some(Instant::now()),
                    policies: Arc::new(policies),
                    labelled: Arc::new(labelled),
                    epoch,
                    views: HashMap::new(),
                });
            }
        }
        let (policies, labelled, known) = {
            let guard = self.cache();
            let l = guard.as_ref();
            (
                l.map(|l| l.policies.clone()).unwrap_or_default(),
                l.map(|l| l.labelled.clone()).unwrap_or_default(),
                l.and_then(|l| l.views.get(&key).cloned()),
            )
        };
        if let Some(v) = known {
            return Ok(v);
        }
        let v = Arc::new(View::new(
            conn,
            policies,
            labelled,
            self.default,
            org,
            practitioner,
            purpose,
        )?);
        if let Some(l) = self.cache().as_mut() {
            l.views.insert(key, v.clone());
        }
        Ok(v)
    }
}

/// What one caller may see of the residents who gave Consents.
#[derive(Debug, Clone)]
pub struct View {
    policies: Arc<Policies>,
    /// The types of which some resource carries a sensitive label.
    labelled: Arc<HashSet<String>>,
    default: Default,
    /// The caller's institution and practitioner references.
    actors: Vec<String>,
    /// The caller's institution id (`Organization/<id>` → id).
    org: Option<String>,
    purpose: String,
    /// Residents with Consents who are under 14.
    minors: HashSet<String>,
    /// Residents with Consents who are patients of the caller's institution.
    own_patients: HashSet<String>,
    /// The residents with Consents, sorted: those for whom registering a Patient at the
    /// caller's institution does not decide (see [`View::new`]).
    with_consent: Vec<String>,
}

impl View {
    /// The view of a caller acting for `org` (`Organization/<id>`) as `practitioner`, for
    /// `purpose` (HL7 v3 ActReason), over `policies`.
    fn new(
        conn: &mut Tx<'_>,
        policies: Arc<Policies>,
        labelled: Arc<HashSet<String>>,
        default: Default,
        org: Option<&str>,
        practitioner: Option<&str>,
        purpose: &str,
    ) -> QueryResult<View> {
        let residents: Vec<String> = policies.keys().cloned().collect();
        let org_id = org
            .and_then(|o| o.strip_prefix("Organization/"))
            .map(str::to_owned);
        let today = clock::today_digits();
        let mut minors = HashSet::new();
        let mut own_patients = HashSet::new();
        if !residents.is_empty() {
            // (Patient id, resident) of the caller's institution's Patients.
            let mut managed: Vec<(String, String)> = Vec::new();
            for (resident, content) in resources::patients_of(conn, &residents)? {
                let Ok(p) = Json::parse(content.as_bytes()) else {
                    continue;
                };
                if p.get_str("birthDate").is_some_and(|b| under_14(b, &today)) {
                    minors.insert(resident.clone());
                }
                let manager = p
                    .get("managingOrganization")
                    .and_then(|m| m.get_str("reference"))
                    .and_then(|r| r.strip_prefix("Organization/"));
                if manager.is_some()
                    && manager == org_id.as_deref()
                    && let Some(id) = p.get_str("id")
                {
                    managed.push((id.to_owned(), resident));
                }
            }
            // The resident's institution is one that registered them before they last stated
            // their Consent: registering a Patient with a resident's ID number afterwards does
            // not make an institution theirs, so it never overrides the resident's deny.
            if !managed.is_empty() {
                let ids: Vec<String> = managed.iter().map(|(id, _)| id.clone()).collect();
                let first: HashMap<String, i64> = resources::first_stored(conn, "Patient", &ids)?
                    .into_iter()
                    .collect();
                for (id, resident) in managed {
                    let stated = policies
                        .get(&resident)
                        .and_then(|ps| ps.iter().map(|p| p.recorded).max())
                        .unwrap_or(0);
                    if first.get(&id).is_some_and(|&at| at <= stated) {
                        own_patients.insert(resident);
                    }
                }
            }
        }
        let mut with_consent = residents;
        with_consent.sort_unstable();
        Ok(View {
            with_consent,
            policies,
            labelled,
            default,
            actors: org
                .into_iter()
                .chain(practitioner)
                .map(str::to_owned)
                .collect(),
            org: org_id,
            purpose: purpose.to_owned(),
            minors,
            own_patients,
        })
    }

    /// The decision for `resident`'s data of type `t`.
    fn decide(&self, resident: &str, t: &str) -> Decision {
        self.decide_labelled(resident, t, &[])
    }

    /// The decision for `resident`'s data of type `t` carrying security `labels`.
    fn decide_labelled(&self, resident: &str, t: &str, labels: &[&str]) -> Decision {
        let actors: Vec<&str> = self.actors.iter().map(String::as_str).collect();
        let req = Request {
            actors: &actors,
            purpose: &self.purpose,
            resource_type: t,
            labels,
            now: clock::now_millis(),
        };
        let none = Vec::new();
        let policies = self.policies.get(resident).unwrap_or(&none);
        decide(policies, self.default, self.minors.contains(resident), &req)
    }

    /// Whether `resident`'s Consent denies this caller coordination of care (see
    /// [`refuses_referral`]).
    pub fn refuses_referral(&self, resident: &str) -> bool {
        let actors: Vec<&str> = self.actors.iter().map(String::as_str).collect();
        self.policies.get(resident).is_some_and(|ps| {
            refuses_referral(
                ps,
                self.minors.contains(resident),
                &actors,
                clock::now_millis(),
            )
        })
    }

    /// The caller's institution as a reference (`Organization/<id>`), which sees what it wrote.
    pub fn writer(&self) -> Option<String> {
        self.org.as_ref().map(|o| format!("Organization/{o}"))
    }

    /// The search clause for type `t`: `None` when nothing is hidden. Consent by resident and
    /// type, and for a type holding sensitive data, by label.
    pub fn clause(&self, t: &str) -> Option<Clause> {
        let base = self.resident_clause(t);
        let consented = if self.labelled.contains(t) {
            let mut all: Vec<Clause> = base.into_iter().collect();
            all.extend(self.label_clauses(t));
            Some(Clause::All(all))
        } else {
            base
        };
        // An institution always sees what it wrote itself: it holds it already.
        match (consented, &self.org) {
            (Some(c), Some(org)) => Some(Clause::Or(vec![
                c,
                Clause::Custodian(format!("Organization/{org}")),
            ])),
            (c, _) => c,
        }
    }

    /// Sensitive data of type `t` is withheld unless the resident is a patient of the caller's
    /// institution or a permit names its label: for each label, a resource carrying it is
    /// shown only for those residents (labels with the same residents share one clause).
    fn label_clauses(&self, t: &str) -> Vec<Clause> {
        let mut groups: std::collections::BTreeMap<Vec<String>, Vec<&str>> =
            std::collections::BTreeMap::new();
        for label in SENSITIVE_LABELS {
            let mut permitted: Vec<String> = self
                .policies
                .keys()
                .filter(|r| self.decide_labelled(r, t, &[label]) == Decision::Permit)
                .cloned()
                .collect();
            permitted.sort_unstable();
            groups.entry(permitted).or_default().push(label);
        }
        groups
            .into_iter()
            .map(|(permitted, labels)| {
                Clause::Or(vec![
                    Clause::Index {
                        table: crate::fhir::search::Table::Token,
                        param: "_security".to_owned(),
                        any: labels
                            .iter()
                            .map(|l| crate::fhir::search::Cond::Token {
                                system: None,
                                code: Some((*l).to_owned()),
                            })
                            .collect(),
                        negate: true,
                    },
                    Clause::ResidentsOrPatientsOf(self.with_own(permitted), self.registered()),
                ])
            })
            .collect()
    }

    /// `permitted` and the residents with Consents whose institution the caller's is (see
    /// [`View::new`]), sorted.
    fn with_own(&self, mut permitted: Vec<String>) -> Vec<String> {
        permitted.extend(self.own_patients.iter().cloned());
        permitted.sort_unstable();
        permitted.dedup();
        permitted
    }

    /// The caller's institution, whose patients see their records, save the residents with
    /// Consents: for those, registering a Patient counts only as [`View::new`] decides.
    fn registered(&self) -> Option<(String, Vec<String>)> {
        self.org.clone().map(|o| (o, self.with_consent.clone()))
    }

    /// The clause of consent by resident and type.
    fn resident_clause(&self, t: &str) -> Option<Clause> {
        match self.default {
            Default::OptOut => {
                let denied: Vec<String> = self
                    .policies
                    .keys()
                    .filter(|r| !self.own_patients.contains(*r))
                    .filter(|r| self.decide(r, t) == Decision::Deny)
                    .cloned()
                    .collect();
                (!denied.is_empty()).then_some(Clause::NotResidents(denied))
            }
            Default::OptIn => {
                let permitted: Vec<String> = self
                    .policies
                    .keys()
                    .filter(|r| self.decide(r, t) == Decision::Permit)
                    .cloned()
                    .collect();
                Some(Clause::ResidentsOrPatientsOf(
                    self.with_own(permitted),
                    self.registered(),
                ))
            }
        }
    }
}

/// Whether a birth date (`YYYY-MM-DD`, or shorter) is less than 14 years before `today`
/// (`YYYYMMDD`).
pub fn under_14(birth: &str, today: &str) -> bool {
    let digits: String = birth.chars().filter(char::is_ascii_digit).collect();
    let (Some(b), Some(t)) = (digits.get(..8).or(digits.get(..4)), today.get(..8)) else {
        return false;
    };
    let b: u32 = if b.len() == 8 {
        b.parse().unwrap_or(0)
    } else {
        b.parse::<u32>().unwrap_or(0) * 10_000 + 101
    };
    let t: u32 = t.parse().unwrap_or(0);
    b + 14_0000 > t
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000; // 2026-09

    fn consent(v: serde_json::Value) -> Policy {
        let tree = crate::fhir::validate::resource(v.to_string().as_bytes(), Some("Consent"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        parse(&tree).unwrap()
    }

    fn base(provision: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/1"},
            "dateTime": "2026-01-01",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": provision
        })
    }

    fn req<'a>(
        actors: &'a [&'a str],
        purpose: &'a str,
        t: &'a str,
        labels: &'a [&'a str],
    ) -> Request<'a> {
        Request {
            actors,
            purpose,
            resource_type: t,
            labels,
            now: NOW,
        }
    }

    #[test]
    fn fourteen_years_are_counted_to_the_day() {
        assert!(under_14("2012-11-25", "20261124"));
        assert!(!under_14("2012-11-24", "20261124"));
        assert!(!under_14("1980-01-01", "20261124"));
        assert!(under_14("2020", "20261124"));
    }

    #[test]
    fn without_consent_the_regional_default_decides() {
        let r = req(&["Organization/9"], "TREAT", "Observation", &[]);
        assert_eq!(decide(&[], Default::OptIn, false, &r), Decision::Deny);
        assert_eq!(decide(&[], Default::OptOut, false, &r), Decision::Permit);
    }

    #[test]
    fn a_permit_with_a_nested_deny_for_one_institution() {
        let p = consent(base(serde_json::json!({
            "type": "permit",
            "provision": [{
                "type": "deny",
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                           "reference": {"reference": "Organization/9"}}]
            }]
        })));
        let other = req(&["Organization/1"], "TREAT", "Observation", &[]);
        let nine = req(
            &["Organization/9", "Practitioner/5"],
            "TREAT",
            "Observation",
            &[],
        );
        assert_eq!(
            decide(std::slice::from_ref(&p), Default::OptIn, false, &other),
            Decision::Permit
        );
        assert_eq!(decide(&[p], Default::OptIn, false, &nine), Decision::Deny);
    }

    #[test]
    fn purpose_class_and_period_narrow_a_permit() {
        let p = consent(base(serde_json::json!({
            "type": "deny",
            "provision": [{
                "type": "permit",
                "period": {"start": "2026-01-01", "end": "2026-12-31"},
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"},
                          {"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}]
            }]
        })));
        let ps = std::slice::from_ref(&p);
        let a = ["Organization/1"];
        assert_eq!(
            decide(
                ps,
                Default::OptOut,
                false,
                &req(&a, "TREAT", "Observation", &[])
            ),
            Decision::Permit
        );
        assert_eq!(
            decide(
                ps,
                Default::OptOut,
                false,
                &req(&a, "HRESCH", "Observation", &[])
            ),
            Decision::Deny
        );
        assert_eq!(
            decide(
                ps,
                Default::OptOut,
                false,
                &req(&a, "TREAT", "MedicationRequest", &[])
            ),
            Decision::Deny
        );
        let mut late = req(&a, "TREAT", "Observation", &[]);
        late.now = NOW + 400 * 86_400_000;
        assert_eq!(decide(ps, Default::OptOut, false, &late), Decision::Deny);
    }

    #[test]
    fn sensitive_data_needs_a_permit_that_names_its_label() {
        let plain = consent(base(serde_json::json!({"type": "permit"})));
        let named = consent(base(serde_json::json!({
            "type": "permit",
            "provision": [{"type": "permit", "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}]
        })));
        let r = req(&["Organization/1"], "TREAT", "Condition", &["PSY"]);
        assert_eq!(decide(&[], Default::OptOut, false, &r), Decision::Deny);
        assert_eq!(decide(&[plain], Default::OptOut, false, &r), Decision::Deny);
        assert_eq!(
            decide(&[named], Default::OptOut, false, &r),
            Decision::Permit
        );
    }

    #[test]
    fn the_newest_consent_governs_and_a_minor_needs_a_guardians() {
        let mut old = base(serde_json::json!({"type": "permit"}));
        old["dateTime"] = serde_json::json!("2025-01-01");
        let mut new = base(serde_json::json!({"type": "deny"}));
        new["dateTime"] = serde_json::json!("2026-03-01");
        let (old, new) = (consent(old), consent(new));
        let r = req(&["Organization/1"], "TREAT", "Observation", &[]);
        assert_eq!(
            decide(&[old.clone(), new], Default::OptOut, false, &r),
            Decision::Deny
        );
        // A child's own permit does not count; the guardian's does.
        assert_eq!(
            decide(std::slice::from_ref(&old), Default::OptIn, true, &r),
            Decision::Deny
        );
        let mut by_guardian = base(serde_json::json!({"type": "permit"}));
        by_guardian["performer"] = serde_json::json!([{"reference": "RelatedPerson/mother"}]);
        let g = consent(by_guardian);
        assert!(g.by_guardian);
        assert_eq!(
            decide(&[old, g], Default::OptIn, true, &r),
            Decision::Permit
        );
    }

    #[test]
    fn a_coordination_of_care_deny_refuses_referrals() {
        let deny = consent(base(serde_json::json!({
            "type": "permit",
            "provision": [{"type": "deny",
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "COC"}]}]
        })));
        let plain_deny = consent(base(serde_json::json!({"type": "deny"})));
        let to = ["Organization/9"];
        assert!(refuses_referral(
            std::slice::from_ref(&deny),
            false,
            &to,
            NOW
        ));
        // A general deny is what a referral's agreement overrides; only a COC deny refuses.
        assert!(!refuses_referral(&[plain_deny], false, &to, NOW));
        assert!(!refuses_referral(&[], false, &to, NOW));
    }

    #[test]
    fn only_active_patient_privacy_consents_count() {
        let mut inactive = base(serde_json::json!({"type": "deny"}));
        inactive["status"] = serde_json::json!("inactive");
        let tree =
            crate::fhir::validate::resource(inactive.to_string().as_bytes(), Some("Consent"))
                .unwrap();
        assert!(parse(&tree).is_none());
        let mut research = base(serde_json::json!({"type": "deny"}));
        research["scope"] = serde_json::json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]});
        let tree =
            crate::fhir::validate::resource(research.to_string().as_bytes(), Some("Consent"))
                .unwrap();
        assert!(parse(&tree).is_none());
    }
}
