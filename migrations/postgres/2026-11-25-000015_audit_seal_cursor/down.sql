CREATE TABLE audit_pending (
    event_id BIGINT PRIMARY KEY
);
INSERT INTO audit_pending (event_id)
SELECT e.id FROM audit_events e, audit_chain c
WHERE c.id = 1 AND (e.txid, e.id) > (c.sealed_txid, c.sealed_id);
CREATE FUNCTION audit_events_queue() RETURNS trigger AS $$
BEGIN
    INSERT INTO audit_pending (event_id) VALUES (NEW.id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_pending AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_queue();
ALTER TABLE audit_chain DROP COLUMN sealed_id;
ALTER TABLE audit_chain DROP COLUMN sealed_txid;
DROP INDEX audit_events_txid;
ALTER TABLE audit_events DROP COLUMN txid;
