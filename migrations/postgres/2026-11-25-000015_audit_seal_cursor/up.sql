-- The sealer follows a cursor instead of a queue. Each record carries the id of the transaction
-- that wrote it (`txid`); the chain takes records in (txid, id) order, and only those written
-- by transactions older than every transaction still running (the snapshot's xmin), so that no
-- record can later commit behind the cursor. This replaces `audit_pending`: a row inserted by a
-- trigger and deleted again for every record, whose dead rows waited for vacuum.
--
-- txid 0: sealed before this migration; 1: waiting for the sealer at this migration (in id order).
ALTER TABLE audit_events ADD COLUMN txid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
UPDATE audit_events SET txid = 1 WHERE id IN (SELECT event_id FROM audit_pending);
ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;
ALTER TABLE audit_events ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text)::bigint;
CREATE INDEX audit_events_txid ON audit_events (txid, id);

-- The last sealed record's (txid, id).
ALTER TABLE audit_chain ADD COLUMN sealed_txid BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit_chain ADD COLUMN sealed_id BIGINT NOT NULL DEFAULT 0;

DROP TRIGGER audit_events_pending ON audit_events;
DROP FUNCTION audit_events_queue();
DROP TABLE audit_pending;
