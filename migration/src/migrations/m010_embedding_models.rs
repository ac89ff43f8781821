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

//!
//! The SQL is in `sql/m010_embedding_models.{up,down}.sql` (linted by
//! squawk in CI: `scripts/lint-migrations`).

use sea_orm_migration::prelude::*;

/// The `up` statements.
pub(super) const UP: &str = include_str!("sql/m010_embedding_models.up.sql");
/// The `down` statements.
pub(super) const DOWN: &str = include_str!("sql/m010_embedding_models.down.sql");

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
