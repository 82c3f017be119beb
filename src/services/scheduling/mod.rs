//! Booking from the regional slot pool (号源池): hospitals publish Schedules and Slots
//! ([`publish`]); residents, and hospitals for their patients, hold, book and cancel places
//! ([`book`]). A place is counted by the database inside the booking's transaction (the
//! Slot's row of places is locked, a guarded `UPDATE` takes the place, a CHECK refuses any
//! count above capacity), never by a check in one transaction and an insert in another.

pub mod admission;
pub mod book;
pub mod find;
pub mod publish;
pub mod referral;

use std::time::Duration;

use crate::clock;
use crate::config::Settings;
use crate::error::ApiError;
use crate::services::audit::Draft;
use crate::services::record;
use crate::store::Store;

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

use crate::services::{has_coding, reference_of, referenced, stored};

/// Marks a write transaction as the booking service's own: only it writes Appointments that
/// take places of the pool (see [`publish::appointment_written`]).
#[derive(Debug, Default)]
pub struct Booking(pub bool);

/// Free the places of expired holds in the background, every `interval`, so that a hold's
/// Appointment becomes `cancelled` by itself even when nobody books that Slot again (bookings
/// free a Slot's expired holds first anyway). Each round is one audited write of the platform.
pub fn start_expiry(store: Store, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("huimin-hold-expiry".to_owned())
        .spawn(move || {
            let mut failing = false;
            while !store.is_closed() {
                std::thread::sleep(interval);
                if store.is_closed() {
                    break;
                }
                let round = expire_due(&store);
                match (&round, failing) {
                    (Err(e), false) => {
                        tracing::error!(error = %e, "freeing expired holds failed; retrying")
                    }
                    (Ok(_), true) => tracing::info!("freeing expired holds resumed"),
                    _ => {}
                }
                failing = round.is_err();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the hold expiry thread could not start");
    }
}

/// One round of expiry (a batch of holds); how many places were freed.
pub fn expire_due(store: &Store) -> Result<usize, ApiError> {
    // Most rounds find nothing: a read, not an audited write, says so.
    let now = clock::now_millis();
    if store
        .read(|conn| {
            crate::store::scheduling::expired_holds(conn, None, now, 1).map_err(ApiError::from)
        })?
        .is_empty()
    {
        return Ok(0);
    }
    let draft = Draft::platform("huimin:hold-expiry", "hold-expiry", "Appointment");
    record::write(store, draft, |conn| {
        conn.work::<Booking>().0 = true;
        book::expire_in(conn, None, clock::now_millis())
    })
}
