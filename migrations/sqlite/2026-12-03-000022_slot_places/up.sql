-- The regional slot pool (号源池): one row per published Slot, written with the Slot, counting
-- its places. The CHECK is the guarantee that no Slot is ever booked beyond its capacity: a
-- booking takes a place by a guarded UPDATE of this row inside its transaction (which the row
-- lock serializes), and the database refuses any count above capacity whatever the caller.
CREATE TABLE slot_places (
    slot_id TEXT PRIMARY KEY,
    institution TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    capacity INTEGER NOT NULL,
    reserve INTEGER NOT NULL,
    reserve_until BIGINT,
    release_at BIGINT,
    open BOOLEAN NOT NULL,
    taken_public INTEGER NOT NULL DEFAULT 0,
    taken_referral INTEGER NOT NULL DEFAULT 0,
    CHECK (capacity >= 0 AND reserve >= 0 AND reserve <= capacity),
    CHECK (taken_public >= 0 AND taken_referral >= 0 AND taken_public + taken_referral <= capacity)
);
CREATE INDEX slot_places_start ON slot_places (start_ms);

-- The Appointments holding a place: pending (held until `hold_until`) or booked, and what the
-- booking rules count. One active booking per resident, specialty and day is a unique index.
CREATE TABLE slot_claims (
    appointment_id TEXT PRIMARY KEY,
    slot_id TEXT NOT NULL,
    resident TEXT NOT NULL,
    referral BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    hold_until BIGINT,
    day TEXT NOT NULL,
    specialty TEXT NOT NULL,
    start_ms BIGINT NOT NULL
);
CREATE INDEX slot_claims_slot ON slot_claims (slot_id);
CREATE INDEX slot_claims_resident ON slot_claims (resident, start_ms);
CREATE INDEX slot_claims_hold ON slot_claims (hold_until) WHERE hold_until IS NOT NULL;
CREATE UNIQUE INDEX slot_claims_one_a_day ON slot_claims (resident, day, specialty)
    WHERE state IN ('pending', 'booked');
