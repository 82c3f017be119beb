//! Business rules, one module per capability. Services take the store, run transactions and
//! return domain results or [`crate::error::ApiError`].

pub mod access;
pub mod audit;
pub mod audit_log;
pub mod break_glass;
pub mod bundle;
pub mod bus;
pub mod consent;
pub mod everything;
pub mod matching;
pub mod merge;
pub mod mpi;
pub mod record;
pub mod rekey;
pub mod relink;
