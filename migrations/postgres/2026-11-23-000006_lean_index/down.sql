DROP INDEX search_reference_url;
UPDATE search_reference SET url = target_type || '/' || target_id WHERE url = '';
CREATE INDEX search_reference_url ON search_reference (res_type, param, url);
