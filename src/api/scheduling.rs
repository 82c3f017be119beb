//! Booking operations on the slot pool: `Appointment/$find` (IHE ITI-115, POST with
//! Parameters or GET with the same names), `POST Appointment/$hold` (IHE ITI-116) and
//! `POST Appointment/$book` (ITI-117), each with a Parameters body holding
//! `appointment-resource` (an Appointment) or `appointment-reference`. `$book` with a
//! `cancelled` Appointment cancels. Both answer the stored Appointment itself (IHE allows a
//! Bundle too; the resource is what FHIR clients read back), 200, with its ETag and Location.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::ctx::Ctx;
use super::format;
use super::respond::{self, Body};
use crate::auth::{Perm, Role};
use crate::clock;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::record;
use crate::services::scheduling::Rules;
use crate::services::scheduling::book::{self, Request, Step};
use crate::services::scheduling::find::{self, FindRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/Appointment/$find")
            .name("appointment-find")
            .get(find_get)
            .post(find_post),
    )
    .service(
        web::resource("/Appointment/$hold")
            .name("appointment-hold")
            .post(hold),
    )
    .service(
        web::resource("/Appointment/$book")
            .name("appointment-book")
            .post(book_op),
    );
}

async fn hold(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    operation(ctx, body, "$hold").await
}

async fn book_op(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    operation(ctx, body, "$book").await
}

async fn operation(ctx: Ctx, body: web::Bytes, name: &str) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation(name);
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Create, Perm::Update], "Appointment", None)?;
        let params = format::read_resource(&ctx.req, &body, Some("Parameters"))?;
        let mut request = request_of(&params)?;
        request.step = match (name, &request.resource) {
            ("$hold", _) => Step::Hold,
            (_, Some(r)) if r.get_str("status") == Some("cancelled") => Step::Cancel,
            _ => Step::Book,
        };
        // A Slot this process saw full moments ago refuses from memory, before anything is
        // looked up (roles that never book are refused as always, below).
        let full = &ctx.state.full_slots;
        if ctx.caller.role != Role::Official
            && let Some(refused) = book::new_booking(&request)
                .and_then(|(slot, _)| full.refused(slot, clock::now_millis()))
        {
            return Err(refused.into());
        }
        let guard = ctx.guard().await?;
        let rules = Rules::of(&ctx.state.settings);
        // A Slot with no place left refuses from a read, before the write queues (a point
        // read: on SQLite it runs on the worker).
        let (g, r) = (guard.clone(), request.clone());
        if let Some(refused) = ctx
            .db(true, move |store| book::refused_at_the_door(store, &g, &r))
            .await?
        {
            full.note(&refused, clock::now_millis());
            return Err(refused.into());
        }
        let rec = match book::run(ctx.store(), guard, rules, request, draft, full.clone()).await {
            Err(ApiError::Scheduling(refused)) => {
                full.note(&refused, clock::now_millis());
                return Err(refused.into());
            }
            other => other?,
        };
        full.freed(&rec);
        let base = ctx.base_url();
        let resp = respond::resource(neg, StatusCode::OK, rec, Body::Representation, Some(&base))?;
        Ok((resp, None))
    })
    .await
}

/// The Appointment (or its reference) of a `$hold` / `$book` Parameters body.
fn request_of(params: &Json) -> Result<Request, ApiError> {
    let mut request = Request {
        step: Step::Book,
        resource: None,
        reference: None,
    };
    if let Some(Json::Array(ps)) = params.get("parameter") {
        for p in ps {
            match p.get_str("name") {
                Some("appointment-resource") => match p.get("resource") {
                    Some(r) if r.get_str("resourceType") == Some("Appointment") => {
                        request.resource = Some(r.clone());
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            "invalid",
                            "Parameters.parameter",
                            "appointment-resource must hold an Appointment",
                        ));
                    }
                },
                Some("appointment-reference") => {
                    let id = p
                        .get("valueReference")
                        .and_then(|r| r.get_str("reference"))
                        .and_then(|r| r.rsplit_once("Appointment/"))
                        .map(|(_, id)| id)
                        .filter(|id| crate::fhir::validate::is_valid_id(id))
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "invalid",
                                "Parameters.parameter",
                                "appointment-reference must be a reference Appointment/id",
                            )
                        })?;
                    request.reference = Some(id.to_owned());
                }
                _ => {}
            }
        }
    }
    if request.resource.is_none() && request.reference.is_none() {
        return Err(ApiError::invalid(
            "required",
            "Parameters.parameter",
            "appointment-resource or appointment-reference is required",
        ));
    }
    Ok(request)
}

async fn find_get(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let pairs = ctx.query();
    find_op(ctx, pairs).await
}

async fn find_post(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let params = format::read_resource(&ctx.req, &body, Some("Parameters"))?;
    let mut pairs = ctx.query();
    pairs.extend(parameter_pairs(&params));
    find_op(ctx, pairs).await
}

/// A Parameters resource's parameters as (name, text): dates and strings as they are, codes
/// and codings as `system|code`, references as their reference.
fn parameter_pairs(params: &Json) -> Vec<(String, String)> {
    let Some(Json::Array(ps)) = params.get("parameter") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in ps {
        let Some(name) = p.get_str("name") else {
            continue;
        };
        let text = [
            "valueDateTime",
            "valueDate",
            "valueInstant",
            "valueString",
            "valueCode",
            "valueUri",
        ]
        .iter()
        .find_map(|k| p.get_str(k).map(str::to_owned))
        .or_else(|| match p.get("valueInteger") {
            Some(Json::Number(n)) => Some(n.clone()),
            _ => None,
        })
        .or_else(|| {
            p.get("valueReference")
                .and_then(|r| r.get_str("reference"))
                .map(str::to_owned)
        })
        .or_else(|| {
            p.get("valueCoding").map(|c| {
                format!(
                    "{}|{}",
                    c.get_str("system").unwrap_or(""),
                    c.get_str("code").unwrap_or("")
                )
            })
        })
        .or_else(|| {
            p.get("valueIdentifier").map(|c| {
                format!(
                    "{}|{}",
                    c.get_str("system").unwrap_or(""),
                    c.get_str("value").unwrap_or("")
                )
            })
        });
        if let Some(text) = text {
            out.push((name.to_owned(), text));
        }
    }
    out
}

/// The find request of `$find`'s parameters (400 naming what is missing or unknown).
fn find_request(ctx: &Ctx, pairs: &[(String, String)]) -> Result<FindRequest, ApiError> {
    let mut req = FindRequest {
        count: usize::try_from(ctx.page_size(pairs)?).unwrap_or(0),
        ..FindRequest::default()
    };
    let (mut start, mut end) = (None, None);
    let when = |name: &str, v: &str| {
        crate::clock::period_of(v).ok_or_else(|| {
            ApiError::invalid(
                "invalid",
                name,
                format!("{name} '{v}' is not a FHIR date or dateTime"),
            )
        })
    };
    let reference = |v: &str, t: &str| match v.rsplit_once(&format!("{t}/")) {
        Some((_, id)) => format!("{t}/{id}"),
        None => format!("{t}/{v}"),
    };
    for (k, v) in pairs {
        match k.as_str() {
            "start" => start = Some(when("start", v)?.0),
            "end" => end = Some(when("end", v)?.1),
            "specialty" => req.specialty = Some(v.clone()),
            "visit-type" => req.visit_type = Some(v.clone()),
            "organization" => req.organization = Some(reference(v, "Organization")),
            "district" => req.district = Some(v.clone()),
            "practitioner" => {
                req.actor = Some(if v.contains("PractitionerRole/") {
                    reference(v, "PractitionerRole")
                } else {
                    reference(v, "Practitioner")
                });
            }
            "location-reference" => req.actor = Some(reference(v, "Location")),
            "patient-reference" => req.patient = Some(reference(v, "Patient")),
            "referral-identifier" => req.referral = Some(v.clone()),
            "_count" | "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::invalid(
                    "not-supported",
                    other,
                    format!("$find does not take the parameter '{other}'"),
                ));
            }
        }
    }
    let (Some(s), Some(e)) = (start, end) else {
        return Err(ApiError::invalid(
            "required",
            "Parameters.parameter",
            "$find needs start and end",
        ));
    };
    (req.start, req.end) = (s, e);
    Ok(req)
}

async fn find_op(ctx: Ctx, pairs: Vec<(String, String)>) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$find");
    ctx.audited(draft, async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Search], "Slot", None)?;
        let req = find_request(&ctx, &pairs)?;
        // A patient named must be one the caller may see (else: as if absent).
        let mut touched = Vec::new();
        let patient = req
            .patient
            .as_deref()
            .and_then(|p| p.strip_prefix("Patient/"));
        if let Some(id) = patient.map(str::to_owned) {
            let access = ctx.access().await?;
            let rec = ctx
                .db(true, move |store| {
                    record::read_for(store, &access, "Patient", &id)
                })
                .await?;
            touched.push((format!("Patient/{}", rec.id), rec.resident));
        }
        let guard = ctx.guard().await?;
        let found = ctx
            .db(false, move |store| find::find(store, &guard, &req))
            .await?;
        if let Some((reference, resident)) = found.referral.clone() {
            touched.push((reference, Some(resident)));
        }
        let entries = found
            .appointments
            .into_iter()
            .map(|a| {
                let text = String::from_utf8(a.to_bytes()).unwrap_or_default();
                let url = format!("urn:uuid:{}", record::new_id());
                crate::fhir::bundle::search_entry(&url, text, "match")
            })
            .collect();
        let links = ctx.page_links(&pairs, None, false, None);
        let resp = respond::bundle(neg, "searchset", Some(found.total), links, entries)?;
        Ok((resp, Some(touched)))
    })
    .await
}
