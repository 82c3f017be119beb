-- Custody: the institution (`Organization/<id>`) that wrote each resource; only it (or an
-- administrator) changes the resource. NULL for what the platform itself or an administrator
-- wrote. Resources stored before this migration take the institution their content names
-- where it names one (a Patient's managing organization, an Encounter's service provider);
-- the others are left to administrators.
ALTER TABLE resources ADD COLUMN custodian TEXT COLLATE "C";
UPDATE resources r SET custodian = named.org
  FROM (SELECT res_type, res_id,
               CASE res_type
                 WHEN 'Patient' THEN content::jsonb -> 'managingOrganization' ->> 'reference'
                 ELSE content::jsonb -> 'serviceProvider' ->> 'reference'
               END AS org
          FROM resources
         WHERE res_type IN ('Patient', 'Encounter') AND NOT deleted AND content LIKE '{%') named
 WHERE r.res_type = named.res_type AND r.res_id = named.res_id
   AND named.org LIKE 'Organization/%';
