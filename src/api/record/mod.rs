//! The FHIR RESTful interactions on stored resources: read and vread ([`read`]), create, update,
//! patch and delete, conditional or not ([`write`]), history at every level ([`history`]) and
//! search by type, compartment and across types ([`search`]). Each handler builds its request
//! from the URL, headers and body, and calls one function of [`crate::services::record`],
//! where the caller's access is applied.
//!
//! Also here, the request parsing that bundle entries share with the REST interactions
//! (conditional criteria, version ETags, `Prefer`).

pub mod history;
pub mod read;
pub mod search;
pub mod write;

use actix_web::web;

use super::ctx::{Ctx, pairs_of};
use super::respond::Body;
use crate::error::ApiError;
use crate::fhir::search::{self as fhir_search, Query};
use crate::services::record::Criteria;

/// Register the resource routes (under `/fhir`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/_history")
            .name("history-system")
            .get(history::system),
    )
    .service(
        web::resource("/{type}")
            .name("type")
            .get(search::by_type)
            .post(write::create)
            .put(write::conditional_update)
            .delete(write::conditional_delete),
    )
    .service(
        web::resource("/{type}/_search")
            .name("search-post")
            .post(search::by_form),
    )
    .service(
        web::resource("/{type}/_history")
            .name("history-type")
            .get(history::of_type),
    )
    .service(
        web::resource("/{type}/{id}")
            .name("instance")
            .get(read::read)
            .put(write::update)
            .patch(write::patch)
            .delete(write::delete),
    )
    .service(
        web::resource("/{type}/{id}/_history")
            .name("history-instance")
            .get(history::of_instance),
    )
    .service(
        web::resource("/{type}/{id}/_history/{vid}")
            .name("vread")
            .get(read::vread),
    )
    .service(
        web::resource("/{compartment}/{id}/{type}")
            .name("search-compartment")
            .get(search::in_compartment),
    );
}

/// A version ETag (`W/"3"`, `"3"` or `3`).
pub(crate) fn parse_etag(v: &str) -> Result<i64, ApiError> {
    let t = v.trim();
    let t = t.strip_prefix("W/").unwrap_or(t).trim_matches('"');
    t.parse::<i64>().map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match '{v}' is not a version ETag such as W/\"3\""
        ))
    })
}

/// `If-Match: W/"3"` → 3.
fn if_match(ctx: &Ctx) -> Result<Option<i64>, ApiError> {
    ctx.header("if-match").map(parse_etag).transpose()
}

/// What `Prefer: return=…` asks for, or `default` when it asks nothing of the return.
pub(crate) fn prefer_return(ctx: &Ctx, default: Body) -> Body {
    let prefer = ctx.header("prefer").unwrap_or("");
    for p in prefer.split([',', ';']) {
        match p.trim() {
            "return=minimal" => return Body::Minimal,
            "return=OperationOutcome" => return Body::Outcome,
            "return=representation" => return Body::Representation,
            _ => {}
        }
    }
    default
}

/// Whether `Prefer: handling=lenient` asks to ignore unknown search parameters.
fn lenient(ctx: &Ctx) -> bool {
    ctx.header("prefer")
        .is_some_and(|p| p.split([',', ';']).any(|x| x.trim() == "handling=lenient"))
}

/// The search criteria of `pairs` on type `t` (400 naming an unknown or malformed parameter).
pub(crate) fn parse_query(
    ctx: &Ctx,
    t: &str,
    pairs: &[(String, String)],
) -> Result<Query, ApiError> {
    fhir_search::parse(t, pairs, &ctx.base_url(), lenient(ctx))
        .map_err(|i| ApiError::Invalid(vec![i]))
}

/// Conditional criteria with their canonical key (result parameters such as `_format` left
/// out of the key).
pub(crate) fn conditional(
    ctx: &Ctx,
    t: &str,
    pairs: &[(String, String)],
) -> Result<Criteria, ApiError> {
    let query = parse_query(ctx, t, pairs)?;
    let selecting: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !fhir_search::RESULT_PARAMS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(Criteria::new(query, &selecting))
}

/// The criteria of an `If-None-Exist` header or a bundle entry's `ifNoneExist`: a query,
/// optionally written as `?query` or `Type?query`.
pub(crate) fn if_none_exist(ctx: &Ctx, t: &str, value: &str) -> Result<Criteria, ApiError> {
    let q = value.trim_start_matches('?');
    let q = q.rsplit_once('?').map_or(q, |(_, after)| after);
    conditional(ctx, t, &pairs_of(q.as_bytes()))
}
