//! Transactions and batches (`POST [base]` with a Bundle).
//!
//! A transaction is one job of the store's writer: every entry runs inside one database
//! transaction, so either all of it is committed or none. Entries are processed in the order
//! the specification gives (DELETE, POST, PUT/PATCH, GET) and answered in request order.
//! Before anything that refers to them is written, the target of every entry is settled:
//! server ids for creates, the matched resource for conditional creates and updates (claiming
//! `match_keys` so concurrent pushes of the same resident create it once), and then every
//! reference to an entry's `fullUrl` (`urn:uuid:…`, or the entry's own URL) and every
//! conditional reference (`Patient?identifier=…`) is rewritten to `Type/id`.
//!
//! A batch runs its entries independently: each in its own savepoint of one writer job, so
//! a failing entry rolls back only itself.

use crate::services::access::{AccessFilter, Guard};
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::error::{ApiError, RecordError};
use crate::fhir::json::Json;
use crate::fhir::search::{self, Clause, Cond, Query, Table};
use crate::services::audit::{self, Draft};
use crate::services::record::{self, Criteria, Record, Written};
use crate::services::residents::mpi;
use crate::store::record::match_keys;
use crate::store::record::search as store_search;
use crate::store::{self, DbConn, Spare, Store, Tx};

/// What one entry asks for, parsed and authorized by the API layer.
#[derive(Debug, Clone)]
pub enum Action {
    Create {
        t: String,
        resource: Json,
        if_none_exist: Option<Criteria>,
    },
    Update {
        t: String,
        id: String,
        resource: Json,
        if_match: Option<i64>,
    },
    ConditionalUpdate {
        t: String,
        criteria: Criteria,
        resource: Json,
        if_match: Option<i64>,
    },
    Patch {
        t: String,
        id: String,
        patch: json_patch::Patch,
        if_match: Option<i64>,
    },
    Delete {
        t: String,
        id: String,
    },
    ConditionalDelete {
        t: String,
        criteria: Query,
    },
    /// A read of a resource the caller may not see answers as for an absent one.
    Read {
        t: String,
        id: String,
    },
    VRead {
        t: String,
        id: String,
        vid: i64,
    },
    Search {
        t: String,
        query: Query,
        count: i64,
    },
}

/// One entry of the request bundle.
#[derive(Debug, Clone)]
pub struct Entry {
    pub full_url: Option<String>,
    pub action: Action,
    /// The caller may create resources of the entry's type (a PUT to a new id creates).
    pub may_create: bool,
}

/// What an entry did.
#[derive(Debug, Clone)]
pub enum Outcome {
    Written(Record, Written),
    Deleted(Option<i64>),
    Read(Record),
    /// Search matches as (type, id, stored JSON).
    Found(Vec<(String, String, String)>),
}

/// A transaction entry that failed, which rolled the whole transaction back.
#[derive(Debug)]
pub struct Failure {
    pub index: usize,
    pub error: ApiError,
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        f.error.in_entry(f.index)
    }
}

/// The processing phase of an action: DELETE, then POST, then PUT/PATCH, then GET.
fn phase(a: &Action) -> u8 {
    match a {
        Action::Delete { .. } | Action::ConditionalDelete { .. } => 0,
        Action::Create { .. } => 1,
        Action::Update { .. } | Action::ConditionalUpdate { .. } | Action::Patch { .. } => 2,
        Action::Read { .. } | Action::VRead { .. } | Action::Search { .. } => 3,
    }
}

/// Run a transaction: all entries or none. `base` is this server's FHIR base URL.
pub fn transaction(
    store: &Store,
    guard: Guard,
    entries: Vec<Entry>,
    base: String,
    draft: Draft,
) -> Result<Vec<Outcome>, ApiError> {
    let mut entries = Spare::new(entries);
    store.write_alone(move |conn| {
        let entries = entries.for_run(conn)?;
        record::audited(conn, &draft, |conn| {
            run_transaction(conn, &guard, entries, &base).map_err(ApiError::from)
        })
    })
}

/// Where a create or conditional update will land, settled before anything is written.
enum Target {
    /// A new resource with this id.
    New(String),
    /// An existing resource: a conditional create that matched, or the update's target.
    Existing(String),
    /// The resource an earlier conditional create of this bundle with the same criteria
    /// makes (its id and entry index).
    Same(String, usize),
}

fn run_transaction(
    conn: &mut Tx<'_>,
    guard: &Guard,
    mut entries: Vec<Entry>,
    base: &str,
) -> Result<Vec<Outcome>, Failure> {
    mpi::begin(conn);
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| phase(&entries[i].action));
    let mut outcomes: Vec<Option<Outcome>> = (0..entries.len()).map(|_| None).collect();
    let fail = |index: usize| move |error: ApiError| Failure { index, error };

    // 1. Deletes.
    for &i in order.iter().filter(|&&i| phase(&entries[i].action) == 0) {
        let out = match &entries[i].action {
            Action::Delete { t, id } => record::delete_in(conn, guard, t, id),
            Action::ConditionalDelete { t, criteria } => {
                record::conditional_delete_in(conn, guard, t, criteria)
            }
            _ => continue,
        }
        .map_err(fail(i))?;
        outcomes[i] = Some(Outcome::Deleted(out));
    }

    // A resource may be written by one entry only (the specification: identities, including
    // those resolved from conditional updates, SHALL NOT overlap).
    let mut written_once: HashSet<(&str, &str)> = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let (t, what) = match &e.action {
            Action::Update { t, id, .. } | Action::Patch { t, id, .. } => (t, id.as_str()),
            Action::ConditionalUpdate { t, criteria, .. } => (t, criteria.key.as_str()),
            _ => continue,
        };
        if !written_once.insert((t, what)) {
            return Err(Failure {
                index: i,
                error: ApiError::bad_request(format!(
                    "{t} '{what}' is written by more than one entry of the transaction"
                )),
            });
        }
    }

    // 2. Settle the target of every create and conditional update, and map fullUrls to them.
    let mut settled =
        Settled::prefetch(conn, guard, &entries).map_err(|e| Failure { index: 0, error: e })?;
    let mut targets: HashMap<usize, Target> = HashMap::new();
    let mut by_criteria: HashMap<(String, String), String> = HashMap::new();
    // The first conditional create of each criteria: a second one in the same bundle is the
    // same resource.
    let mut first_with: HashMap<(String, String), usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let target = match &e.action {
            Action::Create {
                t, if_none_exist, ..
            } => {
                let same = if_none_exist
                    .as_ref()
                    .and_then(|c| first_with.get(&(t.clone(), c.key.clone())));
                let target = match (if_none_exist, same) {
                    (_, Some(&first)) => match targets.get(&first) {
                        Some(Target::New(id) | Target::Existing(id) | Target::Same(id, _)) => {
                            Target::Same(id.clone(), first)
                        }
                        None => Target::New(record::new_id()),
                    },
                    (None, None) => Target::New(record::new_id()),
                    (Some(c), None) => match settled.create(conn, guard, t, c).map_err(fail(i))? {
                        record::Resolved::Existing(id) => Target::Existing(id),
                        record::Resolved::New(id) => Target::New(id),
                    },
                };
                if let Some(c) = if_none_exist {
                    let id = match &target {
                        Target::New(id) | Target::Existing(id) | Target::Same(id, _) => id.clone(),
                    };
                    let key = (t.clone(), c.key.clone());
                    first_with.entry(key.clone()).or_insert(i);
                    by_criteria.insert(key, id);
                }
                target
            }
            Action::ConditionalUpdate {
                t,
                criteria,
                resource,
                ..
            } => {
                let body_id = resource.get("id").and_then(Json::as_str);
                match settled
                    .update(conn, guard, t, criteria, body_id, e.may_create)
                    .map_err(fail(i))?
                {
                    record::Resolved::Existing(id) => Target::Existing(id),
                    record::Resolved::New(id) => Target::New(id),
                }
            }
            _ => continue,
        };
        targets.insert(i, target);
    }
    // The ID numbers of new Patients: their golden residents' keys claimed together, in
    // sorted order (after the conditional-create keys, in every transaction).
    let numbers: Vec<(String, &Json)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match (&e.action, targets.get(&i)) {
            (Action::Create { t, resource, .. }, Some(Target::New(_)))
            | (Action::ConditionalUpdate { t, resource, .. }, Some(Target::New(_)))
                if t == "Patient" && !mpi::is_golden(resource) =>
            {
                mpi::person_number(resource).map(|n| (n, resource))
            }
            _ => None,
        })
        .collect();
    mpi::settle_numbers(conn, &numbers).map_err(|e| Failure { index: 0, error: e })?;
    let mut map: HashMap<String, String> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(full_url) = &e.full_url else {
            continue;
        };
        let (t, id) = match (&e.action, targets.get(&i)) {
            (
                Action::Create { t, .. } | Action::ConditionalUpdate { t, .. },
                Some(Target::New(id) | Target::Existing(id) | Target::Same(id, _)),
            ) => (t, id.clone()),
            (Action::Update { t, id, .. } | Action::Patch { t, id, .. }, _) => (t, id.clone()),
            _ => continue,
        };
        let local = format!("{t}/{id}");
        // A RESTful fullUrl of a create (`http://his.example/fhir/Patient/p1`) also stands
        // for its relative form `Patient/p1` inside the bundle.
        if !full_url.starts_with("urn:")
            && let Some((rt, rid)) = crate::fhir::fhirpath::split_reference(full_url)
            && rt == *t
            && rid != id
        {
            map.insert(format!("{rt}/{rid}"), local.clone());
        }
        map.insert(full_url.clone(), local);
    }

    // 3. Rewrite references in every resource about to be written.
    for (i, e) in entries.iter_mut().enumerate() {
        let resource = match &mut e.action {
            Action::Create { resource, .. }
            | Action::Update { resource, .. }
            | Action::ConditionalUpdate { resource, .. } => resource,
            _ => continue,
        };
        let mut resolver = Resolver {
            conn: &mut *conn,
            guard,
            map: &map,
            by_criteria: &by_criteria,
            base,
        };
        resolver.rewrite(resource).map_err(fail(i))?;
    }

    // 4. Creates, then updates and patches, then reads, in that order. On PostgreSQL the
    // index rows of all writes go in at the end as a few multi-row statements per table
    // (before any read, so the bundle's own searches see them).
    let later: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| phase(&entries[i].action) > 0)
        .collect();
    let mut deferring = matches!(**conn, DbConn::Postgres(_));
    if deferring {
        store::defer_writes(conn);
    }
    let written = write_and_read(
        conn,
        guard,
        &mut entries,
        &later,
        &mut targets,
        &mut outcomes,
        &mut deferring,
    );
    if deferring {
        match &written {
            Ok(()) => store::flush_writes(conn).map_err(|e| Failure {
                index: later.last().copied().unwrap_or(0),
                error: ApiError::from(e),
            })?,
            Err(_) => store::discard_writes(conn),
        }
    }
    written?;
    outcomes
        .into_iter()
        .enumerate()
        .map(|(index, o)| {
            o.ok_or_else(|| Failure {
                index,
                error: ApiError::internal("a transaction entry was not processed"),
            })
        })
        .collect()
}

/// The conditional entries of a transaction settled in bulk before the entry-by-entry pass:
/// criteria of the common shape `param=system|code` on a token parameter (an identifier) are
/// looked up with one statement per type, parameter and system, and those that match nothing
/// claim their `match_keys` together. Anything else, and a claim lost to a concurrent push,
/// is settled one entry at a time as a single request would be.
struct Settled {
    /// (type, criteria key) → the ids its criteria match.
    found: HashMap<(String, String), Vec<String>>,
    /// (type, criteria key) → the new id whose claim on the criteria is held.
    claimed: HashMap<(String, String), String>,
}

/// Criteria of the shape `param=system|code` on a token parameter: (param, system, code).
fn token_criteria(c: &Criteria) -> Option<(&str, &str, &str)> {
    match c.query.clauses.as_slice() {
        [
            Clause::Index {
                table: Table::Token,
                param,
                any,
                negate: false,
            },
        ] => match any.as_slice() {
            [
                Cond::Token {
                    system: Some(system),
                    code: Some(code),
                },
            ] => Some((param, system, code)),
            _ => None,
        },
        _ => None,
    }
}

/// The conditional criteria of an entry with what it needs settled: (type, criteria, body id
/// of a conditional update, whether it is an update).
fn conditional(e: &Entry) -> Option<(&str, &Criteria, Option<&str>, bool)> {
    match &e.action {
        Action::Create {
            t,
            if_none_exist: Some(c),
            ..
        } => Some((t, c, None, false)),
        Action::ConditionalUpdate {
            t,
            criteria,
            resource,
            ..
        } => Some((t, criteria, resource.get("id").and_then(Json::as_str), true)),
        _ => None,
    }
}

impl Settled {
    fn prefetch(conn: &mut Tx<'_>, guard: &Guard, entries: &[Entry]) -> Result<Settled, ApiError> {
        // (type, param, system) → (code, criteria key) of every entry of that shape.
        type Group<'e> = HashMap<(&'e str, &'e str, &'e str), Vec<(&'e str, &'e str)>>;
        let mut groups: Group = HashMap::new();
        for e in entries {
            if let Some((t, c, _, _)) = conditional(e)
                && let Some((param, system, code)) = token_criteria(c)
            {
                groups
                    .entry((t, param, system))
                    .or_default()
                    .push((code, &c.key));
            }
        }
        let mut found: HashMap<(String, String), Vec<String>> = HashMap::new();
        for ((t, param, system), wanted) in &groups {
            let codes: Vec<&str> = wanted.iter().map(|&(code, _)| code).collect();
            let mut by_code: HashMap<String, Vec<String>> = HashMap::new();
            let mut matches = store_search::token_matches(conn, t, param, system, &codes)?;
            if *t == "Patient" && !matches.is_empty() {
                // As in single requests: criteria never match golden residents.
                let ids: Vec<String> = matches.iter().map(|(_, id)| id.clone()).collect();
                let golden: HashSet<String> = mpi::golden_among(conn, &ids)?.into_iter().collect();
                matches.retain(|(_, id)| !golden.contains(id));
            }
            // As in single requests: criteria match only what the caller may see.
            if !matches.is_empty() {
                let ids: Vec<String> = matches.iter().map(|(_, id)| id.clone()).collect();
                let shown = guard.filter.visible_among(conn, t, ids)?;
                matches.retain(|(_, id)| shown.contains(id));
            }
            for (code, id) in matches {
                by_code.entry(code).or_default().push(id);
            }
            for &(code, criteria) in wanted {
                let ids = by_code
                    .get(crate::fhir::index::key(code))
                    .cloned()
                    .unwrap_or_default();
                found.insert(((*t).to_owned(), criteria.to_owned()), ids);
            }
        }
        // New ids for the criteria that will create, claimed per type in one go; types (and
        // keys, see `claim_many`) in one global order, so that concurrent pushes of overlapping
        // bundles wait for each other instead of deadlocking.
        let mut wanted: BTreeMap<&str, Vec<(&str, String, String)>> = BTreeMap::new();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for e in entries {
            let Some((t, c, body_id, update)) = conditional(e) else {
                continue;
            };
            let Some(ids) = found.get(&(t.to_owned(), c.key.clone())) else {
                continue;
            };
            let creates = if update {
                matches!(
                    record::decide_update(t, ids, body_id, e.may_create),
                    Ok(None)
                )
            } else {
                matches!(record::decide_create(ids), Ok(None))
            };
            if creates && seen.insert((t, &c.key)) {
                wanted
                    .entry(t)
                    .or_default()
                    .push((&c.key, guard.key(&c.key), record::new_id()));
            }
        }
        let mut claimed = HashMap::new();
        for (t, keys) in wanted {
            let pairs: Vec<(&str, &str)> = keys
                .iter()
                .map(|(_, k, id)| (k.as_str(), id.as_str()))
                .collect();
            let got = match_keys::claim_many(conn, t, &pairs)?;
            for (c, k, id) in keys {
                if got.contains(crate::fhir::index::key(&k)) {
                    claimed.insert((t.to_owned(), c.to_owned()), id);
                }
            }
        }
        Ok(Settled { found, claimed })
    }

    /// A conditional create's target: settled in bulk, else as a single request would.
    fn create(
        &mut self,
        conn: &mut Tx<'_>,
        guard: &Guard,
        t: &str,
        c: &Criteria,
    ) -> Result<record::Resolved, ApiError> {
        let k = (t.to_owned(), c.key.clone());
        if let Some(ids) = self.found.get(&k)
            && let Some(r) = record::decide_create(ids)?
        {
            return Ok(r);
        }
        match self.claimed.remove(&k) {
            Some(id) => Ok(record::Resolved::New(id)),
            None => record::resolve_create(conn, guard, t, c),
        }
    }

    /// A conditional update's target, likewise.
    fn update(
        &mut self,
        conn: &mut Tx<'_>,
        guard: &Guard,
        t: &str,
        c: &Criteria,
        body_id: Option<&str>,
        may_create: bool,
    ) -> Result<record::Resolved, ApiError> {
        let k = (t.to_owned(), c.key.clone());
        let Some(ids) = self.found.get(&k) else {
            return record::resolve_update(conn, guard, t, c, body_id, may_create);
        };
        if let Some(r) = record::decide_update(t, ids, body_id, may_create)? {
            return Ok(r);
        }
        match self.claimed.remove(&k) {
            Some(id) => Ok(record::Resolved::New(id)),
            None => record::resolve_update(conn, guard, t, c, body_id, may_create),
        }
    }
}

/// Step 4 of a transaction: the writes and then the reads, in processing order.
fn write_and_read(
    conn: &mut Tx<'_>,
    guard: &Guard,
    entries: &mut [Entry],
    later: &[usize],
    targets: &mut HashMap<usize, Target>,
    outcomes: &mut [Option<Outcome>],
    deferring: &mut bool,
) -> Result<(), Failure> {
    let fail = |index: usize| move |error: ApiError| Failure { index, error };
    let mut linked = false;
    for &i in later {
        // Golden residents are written before the reads, which may look at them.
        if !linked && phase(&entries[i].action) == 3 {
            record::finish_links(conn).map_err(fail(i))?;
            linked = true;
        }
        if *deferring && phase(&entries[i].action) == 3 {
            store::flush_writes(conn).map_err(|e| Failure {
                index: i,
                error: ApiError::from(e),
            })?;
            *deferring = false;
        }
        let may_create = entries[i].may_create;
        let action = std::mem::replace(
            &mut entries[i].action,
            Action::Read {
                t: String::new(),
                id: String::new(),
            },
        );
        let target = targets.remove(&i);
        let out = match (action, target) {
            (Action::Create { t, resource, .. }, Some(Target::New(id))) => {
                record::create_with_id(conn, guard, &t, &id, resource)
                    .map(|r| Outcome::Written(r, Written::Created))
            }
            (Action::Create { t, .. }, Some(Target::Existing(id))) => {
                record::read_in(conn, &t, &id).map(|r| Outcome::Written(r, Written::Matched))
            }
            (Action::Create { .. }, Some(Target::Same(_, first))) => match &outcomes[first] {
                Some(Outcome::Written(rec, _)) => {
                    Ok(Outcome::Written(rec.clone(), Written::Matched))
                }
                _ => Err(ApiError::internal(
                    "a repeated conditional create came first",
                )),
            },
            (
                Action::ConditionalUpdate {
                    t,
                    mut resource,
                    if_match,
                    ..
                },
                Some(Target::New(id)),
            ) => {
                resource.set_at("id", Json::String(id.clone()), 1);
                record::create_by_update_in(conn, guard, &t, &id, resource, if_match, may_create)
                    .map(|r| Outcome::Written(r, Written::Created))
            }
            (
                Action::ConditionalUpdate {
                    t,
                    mut resource,
                    if_match,
                    ..
                },
                Some(Target::Existing(id)),
            ) => {
                resource.set_at("id", Json::String(id.clone()), 1);
                record::update_in(conn, guard, &t, &id, resource, if_match, may_create)
                    .map(|(r, w)| Outcome::Written(r, w))
            }
            (
                Action::Update {
                    t,
                    id,
                    resource,
                    if_match,
                },
                _,
            ) => record::update_in(conn, guard, &t, &id, resource, if_match, may_create)
                .map(|(r, w)| Outcome::Written(r, w)),
            (
                Action::Patch {
                    t,
                    id,
                    patch,
                    if_match,
                },
                _,
            ) => record::patch_in(conn, guard, &t, &id, &patch, if_match)
                .map(|r| Outcome::Written(r, Written::Updated)),
            (action, _) => read_action(conn, guard, action),
        }
        .map_err(fail(i))?;
        outcomes[i] = Some(out);
    }
    if !linked {
        record::finish_links(conn).map_err(fail(later.last().copied().unwrap_or(0)))?;
    }
    Ok(())
}

/// A GET entry (or an unexpected action, refused).
fn read_action(conn: &mut Tx<'_>, guard: &Guard, action: Action) -> Result<Outcome, ApiError> {
    match action {
        Action::Read { t, id } => {
            let read = record::read_in(conn, &t, &id);
            shown_or_refused(conn, &guard.filter, &t, &id, read)
        }
        Action::VRead { t, id, vid } => {
            let read = record::vread_in(conn, &t, &id, vid);
            shown_or_refused(conn, &guard.filter, &t, &id, read)
                .map_err(|e| record::version_refused(e, &t, &id, vid))
        }
        Action::Search { t, query, count } => {
            // Only what the caller may see matches, through chains and `_has` too.
            let query = guard.filter.restrict(&t, &query);
            let rows = store_search::run(conn, &t, &query, &[], None, count)?;
            let keys: Vec<(&str, &str)> = rows
                .iter()
                .map(|(id, _)| (t.as_str(), id.as_str()))
                .collect();
            for (r, resident) in record::residents(conn, &keys)? {
                if let Some((rt, id)) = r.split_once('/') {
                    audit::touched(conn, rt, id, resident.as_deref());
                }
            }
            Ok(Outcome::Found(
                rows.into_iter()
                    .map(|(id, content)| (t.clone(), id, content))
                    .collect(),
            ))
        }
        _ => Err(ApiError::internal("unexpected bundle action")),
    }
}

/// A read entry's answer: as for an absent record when the caller may not see it.
/// The error rolls back what the read noted for the audit trail with the entry (batch) or the
/// whole bundle (transaction).
/// A read entry's answer: the record if the caller may see it; a deletion it may not see answers
/// as an absent record.
fn shown_or_refused(
    conn: &mut Tx<'_>,
    f: &AccessFilter,
    t: &str,
    id: &str,
    read: Result<record::Record, ApiError>,
) -> Result<Outcome, ApiError> {
    match read {
        Err(gone @ ApiError::Record(RecordError::Deleted { .. })) => {
            Err(record::tombstone_refused(conn, f, t, id, gone)?)
        }
        rec => check_shown(conn, f, rec?),
    }
}

fn check_shown(
    conn: &mut Tx<'_>,
    f: &AccessFilter,
    rec: record::Record,
) -> Result<Outcome, ApiError> {
    if !f.visible(conn, &rec.res_type, &rec.id, rec.resident.as_deref())? {
        return Err(f.hidden(&rec.res_type, &rec.id));
    }
    Ok(Outcome::Read(rec))
}

/// Rewrites the references of one resource.
struct Resolver<'a, 'b> {
    conn: &'a mut Tx<'b>,
    guard: &'a Guard,
    map: &'a HashMap<String, String>,
    by_criteria: &'a HashMap<(String, String), String>,
    base: &'a str,
}

impl Resolver<'_, '_> {
    fn rewrite(&mut self, node: &mut Json) -> Result<(), ApiError> {
        match node {
            Json::Object(members) => {
                for (k, v) in members.iter_mut() {
                    if k == "reference"
                        && let Json::String(r) = v
                    {
                        if let Some(new) = self.resolve(r)? {
                            *r = new;
                        }
                    } else {
                        self.rewrite(v)?;
                    }
                }
            }
            Json::Array(items) => {
                for item in items {
                    self.rewrite(item)?;
                }
            }
            // Other strings naming an entry (`Attachment.url`, `valueUri`): only exact
            // `urn:uuid:` / `urn:oid:` fullUrls, which cannot mean anything else.
            Json::String(s) if s.starts_with("urn:") => {
                if let Some(new) = self.map.get(s.as_str()) {
                    *s = new.clone();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The new text of a reference, or `None` to leave it as written.
    fn resolve(&mut self, r: &str) -> Result<Option<String>, ApiError> {
        if let Some(new) = self.map.get(r) {
            return Ok(Some(new.clone()));
        }
        let local = r.strip_prefix(self.base).map(|s| s.trim_start_matches('/'));
        if let Some(l) = local
            && let Some(new) = self.map.get(l)
        {
            return Ok(Some(new.clone()));
        }
        let candidate = local.unwrap_or(r);
        let Some((t, q)) = candidate.split_once('?') else {
            return Ok(None);
        };
        if !huimin_model::is_resource_type(t) || candidate.contains("://") {
            return Ok(None);
        }
        // A conditional reference: exactly one match, in the database or among this bundle's
        // conditional creates with the same criteria.
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let query = search::parse(t, &pairs, self.base, false).map_err(|i| {
            ApiError::Invalid(vec![i.with_prefix(&format!("conditional reference '{r}'"))])
        })?;
        if query.clauses.is_empty() {
            return Err(ApiError::bad_request(format!(
                "conditional reference '{r}' has no criteria"
            )));
        }
        let key = Criteria::new(query.clone(), &pairs).key;
        if let Some(id) = self.by_criteria.get(&(t.to_owned(), key)) {
            return Ok(Some(format!("{t}/{id}")));
        }
        let ids = record::matching_ids(self.conn, self.guard, t, &query, 2)?;
        match ids.as_slice() {
            [one] => Ok(Some(format!("{t}/{one}"))),
            [] => Err(ApiError::PreconditionFailed(
                "not-found",
                format!("conditional reference '{r}' matches no resource"),
            )),
            _ => Err(ApiError::PreconditionFailed(
                "multiple-matches",
                format!("conditional reference '{r}' matches more than one resource"),
            )),
        }
    }
}

/// Run a batch: every entry on its own (its own savepoint), each with its own outcome.
/// Conditional references are resolved; references between entries are not (a batch's
/// entries must not depend on each other).
pub fn batch(
    store: &Store,
    guard: Guard,
    entries: Vec<Entry>,
    base: String,
    draft: Draft,
) -> Result<Vec<Result<Outcome, ApiError>>, ApiError> {
    let mut entries = Spare::new(entries);
    store.write(move |conn| {
        let entries = entries.for_run(conn)?;
        record::audited(conn, &draft, |conn| {
            let empty = HashMap::new();
            let empty_criteria = HashMap::new();
            let mut out = Vec::with_capacity(entries.len());
            for e in entries {
                let may_create = e.may_create;
                let mark = audit::mark(conn);
                let result = conn.savepoint(|conn| {
                    let mut action = e.action;
                    if let Action::Create { resource, .. }
                    | Action::Update { resource, .. }
                    | Action::ConditionalUpdate { resource, .. } = &mut action
                    {
                        Resolver {
                            conn: &mut *conn,
                            guard: &guard,
                            map: &empty,
                            by_criteria: &empty_criteria,
                            base: &base,
                        }
                        .rewrite(resource)?;
                    }
                    record::linked(conn, |conn| single(conn, &guard, action, may_create))
                });
                match &result {
                    // An entry that met concurrent writes runs the batch again (what the
                    // entries before it did is rolled back with it).
                    Err(e) if e.retryable() => return Err(ApiError::Contention),
                    Err(_) => audit::rollback_to(conn, mark),
                    Ok(_) => {}
                }
                out.push(result);
            }
            Ok(out)
        })
    })
}

/// One batch entry.
fn single(
    conn: &mut Tx<'_>,
    guard: &Guard,
    action: Action,
    may_create: bool,
) -> Result<Outcome, ApiError> {
    match action {
        Action::Create {
            t,
            resource,
            if_none_exist,
        } => record::create_in(conn, guard, &t, resource, if_none_exist.as_ref())
            .map(|(r, w)| Outcome::Written(r, w)),
        Action::Update {
            t,
            id,
            resource,
            if_match,
        } => record::update_in(conn, guard, &t, &id, resource, if_match, may_create)
            .map(|(r, w)| Outcome::Written(r, w)),
        Action::ConditionalUpdate {
            t,
            criteria,
            resource,
            if_match,
        } => record::conditional_update_in(
            conn, guard, &t, &criteria, resource, if_match, may_create,
        )
        .map(|(r, w)| Outcome::Written(r, w)),
        Action::Patch {
            t,
            id,
            patch,
            if_match,
        } => record::patch_in(conn, guard, &t, &id, &patch, if_match)
            .map(|r| Outcome::Written(r, Written::Updated)),
        Action::Delete { t, id } => record::delete_in(conn, guard, &t, &id).map(Outcome::Deleted),
        Action::ConditionalDelete { t, criteria } => {
            record::conditional_delete_in(conn, guard, &t, &criteria).map(Outcome::Deleted)
        }
        other => read_action(conn, guard, other),
    }
}
