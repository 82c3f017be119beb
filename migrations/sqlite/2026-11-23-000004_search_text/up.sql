-- Full-text parameters `_text` (the narrative) and `_content` (every string of the resource):
-- one row per resource and parameter holding the normalised text, matched word by word with
-- LIKE (a contains match, so Chinese text needs no word segmentation).
CREATE TABLE search_text (
    res_type TEXT NOT NULL,
    param TEXT NOT NULL,
    content TEXT NOT NULL,        -- lower case, accents removed, whitespace collapsed
    res_id TEXT NOT NULL,
    PRIMARY KEY (res_type, param, res_id)
);
