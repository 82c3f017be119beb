//! `AuditEvent` read and search, served from the audit trail (not from the resource store).
//!
//! - A resident (role `resident`, `fhirUser` a Patient) lists who accessed their own record:
//!   `GET AuditEvent` (or `AuditEvent?patient=<their Patient>`), newest first. Any other
//!   patient is 403; another resident's record read by id answers as an absent one.
//! - Reading the trail is itself audited: each record read is noted with the resident it
//!   concerns, who then sees that the accesses to their record were read.
//! - An administrator lists and reads every record (`patient`, `date`, `_count`, paging).
//! - Everybody else gets 403: the trail names who saw which resident, which is itself personal.
//! - AuditEvents are written by the server only: create, update, patch and delete are 405.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::ctx::{Ctx, Touched, resource_id};
use super::{format, respond};
use crate::auth::Perm;
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle;
use crate::fhir::json::Json;
use crate::services::audit;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/AuditEvent")
            .name("audit-search")
            .get(search)
            .post(refuse)
            .put(refuse)
            .delete(refuse),
    )
    .service(
        web::resource("/AuditEvent/{id}")
            .name("audit-read")
            .get(read)
            .put(refuse)
            .patch(refuse)
            .delete(refuse),
    );
}

async fn refuse() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(
        "AuditEvents are recorded by the server and cannot be created, changed or deleted"
            .to_owned(),
    ))
}

/// Whose records the caller may see (see [`audit::readable_by`]).
async fn visible_to(ctx: &Ctx) -> Result<Option<String>, ApiError> {
    let caller = ctx.caller.clone();
    let doors = ctx.state.doors.clone();
    ctx.db(false, move |store| {
        audit::readable_by(store, &caller, &doors)
    })
    .await
}

/// The golden resident a `patient` parameter names (`Patient/id`, `id` or an absolute URL).
async fn golden_of_param(ctx: &Ctx, v: &str) -> Result<Option<String>, ApiError> {
    let id = v.rsplit_once("Patient/").map_or(v, |(_, id)| id);
    let id = resource_id(id)?.to_owned();
    ctx.db(false, move |store| audit::resident_of_patient(store, &id))
        .await
}

/// What a page of audit records touched, for the audit trail of reading it: each record, and
/// the resident it concerns (who then sees that their record's accesses were read).
fn touched_by(rows: &[audit::Event]) -> Touched {
    Some(
        rows.iter()
            .map(|e| (format!("AuditEvent/{}", e.id), e.resident.clone()))
            .collect(),
    )
}

/// `GET AuditEvent?…`, itself audited: the trail names who saw which resident's record.
async fn search(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let what = match ctx.req.query_string() {
        "" => "AuditEvent".to_owned(),
        q => format!("AuditEvent?{q}"),
    };
    let draft = ctx.draft("search-type", 'E', what);
    ctx.audited(draft, search_page(&ctx)).await
}

async fn search_page(ctx: &Ctx) -> Result<(HttpResponse, Touched), ApiError> {
    ctx.caller.require(Perm::Search, Some("AuditEvent"))?;
    let neg = ctx.negotiate()?;
    let pairs = ctx.query();
    let own = visible_to(ctx).await?;
    let (mut patient, mut since, mut until, mut before) = (None, None, None, None);
    let mut flagged = false;
    for (k, v) in &pairs {
        match k.as_str() {
            "patient" | "entity" => {
                patient = Some(
                    golden_of_param(ctx, v)
                        .await?
                        .unwrap_or_else(|| "-".to_owned()),
                );
            }
            "date" => {
                let (prefix, value) = if v.len() > 2 && v.is_char_boundary(2) {
                    v.split_at(2)
                } else {
                    ("eq", v.as_str())
                };
                let (prefix, value) = if prefix.chars().all(|c| c.is_ascii_lowercase()) {
                    (prefix, value)
                } else {
                    ("eq", v.as_str())
                };
                let (low, high) = clock::period_of(value).ok_or_else(|| {
                    ApiError::invalid("invalid", "date", format!("date '{v}' is not a FHIR date"))
                })?;
                match prefix {
                    "ge" | "gt" => since = Some(low),
                    "le" | "lt" => until = Some(high),
                    "eq" => (since, until) = (Some(low), Some(high)),
                    other => {
                        return Err(ApiError::invalid(
                            "not-supported",
                            "date",
                            format!("the date prefix '{other}' is not supported here"),
                        ));
                    }
                }
            }
            "purpose" if v == "BTG" => flagged = true,
            "_cursor" => {
                before = Some(v.parse::<i64>().map_err(|_| {
                    ApiError::invalid("invalid", "_cursor", "invalid paging cursor")
                })?);
            }
            "_count" | "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::invalid(
                    "not-supported",
                    other,
                    format!("'{other}' is not an AuditEvent search parameter here"),
                ));
            }
        }
    }
    let resident = match (own, patient) {
        (None, p) => p,
        (Some(own), None) => Some(own),
        (Some(own), Some(p)) if p == own => Some(own),
        (Some(_), Some(_)) => {
            return Err(ApiError::Forbidden(
                "a resident can list the accesses to their own record only".to_owned(),
            ));
        }
    };
    let count = ctx.page_size(&pairs)?;
    // This process's latest records first reach the database (the audit log is copied behind).
    ctx.state.audit.flush().await;
    let query = audit::TrailQuery {
        resident,
        flagged,
        since,
        until,
        before,
        limit: count + 1,
    };
    let mut rows = ctx
        .db(false, move |store| audit::list(store, &query))
        .await?;
    let more = rows.len() as i64 > count;
    rows.truncate(usize::try_from(count).unwrap_or(0));
    let base = ctx.base_url();
    let next = rows.last().filter(|_| more).map(|last| last.id.to_string());
    let before = before.map(|b| b.to_string());
    let links = ctx.page_links(&pairs, before.as_deref(), false, next.as_deref());
    let entries: Vec<Json> = rows
        .iter()
        .map(|e| {
            bundle::search_entry(
                &format!("{base}/AuditEvent/{}", e.id),
                audit::as_resource(e).to_string(),
                "match",
            )
        })
        .collect();
    let touched = touched_by(&rows);
    Ok((
        respond::bundle(neg, "searchset", None, links, entries)?,
        touched,
    ))
}

/// `GET AuditEvent/[id]`, itself audited.
async fn read(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let draft = ctx.draft("read", 'R', format!("AuditEvent/{raw}"));
    ctx.audited(draft, read_one(&ctx, raw)).await
}

async fn read_one(ctx: &Ctx, raw: String) -> Result<(HttpResponse, Touched), ApiError> {
    ctx.caller.require(Perm::Read, Some("AuditEvent"))?;
    let neg = ctx.negotiate()?;
    let id: i64 = raw
        .parse()
        .map_err(|_| ApiError::NotFound(format!("AuditEvent/{raw} does not exist")))?;
    let own = visible_to(ctx).await?;
    let found = ctx.db(false, move |store| audit::find(store, id)).await?;
    let Some(e) = found else {
        return Err(ApiError::NotFound(format!(
            "AuditEvent/{id} does not exist"
        )));
    };
    // Another resident's record answers as an absent one.
    if let Some(own) = own
        && e.resident.as_deref() != Some(own.as_str())
    {
        return Err(ApiError::NotFound(format!(
            "AuditEvent/{id} does not exist"
        )));
    }
    let touched = touched_by(std::slice::from_ref(&e));
    let resp = format::respond(neg, StatusCode::OK).body(format::encode_stored(
        neg,
        audit::as_resource(&e).to_string(),
    )?);
    Ok((resp, touched))
}
