//! `GET [type]/[id]` (read, with `If-None-Match` and `If-Modified-Since`) and
//! `GET [type]/[id]/_history/[vid]` (vread). A hidden record answers as an absent one.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::api::ctx::Ctx;
use crate::api::respond::{self, Body};
use crate::auth::Perm;
use crate::clock;
use crate::error::ApiError;
use crate::services::record::{self, Record};

pub async fn read(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let draft = ctx.draft("read", 'R', format!("{t}/{id}"));
    ctx.audited(draft, async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Read], &t, Some(&id))?;
        let access = ctx.access().await?;
        let (tt, ii) = (t.clone(), id.clone());
        let rec = ctx
            .db(true, move |store| {
                record::read_for(store, &access, &tt, &ii)
            })
            .await?;
        let touched = Some(vec![(format!("{t}/{id}"), rec.resident.clone())]);
        if let Some(inm) = ctx.header("if-none-match")
            && inm.trim() == format!("W/\"{}\"", rec.version_id)
        {
            return Ok((HttpResponse::NotModified().finish(), touched));
        }
        if let Some(ims) = ctx
            .header("if-modified-since")
            .and_then(clock::parse_http_date)
            && rec.last_updated / 1000 <= ims / 1000
        {
            return Ok((HttpResponse::NotModified().finish(), touched));
        }
        Ok((found(neg, rec)?, touched))
    })
    .await
}

pub async fn vread(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (t, id, vid) = path.into_inner();
    let draft = ctx.draft("vread", 'R', format!("{t}/{id}/_history/{vid}"));
    ctx.audited(draft, async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Read], &t, Some(&id))?;
        let vid: i64 = vid
            .parse()
            .map_err(|_| ApiError::NotFound(format!("'{vid}' is not a version of {t}/{id}")))?;
        let access = ctx.access().await?;
        let (tt, ii) = (t.clone(), id.clone());
        // A hidden version answers as an absent one.
        let rec = ctx
            .db(true, move |store| {
                record::vread_for(store, &access, &tt, &ii, vid)
            })
            .await?;
        let touched = Some(vec![(format!("{t}/{id}"), rec.resident.clone())]);
        Ok((found(neg, rec)?, touched))
    })
    .await
}

/// A 200 with the resource, for read and vread.
fn found(neg: crate::api::format::Negotiated, rec: Record) -> Result<HttpResponse, ApiError> {
    respond::resource(neg, StatusCode::OK, rec, Body::Representation, None)
}
