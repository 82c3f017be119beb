DROP TABLE audit_log_copied;
