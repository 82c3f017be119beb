-- The resident index's review list (待核对): an institution Patient whose best match among the
-- golden residents scored between the two thresholds was given a golden resident of its own,
-- and this possible match waits for an administrator.
CREATE TABLE resident_reviews (
    source_id TEXT NOT NULL,      -- the institution Patient
    golden_id TEXT NOT NULL,      -- the golden resident it may belong to
    score DOUBLE PRECISION NOT NULL,
    created BIGINT NOT NULL,      -- ms since the epoch
    PRIMARY KEY (source_id, golden_id)
);
CREATE INDEX resident_reviews_created ON resident_reviews (created);
