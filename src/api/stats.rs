//! `$evaluate-measure` on the shipped indicators (see [`crate::services::stats`]):
//! `GET Measure/[id]/$evaluate-measure?periodStart=…&periodEnd=…` and
//! `GET Measure/$evaluate-measure?measure=<url>&…`. Optional: `stratifier` (comma-separated;
//! all by default), `area` (a code inside the caller's area), `period` (`month`, `quarter` or
//! `year`: a Bundle of one report per period), `reportType` (`summary` only; `subject-list`
//! and `individual` would name people), `_format=csv`. For officials and administrators.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpResponse, web};

use super::ctx::Ctx;
use super::format;
use crate::auth::{Perm, Role};
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle::{obj, s};
use crate::fhir::json::Json;
use crate::services::stats::{self, Period, Publication, Request, report};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/Measure/$evaluate-measure")
            .name("measure-evaluate-type")
            .get(by_url),
    )
    .service(
        web::resource("/Measure/{id}/$evaluate-measure")
            .name("measure-evaluate")
            .get(by_id),
    );
}

async fn by_url(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    evaluate(ctx, None).await
}

async fn by_id(ctx: Ctx, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    evaluate(ctx, Some(id.into_inner())).await
}

async fn evaluate(ctx: Ctx, id: Option<String>) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$evaluate-measure");
    ctx.audited(draft, async {
        let params = ctx.query();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let csv = get("_format") == Some("csv");
        let neg = if csv { None } else { Some(ctx.negotiate()?) };
        if !matches!(ctx.caller.role, Role::Official | Role::Admin) {
            return Err(ApiError::Forbidden(
                "statistics are for officials and administrators".to_owned(),
            ));
        }
        ctx.authorize(&[Perm::Read], "Measure", None)?;
        match get("reportType") {
            None | Some("summary") => {}
            Some(t @ ("subject-list" | "individual")) => {
                return Err(ApiError::Forbidden(format!(
                    "reportType {t} names individuals; statistics are published as summaries only"
                )));
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "reportType: '{other}' is not summary, subject-list or individual"
                )));
            }
        }
        if get("subject").is_some() {
            return Err(ApiError::Forbidden(
                "subject: statistics are not evaluated for an individual".to_owned(),
            ));
        }
        let name = match (&id, get("measure")) {
            (Some(id), _) => id.clone(),
            (None, Some(url)) => url
                .strip_prefix("urn:huimin:Measure:")
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("measure: no Measure has the url '{url}'"))
                })?,
            (None, None) => {
                return Err(ApiError::bad_request(
                    "measure: name the Measure by its url (or call Measure/[id]/$evaluate-measure)"
                        .to_owned(),
                ));
            }
        };
        let indicator = stats::indicator(&name).ok_or_else(|| {
            ApiError::NotFound(format!(
                "Measure/{name} is not an indicator the platform evaluates"
            ))
        })?;
        let (start, end) = match (get("periodStart"), get("periodEnd")) {
            (Some(s), Some(e)) => (s, e),
            (None, _) => return Err(ApiError::bad_request("periodStart is required".to_owned())),
            (_, None) => return Err(ApiError::bad_request("periodEnd is required".to_owned())),
        };
        let period = Period::parse(start, end)?;
        let stratifiers = match get("stratifier") {
            None => stats::STRATIFIERS.to_vec(),
            Some(list) => list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    stats::STRATIFIERS
                        .iter()
                        .find(|k| **k == s)
                        .copied()
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "stratifier: '{s}' is not one of {}",
                                stats::STRATIFIERS.join(", ")
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let area = stats::area_of(&ctx.caller, get("area"))?;
        let periods = match get("period") {
            None => vec![period],
            Some(unit) => period.split(unit)?,
        };
        let series = get("period").is_some();
        let publication = Publication::of(&ctx.state.settings)?;
        let p = publication.clone();
        let mut req = Request {
            indicator: indicator.clone(),
            period,
            stratifiers,
            area,
        };
        let published = ctx
            .db(false, move |store| {
                let mut out = Vec::with_capacity(periods.len());
                for period in periods {
                    req.period = period;
                    let e = stats::evaluate(store, &req, &p)?;
                    out.push(report::publish(&req.indicator, period, &req.area, &e, &p));
                }
                Ok(out)
            })
            .await?;
        let Some(neg) = neg else {
            let body = report::csv(&published);
            let resp = HttpResponse::Ok()
                .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
                .insert_header((
                    CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.csv\""),
                ))
                .body(body);
            return Ok((resp, None));
        };
        let now = clock::now_millis();
        let mut docs: Vec<Json> = published
            .iter()
            .map(|r| report::measure_report(&indicator, r, &publication, now))
            .collect();
        let doc = if series {
            let entries = docs.drain(..).map(|d| obj(vec![("resource", d)])).collect();
            obj(vec![
                ("resourceType", s("Bundle")),
                ("type", s("collection")),
                ("timestamp", s(clock::instant(now))),
                ("entry", Json::Array(entries)),
            ])
        } else {
            docs.pop().ok_or_else(|| ApiError::internal("no report"))?
        };
        let resp = format::respond(neg, StatusCode::OK).body(format::encode(neg, &doc)?);
        Ok((resp, None))
    })
    .await
}
