#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

//! Integration tests: the real HTTP application on port 0, a fresh database per test.
//! Run on SQLite by `cargo test`; on PostgreSQL with `HUIMIN_TEST_POSTGRES_URL` set.

mod access;
mod audit;
mod auth;
mod bundle;
mod cli;
mod crash;
mod helpers;
mod limits;
mod notify;
mod ops;
mod protect;
mod record;
mod residents;
mod scheduling;
mod stats;
mod tls;
mod workflow;
