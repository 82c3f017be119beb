//! HTTP: routes, content negotiation, authentication extraction, error → OperationOutcome,
//! paging links. No SQL and no business rules here: handlers parse, authorise, call one service
//! function and render its result.

pub mod audit;
pub mod bundle;
pub mod error;
pub mod format;
pub mod metadata;
pub mod middleware;
pub mod ops;
pub mod resident;
pub mod rest;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::{Authenticator, Caller, Role};
use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::services::access::{AccessFilter, Guard};
use crate::services::audit::{Actor, Draft, Outcome};
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub settings: Settings,
    pub store: Store,
    /// Where reads hand their audit events.
    pub audit: crate::services::audit::Sink,
    /// The consent engine of this database.
    pub consent: Arc<crate::services::consent::Engine>,
    /// Running emergency access grants (break-glass).
    pub grants: Arc<crate::services::break_glass::Grants>,
    /// Tells the other server processes of changes (Redis, when configured).
    pub bus: Option<crate::services::bus::Bus>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Tell the other server processes of a change (nothing without Redis).
    pub fn publish(&self, change: crate::services::bus::Change) {
        if let Some(b) = &self.bus {
            b.publish(change);
        }
    }
}

/// Register every route of the application.
pub fn configure(cfg: &mut web::ServiceConfig, auth: Arc<Authenticator>, max_body: usize) {
    cfg.app_data(web::Data::new(auth))
        .app_data(web::PayloadConfig::new(max_body))
        .configure(ops::configure)
        .service(
            web::scope("/fhir")
                .configure(metadata::configure)
                .service(
                    web::resource(["", "/"])
                        .name("system")
                        .post(bundle::system_post)
                        .get(rest::search_system),
                )
                .configure(resident::configure)
                .configure(audit::configure)
                .configure(rest::configure)
                .default_service(web::to(not_found)),
        )
        .default_service(web::to(not_found));
}

/// Run a database call off the async workers, except point reads on the embedded SQLite
/// database: those take microseconds, never wait on a network, and a thread-pool hop would
/// cost more than the read itself.
pub async fn run_db<T, F>(store: &Store, point_read: bool, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
{
    if point_read && store.is_embedded() {
        f(store)
    } else {
        let store = store.clone();
        web::block(move || f(&store)).await?
    }
}

/// What the caller may see (a resident's own record is looked up).
pub async fn access(state: &AppState, caller: &Caller) -> Result<AccessFilter, ApiError> {
    if let Some(f) = AccessFilter::cached_for_caller(caller, &state.consent, &state.grants) {
        return Ok(f);
    }
    let caller = caller.clone();
    let (consent, grants) = (state.consent.clone(), state.grants.clone());
    run_db(&state.store, true, move |store| {
        store.read(|conn| AccessFilter::for_caller(conn, &caller, &consent, &grants))
    })
    .await
}

/// The door a caller's writes pass (what it may see, whose records it may change).
pub async fn guard(state: &AppState, caller: &Caller) -> Result<Guard, ApiError> {
    let max = state.settings.max_body_bytes;
    Ok(Guard::of(caller, access(state, caller).await?, max))
}

/// The audit draft of this request's interaction (see [`audited`]).
pub fn draft(
    req: &HttpRequest,
    caller: &Caller,
    subtype: &str,
    action: char,
    what: String,
) -> Draft {
    let address = req.peer_addr().map(|a| a.ip().to_string());
    // Searched ID and phone numbers are kept in their blind form, as the index keeps them.
    let what = match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.store.protection().redact_query(&what),
        None => what,
    };
    Draft::new(Arc::new(Actor::new(caller, address)), subtype, action, what)
}

/// What a handler's body answered with, for the audit trail: the resources it returned as
/// (`Type/id`, resident), or `None` when a write transaction already holds its events.
pub type Touched = Option<crate::services::audit::Accessed>;

/// Run a handler's body and audit it before the response leaves: the events of what it
/// returned (committed first; if the audit trail cannot be written, the caller gets a 503 and
/// no data), or, when it failed, an event with the failure's outcome.
pub async fn audited<F>(state: &AppState, draft: Draft, body: F) -> Result<HttpResponse, ApiError>
where
    F: Future<Output = Result<(HttpResponse, Touched), ApiError>>,
{
    let epoch = state.store.context().sensitive_epoch();
    match body.await {
        Ok((resp, None)) => {
            // A write (committed): if it touched a Consent, decisions reload.
            use crate::services::bus::Change;
            let consent_write = draft.what.starts_with("Consent") || draft.what == "Bundle";
            if consent_write {
                state.consent.changed();
            }
            // Also a write that made a type hold sensitive data (this store's epoch moved): the other processes read the list again.
            if consent_write || state.store.context().sensitive_epoch() != epoch {
                state.publish(Change::Consent);
            }
            // A merge moves Consents' residents without a new Consent version.
            if matches!(draft.subtype.as_str(), "$merge" | "$unmerge") {
                state.consent.reload();
                state.publish(Change::Residents);
            }
            Ok(resp)
        }
        Ok((resp, Some(touched))) => {
            let draft = with_grants(state, draft).await?;
            state
                .audit
                .record(draft.events(&touched, Outcome::Success))
                .await?;
            // An emergency access grants the residents it touched for a bounded time.
            if let Some(reason) = &draft.actor.break_glass {
                let mut residents: Vec<String> =
                    touched.iter().filter_map(|(_, r)| r.clone()).collect();
                residents.sort_unstable();
                residents.dedup();
                state
                    .grants
                    .grant(&state.store, &draft.actor.sub, residents, reason)
                    .await?;
                state.publish(crate::services::bus::Change::Grants(
                    draft.actor.sub.clone(),
                ));
            }
            Ok(resp)
        }
        Err(e) => {
            state
                .audit
                .record(draft.events(&[], error::audit_outcome(&e)))
                .await?;
            Err(e)
        }
    }
}

/// A doctor's draft with the emergency grants running now: accesses to those residents are
/// audited as break-glass.
async fn with_grants(state: &AppState, mut draft: Draft) -> Result<Draft, ApiError> {
    if draft.actor.role != Role::Doctor || draft.actor.break_glass.is_some() {
        return Ok(draft);
    }
    // Read for this request's access filter a moment ago, as a rule: no database hop then.
    if let Some(g) = state.grants.cached(&draft.actor.sub) {
        draft.granted = g;
        return Ok(draft);
    }
    let (grants, sub) = (state.grants.clone(), draft.actor.sub.clone());
    let granted = run_db(&state.store, true, move |store| {
        store.read(|conn| grants.active(conn, &sub))
    })
    .await?;
    draft.granted = granted;
    Ok(draft)
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
