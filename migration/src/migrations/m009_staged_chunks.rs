//! 009: `resume_chunks_staged`, where an upload can put a resume's new
//! chunks without paying for their HNSW insertion on the request path.
//!
//! Measured at 1M chunks (BENCHMARKS.md, "A million chunks"): inserting a
//! chunk into the HNSW graph of `resume_chunks` costs ~5.5 ms of server CPU
//! (`ef_construction` 200, m008), so replacing a 51-chunk resume takes
//! ~295 ms, 97% of it graph insertion. The library's staged upload
//! (`chunks::stage_resume_chunks`) deletes the resume's old chunks and
//! copies the new ones into this table, which has no vector index, in one
//! transaction; a background indexer (`chunks::index_staged_chunks`) later
//! moves them into `resume_chunks`, one resume at a time, each move one
//! statement. The library's searches read both tables, so a staged chunk is
//! searchable at once; services reading `resume_chunks` directly see it
//! once it is moved.
//!
//! The table is the library's own (not LangChain's layout): its rows always
//! belong to a resume, so `resume_id` is a foreign key computed from the
//! metadata, and deleting a resume or a profile deletes its staged chunks by
//! cascade. `down` first moves every staged chunk into `resume_chunks`
//! (under an exclusive lock, so no upload lands between the move and the
//! drop): no chunk is lost. Like the other migrations, `up` creates its
//! objects only if missing, so that identical ones are adopted (see
//! `guard::foreign_schema`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE TABLE IF NOT EXISTS resume_chunks_staged ( \
               id uuid PRIMARY KEY, \
               text text NOT NULL, \
               metadata jsonb NOT NULL, \
               embedding vector(768) NOT NULL, \
               resume_id uuid NOT NULL GENERATED ALWAYS AS ((metadata->>'resume_id')::uuid) STORED, \
               staged_at timestamptz NOT NULL DEFAULT now(), \
               CONSTRAINT fk_resume_chunks_staged_resume_id FOREIGN KEY (resume_id) \
                 REFERENCES resumes(id) ON DELETE CASCADE)",
            "CREATE INDEX IF NOT EXISTS idx_resume_chunks_staged_resume_id \
             ON resume_chunks_staged (resume_id)",
            "CREATE INDEX IF NOT EXISTS idx_resume_chunks_staged_user_id \
             ON resume_chunks_staged ((metadata->>'user_id'))",
            "COMMENT ON TABLE resume_chunks_staged IS \
             'Resume chunks uploaded but not yet in the HNSW index of resume_chunks; \
              the library searches both and its indexer moves these over (migration 009)'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "LOCK TABLE resume_chunks_staged IN ACCESS EXCLUSIVE MODE",
            "INSERT INTO resume_chunks (id, text, metadata, embedding) \
             SELECT id, text, metadata, embedding FROM resume_chunks_staged",
            "DROP TABLE resume_chunks_staged",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
