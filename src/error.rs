//! The errors services return: one enum, its variants the kinds of failure a client can be
//! told of, never HTTP. Their status and OperationOutcome issue code are decided in one place
//! at the edge, `api::error` (the table is there).
//!
//! Policy: store functions return `diesel::QueryResult` (the store converts database errors:
//! a lost connection is 503 `Unavailable`, anything else `Internal`); services return
//! [`ApiError`] (or their own error converted into it); handlers return `Result<_, ApiError>`.
//! Start-up and commands use `anyhow`. A database or internal failure is logged with its cause
//! and answered with a generic message: SQL, file paths and backend text never reach a client.

use crate::fhir::outcome::Issue;

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
}
