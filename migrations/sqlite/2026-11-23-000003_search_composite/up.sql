-- Composite search parameters (code-value-quantity, component-code-value-quantity, …): one row
-- per combination of the first component (a token) and the second, taken from the same item so
-- that a blood-pressure component's code is matched with that component's own value.
CREATE TABLE search_composite (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    system1 TEXT NOT NULL,        -- first component (token)
    code1 TEXT NOT NULL,
    system TEXT,                  -- second component: token system/code or quantity unit
    code TEXT,
    value DOUBLE PRECISION,       -- second component: quantity or number
    low BIGINT,                   -- second component: date period
    high BIGINT,
    text2 TEXT,                     -- second component: string, normalised
    res_id TEXT NOT NULL
);
CREATE INDEX search_composite_key ON search_composite (res_type, param, code1, system1);
CREATE INDEX search_composite_resource ON search_composite (res_type, res_id);
