//! Schema migrations for the mock-interview database.
//!
//! One module per migration, applied in the order listed in [`Migrator`]. The
//! numbering and names follow the original SQL migrations
//! (`001_user_profiles.sql`, `002_add_pdf_storage.sql`,
//! `003_create_vector_store.sql`) so that a database created by either project
//! can be followed by the other. Migration 004 is this project's first own
//! migration (triggers that delete orphaned resume chunks).
//!
//! Rules for this crate (see the README, "Adding a migration"):
//! - never edit a migration that has been applied anywhere; add a new one;
//! - never import the `entity` crate: an applied migration must not change
//!   when a model changes later;
//! - every `up` has a `down` that leaves the database exactly as before.
//!
//! Run it with `cargo run -p migration -- <command>` or
//! `sea-orm-cli migrate <command>`.
//!
//! Production support (README, "Production deployment"):
//! - [`lock`]: an advisory lock serializing concurrent migrators
//!   ([`lock::up_locked`] for application start-up);
//! - [`safety`]: `lock_timeout` in every migration and the refusal of
//!   rollbacks that would destroy stored data;
//! - [`verify`]: the live schema checked against [`expected`];
//! - [`dry_run`]: `up` inside a transaction that is rolled back;
//! - [`connect`]: the binary's fail-fast connection.

pub use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseExecutor;

pub mod catalog;
pub mod connect;
pub mod dry_run;
pub mod expected;
pub mod lock;
mod m001_user_profiles;
mod m002_add_pdf_storage;
mod m003_create_vector_store;
mod m004_delete_orphan_chunks;
pub mod pgvector_check;
pub mod safety;
pub mod verify;

/// The ordered list of this project's migrations.
///
/// Use it from application code with [`lock::up_locked`] (the advisory lock
/// keeps instances that start together from racing), or
/// `Migrator::up(&db, None).await` (from [`MigratorTrait`]) when only one
/// process migrates.
///
/// On top of sea-orm's behaviour:
/// - `up` first checks that pgvector can be created when the migration that
///   creates it is among those to apply, so a server without pgvector (or a
///   role that may not create it) fails before anything is applied;
/// - `down`, `refresh`, `reset` and `fresh` refuse, before changing
///   anything, when they would destroy stored data ([`safety`]);
/// - a migration cancelled by `lock_timeout` fails with an explanation
///   naming the sessions holding the locks.
pub struct Migrator;

/// sea-orm's default behaviour for the same migrations; [`Migrator`] wraps
/// it with the checks above.
struct Unguarded;

impl MigratorTrait for Unguarded {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Migrator::migrations()
    }
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m001_user_profiles::Migration),
            Box::new(m002_add_pdf_storage::Migration),
            Box::new(m003_create_vector_store::Migration),
            Box::new(m004_delete_orphan_chunks::Migration),
        ]
    }

    async fn up<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        let to_apply = pending_names(&db, steps).await?;
        if to_apply
            .iter()
            .any(|m| m == m003_create_vector_store::Migration.name())
        {
            pgvector_check::ensure_can_create(&db, expected::PGVECTOR).await?;
        }
        let outcome = Unguarded::up(reborrow(&db), steps).await;
        explain(&db, outcome, Direction::Up).await
    }

    async fn down<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        safety::check_rollbacks(&db, &applied_names(&db, steps).await?).await?;
        let outcome = Unguarded::down(reborrow(&db), steps).await;
        explain(&db, outcome, Direction::Down).await
    }

    async fn refresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        safety::check_rollbacks(&db, &applied_names(&db, None).await?).await?;
        let outcome = Unguarded::refresh(reborrow(&db)).await;
        explain(&db, outcome, Direction::Unknown).await
    }

    async fn reset<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        safety::check_rollbacks(&db, &applied_names(&db, None).await?).await?;
        let outcome = Unguarded::reset(reborrow(&db)).await;
        explain(&db, outcome, Direction::Down).await
    }

    async fn fresh<'c, C>(db: C) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        safety::check_fresh(&db).await?;
        let outcome = Unguarded::fresh(reborrow(&db)).await;
        explain(&db, outcome, Direction::Unknown).await
    }
}

/// A second, borrowed executor for the same connection or transaction.
fn reborrow<'a>(db: &'a DatabaseExecutor<'_>) -> DatabaseExecutor<'a> {
    match db {
        DatabaseExecutor::Connection(c) => DatabaseExecutor::Connection(c),
        DatabaseExecutor::Transaction(t) => DatabaseExecutor::Transaction(t),
        DatabaseExecutor::OwnedTransaction(t) => DatabaseExecutor::Transaction(t),
    }
}

/// Names of the migrations `up(steps)` would apply, in order.
async fn pending_names(
    db: &DatabaseExecutor<'_>,
    steps: Option<u32>,
) -> Result<Vec<String>, DbErr> {
    let pending = Migrator::get_pending_migrations(db).await?;
    let take = steps.map_or(pending.len(), |n| n as usize);
    Ok(pending
        .iter()
        .take(take)
        .map(|m| m.name().to_owned())
        .collect())
}

/// Names of the migrations `down(steps)` would roll back, in order.
async fn applied_names(
    db: &DatabaseExecutor<'_>,
    steps: Option<u32>,
) -> Result<Vec<String>, DbErr> {
    let applied = Migrator::get_applied_migrations(db).await?;
    let take = steps.map_or(applied.len(), |n| n as usize);
    Ok(applied
        .iter()
        .rev()
        .take(take)
        .map(|m| m.name().to_owned())
        .collect())
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
    Unknown,
}

/// Adds the explanation to a lock-timeout failure, naming the migration
/// that failed (the first still pending after a failed `up`, the last still
/// applied after a failed `down`).
async fn explain(
    db: &DatabaseExecutor<'_>,
    outcome: Result<(), DbErr>,
    direction: Direction,
) -> Result<(), DbErr> {
    let Err(err) = outcome else {
        return Ok(());
    };
    if !safety::is_lock_timeout(&err) {
        return Err(err);
    }
    let failed = match direction {
        Direction::Up => pending_names(db, Some(1)).await.ok(),
        Direction::Down => applied_names(db, Some(1)).await.ok(),
        Direction::Unknown => None,
    }
    .and_then(|mut names| names.pop());
    Err(safety::explain_lock_timeout(db, err, failed.as_deref()).await)
}

/// Sources of every migration module, in order. Feeds [`schema_fingerprint`].
const MIGRATION_SOURCES: &[&str] = &[
    include_str!("m001_user_profiles.rs"),
    include_str!("m002_add_pdf_storage.rs"),
    include_str!("m003_create_vector_store.rs"),
    include_str!("m004_delete_orphan_chunks.rs"),
];

/// A stable 64-bit fingerprint (FNV-1a) of the migration names and sources.
///
/// Changes whenever a migration is added or edited; test fixtures use it to
/// name the pre-migrated template database, so a stale template is never
/// reused.
pub fn schema_fingerprint() -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let names = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect::<Vec<_>>();
    names
        .iter()
        .map(String::as_str)
        .chain(MIGRATION_SOURCES.iter().copied())
        .flat_map(|s| s.bytes().chain(std::iter::once(0)))
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}
