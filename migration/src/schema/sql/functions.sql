-- Functions of the current schema that do not belong to an extension, as
-- signatures (`set_updated_at()`).
SELECT p.oid::regprocedure::text AS signature
FROM pg_proc p
WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e')
