//! Booking from the regional slot pool (号源池): hospitals publish Schedules and Slots
//! ([`publish`]); residents, and hospitals for their patients, hold, book and cancel places
//! ([`book`]). A place is counted by the database inside the booking's transaction (the
//! Slot's row of places is locked, a guarded `UPDATE` takes the place, a CHECK refuses any
//! count above capacity), never by a check in one transaction and an insert in another.

pub mod book;
pub mod publish;

use crate::config::Settings;

/// The region's booking rules (settings, since cities differ).
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// How long a hold keeps its place, in ms.
    pub hold_ms: i64,
    /// Active future bookings a resident may have.
    pub max_active: i64,
    /// No-shows within `no_show_window_ms` that pause booking for `no_show_pause_ms`.
    pub no_show_limit: usize,
    pub no_show_window_ms: i64,
    pub no_show_pause_ms: i64,
}

const DAY_MS: i64 = 86_400_000;

impl Rules {
    pub fn of(s: &Settings) -> Rules {
        Rules {
            hold_ms: i64::from(s.booking_hold_seconds) * 1000,
            max_active: i64::from(s.booking_max_active),
            no_show_limit: s.booking_no_show_limit as usize,
            no_show_window_ms: i64::from(s.booking_no_show_window_days) * DAY_MS,
            no_show_pause_ms: i64::from(s.booking_no_show_pause_days) * DAY_MS,
        }
    }
}

/// Marks a write transaction as the booking service's own: only it writes Appointments that
/// take places of the pool (see [`publish::appointment_written`]).
#[derive(Debug, Default)]
pub struct Booking(pub bool);
