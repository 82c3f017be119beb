//! How the API answers a failure: every [`ApiError`] as an HTTP status and an OperationOutcome
//! whose `issue.code` names the kind (the one table of the project, below), in the negotiated
//! format (applied by the format middleware; JSON is the default).
//!
//! | error                  | HTTP | OperationOutcome `issue.code` |
//! |------------------------|------|-------------------------------|
//! | `Invalid`              | 400  | `invalid` / `structure` / `value` / `required` (with `expression`) |
//! | `Unauthorized`         | 401  | `login`                       |
//! | `Forbidden`            | 403  | `forbidden`                   |
//! | `NotFound`             | 404  | `not-found`                   |
//! | `MethodNotAllowed`     | 405  | `not-supported`               |
//! | `RequestTimeout`       | 408  | `timeout`                     |
//! | `NotAcceptable`        | 406  | `not-supported`               |
//! | `Conflict`             | 409  | `conflict`                    |
//! | `Gone`                 | 410  | `deleted`                     |
//! | `PreconditionFailed`   | 412  | `conflict` / `multiple-matches` |
//! | `PayloadTooLarge`      | 413  | `too-long`                    |
//! | `UnsupportedMediaType` | 415  | `not-supported`               |
//! | `Unprocessable`        | 422  | `processing`                  |
//! | `NotImplemented`       | 501  | `not-supported`               |
//! | `Unavailable`          | 503  | `transient`                   |
//! | `Internal`             | 500  | `exception` (generic text only) |

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::error::ApiError;
use crate::fhir::outcome::{Issue, OperationOutcome};
use crate::services::audit::Outcome;

impl ApiError {
    pub fn outcome(&self) -> OperationOutcome {
        let issue = match self {
            ApiError::Invalid(issues) => {
                return OperationOutcome {
                    issues: issues.clone(),
                };
            }
            ApiError::Unauthorized(t) => Issue::error("login", t),
            ApiError::Forbidden(t) => Issue::error("forbidden", t),
            ApiError::NotFound(t) => Issue::error("not-found", t),
            ApiError::MethodNotAllowed(t) | ApiError::NotAcceptable(t) => {
                Issue::error("not-supported", t)
            }
            ApiError::UnsupportedMediaType(t) | ApiError::NotImplemented(t) => {
                Issue::error("not-supported", t)
            }
            ApiError::RequestTimeout(t) => Issue::error("timeout", t),
            ApiError::Conflict(t) => Issue::error("conflict", t),
            ApiError::Gone(t) => Issue::error("deleted", t),
            ApiError::PreconditionFailed(code, t) => Issue::error(code, t),
            ApiError::PayloadTooLarge(t) => Issue::error("too-long", t),
            ApiError::Unprocessable(t) => Issue::error("processing", t),
            ApiError::Unavailable(t) => Issue::error("transient", t),
            ApiError::Internal(t) => Issue::fatal("exception", t),
        };
        OperationOutcome {
            issues: vec![issue],
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PreconditionFailed(..) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        resp.content_type(crate::api::format::FHIR_JSON);
        if let ApiError::Unauthorized(_) = self {
            resp.insert_header(("WWW-Authenticate", "Bearer realm=\"huimin\""));
        }
        resp.body(self.outcome().to_json().to_bytes())
    }
}

/// The audit outcome of a failed request: refused with its status (4xx), or failed (5xx).
pub fn audit_outcome(e: &ApiError) -> Outcome {
    let s = e.status_code().as_u16();
    if s >= 500 {
        Outcome::Failed
    } else {
        Outcome::Refused(s)
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::internal(e)
    }
}

impl From<StatusCode> for ApiError {
    fn from(s: StatusCode) -> Self {
        ApiError::internal(format!("unexpected status {s}"))
    }
}
