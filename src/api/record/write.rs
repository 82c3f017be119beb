//! The writes: `POST [type]` (create, conditional with `If-None-Exist`), `PUT [type]/[id]`
//! (update, or create at that id when the scopes allow), `PUT [type]?criteria` (conditional
//! update), `PATCH [type]/[id]` (JSON Patch), `DELETE [type]/[id]` and `DELETE [type]?criteria`.
//! Each runs one [`crate::services::record`] write through the caller's [`Guard`] (custody and
//! access) and is audited in its own transaction.
//!
//! [`Guard`]: crate::services::access::Guard

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::{conditional, if_match, if_none_exist, parse_query, prefer_return};
use crate::api::ctx::{Ctx, Touched};
use crate::api::format::{self, Negotiated};
use crate::api::respond::{self, Body};
use crate::auth::Perm;
use crate::error::ApiError;
use crate::fhir::outcome::{Issue, OperationOutcome};
use crate::services::access::Guard;
use crate::services::audit::Draft;
use crate::services::record::{self, Record, Written};
use crate::services::scheduling::book::{self, RestWrite};

pub async fn create(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let t = path.into_inner();
    let draft = ctx.draft("create", 'C', t.clone());
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Create], &t, None)?;
        let tree = format::read_resource(&ctx.req, &body, Some(&t))?;
        let criteria = match ctx.header("if-none-exist") {
            Some(q) => {
                ctx.caller.require(Perm::Search, Some(&t))?;
                Some(if_none_exist(&ctx, &t, q)?)
            }
            None => None,
        };
        let guard = ctx.guard().await?;
        let tt = t.clone();
        let (rec, w) = ctx
            .db(false, move |store| {
                record::create(store, guard, &tt, tree, criteria, draft)
            })
            .await?;
        written(&ctx, neg, status_of(w), rec)
    })
    .await
}

pub async fn update(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let draft = ctx.draft("update", 'U', format!("{t}/{id}"));
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Update], &t, Some(&id))?;
        let tree = format::read_resource(&ctx.req, &body, Some(&t))?;
        let im = if_match(&ctx)?;
        let guard = ctx.guard().await?;
        if let Some(rec) = pool_write(
            &ctx,
            &t,
            &id,
            &guard,
            || RestWrite::Put(tree.clone()),
            im,
            &draft,
        )
        .await?
        {
            return written(&ctx, neg, StatusCode::OK, rec);
        }
        let may_create = ctx.caller.require(Perm::Create, Some(&t)).is_ok();
        let (tt, ii) = (t.clone(), id.clone());
        let (rec, w) = ctx
            .db(false, move |store| {
                record::update(store, guard, &tt, &ii, tree, im, may_create, draft)
            })
            .await?;
        written(&ctx, neg, status_of(w), rec)
    })
    .await
}

pub async fn conditional_update(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let t = path.into_inner();
    let draft = ctx.draft("update", 'U', format!("{t}?{}", ctx.req.query_string()));
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Update, Perm::Search], &t, None)?;
        let criteria = conditional(&ctx, &t, &ctx.query())?;
        let tree = format::read_resource(&ctx.req, &body, Some(&t))?;
        let im = if_match(&ctx)?;
        let may_create = ctx.caller.require(Perm::Create, Some(&t)).is_ok();
        let guard = ctx.guard().await?;
        let tt = t.clone();
        let (rec, w) = ctx
            .db(false, move |store| {
                record::conditional_update(store, guard, &tt, criteria, tree, im, may_create, draft)
            })
            .await?;
        written(&ctx, neg, status_of(w), rec)
    })
    .await
}

pub async fn patch(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let draft = ctx.draft("patch", 'U', format!("{t}/{id}"));
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Update], &t, Some(&id))?;
        if !ctx
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json-patch+json")
        {
            return Err(ApiError::UnsupportedMediaType(
                "PATCH takes a JSON Patch document (Content-Type: application/json-patch+json)"
                    .to_owned(),
            ));
        }
        let patch: json_patch::Patch = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body is not a JSON Patch document: {e}"))
        })?;
        let im = if_match(&ctx)?;
        let guard = ctx.guard().await?;
        if let Some(rec) = pool_write(
            &ctx,
            &t,
            &id,
            &guard,
            || RestWrite::Patch(patch.clone()),
            im,
            &draft,
        )
        .await?
        {
            return written(&ctx, neg, StatusCode::OK, rec);
        }
        let (tt, ii) = (t.clone(), id.clone());
        let rec = ctx
            .db(false, move |store| {
                record::patch(store, guard, &tt, &ii, &patch, im, draft)
            })
            .await?;
        written(&ctx, neg, StatusCode::OK, rec)
    })
    .await
}

pub async fn delete(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let what = format!("{t}/{id}");
    let draft = ctx.draft("delete", 'D', what.clone());
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Delete], &t, Some(&id))?;
        let guard = ctx.guard().await?;
        let (tt, ii) = (t.clone(), id.clone());
        let v = ctx
            .db(false, move |store| {
                record::delete(store, guard, &tt, &ii, draft)
            })
            .await?;
        Ok((deleted(&ctx, neg, v, &what)?, None))
    })
    .await
}

pub async fn conditional_delete(
    ctx: Ctx,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let t = path.into_inner();
    let draft = ctx.draft("delete", 'D', format!("{t}?{}", ctx.req.query_string()));
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Delete, Perm::Search], &t, None)?;
        let criteria = parse_query(&ctx, &t, &ctx.query())?;
        let guard = ctx.guard().await?;
        let tt = t.clone();
        let v = ctx
            .db(false, move |store| {
                record::conditional_delete(store, guard, &tt, criteria, draft)
            })
            .await?;
        Ok((deleted(&ctx, neg, v, &t)?, None))
    })
    .await
}

/// A `PUT` or `PATCH` of an Appointment holding a place of the slot pool is a booking's status
/// change, made by the booking service (`None`: not such an Appointment).
async fn pool_write(
    ctx: &Ctx,
    t: &str,
    id: &str,
    guard: &Guard,
    write: impl FnOnce() -> RestWrite,
    if_match: Option<i64>,
    draft: &Draft,
) -> Result<Option<Record>, ApiError> {
    if t != "Appointment" {
        return Ok(None);
    }
    // Only an Appointment's write is copied for the booking service to look at.
    let write = write();
    let (guard, id, draft) = (guard.clone(), id.to_owned(), draft.clone());
    let rec = ctx
        .db(false, move |store| {
            book::rest_write(store, guard, &id, write, if_match, draft)
        })
        .await?;
    if let Some(rec) = &rec {
        ctx.state.full_slots.freed(rec);
    }
    Ok(rec)
}

/// The answer to a write, whose audit events its transaction already holds.
fn written(
    ctx: &Ctx,
    neg: Negotiated,
    status: StatusCode,
    rec: Record,
) -> Result<(HttpResponse, Touched), ApiError> {
    let body = prefer_return(ctx, Body::Representation);
    let base = ctx.base_url();
    let resp = respond::resource(neg, status, rec, body, Some(&base))?;
    Ok((resp, None))
}

fn status_of(w: Written) -> StatusCode {
    match w {
        Written::Created => StatusCode::CREATED,
        Written::Updated | Written::Matched => StatusCode::OK,
    }
}

/// The answer to a delete: 204, or 200 with an OperationOutcome when asked for one.
fn deleted(
    ctx: &Ctx,
    neg: Negotiated,
    version: Option<i64>,
    what: &str,
) -> Result<HttpResponse, ApiError> {
    let outcome = prefer_return(ctx, Body::Representation) == Body::Outcome;
    let mut b = if outcome {
        format::respond(neg, StatusCode::OK)
    } else {
        HttpResponse::build(StatusCode::NO_CONTENT)
    };
    if let Some(v) = version {
        b.insert_header((header::ETAG, format!("W/\"{v}\"")));
    }
    if !outcome {
        return Ok(b.finish());
    }
    let text = match version {
        Some(_) => format!("{what} deleted"),
        None => format!("{what}: nothing to delete"),
    };
    let oo = OperationOutcome {
        issues: vec![Issue::information("informational", text)],
    };
    Ok(b.body(format::encode(neg, &oo.to_json())?))
}
