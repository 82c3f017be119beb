-- Every text column compares byte by byte (COLLATE "C"), as SQLite's do. The index keys are
-- codes, ids, normalised values and type names: ordering them by the database's locale bought
-- nothing (no search sorts by a locale) and cost every B-tree insert a locale comparison
-- (strcoll), about a tenth of PostgreSQL's CPU during ingest. Equality is unchanged; ranges
-- and ORDER BY follow byte order, which for UTF-8 is code point order, the order a C.UTF-8
-- database already had. New text columns must say COLLATE "C" too (a test checks).
DO $$
DECLARE c record;
BEGIN
  FOR c IN
    SELECT table_name, column_name
    FROM information_schema.columns
    WHERE table_schema = current_schema()
      AND data_type = 'text'
      AND table_name NOT LIKE '\_\_diesel%'
      AND coalesce(collation_name, '') <> 'C'
    ORDER BY table_name, ordinal_position
  LOOP
    EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "C"', c.table_name, c.column_name);
  END LOOP;
END $$;
