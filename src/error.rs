//! Errors as the API answers them.
//!
//! Policy: store functions return `diesel::QueryResult`; services return [`ApiError`] (or their
//! own error converted into it); handlers return `Result<_, ApiError>`. Start-up and commands use
//! `anyhow`. A database or internal failure is logged with its cause and answered with a generic
//! message: SQL, file paths and backend text never reach a client.
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

use crate::fhir::outcome::{Issue, OperationOutcome};

/// Every failure a request can end in.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {0:?}")]
    Invalid(Vec<Issue>),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    #[error("request timeout: {0}")]
    RequestTimeout(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("gone: {0}")]
    Gone(String),
    #[error("precondition failed: {1}")]
    PreconditionFailed(&'static str, String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("not implemented: {0}")]
    NotImplemented(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 about one element.
    pub fn invalid(
        code: &'static str,
        expression: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        ApiError::Invalid(vec![Issue::error(code, text).at(expression)])
    }

    /// A 400 with no particular element.
    pub fn bad_request(text: impl Into<String>) -> Self {
        ApiError::Invalid(vec![Issue::error("invalid", text)])
    }

    /// An internal failure: the cause is logged here, the client gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::Internal("internal server error".to_owned())
    }

    /// The same error, saying which bundle entry caused it (`Bundle.entry[i]: …`).
    pub fn in_entry(self, index: usize) -> ApiError {
        let at = format!("Bundle.entry[{index}]");
        let say = |t: String| format!("{at}: {t}");
        match self {
            ApiError::Invalid(issues) => ApiError::Invalid(
                issues
                    .into_iter()
                    .map(|i| {
                        let mut i = i.with_prefix(&at);
                        if i.expression.is_none() {
                            i.expression = Some(at.clone());
                        }
                        i
                    })
                    .collect(),
            ),
            ApiError::Unauthorized(t) => ApiError::Unauthorized(say(t)),
            ApiError::Forbidden(t) => ApiError::Forbidden(say(t)),
            ApiError::NotFound(t) => ApiError::NotFound(say(t)),
            ApiError::MethodNotAllowed(t) => ApiError::MethodNotAllowed(say(t)),
            ApiError::NotAcceptable(t) => ApiError::NotAcceptable(say(t)),
            ApiError::RequestTimeout(t) => ApiError::RequestTimeout(say(t)),
            ApiError::Conflict(t) => ApiError::Conflict(say(t)),
            ApiError::Gone(t) => ApiError::Gone(say(t)),
            ApiError::PreconditionFailed(c, t) => ApiError::PreconditionFailed(c, say(t)),
            ApiError::PayloadTooLarge(t) => ApiError::PayloadTooLarge(say(t)),
            ApiError::UnsupportedMediaType(t) => ApiError::UnsupportedMediaType(say(t)),
            ApiError::Unprocessable(t) => ApiError::Unprocessable(say(t)),
            ApiError::NotImplemented(t) => ApiError::NotImplemented(say(t)),
            ApiError::Unavailable(t) => ApiError::Unavailable(say(t)),
            ApiError::Internal(t) => ApiError::Internal(t),
        }
    }

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
        // The negotiated format is applied by the format middleware; JSON is the default.
        let mut resp = HttpResponse::build(self.status_code());
        resp.content_type(crate::api::format::FHIR_JSON);
        if let ApiError::Unauthorized(_) = self {
            resp.insert_header(("WWW-Authenticate", "Bearer realm=\"huimin\""));
        }
        resp.body(self.outcome().to_json().to_bytes())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        if crate::store::is_connection_lost(&e) {
            // Check every pooled connection before its next use.
            crate::store::connection_lost(&e);
            return database_unavailable();
        }
        ApiError::internal(e)
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        tracing::error!(error = %e, "database pool unavailable");
        database_unavailable()
    }
}

fn database_unavailable() -> ApiError {
    ApiError::Unavailable("the database is unavailable, try again later".to_owned())
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
