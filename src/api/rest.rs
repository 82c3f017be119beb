//! The FHIR RESTful interactions: read, vread, create, update, patch, delete, history (instance,
//! type, system), conditional create/update/delete and the basic type search.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::format::{self, Negotiated};
use super::{self as api, AppState, run_db};
use crate::auth::{Caller, Perm};
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle::{self, Link};
use crate::fhir::json::Json;
use crate::fhir::outcome::{Issue, OperationOutcome};
use base64::Engine as _;

use crate::fhir::search::{self, Query, SortKey};
use crate::fhir::shape::{self, Shape};
use crate::fhir::validate::is_valid_id;
use crate::services::record::{self, Record, Written};
use crate::services::record::{After, HistoryScope, SortValue, ValueType, value_type};

/// Register the resource routes (under `/fhir`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/_history")
            .name("history-system")
            .get(history_system),
    )
    .service(
        web::resource("/{type}")
            .name("type")
            .get(search)
            .post(create)
            .put(conditional_update)
            .delete(conditional_delete),
    )
    .service(
        web::resource("/{type}/_search")
            .name("search-post")
            .post(search_post),
    )
    .service(
        web::resource("/{type}/_history")
            .name("history-type")
            .get(history_type),
    )
    .service(
        web::resource("/{type}/{id}")
            .name("instance")
            .get(read)
            .put(update)
            .patch(patch)
            .delete(delete),
    )
    .service(
        web::resource("/{type}/{id}/_history")
            .name("history-instance")
            .get(history_instance),
    )
    .service(
        web::resource("/{type}/{id}/_history/{vid}")
            .name("vread")
            .get(vread),
    )
    .service(
        web::resource("/{compartment}/{id}/{type}")
            .name("search-compartment")
            .get(search_compartment),
    );
}

/// A resource type from the URL: 404 when FHIR R4B has no such type.
pub(crate) fn resource_type(t: &str) -> Result<&str, ApiError> {
    if huimin_model::is_resource_type(t) {
        Ok(t)
    } else {
        Err(ApiError::NotFound(format!(
            "'{t}' is not a resource type this server knows"
        )))
    }
}

pub(crate) fn resource_id(id: &str) -> Result<&str, ApiError> {
    if is_valid_id(id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request(format!(
            "'{id}' is not a valid resource id"
        )))
    }
}

/// The public base URL of the FHIR endpoint, without a trailing slash (`base_url` when set).
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
pub(crate) fn pairs_of(encoded: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    pairs_of(req.query_string().as_bytes())
}

/// Check the type (404 when unknown), the caller's scope for `perms` on it, and the id syntax.
pub(crate) fn authorize(
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

pub(crate) fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `If-Match: W/"3"` → 3.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(v) = header_str(req, "if-match") else {
        return Ok(None);
    };
    parse_etag(v).map(Some)
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

/// What `Prefer: return=…` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Return {
    Minimal,
    Representation,
    Outcome,
}

pub(crate) fn prefer_return(req: &HttpRequest) -> Return {
    let prefer = header_str(req, "prefer").unwrap_or("");
    for p in prefer.split([',', ';']) {
        match p.trim() {
            "return=minimal" => return Return::Minimal,
            "return=OperationOutcome" => return Return::Outcome,
            "return=representation" => return Return::Representation,
            _ => {}
        }
    }
    Return::Representation
}

pub(crate) fn page_size(pairs: &[(String, String)], state: &AppState) -> Result<i64, ApiError> {
    match pairs.iter().find(|(k, _)| k == "_count") {
        None => Ok(i64::from(state.settings.page_size_default)),
        Some((_, v)) => {
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
            Ok(n.min(i64::from(state.settings.page_size_max)))
        }
    }
}

/// Headers and body of a single-resource response.
fn resource_response(
    req: &HttpRequest,
    state: &AppState,
    neg: Negotiated,
    status: StatusCode,
    rec: Record,
    ret: Return,
    location: bool,
) -> Result<HttpResponse, ApiError> {
    let mut b = format::respond(neg, status);
    b.insert_header((header::ETAG, format!("W/\"{}\"", rec.version_id)));
    b.insert_header((header::LAST_MODIFIED, clock::http_date(rec.last_updated)));
    if location {
        let loc = format!(
            "{}/{}/{}/_history/{}",
            base_url(req, state),
            rec.res_type,
            rec.id,
            rec.version_id
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            b.insert_header((header::LOCATION, v.clone()));
            b.insert_header((header::CONTENT_LOCATION, v));
        }
    }
    match ret {
        Return::Representation => Ok(b.body(format::encode_stored(neg, rec.content)?)),
        Return::Minimal => Ok(b.finish()),
        Return::Outcome => {
            let text = match status {
                StatusCode::CREATED => "created",
                _ => "ok",
            };
            let oo = OperationOutcome {
                issues: vec![Issue::information(
                    "informational",
                    format!("{}/{} {text}", rec.res_type, rec.id),
                )],
            };
            Ok(b.body(format::encode(neg, &oo.to_json())?))
        }
    }
}

/// A 200 with the resource, for read and vread.
fn read_response(
    req: &HttpRequest,
    state: &AppState,
    neg: Negotiated,
    rec: Record,
) -> Result<HttpResponse, ApiError> {
    resource_response(
        req,
        state,
        neg,
        StatusCode::OK,
        rec,
        Return::Representation,
        false,
    )
}

/// The answer to a write, whose audit events its transaction already holds.
fn written(
    req: &HttpRequest,
    state: &AppState,
    neg: Negotiated,
    status: StatusCode,
    rec: Record,
) -> Result<(HttpResponse, api::Touched), ApiError> {
    let resp = resource_response(req, state, neg, status, rec, prefer_return(req), true)?;
    Ok((resp, None))
}

fn write_status(w: Written) -> StatusCode {
    match w {
        Written::Created => StatusCode::CREATED,
        Written::Updated | Written::Matched => StatusCode::OK,
    }
}

async fn read(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let draft = api::draft(&req, &caller, "read", 'R', format!("{t}/{id}"));
    api::audited(&state, draft, async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Read], &t, Some(&id))?;
        let access = api::access(&state, &caller).await?;
        let (tt, ii) = (t.clone(), id.clone());
        let rec = run_db(&state.store, true, move |store| {
            record::read_for(store, &access, &tt, &ii)
        })
        .await?;
        let touched = Some(vec![(format!("{t}/{id}"), rec.resident.clone())]);
        if let Some(inm) = header_str(&req, "if-none-match")
            && inm.trim() == format!("W/\"{}\"", rec.version_id)
        {
            return Ok((HttpResponse::NotModified().finish(), touched));
        }
        if let Some(ims) = header_str(&req, "if-modified-since").and_then(clock::parse_http_date)
            && rec.last_updated / 1000 <= ims / 1000
        {
            return Ok((HttpResponse::NotModified().finish(), touched));
        }
        Ok((read_response(&req, &state, neg, rec)?, touched))
    })
    .await
}

async fn vread(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id, vid) = path.into_inner();
    let draft = api::draft(
        &req,
        &caller,
        "vread",
        'R',
        format!("{t}/{id}/_history/{vid}"),
    );
    api::audited(&state, draft, async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Read], &t, Some(&id))?;
        let vid: i64 = vid
            .parse()
            .map_err(|_| ApiError::NotFound(format!("'{vid}' is not a version of {t}/{id}")))?;
        let access = api::access(&state, &caller).await?;
        let (tt, ii) = (t.clone(), id.clone());
        let rec = run_db(&state.store, true, move |store| {
            // A hidden version answers as an absent one.
            record::vread_for(store, &access, &tt, &ii, vid)
        })
        .await?;
        let touched = Some(vec![(format!("{t}/{id}"), rec.resident.clone())]);
        Ok((read_response(&req, &state, neg, rec)?, touched))
    })
    .await
}

async fn create(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = path.into_inner();
    let draft = api::draft(&req, &caller, "create", 'C', t.clone());
    api::audited(&state, draft.clone(), async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Create], &t, None)?;
        let tree = format::read_resource(&req, &body, Some(&t))?;
        let criteria = match header_str(&req, "if-none-exist") {
            Some(q) => {
                caller.require(Perm::Search, Some(&t))?;
                Some(if_none_exist(&req, &state, &t, q)?)
            }
            None => None,
        };
        let guard = api::guard(&state, &caller).await?;
        let store = state.store.clone();
        let tt = t.clone();
        let (rec, w) =
            web::block(move || record::create(&store, guard, &tt, tree, criteria, draft)).await??;
        written(&req, &state, neg, write_status(w), rec)
    })
    .await
}

async fn update(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let draft = api::draft(&req, &caller, "update", 'U', format!("{t}/{id}"));
    api::audited(&state, draft.clone(), async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Update], &t, Some(&id))?;
        let tree = format::read_resource(&req, &body, Some(&t))?;
        let im = if_match(&req)?;
        let guard = api::guard(&state, &caller).await?;
        let store = state.store.clone();
        let may_create = caller.require(Perm::Create, Some(&t)).is_ok();
        let (tt, ii) = (t.clone(), id.clone());
        let (rec, w) = web::block(move || {
            record::update(&store, guard, &tt, &ii, tree, im, may_create, draft)
        })
        .await??;
        written(&req, &state, neg, write_status(w), rec)
    })
    .await
}

/// Whether `Prefer: handling=lenient` asks to ignore unknown search parameters.
pub(crate) fn lenient(req: &HttpRequest) -> bool {
    header_str(req, "prefer")
        .is_some_and(|p| p.split([',', ';']).any(|x| x.trim() == "handling=lenient"))
}

pub(crate) fn parse_query(
    req: &HttpRequest,
    state: &AppState,
    t: &str,
    pairs: &[(String, String)],
) -> Result<Query, ApiError> {
    search::parse(t, pairs, &base_url(req, state), lenient(req))
        .map_err(|i| ApiError::Invalid(vec![i]))
}

/// Conditional criteria with their canonical key (result parameters such as `_format` left
/// out of the key).
pub(crate) fn conditional(
    req: &HttpRequest,
    state: &AppState,
    t: &str,
    pairs: &[(String, String)],
) -> Result<record::Criteria, ApiError> {
    let query = parse_query(req, state, t, pairs)?;
    let selecting: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !search::RESULT_PARAMS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(record::Criteria::new(query, &selecting))
}

/// The criteria of an `If-None-Exist` header or a bundle entry's `ifNoneExist`: a query,
/// optionally written as `?query` or `Type?query`.
pub(crate) fn if_none_exist(
    req: &HttpRequest,
    state: &AppState,
    t: &str,
    value: &str,
) -> Result<record::Criteria, ApiError> {
    let q = value.trim_start_matches('?');
    let q = q.rsplit_once('?').map_or(q, |(_, after)| after);
    conditional(req, state, t, &pairs_of(q.as_bytes()))
}

fn criteria_of(req: &HttpRequest, state: &AppState, t: &str) -> Result<Query, ApiError> {
    parse_query(req, state, t, &query_pairs(req))
}

async fn conditional_update(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = path.into_inner();
    let what = format!("{t}?{}", req.query_string());
    let draft = api::draft(&req, &caller, "update", 'U', what);
    api::audited(&state, draft.clone(), async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Update, Perm::Search], &t, None)?;
        let criteria = conditional(&req, &state, &t, &query_pairs(&req))?;
        let tree = format::read_resource(&req, &body, Some(&t))?;
        let im = if_match(&req)?;
        let may_create = caller.require(Perm::Create, Some(&t)).is_ok();
        let guard = api::guard(&state, &caller).await?;
        let store = state.store.clone();
        let tt = t.clone();
        let (rec, w) = web::block(move || {
            record::conditional_update(&store, guard, &tt, criteria, tree, im, may_create, draft)
        })
        .await??;
        written(&req, &state, neg, write_status(w), rec)
    })
    .await
}

async fn patch(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let draft = api::draft(&req, &caller, "patch", 'U', format!("{t}/{id}"));
    api::audited(&state, draft.clone(), async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Update], &t, Some(&id))?;
        let ct = header_str(&req, "content-type").unwrap_or("");
        if !ct.starts_with("application/json-patch+json") {
            return Err(ApiError::UnsupportedMediaType(
                "PATCH takes a JSON Patch document (Content-Type: application/json-patch+json)"
                    .to_owned(),
            ));
        }
        let patch: json_patch::Patch = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body is not a JSON Patch document: {e}"))
        })?;
        let im = if_match(&req)?;
        let guard = api::guard(&state, &caller).await?;
        let store = state.store.clone();
        let (tt, ii) = (t.clone(), id.clone());
        let rec =
            web::block(move || record::patch(&store, guard, &tt, &ii, &patch, im, draft)).await??;
        written(&req, &state, neg, StatusCode::OK, rec)
    })
    .await
}

fn delete_response(
    req: &HttpRequest,
    neg: Negotiated,
    version: Option<i64>,
    what: &str,
) -> Result<HttpResponse, ApiError> {
    let ret = prefer_return(req);
    let mut b = if ret == Return::Outcome {
        format::respond(neg, StatusCode::OK)
    } else {
        HttpResponse::build(StatusCode::NO_CONTENT)
    };
    if let Some(v) = version {
        b.insert_header((header::ETAG, format!("W/\"{v}\"")));
    }
    if ret == Return::Outcome {
        let text = match version {
            Some(_) => format!("{what} deleted"),
            None => format!("{what}: nothing to delete"),
        };
        let oo = OperationOutcome {
            issues: vec![Issue::information("informational", text)],
        };
        return Ok(b.body(format::encode(neg, &oo.to_json())?));
    }
    Ok(b.finish())
}

async fn delete(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    let what = format!("{t}/{id}");
    let draft = api::draft(&req, &caller, "delete", 'D', what.clone());
    api::audited(&state, draft.clone(), async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Delete], &t, Some(&id))?;
        let guard = api::guard(&state, &caller).await?;
        let store = state.store.clone();
        let (tt, ii) = (t.clone(), id.clone());
        let v = web::block(move || record::delete(&store, guard, &tt, &ii, draft)).await??;
        Ok((delete_response(&req, neg, v, &what)?, None))
    })
    .await
}

async fn conditional_delete(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let t = path.into_inner();
    let draft = api::draft(
        &req,
        &caller,
        "delete",
        'D',
        format!("{t}?{}", req.query_string()),
    );
    api::audited(&state, draft.clone(), async {
        let neg = format::negotiate(&req)?;
        authorize(&caller, &[Perm::Delete, Perm::Search], &t, None)?;
        let criteria = criteria_of(&req, &state, &t)?;
        let guard = api::guard(&state, &caller).await?;
        let store = state.store.clone();
        let tt = t.clone();
        let v = web::block(move || record::conditional_delete(&store, guard, &tt, criteria, draft))
            .await??;
        Ok((delete_response(&req, neg, v, &t)?, None))
    })
    .await
}

/// A 200 with a new Bundle of `kind` (`history`, `searchset`).
pub(crate) fn bundle_response(
    neg: Negotiated,
    kind: &str,
    total: Option<usize>,
    links: Vec<Link>,
    entries: Vec<Json>,
) -> Result<HttpResponse, ApiError> {
    let b = bundle::bundle(
        kind,
        &record::new_id(),
        &clock::instant(clock::now_millis()),
        total,
        links,
        entries,
    );
    Ok(format::respond(neg, StatusCode::OK).body(format::encode(neg, &b)?))
}

/// A `_since` value: a FHIR instant, as ms.
pub(crate) fn since_param(v: &str) -> Result<i64, ApiError> {
    clock::parse_fhir_datetime(v).ok_or_else(|| {
        ApiError::invalid(
            "invalid",
            "_since",
            format!("_since '{v}' is not a FHIR instant"),
        )
    })
}

/// A `_cursor` of a page across types: `Type/id`.
pub(crate) fn type_cursor(v: &str) -> Result<(String, String), ApiError> {
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

/// Rebuild the request URL with `_cursor` replaced, for paging links.
/// The links of one page: `self`, `first` (when `with_first` and this is not the first page)
/// and `next` (when there is a next page: its cursor).
pub(crate) fn page_links(
    req: &HttpRequest,
    state: &AppState,
    pairs: &[(String, String)],
    cursor: Option<&str>,
    with_first: bool,
    next: Option<&str>,
) -> Vec<Link> {
    let mut links = vec![Link {
        relation: "self",
        url: page_url(req, state, pairs, cursor),
    }];
    if with_first && cursor.is_some() {
        links.push(Link {
            relation: "first",
            url: page_url(req, state, pairs, None),
        });
    }
    if let Some(next) = next {
        links.push(Link {
            relation: "next",
            url: page_url(req, state, pairs, Some(next)),
        });
    }
    links
}

pub(crate) fn page_url(
    req: &HttpRequest,
    state: &AppState,
    pairs: &[(String, String)],
    cursor: Option<&str>,
) -> String {
    let base = base_url(req, state);
    let path = req.path().strip_prefix("/fhir").unwrap_or(req.path());
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if k != "_cursor" {
            ser.append_pair(k, v);
        }
    }
    if let Some(c) = cursor {
        ser.append_pair("_cursor", c);
    }
    let q = ser.finish();
    if q.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{q}")
    }
}

/// The scope of a history request, owned so it can move to the blocking pool.
enum Scope {
    System,
    Type(String),
    Instance(String, String),
}

async fn history_response(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    scope: Scope,
) -> Result<HttpResponse, ApiError> {
    let what = match &scope {
        Scope::System => "_history".to_owned(),
        Scope::Type(t) => format!("{t}/_history"),
        Scope::Instance(t, id) => format!("{t}/{id}/_history"),
    };
    let subtype = match &scope {
        Scope::System => "history-system",
        Scope::Type(_) => "history-type",
        Scope::Instance(..) => "history-instance",
    };
    let what = match req.query_string() {
        "" => what,
        q => format!("{what}?{q}"),
    };
    let draft = api::draft(&req, &caller, subtype, 'R', what);
    api::audited(&state, draft, history_body(&req, &caller, &state, scope)).await
}

async fn history_body(
    req: &HttpRequest,
    caller: &Caller,
    state: &web::Data<AppState>,
    scope: Scope,
) -> Result<(HttpResponse, api::Touched), ApiError> {
    let (req, state) = (req.clone(), state.clone());
    match &scope {
        Scope::System => caller.require(Perm::Read, None)?,
        Scope::Type(t) => authorize(caller, &[Perm::Read], t, None)?,
        Scope::Instance(t, id) => authorize(caller, &[Perm::Read], t, Some(id))?,
    }
    let access = api::access(&state, caller).await?;
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
    let neg = format::negotiate(&req)?;
    let pairs = query_pairs(&req);
    for (k, _) in &pairs {
        if !matches!(
            k.as_str(),
            "_count" | "_since" | "_at" | "_cursor" | "_format" | "_pretty" | "_list" | "_sort"
        ) {
            return Err(ApiError::invalid(
                "not-supported",
                k.as_str(),
                format!("'{k}' is not a history parameter"),
            ));
        }
        if matches!(k.as_str(), "_at" | "_list" | "_sort") {
            return Err(ApiError::invalid(
                "not-supported",
                k.as_str(),
                format!("'{k}' is not supported on history yet"),
            ));
        }
    }
    let count = page_size(&pairs, &state)?;
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
    let store = state.store.clone();
    let ((rows, more, last_seq), touched) = web::block(move || {
        let scope = match &scope {
            Scope::System => HistoryScope::System,
            Scope::Type(t) => HistoryScope::Type(t),
            Scope::Instance(t, id) => HistoryScope::Instance(t, id),
        };
        let (mut rows, more) = record::history(&store, scope, since, cursor, count)?;
        let last_seq = rows.last().map(|v| v.seq);
        let keys: Vec<(&str, &str)> = rows
            .iter()
            .map(|v| (v.res_type.as_str(), v.res_id.as_str()))
            .collect();
        let mut touched = store.read(|conn| record::residents(conn, &keys))?;
        if filtered {
            let mut verdicts: std::collections::HashMap<String, bool> = Default::default();
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
            if !access.visible_in(&store, &t, &id, resident)? {
                return Err(access.hidden(&t, &id));
            }
        }
        Ok::<_, ApiError>(((rows, more, last_seq), touched))
    })
    .await??;
    let base = base_url(&req, &state);
    // The next page starts after the last version read, shown or not.
    let next = last_seq.filter(|_| more).map(|seq| seq.to_string());
    let links = page_links(
        &req,
        &state,
        &pairs,
        cursor.map(|c| c.to_string()).as_deref(),
        true,
        next.as_deref(),
    );
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
        bundle_response(neg, "history", None, links, entries)?,
        Some(touched),
    ))
}

async fn history_system(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    history_response(req, caller, state, Scope::System).await
}

async fn history_type(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    history_response(req, caller, state, Scope::Type(path.into_inner())).await
}

async fn history_instance(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (t, id) = path.into_inner();
    history_response(req, caller, state, Scope::Instance(t, id)).await
}

/// Encode where the next page starts: the last id, or (sorted) its sort values and id.
fn encode_cursor(after: &After) -> String {
    match after {
        After::Id(id) => id.clone(),
        After::Sorted(values, id) => {
            let mut items: Vec<serde_json::Value> = values
                .iter()
                .map(|v| match v {
                    SortValue::Null => serde_json::Value::Null,
                    SortValue::Text(s) => serde_json::Value::from(s.clone()),
                    SortValue::Int(i) => serde_json::Value::from(*i),
                    SortValue::Float(f) => serde_json::Value::from(*f),
                })
                .collect();
            items.push(serde_json::Value::from(id.clone()));
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::Value::Array(items).to_string())
        }
    }
}

fn decode_cursor(raw: &str, sort: &[SortKey]) -> Result<After, ApiError> {
    let bad = || ApiError::invalid("invalid", "_cursor", "invalid paging cursor");
    if sort.is_empty() {
        return if is_valid_id(raw) {
            Ok(After::Id(raw.to_owned()))
        } else {
            Err(bad())
        };
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| bad())?;
    let serde_json::Value::Array(mut items) = serde_json::from_slice(&bytes).map_err(|_| bad())?
    else {
        return Err(bad());
    };
    if items.len() != sort.len() + 1 {
        return Err(bad());
    }
    let id = match items.pop() {
        Some(serde_json::Value::String(id)) if is_valid_id(&id) => id,
        _ => return Err(bad()),
    };
    let mut values = Vec::with_capacity(sort.len());
    for (item, key) in items.iter().zip(sort) {
        let v = match (item, value_type(key)) {
            (serde_json::Value::Null, _) => SortValue::Null,
            (serde_json::Value::String(s), ValueType::Text) => SortValue::Text(s.clone()),
            (v, ValueType::Int) => SortValue::Int(v.as_i64().ok_or_else(bad)?),
            (v, ValueType::Float) => SortValue::Float(v.as_f64().ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        values.push(v);
    }
    Ok(After::Sorted(values, id))
}

async fn search_with(
    req: HttpRequest,
    caller: Caller,
    t: String,
    pairs: Vec<(String, String)>,
    state: web::Data<AppState>,
    within: Option<search::Clause>,
) -> Result<HttpResponse, ApiError> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish();
    let subtype = if within.is_some() {
        "search-compartment"
    } else {
        "search-type"
    };
    let what = format!("{}?{query}", req.path().trim_start_matches("/fhir/"));
    let draft = api::draft(&req, &caller, subtype, 'E', what);
    api::audited(
        &state,
        draft,
        search_body(&req, &caller, t, pairs, &state, within),
    )
    .await
}

async fn search_body(
    req: &HttpRequest,
    caller: &Caller,
    t: String,
    pairs: Vec<(String, String)>,
    state: &web::Data<AppState>,
    within: Option<search::Clause>,
) -> Result<(HttpResponse, api::Touched), ApiError> {
    let (req, state, caller) = (req.clone(), state.clone(), caller.clone());
    let neg = format::negotiate(&req)?;
    authorize(&caller, &[Perm::Search], &t, None)?;
    let invalid = |i| ApiError::Invalid(vec![i]);
    let mut criteria = parse_query(&req, &state, &t, &pairs)?;
    criteria.clauses.extend(within);
    let includes = search::parse_includes(&pairs).map_err(invalid)?;
    let sort = search::parse_sort(&t, &pairs).map_err(invalid)?;
    let shape = shape::parse(&pairs).map_err(invalid)?;
    let total = match pairs
        .iter()
        .find(|(k, _)| k == "_total")
        .map(|(_, v)| v.as_str())
    {
        None | Some("none") => shape == Shape::Count,
        Some("estimate" | "accurate") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid",
                "_total",
                format!("_total '{other}' is not none, estimate or accurate"),
            ));
        }
    };
    // The self link shows what was applied: parameters ignored under lenient handling are left out.
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| !criteria.ignored.contains(k))
        .collect();
    let count = if shape == Shape::Count {
        0
    } else {
        page_size(&pairs, &state)?
    };
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.clone());
    let after = cursor
        .as_deref()
        .map(|c| decode_cursor(c, &sort))
        .transpose()?;
    let request = record::SearchRequest {
        access: api::access(&state, &caller).await?,
        readable: crate::services::access::Readable::of(&caller),
        criteria,
        sort,
        includes,
        after,
        count,
        total,
    };
    let store = state.store.clone();
    let tt = t.clone();
    let (page, touched) = web::block(move || {
        let page = record::search(&store, &tt, &request)?;
        let keys: Vec<(&str, &str)> = page
            .matches
            .iter()
            .map(|(id, _)| (tt.as_str(), id.as_str()))
            .chain(
                page.included
                    .iter()
                    .map(|(ty, id, _)| (ty.as_str(), id.as_str())),
            )
            .collect();
        let touched = store.read(|conn| record::residents(conn, &keys))?;
        Ok::<_, ApiError>((page, touched))
    })
    .await??;
    let base = base_url(&req, &state);
    let next = page.next.as_ref().map(encode_cursor);
    let links = page_links(
        &req,
        &state,
        &pairs,
        cursor.as_deref(),
        true,
        next.as_deref(),
    );
    let matches = page.matches.into_iter().map(|(id, content)| {
        bundle::search_entry(
            &format!("{base}/{t}/{id}"),
            shape::apply(&shape, content),
            "match",
        )
    });
    let included = page.included.into_iter().map(|(ty, id, content)| {
        bundle::search_entry(
            &format!("{base}/{ty}/{id}"),
            shape::apply(&shape, content),
            "include",
        )
    });
    let entries: Vec<Json> = matches.chain(included).collect();
    let resp = bundle_response(
        neg,
        "searchset",
        page.total.and_then(|n| usize::try_from(n).ok()),
        links,
        entries,
    )?;
    Ok((resp, Some(touched)))
}

async fn search(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req);
    search_with(req, caller, path.into_inner(), pairs, state, None).await
}

async fn search_post(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ct = header_str(&req, "content-type").unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType(
            "_search takes a form body (application/x-www-form-urlencoded)".to_owned(),
        ));
    }
    let mut pairs = query_pairs(&req);
    pairs.extend(pairs_of(&body));
    search_with(req, caller, path.into_inner(), pairs, state, None).await
}

/// `GET [base]/Patient/123/Observation?…`: a search within a compartment.
async fn search_compartment(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (compartment, id, t) = path.into_inner();
    if !matches!(
        compartment.as_str(),
        "Patient" | "Encounter" | "Practitioner" | "RelatedPerson" | "Device"
    ) {
        return Err(ApiError::NotFound(format!(
            "'{compartment}' is not a compartment"
        )));
    }
    resource_type(&t)?;
    resource_id(&id)?;
    let within =
        search::compartment(&compartment, &id, &t).map_err(|i| ApiError::Invalid(vec![i]))?;
    let pairs = query_pairs(&req);
    search_with(req, caller, t, pairs, state, Some(within)).await
}

/// `GET [base]?_type=A,B&…`: search across resource types (all of them without `_type`), with
/// the parameters every listed type shares (for example `_id`, `_lastUpdated`, `_tag`).
pub async fn search_system(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let draft = api::draft(
        &req,
        &caller,
        "search-system",
        'E',
        format!("?{}", req.query_string()),
    );
    api::audited(&state, draft, search_system_body(&req, &caller, &state)).await
}

async fn search_system_body(
    req: &HttpRequest,
    caller: &Caller,
    state: &web::Data<AppState>,
) -> Result<(HttpResponse, api::Touched), ApiError> {
    let (req, state, caller) = (req.clone(), state.clone(), caller.clone());
    let neg = format::negotiate(&req)?;
    let pairs = query_pairs(&req);
    for (k, _) in &pairs {
        if k.starts_with("_include") || k.starts_with("_revinclude") || k == "_sort" {
            return Err(ApiError::invalid(
                "not-supported",
                k.as_str(),
                format!("'{k}' is not supported on system search yet"),
            ));
        }
    }
    let mut types: Vec<String> = match pairs.iter().find(|(k, _)| k == "_type") {
        Some((_, v)) => v.split(',').map(|s| s.trim().to_owned()).collect(),
        None => huimin_model::RESOURCE_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
    };
    types.sort();
    types.dedup();
    let selection: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "_type")
        .cloned()
        .collect();
    let access = api::access(&state, &caller).await?;
    let mut per_type = Vec::with_capacity(types.len());
    for t in &types {
        if !huimin_model::is_resource_type(t) {
            return Err(ApiError::invalid(
                "invalid",
                "_type",
                format!("'{t}' is not a resource type"),
            ));
        }
        caller.require(Perm::Search, Some(t))?;
        per_type.push((t.clone(), parse_query(&req, &state, t, &selection)?));
    }
    let count = page_size(&pairs, &state)?;
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.clone());
    let after = cursor.as_deref().map(type_cursor).transpose()?;
    let store = state.store.clone();
    let (record::SystemPage { found: rows, next }, touched) = web::block(move || {
        let page = record::search_system(&store, &access, &per_type, after, count)?;
        let keys: Vec<(&str, &str)> = page
            .found
            .iter()
            .map(|(t, id, _)| (t.as_str(), id.as_str()))
            .collect();
        let touched = store.read(|conn| record::residents(conn, &keys))?;
        Ok::<_, ApiError>((page, touched))
    })
    .await??;
    let base = base_url(&req, &state);
    let next = next.map(|(t, id)| format!("{t}/{id}"));
    let links = page_links(
        &req,
        &state,
        &pairs,
        cursor.as_deref(),
        false,
        next.as_deref(),
    );
    let entries = rows
        .into_iter()
        .map(|(t, id, content)| bundle::search_entry(&format!("{base}/{t}/{id}"), content, "match"))
        .collect();
    Ok((
        bundle_response(neg, "searchset", None, links, entries)?,
        Some(touched),
    ))
}
