//! [`Migrator`]: the list of [`crate::migrations`], each wrapped with the
//! guard rails, and sea-orm's migrator with checks before it starts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseExecutor;

use crate::guard::{foreign_schema, pgvector_check, safety};
use crate::migrations;
use crate::schema::expected;

/// The ordered list of this project's migrations.
///
/// Use it from application code with [`crate::lock::up_locked`] (the advisory lock
/// keeps instances that start together from racing, also through a
/// transaction-mode pooler), or `Migrator::up(&db, None).await` (from
/// [`MigratorTrait`]) when only one process migrates over a direct
/// connection.
///
/// On top of sea-orm's behaviour:
/// - `up` first checks that pgvector can be created when the migration that
///   creates it is among those to apply, so a server without pgvector (or a
///   role that may not create it) fails before anything is applied;
/// - `up` refuses, before applying anything, when objects that the pending
///   migrations create already exist with another shape (a database of the
///   TypeScript app, for one): [`foreign_schema`];
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
        migrations::all()
            .into_iter()
            .map(|m| Box::new(Guarded(m)) as Box<dyn MigrationTrait>)
            .collect()
    }

    async fn up<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        let db = db.into_database_executor();
        check_up(&db, steps).await?;
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

impl Migrator {
    /// The checks `up(steps)` makes before applying anything: pgvector can
    /// be created if a pending migration creates it, and no pending
    /// migration meets existing objects of another shape. Writes nothing.
    /// [`crate::lock::up_locked`] runs them once for every pending
    /// migration before it applies them one transaction each, so that a
    /// run that cannot finish does not start.
    ///
    /// # Errors
    /// What `up` would refuse with.
    pub async fn check_up<'c, C>(db: C, steps: Option<u32>) -> Result<(), DbErr>
    where
        C: IntoSchemaManagerConnection<'c>,
    {
        check_up(&db.into_database_executor(), steps).await
    }
}

/// [`Migrator::check_up`].
async fn check_up(db: &DatabaseExecutor<'_>, steps: Option<u32>) -> Result<(), DbErr> {
    let to_apply = pending_names(db, steps).await?;
    if to_apply.iter().any(|m| m == CREATES_PGVECTOR) {
        pgvector_check::ensure_can_create(db, expected::PGVECTOR).await?;
    }
    foreign_schema::check_pending(db, &to_apply).await
}

/// A second, borrowed executor for the same connection or transaction.
fn reborrow<'a>(db: &'a DatabaseExecutor<'_>) -> DatabaseExecutor<'a> {
    match db {
        DatabaseExecutor::Connection(c) => DatabaseExecutor::Connection(c),
        DatabaseExecutor::Transaction(t) => DatabaseExecutor::Transaction(t),
        DatabaseExecutor::OwnedTransaction(t) => DatabaseExecutor::Transaction(t),
    }
}

/// Names of the migrations `up(steps)` would apply, in order. Read-only:
/// a refused `up` leaves no `seaql_migrations` table behind.
async fn pending_names(
    db: &DatabaseExecutor<'_>,
    steps: Option<u32>,
) -> Result<Vec<String>, DbErr> {
    let pending = Migrator::get_pending_migrations_read_only(db).await?;
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

/// The migration that runs `CREATE EXTENSION vector`.
const CREATES_PGVECTOR: &str = "m003_create_vector_store";

/// One migration with the guard rails around it, so that no migration has
/// to remember them: its `up` and `down` start with `SET LOCAL lock_timeout`
/// and put pgvector's schema on the `search_path` when the extension lives
/// in another schema ([`safety::prepare_up`]), and its `down` refuses to
/// destroy stored data unless that is allowed ([`safety::prepare_down`]).
/// Both run inside the migration's own transaction.
struct Guarded(Box<dyn MigrationTrait>);

impl MigrationName for Guarded {
    fn name(&self) -> &str {
        self.0.name()
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Guarded {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        safety::prepare_up(manager).await?;
        self.0.up(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        safety::prepare_down(manager, self.0.name()).await?;
        self.0.down(manager).await
    }

    fn use_transaction(&self) -> Option<bool> {
        self.0.use_transaction()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pgvector_migration_is_in_the_list() {
        // `up` checks pgvector before applying this migration: a rename
        // would silently skip the check.
        assert!(
            Migrator::migrations()
                .iter()
                .any(|m| m.name() == CREATES_PGVECTOR)
        );
    }
}
