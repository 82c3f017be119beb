//! Answers shared by the handlers: a single resource with its version headers, and a new
//! Bundle (searchset, history) in the negotiated format.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};

use super::format::{self, Negotiated};
use crate::clock;
use crate::error::ApiError;
use crate::fhir::bundle::{self, Link};
use crate::fhir::json::Json;
use crate::fhir::outcome::{Issue, OperationOutcome};
use crate::services::record::{self, Record};

/// What a single-resource answer carries in its body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The resource.
    Representation,
    /// Nothing.
    Minimal,
    /// An OperationOutcome saying what was done.
    Outcome,
}

/// A single resource's answer: its ETag and Last-Modified, `Location` (`base/Type/id/_history/v`)
/// when given, and the body asked for.
pub fn resource(
    neg: Negotiated,
    status: StatusCode,
    rec: Record,
    body: Body,
    location: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let mut b = format::respond(neg, status);
    b.insert_header((header::ETAG, format!("W/\"{}\"", rec.version_id)));
    b.insert_header((header::LAST_MODIFIED, clock::http_date(rec.last_updated)));
    if let Some(base) = location {
        let loc = format!(
            "{base}/{}/{}/_history/{}",
            rec.res_type, rec.id, rec.version_id
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            b.insert_header((header::LOCATION, v.clone()));
            b.insert_header((header::CONTENT_LOCATION, v));
        }
    }
    match body {
        Body::Representation => Ok(b.body(format::encode_stored(neg, rec.content)?)),
        Body::Minimal => Ok(b.finish()),
        Body::Outcome => {
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

/// A 200 with a new Bundle of `kind` (`history`, `searchset`).
pub fn bundle(
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

/// A 200 with a document the handler built (Parameters, a Provenance, …).
pub fn document(neg: Negotiated, doc: &Json) -> Result<HttpResponse, ApiError> {
    Ok(format::respond(neg, StatusCode::OK).body(format::encode(neg, doc)?))
}
