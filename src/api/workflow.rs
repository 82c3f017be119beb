//! `POST ServiceRequest/$refer`: make a referral or consultation in one step (see
//! [`crate::services::workflow::refer`]). Parameters: `serviceRequest` (the request,
//! required), `task` (its Task; made from the request when absent), `deadline` (a dateTime:
//! the Task's deadline to accept, when it is made from the request) and `appointment` (an
//! Appointment to book on a referral place). Answers 201 with Parameters holding the stored
//! `serviceRequest`, `task` and `appointment`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::ctx::Ctx;
use super::format;
use crate::auth::Perm;
use crate::error::ApiError;
use crate::fhir::json::Json;
use crate::services::record::Record;
use crate::services::scheduling::Rules;
use crate::services::workflow::refer::{self, Referral};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/ServiceRequest/$refer")
            .name("service-request-refer")
            .post(refer_op),
    );
}

async fn refer_op(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$refer");
    ctx.audited(draft.clone(), async {
        let neg = ctx.negotiate()?;
        ctx.authorize(&[Perm::Create], "ServiceRequest", None)?;
        ctx.authorize(&[Perm::Create], "Task", None)?;
        let params = format::read_resource(&ctx.req, &body, Some("Parameters"))?;
        let referral = referral_of(&params)?;
        if referral.appointment.is_some() {
            ctx.authorize(&[Perm::Create], "Appointment", None)?;
        }
        let guard = ctx.guard().await?;
        let rules = Rules::of(&ctx.state.settings);
        let done = ctx
            .db(false, move |store| {
                refer::run(store, guard, rules, referral, draft)
            })
            .await?;
        let base = ctx.base_url();
        let mut out = vec![
            param("serviceRequest", &done.request)?,
            param("task", &done.task)?,
        ];
        if let Some(a) = &done.appointment {
            ctx.state.full_slots.freed(a);
            out.push(param("appointment", a)?);
        }
        let result = Json::Object(vec![
            (
                "resourceType".to_owned(),
                Json::String("Parameters".to_owned()),
            ),
            ("parameter".to_owned(), Json::Array(out)),
        ]);
        let resp = format::respond(neg, StatusCode::CREATED)
            .insert_header((
                actix_web::http::header::LOCATION,
                format!(
                    "{base}/Task/{}/_history/{}",
                    done.task.id, done.task.version_id
                ),
            ))
            .body(format::encode(neg, &result)?);
        Ok((resp, None))
    })
    .await
}

/// An out parameter holding a stored resource.
fn param(name: &str, rec: &Record) -> Result<Json, ApiError> {
    let resource = Json::parse(rec.content.as_bytes()).map_err(ApiError::internal)?;
    Ok(Json::Object(vec![
        ("name".to_owned(), Json::String(name.to_owned())),
        ("resource".to_owned(), resource),
    ]))
}

fn referral_of(params: &Json) -> Result<Referral, ApiError> {
    let mut r = Referral {
        request: Json::Null,
        task: None,
        deadline: None,
        appointment: None,
    };
    let wrong = |name: &str, t: &str| {
        ApiError::invalid(
            "invalid",
            format!("Parameters.parameter[{name}]"),
            format!("{name} must hold a {t}"),
        )
    };
    let resource = |p: &Json, name: &str, t: &str| -> Result<Json, ApiError> {
        match p.get("resource") {
            Some(res) if res.get_str("resourceType") == Some(t) => Ok(res.clone()),
            _ => Err(wrong(name, t)),
        }
    };
    if let Some(Json::Array(ps)) = params.get("parameter") {
        for p in ps {
            match p.get_str("name") {
                Some("serviceRequest") => {
                    r.request = resource(p, "serviceRequest", "ServiceRequest")?
                }
                Some("task") => r.task = Some(resource(p, "task", "Task")?),
                Some("appointment") => {
                    r.appointment = Some(resource(p, "appointment", "Appointment")?)
                }
                Some("deadline") => {
                    r.deadline = Some(
                        p.get_str("valueDateTime")
                            .ok_or_else(|| wrong("deadline", "valueDateTime"))?
                            .to_owned(),
                    );
                }
                _ => {}
            }
        }
    }
    if matches!(r.request, Json::Null) {
        return Err(ApiError::invalid(
            "required",
            "Parameters.parameter",
            "serviceRequest (a ServiceRequest resource) is required",
        ));
    }
    Ok(r)
}
