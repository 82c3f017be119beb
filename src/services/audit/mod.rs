//! The audit trail (审计日志): an AuditEvent for every access to a resident's data, durable
//! before the response leaves, append-only and chained with SM3 so that tampering shows.
//!
//! - **What is recorded** follows the IHE Basic Audit Log Patterns (BALP): one event per
//!   resident the interaction touched (an interaction that touched no resident's data records
//!   one event without a patient), naming who (token subject, `fhirUser`, institution, client
//!   address), the purpose of use, the interaction (`subtype`, `action`), the resources and the
//!   query, and the outcome.
//! - **Writes** are audited in the write's own transaction: the record functions note every
//!   resource they write on the writer thread ([`touched`]) and [`append_writes`] appends the
//!   events before the transaction commits, so a write and its audit record exist together or
//!   not at all.
//! - **Reads** hand their events to this node's audit log ([`Sink`], see
//!   [`log`]) and are answered once they are as durable as configured: written
//!   to the operating system (`os`) or synced to disk (`disk`). A copier moves them into the
//!   database in large transactions.
//! - **Sealing.** A sealer thread gives committed records their position in one chain, in
//!   commit order: `hash = SM3(previous hash ‖ position ‖ record)`. On PostgreSQL an advisory
//!   lock keeps it to one sealer at a time across server processes. [`verify`] walks the chain
//!   and names every record that was modified, moved or deleted; the head (position and hash)
//!   is logged as it moves, so that it can be kept outside the database and checked later
//!   (`huimin audit verify --expect SEQ:HASH`) against truncation.
//! - **Retention**: records older than the configured days (at least 184, 网络安全法 Art. 21)
//!   are purged from the start of the chain, which then starts at the first kept record and the
//!   hash before it.

pub mod log;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::clock;
use crate::crypto;
use crate::error::ApiError;
pub use crate::store::audit::Event;
use crate::store::audit::{self as repo, NewEvent};
use crate::store::{DbConn, Store, Tx};

pub use crate::config::MIN_RETENTION_DAYS;

/// Who is acting, taken from the token and the request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub sub: String,
    pub role: Role,
    pub org: Option<String>,
    pub fhir_user: Option<String>,
    /// The client's network address.
    pub address: Option<String>,
    /// The stated emergency of a break-glass access.
    pub break_glass: Option<String>,
    /// The stated purpose of use (`X-Purpose-Of-Use`).
    pub purpose: Option<String>,
}

impl Actor {
    pub fn new(caller: &Caller, address: Option<String>) -> Actor {
        Actor {
            sub: caller.sub.clone(),
            role: caller.role,
            org: caller.org.clone(),
            fhir_user: caller.fhir_user.clone(),
            address,
            break_glass: caller.break_glass.clone(),
            purpose: caller.purpose.clone(),
        }
    }

    /// The purpose of use (HL7 v3 ActReason) of this actor's role.
    fn purpose(&self) -> (&'static str, &'static str) {
        if self.break_glass.is_some() {
            return ("ETREAT", "emergency treatment");
        }
        match self.role {
            Role::His | Role::Doctor => {
                let code = self.purpose.as_deref().unwrap_or("TREAT");
                crate::auth::PURPOSES
                    .iter()
                    .copied()
                    .find(|(c, _)| *c == code)
                    .unwrap_or(("TREAT", "treatment"))
            }
            Role::Resident => ("PATRQT", "patient requested"),
            Role::Official => ("PUBHLTH", "public health"),
            Role::Admin => ("HOPERAT", "healthcare operations"),
        }
    }
}

/// The interaction being audited.
#[derive(Debug, Clone)]
pub struct Draft {
    pub actor: Arc<Actor>,
    /// The FHIR interaction or operation (`read`, `search-type`, `transaction`, `$everything`, …).
    pub subtype: String,
    /// C, R, U, D or E (execute).
    pub action: char,
    /// What was asked for, as `Type/id`, `Type?query` or the operation's URL path and query.
    pub what: String,
    /// The doctor's running emergency grants: accesses to these residents are break-glass.
    pub granted: Arc<crate::services::access::break_glass::Granted>,
    /// The referrals open to the caller's institution when it acts for coordination of care:
    /// accesses to these residents name the Task that opened them as their reason.
    pub referred: Arc<crate::services::workflow::access::Open>,
}

impl Draft {
    pub fn new(actor: Arc<Actor>, subtype: &str, action: char, what: String) -> Draft {
        Draft {
            actor,
            subtype: subtype.to_owned(),
            action,
            what,
            granted: Arc::default(),
            referred: Arc::default(),
        }
    }

    /// The draft of an update the platform makes by itself (a sweep, a load, a rebuild):
    /// `sub` names the platform's part (`huimin:…`), `what` the type or table it writes.
    pub fn platform(sub: &str, subtype: &str, what: &str) -> Draft {
        let caller = crate::auth::Caller::platform(sub);
        Draft::new(
            Arc::new(Actor::new(&caller, None)),
            subtype,
            'U',
            what.to_owned(),
        )
    }

    /// The events of an interaction that touched `resources` (`Type/id`, each with its
    /// resident): one per resident, or one without a patient when no resident's data was
    /// touched.
    pub fn events(
        &self,
        resources: &[(String, Option<String>)],
        outcome: Outcome,
    ) -> Vec<NewEvent> {
        let mut by_resident: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
        for (r, resident) in resources {
            by_resident
                .entry(resident.as_deref())
                .or_default()
                .push(r.as_str());
        }
        let recorded = clock::now_millis();
        let mut out: Vec<NewEvent> = by_resident
            .iter()
            .filter(|(resident, _)| resident.is_some())
            .map(|(resident, what)| self.event(*resident, what, outcome, recorded))
            .collect();
        if out.is_empty() {
            let what: Vec<&str> = by_resident.values().flatten().copied().collect();
            out.push(self.event(None, &what, outcome, recorded));
        }
        out
    }

    fn event(
        &self,
        resident: Option<&str>,
        what: &[&str],
        outcome: Outcome,
        recorded: i64,
    ) -> NewEvent {
        let a = &self.actor;
        // Break-glass: stated in this request, or granted for this resident by an earlier one.
        let emergency: Option<&str> = a.break_glass.as_deref().or_else(|| {
            resident
                .and_then(|r| self.granted.get(r))
                .map(|(reason, _)| reason.as_str())
        });
        let (purpose, purpose_display) = match emergency {
            Some(_) => ("ETREAT", "emergency treatment"),
            None => a.purpose(),
        };
        // Coordination of care under a referral: the Task that opened the access.
        let referral = match emergency {
            None if purpose == crate::services::access::consent::COC => {
                resident.and_then(|r| self.referred.get(r))
            }
            _ => None,
        };
        let mut agents = vec![Agent {
            kind: Concept::of(Coding::new(
                "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                if a.role == Role::His {
                    "dataprocessor"
                } else {
                    "humanuser"
                },
            )),
            who: Who {
                identifier: Some(Identifier { value: &a.sub }),
                reference: a.fhir_user.as_deref(),
                display: None,
            },
            requestor: true,
            role: vec![Concept::of(Coding::new(
                "urn:huimin:role",
                role_code(a.role),
            ))],
            network: a
                .address
                .as_deref()
                .map(|address| Network { address, kind: "2" }),
            purpose_of_use: vec![Concept::of(
                Coding::new(ACT_REASON, purpose).display(purpose_display),
            )],
        }];
        if let Some(org) = &a.org {
            agents.push(Agent {
                kind: Concept::of(
                    Coding::new("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV")
                        .display("healthcare provider"),
                ),
                who: Who {
                    identifier: None,
                    reference: Some(org),
                    display: None,
                },
                requestor: false,
                role: Vec::new(),
                network: None,
                purpose_of_use: Vec::new(),
            });
        }
        let mut entities = Vec::with_capacity(what.len().min(MAX_ENTITIES) + 3);
        if let Some(r) = resident {
            entities.push(Entity {
                what: Some(Ref {
                    reference: format!("Patient/{r}").into(),
                }),
                kind: Some(Coding::new(ENTITY_TYPE, "1")),
                role: Some(Coding::new(OBJECT_ROLE, "1")),
                description: None,
            });
        }
        for w in what.iter().take(MAX_ENTITIES) {
            entities.push(Entity::what(w));
        }
        let reason = referral.map(|task| format!("Task/{task}"));
        if let Some(task) = &reason {
            entities.push(Entity {
                what: Some(Ref {
                    reference: task.as_str().into(),
                }),
                kind: Some(Coding::new(ENTITY_TYPE, "2")),
                // The referral the access was made under.
                role: Some(Coding::new(OBJECT_ROLE, "20").display("Job")),
                description: Some("the referral under which the record was read".into()),
            });
        }
        if what.len() > MAX_ENTITIES {
            // The rest by type and count: a record of hundreds of resources stays a small row.
            let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
            for w in &what[MAX_ENTITIES..] {
                *by_type.entry(w.split('/').next().unwrap_or(w)).or_default() += 1;
            }
            let rest: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
            entities.push(Entity::described(format!(
                "and {} more: {}",
                what.len() - MAX_ENTITIES,
                rest.join(", ")
            )));
        }
        entities.push(Entity {
            what: None,
            kind: Some(Coding::new(ENTITY_TYPE, "2")),
            role: Some(Coding::new(OBJECT_ROLE, "24")),
            description: Some(self.what.as_str().into()),
        });
        let (outcome_code, outcome_desc) = outcome.code();
        let purpose_of_event = match emergency {
            // Break the glass (HL7 v3 ActCode BTG), with the emergency the doctor stated.
            Some(reason) => Concept {
                coding: vec![
                    Coding::new(ACT_REASON, "ETREAT"),
                    Coding::new("http://terminology.hl7.org/CodeSystem/v3-ActCode", "BTG")
                        .display("break the glass"),
                ],
                text: Some(reason),
            },
            None => Concept {
                coding: vec![Coding::new(ACT_REASON, purpose)],
                text: reason.as_deref(),
            },
        };
        let action = self.action.to_string();
        let ev = AuditEventJson {
            resource_type: "AuditEvent",
            kind: Coding::new(
                "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "rest",
            )
            .display("RESTful Operation"),
            subtype: vec![Coding::new(subtype_system(&self.subtype), &self.subtype)],
            action: &action,
            recorded: clock::instant(recorded),
            outcome: outcome_code,
            outcome_desc: outcome_desc.as_deref(),
            purpose_of_event: vec![purpose_of_event],
            agent: agents,
            source: Source::server(),
            entity: entities,
        };
        NewEvent {
            recorded,
            resident: resident.map(str::to_owned),
            flagged: emergency.is_some(),
            // Serialising plain structs cannot fail.
            content: serde_json::to_string(&ev).unwrap_or_default(),
        }
    }
}

/// The event of a request refused for want of a valid token (DICOM "User Authentication",
/// outcome minor failure): who is unknown, so the client's address and the path asked for.
pub fn refused_authentication(address: Option<String>, path: &str) -> NewEvent {
    let recorded = clock::now_millis();
    let agent = Agent {
        kind: Concept::default(),
        who: Who {
            identifier: None,
            reference: None,
            display: Some("unauthenticated"),
        },
        requestor: true,
        role: Vec::new(),
        network: address
            .as_deref()
            .map(|address| Network { address, kind: "2" }),
        purpose_of_use: Vec::new(),
    };
    let ev = AuditEventJson {
        resource_type: "AuditEvent",
        kind: Coding::new(DICOM, "110114").display("User Authentication"),
        subtype: vec![Coding::new(DICOM, "110122").display("Login")],
        action: "E",
        recorded: clock::instant(recorded),
        outcome: "4",
        outcome_desc: Some("no valid bearer token (HTTP 401)"),
        purpose_of_event: Vec::new(),
        agent: vec![agent],
        source: Source::server(),
        entity: vec![Entity::described(path.to_owned())],
    };
    NewEvent {
        recorded,
        resident: None,
        flagged: false,
        content: serde_json::to_string(&ev).unwrap_or_default(),
    }
}

// The AuditEvent JSON, serialised straight from these (no intermediate `Value`), its
// elements in the order the specification lists them.

const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";

#[derive(serde::Serialize)]
struct AuditEventJson<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: Coding<'a>,
    subtype: Vec<Coding<'a>>,
    action: &'a str,
    recorded: String,
    outcome: &'a str,
    #[serde(rename = "outcomeDesc", skip_serializing_if = "Option::is_none")]
    outcome_desc: Option<&'a str>,
    #[serde(rename = "purposeOfEvent", skip_serializing_if = "Vec::is_empty")]
    purpose_of_event: Vec<Concept<'a>>,
    agent: Vec<Agent<'a>>,
    source: Source,
    entity: Vec<Entity<'a>>,
}

#[derive(serde::Serialize)]
struct Coding<'a> {
    system: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

impl<'a> Coding<'a> {
    fn new(system: &'a str, code: &'a str) -> Coding<'a> {
        Coding {
            system,
            code,
            display: None,
        }
    }

    fn display(mut self, display: &'a str) -> Coding<'a> {
        self.display = Some(display);
        self
    }
}

#[derive(serde::Serialize, Default)]
struct Concept<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    coding: Vec<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

impl<'a> Concept<'a> {
    fn of(coding: Coding<'a>) -> Concept<'a> {
        Concept {
            coding: vec![coding],
            text: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.coding.is_empty() && self.text.is_none()
    }
}

#[derive(serde::Serialize)]
struct Agent<'a> {
    #[serde(rename = "type", skip_serializing_if = "Concept::is_empty")]
    kind: Concept<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    role: Vec<Concept<'a>>,
    who: Who<'a>,
    requestor: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<Network<'a>>,
    #[serde(rename = "purposeOfUse", skip_serializing_if = "Vec::is_empty")]
    purpose_of_use: Vec<Concept<'a>>,
}

#[derive(serde::Serialize)]
struct Who<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct Identifier<'a> {
    value: &'a str,
}

#[derive(serde::Serialize)]
struct Network<'a> {
    address: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(serde::Serialize)]
struct Source {
    observer: Observer,
    #[serde(rename = "type")]
    kind: [Coding<'static>; 1],
}

#[derive(serde::Serialize)]
struct Observer {
    display: &'static str,
}

impl Source {
    fn server() -> Source {
        Source {
            observer: Observer { display: "huimin" },
            kind: [Coding::new(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
            )
            .display("Application Server")],
        }
    }
}

#[derive(serde::Serialize)]
struct Entity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<Ref<'a>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Entity<'a> {
    fn what(reference: &'a str) -> Entity<'a> {
        Entity {
            what: Some(Ref {
                reference: reference.into(),
            }),
            kind: None,
            role: None,
            description: None,
        }
    }

    fn described(description: String) -> Entity<'a> {
        Entity {
            what: None,
            kind: None,
            role: None,
            description: Some(description.into()),
        }
    }
}

#[derive(serde::Serialize)]
struct Ref<'a> {
    reference: std::borrow::Cow<'a, str>,
}

/// Resources named one by one in an event at most (`$everything` touches hundreds of one
/// resident's; the rest are counted by type).
const MAX_ENTITIES: usize = 20;

fn role_code(r: Role) -> &'static str {
    match r {
        Role::His => "his",
        Role::Doctor => "doctor",
        Role::Resident => "resident",
        Role::Official => "official",
        Role::Admin => "admin",
    }
}

fn subtype_system(subtype: &str) -> &'static str {
    if subtype.starts_with('$') {
        "urn:huimin:operation"
    } else {
        "http://hl7.org/fhir/restful-interaction"
    }
}

/// How an interaction ended (AuditEvent.outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused or invalid (a 4xx answer), with its status.
    Refused(u16),
    /// The server failed (a 5xx answer).
    Failed,
}

impl Outcome {
    fn code(self) -> (&'static str, Option<String>) {
        match self {
            Outcome::Success => ("0", None),
            Outcome::Refused(s) => ("4", Some(format!("refused with HTTP {s}"))),
            Outcome::Failed => ("8", Some("server error".to_owned())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writes: events appended in the write's transaction.

/// Resources an interaction touched, as (`Type/id`, golden resident).
pub type Accessed = Vec<(String, Option<String>)>;

/// The resources an audited write transaction wrote or read, carried in its [`Tx`]; `None`
/// when no audited write is running.
#[derive(Default)]
struct Written(Option<Accessed>);

/// Start noting the resources this transaction writes.
pub fn begin_writes(conn: &mut Tx<'_>) {
    conn.work::<Written>().0 = Some(Vec::new());
}

/// Note a resource written (created, updated, deleted) or read inside an audited write, with
/// its resident.
pub fn touched(conn: &mut Tx<'_>, t: &str, id: &str, resident: Option<&str>) {
    if let Some(list) = conn.work::<Written>().0.as_mut() {
        list.push((format!("{t}/{id}"), resident.map(str::to_owned)));
    }
}

/// How much has been noted so far (see [`rollback_to`]).
pub fn mark(conn: &mut Tx<'_>) -> usize {
    conn.work::<Written>().0.as_ref().map_or(0, Vec::len)
}

/// Forget what was noted after `mark` (a savepoint rolled back).
pub fn rollback_to(conn: &mut Tx<'_>, mark: usize) {
    if let Some(list) = conn.work::<Written>().0.as_mut() {
        list.truncate(mark);
    }
}

/// Stop noting, and forget what was noted (the write failed).
pub fn discard_writes(conn: &mut Tx<'_>) {
    conn.work::<Written>().0 = None;
}

/// Append the events of the resources written since [`begin_writes`] in the caller's
/// transaction, and stop noting.
pub fn append_writes(conn: &mut Tx<'_>, draft: &Draft) -> Result<(), ApiError> {
    let written = conn.take_work::<Written>().0.unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let written: Vec<(String, Option<String>)> = written
        .into_iter()
        .filter(|(r, _)| seen.insert(r.clone()))
        .collect();
    repo::append(conn, &draft.events(&written, Outcome::Success)).map_err(ApiError::from)
}

// ---------------------------------------------------------------------------------------------
// Reads: events appended through the group-commit writer, without a blocked thread.

/// Where reads hand their events: this process's audit log (see [`log`]).
#[derive(Clone)]
pub struct Sink {
    log: log::AuditLog,
}

impl Sink {
    pub fn new(log: log::AuditLog) -> Sink {
        Sink { log }
    }

    /// Append `events` durably, before the caller answers. Fails, and the caller must not
    /// answer with data, when the audit trail cannot be written.
    pub async fn record(&self, events: Vec<NewEvent>) -> Result<(), ApiError> {
        if events.is_empty() {
            return Ok(());
        }
        self.log.append(&events).await
    }

    /// Wait until what this process recorded is in the database (before reading the trail).
    pub async fn flush(&self) {
        self.log.flush().await;
    }

    /// Copy everything recorded into the database (at shutdown).
    pub fn drain(&self) {
        self.log.drain();
    }
}

// ---------------------------------------------------------------------------------------------
// The chain.

/// The prefix of a seal made under a key of the keyring: `k:<key id>:<HMAC-SM3, hex>`.
const KEYED: &str = "k:";

/// The seal of the record at position `seq` after the seal `prev`: HMAC-SM3 under `key`'s chain
/// key (`k:<key id>:<hex>`), so that someone who can write the database but does not hold the
/// keyring cannot rewrite the chain and seal it again; plain SM3 (hex) without a key, as
/// chains sealed before keyed sealing were. Over the previous seal, the position and every
/// field of the record, each length-prefixed so that no two records encode alike.
pub fn chain_hash(
    prev: &str,
    seq: i64,
    e: &Event,
    key: Option<&crate::protect::Key>,
) -> Result<String, ApiError> {
    let mut buf = Vec::with_capacity(64 + e.content.len());
    buf.extend_from_slice(prev.as_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&e.id.to_be_bytes());
    buf.extend_from_slice(&e.recorded.to_be_bytes());
    buf.push(u8::from(e.flagged));
    match &e.resident {
        Some(r) => {
            buf.push(1);
            buf.extend_from_slice(&(r.len() as u64).to_be_bytes());
            buf.extend_from_slice(r.as_bytes());
        }
        None => buf.push(0),
    }
    buf.extend_from_slice(&(e.content.len() as u64).to_be_bytes());
    buf.extend_from_slice(e.content.as_bytes());
    match key {
        Some(k) => {
            let mac = k.chain_mac(&buf).map_err(ApiError::internal)?;
            Ok(format!("{KEYED}{}:{}", k.id, crypto::hex(&mac)))
        }
        None => crypto::sm3_hex(&buf).map_err(ApiError::internal),
    }
}

/// The seal a stored link should have, given how it was sealed: under the key its seal names
/// (`Err` naming the problem when the keyring does not hold it), or unkeyed.
fn expected_seal(
    keys: &crate::protect::Protection,
    prev: &str,
    seq: i64,
    e: &Event,
    stored: &str,
) -> Result<Result<String, String>, ApiError> {
    match stored.strip_prefix(KEYED).and_then(|r| r.split_once(':')) {
        Some((id, _)) => match keys.key(id) {
            Some(k) => Ok(Ok(chain_hash(prev, seq, e, Some(k))?)),
            None => Ok(Err(format!(
                "the seal at position {seq} names key {id}, which the keyring does not hold"
            ))),
        },
        None => Ok(Ok(chain_hash(prev, seq, e, None)?)),
    }
}

/// Records sealed in one transaction at most: small enough that requests queued behind a seal
/// on the writer wait milliseconds, not tens of them.
const SEAL_BATCH: i64 = 100;

/// Advisory lock key of the sealer on PostgreSQL ("huimin-audit" folded into an i64).
const SEAL_LOCK: i64 = 0x6875_696d_696e_0a0d;

/// Seal the committed records after the sealer's cursor, in (txid, id) order. Returns how many
/// were sealed and the new head. Safe to run from several processes: on PostgreSQL only the
/// holder of the sealer lock seals; SQLite serialises writers.
pub fn seal_pending(store: &Store) -> Result<(usize, Option<(i64, String)>), ApiError> {
    let protection = store.protection().clone();
    store.write(move |conn| {
        if let DbConn::Postgres(c) = conn.conn() {
            use diesel::RunQueryDsl as _;
            #[derive(diesel::QueryableByName)]
            struct Locked {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                locked: bool,
            }
            let l: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                .bind::<diesel::sql_types::BigInt, _>(SEAL_LOCK)
                .get_result(c)?;
            if !l.locked {
                return Ok((0, None));
            }
        }
        let cursor = repo::sealed_up_to(conn)?;
        let rows = repo::unsealed(conn, cursor, SEAL_BATCH)?;
        let Some(last) = rows.last().map(|r| (r.txid, r.id)) else {
            return Ok((0, None));
        };
        let (mut seq, mut prev) = match repo::head(conn)? {
            Some(h) => h,
            None => {
                let (start, prev) = repo::chain_start(conn)?;
                (start - 1, prev)
            }
        };
        let key = protection.chain_key();
        let mut seals = Vec::with_capacity(rows.len());
        for r in &rows {
            seq += 1;
            let h = chain_hash(&prev, seq, r, key)?;
            seals.push((seq, r.id, h.clone()));
            prev = h;
        }
        repo::seal(conn, &seals, last)?;
        Ok((rows.len(), Some((seq, prev))))
    })
}

/// Seal until every record recorded before this call is sealed, or `patience` runs out (a
/// transaction still running may hold sealing back; see [`seal_pending`]). Returns how many of
/// the records recorded before the call still wait.
pub fn seal_committed(store: &Store, patience: Duration) -> Result<usize, ApiError> {
    // Records of this millisecond too.
    let started = clock::now_millis() + 1;
    let deadline = std::time::Instant::now() + patience;
    loop {
        while seal_pending(store)?.0 > 0 {}
        let waiting = store.read(|c| repo::unsealed_before(c, started).map_err(ApiError::from))?;
        if waiting.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(waiting.len());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Start the sealer thread: seals what is committed every `interval`, logs the head when it
/// moves (the anchor to keep outside the database), and purges records older than
/// `retention_days` once an hour.
pub fn start_sealer(store: Store, interval: Duration, retention_days: u32) {
    let spawned = std::thread::Builder::new()
        .name("huimin-audit-seal".to_owned())
        .spawn(move || {
            let mut last_purge: Option<std::time::Instant> = None;
            // Failures are logged when sealing starts failing, not every interval it goes on.
            let mut failing = false;
            while !store.is_closed() {
                std::thread::sleep(interval);
                let sealed = seal_pending(&store);
                match (&sealed, failing) {
                    (Err(e), false) => {
                        tracing::error!(error = %e, "sealing the audit chain failed; retrying");
                    }
                    (Err(e), true) => tracing::debug!(error = %e, "sealing the audit chain failed"),
                    (Ok(_), true) => tracing::info!("sealing the audit chain resumed"),
                    (Ok(_), false) => {}
                }
                failing = sealed.is_err();
                if let Ok((n, Some((seq, hash)))) = sealed {
                    tracing::info!(sealed = n, head_seq = seq, head_hash = %hash, "audit chain sealed");
                    if n as i64 == SEAL_BATCH {
                        // More are waiting: seal on without sleeping.
                        while matches!(seal_pending(&store), Ok((n, _)) if n as i64 == SEAL_BATCH) {}
                    }
                }
                if last_purge.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                    last_purge = Some(std::time::Instant::now());
                    let cutoff = clock::now_millis() - i64::from(retention_days) * 86_400_000;
                    match store.write(move |conn| repo::purge_before(conn, cutoff).map_err(ApiError::from)) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(purged = n, retention_days, "audit records past retention purged"),
                        Err(e) => tracing::error!(error = %e, "purging old audit records failed"),
                    }
                    // Emergency grants that ran out (their accesses stay in the audit trail).
                    let now = clock::now_millis();
                    if let Err(e) = store.write(move |conn| {
                        crate::store::access::purge_expired(conn, now).map_err(ApiError::from)
                    }) {
                        tracing::error!(error = %e, "purging expired emergency grants failed");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the audit sealer could not start");
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Records whose hash was checked.
    pub checked: u64,
    /// The first stored position and the hash before it.
    pub start: (i64, String),
    /// The last sealed position and its hash.
    pub head: Option<(i64, String)>,
    /// Everything wrong, each naming the record.
    pub problems: Vec<String>,
}

/// Walk the chain from its start and check every record's hash and position; `expect` is a
/// head recorded earlier (position, hash) that must still be in the chain unchanged.
pub fn verify(
    conn: &mut Tx<'_>,
    keys: &crate::protect::Protection,
    expect: Option<(i64, &str)>,
) -> Result<Report, ApiError> {
    conn.savepoint(|conn| {
        // Once a seal is keyed, every later one must be: an unkeyed seal after it is a rewrite
        // by someone without the keyring.
        let mut keyed_from: Option<i64> = None;
        let start = repo::chain_start(conn)?;
        let mut problems = Vec::new();
        let (mut expected, mut prev) = (start.0, start.1.clone());
        let mut checked = 0u64;
        let mut head = None;
        let mut expect_seen = false;
        loop {
            let links = repo::chain_from(conn, expected, SEAL_BATCH)?;
            if links.is_empty() {
                break;
            }
            for l in &links {
                let after_gap = l.seq != expected;
                if after_gap {
                    problems.push(if l.seq - expected == 1 {
                        format!("the seal of position {expected} is missing (deleted)")
                    } else {
                        format!(
                            "the seals of positions {expected} to {} are missing (deleted)",
                            l.seq - 1
                        )
                    });
                }
                match &l.event {
                    None => problems.push(format!(
                        "the record at position {} (AuditEvent/{}) is missing (deleted)",
                        l.seq, l.event_id
                    )),
                    Some(e) => {
                        let keyed = l.hash.starts_with(KEYED);
                        if keyed && keyed_from.is_none() {
                            keyed_from = Some(l.seq);
                        }
                        if let (false, Some(from)) = (keyed, keyed_from) {
                            problems.push(format!(
                                "the seal at position {} is not keyed though the chain is keyed \
                                 from position {from}: it was sealed again without the keyring",
                                l.seq
                            ));
                        } else if !after_gap {
                            match expected_seal(keys, &prev, l.seq, e, &l.hash)? {
                                Err(problem) => problems.push(problem),
                                Ok(h) if h != l.hash => problems.push(format!(
                                    "the record at position {} (AuditEvent/{}) does not match \
                                     its hash: it was modified, or moved",
                                    l.seq, e.id
                                )),
                                Ok(_) => {}
                            }
                        }
                    }
                }
                if let Some((s, h)) = expect
                    && s == l.seq
                {
                    expect_seen = true;
                    if h != l.hash {
                        problems.push(format!(
                            "the seal at position {} is not the one the expected head names",
                            l.seq
                        ));
                    }
                }
                checked += 1;
                head = Some((l.seq, l.hash.clone()));
                prev = l.hash.clone();
                expected = l.seq + 1;
            }
        }
        if let Some((s, _)) = expect
            && !expect_seen
        {
            problems.push(match &head {
                Some((h, _)) if *h < s => format!(
                    "the chain ends at position {h} but the expected head is position {s}: \
                     the records after {h} are missing (deleted)"
                ),
                _ => format!("the expected head's position {s} is not in the stored chain"),
            });
        }
        let stale = repo::unsealed_before(conn, clock::now_millis() - 60_000)?;
        if let Some(first) = stale.first() {
            problems.push(format!(
                "{} record(s) older than a minute are not sealed (first: AuditEvent/{first}); \
                 is the sealer running?",
                stale.len()
            ));
        }
        let unchained = repo::unchained(conn)?;
        if let Some(first) = unchained.first() {
            problems.push(format!(
                "{} record(s) are neither sealed nor waiting to be (first: AuditEvent/{first}): \
                 the sealer's position was moved past them",
                unchained.len()
            ));
        }
        Ok(Report {
            checked,
            start,
            head,
            problems,
        })
    })
}

/// An audit record as the AuditEvent resource it holds (with its id).
pub fn as_resource(e: &Event) -> Value {
    let mut v: Value = serde_json::from_str(&e.content).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("id".to_owned(), json!(e.id.to_string()));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Reading the trail.

/// Whose records a caller may read: `Ok(None)` every resident's (administrators),
/// `Ok(Some(golden))` one resident's (a resident: their own); 403 for everybody else, since
/// the trail names who saw which resident's record.
pub fn readable_by(
    store: &Store,
    caller: &Caller,
    doors: &crate::services::access::Doors,
) -> Result<Option<String>, ApiError> {
    use crate::services::access::AccessFilter;
    match caller.role {
        Role::Admin => Ok(None),
        Role::Resident => match AccessFilter::load(store, caller, doors)? {
            AccessFilter::OwnRecord(golden) => Ok(Some(golden)),
            _ => Err(ApiError::Forbidden(
                "audit records are readable by the resident they concern".to_owned(),
            )),
        },
        _ => Err(ApiError::Forbidden(
            "audit records are readable by the resident they concern and by administrators"
                .to_owned(),
        )),
    }
}

/// The golden resident of `Patient/id` (the `patient` parameter of a trail search).
pub fn resident_of_patient(store: &Store, id: &str) -> Result<Option<String>, ApiError> {
    store.read(|conn| Ok(crate::store::record::resident(conn, "Patient", id)?))
}

/// What a search of the trail asks for.
#[derive(Debug, Clone, Default)]
pub struct TrailQuery {
    /// One resident's records only.
    pub resident: Option<String>,
    /// Emergency accesses only.
    pub flagged: bool,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Records before this id (paging, newest first).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Records of the trail, newest first.
pub fn list(store: &Store, q: &TrailQuery) -> Result<Vec<Event>, ApiError> {
    store.read(|conn| {
        Ok(repo::list(
            conn,
            q.resident.as_deref(),
            q.flagged,
            q.since,
            q.until,
            q.before,
            q.limit,
        )?)
    })
}

/// One record of the trail.
pub fn find(store: &Store, id: i64) -> Result<Option<Event>, ApiError> {
    store.read(|conn| Ok(repo::find(conn, id)?))
}
