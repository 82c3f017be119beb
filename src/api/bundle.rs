//! `POST [base]` with a transaction or batch Bundle: entries parsed and authorized here, run by
//! [`crate::services::bundle`], answered with a `transaction-response` / `batch-response`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use base64::Engine as _;

use super::ctx::{Ctx, Touched, pairs_of, resource_id, resource_type};
use super::format;
use super::record::{conditional, if_none_exist, parse_etag, parse_query, prefer_return};
use super::respond::Body;
use crate::auth::Perm;
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle::{self, obj, s};
use crate::fhir::json::Json;
use crate::fhir::outcome::{Issue, OperationOutcome};
use crate::services::bundle::{self as engine, Action, Entry, Outcome};
use crate::services::record::{self, Written};

/// Most entries one Bundle may carry.
const MAX_ENTRIES: usize = 100_000;

pub async fn system_post(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    // The kind is known once the body is parsed; an unparsable body is audited as a transaction.
    let draft = ctx.draft("transaction", 'E', "Bundle".to_owned());
    ctx.audited(draft.clone(), run(&ctx, body, draft)).await
}

async fn run(
    ctx: &Ctx,
    body: web::Bytes,
    mut draft: crate::services::audit::Draft,
) -> Result<(HttpResponse, Touched), ApiError> {
    let guard = ctx.guard().await?;
    if guard.filter.is_restricted() {
        return Err(ApiError::Forbidden(
            "transaction and batch Bundles are for institutions' systems and staff".to_owned(),
        ));
    }
    let neg = ctx.negotiate()?;
    let body_format = format::body_format(&ctx.req, &body)?;
    let (mut tree, mut invalid) = web::block(move || parse_bundle(body_format, &body)).await??;
    let kind = match tree.get("type").and_then(Json::as_str) {
        Some("transaction") => Kind::Transaction,
        Some("batch") => {
            draft.subtype = "batch".to_owned();
            Kind::Batch
        }
        other => {
            return Err(ApiError::invalid(
                "invalid",
                "Bundle.type",
                format!(
                    "Bundle.type is {}; POST to the base accepts transaction or batch",
                    other.map_or("missing".to_owned(), |t| format!("'{t}'"))
                ),
            ));
        }
    };
    let raw_entries = match tree.remove("entry") {
        None => Vec::new(),
        Some(Json::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid("structure", "Bundle.entry", "not a list")),
    };
    if raw_entries.len() > MAX_ENTRIES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the Bundle has {} entries; at most {MAX_ENTRIES} are accepted",
            raw_entries.len()
        )));
    }
    let base = ctx.base_url();
    let ret = prefer_return(ctx, Body::Minimal);
    let mut parsed = Vec::with_capacity(raw_entries.len());
    for (i, e) in raw_entries.into_iter().enumerate() {
        if let Some(error) = invalid.remove(&i) {
            parsed.push(Err(error));
            continue;
        }
        match parse_entry(ctx, e, &base) {
            Ok(entry) => parsed.push(Ok(entry)),
            Err(e) if kind == Kind::Transaction => return Err(e.in_entry(i)),
            Err(e) => parsed.push(Err(e)),
        }
    }
    let answers: Vec<Result<Outcome, ApiError>> = match kind {
        Kind::Transaction => {
            let entries: Vec<Entry> = parsed.into_iter().filter_map(Result::ok).collect();
            let base = base.clone();
            ctx.db(false, move |store| {
                engine::transaction(store, guard, entries, base, draft)
            })
            .await?
            .into_iter()
            .map(Ok)
            .collect()
        }
        Kind::Batch => {
            let mut ok = Vec::new();
            let mut positions = Vec::new();
            let mut answers: Vec<Option<Result<Outcome, ApiError>>> = Vec::new();
            for (i, p) in parsed.into_iter().enumerate() {
                match p {
                    Ok(entry) => {
                        ok.push(entry);
                        positions.push(i);
                        answers.push(None);
                    }
                    Err(e) => answers.push(Some(Err(e))),
                }
            }
            let base = base.clone();
            let results = ctx
                .db(false, move |store| {
                    engine::batch(store, guard, ok, base, draft)
                })
                .await?;
            for (pos, r) in positions.into_iter().zip(results) {
                answers[pos] = Some(r);
            }
            answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err(ApiError::internal("a batch entry was lost"))))
                .collect()
        }
    };
    let entries: Vec<Json> = answers
        .into_iter()
        .map(|a| response_entry(a, ret, &base))
        .collect();
    let response_type = match kind {
        Kind::Transaction => "transaction-response",
        Kind::Batch => "batch-response",
    };
    let b = bundle::bundle(
        response_type,
        &record::new_id(),
        &clock::instant(clock::now_millis()),
        None,
        Vec::new(),
        entries,
    );
    Ok((
        format::respond(neg, StatusCode::OK).body(format::encode(neg, &b)?),
        None,
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transaction,
    Batch,
}

fn status_text(code: StatusCode) -> String {
    format!(
        "{} {}",
        code.as_u16(),
        code.canonical_reason().unwrap_or("")
    )
}

/// The `response` (and, as asked, `resource` or `outcome`) of one entry.
fn response_entry(answer: Result<Outcome, ApiError>, ret: Body, base: &str) -> Json {
    let written = |rec: &record::Record, status: StatusCode| {
        obj(vec![
            ("status", s(status_text(status))),
            (
                "location",
                s(format!(
                    "{}/{}/_history/{}",
                    rec.res_type, rec.id, rec.version_id
                )),
            ),
            ("etag", s(format!("W/\"{}\"", rec.version_id))),
            ("lastModified", s(clock::instant(rec.last_updated))),
        ])
    };
    match answer {
        Ok(Outcome::Written(rec, how)) => {
            let status = match how {
                Written::Created => StatusCode::CREATED,
                Written::Updated | Written::Matched => StatusCode::OK,
            };
            let full_url = s(format!("{base}/{}/{}", rec.res_type, rec.id));
            let response = written(&rec, status);
            match ret {
                Body::Representation => obj(vec![
                    ("fullUrl", full_url),
                    ("resource", Json::Raw(rec.content)),
                    ("response", response),
                ]),
                Body::Outcome => {
                    let mut response = response;
                    let oo = OperationOutcome {
                        issues: vec![Issue::information(
                            "informational",
                            format!("{}/{} {}", rec.res_type, rec.id, status_text(status)),
                        )],
                    };
                    response.set_at("outcome", oo.to_json(), 4);
                    obj(vec![("fullUrl", full_url), ("response", response)])
                }
                Body::Minimal => obj(vec![("fullUrl", full_url), ("response", response)]),
            }
        }
        Ok(Outcome::Deleted(_)) => obj(vec![(
            "response",
            obj(vec![("status", s(status_text(StatusCode::NO_CONTENT)))]),
        )]),
        Ok(Outcome::Read(rec)) => {
            let response = written(&rec, StatusCode::OK);
            obj(vec![
                ("fullUrl", s(format!("{base}/{}/{}", rec.res_type, rec.id))),
                ("resource", Json::Raw(rec.content)),
                ("response", response),
            ])
        }
        Ok(Outcome::Found(rows)) => {
            let n = rows.len();
            let entries = rows
                .into_iter()
                .map(|(t, id, content)| {
                    bundle::search_entry(&format!("{base}/{t}/{id}"), content, "match")
                })
                .collect();
            let searchset = bundle::bundle(
                "searchset",
                &record::new_id(),
                &clock::instant(clock::now_millis()),
                Some(n),
                Vec::new(),
                entries,
            );
            obj(vec![
                ("resource", searchset),
                (
                    "response",
                    obj(vec![("status", s(status_text(StatusCode::OK)))]),
                ),
            ])
        }
        Err(e) => {
            use actix_web::ResponseError as _;
            obj(vec![(
                "response",
                obj(vec![
                    ("status", s(status_text(e.status_code()))),
                    ("outcome", e.outcome().to_json()),
                ]),
            )])
        }
    }
}

/// The request Bundle, validated. A batch whose Bundle is valid but for some entries'
/// resources is accepted with those entries failing on their own: (Bundle, the invalid entries'
/// errors by index). A transaction is all or nothing, so any invalid resource refuses it.
fn parse_bundle(
    body_format: format::Format,
    body: &[u8],
) -> Result<(Json, HashMap<usize, ApiError>), ApiError> {
    let whole = match format::parse_resource(body_format, body, Some("Bundle")) {
        Ok(tree) => return Ok((tree, HashMap::new())),
        Err(e) => e,
    };
    let Ok(mut tree) = format::parse_tree(body_format, body) else {
        return Err(whole);
    };
    if tree.get_str("type") != Some("batch") {
        return Err(whole);
    }
    // The Bundle without its entries' resources, then each resource on its own.
    let mut resources: Vec<(usize, Json)> = Vec::new();
    if let Some(Json::Array(entries)) = tree.get_mut("entry") {
        for (i, e) in entries.iter_mut().enumerate() {
            if let Some(r) = e.remove("resource") {
                resources.push((i, r));
            }
        }
    }
    crate::fhir::validate::tree(&tree, Some("Bundle")).map_err(|_| whole)?;
    let mut invalid = HashMap::new();
    for (i, r) in &resources {
        if let Err(issues) = crate::fhir::validate::tree(r, None) {
            invalid.insert(*i, ApiError::Invalid(issues));
        }
    }
    if let Some(Json::Array(entries)) = tree.get_mut("entry") {
        for (i, r) in resources {
            if let Some(e) = entries.get_mut(i) {
                e.set_at("resource", r, usize::MAX);
            }
        }
    }
    Ok((tree, invalid))
}

/// Parse and authorize one entry.
fn parse_entry(ctx: &Ctx, mut e: Json, base: &str) -> Result<Entry, ApiError> {
    let full_url = e.get_str("fullUrl").map(str::to_owned);
    let resource = e.remove("resource");
    let request = e
        .get("request")
        .ok_or_else(|| ApiError::invalid("required", "request", "the entry has no request"))?;
    let method = request
        .get_str("method")
        .ok_or_else(|| ApiError::invalid("required", "request.method", "no request.method"))?;
    let raw_url = request
        .get_str("url")
        .ok_or_else(|| ApiError::invalid("required", "request.url", "no request.url"))?;
    let if_match = request.get_str("ifMatch").map(parse_etag).transpose()?;
    let url = raw_url.strip_prefix(base).unwrap_or(raw_url);
    let url = url.trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(&t) = segments.first() else {
        return Err(ApiError::invalid(
            "invalid",
            "request.url",
            format!("request.url '{raw_url}' names no resource type"),
        ));
    };
    let t = resource_type(t)?.to_owned();
    let pairs = query.map(|q| pairs_of(q.as_bytes())).unwrap_or_default();
    let with_resource = |resource: Option<Json>| -> Result<Json, ApiError> {
        let r = resource.ok_or_else(|| {
            ApiError::invalid(
                "required",
                "resource",
                format!("a {method} entry needs a resource"),
            )
        })?;
        match r.get_str("resourceType") {
            Some(rt) if rt == t => Ok(r),
            other => Err(ApiError::invalid(
                "invalid",
                "resource.resourceType",
                format!(
                    "the resource is a {}, the request URL names {t}",
                    other.unwrap_or("resource without type")
                ),
            )),
        }
    };
    let may_create = ctx.caller.require(Perm::Create, Some(&t)).is_ok();
    let action = match (method, segments.as_slice(), query) {
        ("POST", [_], None) => {
            ctx.authorize(&[Perm::Create], &t, None)?;
            let resource = with_resource(resource)?;
            let if_none_exist = match request.get_str("ifNoneExist") {
                None => None,
                Some(q) => {
                    ctx.authorize(&[Perm::Search], &t, None)?;
                    Some(if_none_exist(ctx, &t, q)?)
                }
            };
            Action::Create {
                t,
                resource,
                if_none_exist,
            }
        }
        ("PUT", [_, id], None) => {
            ctx.authorize(&[Perm::Update], &t, Some(id))?;
            Action::Update {
                id: resource_id(id)?.to_owned(),
                resource: with_resource(resource)?,
                t,
                if_match,
            }
        }
        ("PUT", [_], Some(_)) => {
            ctx.authorize(&[Perm::Update, Perm::Search], &t, None)?;
            Action::ConditionalUpdate {
                criteria: conditional(ctx, &t, &pairs)?,
                resource: with_resource(resource)?,
                t,
                if_match,
            }
        }
        ("PATCH", [_, id], None) => {
            ctx.authorize(&[Perm::Update], &t, Some(id))?;
            Action::Patch {
                id: resource_id(id)?.to_owned(),
                patch: json_patch_of(resource)?,
                t,
                if_match,
            }
        }
        ("DELETE", [_, id], None) => {
            ctx.authorize(&[Perm::Delete], &t, Some(id))?;
            Action::Delete {
                id: resource_id(id)?.to_owned(),
                t,
            }
        }
        ("DELETE", [_], Some(_)) => {
            ctx.authorize(&[Perm::Delete, Perm::Search], &t, None)?;
            Action::ConditionalDelete {
                criteria: parse_query(ctx, &t, &pairs)?,
                t,
            }
        }
        ("GET", [_, id], None) => {
            ctx.authorize(&[Perm::Read], &t, Some(id))?;
            Action::Read {
                id: resource_id(id)?.to_owned(),
                t,
            }
        }
        ("GET", [_, id, "_history", vid], None) => {
            ctx.authorize(&[Perm::Read], &t, Some(id))?;
            Action::VRead {
                id: resource_id(id)?.to_owned(),
                vid: vid.parse().map_err(|_| {
                    ApiError::invalid(
                        "invalid",
                        "request.url",
                        format!("'{vid}' is not a version"),
                    )
                })?,
                t,
            }
        }
        ("GET", [_], _) => {
            ctx.authorize(&[Perm::Search], &t, None)?;
            Action::Search {
                query: parse_query(ctx, &t, &pairs)?,
                count: ctx.page_size(&pairs)?,
                t,
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "not-supported",
                "request",
                format!("{method} {raw_url} is not a supported bundle request"),
            ));
        }
    };
    Ok(Entry {
        full_url,
        action,
        may_create,
    })
}

/// A PATCH entry's JSON Patch: a Binary resource of type `application/json-patch+json`.
fn json_patch_of(resource: Option<Json>) -> Result<json_patch::Patch, ApiError> {
    let bad = |why: &str| ApiError::invalid("invalid", "resource", why.to_owned());
    let r = resource.ok_or_else(|| bad("a PATCH entry needs a Binary with a JSON Patch"))?;
    if r.get_str("resourceType") != Some("Binary")
        || r.get_str("contentType") != Some("application/json-patch+json")
    {
        return Err(bad(
            "a PATCH entry's resource is a Binary with contentType application/json-patch+json",
        ));
    }
    let data = r
        .get_str("data")
        .ok_or_else(|| bad("the Binary has no data"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| bad("Binary.data is not base64"))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(&format!("not a JSON Patch: {e}")))
}
