-- Every resource of a resident carries its golden resident's id in its current row
-- (architecture principle 3): `$everything`, merges and consent key on one indexed column instead
-- of a `_resident` row in search_reference (a heap row and three index entries per resource).
-- NULL for resources of no resident (registries, a Patient's data before it is linked).
ALTER TABLE resources ADD COLUMN resident TEXT;
UPDATE resources SET resident = (
    SELECT x.target_id FROM search_reference x
    WHERE x.res_type = resources.res_type AND x.res_id = resources.res_id AND x.param = '_resident');
DELETE FROM search_reference WHERE param = '_resident';
CREATE INDEX resources_resident ON resources (resident, res_type, res_id) WHERE resident IS NOT NULL;
