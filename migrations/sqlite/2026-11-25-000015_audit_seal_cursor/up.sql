-- The sealer follows a cursor instead of a queue: it takes records in (txid, id) order after
-- the last sealed one. SQLite has one writer at a time, so ids follow commit order and txid
-- stays 0; the column is there so that both backends share one schema (on PostgreSQL it holds
-- the writing transaction's id). This replaces `audit_pending`, a row inserted by a trigger and
-- deleted again for every record.
ALTER TABLE audit_events ADD COLUMN txid BIGINT NOT NULL DEFAULT 0;
CREATE INDEX audit_events_txid ON audit_events (txid, id);

-- The last sealed record's (txid, id). Records were sealed in id order here, so every record
-- still waiting has a higher id than every sealed one.
ALTER TABLE audit_chain ADD COLUMN sealed_txid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_chain ADD COLUMN sealed_id BIGINT NOT NULL DEFAULT 0;
UPDATE audit_chain SET sealed_id = COALESCE((SELECT MAX(event_id) FROM audit_seals), 0);

DROP TRIGGER audit_events_pending;
DROP TABLE audit_pending;
