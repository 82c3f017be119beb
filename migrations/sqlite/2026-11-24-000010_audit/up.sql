-- The audit trail (审计日志): one AuditEvent per access to a resident's data, append-only.
-- A write's events are inserted in the write's own transaction; a read's are group-committed
-- before the response leaves. The sealer gives every committed record its position in one SM3
-- hash chain (`audit_seals`), so that `huimin audit verify` detects a modified, deleted or
-- reordered record.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded BIGINT NOT NULL,     -- ms since the epoch
    resident TEXT,                -- the golden resident the event concerns (NULL: none)
    flagged BOOLEAN NOT NULL,     -- emergency (break-glass) access
    content TEXT NOT NULL         -- the AuditEvent JSON
);
CREATE INDEX audit_events_resident ON audit_events (resident, id) WHERE resident IS NOT NULL;
CREATE INDEX audit_events_recorded ON audit_events (recorded);

-- Committed records waiting for the sealer (a row per record, added by a trigger, deleted when
-- the record is sealed): sealing never rewrites a record.
CREATE TABLE audit_pending (
    event_id BIGINT PRIMARY KEY
);

-- The chain: the record at each position and the hash that seals it.
CREATE TABLE audit_seals (
    chain_seq BIGINT PRIMARY KEY,
    event_id BIGINT NOT NULL UNIQUE,
    hash TEXT NOT NULL
);

-- Where the stored chain starts: the position of its first stored record and the hash before
-- it (all zeros at the start; moved forward when retention purges the oldest records).
CREATE TABLE audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    start_seq BIGINT NOT NULL,
    start_prev TEXT NOT NULL
);
INSERT INTO audit_chain (id, start_seq, start_prev)
VALUES (1, 1, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only in the database too: records and seals never change, no record younger than 184
-- days (网络安全法 Art. 21) can be deleted, and a seal goes only after its record. Someone with
-- the rights to drop these triggers is what the hash chain is for.
CREATE TRIGGER audit_events_pending AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_pending (event_id) VALUES (NEW.id);
END;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
CREATE TRIGGER audit_events_retention BEFORE DELETE ON audit_events
WHEN OLD.recorded > CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 184 * 86400000
BEGIN
    SELECT RAISE(ABORT, 'audit records are kept at least 184 days');
END;
CREATE TRIGGER audit_seals_no_update BEFORE UPDATE ON audit_seals
BEGIN
    SELECT RAISE(ABORT, 'audit seals are append-only');
END;
CREATE TRIGGER audit_seals_with_record BEFORE DELETE ON audit_seals
WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = OLD.event_id)
BEGIN
    SELECT RAISE(ABORT, 'an audit seal goes only with its record');
END;
