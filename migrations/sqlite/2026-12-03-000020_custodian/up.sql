-- Custody: the institution (`Organization/<id>`) that wrote each resource; only it (or an
-- administrator) changes the resource. NULL for what the platform itself or an administrator
-- wrote. Resources stored before this migration take the institution their content names
-- where it names one (a Patient's managing organization, an Encounter's service provider);
-- the others are left to administrators.
ALTER TABLE resources ADD COLUMN custodian TEXT;
UPDATE resources SET custodian = json_extract(content, '$.managingOrganization.reference')
 WHERE res_type = 'Patient' AND NOT deleted AND json_valid(content)
   AND json_extract(content, '$.managingOrganization.reference') LIKE 'Organization/%';
UPDATE resources SET custodian = json_extract(content, '$.serviceProvider.reference')
 WHERE res_type = 'Encounter' AND NOT deleted AND json_valid(content)
   AND json_extract(content, '$.serviceProvider.reference') LIKE 'Organization/%';
