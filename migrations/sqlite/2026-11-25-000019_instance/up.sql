-- The database's own identity, made once: the processes that share this database name their
-- change channel on Redis by it, however each of them reaches the database (a path written
-- differently, a URL with other parameters), and processes of other databases never hear it.
CREATE TABLE instance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL
);
INSERT INTO instance (id, token) VALUES (1, lower(hex(randomblob(16))));
