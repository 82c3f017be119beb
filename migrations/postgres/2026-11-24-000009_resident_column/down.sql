INSERT INTO search_reference (res_type, param, target_type, target_id, url, res_id)
    SELECT res_type, '_resident', 'Patient', resident, '', res_id FROM resources
    WHERE resident IS NOT NULL;
DROP INDEX resources_resident;
ALTER TABLE resources DROP COLUMN resident;
