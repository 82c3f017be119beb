-- Conditional-create keys: the canonical criteria of each conditional create that created a
-- resource. The primary key makes two concurrent creates with the same criteria (on any
-- number of server processes) produce one resource: the second waits for the first, finds
-- the key taken, searches again and matches the first one's resource.
CREATE TABLE match_keys (
    res_type TEXT NOT NULL,
    criteria TEXT NOT NULL,
    res_id TEXT NOT NULL,
    PRIMARY KEY (res_type, criteria)
);
CREATE INDEX match_keys_resource ON match_keys (res_type, res_id);
