//! 001: user profiles, interview preferences and resume metadata.
//!
//! Port of `001_user_profiles.sql`: three tables keyed by database-generated
//! UUIDs, foreign keys to `user_profiles` with `ON DELETE CASCADE`, indexes on
//! `firebase_uid` and every `user_id`, and a trigger on every table that keeps
//! `updated_at` current.

use sea_orm_migration::prelude::*;


#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables that carry `created_at`/`updated_at` and the `updated_at` trigger.
const TABLES_WITH_TIMESTAMPS: [&str; 3] = ["user_profiles", "user_preferences", "resumes"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserProfiles::Table)
                    .if_not_exists()
                    .col(uuid_pk(UserProfiles::Id))
                    // Firebase uids are 1..=128 characters.
                    .col(
                        ColumnDef::new(UserProfiles::FirebaseUid)
                            .text()
                            .not_null()
                            .check(Expr::cust("char_length(firebase_uid) BETWEEN 1 AND 128")),
                    )
                    // Firebase users signed in by phone or anonymously have no email.
                    .col(ColumnDef::new(UserProfiles::Email).text().null())
                    .col(ColumnDef::new(UserProfiles::DisplayName).text().null())
                    .col(ColumnDef::new(UserProfiles::PhotoUrl).text().null())
                    .col(created_at(UserProfiles::CreatedAt))
                    .col(updated_at(UserProfiles::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Unique index: the lookup index on firebase_uid and the key that
        // profile upserts (`ON CONFLICT (firebase_uid)`) rely on.
        manager
            .create_index(
                Index::create()
                    .name("idx_user_profiles_firebase_uid")
                    .table(UserProfiles::Table)
                    .col(UserProfiles::FirebaseUid)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserPreferences::Table)
                    .if_not_exists()
                    .col(uuid_pk(UserPreferences::Id))
                    .col(ColumnDef::new(UserPreferences::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(UserPreferences::Difficulty)
                            .text()
                            .not_null()
                            .default("medium")
                            .check(Expr::cust("difficulty IN ('easy', 'medium', 'hard')")),
                    )
                    // Interview length in minutes.
                    .col(
                        ColumnDef::new(UserPreferences::Duration)
                            .integer()
                            .not_null()
                            .default(30)
                            .check(Expr::cust("duration BETWEEN 1 AND 240")),
                    )
                    .col(
                        ColumnDef::new(UserPreferences::Languages)
                            .array(ColumnType::Text)
                            .not_null()
                            .default(Expr::cust("'{}'::text[]")),
                    )
                    .col(
                        ColumnDef::new(UserPreferences::Theme)
                            .text()
                            .not_null()
                            .default("system")
                            .check(Expr::cust("theme IN ('light', 'dark', 'system')")),
                    )
                    .col(created_at(UserPreferences::CreatedAt))
                    .col(updated_at(UserPreferences::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_preferences_user_id")
                            .from(UserPreferences::Table, UserPreferences::UserId)
                            .to(UserProfiles::Table, UserProfiles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Unique: one preferences row per user.
        manager
            .create_index(
                Index::create()
                    .name("idx_user_preferences_user_id")
                    .table(UserPreferences::Table)
                    .col(UserPreferences::UserId)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Resumes::Table)
                    .if_not_exists()
                    .col(uuid_pk(Resumes::Id))
                    .col(ColumnDef::new(Resumes::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(Resumes::Title)
                            .text()
                            .not_null()
                            .check(Expr::cust("char_length(title) > 0")),
                    )
                    .col(
                        ColumnDef::new(Resumes::FileName)
                            .text()
                            .not_null()
                            .check(Expr::cust("char_length(file_name) > 0")),
                    )
                    // Where the PDF lives when it is not stored in the database.
                    .col(ColumnDef::new(Resumes::FilePath).text().null())
                    // Size of the PDF in bytes.
                    .col(
                        ColumnDef::new(Resumes::FileSize)
                            .big_integer()
                            .not_null()
                            .check(Expr::cust("file_size >= 0")),
                    )
                    // Text extracted from the PDF; absent until extraction ran.
                    .col(ColumnDef::new(Resumes::Content).text().null())
                    .col(created_at(Resumes::CreatedAt))
                    .col(updated_at(Resumes::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_resumes_user_id")
                            .from(Resumes::Table, Resumes::UserId)
                            .to(UserProfiles::Table, UserProfiles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_resumes_user_id")
                    .table(Resumes::Table)
                    .col(Resumes::UserId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        // Trigger function and triggers: raw SQL, the schema builder has no
        // statement for them. CREATE OR REPLACE because `migrate fresh` drops
        // tables but not functions.
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger \
             LANGUAGE plpgsql AS $$ \
             BEGIN NEW.updated_at := now(); RETURN NEW; END; $$",
        )
        .await?;
        db.execute_unprepared(
            "COMMENT ON FUNCTION set_updated_at() IS \
             'Sets updated_at to the transaction time on every UPDATE (migration m001_user_profiles)'",
        )
        .await?;
        for table in TABLES_WITH_TIMESTAMPS {
            db.execute_unprepared(&format!(
                "CREATE OR REPLACE TRIGGER trg_{table}_updated_at \
                 BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children first; indexes and triggers go with their tables.
        for table in [
            Resumes::Table.into_iden(),
            UserPreferences::Table.into_iden(),
            UserProfiles::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared("DROP FUNCTION IF EXISTS set_updated_at()")
            .await?;
        Ok(())
    }
}

/// `uuid PRIMARY KEY DEFAULT gen_random_uuid()` (built in since PostgreSQL 13).
fn uuid_pk(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .uuid()
        .not_null()
        .primary_key()
        .default(Expr::cust("gen_random_uuid()"))
        .to_owned()
}

/// `timestamptz NOT NULL DEFAULT now()`.
fn created_at(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .default(Expr::current_timestamp())
        .to_owned()
}

/// Same as [`created_at`]; kept current by the `set_updated_at` trigger.
fn updated_at(name: impl IntoIden) -> ColumnDef {
    created_at(name)
}

#[derive(DeriveIden)]
enum UserProfiles {
    Table,
    Id,
    FirebaseUid,
    Email,
    DisplayName,
    PhotoUrl,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserPreferences {
    Table,
    Id,
    UserId,
    Difficulty,
    Duration,
    Languages,
    Theme,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Resumes {
    Table,
    Id,
    UserId,
    Title,
    FileName,
    FilePath,
    FileSize,
    Content,
    CreatedAt,
    UpdatedAt,
}
