DROP INDEX search_reference_url;
UPDATE search_reference SET url = target_type || '/' || target_id WHERE url = '';
CREATE INDEX search_reference_url ON search_reference (res_type, param, url);

CREATE TABLE search_token_rowid (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    code TEXT NOT NULL,
    system TEXT NOT NULL,
    res_id TEXT NOT NULL,
    PRIMARY KEY (res_type, param, code, system, res_id)
);
INSERT INTO search_token_rowid SELECT res_type, param, code, system, res_id FROM search_token;
DROP TABLE search_token;
ALTER TABLE search_token_rowid RENAME TO search_token;
CREATE INDEX search_token_resource ON search_token (res_type, res_id);
