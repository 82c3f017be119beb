//! The booking capability's refusals, by kind: a slot that cannot be taken (full, not yet
//! released, its free places kept for referrals, withdrawn), and the booking rules of the
//! region (one a day per specialty, a cap on open bookings, the no-show pause, the
//! cancellation deadline). Each names the Slot or the rule, as the answer's text does.

/// Why a booking, hold or cancellation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulingError {
    /// Every place of the Slot is taken (booked or held).
    #[error("Slot/{slot} is full")]
    SlotFull { slot: String },
    /// The Slot opens for booking later.
    #[error("Slot/{slot} opens for booking at {at}")]
    NotReleased { slot: String, at: String },
    /// The Slot's free places are kept for referred residents until the instant given.
    #[error("the free places of Slot/{slot} are kept for referred residents until {until}")]
    HeldOut { slot: String, until: String },
    /// The publisher withdrew the Slot, or it has passed.
    #[error("Slot/{slot} is not offered for booking")]
    Closed { slot: String },
    /// Rule: one active booking per resident per specialty per day.
    #[error(
        "rule one-per-specialty-per-day: the resident already has a booking of this specialty on {day}"
    )]
    OnePerDay { day: String },
    /// Rule: at most this many active future bookings per resident.
    #[error("rule max-active-bookings: the resident already has {limit} active bookings")]
    TooMany { limit: i64 },
    /// Rule: residents with too many no-shows cannot book for a while.
    #[error(
        "rule no-show-pause: the resident missed {count} visits in {days} days and cannot book until {until}"
    )]
    NoShowPause {
        count: usize,
        days: i64,
        until: String,
    },
    /// Rule: a resident cancels until the start of the visit's day.
    #[error(
        "rule cancel-deadline: a booking is cancelled by the resident until the start of {day}, local time"
    )]
    CancelDeadline { day: String },
    /// A hold that has expired cannot be booked.
    #[error("the hold of Appointment/{appointment} has expired; its place is free again")]
    HoldExpired { appointment: String },
    /// The publisher lowered a Slot's places below those already taken.
    #[error("Slot/{slot} has {taken} places taken; its capacity cannot be lower")]
    CapacityBelowTaken { slot: String, taken: i32 },
    /// An Appointment's status cannot move so.
    #[error("an Appointment cannot move from {from} to {to}")]
    Transition { from: String, to: String },
}
