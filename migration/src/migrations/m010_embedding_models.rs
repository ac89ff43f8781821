//! 010: `embedding_models`, what the database says about the embedding
//! models of its chunks.
//!
//! Vectors of two models cannot be compared, even at the same dimension
//! count. From this release on, every chunk the library or `migration
//! import` writes records its model in its metadata (the key
//! `embedding_model`, `{"name": ..., "dimensions": ...}`), and searches
//! compare only chunks of the handle's model. Chunks written before, or by
//! another service (LangChain JS `PGVectorStore`), carry no stamp: the row
//! of this table with `unstamped` says which model they are, and no row
//! means nobody knows (they are then searched by no handle until an
//! operator declares it: `migration models --unstamped`).
//!
//! `up` declares `gemini-embedding-001` at 768 dimensions for unstamped
//! chunks, the TypeScript app's model since its commit 86f8fc7: its older
//! model, `text-embedding-004`, was shut down on 2026-01-14, before the
//! first release of this library, so every unstamped chunk the library
//! wrote is of the newer one. Except in a database that `migration
//! import` filled before this migration (`legacy_ids` has rows): there the
//! chunks may come from either model, so nothing is declared.
//!
//! Online: a new, small table; `resume_chunks` is neither locked nor
//! rewritten (the stamp is in `metadata`). `down` drops the table; the
//! stamps stay in the chunks' metadata, where the previous release ignores
//! them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE TABLE IF NOT EXISTS embedding_models ( \
               name text NOT NULL CHECK (name ~ '^[A-Za-z0-9._:/@-]{1,200}$'), \
               dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000), \
               unstamped boolean NOT NULL DEFAULT false, \
               declared_at timestamptz NOT NULL DEFAULT now(), \
               PRIMARY KEY (name, dimensions))",
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_embedding_models_one_unstamped \
             ON embedding_models (unstamped) WHERE unstamped",
            "COMMENT ON TABLE embedding_models IS \
             'Embedding models of the chunks; the row with unstamped is the model of chunks \
              whose metadata has no embedding_model stamp (migration 010)'",
            "INSERT INTO embedding_models (name, dimensions, unstamped) \
             SELECT 'gemini-embedding-001', 768, true \
             WHERE NOT EXISTS (SELECT 1 FROM legacy_ids) \
               AND NOT EXISTS (SELECT 1 FROM embedding_models WHERE unstamped) \
             ON CONFLICT DO NOTHING",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS embedding_models")
            .await?;
        Ok(())
    }
}
