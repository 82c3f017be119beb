//! Booking operations on the slot pool: `POST Appointment/$hold` (IHE ITI-116) and
//! `POST Appointment/$book` (ITI-117), each with a Parameters body holding
//! `appointment-resource` (an Appointment) or `appointment-reference`. `$book` with a
//! `cancelled` Appointment cancels. Both answer the stored Appointment itself (IHE allows a
//! Bundle too; the resource is what FHIR clients read back), 200, with its ETag and Location.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::ctx::Ctx;
use super::format;
use super::respond::{self, Body};
use crate::auth::Perm;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::scheduling::Rules;
use crate::services::scheduling::book::{self, Request, Step};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
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
        let guard = ctx.guard().await?;
        let rules = Rules::of(&ctx.state.settings);
        let rec = ctx
            .db(false, move |store| {
                book::run(store, guard, rules, request, draft)
            })
            .await?;
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
