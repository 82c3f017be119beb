-- Search index tables, one per parameter type, written in the same transaction as the resource.
-- Rows are keyed by the owning resource (res_type, res_id) and the search parameter code.

CREATE TABLE search_string (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    value TEXT NOT NULL,          -- lower case, accents removed
    exact TEXT NOT NULL,          -- as written
    res_id TEXT NOT NULL
);
CREATE INDEX search_string_value ON search_string (res_type, param, value);
CREATE INDEX search_string_resource ON search_string (res_type, res_id);

CREATE TABLE search_date (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    low BIGINT NOT NULL,          -- inclusive bounds in ms since the epoch
    high BIGINT NOT NULL,
    res_id TEXT NOT NULL
);
CREATE INDEX search_date_low ON search_date (res_type, param, low);
CREATE INDEX search_date_high ON search_date (res_type, param, high);
CREATE INDEX search_date_resource ON search_date (res_type, res_id);

CREATE TABLE search_reference (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    target_type TEXT NOT NULL,    -- '' when the reference does not name a type
    target_id TEXT NOT NULL,
    url TEXT NOT NULL,            -- the reference as written
    res_id TEXT NOT NULL
);
CREATE INDEX search_reference_target ON search_reference (res_type, param, target_id, target_type);
CREATE INDEX search_reference_reverse ON search_reference (target_type, target_id);
CREATE INDEX search_reference_url ON search_reference (res_type, param, url);
CREATE INDEX search_reference_resource ON search_reference (res_type, res_id);

CREATE TABLE search_number (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    res_id TEXT NOT NULL
);
CREATE INDEX search_number_value ON search_number (res_type, param, value);
CREATE INDEX search_number_resource ON search_number (res_type, res_id);

CREATE TABLE search_quantity (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    system TEXT NOT NULL,
    code TEXT NOT NULL,
    res_id TEXT NOT NULL
);
CREATE INDEX search_quantity_value ON search_quantity (res_type, param, code, value);
CREATE INDEX search_quantity_resource ON search_quantity (res_type, res_id);

CREATE TABLE search_uri (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    uri TEXT NOT NULL,
    res_id TEXT NOT NULL
);
CREATE INDEX search_uri_value ON search_uri (res_type, param, uri);
CREATE INDEX search_uri_resource ON search_uri (res_type, res_id);

CREATE INDEX resources_type_updated ON resources (res_type, last_updated);
