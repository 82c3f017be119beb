-- Records whose resident was not known when they were written: they name their Patient by a
-- reference to a Patient not stored yet (`Patient/<id>`) or by an identifier no Patient
-- carries yet (`<system>|<code>`, the code as the search index holds it: blind for ID and
-- health card numbers). When a Patient arrives with that id or identifier, the records take its
-- golden resident and their rows here go.
CREATE TABLE awaiting_residents (
    awaited TEXT COLLATE "C" NOT NULL,
    res_type TEXT COLLATE "C" NOT NULL,
    res_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (awaited, res_type, res_id)
);
CREATE INDEX awaiting_residents_resource ON awaiting_residents (res_type, res_id);
