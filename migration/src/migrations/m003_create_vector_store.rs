//! 003: resume text chunks with 768-dimension embeddings (pgvector).
//!
//! Port of `003_create_vector_store.sql`. The table layout is fixed: other
//! services read and write it through LangChain's `PGVectorStore` with its
//! default columns `id`, `text`, `metadata`, `embedding`, and `metadata`
//! carries `user_id` and `resume_id` as strings. Indexes: GIN on `metadata`,
//! HNSW (cosine) on `embedding`, B-tree expression indexes on
//! `metadata->>'user_id'` and `metadata->>'resume_id'`.

use sea_orm_migration::prelude::*;

use crate::pgvector_check::create_extension;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Marks an extension that this migration installed, so `down` removes it
/// only then and leaves one that an administrator installed beforehand.
const INSTALLED_BY_MARKER: &str =
    "vector data type and ivfflat and hnsw access methods (installed by m003_create_vector_store)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Checked first, so a server without pgvector gets an actionable error
        // and nothing is created (the whole migration is one transaction).
        if create_extension(db, "vector").await? {
            db.execute_unprepared(&format!(
                "COMMENT ON EXTENSION vector IS '{INSTALLED_BY_MARKER}'"
            ))
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ResumeChunks::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ResumeChunks::Id)
                            .uuid()
                            .not_null()
                            .primary_key()
                            .default(Expr::cust("gen_random_uuid()")),
                    )
                    .col(ColumnDef::new(ResumeChunks::Text).text().null())
                    .col(ColumnDef::new(ResumeChunks::Metadata).json_binary().null())
                    .col(
                        ColumnDef::new(ResumeChunks::Embedding)
                            .vector(Some(768))
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;

        // Index kinds the schema builder cannot express: GIN, HNSW with an
        // operator class, and expression indexes.
        for sql in [
            "CREATE INDEX IF NOT EXISTS idx_resume_chunks_metadata \
             ON resume_chunks USING gin (metadata)",
            "CREATE INDEX IF NOT EXISTS idx_resume_chunks_embedding \
             ON resume_chunks USING hnsw (embedding vector_cosine_ops)",
            "CREATE INDEX IF NOT EXISTS idx_resume_chunks_user_id \
             ON resume_chunks ((metadata->>'user_id'))",
            "CREATE INDEX IF NOT EXISTS idx_resume_chunks_resume_id \
             ON resume_chunks ((metadata->>'resume_id'))",
            "COMMENT ON TABLE resume_chunks IS \
             'Resume text chunks with text-embedding-004 vectors (768 dims); \
             LangChain PGVectorStore layout, metadata carries user_id and resume_id'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ResumeChunks::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        // Remove the extension only if `up` installed it and nothing else
        // uses it now; otherwise leave it as it was before `up`.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "DO $$ BEGIN \
                   IF obj_description((SELECT oid FROM pg_extension WHERE extname = 'vector'), \
                                      'pg_extension') = '{INSTALLED_BY_MARKER}' THEN \
                     BEGIN \
                       DROP EXTENSION vector; \
                     EXCEPTION WHEN dependent_objects_still_exist THEN \
                       RAISE NOTICE 'keeping extension vector: other objects use it'; \
                     END; \
                   END IF; \
                 END $$"
            ))
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ResumeChunks {
    Table,
    Id,
    Text,
    Metadata,
    Embedding,
}
