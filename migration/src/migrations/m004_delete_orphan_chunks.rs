//! 004: delete a resume's chunks when the resume (or its owner) is deleted.
//!
//! `resume_chunks` cannot have a foreign key (its layout is LangChain
//! `PGVectorStore`'s, shared with other services), so without these
//! triggers a plain `DELETE FROM resumes` or a profile deletion cascading to
//! resumes would leave the user's resume text behind. Statement-level
//! triggers with transition tables delete all affected chunks in one
//! statement, using the `metadata->>'resume_id'` / `'user_id'` indexes.

use sea_orm_migration::prelude::*;


#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            // Chunks of deleted resumes (also when the delete cascades from
            // user_profiles: the cascade runs a DELETE on resumes).
            "CREATE OR REPLACE FUNCTION delete_chunks_of_deleted_resumes() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN \
               DELETE FROM resume_chunks c USING deleted_resumes d \
                WHERE c.metadata->>'resume_id' = d.id::text; \
               RETURN NULL; \
             END; $$",
            "CREATE OR REPLACE TRIGGER trg_resumes_delete_chunks \
             AFTER DELETE ON resumes REFERENCING OLD TABLE AS deleted_resumes \
             FOR EACH STATEMENT EXECUTE FUNCTION delete_chunks_of_deleted_resumes()",
            // Chunks that name only the user (written by other services
            // without a resume_id) go with the profile.
            "CREATE OR REPLACE FUNCTION delete_chunks_of_deleted_users() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN \
               DELETE FROM resume_chunks c USING deleted_users d \
                WHERE c.metadata->>'user_id' = d.id::text; \
               RETURN NULL; \
             END; $$",
            "CREATE OR REPLACE TRIGGER trg_user_profiles_delete_chunks \
             AFTER DELETE ON user_profiles REFERENCING OLD TABLE AS deleted_users \
             FOR EACH STATEMENT EXECUTE FUNCTION delete_chunks_of_deleted_users()",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP TRIGGER IF EXISTS trg_user_profiles_delete_chunks ON user_profiles",
            "DROP FUNCTION IF EXISTS delete_chunks_of_deleted_users()",
            "DROP TRIGGER IF EXISTS trg_resumes_delete_chunks ON resumes",
            "DROP FUNCTION IF EXISTS delete_chunks_of_deleted_resumes()",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
