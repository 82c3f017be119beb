-- Back to the database's default collation (the indexes are rebuilt).
DO $$
DECLARE c record;
BEGIN
  FOR c IN
    SELECT table_name, column_name
    FROM information_schema.columns
    WHERE table_schema = current_schema()
      AND data_type = 'text'
      AND table_name NOT LIKE '\_\_diesel%'
      AND collation_name = 'C'
      -- byte order from the start
      AND (table_name, column_name) NOT IN
          (('search_string', 'value'), ('search_uri', 'uri'), ('search_composite', 'text2'))
    ORDER BY table_name, ordinal_position
  LOOP
    EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "default"', c.table_name, c.column_name);
  END LOOP;
END $$;
