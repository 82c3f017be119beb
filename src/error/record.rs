//! The record capability's refusals (read, write, conditional matching), by kind: callers in
//! the services decide on them (a deleted record's tombstone, a concurrent create retried as an
//! update, a hidden record answering as an absent one), and `api::error` maps each to its status
//! and issue code.

/// What a stored record's interaction refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// No such resource, or one the caller may not see: answered alike, so that existence does
    /// not leak.
    #[error("{t}/{id} is not known")]
    Absent { t: String, id: String },
    /// No such version of the resource (or one the caller may not see).
    #[error("{t}/{id} has no version {vid}")]
    NoVersion { t: String, id: String, vid: i64 },
    /// The resource (or this version of it) is deleted.
    #[error("{}", deleted_text(.t, .id, *.version))]
    Deleted {
        t: String,
        id: String,
        /// The version that is the deletion, when a version was asked for.
        version: Option<i64>,
    },
    /// `If-Match` names another version than the current one (`have`; `None`: no resource).
    #[error("{}", conflict_text(*.want, *.have))]
    VersionConflict { want: i64, have: Option<i64> },
    /// Conditional criteria match more than one resource.
    #[error("the criteria match more than one resource")]
    MultipleMatches,
    /// Two writes created the same new resource at once; the one that lost may retry.
    #[error("a concurrent write created the same resource")]
    ConcurrentCreate,
    /// Concurrent conditional creates of the same criteria did not settle.
    #[error("concurrent conditional creates of the same criteria did not settle; retry")]
    Unsettled,
    /// The write would create a resource (at `id`, or as the criteria matched nothing), and
    /// the token's scopes do not allow creating `t`.
    #[error("{}", create_text(.t, .id.as_deref()))]
    CreateNotAllowed { t: String, id: Option<String> },
    /// The patched resource would be larger than the body limit.
    #[error("the patched resource would be larger than {max} bytes")]
    PatchTooLarge { max: usize },
    /// The JSON Patch cannot be applied to the resource (a failed `test`, a missing path).
    #[error("the patch cannot be applied: {0}")]
    PatchFailed(String),
}

fn deleted_text(t: &str, id: &str, version: Option<i64>) -> String {
    match version {
        Some(v) => format!("{t}/{id} was deleted in version {v}"),
        None => format!("{t}/{id} has been deleted"),
    }
}

fn create_text(t: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("the token's scopes do not allow 'c' on {t}: {t}/{id} does not exist"),
        None => {
            format!("the token's scopes do not allow 'c' on {t}, and nothing matches the criteria")
        }
    }
}

fn conflict_text(want: i64, have: Option<i64>) -> String {
    match have {
        Some(h) => {
            format!("version conflict: If-Match names version {want}, the current version is {h}")
        }
        None => {
            format!("version conflict: If-Match names version {want}, the resource does not exist")
        }
    }
}
