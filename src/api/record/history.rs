//! History at every level: `GET _history`, `GET [type]/_history`, `GET [type]/[id]/_history`,
//! newest first, paged by version (`_count`, `_since`, `next` links). Across resources it
//! leaves out the versions of resources the caller may not see; an instance the caller may not
//! see answers as an absent one.

use std::collections::HashMap;

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
    let access = ctx.access().await?;
    // History across resources leaves out the versions of resources the caller may not see
    // (a page may then hold fewer entries than `_count`; it carries no total).
    let filtered = match &scope {
        Scope::Instance(..) => false,
        Scope::Type(t) => access.may_hide(Some(t)),
        Scope::System => access.may_hide(None),
    };
    let instance = match &scope {
        Scope::Instance(t, id) => Some((t.clone(), id.clone())),
        _ => None,
    };
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
    let ((rows, more, last_seq), touched) = ctx
        .db(false, move |store| {
            let scope = match &scope {
                Scope::System => HistoryScope::System,
                Scope::Type(t) => HistoryScope::Type(t),
                Scope::Instance(t, id) => HistoryScope::Instance(t, id),
            };
            let (mut rows, more) = record::history(store, scope, since, cursor, count)?;
            let last_seq = rows.last().map(|v| v.seq);
            let keys: Vec<(&str, &str)> = rows
                .iter()
                .map(|v| (v.res_type.as_str(), v.res_id.as_str()))
                .collect();
            let mut touched = store.read(|conn| record::residents(conn, &keys))?;
            if filtered {
                let mut verdicts: HashMap<String, bool> = HashMap::new();
                let mut keep = Vec::with_capacity(rows.len());
                for ((key, resident), v) in touched.iter().zip(&rows) {
                    let shown = match verdicts.get(key) {
                        Some(b) => *b,
                        None => {
                            let b = store.read(|c| {
                                access.visible(c, &v.res_type, &v.res_id, resident.as_deref())
                            })?;
                            verdicts.insert(key.clone(), b);
                            b
                        }
                    };
                    keep.push(shown);
                }
                let mut k = keep.iter();
                rows.retain(|_| k.next().copied().unwrap_or(false));
                let mut k = keep.iter();
                touched.retain(|_| k.next().copied().unwrap_or(false));
            }
            if let Some((t, id)) = instance {
                let resident = touched.first().and_then(|(_, r)| r.as_deref());
                if !access.visible_in(store, &t, &id, resident)? {
                    return Err(access.hidden(&t, &id));
                }
            }
            Ok(((rows, more, last_seq), touched))
        })
        .await?;
    let base = ctx.base_url();
    // The next page starts after the last version read, shown or not.
    let next = last_seq.filter(|_| more).map(|seq| seq.to_string());
    let cursor = cursor.map(|c| c.to_string());
    let links = ctx.page_links(&pairs, cursor.as_deref(), true, next.as_deref());
    let entries = rows
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
        Some(touched),
    ))
}
