-- The audit trail (审计日志): one AuditEvent per access to a resident's data, append-only.
-- A write's events are inserted in the write's own transaction; a read's are group-committed
-- before the response leaves. The sealer gives every committed row its position in one SM3
-- hash chain (`chain_seq`, `hash`), so that `huimin audit verify` detects a modified, deleted
-- or reordered record.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded BIGINT NOT NULL,     -- ms since the epoch
    resident TEXT,                -- the golden resident the event concerns (NULL: none)
    flagged BOOLEAN NOT NULL,     -- emergency (break-glass) access
    content TEXT NOT NULL,        -- the AuditEvent JSON
    chain_seq BIGINT UNIQUE,      -- position in the chain (NULL until sealed)
    hash TEXT                     -- hex SM3 over the previous hash, the position and the row
);
CREATE INDEX audit_events_resident ON audit_events (resident, id) WHERE resident IS NOT NULL;
CREATE INDEX audit_events_unsealed ON audit_events (id) WHERE chain_seq IS NULL;
CREATE INDEX audit_events_recorded ON audit_events (recorded);

-- Where the stored chain starts: the position of its first stored record and the hash before
-- it (all zeros at the start; moved forward when retention purges the oldest records).
CREATE TABLE audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    start_seq BIGINT NOT NULL,
    start_prev TEXT NOT NULL
);
INSERT INTO audit_chain (id, start_seq, start_prev)
VALUES (1, 1, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only in the database too: a sealed record never changes, an unsealed one only gets
-- its position, and no record younger than 184 days (网络安全法 Art. 21) can be deleted.
-- Someone with the rights to drop these triggers is what the hash chain is for.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN OLD.chain_seq IS NOT NULL OR NEW.id IS NOT OLD.id OR NEW.recorded IS NOT OLD.recorded
    OR NEW.resident IS NOT OLD.resident OR NEW.flagged IS NOT OLD.flagged
    OR NEW.content IS NOT OLD.content
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
CREATE TRIGGER audit_events_retention BEFORE DELETE ON audit_events
WHEN OLD.chain_seq IS NULL
    OR OLD.recorded > CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 184 * 86400000
BEGIN
    SELECT RAISE(ABORT, 'audit records are kept at least 184 days');
END;
