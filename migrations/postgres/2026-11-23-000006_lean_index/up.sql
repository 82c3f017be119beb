-- `_id` is searched on the resources table: its index rows go.
DELETE FROM search_token WHERE param = '_id';

-- A reference's `url` is kept only when it says more than its target (`Type/id`): absolute
-- and canonical references, which `url` searches match. The index holds only those rows.
DROP INDEX search_reference_url;
UPDATE search_reference SET url = '' WHERE url = target_type || '/' || target_id;
CREATE INDEX search_reference_url ON search_reference (res_type, param, url) WHERE url <> '';
