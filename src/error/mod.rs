//! The errors services return: one enum, its variants the kinds of failure a client can be
//! told of, never HTTP. Their status and OperationOutcome issue code are decided in one place
//! at the edge, `api::error` (the table is there).
//!
//! A capability whose callers decide on its failures has a typed error of its own here, a
//! variant of [`ApiError`] through `From` (today [`RecordError`]: absent, deleted, version
//! conflict, multiple matches, …): code matches on those, never on message text.
//!
//! Policy: store functions return `diesel::QueryResult` (the store converts database errors:
//! a lost connection is 503 `Unavailable`, anything else `Internal`); services return
//! [`ApiError`] (or their own error converted into it); handlers return `Result<_, ApiError>`.
//! Start-up and commands use `anyhow`. A database or internal failure is logged with its cause
//! and answered with a generic message: SQL, file paths and backend text never reach a client.

mod record;
mod scheduling;
mod workflow;

pub use record::RecordError;
pub use scheduling::SchedulingError;
pub use workflow::WorkflowError;

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
    #[error("precondition failed: {1}")]
    PreconditionFailed(&'static str, String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A write met concurrent ones (a PostgreSQL deadlock or serialization failure): the
    /// writer runs it again by itself, a few times; this answers one that still could not.
    #[error("the write met concurrent writes; try again")]
    Contention,
    #[error("internal error: {0}")]
    Internal(String),
    /// What a stored record's interaction refused, by kind.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// What booking refused, by kind.
    #[error(transparent)]
    Scheduling(#[from] SchedulingError),
    /// What the referral and consultation workflow refused, by kind.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// An error of one bundle entry (its index in `Bundle.entry`).
    #[error("Bundle.entry[{0}]: {1}")]
    InEntry(usize, Box<ApiError>),
}

impl ApiError {
    /// Whether the failure may pass when the write runs again (see [`ApiError::Contention`]).
    pub fn retryable(&self) -> bool {
        match self {
            ApiError::Contention => true,
            ApiError::InEntry(_, e) => e.retryable(),
            _ => false,
        }
    }

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
        ApiError::InEntry(index, Box::new(self))
    }

    /// The record capability's error, when this is one (to decide on it by kind).
    pub fn as_record(&self) -> Option<&RecordError> {
        match self {
            ApiError::Record(e) => Some(e),
            _ => None,
        }
    }
}
