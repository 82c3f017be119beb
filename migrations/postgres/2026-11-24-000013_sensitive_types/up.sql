-- The resource types of which some resource carries a sensitive security label (HIV, PSY,
-- SUD, ETH, SEX, STD, SDV, R): only those types' searches and reads get the consent engine's
-- label clause. Rows are added on write and never removed.
CREATE TABLE sensitive_types (
    res_type TEXT PRIMARY KEY
);
