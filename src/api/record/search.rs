//! Search: `GET [type]?…`, `POST [type]/_search` (form body), `GET [compartment]/[id]/[type]?…`
//! and across types, `GET [base]?_type=…`. Criteria, `_include`/`_revinclude`, `_sort`,
//! `_total`, `_summary`/`_elements` and paging (`_count`, `_cursor`, `next` links). The caller's
//! access narrows every search inside its database query, before paging.

use actix_web::{HttpResponse, web};
use base64::Engine as _;

use super::parse_query;
use crate::api::ctx::{Ctx, Touched, pairs_of, resource_id, resource_type, type_cursor};
use crate::api::respond;
use crate::auth::Perm;
use crate::error::ApiError;
use crate::fhir::bundle;
use crate::fhir::json::Json;
use crate::fhir::search::{self, SortKey};
use crate::fhir::shape::{self, Shape};
use crate::fhir::validate::is_valid_id;
use crate::services::access::Readable;
use crate::services::record::{self, After, SortValue, ValueType, value_type};

pub async fn by_type(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let pairs = ctx.query();
    search_with(ctx, path.into_inner(), pairs, None).await
}

pub async fn by_form(
    ctx: Ctx,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !ctx
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(ApiError::UnsupportedMediaType(
            "_search takes a form body (application/x-www-form-urlencoded)".to_owned(),
        ));
    }
    let mut pairs = ctx.query();
    pairs.extend(pairs_of(&body));
    search_with(ctx, path.into_inner(), pairs, None).await
}

/// `GET [base]/Patient/123/Observation?…`: a search within a compartment.
pub async fn in_compartment(
    ctx: Ctx,
    path: web::Path<(String, String, String)>,
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
    let pairs = ctx.query();
    search_with(ctx, t, pairs, Some(within)).await
}

async fn search_with(
    ctx: Ctx,
    t: String,
    pairs: Vec<(String, String)>,
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
    let what = format!("{}?{query}", ctx.req.path().trim_start_matches("/fhir/"));
    let draft = ctx.draft(subtype, 'E', what);
    ctx.audited(draft, type_page(&ctx, t, pairs, within)).await
}

/// Whether `_total` asks for a total (`none` by default, except for `_summary=count`).
fn wants_total(pairs: &[(String, String)], shape: &Shape) -> Result<bool, ApiError> {
    match pairs
        .iter()
        .find(|(k, _)| k == "_total")
        .map(|(_, v)| v.as_str())
    {
        None | Some("none") => Ok(*shape == Shape::Count),
        Some("estimate" | "accurate") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "invalid",
            "_total",
            format!("_total '{other}' is not none, estimate or accurate"),
        )),
    }
}

async fn type_page(
    ctx: &Ctx,
    t: String,
    pairs: Vec<(String, String)>,
    within: Option<search::Clause>,
) -> Result<(HttpResponse, Touched), ApiError> {
    let neg = ctx.negotiate()?;
    ctx.authorize(&[Perm::Search], &t, None)?;
    let invalid = |i| ApiError::Invalid(vec![i]);
    let mut criteria = parse_query(ctx, &t, &pairs)?;
    criteria.clauses.extend(within);
    let includes = search::parse_includes(&pairs).map_err(invalid)?;
    let sort = search::parse_sort(&t, &pairs).map_err(invalid)?;
    let shape = shape::parse(&pairs).map_err(invalid)?;
    let total = wants_total(&pairs, &shape)?;
    // The self link shows what was applied: parameters ignored under lenient handling are left out.
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| !criteria.ignored.contains(k))
        .collect();
    let count = if shape == Shape::Count {
        0
    } else {
        ctx.page_size(&pairs)?
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
        access: ctx.access().await?,
        readable: Readable::of(&ctx.caller),
        criteria,
        sort,
        includes,
        after,
        count,
        total,
    };
    let tt = t.clone();
    let page = ctx
        .db(false, move |store| record::search(store, &tt, &request))
        .await?;
    let base = ctx.base_url();
    let next = page.next.as_ref().map(encode_cursor);
    let links = ctx.page_links(&pairs, cursor.as_deref(), true, next.as_deref());
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
    let total = page.total.and_then(|n| usize::try_from(n).ok());
    let resp = respond::bundle(neg, "searchset", total, links, entries)?;
    Ok((resp, Some(page.touched)))
}

/// `GET [base]?_type=A,B&…`: search across resource types (all of them without `_type`), with
/// the parameters every listed type shares (for example `_id`, `_lastUpdated`, `_tag`).
pub async fn system(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let draft = ctx.draft("search-system", 'E', format!("?{}", ctx.req.query_string()));
    ctx.audited(draft, system_page(&ctx)).await
}

async fn system_page(ctx: &Ctx) -> Result<(HttpResponse, Touched), ApiError> {
    let neg = ctx.negotiate()?;
    let pairs = ctx.query();
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
    let access = ctx.access().await?;
    let mut per_type = Vec::with_capacity(types.len());
    for t in &types {
        if !huimin_model::is_resource_type(t) {
            return Err(ApiError::invalid(
                "invalid",
                "_type",
                format!("'{t}' is not a resource type"),
            ));
        }
        ctx.caller.require(Perm::Search, Some(t))?;
        per_type.push((t.clone(), parse_query(ctx, t, &selection)?));
    }
    let count = ctx.page_size(&pairs)?;
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.clone());
    let after = cursor.as_deref().map(type_cursor).transpose()?;
    let record::SystemPage {
        found: rows,
        next,
        touched,
    } = ctx
        .db(false, move |store| {
            record::search_system(store, &access, &per_type, after, count)
        })
        .await?;
    let base = ctx.base_url();
    let next = next.map(|(t, id)| format!("{t}/{id}"));
    let links = ctx.page_links(&pairs, cursor.as_deref(), false, next.as_deref());
    let entries = rows
        .into_iter()
        .map(|(t, id, content)| bundle::search_entry(&format!("{base}/{t}/{id}"), content, "match"))
        .collect();
    Ok((
        respond::bundle(neg, "searchset", None, links, entries)?,
        Some(touched),
    ))
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
