//! The request context (`Ctx`), built once per request by its extractor: the verified caller,
//! the application state and the request, plus what handlers derive from them (the caller's
//! access, computed at most once per request; the audit draft; the public base URL; paging
//! links; the negotiated format).
//!
//! Every handler that touches a resident's data takes a `Ctx` and runs its body inside
//! [`Ctx::audited`], so that what it returned (or how it failed) is in the audit trail before
//! the answer leaves. A request without a valid token ends in the extractor (401), before any
//! handler runs.

use std::cell::OnceCell;
use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use super::AppState;
use super::format::{self, Negotiated};
use crate::auth::{Caller, Perm, Role};
use crate::error::ApiError;
use crate::fhir::bundle::Link;
use crate::fhir::validate::is_valid_id;
use crate::services::access::{AccessFilter, Guard};
use crate::services::audit::{Accessed, Actor, Draft, Outcome};
use crate::services::bus::Change;
use crate::store::Store;

/// One request's context (cheap to clone: the request and state are shared).
#[derive(Clone)]
pub struct Ctx {
    pub caller: Caller,
    pub state: web::Data<AppState>,
    pub req: HttpRequest,
    /// The caller's access, once asked for.
    access: Rc<OnceCell<AccessFilter>>,
}

impl FromRequest for Ctx {
    type Error = ApiError;
    type Future = Ready<Result<Ctx, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(Ctx::of(req))
    }
}

/// What a handler's body answered with, for the audit trail: the resources it returned as
/// (`Type/id`, resident), or `None` when a write transaction already holds its events.
pub type Touched = Option<Accessed>;

impl Ctx {
    fn of(req: &HttpRequest) -> Result<Ctx, ApiError> {
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::internal("application state not configured"))?;
        Ok(Ctx {
            caller: super::auth::caller_of(req)?,
            state,
            req: req.clone(),
            access: Rc::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The response format the request asks for (406 when none is served).
    pub fn negotiate(&self) -> Result<Negotiated, ApiError> {
        format::negotiate(&self.req)
    }

    /// A request header as text (absent when missing or not ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The query string's parameters, in order.
    pub fn query(&self) -> Vec<(String, String)> {
        pairs_of(self.req.query_string().as_bytes())
    }

    /// Check the type (404 when unknown), the caller's scope for `perms` on it, and the id's
    /// syntax.
    pub fn authorize(&self, perms: &[Perm], t: &str, id: Option<&str>) -> Result<(), ApiError> {
        authorize(&self.caller, perms, t, id)
    }

    /// Administrators only (role `admin`), with `perm` on Patient in their scopes.
    pub fn require_admin(&self, what: &str, perm: Perm) -> Result<(), ApiError> {
        if self.caller.role != Role::Admin {
            return Err(ApiError::Forbidden(format!("{what} is for administrators")));
        }
        self.authorize(&[perm], "Patient", None)
    }

    /// What the caller may see: asked of the consent engine once per request.
    pub async fn access(&self) -> Result<AccessFilter, ApiError> {
        if let Some(f) = self.access.get() {
            return Ok(f.clone());
        }
        let state = &self.state;
        let filter = match AccessFilter::cached_for_caller(&self.caller, &state.doors) {
            Some(f) => f,
            None => {
                let caller = self.caller.clone();
                let doors = state.doors.clone();
                self.db(true, move |store| {
                    AccessFilter::load(store, &caller, &doors)
                })
                .await?
            }
        };
        Ok(self.access.get_or_init(|| filter).clone())
    }

    /// The door the caller's writes pass: what it may see, whose records it may change, how
    /// large a resource it may store.
    pub async fn guard(&self) -> Result<Guard, ApiError> {
        let max = self.state.settings.max_body_bytes;
        Ok(Guard::of(
            &self.caller,
            self.access().await?,
            max,
            self.state.endpoints.clone(),
        ))
    }

    /// Run a database call off the async workers, except point reads on the embedded SQLite
    /// database: those take microseconds, never wait on a network, and a thread-pool hop would
    /// cost more than the read itself.
    pub async fn db<T, F>(&self, point_read: bool, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = self.store();
        if point_read && store.is_embedded() {
            f(store)
        } else {
            let store = store.clone();
            web::block(move || f(&store)).await?
        }
    }

    /// The audit draft of this request's interaction (see [`Ctx::audited`]).
    pub fn draft(&self, subtype: &str, action: char, what: String) -> Draft {
        let address = self.req.peer_addr().map(|a| a.ip().to_string());
        // Searched ID and phone numbers are kept in their blind form, as the index keeps them.
        let what = self.store().protection().redact_query(&what);
        let actor = Actor::new(&self.caller, address);
        Draft::new(Arc::new(actor), subtype, action, what)
    }

    /// The audit draft of an operation: its name, and the URL path and query it was called
    /// with.
    pub fn operation(&self, op: &str) -> Draft {
        let path = self.req.path().trim_start_matches("/fhir/");
        let what = match self.req.query_string() {
            "" => path.to_owned(),
            q => format!("{path}?{q}"),
        };
        self.draft(op, 'E', what)
    }

    /// Run a handler's body and audit it before the response leaves: the events of what it
    /// returned (committed first; if the audit trail cannot be written, the caller gets a 503
    /// and no data), or, when it failed, an event with the failure's outcome. A write's events
    /// are in its own transaction; what it changed is then told to the consent engine and the
    /// other server processes.
    pub async fn audited<F>(&self, draft: Draft, body: F) -> Result<HttpResponse, ApiError>
    where
        F: Future<Output = Result<(HttpResponse, Touched), ApiError>>,
    {
        let state = &self.state;
        let epoch = self.store().context().sensitive_epoch();
        match body.await {
            Ok((resp, None)) => {
                // A write (committed): if it touched a Consent, decisions reload.
                let consent_write = draft.what.starts_with("Consent") || draft.what == "Bundle";
                if consent_write {
                    state.doors.consent.changed();
                }
                // Also a write that made a type hold sensitive data (this store's epoch moved):
                // the other processes read the list again.
                if consent_write || self.store().context().sensitive_epoch() != epoch {
                    state.publish(Change::Consent);
                }
                // A merge moves Consents' residents without a new Consent version.
                if matches!(draft.subtype.as_str(), "$merge" | "$unmerge") {
                    state.doors.consent.reload();
                    state.publish(Change::Residents);
                }
                Ok(resp)
            }
            Ok((resp, Some(touched))) => {
                let draft = self.with_grants(draft).await?;
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
                        .doors
                        .grants
                        .grant(self.store(), &draft.actor.sub, residents, reason)
                        .await?;
                    state.publish(Change::Grants(draft.actor.sub.clone()));
                }
                Ok(resp)
            }
            Err(e) => {
                state
                    .audit
                    .record(draft.events(&[], super::error::audit_outcome(&e)))
                    .await?;
                Err(e)
            }
        }
    }

    /// A doctor's draft with the emergency grants running now: accesses to those residents are
    /// audited as break-glass.
    async fn with_grants(&self, mut draft: Draft) -> Result<Draft, ApiError> {
        if draft.actor.break_glass.is_some() {
            return Ok(draft);
        }
        // Acting for coordination of care: accesses under a referral name its Task.
        if matches!(draft.actor.role, Role::His | Role::Doctor)
            && draft.actor.purpose.as_deref() == Some(crate::services::access::consent::COC)
            && let Some(org) = draft.actor.org.clone()
        {
            let referrals = self.state.doors.referrals.clone();
            draft.referred = match referrals.cached(&org) {
                Some(open) => open,
                None => {
                    self.db(true, move |store| referrals.open_in(store, &org))
                        .await?
                }
            };
        }
        if draft.actor.role != Role::Doctor {
            return Ok(draft);
        }
        // Read for this request's access filter a moment ago, as a rule: no database hop then.
        if let Some(g) = self.state.doors.grants.cached(&draft.actor.sub) {
            draft.granted = g;
            return Ok(draft);
        }
        let (grants, sub) = (self.state.doors.grants.clone(), draft.actor.sub.clone());
        draft.granted = self
            .db(true, move |store| grants.active_in(store, &sub))
            .await?;
        Ok(draft)
    }

    /// The public base URL of the FHIR endpoint, without a trailing slash (`base_url` when
    /// set).
    pub fn base_url(&self) -> String {
        base_url(&self.req, &self.state)
    }

    /// The page size a request asks for with `_count` (the default without it, capped at the
    /// maximum).
    pub fn page_size(&self, pairs: &[(String, String)]) -> Result<i64, ApiError> {
        let settings = &self.state.settings;
        let Some((_, v)) = pairs.iter().find(|(k, _)| k == "_count") else {
            return Ok(i64::from(settings.page_size_default));
        };
        let n: i64 = v.parse().map_err(|_| {
            ApiError::invalid("invalid", "_count", format!("_count '{v}' is not a number"))
        })?;
        if n < 0 {
            return Err(ApiError::invalid(
                "invalid",
                "_count",
                "_count must not be negative",
            ));
        }
        Ok(n.min(i64::from(settings.page_size_max)))
    }

    /// The links of one page: `self`, `first` (when `with_first` and this is not the first
    /// page) and `next` (when there is a next page: its cursor).
    pub fn page_links(
        &self,
        pairs: &[(String, String)],
        cursor: Option<&str>,
        with_first: bool,
        next: Option<&str>,
    ) -> Vec<Link> {
        let mut links = vec![Link {
            relation: "self",
            url: self.page_url(pairs, cursor),
        }];
        if with_first && cursor.is_some() {
            links.push(Link {
                relation: "first",
                url: self.page_url(pairs, None),
            });
        }
        if let Some(next) = next {
            links.push(Link {
                relation: "next",
                url: self.page_url(pairs, Some(next)),
            });
        }
        links
    }

    /// The request URL with `_cursor` replaced, for paging links.
    fn page_url(&self, pairs: &[(String, String)], cursor: Option<&str>) -> String {
        let base = self.base_url();
        let path = self.req.path();
        let path = path.strip_prefix("/fhir").unwrap_or(path);
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if k != "_cursor" {
                ser.append_pair(k, v);
            }
        }
        if let Some(c) = cursor {
            ser.append_pair("_cursor", c);
        }
        match ser.finish() {
            q if q.is_empty() => format!("{base}{path}"),
            q => format!("{base}{path}?{q}"),
        }
    }
}

/// The public base URL of the FHIR endpoint, without a trailing slash (`base_url` when set);
/// also for the few answers that need no caller (the CapabilityStatement).
pub fn base_url(req: &HttpRequest, state: &AppState) -> String {
    match &state.settings.base_url {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None if state.settings.trust_forwarded => {
            let info = req.connection_info();
            format!("{}://{}/fhir", info.scheme(), info.host())
        }
        // The connection's own scheme and the Host header: a client's X-Forwarded-Host does
        // not choose where the links and locations of the answer point.
        None => {
            let config = req.app_config();
            let scheme = if config.secure() { "https" } else { "http" };
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or(config.host());
            format!("{scheme}://{host}/fhir")
        }
    }
}

/// Decode `application/x-www-form-urlencoded` pairs (a query string or a form body).
pub fn pairs_of(encoded: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A resource type from the URL: 404 when FHIR R4B has no such type.
pub fn resource_type(t: &str) -> Result<&str, ApiError> {
    if huimin_model::is_resource_type(t) {
        Ok(t)
    } else {
        Err(ApiError::NotFound(format!(
            "'{t}' is not a resource type this server knows"
        )))
    }
}

/// A resource id from the URL: 400 when it is not a FHIR id.
pub fn resource_id(id: &str) -> Result<&str, ApiError> {
    if is_valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request(format!(
            "'{id}' is not a valid resource id"
        )))
    }
}

/// Check the type (404 when unknown), the caller's scope for `perms` on it, and the id syntax.
pub fn authorize(
    caller: &Caller,
    perms: &[Perm],
    t: &str,
    id: Option<&str>,
) -> Result<(), ApiError> {
    resource_type(t)?;
    for p in perms {
        caller.require(*p, Some(t))?;
    }
    if let Some(id) = id {
        resource_id(id)?;
    }
    Ok(())
}

/// A `_since` value: a FHIR instant, as ms.
pub fn since_param(v: &str) -> Result<i64, ApiError> {
    crate::clock::parse_fhir_datetime(v).ok_or_else(|| {
        ApiError::invalid(
            "invalid",
            "_since",
            format!("_since '{v}' is not a FHIR instant"),
        )
    })
}

/// A `_cursor` of a page across types: `Type/id`.
pub fn type_cursor(v: &str) -> Result<(String, String), ApiError> {
    match v.split_once('/') {
        Some((t, id)) if huimin_model::is_resource_type(t) && is_valid_id(id) => {
            Ok((t.to_owned(), id.to_owned()))
        }
        _ => Err(ApiError::invalid(
            "invalid",
            "_cursor",
            "invalid paging cursor",
        )),
    }
}
