DROP TABLE sensitive_types;
