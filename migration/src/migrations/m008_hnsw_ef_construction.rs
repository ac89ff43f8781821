//! 008: the HNSW graph of `resume_chunks` is built with `ef_construction`
//! 200 instead of pgvector's default 64.
//!
//! Measured at 1M chunks on the benchmark machine (BENCHMARKS.md, "A
//! million chunks"): with the graph built at 64, recall@10 of whole-table
//! searches reached 0.894 at `ef_search` 100 and only 0.945 at 500; built
//! at 200, it is 0.97 at 100 and 0.99 at 150, for the same index size
//! (`m` is unchanged). The price is paid on writes: each insertion searches
//! the graph with the larger candidate list.
//!
//! `ef_construction` is a storage parameter of the index that pgvector
//! reads at every insertion, so `up` only changes the parameter: instant,
//! transactional, no rebuild. Chunks inserted from then on are linked with
//! the better search; a database that already holds many chunks gets the
//! full benefit after `REINDEX INDEX CONCURRENTLY idx_resume_chunks_embedding`
//! (outside a transaction, so not part of this migration; README,
//! "Production deployment"). `down` resets the parameter to pgvector's
//! default, leaving the index definition exactly as m003 created it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER INDEX idx_resume_chunks_embedding SET (ef_construction = 200)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER INDEX idx_resume_chunks_embedding RESET (ef_construction)")
            .await?;
        Ok(())
    }
}
