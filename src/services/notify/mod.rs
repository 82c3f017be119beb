//! Notifications that reach the hospital systems (subscribe/publish, WS/T 790 service 14):
//! FHIR R4B `Subscription` with `channel.type` `rest-hook`.
//!
//! - **Subscribing.** A Subscription names a search (`criteria`, `Type?params`: any search the
//!   server supports), an endpoint (`https`; plain `http` only to the hosts of the
//!   `subscription_http_hosts` setting, and to loopback in development mode), headers and a
//!   payload (none: the endpoint is POSTed with no body; `application/fhir+json`: a Bundle of
//!   type `history` holding the resource). It is refused (403) when the subscriber's scopes do
//!   not let it search that type, and stored `active` with who subscribed: every delivery is
//!   decided as that subscriber's read would be.
//! - **The outbox.** A create or update of a type some active Subscription searches writes one
//!   row per such Subscription into `notifications`, in the change's own transaction: nothing
//!   is lost between the write and its delivery, a restart included.
//! - **Delivery** ([`deliver`]): a background deliverer leases the oldest rows, keeps those
//!   whose resource (as it is now) matches the criteria *and* which the subscriber may read
//!   (the access door, consent included), POSTs them, and deletes what the endpoint took (2xx):
//!   at least once. A failing endpoint is retried with backoff (1 s doubling to a minute);
//!   after three failures in a row the Subscription is `error` with the reason in
//!   `Subscription.error`, and `active` again when its endpoint answers.

pub mod deliver;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Perm, Role, Scope};
use crate::error::{ApiError, WorkflowError};
use crate::fhir::json::Json;
use crate::services::access::{Guard, Writer};
use crate::services::record::Record;
use crate::store::notify::{self as rows, SubscriptionRow};
use crate::store::{Signal, Tx};

/// Who subscribed, as stored with the Subscription: deliveries are decided as this caller's
/// reads would be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscriber {
    pub sub: String,
    pub role: String,
    pub org: Option<String>,
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    pub purpose: Option<String>,
    pub scopes: Vec<String>,
}

impl Subscriber {
    pub fn of(caller: &Caller) -> Subscriber {
        Subscriber {
            sub: caller.sub.clone(),
            role: role_name(caller.role).to_owned(),
            org: caller.org.clone(),
            fhir_user: caller.fhir_user.clone(),
            area: caller.area.clone(),
            purpose: caller.purpose.clone(),
            scopes: caller
                .scopes
                .iter()
                .map(|s| {
                    format!(
                        "{}/{}.{}",
                        s.context,
                        s.resource_type.as_deref().unwrap_or("*"),
                        s.perms
                    )
                })
                .collect(),
        }
    }

    /// The caller the subscriber is (never an emergency access).
    pub fn caller(&self) -> Option<Caller> {
        Some(Caller {
            sub: self.sub.clone(),
            role: self.role.parse().ok()?,
            org: self.org.clone(),
            fhir_user: self.fhir_user.clone(),
            area: self.area.clone(),
            scopes: self.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            break_glass: None,
            purpose: self.purpose.clone(),
        })
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::His => "his",
        Role::Doctor => "doctor",
        Role::Resident => "resident",
        Role::Official => "official",
        Role::Admin => "admin",
    }
}

/// Where notifications may go: `https` anywhere, plain `http` only to these hosts.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub http_hosts: Vec<String>,
}

fn malformed(element: &str, why: impl Into<String>) -> ApiError {
    WorkflowError::malformed(element, why).into()
}

/// A Subscription as `guard`'s caller writes it, checked: its row (without its id), and the
/// tree made `active` when it was `requested`. `None` for any other type.
pub fn check(guard: &Guard, t: &str, tree: &mut Json) -> Result<Option<SubscriptionRow>, ApiError> {
    if t != "Subscription" {
        return Ok(None);
    }
    let Some(caller) = guard.caller.as_deref() else {
        // The platform's own writes (none subscribe).
        return Err(ApiError::Forbidden(
            "a Subscription is made by the system that is notified".to_owned(),
        ));
    };
    if matches!(guard.writer, Writer::Nobody | Writer::Resident { .. }) {
        return Err(ApiError::Forbidden(
            "Subscriptions are made by institutions' systems and administrators".to_owned(),
        ));
    }
    let criteria = tree.get_str("criteria").unwrap_or("").to_owned();
    let (rt, query) = criteria.split_once('?').unwrap_or((criteria.as_str(), ""));
    if !crate::fhir::definitions::DEFINITIONS.is_resource(rt) {
        return Err(malformed(
            "Subscription.criteria",
            format!("'{criteria}' is not a search: Type?parameters, of a resource type"),
        ));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    crate::fhir::search::parse(rt, &pairs, "", false).map_err(|i| {
        malformed(
            "Subscription.criteria",
            format!(
                "'{criteria}' is not a search this server runs: {}",
                i.diagnostics
            ),
        )
    })?;
    // A subscriber is told only of what it could search for itself.
    caller.require(Perm::Search, Some(rt))?;
    caller.require(Perm::Read, Some(rt))?;
    let channel = tree.get("channel");
    let kind = channel.and_then(|c| c.get_str("type")).unwrap_or("");
    if kind != "rest-hook" {
        return Err(malformed(
            "Subscription.channel.type",
            format!("channel type '{kind}' is not supported: rest-hook is"),
        ));
    }
    let endpoint = channel
        .and_then(|c| c.get_str("endpoint"))
        .unwrap_or("")
        .to_owned();
    endpoint_allowed(&endpoint, &guard.endpoints)?;
    let payload = match channel.and_then(|c| c.get_str("payload")) {
        None => None,
        Some(p @ ("application/fhir+json" | "application/json")) => Some(p.to_owned()),
        Some(p) => {
            return Err(malformed(
                "Subscription.channel.payload",
                format!("payload '{p}' is not supported: none, or application/fhir+json"),
            ));
        }
    };
    let headers: Vec<String> = match channel.and_then(|c| c.get("header")) {
        Some(Json::Array(hs)) => hs
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if let Some(bad) = headers.iter().find(|h| !valid_header(h)) {
        return Err(malformed(
            "Subscription.channel.header",
            format!(
                "'{}' is not a header 'Name: value'",
                bad.split(':').next().unwrap_or("")
            ),
        ));
    }
    let status = tree.get_str("status").unwrap_or("requested").to_owned();
    let active = match status.as_str() {
        "requested" | "active" | "error" => {
            tree.set_at("status", Json::String("active".to_owned()), 1);
            tree.remove("error");
            true
        }
        "off" => false,
        other => {
            return Err(malformed(
                "Subscription.status",
                format!("status '{other}' is not one of requested, active, error, off"),
            ));
        }
    };
    Ok(Some(SubscriptionRow {
        id: String::new(),
        res_type: rt.to_owned(),
        criteria: query.to_owned(),
        endpoint,
        headers: serde_json::to_string(&headers).map_err(ApiError::internal)?,
        payload,
        subscriber: serde_json::to_string(&Subscriber::of(caller)).map_err(ApiError::internal)?,
        active,
        failures: 0,
        retry_at: 0,
        error: None,
    }))
}

fn valid_header(h: &str) -> bool {
    match h.split_once(':') {
        Some((name, value)) => {
            !name.trim().is_empty()
                && actix_web::http::header::HeaderName::from_bytes(name.trim().as_bytes()).is_ok()
                && actix_web::http::header::HeaderValue::from_str(value.trim()).is_ok()
        }
        None => false,
    }
}

/// 422 unless `endpoint` is an `https` URL, or an `http` one to an allowed host.
fn endpoint_allowed(endpoint: &str, allowed: &Endpoints) -> Result<(), ApiError> {
    let element = "Subscription.channel.endpoint";
    let url = url::Url::parse(endpoint)
        .map_err(|_| malformed(element, format!("'{endpoint}' is not a URL")))?;
    let host = url.host_str().unwrap_or("");
    match url.scheme() {
        "https" if !host.is_empty() => Ok(()),
        "http"
            if allowed
                .http_hosts
                .iter()
                .any(|h| h == host.trim_matches(['[', ']'])) =>
        {
            Ok(())
        }
        "http" => Err(malformed(
            element,
            format!(
                "plain http goes only to the hosts of subscription_http_hosts; '{host}' is not one: use https"
            ),
        )),
        _ => Err(malformed(element, "the endpoint is an https URL")),
    }
}

/// The Subscription `rec` was stored as `row` says: its row written.
pub fn registered(
    conn: &mut Tx<'_>,
    mut row: SubscriptionRow,
    rec: &Record,
) -> Result<(), ApiError> {
    row.id = rec.id.clone();
    rows::put(conn.conn(), &row)?;
    conn.note(Signal::Subscriptions);
    Ok(())
}

/// Subscription `id` was deleted: no more notifications.
pub fn unregistered(conn: &mut Tx<'_>, id: &str) -> Result<(), ApiError> {
    rows::remove(conn.conn(), id)?;
    conn.note(Signal::Subscriptions);
    Ok(())
}

/// A version of `t/id` was written: into the outbox of the Subscriptions of `t`.
pub fn changed(
    conn: &mut Tx<'_>,
    t: &str,
    id: &str,
    version: i64,
    now: i64,
) -> Result<(), ApiError> {
    if rows::subscribed(conn, t)? {
        rows::enqueue(conn.conn(), t, id, version, now)?;
        conn.note(Signal::Outbox);
    }
    Ok(())
}

/// The access door's consultants, for deciding deliveries as the subscribers' reads.
pub type Doors = Arc<crate::services::access::Doors>;
