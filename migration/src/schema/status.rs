//! Which migrations the database has, read without writing anything: what
//! `migration status`, `verify`, [`crate::lock::up_locked`] (before it
//! decides to migrate) and an application's start-up check use.
//!
//! sea-orm-migration's own status functions first create its bookkeeping
//! table `seaql_migrations` (`CREATE TABLE IF NOT EXISTS`), which an
//! application role without DDL privileges may not do, and which a read-only
//! transaction or a hot standby refuses. These only read: a missing table
//! means nothing was applied.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};
use serde::Serialize;

use crate::Migrator;
use crate::catalog::MIGRATION_TABLE;

/// Migration bookkeeping compared with the migrator's list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MigrationsStatus {
    /// Applied, in the migrator's order.
    pub applied: Vec<String>,
    /// Known to the migrator but not applied, in order.
    pub pending: Vec<String>,
    /// Recorded as applied but unknown to this migrator (a newer version
    /// migrated the database, or a migration was removed).
    pub unknown: Vec<String>,
}

impl MigrationsStatus {
    /// Reads `seaql_migrations` of the current schema (nothing applied when
    /// it does not exist); never writes.
    ///
    /// # Errors
    /// Database errors; reading the table needs `SELECT` on it (the
    /// application role of `migration roles` has it).
    pub async fn read<C: ConnectionTrait>(db: &C) -> Result<Self, DbErr> {
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let recorded = recorded(db).await?;
        Ok(Self {
            applied: known
                .iter()
                .filter(|k| recorded.contains(k))
                .cloned()
                .collect(),
            pending: known
                .iter()
                .filter(|k| !recorded.contains(k))
                .cloned()
                .collect(),
            unknown: recorded
                .iter()
                .filter(|r| !known.contains(r))
                .cloned()
                .collect(),
        })
    }

    /// Every known migration applied and none unknown.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// The start-up check for applications: fails, without writing anything,
/// unless every migration of this version is applied and none unknown is
/// recorded, with a message listing them and what to run. Works as an
/// application role with only `SELECT` on the tables, on a hot standby,
/// and through a transaction-mode pooler.
///
/// It checks the current schema of `db`: pass a transaction that set the
/// application's `search_path` when the tables are not in the role's
/// default schema.
///
/// ```no_run
/// # async fn f(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
/// migration::ensure_schema_current(db).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`DbErr::Migration`] when migrations are pending or unknown (or
/// `seaql_migrations` may not be read); other database errors.
pub async fn ensure_schema_current<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let status = match MigrationsStatus::read(db).await {
        Ok(status) => status,
        Err(e) if pgconn::sqlstate(&e).as_deref() == Some("42501") => {
            return Err(DbErr::Migration(format!(
                "cannot check the schema version: the role may not read seaql_migrations ({e}); \
                 grant it SELECT (the application role of `migration roles` has it)"
            )));
        }
        Err(e) => return Err(e),
    };
    if status.is_current() {
        return Ok(());
    }
    let here = db
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            sea_orm_migration::sea_orm::DbBackend::Postgres,
            "SELECT current_database()::text AS db, coalesce(current_schema()::text, '') AS schema",
        ))
        .await?
        .map(|r| -> Result<String, DbErr> {
            Ok(format!(
                "database \"{}\", schema \"{}\"",
                r.try_get::<String>("", "db")?,
                r.try_get::<String>("", "schema")?
            ))
        })
        .transpose()?
        .unwrap_or_default();
    let mut msg = format!("the database schema is not the one this version needs ({here}):");
    if !status.pending.is_empty() {
        msg.push_str(&format!(
            " {} migration(s) pending: {}. Apply them before starting this version: \
             `migration up` with the owner role's URL (MIGRATION_DATABASE_URL), or \
             `migration::lock::up_locked` at start-up where the application's role owns the \
             schema.",
            status.pending.len(),
            status.pending.join(", ")
        ));
    }
    if !status.unknown.is_empty() {
        msg.push_str(&format!(
            " {} migration(s) recorded as applied that this version does not know: {}. A newer \
             version migrated this database: deploy that version (or roll the database back \
             with the newer migrator).",
            status.unknown.len(),
            status.unknown.join(", ")
        ));
    }
    Err(DbErr::Migration(msg))
}

/// Migrations recorded in `seaql_migrations` (none if it does not exist).
///
/// # Errors
/// Database errors.
pub async fn recorded<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, DbErr> {
    let exists = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT to_regclass(quote_ident(current_schema()) || '.{MIGRATION_TABLE}') \
                 IS NOT NULL AS found"
            ),
        ))
        .await?
        .map(|r| r.try_get::<bool>("", "found"))
        .transpose()?
        .unwrap_or(false);
    if !exists {
        return Ok(Vec::new());
    }
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        format!("SELECT version FROM {MIGRATION_TABLE} ORDER BY version"),
    ))
    .await?
    .iter()
    .map(|r| r.try_get("", "version"))
    .collect()
}
