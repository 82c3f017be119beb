DROP TRIGGER audit_events_retention;
DROP TRIGGER audit_events_no_update;
DROP TABLE audit_chain;
DROP TABLE audit_events;
