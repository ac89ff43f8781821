//! 005: what a database brought over from the TypeScript app keeps.
//!
//! - `legacy_ids`: the map from the app's integer ids (`user_profiles.id`,
//!   `user_preferences.id`, `resumes.id`) to this schema's uuids, written by
//!   `migration import`. Old URLs, Redis cache keys (`user:id:<int>`,
//!   `resume:<int>`) and logs name those integers; the library resolves them
//!   (`mockinterview_db::legacy`). One table for every entity rather than a
//!   column on each table: the tables stay as they are for databases that
//!   never came from the app, and a row outlives the entity it names (an old
//!   id of a deleted account resolves to "not found", not to "never
//!   existed"). It holds ids only, no personal data.
//! - `resumes.is_primary`: the app let a user mark one resume as primary.
//!   At most one per user (`resumes_one_primary_per_user`, deferrable so
//!   that moving the mark is one `UPDATE`); the app's own data broke that
//!   rule under concurrent requests, which the import resolves and reports.
//!
//! Raw SQL throughout (the schema builder has no exclusion constraints).
//! Idempotent like m001..m004, so that `up` can adopt identical objects
//! (`Migrator::up` refuses existing objects of another shape before any
//! migration runs).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE TABLE IF NOT EXISTS legacy_ids ( \
               table_name text NOT NULL \
                 CHECK (table_name IN ('user_profiles', 'user_preferences', 'resumes')), \
               legacy_id bigint NOT NULL, \
               id uuid NOT NULL, \
               imported_at timestamptz NOT NULL DEFAULT now(), \
               PRIMARY KEY (table_name, legacy_id))",
            // Reverse lookups (uuid -> the old integer, for old cache keys).
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_legacy_ids_id ON legacy_ids (table_name, id)",
            "COMMENT ON TABLE legacy_ids IS \
             'Integer ids of the TypeScript app (table_name.legacy_id) and the uuid each row \
             got when `migration import` copied it (migration m005_legacy_import)'",
            "ALTER TABLE resumes ADD COLUMN IF NOT EXISTS is_primary boolean NOT NULL DEFAULT false",
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_constraint \
                              WHERE conrelid = 'resumes'::regclass \
                                AND conname = 'resumes_one_primary_per_user') THEN \
                 ALTER TABLE resumes ADD CONSTRAINT resumes_one_primary_per_user \
                   EXCLUDE USING btree (user_id WITH =) WHERE (is_primary) \
                   DEFERRABLE INITIALLY IMMEDIATE; \
               END IF; \
             END $$",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            // The constraint's predicate uses the column: it goes first.
            "ALTER TABLE resumes DROP CONSTRAINT IF EXISTS resumes_one_primary_per_user",
            "ALTER TABLE resumes DROP COLUMN IF EXISTS is_primary",
            "DROP TABLE IF EXISTS legacy_ids",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
