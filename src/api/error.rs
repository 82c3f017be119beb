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
//! | `PreconditionFailed`   | 412  | `conflict` / `multiple-matches` |
//! | `PayloadTooLarge`      | 413  | `too-long`                    |
//! | `UnsupportedMediaType` | 415  | `not-supported`               |
//! | `Unprocessable`        | 422  | `processing`                  |
//! | `Unavailable`          | 503  | `transient`                   |
//! | `Contention`           | 503  | `transient` (with `Retry-After: 1`) |
//! | `Internal`             | 500  | `exception` (generic text only) |
//! | `Record(Absent)`, `Record(NoVersion)` | 404 | `not-found`   |
//! | `Record(Deleted)`      | 410  | `deleted`                     |
//! | `Record(VersionConflict)` | 412 | `conflict`                  |
//! | `Record(MultipleMatches)` | 412 | `multiple-matches`          |
//! | `Record(ConcurrentCreate)`, `Record(Unsettled)` | 409 | `conflict` |
//! | `Record(CreateNotAllowed)` | 403 | `forbidden`                |
//! | `Record(PatchTooLarge)` | 413 | `too-long`                    |
//! | `Record(PatchFailed)`  | 422  | `processing`                  |
//! | `Scheduling(SlotFull, NotReleased, HeldOut, Closed, HoldExpired, CapacityBelowTaken)` | 409 | `conflict` |
//! | `Scheduling(OnePerDay, TooMany, NoShowPause, CancelDeadline, Transition)` | 409 | `business-rule` |
//! | `Workflow(Malformed)`  | 422  | `processing` (with `expression`) |
//! | `Workflow(Transition)` | 409  | `business-rule`               |
//! | `InEntry(i, e)`        | as `e` | as `e`, its text (and, for `Invalid`, its expression) prefixed with `Bundle.entry[i]` |

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::error::{ApiError, RecordError, SchedulingError, WorkflowError};
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
            ApiError::UnsupportedMediaType(t) => Issue::error("not-supported", t),
            ApiError::RequestTimeout(t) => Issue::error("timeout", t),
            ApiError::PreconditionFailed(code, t) => Issue::error(code, t),
            ApiError::PayloadTooLarge(t) => Issue::error("too-long", t),
            ApiError::Unprocessable(t) => Issue::error("processing", t),
            ApiError::Unavailable(t) => Issue::error("transient", t),
            ApiError::Contention => Issue::error(
                "transient",
                "the write met concurrent writes and was tried several times; try again",
            ),
            ApiError::Internal(t) => Issue::fatal("exception", t),
            ApiError::Record(e) => Issue::error(record_code(e), e.to_string()),
            ApiError::Scheduling(e) => Issue::error(scheduling_code(e), e.to_string()),
            ApiError::Workflow(e @ WorkflowError::Malformed { element, .. }) => {
                Issue::error("processing", e.to_string()).at(element.clone())
            }
            ApiError::Workflow(e) => Issue::error("business-rule", e.to_string()),
            ApiError::InEntry(index, e) => return in_entry(*index, e),
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
            ApiError::PreconditionFailed(..) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::Contention => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Record(e) => record_status(e),
            ApiError::Scheduling(_) => StatusCode::CONFLICT,
            ApiError::Workflow(WorkflowError::Malformed { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Workflow(WorkflowError::Transition { .. }) => StatusCode::CONFLICT,
            ApiError::InEntry(_, e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        resp.content_type(crate::api::format::FHIR_JSON);
        match self {
            ApiError::Unauthorized(_) => {
                resp.insert_header(("WWW-Authenticate", "Bearer realm=\"huimin\""));
            }
            ApiError::Contention => {
                resp.insert_header(("Retry-After", "1"));
            }
            _ => {}
        }
        resp.body(self.outcome().to_json().to_bytes())
    }
}

fn record_status(e: &RecordError) -> StatusCode {
    match e {
        RecordError::Absent { .. } | RecordError::NoVersion { .. } => StatusCode::NOT_FOUND,
        RecordError::Deleted { .. } => StatusCode::GONE,
        RecordError::VersionConflict { .. } | RecordError::MultipleMatches => {
            StatusCode::PRECONDITION_FAILED
        }
        RecordError::ConcurrentCreate | RecordError::Unsettled => StatusCode::CONFLICT,
        RecordError::CreateNotAllowed { .. } => StatusCode::FORBIDDEN,
        RecordError::PatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RecordError::PatchFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn record_code(e: &RecordError) -> &'static str {
    match e {
        RecordError::Absent { .. } | RecordError::NoVersion { .. } => "not-found",
        RecordError::Deleted { .. } => "deleted",
        RecordError::VersionConflict { .. }
        | RecordError::ConcurrentCreate
        | RecordError::Unsettled => "conflict",
        RecordError::MultipleMatches => "multiple-matches",
        RecordError::CreateNotAllowed { .. } => "forbidden",
        RecordError::PatchTooLarge { .. } => "too-long",
        RecordError::PatchFailed(_) => "processing",
    }
}

fn scheduling_code(e: &SchedulingError) -> &'static str {
    match e {
        SchedulingError::SlotFull { .. }
        | SchedulingError::NotReleased { .. }
        | SchedulingError::HeldOut { .. }
        | SchedulingError::Closed { .. }
        | SchedulingError::HoldExpired { .. }
        | SchedulingError::CapacityBelowTaken { .. } => "conflict",
        SchedulingError::OnePerDay { .. }
        | SchedulingError::TooMany { .. }
        | SchedulingError::NoShowPause { .. }
        | SchedulingError::CancelDeadline { .. }
        | SchedulingError::Transition { .. } => "business-rule",
    }
}

/// An entry's error: the entry's issues, each saying which entry (an internal failure keeps
/// its generic text).
fn in_entry(index: usize, e: &ApiError) -> OperationOutcome {
    let at = format!("Bundle.entry[{index}]");
    let invalid = matches!(e, ApiError::Invalid(_));
    let issues = match e {
        ApiError::Internal(_) => e.outcome().issues,
        _ => e
            .outcome()
            .issues
            .into_iter()
            .map(|i| {
                let mut i = i.with_prefix(&at);
                if invalid && i.expression.is_none() {
                    i.expression = Some(at.clone());
                }
                i
            })
            .collect(),
    };
    OperationOutcome { issues }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: &ApiError) -> (u16, String, String) {
        let oo = e.outcome();
        let issue = &oo.issues[0];
        (
            e.status_code().as_u16(),
            issue.code.to_owned(),
            issue.diagnostics.clone(),
        )
    }

    #[test]
    fn record_errors_answer_by_kind_and_entries_say_which() {
        let absent = ApiError::from(RecordError::Absent {
            t: "Observation".into(),
            id: "x".into(),
        });
        assert_eq!(
            answer(&absent),
            (404, "not-found".into(), "Observation/x is not known".into())
        );
        let deleted = ApiError::from(RecordError::Deleted {
            t: "Observation".into(),
            id: "x".into(),
            version: Some(3),
        });
        assert_eq!(answer(&deleted).0, 410);
        assert_eq!(answer(&deleted).1, "deleted");
        let conflict = ApiError::from(RecordError::VersionConflict {
            want: 1,
            have: Some(2),
        });
        assert_eq!(answer(&conflict).0, 412);
        assert_eq!(answer(&conflict).1, "conflict");
        assert_eq!(
            answer(&RecordError::MultipleMatches.into()).1,
            "multiple-matches"
        );
        assert_eq!(answer(&RecordError::ConcurrentCreate.into()).0, 409);
        let in_entry = absent.in_entry(2);
        assert_eq!(
            answer(&in_entry),
            (
                404,
                "not-found".into(),
                "Bundle.entry[2]: Observation/x is not known".into()
            )
        );
        let invalid = ApiError::bad_request("no").in_entry(1);
        assert_eq!(
            invalid.outcome().issues[0].expression.as_deref(),
            Some("Bundle.entry[1]")
        );
        let internal = ApiError::internal("disk on fire").in_entry(0);
        assert_eq!(answer(&internal).2, "internal server error");
    }
}
