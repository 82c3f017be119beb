//! The referral and consultation workflow's refusals: a request or Task that does not make a
//! referral (naming the element), and a Task status change its state machine does not allow
//! (naming the from and to states).

/// Why a referral, consultation or Task write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// The resource does not make a referral or consultation: `element` says where.
    #[error("{element}: {why}")]
    Malformed { element: String, why: String },
    /// A Task's status cannot move so (or not by this caller's institution).
    #[error("Task/{task} cannot move from {from} to {to}{by}")]
    Transition {
        task: String,
        from: String,
        to: String,
        /// Who may, when the move exists but is another institution's (` : only …`).
        by: String,
    },
}

impl WorkflowError {
    pub fn malformed(element: impl Into<String>, why: impl Into<String>) -> WorkflowError {
        WorkflowError::Malformed {
            element: element.into(),
            why: why.into(),
        }
    }
}
