-- The database's own identity, made once: the processes that share this database name their
-- change channel on Redis by it, however each of them reaches the database (another host name
-- or address, a URL with other parameters), and processes of other databases never hear it.
CREATE TABLE instance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT COLLATE "C" NOT NULL
);
INSERT INTO instance (id, token) VALUES (1, replace(gen_random_uuid()::text, '-', ''));
