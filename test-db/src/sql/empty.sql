-- Empties a database the fingerprint found unchanged: every table's rows
-- but the migrations' record and the rows migrations write
-- (`embedding_models`, which the fingerprint compares with the fresh
-- clone's), identities restarted, every sequence restarted. One statement,
-- one round trip.
DO $$
DECLARE
  tables text;
  seq text;
BEGIN
  SELECT string_agg(format('%I.%I', schemaname, tablename), ', ')
    INTO tables
    FROM pg_tables
   WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
     AND NOT (schemaname = 'public' AND tablename IN ('seaql_migrations', 'embedding_models'))
     AND tablename <> 'seaql_migrations';
  IF tables IS NOT NULL THEN
    EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY CASCADE';
  END IF;
  FOR seq IN SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences
              WHERE schemaname NOT IN ('pg_catalog', 'information_schema') LOOP
    EXECUTE 'ALTER SEQUENCE ' || seq || ' RESTART';
  END LOOP;
END
$$
