-- m010 up: the embedding models of the chunks, and the state of a
-- re-embedding job (see m010_embedding_models.rs). New, small tables:
-- nothing existing is locked or rewritten.

-- The models the database knows. The one row with `serving` is the model of
-- the vectors in resume_chunks: searches use it, and chunks without a stamp
-- (metadata.embedding_model), such as LangChain JS writes, are of it.
CREATE TABLE IF NOT EXISTS embedding_models (
  name text NOT NULL CHECK (name ~ '^[A-Za-z0-9._:/@-]{1,200}$'),
  -- A dimension count is at most 16,000: integer is enough.
  -- squawk-ignore prefer-bigint-over-int
  dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
  serving boolean NOT NULL DEFAULT false,
  declared_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, dimensions)
);

-- At most one serving model (a plain CREATE INDEX: the table was created
-- just above, in this transaction).
CREATE UNIQUE INDEX IF NOT EXISTS idx_embedding_models_one_serving
  ON embedding_models (serving) WHERE serving;

COMMENT ON TABLE embedding_models IS
  'Embedding models of the chunks; the serving row is the model of the vectors in resume_chunks and of chunks without an embedding_model stamp (migration 010)';

-- gemini-embedding-001 at 768 dimensions made every chunk written so far,
-- except in a database `migration import` filled before this migration.
INSERT INTO embedding_models (name, dimensions, serving)
SELECT 'gemini-embedding-001', 768, true
WHERE NOT EXISTS (SELECT 1 FROM legacy_ids)
  AND NOT EXISTS (SELECT 1 FROM embedding_models WHERE serving)
ON CONFLICT DO NOTHING;

-- Re-embedding jobs (mockinterview_db::reembed): at most one is active.
CREATE TABLE IF NOT EXISTS reembed_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  from_name text NOT NULL,
  -- squawk-ignore prefer-bigint-over-int
  from_dimensions integer NOT NULL,
  to_name text NOT NULL,
  -- squawk-ignore prefer-bigint-over-int
  to_dimensions integer NOT NULL,
  state text NOT NULL CHECK (state IN ('backfill', 'switched', 'finished', 'cancelled')),
  backfilled_at timestamptz,
  started_at timestamptz NOT NULL DEFAULT now(),
  switched_at timestamptz,
  ended_at timestamptz,
  -- The runner that holds the job until then (one at a time).
  lease_until timestamptz
);

-- Plain CREATE INDEX: the table was created just above.
CREATE UNIQUE INDEX IF NOT EXISTS idx_reembed_jobs_one_active
  ON reembed_jobs ((true)) WHERE state IN ('backfill', 'switched');

-- Chunks written to the serving table while a job runs, which the shadow
-- table must catch up with before a switch: reembed_enqueue() fills it from
-- a trigger the job adds to resume_chunks. `seq` changes on every write,
-- so an entry read before a newer write is not taken for it.
CREATE SEQUENCE IF NOT EXISTS reembed_queue_seq;
CREATE TABLE IF NOT EXISTS reembed_queue (
  id uuid PRIMARY KEY,
  seq bigint NOT NULL,
  queued_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION reembed_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO reembed_queue (id, seq)
  VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END, nextval('reembed_queue_seq'))
  ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, queued_at = now();
  RETURN NULL;
END
$$;
