//! Slots this process knows to be full: in a release rush, the thousands who come after the
//! last place of a Slot are refused from memory, before their token's access is loaded or the
//! database is asked. Only refusals come from here, and only for [`FRESH_MS`] after the
//! database said the Slot was full, so a place freed meanwhile in another process (a
//! cancellation, an expired hold) is offered again within that time; a cancellation in this
//! process forgets its Slot at once. Correctness never rests on it: the database counts the
//! places.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::SchedulingError;

/// How long a Slot seen full is refused from memory.
pub const FRESH_MS: i64 = 250;

/// Slots known full, until when.
#[derive(Debug, Default)]
pub struct FullSlots {
    known: Mutex<HashMap<String, i64>>,
}

/// Slots kept at most; past it, those no longer fresh are forgotten.
const MOST: usize = 10_000;

impl FullSlots {
    pub fn new() -> Self {
        Self::default()
    }

    /// The refusal of a new booking of `slot` at `now`, when it was seen full moments ago.
    pub fn refused(&self, slot: &str, now: i64) -> Option<SchedulingError> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get(slot)
            .filter(|&&until| now < until)
            .map(|_| SchedulingError::SlotFull {
                slot: slot.to_owned(),
            })
    }

    /// Note what the database answered a booking: a full Slot is refused from memory for a
    /// while.
    pub fn note(&self, answer: &SchedulingError, now: i64) {
        let SchedulingError::SlotFull { slot } = answer else {
            return;
        };
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= MOST {
            known.retain(|_, until| *until > now);
        }
        known.insert(slot.clone(), now + FRESH_MS);
    }

    /// A place of the Slot `rec` (a stored Appointment) holds was just given back here, if
    /// `rec` is cancelled: its Slot is no longer known full.
    pub fn freed(&self, rec: &crate::services::record::Record) {
        let Ok(tree) = crate::fhir::json::Json::parse(rec.content.as_bytes()) else {
            return;
        };
        if tree.get_str("status") != Some("cancelled") {
            return;
        }
        if let Some(slot) = super::referenced(&tree, "slot", "Slot") {
            self.known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(slot);
        }
    }
}
