//! History at every level: `GET _history`, `GET [type]/_history`, `GET [type]/[id]/_history`,
//! newest first, paged by version (`_count`, `_since`, `next` links), of what the caller may
//! see ([`record::history`]).

use actix_web::{HttpResponse, web};

use crate::api::ctx::{Ctx, Touched, since_param};
use crate::api::respond;
use crate::auth::Perm;
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle;
use crate::services::record::{self, HistoryScope};

/// The scope of a history request, owned so it can move to the blocking pool.
enum Scope {
    System,
    Type(String),
    Instance(String, String),
}

pub async fn system(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    history(ctx, Scope::System).await
}

pub async fn of_type(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    history(ctx, Scope::Type(path.into_inner())).await
}

pub async fn of_instance(
    ctx: Ctx,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    history(ctx, Scope::Instance(t, id)).await
}

async fn history(ctx: Ctx, scope: Scope) -> Result<HttpResponse, ApiError> {
    let (subtype, what) = match &scope {
        Scope::System => ("history-system", "_history".to_owned()),
        Scope::Type(t) => ("history-type", format!("{t}/_history")),
        Scope::Instance(t, id) => ("history-instance", format!("{t}/{id}/_history")),
    };
    let what = match ctx.req.query_string() {
        "" => what,
        q => format!("{what}?{q}"),
    };
    let draft = ctx.draft(subtype, 'R', what);
    ctx.audited(draft, page(&ctx, scope)).await
}

/// The history parameters this server takes; the others are refused by name.
fn check_params(pairs: &[(String, String)]) -> Result<(), ApiError> {
    for (k, _) in pairs {
        if matches!(k.as_str(), "_at" | "_list" | "_sort") {
            return Err(ApiError::invalid(
                "not-supported",
                k.as_str(),
                format!("'{k}' is not supported on history yet"),
            ));
        }
        if !matches!(
            k.as_str(),
            "_count" | "_since" | "_cursor" | "_format" | "_pretty"
        ) {
            return Err(ApiError::invalid(
                "not-supported",
                k.as_str(),
                format!("'{k}' is not a history parameter"),
            ));
        }
    }
    Ok(())
}

async fn page(ctx: &Ctx, scope: Scope) -> Result<(HttpResponse, Touched), ApiError> {
    match &scope {
        Scope::System => ctx.caller.require(Perm::Read, None)?,
        Scope::Type(t) => ctx.authorize(&[Perm::Read], t, None)?,
        Scope::Instance(t, id) => ctx.authorize(&[Perm::Read], t, Some(id))?,
    }
    let neg = ctx.negotiate()?;
    let pairs = ctx.query();
    check_params(&pairs)?;
    let count = ctx.page_size(&pairs)?;
    let since = match pairs.iter().find(|(k, _)| k == "_since") {
        None => None,
        Some((_, v)) => Some(since_param(v)?),
    };
    let cursor = match pairs.iter().find(|(k, _)| k == "_cursor") {
        None => None,
        Some((_, v)) => Some(
            v.parse::<i64>()
                .map_err(|_| ApiError::invalid("invalid", "_cursor", "invalid paging cursor"))?,
        ),
    };
    let access = ctx.access().await?;
    let page = ctx
        .db(false, move |store| {
            let scope = match &scope {
                Scope::System => HistoryScope::System,
                Scope::Type(t) => HistoryScope::Type(t),
                Scope::Instance(t, id) => HistoryScope::Instance(t, id),
            };
            record::history(store, &access, scope, since, cursor, count)
        })
        .await?;
    let base = ctx.base_url();
    let next = page.next.map(|seq| seq.to_string());
    let cursor = cursor.map(|c| c.to_string());
    let links = ctx.page_links(&pairs, cursor.as_deref(), true, next.as_deref());
    let entries = page
        .versions
        .into_iter()
        .map(|v| {
            let full = format!("{base}/{}/{}", v.res_type, v.res_id);
            let (request_url, status) = match v.method.as_str() {
                "POST" => (v.res_type.clone(), "201 Created"),
                "DELETE" => (format!("{}/{}", v.res_type, v.res_id), "204 No Content"),
                _ => (format!("{}/{}", v.res_type, v.res_id), "200 OK"),
            };
            let created = v.version_id == 1 && v.method != "POST";
            let etag = format!("W/\"{}\"", v.version_id);
            let content = (!v.deleted).then_some(v.content);
            bundle::history_entry(
                &full,
                content,
                &v.method,
                &request_url,
                status,
                &etag,
                &clock::instant(v.last_updated),
                created,
            )
        })
        .collect();
    Ok((
        respond::bundle(neg, "history", None, links, entries)?,
        Some(page.touched),
    ))
}
