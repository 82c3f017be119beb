//! The resident index (EMPI, 主索引): every institution Patient is linked to exactly one golden
//! resident Patient, and every clinical resource carries its golden resident's id in the
//! `resident` column of its current row, written with the resource.
//!
//! Linking an institution Patient, inside its write:
//! 1. A Patient updated keeps the golden resident it has.
//! 2. A Patient with a resident ID number (ID card, health card or social security card; they
//!    are the same number) belongs to the golden resident holding the key `resident|<number>`
//!    in `match_keys`. A new number's key is claimed for a new golden resident: the database
//!    decides between concurrent pushes of the same new resident (one golden resident, not
//!    two), and a bundle claims its numbers together in sorted order (no deadlock).
//! 3. Otherwise the golden residents sharing its birth date or phone are scored
//!    ([`super::matching`]): at or above the upper threshold it is linked; else it gets a golden
//!    resident of its own, and a best score at or above the lower threshold is recorded for
//!    review.
//!
//! The source Patient gets a `link` (type `refer`) to its golden resident. Golden residents
//! are written once per transaction, at its end ([`finish`]), in id order: created with the
//! best-known demographics and a `seealso` link to every source, or updated with the new links.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use crate::clock;
use crate::error::ApiError;
use crate::fhir::index::Entry;
use crate::fhir::json::Json;
use crate::fhir::search::Clause;
use crate::fhir::search_params::{REGISTRY, compartment_members};
use crate::ident;
use crate::protect;
use crate::services::access::AccessFilter;
use crate::services::residents::matching::{self, Demographics, Weights};
use crate::store::record as repo;
use crate::store::record::match_keys;
use crate::store::residents as store_residents;
use crate::store::{Store, Tx};

/// The tag of golden resident Patients (`meta.tag`).
pub const TAG_SYSTEM: &str = "urn:huimin:CodeSystem:resident-index";
pub const GOLDEN: &str = "golden";

pub use crate::store::Thresholds;

/// The search clause that leaves golden residents out (`_tag:not=…|golden`).
pub fn not_golden() -> &'static Clause {
    static CLAUSE: LazyLock<Clause> = LazyLock::new(|| {
        let pairs = [("_tag:not".to_owned(), format!("{TAG_SYSTEM}|{GOLDEN}"))];
        crate::fhir::search::parse("Patient", &pairs, "", false)
            .ok()
            .and_then(|q| q.clauses.into_iter().next())
            .unwrap_or(Clause::All(Vec::new()))
    });
    &CLAUSE
}

/// Which of `ids` (Patients) are golden residents.
pub fn golden_among(conn: &mut Tx<'_>, ids: &[String]) -> Result<Vec<String>, ApiError> {
    Ok(crate::store::record::search::tagged(
        conn, "Patient", TAG_SYSTEM, GOLDEN, ids,
    )?)
}

/// The resident-index work of a write transaction, carried in its [`Tx`].
#[derive(Default)]
pub struct Links {
    /// Patient id → golden resident id, for Patients linked in this transaction.
    residents: HashMap<String, String>,
    /// ID number → golden resident id, settled in this transaction.
    by_number: HashMap<String, String>,
    /// Golden resident id → the source Patients linked to it in this transaction.
    goldens: BTreeMap<String, Vec<(String, Json)>>,
    /// Resources whose Patient was not linked yet when they were written: (type, id, patient).
    unresolved: Vec<(String, String, String)>,
    /// Resources naming their Patient by identifier only, none of which a stored Patient
    /// carried when they were written: (type, id, the identifiers as `system|code`).
    by_identifier_unresolved: Vec<(String, String, Vec<String>)>,
    /// `system|code` of each identifier of the Patients linked in this transaction → their
    /// golden resident.
    identifiers: HashMap<String, String>,
    /// Golden resident id → institution Patients deleted in this transaction (their links go).
    unlinked: BTreeMap<String, Vec<String>>,
    /// Patient id → the golden resident an administrator moves it to (merge, unmerge).
    relink: HashMap<String, String>,
    /// The golden residents first linked in this transaction (not in the index yet), with the
    /// demographics of their first source, for matching the transaction's later Patients.
    fresh: Vec<(String, Demographics)>,
}

/// Start a write transaction's resident-index work (forgetting anything left over).
pub fn begin(conn: &mut Tx<'_>) {
    *conn.work::<Links>() = Links::default();
}

/// Move the institution Patient `id` to the golden resident `golden` when it is next written
/// in this transaction (merge and unmerge).
pub fn relink(conn: &mut Tx<'_>, id: &str, golden: &str) {
    conn.work::<Links>()
        .relink
        .insert(id.to_owned(), golden.to_owned());
}

/// The institution Patient `id` is being deleted: its golden resident drops the link to it at
/// the end of the transaction.
pub fn unlink_deleted(conn: &mut Tx<'_>, id: &str) -> Result<(), ApiError> {
    if let Some(g) = stored_resident(conn, id)?
        && g != id
    {
        conn.work::<Links>()
            .unlinked
            .entry(g)
            .or_default()
            .push(id.to_owned());
    }
    Ok(())
}

/// The golden resident stored for `Patient/patient` (a golden resident names itself). Rows
/// held back in this transaction are not seen.
pub fn stored_resident(conn: &mut Tx<'_>, patient: &str) -> Result<Option<String>, ApiError> {
    Ok(repo::resident(conn, "Patient", patient)?)
}

/// The golden resident of `Patient/id` stored as `tree`: itself when it is one, else its
/// stored resident, else itself (a Patient not linked yet).
pub fn golden_for(conn: &mut Tx<'_>, id: &str, tree: &Json) -> Result<String, ApiError> {
    if is_golden(tree) {
        return Ok(id.to_owned());
    }
    Ok(stored_resident(conn, id)?.unwrap_or_else(|| id.to_owned()))
}

/// Whether `tree` is a golden resident Patient.
pub fn is_golden(tree: &Json) -> bool {
    match tree.get("meta").and_then(|m| m.get("tag")) {
        Some(Json::Array(tags)) => tags
            .iter()
            .any(|t| t.get_str("system") == Some(TAG_SYSTEM) && t.get_str("code") == Some(GOLDEN)),
        _ => false,
    }
}

/// The resident ID number of a Patient (the first valid one under a known system).
pub fn person_number(tree: &Json) -> Option<String> {
    let Some(Json::Array(identifiers)) = tree.get("identifier") else {
        return None;
    };
    let today = clock::today_digits();
    identifiers.iter().find_map(|i| {
        let system = i.get_str("system")?;
        if !ident::is_person_number_system(system) {
            return None;
        }
        ident::person_number(i.get_str("value")?, &today)
            .ok()
            .map(|n| n.number)
    })
}

fn number_key(number: &str) -> String {
    format!("resident|{number}")
}

/// Settle the golden residents of ID numbers (with the Patient carrying each), in sorted
/// order: a number already held resolves to its holder; a new number claims its key for the
/// golden resident without an ID number that its Patient matches with certainty (made from an
/// institution that did not have the number), else for a new golden resident.
pub fn settle_numbers(conn: &mut Tx<'_>, numbers: &[(String, &Json)]) -> Result<(), ApiError> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (n, tree) in numbers {
        if conn.work::<Links>().by_number.contains_key(n) {
            continue;
        }
        if let Some(g) = match_keys::holder(conn, "Patient", &number_key(n))? {
            conn.work::<Links>().by_number.insert(n.clone(), g);
            continue;
        }
        let planned = match best_match(conn, tree)? {
            Some((score, golden, g))
                if score >= conn.thresholds().upper && person_number(&g).is_none() =>
            {
                golden
            }
            _ => crate::store::record::new_id(),
        };
        wanted.push((number_key(n), planned));
    }
    wanted.sort();
    wanted.dedup_by(|a, b| a.0 == b.0);
    let pairs: Vec<(&str, &str)> = wanted
        .iter()
        .map(|(k, id)| (k.as_str(), id.as_str()))
        .collect();
    let claimed = match_keys::claim_many(conn, "Patient", &pairs)?;
    for (k, id) in &wanted {
        let golden = if claimed.contains(k.as_str()) {
            id.clone()
        } else {
            match match_keys::holder(conn, "Patient", k)? {
                Some(g) => g,
                None => continue,
            }
        };
        let n = k.trim_start_matches("resident|").to_owned();
        conn.work::<Links>().by_number.insert(n, golden);
    }
    Ok(())
}

/// The golden resident of the ID number `n` carried by `tree`: settled in this transaction,
/// held, or claimed now.
fn golden_of_number(conn: &mut Tx<'_>, n: &str, tree: &Json) -> Result<String, ApiError> {
    if let Some(g) = conn.work::<Links>().by_number.get(n).cloned() {
        return Ok(g);
    }
    settle_numbers(conn, &[(n.to_owned(), tree)])?;
    conn.work::<Links>()
        .by_number
        .get(n)
        .cloned()
        .ok_or_else(|| ApiError::internal("a resident key was neither claimed nor held"))
}

/// Link the institution Patient `id` (about to be written as `tree`) to its golden resident:
/// adds the `link` to `tree` and returns the golden resident's id. A golden resident is its
/// own resident.
pub fn link_patient(
    conn: &mut Tx<'_>,
    id: &str,
    tree: &mut Json,
    is_new: bool,
) -> Result<String, ApiError> {
    if is_golden(tree) {
        return Ok(id.to_owned());
    }
    let moved = conn.work::<Links>().relink.get(id).cloned();
    let existing = match moved {
        Some(g) => Some(g),
        None if is_new => None,
        None => stored_resident(conn, id)?,
    };
    let golden = match existing {
        Some(g) => g,
        None => match person_number(tree) {
            Some(n) => golden_of_number(conn, &n, tree)?,
            None => probabilistic(conn, id, tree)?,
        },
    };
    set_link(tree, &golden);
    let t = conn.work::<Links>();
    t.residents.insert(id.to_owned(), golden.clone());
    let sources = t.goldens.entry(golden.clone()).or_default();
    let first = sources.is_empty();
    sources.push((id.to_owned(), tree.clone()));
    if first {
        t.fresh.push((golden.clone(), matching::demographics(tree)));
    }
    Ok(golden)
}

/// The source's `link` to its golden resident (replacing an earlier `refer` link of ours).
fn set_link(tree: &mut Json, golden: &str) {
    let mut links = take_links(tree);
    links.retain(|l| l.get_str("type") != Some("refer"));
    links.push(link(&format!("Patient/{golden}"), "refer"));
    tree.set_at("link", Json::Array(links), usize::MAX);
}

/// A Patient `link` of `kind` to `reference`.
pub fn link(reference: &str, kind: &str) -> Json {
    use crate::fhir::bundle::{obj, s};
    obj(vec![
        ("other", obj(vec![("reference", s(reference))])),
        ("type", s(kind)),
    ])
}

/// The reference a Patient `link` points at.
pub fn link_target(link: &Json) -> Option<&str> {
    link.get("other").and_then(|o| o.get_str("reference"))
}

/// A Patient's links, taken out of it (put back with `set_at("link", …)`).
pub fn take_links(tree: &mut Json) -> Vec<Json> {
    match tree.remove("link") {
        Some(Json::Array(l)) => l,
        _ => Vec::new(),
    }
}

/// The golden resident that scores best against `tree` among those sharing its birth date or
/// a phone (and those made earlier in this transaction): (score, id, the golden's JSON).
fn best_match(conn: &mut Tx<'_>, tree: &Json) -> Result<Option<(f64, String, Json)>, ApiError> {
    let me = matching::demographics(tree);
    let weights = Weights::default();
    let mut best: Option<(f64, String, Option<Json>)> = None;
    let mut consider = |golden: &str, d: &Demographics, g: Option<Json>| {
        let score = matching::score(&me, d, &weights);
        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
            best = Some((score, golden.to_owned(), g));
        }
    };
    for (golden, content) in candidates(conn, &me)? {
        if let Ok(g) = Json::parse(content.as_bytes()) {
            consider(&golden, &matching::demographics(&g), Some(g));
        }
    }
    // Golden residents made earlier in this transaction are not in the index yet: their first
    // source stands for them (blocked like the index: same birth date or a shared phone).
    let links = conn.work::<Links>();
    for (golden, d) in links
        .fresh
        .iter()
        .rev()
        .filter(|(_, d)| {
            (me.birth_date.is_some() && d.birth_date == me.birth_date)
                || d.phones.iter().any(|p| me.phones.contains(p))
        })
        .take(CANDIDATES)
    {
        consider(golden, d, None);
    }
    Ok(best.map(|(score, golden, g)| {
        // A golden resident of this transaction has no ID number of its own yet only when its
        // first source has none; its JSON stands in as an empty Patient then.
        let g = g.unwrap_or_else(|| {
            let first = links
                .goldens
                .get(&golden)
                .and_then(|s| s.first())
                .map(|(_, tree)| tree.clone());
            first.unwrap_or(Json::Object(Vec::new()))
        });
        (score, golden, g)
    }))
}

/// Most golden residents scored per query (of the index, and of the transaction).
const CANDIDATES: usize = 50;

/// The golden resident of a Patient without an ID number (see the module documentation).
fn probabilistic(conn: &mut Tx<'_>, id: &str, tree: &Json) -> Result<String, ApiError> {
    let limits = conn.thresholds();
    match best_match(conn, tree)? {
        Some((score, golden, _)) if score >= limits.upper => Ok(golden),
        Some((score, golden, _)) if score >= limits.lower => {
            store_residents::add_review(conn, id, &golden, score, clock::now_millis())?;
            Ok(crate::store::record::new_id())
        }
        _ => Ok(crate::store::record::new_id()),
    }
}

/// Golden residents that share a birth date or a phone with `me`: (id, JSON).
fn candidates(conn: &mut Tx<'_>, me: &Demographics) -> Result<Vec<(String, String)>, ApiError> {
    let birth = me.birth_date.as_deref().and_then(clock::period_of);
    if birth.is_none() && me.phones.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store_residents::golden_candidates(
        conn,
        birth,
        &me.phones,
        (TAG_SYSTEM, GOLDEN),
        CANDIDATES as i64,
    )?)
}

/// The parameters of each type whose Patient references name the resident: the Patient
/// compartment's parameters, and for the other personal types those made to name a patient
/// (`Task.patient`, `Device.patient`), with aliases replaced by the parameters whose rows they
/// read.
static RESIDENT_PARAMS: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut members: HashMap<String, Vec<String>> = compartment_members("Patient")
        .into_iter()
        .map(|(t, p)| (t.to_owned(), p.to_vec()))
        .collect();
    for t in crate::fhir::definitions::DEFINITIONS.resource_types() {
        if t == "Patient" || members.contains_key(t) {
            continue;
        }
        let aimed = crate::fhir::search_params::patient_params(t);
        if !aimed.is_empty() {
            members.insert(t.to_owned(), aimed);
        }
    }
    for (t, params) in &members {
        let t = t.as_str();
        let mut bases: Vec<String> = Vec::new();
        for p in params {
            match REGISTRY.alias(t, p) {
                Some(a) => bases.extend(a.bases()),
                None => bases.push(p.clone()),
            }
        }
        bases.dedup();
        out.insert(t.to_owned(), bases);
    }
    out
});

/// The golden resident of a non-Patient resource about to be written with `entries`: that of
/// the Patient its compartment references name, by reference or, failing one, by identifier
/// (through the resident index: the Patients, golden or not, carrying it). `None` when it names
/// none, or when that Patient is not stored yet: it waits for it (see [`finish`]), and until it
/// arrives only its writer and administrators see the resource.
pub fn resident_of(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    entries: &[Entry],
    tree: &Json,
) -> Result<Option<String>, ApiError> {
    let (patient, names) = match RESIDENT_PARAMS.get(t) {
        Some(params) => {
            let patient = entries.iter().find_map(|e| match e {
                Entry::Reference {
                    param,
                    target_type,
                    target_id,
                    ..
                } if target_type == "Patient" && params.contains(param) => Some(target_id.clone()),
                _ => None,
            });
            (patient, identifier_references(params, entries))
        }
        None => match implied_subject(conn, t, tree)? {
            Implied::Patient(p) => (Some(p), Vec::new()),
            Implied::Names(names) => (None, names),
            Implied::Resident(r) => return Ok(r),
        },
    };
    let Some(patient) = patient else {
        return resident_by_identifier(conn, t, id, names);
    };
    if let Some(g) = conn.work::<Links>().residents.get(&patient).cloned() {
        return Ok(Some(g));
    }
    if let Some(g) = stored_resident(conn, &patient)? {
        conn.work::<Links>()
            .residents
            .insert(patient.clone(), g.clone());
        return Ok(Some(g));
    }
    conn.work::<Links>()
        .unresolved
        .push((t.to_owned(), id.to_owned(), patient));
    Ok(None)
}

/// Whom a resource of a type without resident parameters is about.
enum Implied {
    /// `Patient/<id>`.
    Patient(String),
    /// A Patient known by these identifiers (see [`identifier_names`]).
    Names(Vec<String>),
    /// The resident of another record it names, or nobody.
    Resident(Option<String>),
}

/// The subject of the personal types no search parameter ties to a patient: a Binary's
/// `securityContext` (a Patient, or a record whose resident it shares), a document Bundle's
/// Composition `subject` (a Patient reference, or a Patient entry of the document, known by its
/// identifiers).
fn implied_subject(conn: &mut Tx<'_>, t: &str, tree: &Json) -> Result<Implied, ApiError> {
    let reference = match t {
        "Binary" => tree.get("securityContext"),
        "Bundle" if tree.get_str("type") == Some("document") => tree
            .get("entry")
            .and_then(|e| match e {
                Json::Array(items) => items.first(),
                _ => None,
            })
            .and_then(|e| e.get("resource"))
            .filter(|c| c.get_str("resourceType") == Some("Composition"))
            .and_then(|c| c.get("subject")),
        _ => None,
    };
    let Some(r) = reference.and_then(|r| r.get_str("reference")) else {
        return Ok(Implied::Resident(None));
    };
    if let Some((rt, rid)) = r.split_once('/')
        && !rt.contains(':')
        && !rid.contains('/')
    {
        if rt == "Patient" {
            return Ok(Implied::Patient(rid.to_owned()));
        }
        return Ok(Implied::Resident(repo::resident(conn, rt, rid)?));
    }
    // A document's own Patient entry (`urn:uuid:…`): known by its identifiers, in the form
    // the index keeps them.
    let embedded = tree.get("entry").and_then(|e| match e {
        Json::Array(items) => items.iter().find(|e| e.get_str("fullUrl") == Some(r)),
        _ => None,
    });
    let Some(patient) = embedded
        .and_then(|e| e.get("resource"))
        .filter(|p| p.get_str("resourceType") == Some("Patient"))
    else {
        return Ok(Implied::Resident(None));
    };
    let blinded =
        protect::blinded(conn.protection(), "Patient", patient).map_err(ApiError::internal)?;
    let entries = crate::fhir::index::extract("Patient", blinded.as_ref().unwrap_or(patient));
    Ok(Implied::Names(patient_identifiers(&entries)))
}

/// The identifiers a resource's resident parameters name its Patient by (`subject:identifier`
/// and the like), as [`identifier_names`].
fn identifier_references(params: &[String], entries: &[Entry]) -> Vec<String> {
    let mut names = token_names(entries, |param| {
        param
            .strip_suffix(":identifier")
            .is_some_and(|base| params.iter().any(|p| p == base))
    });
    names.sort_unstable();
    names.dedup();
    names
}

/// A Patient's own identifiers, from its index rows, as [`identifier_names`].
fn patient_identifiers(entries: &[Entry]) -> Vec<String> {
    token_names(entries, |param| param == "identifier")
}

/// The [`identifier_names`] of the token rows whose parameter `wanted` accepts.
fn token_names(entries: &[Entry], wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names = Vec::new();
    for e in entries {
        if let Entry::Token {
            param,
            system,
            code,
        } = e
            && wanted(param)
            && !code.is_empty()
        {
            names.extend(identifier_names(system, code));
        }
    }
    names
}

/// The names under which a Patient's identifier `system|code` is awaited: an ID or health card
/// number under every person-number system (a golden resident carries it under two, a sender
/// may name another).
fn identifier_names(system: &str, code: &str) -> Vec<String> {
    if ident::is_person_number_system(system) {
        ident::PERSON_NUMBER_SYSTEMS
            .iter()
            .map(|s| format!("{s}|{code}"))
            .collect()
    } else {
        vec![format!("{system}|{code}")]
    }
}

/// [`resident_of`] for a resource naming its Patient by identifier only (`subject:identifier`
/// and the like among the resident parameters): the one golden resident of the Patients that
/// carry it, in this transaction or stored.
fn resident_by_identifier(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    names: Vec<String>,
) -> Result<Option<String>, ApiError> {
    if names.is_empty() {
        return Ok(None);
    }
    let links = conn.work::<Links>();
    if let Some(g) = names.iter().find_map(|n| links.identifiers.get(n)) {
        return Ok(Some(g.clone()));
    }
    let pairs: Vec<(&str, &str)> = names.iter().filter_map(|n| n.split_once('|')).collect();
    let mut residents = store_residents::residents_by_identifier(conn, &pairs)?;
    residents.sort_unstable();
    residents.dedup();
    if let [g] = residents.as_slice() {
        return Ok(Some(g.clone()));
    }
    // None carries it yet (or Patients of several residents do: nothing is guessed).
    if residents.is_empty() {
        conn.work::<Links>()
            .by_identifier_unresolved
            .push((t.to_owned(), id.to_owned(), names));
    }
    Ok(None)
}

/// The institution Patient `id`, written as `entries`, was linked to `golden`: resources of
/// this transaction naming it by identifier find it, and stored resources that waited for it
/// (by reference or identifier) take its resident.
pub fn patient_arrived(
    conn: &mut Tx<'_>,
    id: &str,
    golden: &str,
    entries: &[Entry],
) -> Result<(), ApiError> {
    let mut names = vec![format!("Patient/{id}")];
    names.extend(patient_identifiers(entries));
    let links = conn.work::<Links>();
    for n in &names[1..] {
        links.identifiers.insert(n.clone(), golden.to_owned());
    }
    crate::store::residents::awaiting::arrive(conn, &names, golden)?;
    Ok(())
}

/// Stores a golden resident version: (connection, id, resource, the current version if any
/// with its JSON when it is live).
pub type GoldenWriter<'a> =
    dyn FnMut(&mut Tx<'_>, &str, Json, Option<(i64, Option<&Json>)>) -> Result<(), ApiError> + 'a;

/// End of a write transaction: write the golden residents linked in it (in id order), then the
/// golden residents of resources written before their Patient was linked. `write` stores a
/// golden resident version (the record service's writer).
pub fn finish(conn: &mut Tx<'_>, write: &mut GoldenWriter<'_>) -> Result<(), ApiError> {
    let txn = conn.take_work::<Links>();
    let mut touched: Vec<&String> = txn.goldens.keys().chain(txn.unlinked.keys()).collect();
    touched.sort();
    touched.dedup();
    for golden in touched {
        let sources: &[(String, Json)] = txn.goldens.get(golden).map_or(&[], Vec::as_slice);
        let gone: &[String] = txn.unlinked.get(golden).map_or(&[], Vec::as_slice);
        let current = crate::store::record::lock_current(conn, "Patient", golden)?;
        match current.map(|c| (c.version_id, c.deleted)) {
            Some((v, false)) => {
                let stored = crate::store::record::find_current(conn, "Patient", golden)?
                    .ok_or_else(|| ApiError::internal("a locked golden resident vanished"))?;
                let old = Json::parse(stored.content.as_bytes()).map_err(ApiError::internal)?;
                if let Some(tree) = updated_golden(&old, sources, gone) {
                    write(conn, golden, tree, Some((v, Some(&old))))?;
                }
            }
            _ if sources.is_empty() => {}
            Some((v, true)) => write(conn, golden, new_golden(sources), Some((v, None)))?,
            None => write(conn, golden, new_golden(sources), None)?,
        }
    }
    for (t, id, patient) in &txn.unresolved {
        let golden = match txn.residents.get(patient) {
            Some(g) => Some(g.clone()),
            None => stored_resident(conn, patient)?,
        };
        match golden {
            Some(g) => repo::set_resident(conn, t, id, &g)?,
            None => crate::store::residents::awaiting::add(
                conn,
                t,
                id,
                &[format!("Patient/{patient}")],
            )?,
        }
    }
    for (t, id, names) in &txn.by_identifier_unresolved {
        match names.iter().find_map(|n| txn.identifiers.get(n)) {
            Some(g) => repo::set_resident(conn, t, id, g)?,
            None => crate::store::residents::awaiting::add(conn, t, id, names)?,
        }
    }
    Ok(())
}

/// Demographic elements a golden resident takes from its best source.
const DEMOGRAPHICS: &[&str] = &["name", "telecom", "gender", "birthDate", "address"];

/// The source whose demographics a golden resident shows: the last one with an ID number,
/// else the last one.
fn best_source(sources: &[(String, Json)]) -> Option<&Json> {
    sources
        .iter()
        .rev()
        .find(|(_, s)| person_number(s).is_some())
        .or_else(|| sources.last())
        .map(|(_, s)| s)
}

fn new_golden(sources: &[(String, Json)]) -> Json {
    let mut fields: Vec<(String, Json)> = vec![
        (
            "resourceType".to_owned(),
            Json::String("Patient".to_owned()),
        ),
        (
            "meta".to_owned(),
            Json::Object(vec![(
                "tag".to_owned(),
                Json::Array(vec![Json::Object(vec![
                    ("system".to_owned(), Json::String(TAG_SYSTEM.to_owned())),
                    ("code".to_owned(), Json::String(GOLDEN.to_owned())),
                    (
                        "display".to_owned(),
                        Json::String("Golden resident record".to_owned()),
                    ),
                ])]),
            )]),
        ),
    ];
    let number = sources.iter().find_map(|(_, s)| person_number(s));
    if let Some(n) = &number {
        fields.push(("identifier".to_owned(), number_identifiers(n)));
    }
    fields.push(("active".to_owned(), Json::Bool(true)));
    let mut golden = Json::Object(fields);
    if let Some(best) = best_source(sources) {
        copy_demographics(&mut golden, best);
    }
    let links = sources
        .iter()
        .map(|(id, _)| link(&format!("Patient/{id}"), "seealso"))
        .collect();
    golden.set_at("link", Json::Array(links), usize::MAX);
    golden
}

fn number_identifiers(n: &str) -> Json {
    let id = |system: &str, official: bool| {
        let mut f = Vec::new();
        if official {
            f.push(("use".to_owned(), Json::String("official".to_owned())));
        }
        f.push(("system".to_owned(), Json::String(system.to_owned())));
        f.push(("value".to_owned(), Json::String(n.to_owned())));
        Json::Object(f)
    };
    Json::Array(vec![
        id(ident::ID_CARD, true),
        id(ident::HEALTH_CARD, false),
    ])
}

fn copy_demographics(golden: &mut Json, source: &Json) {
    for (i, key) in DEMOGRAPHICS.iter().enumerate() {
        match source.get(key) {
            Some(v) => golden.set_at(key, v.clone(), 4 + i),
            None => {
                golden.remove(key);
            }
        }
    }
}

/// A golden resident with new sources linked, or `None` when nothing changes (every source
/// already linked and no better demographics).
fn updated_golden(old: &Json, sources: &[(String, Json)], gone: &[String]) -> Option<Json> {
    let mut tree = old.clone();
    tree.remove("id");
    let mut links = take_links(&mut tree);
    links.retain(|l| {
        let r = link_target(l);
        !gone.iter().any(|g| r == Some(&format!("Patient/{g}")))
    });
    for (id, _) in sources {
        let reference = format!("Patient/{id}");
        let known = links.iter().any(|l| link_target(l) == Some(&reference));
        if !known {
            links.push(link(&reference, "seealso"));
        }
    }
    if person_number(&tree).is_none()
        && let Some(n) = sources.iter().find_map(|(_, s)| person_number(s))
    {
        tree.set_at("identifier", number_identifiers(&n), 2);
    }
    if let Some(best) = best_source(sources)
        && (person_number(best).is_some() || person_number(old).is_none())
    {
        copy_demographics(&mut tree, best);
    }
    tree.set_at("link", Json::Array(links), usize::MAX);
    let mut old_cmp = old.clone();
    old_cmp.remove("id");
    old_cmp.remove("meta");
    let mut new_cmp = tree.clone();
    new_cmp.remove("meta");
    (old_cmp.to_bytes() != new_cmp.to_bytes()).then_some(tree)
}

/// One `$match` candidate: a golden resident with its score.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub content: String,
    /// The raw match score (see [`matching::score`]).
    pub score: f64,
    /// `search.score`: the raw score over the highest possible, in [0, 1].
    pub normalized: f64,
    /// FHIR match grade: `certain`, `probable` or `possible`.
    pub grade: &'static str,
}

/// `Patient/$match`: golden residents that may be the person `tree` describes, best first.
/// An ID number decides (`certain`); otherwise candidates sharing the birth date or a phone are
/// scored, and those at or above the lower threshold are returned.
pub fn match_residents(
    store: &Store,
    access: &AccessFilter,
    tree: &Json,
    only_certain: bool,
    count: usize,
) -> Result<Vec<Candidate>, ApiError> {
    store.read(|conn| {
        let limits = conn.thresholds();
        let weights = Weights::default();
        let top = matching::max_score(&weights);
        let me = matching::demographics(tree);
        let mut out: Vec<Candidate> = Vec::new();
        if let Some(n) = person_number(tree)
            && let Some(g) = match_keys::holder(conn, "Patient", &number_key(&n))?
            && let Some(c) = crate::store::record::find_current(conn, "Patient", &g)?
            && !c.deleted
        {
            out.push(Candidate {
                id: g,
                content: c.content,
                score: top,
                normalized: 1.0,
                grade: "certain",
            });
        }
        for (id, content) in candidates(conn, &me)? {
            if out.iter().any(|c| c.id == id) {
                continue;
            }
            let Ok(g) = Json::parse(content.as_bytes()) else {
                continue;
            };
            let score = matching::score(&me, &matching::demographics(&g), &weights);
            if score < limits.lower {
                continue;
            }
            let grade = if score >= limits.upper {
                "certain"
            } else if score >= (limits.lower + limits.upper) / 2.0 {
                "probable"
            } else {
                "possible"
            };
            out.push(Candidate {
                id,
                content,
                score,
                normalized: (score / top).clamp(0.0, 1.0),
                grade,
            });
        }
        if only_certain {
            out.retain(|c| c.grade == "certain");
        }
        // Only residents the caller may see, before the count: a hidden one is absent, not a gap.
        let mut rows: Vec<(String, String, String)> = out
            .iter()
            .map(|c| ("Patient".to_owned(), c.id.clone(), String::new()))
            .collect();
        access.retain_visible(conn, &mut rows)?;
        out.retain(|c| rows.iter().any(|(_, id, _)| *id == c.id));
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        out.truncate(count);
        Ok(out)
    })
}

/// One identifier of a person: (system, value, the Patient carrying it).
pub type CrossReference = (String, String, String);

/// `Patient/$ihe-pix`: the identifiers (and Patients) of the person that `system|value`
/// identifies, across every institution: (identifier system, value, Patient id). `None` when
/// no Patient carries that identifier.
pub fn cross_references(
    store: &Store,
    access: &AccessFilter,
    system: &str,
    value: &str,
) -> Result<Option<Vec<CrossReference>>, ApiError> {
    store.read(|conn| {
        let pairs = [("identifier".to_owned(), format!("{system}|{value}"))];
        let query = crate::fhir::search::parse("Patient", &pairs, "", false)
            .map_err(|i| ApiError::Invalid(vec![i]))?;
        // The source identifier finds only a Patient the caller may see (else: as if none had it).
        let query = access.restrict("Patient", &query);
        let found = crate::store::record::search::run(conn, "Patient", &query, &[], None, 1)?;
        let Some((id, content)) = found.into_iter().next() else {
            return Ok(None);
        };
        let tree = Json::parse(content.as_bytes()).map_err(ApiError::internal)?;
        let golden = golden_for(conn, &id, &tree)?;
        let mut out = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = crate::store::record::search::resident_members(
                conn,
                &golden,
                &["Patient".to_owned()],
                None,
                None,
                after.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
                500,
            )?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some((last.0.clone(), last.1.clone()));
            let full = page.len() == 500;
            let mut page = page;
            // The person's Patients the caller may see: a hidden one's identifiers stay unknown.
            access.retain_visible(conn, &mut page)?;
            for (_, pid, content) in &page {
                let Ok(p) = Json::parse(content.as_bytes()) else {
                    continue;
                };
                if let Some(Json::Array(ids)) = p.get("identifier") {
                    for i in ids {
                        if let (Some(s), Some(v)) = (i.get_str("system"), i.get_str("value")) {
                            out.push((s.to_owned(), v.to_owned(), pid.clone()));
                        }
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(Some(out))
    })
}

/// The types whose resources have a resident, by the parameters that name it (Patient
/// included), in name order.
pub fn resident_types() -> Vec<&'static str> {
    let mut types: Vec<&str> = RESIDENT_PARAMS.keys().map(String::as_str).collect();
    types.sort_unstable();
    types
}

/// The review list (possible matches waiting for an administrator), newest first.
pub fn reviews(
    store: &crate::store::Store,
    limit: i64,
) -> Result<Vec<crate::store::residents::Review>, ApiError> {
    store.read(|conn| Ok(crate::store::residents::reviews(conn, limit)?))
}
