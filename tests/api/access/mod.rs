//! The access capability (`services::access`, `store::access`): role filters, consent,
//! break-glass, custody, and the one door every path that returns a record goes through.

mod consent;
mod door;
mod door_property;
mod filter;
