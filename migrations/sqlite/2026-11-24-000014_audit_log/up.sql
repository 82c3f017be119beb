-- How far each node audit log file has been copied into audit_events (bytes), written in the
-- same transaction as the records copied, so that a copy interrupted by a crash resumes where
-- it stopped and copies nothing twice. A row goes when its file is fully copied and removed.
CREATE TABLE audit_log_copied (
    log TEXT PRIMARY KEY,
    copied BIGINT NOT NULL
);
