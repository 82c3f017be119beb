-- Current version of every resource: reads are one primary-key lookup that returns stored bytes.
CREATE TABLE resources (
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL, -- milliseconds since the Unix epoch, UTC
    deleted BOOLEAN NOT NULL,
    content TEXT NOT NULL,        -- the resource JSON as stored (empty for a tombstone)
    PRIMARY KEY (res_type, res_id)
);

-- Every version, including deletions; seq orders system and type history.
CREATE TABLE resource_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version_id BIGINT NOT NULL,
    last_updated BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    method TEXT NOT NULL,         -- POST, PUT, PATCH or DELETE
    content TEXT NOT NULL,
    UNIQUE (res_type, res_id, version_id)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (res_type, seq);

-- Token search index (identifier), written in the same transaction as the resource.
CREATE TABLE search_token (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    code TEXT NOT NULL,
    system TEXT NOT NULL,         -- '' when the value has no system
    res_id TEXT NOT NULL,
    PRIMARY KEY (res_type, param, code, system, res_id)
);
CREATE INDEX search_token_resource ON search_token (res_type, res_id);
