//! One wrapper around every request: metrics by interaction, a log line without personal data
//! (method, route pattern, status, latency; never the query string or body), and errors rendered
//! as OperationOutcome in the negotiated format, including those raised by the framework itself
//! (unknown routes, oversized bodies, malformed paths).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpResponse, web};

use super::AppState;
use super::format::{self, Format};
use crate::error::ApiError;

/// A request body that fails once its deadline passes (and says so in `fired`).
struct Deadline {
    inner: actix_web::dev::Payload,
    sleep: Pin<Box<actix_web::rt::time::Sleep>>,
    fired: Arc<AtomicBool>,
}

impl futures_util::Stream for Deadline {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.fired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "request body timed out"),
            ))));
        }
        Poll::Pending
    }
}

/// The FHIR interaction (or operations endpoint) a request is, from its route name and method.
pub fn interaction(route: Option<&str>, method: &Method) -> &'static str {
    match (route, method.as_str()) {
        (Some("system"), "POST") => "transaction",
        (Some("system"), _) => "search-system",
        (Some("type"), "GET") | (Some("search-post"), _) => "search-type",
        (Some("search-compartment"), _) => "search-compartment",
        (Some("type"), "POST") => "create",
        (Some("type"), "PUT") => "conditional-update",
        (Some("type"), "DELETE") => "conditional-delete",
        (Some("instance"), "GET") => "read",
        (Some("instance"), "PUT") => "update",
        (Some("instance"), "PATCH") => "patch",
        (Some("instance"), "DELETE") => "delete",
        (Some("vread"), _) => "vread",
        (Some("history-instance"), _) => "history-instance",
        (Some("history-type"), _) => "history-type",
        (Some("history-system"), _) => "history-system",
        (Some("metadata"), _) => "capabilities",
        (Some("smart-configuration"), _) => "smart-configuration",
        (Some("healthz"), _) => "healthz",
        (Some("readyz"), _) => "readyz",
        (Some("metrics"), _) => "metrics",
        _ => "unknown",
    }
}

pub async fn observe(
    mut req: ServiceRequest,
    next: actix_web::middleware::Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let negotiated = format::negotiate(req.request()).ok();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // The body must arrive within the deadline: a client sending it slowly (or not at all)
    // is answered 408 instead of holding the connection.
    let timed_out = Arc::new(AtomicBool::new(false));
    let headers = req.headers();
    let has_body = headers.contains_key(actix_web::http::header::TRANSFER_ENCODING)
        || headers
            .get(actix_web::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if let Some(s) = state.as_ref().filter(|_| has_body) {
        let deadline = Duration::from_millis(s.settings.body_timeout_ms);
        let inner = actix_web::HttpMessage::take_payload(&mut req);
        let stream: actix_http::BoxedPayloadStream = Box::pin(Deadline {
            inner,
            sleep: Box::pin(actix_web::rt::time::sleep(deadline)),
            fired: timed_out.clone(),
        });
        req.set_payload(actix_http::Payload::from(stream));
    }
    let res = next.call(req).await?;
    let res = if timed_out.load(Ordering::Relaxed) {
        let e = ApiError::RequestTimeout("the request body did not arrive in time".to_owned());
        let (req, _) = res.into_parts();
        let mut res = ServiceResponse::from_err(e, req);
        res.response_mut().headers_mut().insert(
            actix_web::http::header::CONNECTION,
            actix_web::http::header::HeaderValue::from_static("close"),
        );
        res
    } else {
        res
    };
    // A refused authentication is audited too (a login-relevant event), with no patient.
    if res.status() == actix_web::http::StatusCode::UNAUTHORIZED
        && let Some(s) = &state
    {
        let address = res.request().peer_addr().map(|a| a.ip().to_string());
        let event = crate::services::audit::refused_authentication(address, res.request().path());
        if let Err(e) = s.audit.record(vec![event]).await {
            tracing::error!(error = %e, "a refused authentication could not be audited");
        }
    }
    let name = interaction(res.request().match_name(), &method);
    let res = if res.status().is_client_error() || res.status().is_server_error() {
        render_error(res, negotiated.map_or(Format::Json, |n| n.format))
    } else {
        res
    };
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(s) = state {
        s.metrics.observe(name, status, elapsed.as_secs_f64());
    }
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    tracing::info!(
        method = %method,
        route = %route,
        interaction = name,
        status,
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    Ok(res)
}

/// Make every error an OperationOutcome in the negotiated format.
fn render_error(res: ServiceResponse<BoxBody>, format: Format) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let api_error = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map(ApiError::outcome);
    let already_fhir = api_error.is_some();
    if already_fhir && format == Format::Json {
        return res;
    }
    let outcome = api_error.unwrap_or_else(|| generic(status).outcome());
    let neg = format::Negotiated {
        format,
        pretty: false,
    };
    let body = format::encode(neg, &outcome.to_json()).unwrap_or_default();
    let (req, old) = res.into_parts();
    let mut b = HttpResponse::build(status);
    for (k, v) in old.headers() {
        if k != actix_web::http::header::CONTENT_TYPE
            && k != actix_web::http::header::CONTENT_LENGTH
        {
            b.insert_header((k.clone(), v.clone()));
        }
    }
    b.content_type(format::content_type(neg));
    ServiceResponse::new(req, b.body(body).map_into_boxed_body())
}

/// An ApiError for a status the framework produced on its own.
fn generic(status: StatusCode) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(
            "the request body is larger than this server accepts".to_owned(),
        ),
        StatusCode::NOT_FOUND => ApiError::NotFound("no such resource or route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed("this method is not allowed on this URL".to_owned())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("unsupported Content-Type".to_owned())
        }
        s if s.is_server_error() => ApiError::Internal("internal server error".to_owned()),
        _ => ApiError::bad_request("the request could not be understood"),
    }
}
