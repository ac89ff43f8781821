//! 007: ids in chunk metadata compare case-insensitively: UUID strings in
//! `metadata.user_id` / `metadata.resume_id` are stored in lower case,
//! whoever writes them.
//!
//! Other services write `resume_chunks` directly (LangChain `PGVectorStore`)
//! and some print UUIDs in upper case. Every reader (the library's searches
//! and `resume_chunks`, m004's delete triggers, chunk replacement) compares
//! `metadata->>'user_id'` with `uuid::text`, which is lower case, through
//! the B-tree expression indexes of m003. Normalizing on write keeps those
//! comparisons and indexes as they are: a `BEFORE INSERT OR UPDATE` row
//! trigger lowercases the two keys when they hold a string in the form of a
//! UUID with an upper-case letter (its `WHEN` clause keeps the common case,
//! already lower case, free of any function call). Anything else (a
//! Firebase uid written by the legacy app, which is case-sensitive; a
//! number) is left exactly as written.
//!
//! `up` also lowercases the rows already there. `down` drops the trigger
//! and its function; rows it lowercased stay lowercased: the same UUIDs,
//! spelled canonically, so no information is lost.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE OR REPLACE FUNCTION lowercase_chunk_metadata_ids() RETURNS trigger \
             LANGUAGE plpgsql AS $$ \
             DECLARE k text; \
             BEGIN \
               FOREACH k IN ARRAY ARRAY['user_id', 'resume_id'] LOOP \
                 IF jsonb_typeof(NEW.metadata -> k) = 'string' \
                    AND (NEW.metadata ->> k) ~ \
                      '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' \
                 THEN \
                   NEW.metadata := jsonb_set(NEW.metadata, ARRAY[k], \
                                             to_jsonb(lower(NEW.metadata ->> k))); \
                 END IF; \
               END LOOP; \
               RETURN NEW; \
             END; $$",
            "CREATE OR REPLACE TRIGGER trg_resume_chunks_lowercase_ids \
             BEFORE INSERT OR UPDATE OF metadata ON resume_chunks FOR EACH ROW \
             WHEN (((new.metadata ->> 'user_id') ~ '[A-F]') \
                OR ((new.metadata ->> 'resume_id') ~ '[A-F]')) \
             EXECUTE FUNCTION lowercase_chunk_metadata_ids()",
            // Rows written before: the trigger rewrites them.
            "UPDATE resume_chunks SET metadata = metadata \
             WHERE (metadata ->> 'user_id') ~ '[A-F]' OR (metadata ->> 'resume_id') ~ '[A-F]'",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "DROP TRIGGER IF EXISTS trg_resume_chunks_lowercase_ids ON resume_chunks",
            "DROP FUNCTION IF EXISTS lowercase_chunk_metadata_ids()",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
