DROP TABLE audit_log_open;
