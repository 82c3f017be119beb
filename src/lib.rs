//! Huimin (惠民): a regional health information exchange speaking FHIR R4B.
//!
//! Layers (data flows down): [`api`] (HTTP) → [`services`] (business rules) → [`fhir`] (FHIR
//! mechanics, no HTTP, no SQL) and [`store`] (diesel over SQLite and PostgreSQL); beside them
//! [`config`], [`auth`], [`clock`], [`metrics`] and [`telemetry`]. See `docs/ARCHITECTURE.md`.

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod fhir;
pub mod files;
pub mod fixtures;
pub mod ident;
pub mod metrics;
pub mod protect;
pub mod services;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
