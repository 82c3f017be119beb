//! Resident operations: `Patient/[id]/$everything` (the longitudinal record), `Patient/$match`
//! (scored candidates among the golden residents), `Patient/$ihe-pix` (IHE PIXm: the same
//! person's identifiers across institutions) and `Patient/$resident-reviews` (possible matches
//! waiting for an administrator).

use actix_web::{HttpResponse, web};

use super::ctx::{Ctx, Touched, since_param, type_cursor};
use super::format;
use super::respond;
use crate::auth::Perm;
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle::{self, obj, s as text};
use crate::fhir::json::Json;
use crate::fhir::validate::is_valid_id;
use crate::services::audit::Draft;
use crate::services::record::{self, Record};
use crate::services::residents::{everything, mpi};
use crate::store::Store;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/Patient/$match")
            .name("patient-match")
            .post(patient_match),
    )
    .service(
        web::resource("/Patient/$ihe-pix")
            .name("patient-pix")
            .get(patient_pix),
    )
    .service(
        web::resource("/Patient/$merge")
            .name("patient-merge")
            .post(patient_merge),
    )
    .service(
        web::resource("/Patient/$unmerge")
            .name("patient-unmerge")
            .post(patient_unmerge),
    )
    .service(
        web::resource("/Patient/$resident-reviews")
            .name("patient-reviews")
            .get(resident_reviews),
    )
    .service(
        web::resource("/Patient/{id}/$summary")
            .name("patient-summary")
            .get(patient_summary),
    )
    .service(
        web::resource("/Patient/{id}/$everything")
            .name("patient-everything")
            .get(patient_everything),
    );
}

/// `POST Patient/$match` with a Parameters body: `resource` (the Patient to match),
/// `onlyCertainMatches`, `count`. Answers a searchset of golden residents, best first, each
/// with `search.score` and the match-grade extension.
async fn patient_match(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$match");
    ctx.audited(draft, patient_match_body(&ctx, body)).await
}

async fn patient_match_body(
    ctx: &Ctx,
    body: web::Bytes,
) -> Result<(HttpResponse, Touched), ApiError> {
    ctx.authorize(&[Perm::Search], "Patient", None)?;
    let access = ctx.access().await?;
    if access.is_restricted() {
        return Err(ApiError::Forbidden(
            "the resident index is for institutions' systems and staff".to_owned(),
        ));
    }
    let params = format::read_resource(&ctx.req, &body, Some("Parameters"))?;
    let mut patient = None;
    let mut only_certain = false;
    let mut count = 10usize;
    if let Some(Json::Array(ps)) = params.get("parameter") {
        for p in ps {
            match p.get_str("name") {
                Some("resource") => patient = p.get("resource").cloned(),
                Some("onlyCertainMatches") => {
                    only_certain = matches!(p.get("valueBoolean"), Some(Json::Bool(true)));
                }
                Some("count") => {
                    count = match p.get("valueInteger") {
                        Some(Json::Number(n)) => n.parse::<usize>().ok().filter(|c| *c > 0),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "invalid",
                            "Parameters.parameter",
                            "count must be a positive integer",
                        )
                    })?
                    .min(100);
                }
                _ => {}
            }
        }
    }
    let patient = match patient {
        Some(p) if p.get_str("resourceType") == Some("Patient") => p,
        _ => {
            return Err(ApiError::invalid(
                "required",
                "Parameters.parameter",
                "the parameter 'resource' must hold the Patient to match",
            ));
        }
    };
    crate::fhir::validate::tree(&patient, Some("Patient")).map_err(ApiError::Invalid)?;
    if let Some(why) = crate::ident::check_resource("Patient", &patient, &clock::today_digits()) {
        return Err(ApiError::Unprocessable(why));
    }
    let found = ctx
        .db(false, move |store| {
            mpi::match_residents(store, &access, &patient, only_certain, count)
        })
        .await?;
    let base = ctx.base_url();
    let touched: Vec<(String, Option<String>)> = found
        .iter()
        .map(|c| (format!("Patient/{}", c.id), Some(c.id.clone())))
        .collect();
    let entries = found
        .into_iter()
        .map(|c| {
            obj(vec![
                ("fullUrl", text(format!("{base}/Patient/{}", c.id))),
                ("resource", Json::Raw(c.content)),
                (
                    "search",
                    obj(vec![
                        (
                            "extension",
                            Json::Array(vec![obj(vec![
                                (
                                    "url",
                                    text("http://hl7.org/fhir/StructureDefinition/match-grade"),
                                ),
                                ("valueCode", text(c.grade)),
                            ])]),
                        ),
                        ("mode", text("match")),
                        ("score", Json::Number(format!("{:.4}", c.normalized))),
                    ]),
                ),
            ])
        })
        .collect::<Vec<_>>();
    let total = entries.len();
    let resp = respond::bundle(
        ctx.negotiate()?,
        "searchset",
        Some(total),
        Vec::new(),
        entries,
    )?;
    Ok((resp, Some(touched)))
}

/// `GET Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=…]` (IHE PIXm): the
/// identifiers the same person has at every institution (and the platform's golden resident),
/// as Parameters with `targetIdentifier` and `targetId`. 404 when no Patient has the source
/// identifier.
async fn patient_pix(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$ihe-pix");
    ctx.audited(draft, patient_pix_body(&ctx)).await
}

async fn patient_pix_body(ctx: &Ctx) -> Result<(HttpResponse, Touched), ApiError> {
    ctx.authorize(&[Perm::Search], "Patient", None)?;
    let access = ctx.access().await?;
    if access.is_restricted() {
        return Err(ApiError::Forbidden(
            "the resident index is for institutions' systems and staff".to_owned(),
        ));
    }
    let pairs = ctx.query();
    let mut source = None;
    let mut targets: Vec<String> = Vec::new();
    for (k, v) in &pairs {
        match k.as_str() {
            "sourceIdentifier" => source = Some(v.clone()),
            "targetSystem" => targets.extend(v.split(',').map(|s| s.trim().to_owned())),
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::invalid(
                    "not-supported",
                    other,
                    format!("$ihe-pix does not take the parameter '{other}'"),
                ));
            }
        }
    }
    let Some((system, value)) = source.as_deref().and_then(|s| s.split_once('|')) else {
        return Err(ApiError::invalid(
            "required",
            "sourceIdentifier",
            "sourceIdentifier must be given as system|value",
        ));
    };
    if system.is_empty() || value.is_empty() {
        return Err(ApiError::invalid(
            "invalid",
            "sourceIdentifier",
            "sourceIdentifier needs both a system and a value",
        ));
    }
    let (system, value) = (system.to_owned(), value.to_owned());
    let found = ctx
        .db(false, move |store| {
            mpi::cross_references(store, &access, &system, &value)
        })
        .await?
        .ok_or_else(|| ApiError::NotFound("no Patient has the source identifier".to_owned()))?;
    let base = ctx.base_url();
    let mut parameters = Vec::new();
    let mut patients: Vec<String> = Vec::new();
    for (s, v, pid) in found {
        if !targets.is_empty() && !targets.contains(&s) {
            continue;
        }
        parameters.push(obj(vec![
            ("name", text("targetIdentifier")),
            (
                "valueIdentifier",
                obj(vec![("system", text(s)), ("value", text(v))]),
            ),
        ]));
        if !patients.contains(&pid) {
            patients.push(pid);
        }
    }
    let keys = patients.clone();
    let touched = ctx
        .db(false, move |store| {
            let keys: Vec<(&str, &str)> = keys.iter().map(|p| ("Patient", p.as_str())).collect();
            record::residents_in(store, &keys)
        })
        .await?;
    for pid in patients {
        parameters.push(obj(vec![
            ("name", text("targetId")),
            (
                "valueReference",
                obj(vec![("reference", text(format!("{base}/Patient/{pid}")))]),
            ),
        ]));
    }
    let doc = obj(vec![
        ("resourceType", text("Parameters")),
        ("parameter", Json::Array(parameters)),
    ]);
    Ok((respond::document(ctx.negotiate()?, &doc)?, Some(touched)))
}

/// `GET Patient/$resident-reviews`: the possible matches waiting for review (administrators),
/// newest first, as Parameters with one `review` part per pair.
async fn resident_reviews(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$resident-reviews");
    ctx.audited(draft, resident_reviews_body(&ctx)).await
}

async fn resident_reviews_body(ctx: &Ctx) -> Result<(HttpResponse, Touched), ApiError> {
    ctx.require_admin("the review list", Perm::Read)?;
    let pairs = ctx.query();
    let count = ctx.page_size(&pairs)?;
    let reviews = ctx
        .db(false, move |store| mpi::reviews(store, count))
        .await?;
    let parameters = reviews
        .into_iter()
        .map(|r| {
            obj(vec![
                ("name", text("review")),
                (
                    "part",
                    Json::Array(vec![
                        obj(vec![
                            ("name", text("source")),
                            (
                                "valueReference",
                                obj(vec![(
                                    "reference",
                                    text(format!("Patient/{}", r.source_id)),
                                )]),
                            ),
                        ]),
                        obj(vec![
                            ("name", text("candidate")),
                            (
                                "valueReference",
                                obj(vec![(
                                    "reference",
                                    text(format!("Patient/{}", r.golden_id)),
                                )]),
                            ),
                        ]),
                        obj(vec![
                            ("name", text("score")),
                            ("valueDecimal", Json::Number(format!("{:.2}", r.score))),
                        ]),
                        obj(vec![
                            ("name", text("recorded")),
                            ("valueInstant", text(clock::instant(r.created))),
                        ]),
                    ]),
                ),
            ])
        })
        .collect();
    let doc = obj(vec![
        ("resourceType", text("Parameters")),
        ("parameter", Json::Array(parameters)),
    ]);
    Ok((respond::document(ctx.negotiate()?, &doc)?, Some(Vec::new())))
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
async fn patient_everything(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$everything");
    let body = patient_everything_body(&ctx, path.into_inner());
    ctx.audited(draft, body).await
}

async fn patient_everything_body(
    ctx: &Ctx,
    id: String,
) -> Result<(HttpResponse, Touched), ApiError> {
    ctx.authorize(&[Perm::Read], "Patient", Some(&id))?;
    let neg = ctx.negotiate()?;
    let pairs = ctx.query();
    let mut request = everything::Request {
        count: ctx.page_size(&pairs)?,
        readable: crate::services::access::Readable::of(&ctx.caller),
        ..Default::default()
    };
    let (mut start, mut end) = (None, None);
    for (k, v) in &pairs {
        match k.as_str() {
            "_since" => request.since = Some(since_param(v)?),
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
            "_cursor" => request.after = Some(type_cursor(v)?),
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
        ctx.caller.require(Perm::Read, Some(t))?;
    }
    let access = ctx.access().await?;
    let page = ctx
        .db(false, move |store| {
            let page = everything::everything(store, &id, &request, &access)?;
            let g = page.golden.as_str();
            if access.visible_in(store, "Patient", g, Some(g))? {
                Ok(page)
            } else {
                Err(access.hidden("Patient", &id))
            }
        })
        .await?;
    let base = ctx.base_url();
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.as_str());
    let next = page.next.as_ref().map(|(t, i)| format!("{t}/{i}"));
    let links = ctx.page_links(&pairs, cursor, false, next.as_deref());
    // The page's own resources are the resident's; the registry resources it includes are not.
    let touched: Vec<(String, Option<String>)> = page
        .found
        .iter()
        .map(|(t, i, _)| (format!("{t}/{i}"), Some(page.golden.clone())))
        .chain(
            page.included
                .iter()
                .map(|(t, i, _)| (format!("{t}/{i}"), None)),
        )
        .collect();
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
    Ok((
        respond::bundle(neg, "searchset", None, links, entries)?,
        Some(touched),
    ))
}

/// The golden residents and reason of a `$merge` / `$unmerge` Parameters body.
fn merge_request(ctx: &Ctx, body: &[u8]) -> Result<(String, String, String), ApiError> {
    let params = format::read_resource(&ctx.req, body, Some("Parameters"))?;
    let mut found: [Option<String>; 3] = [None, None, None];
    if let Some(Json::Array(ps)) = params.get("parameter") {
        for p in ps {
            let slot = match p.get_str("name") {
                Some("source-patient") => 0,
                Some("target-patient") => 1,
                Some("reason") => 2,
                _ => continue,
            };
            found[slot] = if slot == 2 {
                p.get_str("valueString").map(str::to_owned)
            } else {
                p.get("valueReference")
                    .and_then(|r| r.get_str("reference"))
                    .and_then(|r| r.strip_prefix("Patient/"))
                    .filter(|id| is_valid_id(id))
                    .map(str::to_owned)
            };
        }
    }
    let [Some(from), Some(to), Some(reason)] = found else {
        return Err(ApiError::invalid(
            "required",
            "Parameters.parameter",
            "source-patient and target-patient (Patient references) and reason (a string) are required",
        ));
    };
    if reason.trim().is_empty() {
        return Err(ApiError::invalid(
            "required",
            "Parameters.parameter",
            "the reason must not be empty",
        ));
    }
    Ok((from, to, reason))
}

/// `POST Patient/$merge` (administrators): golden resident `source-patient` into
/// `target-patient`, with a `reason`. Answers the Provenance that records it.
async fn patient_merge(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    merge_operation(ctx, body, crate::services::residents::merge::merge).await
}

/// `POST Patient/$unmerge` (administrators): undo the latest merge of `source-patient` into
/// `target-patient`. Answers the Provenance that records it.
async fn patient_unmerge(ctx: Ctx, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    merge_operation(ctx, body, crate::services::residents::merge::unmerge).await
}

/// A merge service call (`$merge` or `$unmerge`, which take the same Parameters): checked for
/// an administrator, run, and answered with its Provenance.
async fn merge_operation(
    ctx: Ctx,
    body: web::Bytes,
    op: MergeOp,
) -> Result<HttpResponse, ApiError> {
    let name = if ctx.req.path().ends_with("$unmerge") {
        "$unmerge"
    } else {
        "$merge"
    };
    let draft = ctx.operation(name);
    ctx.audited(draft.clone(), async {
        ctx.require_admin("merging residents", Perm::Update)?;
        let (from, to, reason) = merge_request(&ctx, &body)?;
        let who = ctx.caller.sub.clone();
        let rec = ctx
            .db(false, move |store| op(store, from, to, reason, who, draft))
            .await?;
        let neg = ctx.negotiate()?;
        let resp = format::respond(neg, actix_web::http::StatusCode::OK)
            .body(format::encode_stored(neg, rec.content)?);
        Ok((resp, None))
    })
    .await
}

/// `$merge` or `$unmerge`: the two golden residents, the reason, who asks, the audit draft.
type MergeOp = fn(&Store, String, String, String, String, Draft) -> Result<Record, ApiError>;

/// `GET Patient/[id]/$summary`: the resident's summary as a document Bundle (Composition first).
async fn patient_summary(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let draft = ctx.operation("$summary");
    let body = patient_summary_body(&ctx, path.into_inner());
    ctx.audited(draft, body).await
}

async fn patient_summary_body(ctx: &Ctx, id: String) -> Result<(HttpResponse, Touched), ApiError> {
    ctx.authorize(&[Perm::Read], "Patient", Some(&id))?;
    for (k, _) in ctx.query() {
        if !matches!(k.as_str(), "_format" | "_pretty") {
            return Err(ApiError::invalid(
                "not-supported",
                k.as_str(),
                format!("$summary does not take the parameter '{k}'"),
            ));
        }
    }
    let base = ctx.base_url();
    let access = ctx.access().await?;
    let readable = crate::services::access::Readable::of(&ctx.caller);
    let (doc, touched) = ctx
        .db(false, move |store| {
            let touched = record::residents_in(store, &[("Patient", id.as_str())])?;
            let resident = touched.first().and_then(|(_, r)| r.clone());
            if !access.visible_in(store, "Patient", &id, resident.as_deref())? {
                return Err(access.hidden("Patient", &id));
            }
            let doc = everything::summary(store, &id, &base, &access, &readable)?;
            Ok((doc, touched))
        })
        .await?;
    Ok((respond::document(ctx.negotiate()?, &doc)?, Some(touched)))
}
