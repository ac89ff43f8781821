-- Everything a test could change in its database besides rows and
-- sequence values, as one hash: schemas, relations (kind, options,
-- privileges, row security), columns, indexes, functions, constraints,
-- rules, policies, triggers, extensions, role and database settings for
-- this database, the migrations recorded, planner statistics and large
-- objects. A database whose fingerprint is the fresh clone's can
-- be emptied and handed to the next test; any other is dropped.
SELECT md5(coalesce(string_agg(x, E'\n' ORDER BY x), '')) AS fingerprint FROM (
  SELECT 'n:' || nspname || ':' || coalesce(nspacl::text, '')
    FROM pg_namespace
   WHERE nspname NOT LIKE 'pg_temp_%' AND nspname NOT LIKE 'pg_toast_temp_%'
  UNION ALL
  SELECT 'c:' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':'
         || coalesce(c.reloptions::text, '') || ':' || coalesce(c.relacl::text, '')
         || ':' || c.relrowsecurity::text || c.relforcerowsecurity::text || c.relreplident::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  UNION ALL
  SELECT 'a:' || n.nspname || '.' || c.relname || '.' || a.attname || ':'
         || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull
         || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relpersistence <> 't'
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  UNION ALL
  SELECT 'p:' || p.oid::regprocedure::text || ':' || md5(coalesce(p.prosrc, ''))
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION ALL
  SELECT 'k:' || conrelid::regclass::text || '.' || conname || ':' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL
  SELECT 'i:' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
   WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)
  UNION ALL
  SELECT 'r:' || ev_class::regclass::text || '.' || rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
   WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL
  SELECT 'pol:' || polrelid::regclass::text || '.' || polname FROM pg_policy
  UNION ALL
  SELECT 't:' || tgrelid::regclass::text || '.' || tgname || ':' || tgenabled::text
    FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT 'e:' || extname || ':' || extversion FROM pg_extension
  UNION ALL
  SELECT 's:' || setrole::text || ':' || array_to_string(setconfig, ';')
    FROM pg_db_role_setting
   WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL
  SELECT 'd:' || coalesce(datacl::text, '') || ':' || datconnlimit
    FROM pg_database WHERE datname = current_database()
  UNION ALL
  SELECT 'm:' || version FROM seaql_migrations
  UNION ALL
  -- The rows migrations write (m010's declaration of the model of unstamped
  -- chunks): kept by empty.sql, so they must be the fresh clone's.
  SELECT 'r:' || CASE WHEN to_regclass('public.embedding_models') IS NOT NULL THEN
           query_to_xml('SELECT string_agg(t::text, '','' ORDER BY t::text) AS rows                          FROM public.embedding_models t', false, false, '')::text END
  UNION ALL
  SELECT 'stat:' || count(*) FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid
   WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)
  UNION ALL
  SELECT 'lo:' || count(*) FROM pg_largeobject_metadata
) f(x)
