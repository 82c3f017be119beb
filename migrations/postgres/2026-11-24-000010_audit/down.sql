DROP TRIGGER audit_events_append_only ON audit_events;
DROP FUNCTION audit_events_guard();
DROP TABLE audit_chain;
DROP TABLE audit_events;
