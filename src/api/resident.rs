//! Resident operations: `Patient/[id]/$everything` (the longitudinal record).

use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::format;
use super::rest::{authorize, base_url, page_size, page_url, pairs_of};
use crate::auth::{Caller, Perm};
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle::{self, Link};
use crate::fhir::validate::is_valid_id;
use crate::services::everything;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/Patient/{id}/$everything")
            .name("patient-everything")
            .get(patient_everything),
    );
}

/// Parameters `$everything` takes.
const EVERYTHING_PARAMS: &[&str] = &[
    "_count", "_since", "_type", "start", "end", "_cursor", "_format", "_pretty",
];

fn instant(name: &str, v: &str, at_end: bool) -> Result<i64, ApiError> {
    clock::period_of(v)
        .map(|(low, high)| if at_end { high } else { low })
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid",
                name,
                format!("{name} '{v}' is not a FHIR date or dateTime"),
            )
        })
}

/// `GET Patient/[id]/$everything`: one page of everything about the resident from every
/// institution, `next` linked.
async fn patient_everything(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    authorize(&caller, &[Perm::Read], "Patient", Some(&id))?;
    let neg = format::negotiate(&req)?;
    let pairs = pairs_of(req.query_string().as_bytes());
    let mut request = everything::Request {
        count: page_size(&pairs, &state)?,
        ..Default::default()
    };
    let (mut start, mut end) = (None, None);
    for (k, v) in &pairs {
        match k.as_str() {
            "_since" => {
                request.since = Some(clock::parse_fhir_datetime(v).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid",
                        "_since",
                        format!("_since '{v}' is not a FHIR instant"),
                    )
                })?);
            }
            "_type" => {
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !huimin_model::is_resource_type(t) {
                        return Err(ApiError::invalid(
                            "invalid",
                            "_type",
                            format!("'{t}' is not a resource type"),
                        ));
                    }
                    request.types.push(t.to_owned());
                }
            }
            "start" => start = Some(instant("start", v, false)?),
            "end" => end = Some(instant("end", v, true)?),
            "_cursor" => match v.split_once('/') {
                Some((t, i)) if huimin_model::is_resource_type(t) && is_valid_id(i) => {
                    request.after = Some((t.to_owned(), i.to_owned()));
                }
                _ => {
                    return Err(ApiError::invalid(
                        "invalid",
                        "_cursor",
                        "invalid paging cursor",
                    ));
                }
            },
            other if EVERYTHING_PARAMS.contains(&other) => {}
            other => {
                return Err(ApiError::invalid(
                    "not-supported",
                    other,
                    format!("$everything does not take the parameter '{other}'"),
                ));
            }
        }
    }
    if start.is_some() || end.is_some() {
        request.care = Some((start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX)));
    }
    for t in &request.types {
        caller.require(Perm::Read, Some(t))?;
    }
    let store = state.store.clone();
    let page = web::block(move || everything::everything(&store, &id, &request)).await??;
    let base = base_url(&req, &state);
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let mut links = vec![Link {
        relation: "self",
        url: page_url(&req, &state, &pairs, cursor),
    }];
    if let Some((t, i)) = &page.next {
        links.push(Link {
            relation: "next",
            url: page_url(&req, &state, &pairs, Some(&format!("{t}/{i}"))),
        });
    }
    let entries = page
        .found
        .into_iter()
        .map(|(t, i, c)| bundle::search_entry(&format!("{base}/{t}/{i}"), c, "match"))
        .chain(
            page.included
                .into_iter()
                .map(|(t, i, c)| bundle::search_entry(&format!("{base}/{t}/{i}"), c, "include")),
        )
        .collect();
    let b = bundle::bundle(
        "searchset",
        &crate::services::record::new_id(),
        &clock::instant(clock::now_millis()),
        None,
        links,
        entries,
    );
    Ok(format::respond(neg, actix_web::http::StatusCode::OK).body(format::encode(neg, &b)?))
}
