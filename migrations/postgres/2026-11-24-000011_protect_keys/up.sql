-- The keys that have protected identifiers in this database (ids only, never the keys): a
-- server whose keyring holds none of them is refused at start-up instead of sealing with a
-- key the other servers cannot open.
CREATE TABLE protect_keys (
    id TEXT PRIMARY KEY,
    added BIGINT NOT NULL        -- ms since the epoch
);
