-- m010 up: the embedding-model registry (see m010_embedding_models.rs).
-- A new, small table: nothing existing is locked or rewritten.
CREATE TABLE IF NOT EXISTS embedding_models (
  name text NOT NULL CHECK (name ~ '^[A-Za-z0-9._:/@-]{1,200}$'),
  -- A dimension count is at most 16,000: integer is enough.
  -- squawk-ignore prefer-bigint-over-int
  dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
  unstamped boolean NOT NULL DEFAULT false,
  declared_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, dimensions)
);

-- At most one model is declared for unstamped chunks (a plain CREATE INDEX:
-- the table was created just above, in this transaction).
CREATE UNIQUE INDEX IF NOT EXISTS idx_embedding_models_one_unstamped
  ON embedding_models (unstamped) WHERE unstamped;

COMMENT ON TABLE embedding_models IS
  'Embedding models of the chunks; the row with unstamped is the model of chunks whose metadata has no embedding_model stamp (migration 010)';

-- gemini-embedding-001 at 768 dimensions made every unstamped chunk, except
-- in a database `migration import` filled before this migration.
INSERT INTO embedding_models (name, dimensions, unstamped)
SELECT 'gemini-embedding-001', 768, true
WHERE NOT EXISTS (SELECT 1 FROM legacy_ids)
  AND NOT EXISTS (SELECT 1 FROM embedding_models WHERE unstamped)
ON CONFLICT DO NOTHING;
