ALTER TABLE slot_claims DROP COLUMN referrer;
