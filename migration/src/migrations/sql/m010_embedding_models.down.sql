-- m010 down: its tables; chunks keep their stamps in metadata. Refused
-- while a re-embedding job is active: finish or cancel it first.
DO $$
BEGIN
  IF to_regclass('reembed_jobs') IS NOT NULL THEN
    IF EXISTS (SELECT 1 FROM reembed_jobs WHERE state IN ('backfill', 'switched')) THEN
      RAISE EXCEPTION 'a re-embedding job is active: run `migration reembed finish` or `migration reembed cancel` before rolling back m010_embedding_models';
    END IF;
  END IF;
END
$$;
-- Undo exactly the up; no client of an earlier release reads these tables.
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS reembed_queue;
-- squawk-ignore ban-drop-sequence
DROP SEQUENCE IF EXISTS reembed_queue_seq;
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS reembed_enqueue();
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS reembed_jobs;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS embedding_models;
