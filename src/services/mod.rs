//! Business rules, one module per capability. Services take the store, run transactions and
//! return domain results or [`crate::error::ApiError`].

pub mod access;
pub mod audit;
pub mod bundle;
pub mod bus;
pub mod record;
pub mod rekey;
pub mod residents;
pub mod scheduling;
