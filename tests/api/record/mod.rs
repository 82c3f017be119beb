//! The record capability (`api::record`, `services::record`, `store::record`): the FHIR REST
//! interactions, search, history, conditional writes and the formats they speak.

mod conditional;
mod crud;
mod examples;
mod formats;
mod history;
mod search;
