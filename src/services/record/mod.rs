//! The resource record: create, read, update, patch, delete and history, with versions,
//! conditional interactions and optimistic locking. Every write is one database transaction
//! that stores the version, updates the current row and rewrites the search index together.

use crate::clock;
use crate::error::{ApiError, RecordError};
use crate::fhir::json::Json;

use crate::fhir::search::Query;
use crate::fhir::validate;
use crate::ident;
use crate::protect;
use crate::services::access::Guard;
use crate::services::audit::{self, Draft};
use crate::services::notify;
use crate::services::residents::mpi;
use crate::services::scheduling::publish;
use crate::services::workflow;
use crate::store::record::{self as repo, NewVersion};
use crate::store::record::{index, match_keys, search as store_search};
use crate::store::{Spare, Store, Tx, is_unique_violation};

mod history;
mod read;
mod search;

pub use history::*;
pub use read::*;
pub use search::*;

// The paging cursors' parts, as the API encodes them into `next` links.
pub use crate::store::record::HistoryScope;
pub use crate::store::record::search::{After, SortValue, ValueType, value_type};

/// A stored resource version as the API returns it.
#[derive(Debug, Clone)]
pub struct Record {
    pub res_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    /// The stored JSON (with `id` and `meta` set by the server).
    pub content: String,
    /// The golden resident the resource belongs to (`None` for registries and the like).
    pub resident: Option<String>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    /// A conditional create matched an existing resource; nothing was written.
    Matched,
}

/// Set the server-owned parts of a resource: `id`, `meta.versionId`, `meta.lastUpdated`.
fn stamp(tree: &mut Json, id: &str, version_id: i64, last_updated: i64) {
    tree.set_at("id", Json::String(id.to_owned()), 1);
    let mut meta = tree.remove("meta").unwrap_or(Json::Object(Vec::new()));
    if !matches!(meta, Json::Object(_)) {
        meta = Json::Object(Vec::new());
    }
    meta.set_at("versionId", Json::String(version_id.to_string()), 0);
    meta.set_at("lastUpdated", Json::String(clock::instant(last_updated)), 1);
    tree.set_at("meta", meta, 2);
}

/// Index rows of a resource, from the search parameter registry.
fn index_entries(t: &str, tree: &Json) -> Vec<crate::fhir::index::Entry> {
    crate::fhir::index::extract(t, tree)
}

/// A resource that could not be guarded: a string with a control character is the client's
/// error; anything else is the server's.
fn guard_error(e: protect::GuardError) -> ApiError {
    match e {
        protect::GuardError::ControlCharacter(at) => ApiError::invalid(
            "invalid",
            at,
            "a string holds a control character (below U+0020 other than tab, CR and LF), which FHIR does not allow",
        ),
        protect::GuardError::Protect(e) => ApiError::internal(e),
    }
}

/// A resource's protected form (when it holds protected identifiers) and its index rows, which
/// hold those identifiers blinded.
fn guarded_entries(
    p: &protect::Protection,
    t: &str,
    tree: &Json,
) -> Result<(Option<protect::Guarded>, Vec<crate::fhir::index::Entry>), ApiError> {
    let guarded = protect::guard(p, t, tree).map_err(guard_error)?;
    let entries = index_entries(t, guarded.as_ref().map_or(tree, |g| &g.blinded));
    Ok((guarded, entries))
}

/// Note the type of a resource carrying a sensitive security label (the consent engine then
/// filters that type by label).
fn note_sensitive(
    conn: &mut Tx<'_>,
    t: &str,
    entries: &[crate::fhir::index::Entry],
) -> Result<(), ApiError> {
    let labelled = entries.iter().any(|e| {
        matches!(e, crate::fhir::index::Entry::Token { param, code, .. }
            if param == "_security" && crate::services::access::consent::SENSITIVE_LABELS.contains(&code.as_str()))
    });
    if labelled && repo::note_sensitive(conn, t)? {
        conn.note_sensitive_type();
    }
    Ok(())
}

/// A new server-assigned id: a time-ordered UUID (v7), so that new rows land at the end of
/// every index keyed by id instead of on a random page (far fewer pages written per commit).
pub use crate::store::record::new_id;

/// Store the stamped `tree` as version `version_id` (current row with its golden resident,
/// and history row); returns the stored JSON.
#[expect(clippy::too_many_arguments, reason = "the columns of one version row")]
fn store_version(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    tree: &Json,
    sealed: Option<&Json>,
    version_id: i64,
    last_updated: i64,
    method: &str,
    is_new: bool,
    resident: Option<&str>,
    custodian: Option<&str>,
) -> Result<String, ApiError> {
    let content = String::from_utf8(tree.to_bytes()).map_err(ApiError::internal)?;
    let stored = match sealed {
        Some(s) => Some(String::from_utf8(s.to_bytes()).map_err(ApiError::internal)?),
        None => None,
    };
    repo::write_version(
        conn,
        &NewVersion {
            res_type: t,
            res_id: id,
            version_id,
            last_updated,
            deleted: false,
            method,
            content: stored.as_deref().unwrap_or(&content),
            resident,
            custodian,
        },
        is_new,
    )
    .map_err(map_write_error)?;
    Ok(content)
}

/// Write one new version (`is_new` when no row exists yet), held by `custodian`.
#[expect(clippy::too_many_arguments, reason = "the parts of one version")]
fn put_version(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    mut tree: Json,
    version_id: i64,
    method: &str,
    is_new: bool,
    custodian: Option<&str>,
) -> Result<Record, ApiError> {
    if let Some(why) = ident::check_resource(t, &tree, &clock::today_digits()) {
        return Err(ApiError::Unprocessable(why));
    }
    // The slot pool's resources keep their places and custody in step.
    match t {
        "Slot" => publish::slot_written(conn, id, &tree, custodian)?,
        "Schedule" => publish::schedule_written(conn, &tree, custodian)?,
        "Appointment" => publish::appointment_written(conn, &tree)?,
        _ => {}
    }
    let golden = if t == "Patient" {
        Some(mpi::link_patient(conn, id, &mut tree, is_new)?)
    } else {
        None
    };
    let now = clock::now_millis();
    stamp(&mut tree, id, version_id, now);
    let (mut guarded, mut entries) = guarded_entries(conn.protection(), t, &tree)?;
    // Codes of the sensitive code lists label the resource, as a sender's label would.
    if crate::fhir::sensitive::label(&mut tree, &entries) {
        (guarded, entries) = guarded_entries(conn.protection(), t, &tree)?;
    }
    note_sensitive(conn, t, &entries)?;
    if !is_new && golden.is_none() {
        // Written again: what it waited for is decided afresh.
        crate::store::residents::awaiting::forget(conn, t, id)?;
    }
    let resident = match &golden {
        Some(g) => Some(g.clone()),
        None => mpi::resident_of(conn, t, id, &entries, &tree)?,
    };
    let content = store_version(
        conn,
        t,
        id,
        &tree,
        guarded.as_ref().map(|g| &g.sealed),
        version_id,
        now,
        method,
        is_new,
        resident.as_deref(),
        custodian,
    )?;
    index::replace(conn, t, id, &entries, is_new)?;
    crate::services::stats::facts::written(
        conn,
        t,
        id,
        &tree,
        golden.as_deref(),
        resident.as_deref(),
        custodian,
        is_new,
        now,
    )?;
    notify::changed(conn, t, id, version_id, now)?;
    // An institution Patient arrived: what waited for it joins its resident. A golden resident
    // is written after its sources, which were looked for already (its id is new, its
    // identifiers theirs).
    if let Some(g) = golden.as_deref().filter(|g| *g != id) {
        mpi::patient_arrived(conn, id, g, &entries)?;
    }
    audit::touched(conn, t, id, resident.as_deref());
    Ok(Record {
        res_type: t.to_owned(),
        id: id.to_owned(),
        version_id,
        last_updated: now,
        content,
        resident,
    })
}

/// End of a write transaction: the golden residents its Patients were linked to are written
/// (see [`mpi::finish`]).
pub fn finish_links(conn: &mut Tx<'_>) -> Result<(), ApiError> {
    mpi::finish(conn, &mut |conn, id, tree, version| match version {
        Some((v, Some(old))) => put_version_over(conn, "Patient", id, tree, v + 1, old),
        Some((v, None)) => {
            put_version(conn, "Patient", id, tree, v + 1, "PUT", false, None).map(|_| ())
        }
        None => put_version(conn, "Patient", id, tree, 1, "POST", true, None).map(|_| ()),
    })
}

/// A golden resident's new version over its live version `old`, with the index rows written as
/// the difference: a golden resident gaining a link adds one row instead of rewriting its
/// forty (their rows are written only by this code, so `old`'s rows are what it extracts).
fn put_version_over(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    mut tree: Json,
    version_id: i64,
    old: &Json,
) -> Result<(), ApiError> {
    let now = clock::now_millis();
    stamp(&mut tree, id, version_id, now);
    let (guarded, entries) = guarded_entries(conn.protection(), t, &tree)?;
    note_sensitive(conn, t, &entries)?;
    let sealed = guarded.as_ref().map(|g| &g.sealed);
    store_version(
        conn,
        t,
        id,
        &tree,
        sealed,
        version_id,
        now,
        "PUT",
        false,
        Some(id),
        None,
    )?;
    audit::touched(conn, t, id, Some(id));
    let old_blinded = protect::blinded(conn.protection(), t, old).map_err(guard_error)?;
    let old_entries = index_entries(t, old_blinded.as_ref().unwrap_or(old));
    index::update(conn, t, id, &old_entries, &entries)?;
    crate::services::stats::facts::golden_relinked(conn, id, old, &tree, now)
}

/// Run `f` inside the caller's transaction with its resident-index work: linking starts
/// afresh, and the golden residents are written at its end.
pub fn linked<T>(
    conn: &mut Tx<'_>,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    mpi::begin(conn);
    let out = f(conn)?;
    finish_links(conn)?;
    Ok(out)
}

/// Run `f` as one write transaction with its resident-index work (see [`linked`]) and its
/// audit records (see [`audited`]). `f` runs again when the write meets concurrent ones (see
/// [`Store::write`]).
pub fn write<T, F>(store: &Store, draft: Draft, mut f: F) -> Result<T, ApiError>
where
    F: FnMut(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    store.write(move |conn| audited(conn, &draft, |conn| linked(conn, &mut f)))
}

/// Like [`write`], awaited instead of blocking a thread (see [`Store::write_async`]); `alone`:
/// as a database transaction of its own, for a write whose locks should be held no longer than
/// it runs (a booking's Slot row on PostgreSQL, which a group's other writes would otherwise
/// keep locked until the group commits).
pub async fn write_async<T, F>(
    store: &Store,
    draft: Draft,
    alone: bool,
    mut f: F,
) -> Result<T, ApiError>
where
    F: FnMut(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    store
        .write_async(
            move |conn| audited(conn, &draft, |conn| linked(conn, &mut f)),
            alone,
        )
        .await
}

/// Run `f` inside the caller's transaction and append the audit events of every resource it
/// wrote or read before the transaction commits.
pub fn audited<T>(
    conn: &mut Tx<'_>,
    draft: &Draft,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    audit::begin_writes(conn);
    match f(conn) {
        Ok(v) => {
            audit::append_writes(conn, draft)?;
            Ok(v)
        }
        Err(e) => {
            audit::discard_writes(conn);
            Err(e)
        }
    }
}

/// Ids matching conditional criteria (at most `limit`), among the records the guard's caller
/// may see: criteria never confirm what a read would hide.
pub fn matching_ids(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    criteria: &Query,
    limit: i64,
) -> Result<Vec<String>, ApiError> {
    let mut q = guard.criteria(t, criteria);
    if t == "Patient" {
        // Conditional criteria address institution records, never the golden residents the
        // resident index keeps beside them (which carry the same ID numbers).
        q.clauses.push(mpi::not_golden().clone());
    }
    let rows = store_search::run(conn, t, &q, &[], None, limit)?;
    Ok(rows.into_iter().map(|(id, _)| id).collect())
}

fn require_criteria(criteria: &Query) -> Result<(), ApiError> {
    if criteria.clauses.is_empty() {
        return Err(ApiError::bad_request(
            "a conditional interaction needs at least one search criterion",
        ));
    }
    Ok(())
}

/// Conditional criteria (`If-None-Exist`, a conditional update's URL) with their canonical text,
/// the key that makes conditional creates unique under concurrency (`match_keys`).
#[derive(Debug, Clone)]
pub struct Criteria {
    pub query: Query,
    pub key: String,
}

impl Criteria {
    /// `pairs` are the request's selection parameters as received; the key is them sorted.
    pub fn new(query: Query, pairs: &[(String, String)]) -> Criteria {
        let mut sorted: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        sorted.sort();
        Criteria {
            query,
            key: sorted.join("&"),
        }
    }
}

/// How many times a write raced by a concurrent conditional create is re-run.
const CONDITIONAL_RETRIES: usize = 3;

/// `POST [type]`, optionally conditional (`If-None-Exist`).
pub fn create(
    store: &Store,
    guard: Guard,
    t: &str,
    tree: Json,
    if_none_exist: Option<Criteria>,
    draft: Draft,
) -> Result<(Record, Written), ApiError> {
    let t = t.to_owned();
    let mut tree = Spare::new(tree);
    write(store, draft, move |conn| {
        let tree = tree.for_run(conn)?;
        create_in(conn, &guard, &t, tree, if_none_exist.as_ref())
    })
}

/// A create inside the caller's transaction. With criteria: the single match is returned
/// unchanged, several matches are 412, no match creates the resource (see [`resolve_create`]).
pub fn create_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    tree: Json,
    if_none_exist: Option<&Criteria>,
) -> Result<(Record, Written), ApiError> {
    guard.may_write(t)?;
    let target = match if_none_exist {
        None => Resolved::New(new_id()),
        Some(criteria) => resolve_create(conn, guard, t, criteria)?,
    };
    match target {
        Resolved::New(id) => Ok((create_with_id(conn, guard, t, &id, tree)?, Written::Created)),
        Resolved::Existing(id) => Ok((read_in(conn, t, &id)?, Written::Matched)),
    }
}

/// Store a new resource under `id`, held by `custodian`: a service writing on an
/// institution's behalf (a booking is held by the Slot's institution).
pub fn create_with_id_held_in(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    tree: Json,
    custodian: &str,
) -> Result<Record, ApiError> {
    put_version(conn, t, id, tree, 1, "POST", true, Some(custodian))
}

/// A new version of a stored resource, held by `custodian`: a service changing a record on
/// the institutions' behalf by its own rules (a referral's Task, which its receiver moves).
pub fn update_held_in(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    tree: Json,
    version_id: i64,
    method: &str,
    custodian: Option<&str>,
) -> Result<Record, ApiError> {
    put_version(conn, t, id, tree, version_id, method, false, custodian)
}

/// Store a new resource under a server-assigned id.
pub fn create_with_id(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    id: &str,
    tree: Json,
) -> Result<Record, ApiError> {
    put_new(conn, guard, t, id, tree, "POST")
}

/// Store the first version of `t/id` as `guard`'s writer made it, after the checks of its
/// content (custody, and a workflow's, see [`workflow::check_new`]).
fn put_new(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    id: &str,
    tree: Json,
    method: &str,
) -> Result<Record, ApiError> {
    let mut tree = tree;
    guard.check_content(conn, t, &tree)?;
    let task = workflow::check_new(conn, guard, t, &tree)?;
    let subscription = notify::check(guard, t, &mut tree)?;
    let rec = put_version(conn, t, id, tree, 1, method, true, guard.holder(None))?;
    if let Some(task) = task {
        workflow::created(conn, task, &rec)?;
    }
    if let Some(s) = subscription {
        notify::registered(conn, s, &rec)?;
    }
    Ok(rec)
}

/// Store a new version of the stored `t/id` as `guard`'s writer made it (custody checked
/// already), after the checks of its content.
#[expect(clippy::too_many_arguments, reason = "the parts of one version")]
fn put_changed(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    id: &str,
    mut tree: Json,
    version_id: i64,
    method: &str,
    custodian: Option<&str>,
) -> Result<Record, ApiError> {
    workflow::check_change(conn, guard, t, &tree)?;
    let subscription = notify::check(guard, t, &mut tree)?;
    let rec = put_version(conn, t, id, tree, version_id, method, false, custodian)?;
    if let Some(s) = subscription {
        notify::registered(conn, s, &rec)?;
    }
    Ok(rec)
}

/// A conditional update whose criteria matched nothing and whose id is new (it was just claimed
/// in `match_keys`, see [`resolve_update`]): a create, without looking for a current row that
/// cannot exist.
pub fn create_by_update_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    id: &str,
    tree: Json,
    if_match: Option<i64>,
    may_create: bool,
) -> Result<Record, ApiError> {
    check_if_match(None, if_match)?;
    if !may_create {
        return Err(create_not_allowed(t, Some(id)));
    }
    put_new(conn, guard, t, id, tree, "PUT")
}

/// Where a conditional create lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Nothing matched: create with this id, whose claim on the criteria is held.
    New(String),
    /// The single resource that matches.
    Existing(String),
}

/// Settle a conditional create inside the caller's transaction: the single match, 412 for
/// several, or a new id that has claimed the criteria in `match_keys`. The claim's primary key
/// makes a concurrent identical conditional create (any process) wait for this transaction and
/// then find its resource instead of creating a second one.
pub fn resolve_create(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    criteria: &Criteria,
) -> Result<Resolved, ApiError> {
    require_criteria(&criteria.query)?;
    let key = guard.key(&criteria.key);
    let mut stale: Option<String> = None;
    for _ in 0..CONDITIONAL_RETRIES {
        let ids = matching_ids(conn, guard, t, &criteria.query, 2)?;
        if let Some(found) = decide_create(&ids)? {
            return Ok(found);
        }
        let id = new_id();
        let claimed = match (match_keys::claim(conn, t, &key, &id)?, stale.take()) {
            (true, _) => true,
            // Nothing matched twice while the same resource held the key: it no longer
            // matches (updated since), so the key moves to the new resource.
            (false, Some(old)) => match_keys::take_over(conn, t, &key, &old, &id)?,
            (false, None) => {
                stale = match_keys::holder(conn, t, &key)?;
                false
            }
        };
        if claimed {
            return Ok(Resolved::New(id));
        }
        // A concurrent create of the same criteria committed first: search again.
    }
    Err(RecordError::Unsettled.into())
}

/// A conditional create's outcome given the ids its criteria match: the single match, 412 for
/// several, or `None` when nothing matched (the caller claims the criteria and creates).
pub fn decide_create(ids: &[String]) -> Result<Option<Resolved>, ApiError> {
    match ids {
        [] => Ok(None),
        [one] => Ok(Some(Resolved::Existing(one.clone()))),
        _ => Err(RecordError::MultipleMatches.into()),
    }
}

/// `PUT [type]/[id]`: update, or create with the client's id when `may_create` (the caller's
/// scopes allow creating); otherwise creating is refused inside the transaction, so nothing is
/// written.
#[expect(clippy::too_many_arguments, reason = "the parts of an update request")]
pub fn update(
    store: &Store,
    guard: Guard,
    t: &str,
    id: &str,
    tree: Json,
    if_match: Option<i64>,
    may_create: bool,
    draft: Draft,
) -> Result<(Record, Written), ApiError> {
    check_body_id(&tree, t, Some(id))?;
    let attempt = |tree: Json| {
        let (t, id, draft, guard) = (t.to_owned(), id.to_owned(), draft.clone(), guard.clone());
        let mut tree = Spare::new(tree);
        write(store, draft, move |conn| {
            let tree = tree.for_run(conn)?;
            update_in(conn, &guard, &t, &id, tree, if_match, may_create)
        })
    };
    match attempt(tree.clone()) {
        // Two clients created the same new id at once: the loser becomes an update.
        Err(ApiError::Record(RecordError::ConcurrentCreate)) => attempt(tree),
        other => other,
    }
}

/// An update (or create with the client's id) inside the caller's transaction.
pub fn update_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    id: &str,
    tree: Json,
    if_match: Option<i64>,
    may_create: bool,
) -> Result<(Record, Written), ApiError> {
    check_body_id(&tree, t, Some(id))?;
    if let Some(row) = workflow::row_of(conn, t, id)? {
        guard.may_write(t)?;
        let rec = workflow::update_task(conn, guard, id, row, tree, if_match, "PUT")?;
        return Ok((rec, Written::Updated));
    }
    guard.check_content(conn, t, &tree)?;
    let locked = repo::lock_current(conn, t, id)?;
    if let Some(l) = locked.as_ref().filter(|l| !l.deleted) {
        guard.may_change(conn, t, id, l)?;
    }
    let stored_custodian = locked.as_ref().and_then(|l| l.custodian.clone());
    let current = locked.map(|l| (l.version_id, l.deleted));
    check_if_match(current.map(|c| c.0), if_match)?;
    if !may_create && current.is_none_or(|(_, deleted)| deleted) {
        return Err(create_not_allowed(t, Some(id)));
    }
    match current {
        None => Ok((put_new(conn, guard, t, id, tree, "PUT")?, Written::Created)),
        Some((v, deleted)) => {
            let how = if deleted {
                Written::Created
            } else {
                Written::Updated
            };
            let custodian = guard.holder(stored_custodian.as_deref());
            Ok((
                put_changed(conn, guard, t, id, tree, v + 1, "PUT", custodian)?,
                how,
            ))
        }
    }
}

/// `PUT [type]?criteria`: conditional update.
#[expect(clippy::too_many_arguments, reason = "the parts of an update request")]
pub fn conditional_update(
    store: &Store,
    guard: Guard,
    t: &str,
    criteria: Criteria,
    tree: Json,
    if_match: Option<i64>,
    may_create: bool,
    draft: Draft,
) -> Result<(Record, Written), ApiError> {
    let t = t.to_owned();
    let mut tree = Spare::new(tree);
    write(store, draft, move |conn| {
        let tree = tree.for_run(conn)?;
        conditional_update_in(conn, &guard, &t, &criteria, tree, if_match, may_create)
    })
}

/// A conditional update inside the caller's transaction: no match creates (with the body's id
/// if it has one), one match is updated, several are 412.
pub fn conditional_update_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    criteria: &Criteria,
    mut tree: Json,
    if_match: Option<i64>,
    may_create: bool,
) -> Result<(Record, Written), ApiError> {
    let body_id = tree.get("id").and_then(Json::as_str).map(str::to_owned);
    match resolve_update(conn, guard, t, criteria, body_id.as_deref(), may_create)? {
        Resolved::Existing(id) => {
            tree.set_at("id", Json::String(id.clone()), 1);
            update_in(conn, guard, t, &id, tree, if_match, may_create)
        }
        Resolved::New(id) => {
            tree.set_at("id", Json::String(id.clone()), 1);
            let rec = create_by_update_in(conn, guard, t, &id, tree, if_match, may_create)?;
            Ok((rec, Written::Created))
        }
    }
}

/// Where a conditional update lands, inside the caller's transaction: the single match
/// (whose id the body, if it has one, must carry), else the body's own id, else a new id that
/// has claimed the criteria (403 without the create scope); several matches are 412.
pub fn resolve_update(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    criteria: &Criteria,
    body_id: Option<&str>,
    may_create: bool,
) -> Result<Resolved, ApiError> {
    require_criteria(&criteria.query)?;
    let ids = matching_ids(conn, guard, t, &criteria.query, 2)?;
    match decide_update(t, &ids, body_id, may_create)? {
        Some(found) => Ok(found),
        None => resolve_create(conn, guard, t, criteria),
    }
}

/// A conditional update's outcome given the ids its criteria match (see [`resolve_update`]);
/// `None` when the caller has to claim the criteria for a new id.
pub fn decide_update(
    t: &str,
    ids: &[String],
    body_id: Option<&str>,
    may_create: bool,
) -> Result<Option<Resolved>, ApiError> {
    match (ids, body_id) {
        ([], Some(id)) => Ok(Some(Resolved::Existing(id.to_owned()))),
        ([], None) if !may_create => Err(create_not_allowed(t, None)),
        ([], None) => Ok(None),
        ([one], Some(b)) if b != one => Err(ApiError::invalid(
            "invalid",
            format!("{t}.id"),
            "the resource id does not match the resource found by the criteria",
        )),
        ([one], _) => Ok(Some(Resolved::Existing(one.clone()))),
        _ => Err(RecordError::MultipleMatches.into()),
    }
}

/// `PATCH [type]/[id]` with a JSON Patch document.
pub fn patch(
    store: &Store,
    guard: Guard,
    t: &str,
    id: &str,
    patch: &json_patch::Patch,
    if_match: Option<i64>,
    draft: Draft,
) -> Result<Record, ApiError> {
    let (t, id, patch) = (t.to_owned(), id.to_owned(), patch.clone());
    write(store, draft, move |conn| {
        patch_in(conn, &guard, &t, &id, &patch, if_match)
    })
}

/// A JSON Patch inside the caller's transaction.
pub fn patch_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    id: &str,
    patch: &json_patch::Patch,
    if_match: Option<i64>,
) -> Result<Record, ApiError> {
    {
        // Custody and visibility before anything of the stored version is looked at: a patch
        // (even a `test`) of a record the caller may not see answers as for an absent one.
        guard.may_write(t)?;
        let row = workflow::row_of(conn, t, id)?;
        let stored_custodian = match repo::lock_current(conn, t, id)? {
            None => return Err(not_found(t, id)),
            Some(l) if l.deleted => return Err(gone(t, id)),
            // The two institutions of a referral change its Task by the workflow's rules.
            Some(l)
                if row
                    .as_ref()
                    .is_some_and(|r| workflow::participant(guard, r)) =>
            {
                l.custodian
            }
            Some(l) => {
                guard.may_change(conn, t, id, &l)?;
                l.custodian
            }
        };
        let Some(current) = repo::find_current(conn, t, id)? else {
            return Err(not_found(t, id));
        };
        check_if_match(Some(current.version_id), if_match)?;
        let mut doc: serde_json::Value =
            serde_json::from_str(&current.content).map_err(ApiError::internal)?;
        apply_bounded(&mut doc, patch, current.content.len(), guard.max_bytes)?;
        let bytes = serde_json::to_vec(&doc).map_err(ApiError::internal)?;
        let tree = validate::resource(&bytes, Some(t)).map_err(ApiError::Invalid)?;
        check_body_id(&tree, t, Some(id))?;
        if let Some(row) = row {
            return workflow::update_task(conn, guard, id, row, tree, if_match, "PATCH");
        }
        guard.check_content(conn, t, &tree)?;
        let v = current.version_id + 1;
        let custodian = guard.holder(stored_custodian.as_deref());
        put_changed(conn, guard, t, id, tree, v, "PATCH", custodian)
    }
}

/// Apply a JSON Patch to `doc` (`size` bytes as stored) one operation at a time, refusing (413)
/// before an operation would make it larger than `max` bytes: a short patch of `copy` ops
/// doubles the document with each, and must not build it.
pub fn apply_bounded(
    doc: &mut serde_json::Value,
    patch: &json_patch::Patch,
    size: usize,
    max: usize,
) -> Result<(), ApiError> {
    let mut size = size;
    for op in &patch.0 {
        use json_patch::PatchOperation as P;
        let added = match op {
            P::Add(o) => json_len(&o.value),
            P::Replace(o) => json_len(&o.value),
            P::Copy(o) => doc.pointer(o.from.as_str()).map_or(0, json_len),
            _ => 0,
        };
        size = size.saturating_add(added);
        if size > max {
            return Err(RecordError::PatchTooLarge { max }.into());
        }
        json_patch::patch(doc, std::slice::from_ref(op))
            .map_err(|e| RecordError::PatchFailed(e.to_string()))?;
    }
    Ok(())
}

/// The length of `v` as compact JSON, counted without building the text.
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

/// `DELETE [type]/[id]`: writes a tombstone version. Deleting what does not exist or is
/// already deleted succeeds without a new version.
pub fn delete(
    store: &Store,
    guard: Guard,
    t: &str,
    id: &str,
    draft: Draft,
) -> Result<Option<i64>, ApiError> {
    let (t, id) = (t.to_owned(), id.to_owned());
    write(store, draft, move |conn| delete_in(conn, &guard, &t, &id))
}

/// A delete inside the caller's transaction. A record the caller may not see is deleted as an
/// absent one is: nothing happens, and the answer is the same.
pub fn delete_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    id: &str,
) -> Result<Option<i64>, ApiError> {
    guard.may_write(t)?;
    let Some(locked) = repo::lock_current(conn, t, id)? else {
        return Ok(None);
    };
    if locked.deleted {
        return Ok(None);
    }
    match guard.may_change(conn, t, id, &locked) {
        Ok(()) => {}
        Err(ApiError::Record(RecordError::Absent { .. })) => return Ok(None),
        Err(e) => return Err(e),
    }
    if let Some(row) = workflow::row_of(conn, t, id)? {
        return Err(workflow::refuse_delete(&row));
    }
    let v = locked.version_id;
    audit::touched(conn, t, id, locked.resident.as_deref());
    match t {
        "Patient" => mpi::unlink_deleted(conn, id)?,
        "Slot" => publish::slot_deleted(conn, id)?,
        "Appointment" => publish::appointment_deleted(conn, id)?,
        "Subscription" => notify::unregistered(conn, id)?,
        _ => {}
    }
    let now = clock::now_millis();
    repo::write_version(
        conn,
        &NewVersion {
            res_type: t,
            res_id: id,
            version_id: v + 1,
            last_updated: now,
            deleted: true,
            method: "DELETE",
            content: "",
            // A tombstone stays the resident's and the writer's: who may see its history is
            // decided as for the live record.
            resident: locked.resident.as_deref(),
            custodian: locked.custodian.as_deref(),
        },
        false,
    )?;
    index::clear(conn, t, id)?;
    crate::services::stats::facts::removed(conn, t, id)?;
    match_keys::release(conn, t, id)?;
    crate::store::residents::awaiting::forget(conn, t, id)?;
    Ok(Some(v + 1))
}

/// `DELETE [type]?criteria`: deletes the single match (412 when several match).
pub fn conditional_delete(
    store: &Store,
    guard: Guard,
    t: &str,
    criteria: Query,
    draft: Draft,
) -> Result<Option<i64>, ApiError> {
    let t = t.to_owned();
    write(store, draft, move |conn| {
        conditional_delete_in(conn, &guard, &t, &criteria)
    })
}

/// A conditional delete inside the caller's transaction.
pub fn conditional_delete_in(
    conn: &mut Tx<'_>,
    guard: &Guard,
    t: &str,
    criteria: &Query,
) -> Result<Option<i64>, ApiError> {
    require_criteria(criteria)?;
    let ids = matching_ids(conn, guard, t, criteria, 2)?;
    match ids.as_slice() {
        [] => Ok(None),
        [one] => delete_in(conn, guard, t, one),
        _ => Err(RecordError::MultipleMatches.into()),
    }
}

fn check_body_id(tree: &Json, t: &str, url_id: Option<&str>) -> Result<(), ApiError> {
    let body_id = tree.get("id").and_then(Json::as_str);
    match (body_id, url_id) {
        (None, Some(_)) => Err(ApiError::invalid(
            "required",
            format!("{t}.id"),
            "the resource must have an id matching the URL",
        )),
        (Some(b), Some(u)) if b != u => Err(ApiError::invalid(
            "invalid",
            format!("{t}.id"),
            format!("the resource id '{b}' does not match the id '{u}' in the URL"),
        )),
        _ => Ok(()),
    }
}

fn check_if_match(current: Option<i64>, if_match: Option<i64>) -> Result<(), ApiError> {
    match (if_match, current) {
        (None, _) => Ok(()),
        (Some(want), Some(have)) if want == have => Ok(()),
        (Some(want), have) => Err(RecordError::VersionConflict { want, have }.into()),
    }
}

fn create_not_allowed(t: &str, id: Option<&str>) -> ApiError {
    RecordError::CreateNotAllowed {
        t: t.to_owned(),
        id: id.map(str::to_owned),
    }
    .into()
}

fn not_found(t: &str, id: &str) -> ApiError {
    RecordError::Absent {
        t: t.to_owned(),
        id: id.to_owned(),
    }
    .into()
}

fn gone(t: &str, id: &str) -> ApiError {
    RecordError::Deleted {
        t: t.to_owned(),
        id: id.to_owned(),
        version: None,
    }
    .into()
}

/// Map a failed insert of a new current row to a retryable conflict.
pub fn map_write_error(e: diesel::result::Error) -> ApiError {
    if is_unique_violation(&e) {
        RecordError::ConcurrentCreate.into()
    } else {
        ApiError::from(e)
    }
}
