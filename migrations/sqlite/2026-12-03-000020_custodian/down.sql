ALTER TABLE resources DROP COLUMN custodian;
