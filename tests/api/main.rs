#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected value"
)]

//! Integration tests: the real HTTP application on port 0, a fresh database per test.
//! Run on SQLite by `cargo test`; on PostgreSQL with `HUIMIN_TEST_POSTGRES_URL` set.

mod access;
mod audit;
mod auth;
mod bundles;
mod cli;
mod conditional;
mod consent;
mod crash;
mod crud;
mod door;
mod door_property;
mod examples;
mod formats;
mod helpers;
mod history;
mod limits;
mod ops;
mod protect;
mod residents;
mod search;
mod tls;
