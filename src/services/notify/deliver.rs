//! The deliverer: a thread of its own (with an async runtime for the HTTP client) that drains
//! the outbox. Each round leases the oldest rows due, decides them as their subscribers'
//! reads (criteria and access), sends what matched (a few dozen requests at a time, on
//! kept-alive connections), and records the outcome: delivered and unmatched rows deleted,
//! failed rows released for the retry, the Subscriptions' states updated. Every delivery of a
//! resident's record is audited as a disclosure to the subscriber.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use super::{Subscriber, rows};
use crate::auth::{Caller, Perm};
use crate::clock;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::access::{AccessFilter, Doors};
use crate::services::audit::{Actor, Draft, Outcome, Sink};
use crate::services::record;
use crate::store::notify::{Notification, SubscriptionRow};
use crate::store::{Store, Tx};

/// Rows leased per round.
const BATCH: i64 = 500;
/// How long a lease keeps other deliverers off its rows.
const LEASE_MS: i64 = 15_000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 64;
/// How long an endpoint has to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle deliverer waits before it looks again, unless its own process wrote to
/// the outbox (rows other processes wrote are found then).
const IDLE: Duration = Duration::from_millis(50);
/// How often a deliverer looks at every Subscription even when nothing was added: retries
/// fall due, and leases of a deliverer that stopped run out.
const FULL_LOOK: Duration = Duration::from_secs(1);
/// Failures in a row after which a Subscription is `error`.
const ERROR_AFTER: i32 = 3;

/// Start the deliverer of `store`'s outbox; `base` is the FHIR base URL named in payloads.
pub fn start(store: Store, doors: Arc<Doors>, audit: Sink, base: String) {
    let spawned = std::thread::Builder::new()
        .name("huimin-notify".to_owned())
        .spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(run(store, doors, audit, base));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the notification deliverer could not start");
    }
}

async fn run(store: Store, doors: Arc<Doors>, audit: Sink, base: String) {
    let client = awc::Client::builder()
        .timeout(TIMEOUT)
        .disable_redirects()
        .finish();
    let owner = lease_owner();
    let mut failing = false;
    // The outbox's newest row when it was last looked at, and when every Subscription was.
    let mut seen: Option<i64> = None;
    let mut looked = Instant::now();
    // Whether the last round leased rows (more may be due at once).
    let mut busy = false;
    while !store.is_closed() {
        // Between full looks, a round only when rows were added: most of the time nothing
        // was, and one read of the newest position says so.
        let newest = store.read(|tx| Ok::<_, ApiError>(rows::newest(tx.conn())?));
        let moved = !matches!(&newest, Ok(n) if *n == seen);
        if !busy && !moved && !failing && looked.elapsed() < FULL_LOOK {
            idle(&store).await;
            continue;
        }
        if let Ok(n) = newest {
            seen = n;
        }
        looked = Instant::now();
        let round = round(&store, &doors, &audit, &client, &base, owner).await;
        match (&round, failing) {
            (Err(e), false) => {
                tracing::error!(error = %e, "delivering notifications failed; retrying")
            }
            (Ok(_), true) => tracing::info!("delivering notifications resumed"),
            _ => {}
        }
        failing = round.is_err();
        busy = matches!(round, Ok(n) if n > 0);
        match round {
            Ok(n) if n > 0 => {}
            Ok(_) => idle(&store).await,
            Err(_) => actix_rt::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Wait until this process commits rows to the outbox, or `IDLE` has passed (another process
/// sharing the database may have written some).
async fn idle(store: &Store) {
    let ctx = store.context().clone();
    let _ = actix_rt::time::timeout(IDLE, ctx.outbox_written()).await;
}

fn lease_owner() -> i64 {
    let mut b = [0u8; 8];
    // A clock-derived owner is as good when the system has no randomness to give.
    if getrandom::fill(&mut b).is_err() {
        return clock::now_millis();
    }
    i64::from_le_bytes(b) & i64::MAX
}

/// One notification to send: to whom, what, and the outbox rows it answers.
struct Send {
    subscription: Arc<SubscriptionRow>,
    /// The disclosure's audit, as the subscriber's read.
    draft: Arc<Draft>,
    resource: String,
    resident: Option<String>,
    body: Option<Vec<u8>>,
    seqs: Vec<i64>,
}

/// One round; how many rows it leased.
async fn round(
    store: &Store,
    doors: &Arc<Doors>,
    audit: &Sink,
    client: &awc::Client,
    base: &str,
    owner: i64,
) -> Result<usize, ApiError> {
    let now = clock::now_millis();
    // A round that finds nothing due reads, and does not write.
    if store
        .read(|tx| Ok::<_, ApiError>(rows::due(tx.conn(), now, 1)?))?
        .is_empty()
    {
        return Ok(0);
    }
    let leased = store.write(move |tx| {
        Ok::<_, ApiError>(rows::claim(tx.conn(), now, now + LEASE_MS, owner, BATCH)?)
    })?;
    if leased.is_empty() {
        return Ok(0);
    }
    let n = leased.len();
    let (doors2, base2) = (doors.clone(), base.to_owned());
    let (sends, unmatched) = store.read(move |tx| plan(tx, &doors2, &base2, leased))?;
    let outcomes: Vec<(Send, Result<(), String>)> = futures_util::stream::iter(sends)
        .map(|s| async {
            let r = post(client, &s).await;
            (s, r)
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    settle(store, audit, outcomes, unmatched).await?;
    Ok(n)
}

/// Decide the leased rows: the sends (one per Subscription and resource, the resource as it is
/// now, when it matches the criteria and the subscriber may read it) and the rows to drop.
fn plan(
    tx: &mut Tx<'_>,
    doors: &Doors,
    base: &str,
    leased: Vec<Notification>,
) -> Result<(Vec<Send>, Vec<i64>), ApiError> {
    let mut by_subscription: BTreeMap<String, Vec<Notification>> = BTreeMap::new();
    for row in leased {
        by_subscription
            .entry(row.subscription.clone())
            .or_default()
            .push(row);
    }
    let mut sends = Vec::new();
    let mut unmatched = Vec::new();
    for (sid, rows_of) in by_subscription {
        let Some(subscription) = rows::get(tx.conn(), &sid)? else {
            unmatched.extend(rows_of.iter().map(|r| r.seq));
            continue;
        };
        let subscriber: Option<Subscriber> = serde_json::from_str(&subscription.subscriber).ok();
        let caller = subscriber.as_ref().and_then(Subscriber::caller);
        let Some(caller) = caller else {
            unmatched.extend(rows_of.iter().map(|r| r.seq));
            continue;
        };
        let mut by_resource: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for r in &rows_of {
            by_resource
                .entry(r.res_id.as_str())
                .or_default()
                .push(r.seq);
        }
        let ids: Vec<String> = by_resource.keys().map(|id| (*id).to_owned()).collect();
        let matched = matching(tx, doors, &caller, &subscription, ids)?;
        let draft = Arc::new(Draft::new(
            Arc::new(Actor::new(&caller, None)),
            "subscription-notification",
            'R',
            format!("Subscription/{sid}"),
        ));
        let subscription = Arc::new(subscription);
        for (id, seqs) in by_resource {
            if !matched.contains_key(id) {
                unmatched.extend(seqs);
                continue;
            }
            let found = &matched[id];
            let t = subscription.res_type.as_str();
            let body = match &subscription.payload {
                Some(_) => Some(bundle(base, t, id, found)?),
                None => None,
            };
            sends.push(Send {
                subscription: subscription.clone(),
                draft: draft.clone(),
                resource: format!("{t}/{id}"),
                resident: found.resident.clone(),
                body,
                seqs,
            });
        }
    }
    Ok((sends, unmatched))
}

/// A resource a Subscription's subscriber is to be told of: its stored JSON and its resident.
struct Found {
    content: String,
    resident: Option<String>,
}

/// Of resources `ids` of the Subscription's type, those that match its criteria and that its
/// subscriber may read now, as stored (one search and one look-up of their residents).
fn matching(
    tx: &mut Tx<'_>,
    doors: &Doors,
    caller: &Caller,
    subscription: &SubscriptionRow,
    ids: Vec<String>,
) -> Result<HashMap<String, Found>, ApiError> {
    let t = subscription.res_type.as_str();
    if caller.require(Perm::Read, Some(t)).is_err() {
        return Ok(HashMap::new());
    }
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(subscription.criteria.as_bytes())
            .into_owned()
            .collect();
    let Ok(mut query) = crate::fhir::search::parse(t, &pairs, "", false) else {
        return Ok(HashMap::new());
    };
    let filter = AccessFilter::for_caller(tx, caller, doors)?;
    query = filter.restrict(t, &query);
    let limit = i64::try_from(ids.len()).unwrap_or(i64::MAX);
    query.clauses.push(crate::fhir::search::Clause::Id(ids));
    let found = crate::store::record::search::run(tx, t, &query, &[], None, limit)?;
    let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
    let mut residents: HashMap<String, Option<String>> =
        crate::store::record::residents_of(tx.conn(), t, &ids)?
            .into_iter()
            .collect();
    Ok(found
        .into_iter()
        .map(|(id, content)| {
            let resident = residents.remove(&id).flatten();
            (id, Found { content, resident })
        })
        .collect())
}

/// The payload of a full-resource notification: a `history` Bundle holding resource `t/id`.
fn bundle(base: &str, t: &str, id: &str, found: &Found) -> Result<Vec<u8>, ApiError> {
    let resource = Json::parse(found.content.as_bytes()).map_err(ApiError::internal)?;
    let version = resource
        .get("meta")
        .and_then(|m| m.get_str("versionId"))
        .unwrap_or("1")
        .to_owned();
    let (method, url, status) = if version == "1" {
        ("POST", t.to_owned(), "201 Created")
    } else {
        ("PUT", format!("{t}/{id}"), "200 OK")
    };
    let entry = Json::Object(vec![
        (
            "fullUrl".to_owned(),
            Json::String(format!("{base}/{t}/{id}")),
        ),
        ("resource".to_owned(), resource),
        (
            "request".to_owned(),
            Json::Object(vec![
                ("method".to_owned(), Json::String(method.to_owned())),
                ("url".to_owned(), Json::String(url)),
            ]),
        ),
        (
            "response".to_owned(),
            Json::Object(vec![
                ("status".to_owned(), Json::String(status.to_owned())),
                ("etag".to_owned(), Json::String(format!("W/\"{version}\""))),
            ]),
        ),
    ]);
    let b = Json::Object(vec![
        ("resourceType".to_owned(), Json::String("Bundle".to_owned())),
        ("id".to_owned(), Json::String(record::new_id())),
        ("type".to_owned(), Json::String("history".to_owned())),
        (
            "timestamp".to_owned(),
            Json::String(clock::instant(clock::now_millis())),
        ),
        ("entry".to_owned(), Json::Array(vec![entry])),
    ]);
    Ok(b.to_bytes())
}

/// POST one notification; `Err` with the reason unless the endpoint answered 2xx.
async fn post(client: &awc::Client, s: &Send) -> Result<(), String> {
    let mut req = client.post(&s.subscription.endpoint);
    let headers: Vec<String> = serde_json::from_str(&s.subscription.headers).unwrap_or_default();
    for h in &headers {
        if let Some((name, value)) = h.split_once(':') {
            req = req.insert_header((name.trim(), value.trim()));
        }
    }
    let sent = match &s.body {
        Some(b) => {
            req.content_type(crate::api::format::FHIR_JSON)
                .send_body(b.clone())
                .await
        }
        None => req.send().await,
    };
    match sent {
        Ok(mut resp) if resp.status().is_success() => {
            // Read (and drop) the answer so that the connection is kept for the next one.
            let _ = resp.body().limit(64 * 1024).await;
            Ok(())
        }
        Ok(resp) => Err(format!("the endpoint answered {}", resp.status())),
        Err(e) => Err(format!("the endpoint could not be reached: {e}")),
    }
}

/// A Subscription's delivery state after a round: (id, failures, retry at, error, the status
/// its resource takes when it changes).
type StateChange = (String, i32, i64, Option<String>, Option<&'static str>);

/// Record a round's outcome and audit its deliveries.
async fn settle(
    store: &Store,
    audit: &Sink,
    outcomes: Vec<(Send, Result<(), String>)>,
    mut finished: Vec<i64>,
) -> Result<(), ApiError> {
    let mut failed_rows = Vec::new();
    // Per Subscription: the first failure's reason, or none when everything went.
    let mut state: BTreeMap<String, (Arc<SubscriptionRow>, Option<String>)> = BTreeMap::new();
    let mut delivered: Vec<&Send> = Vec::new();
    for (s, r) in &outcomes {
        let entry = state
            .entry(s.subscription.id.clone())
            .or_insert_with(|| (s.subscription.clone(), None));
        match r {
            Ok(()) => {
                finished.extend(&s.seqs);
                delivered.push(s);
            }
            Err(why) => {
                failed_rows.extend(&s.seqs);
                entry.1.get_or_insert_with(|| why.clone());
            }
        }
    }
    let now = clock::now_millis();
    let changes: Vec<StateChange> = state
        .values()
        .filter_map(|(row, failure)| match failure {
            Some(why) => {
                let failures = row.failures.saturating_add(1);
                let backoff = 1000i64 << (failures - 1).clamp(0, 6);
                let status = (failures >= ERROR_AFTER).then_some("error");
                Some((
                    row.id.clone(),
                    failures,
                    now + backoff.min(60_000),
                    Some(why.clone()),
                    status,
                ))
            }
            None if row.failures > 0 => Some((row.id.clone(), 0, 0, None, Some("active"))),
            None => None,
        })
        .collect();
    let rows_done = move |tx: &mut Tx<'_>| {
        rows::done(tx.conn(), &finished)?;
        rows::release(tx.conn(), &failed_rows)?;
        Ok::<_, ApiError>(())
    };
    if changes.is_empty() {
        // Only the outbox moved: nothing of the record, nothing for the audit trail.
        store.write(rows_done)?;
    } else {
        let draft = Draft::platform("huimin:notify", "subscription-delivery", "Subscription");
        record::write(store, draft, move |tx| {
            rows_done(tx)?;
            for (id, failures, retry_at, error, status) in &changes {
                rows::set_state(tx.conn(), id, *failures, *retry_at, error.as_deref())?;
                if let Some(status) = status {
                    subscription_status(tx, id, status, error.as_deref())?;
                }
            }
            Ok(())
        })?;
    }
    // One append for the round's disclosures, each its own event.
    let mut events = Vec::with_capacity(delivered.len());
    for s in delivered {
        events.extend(s.draft.events(
            &[(s.resource.clone(), s.resident.clone())],
            Outcome::Success,
        ));
    }
    if !events.is_empty() {
        audit.record(events).await?;
    }
    Ok(())
}

/// The Subscription resource `id` as its delivery stands: `error` with the reason, or `active`
/// again; nothing when it says so already (or is `off`).
fn subscription_status(
    tx: &mut Tx<'_>,
    id: &str,
    status: &str,
    error: Option<&str>,
) -> Result<(), ApiError> {
    let Ok(current) = record::read_in(tx, "Subscription", id) else {
        return Ok(());
    };
    let mut tree = Json::parse(current.content.as_bytes()).map_err(ApiError::internal)?;
    let was = tree.get_str("status").unwrap_or("");
    if was == status || was == "off" {
        return Ok(());
    }
    tree.set_at("status", Json::String(status.to_owned()), 1);
    match error {
        Some(e) if status == "error" => tree.set_at("error", Json::String(e.to_owned()), 2),
        _ => {
            tree.remove("error");
        }
    }
    let custodian =
        crate::store::record::custody(tx.conn(), "Subscription", id)?.and_then(|(_, c)| c);
    record::update_held_in(
        tx,
        "Subscription",
        id,
        tree,
        current.version_id + 1,
        "PUT",
        custodian.as_deref(),
    )?;
    Ok(())
}
