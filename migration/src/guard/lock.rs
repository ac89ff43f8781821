//! Serializing migrators with a PostgreSQL advisory lock.
//!
//! Several application instances (or deploy jobs) starting at the same time
//! and all running `up` would otherwise race: both see migration 001
//! pending, both run it, one fails on a duplicate `seaql_migrations` row
//! (or `CREATE TABLE` of sea-orm's own bookkeeping table collides) and the
//! instance crashes. [`MigrationLock`] holds the session-level advisory lock
//! [`MIGRATION_LOCK_KEY`] for the whole run; a second migrator says whom it
//! is waiting for and blocks until the first has finished, then finds
//! nothing pending.
//!
//! From application code, use [`up_locked`] at start-up, or [`run_locked`]
//! around any sequence of migrator calls. The migration binary takes the
//! lock for every subcommand except `verify`.
//!
//! Advisory locks are per database: migrators of different databases on
//! one server do not wait for each other.

use std::time::Duration;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm_migration::sea_orm::{
    DatabaseConnection, DbBackend, SqlxPostgresConnector, Statement, TransactionTrait,
};

use crate::Migrator;

/// The advisory-lock key (`pg_advisory_lock(bigint)`) every migrator of
/// this schema takes: the ASCII bytes of `"migrate!"`.
pub const MIGRATION_LOCK_KEY: i64 = 0x6d69_6772_6174_6521;

/// Holds [`MIGRATION_LOCK_KEY`] until [`MigrationLock::release`] (or drop).
///
/// The lock is taken on one session: the given connection itself when its
/// pool has a single connection (as the migration binary's has, so that
/// every statement runs on the locked session), otherwise on a dedicated
/// one-connection pool opened with the same settings, which is closed on
/// release (closing the session also releases the lock if the process
/// dies or the guard is dropped).
#[must_use = "the lock is released when this is dropped"]
pub struct MigrationLock {
    session: DatabaseConnection,
    dedicated: bool,
    released: bool,
}

/// Who holds the migration lock (from `pg_locks` and `pg_stat_activity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Backend process id of the holding session.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Its client address, if connected over TCP.
    pub client_addr: Option<String>,
    /// Seconds since its session started.
    pub seconds: i64,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, ", {}", self.application_name)?;
        }
        if let Some(addr) = &self.client_addr {
            write!(f, " from {addr}")?;
        }
        write!(f, ", connected {}s ago", self.seconds)
    }
}

impl MigrationLock {
    /// Takes the migration lock, waiting for another migrator to finish if
    /// one holds it. While waiting it logs (`tracing`, level `warn`, target
    /// `migration::lock`) "waiting for another migrator (pid N, ...) to
    /// finish".
    ///
    /// The wait itself is not limited by `lock_timeout` (the holder's own
    /// statements are).
    ///
    /// # Errors
    /// [`DbErr`] when `db` is not PostgreSQL or a statement fails.
    pub async fn acquire(db: &DatabaseConnection) -> Result<Self, DbErr> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Err(DbErr::Migration(
                "the migration lock needs PostgreSQL".into(),
            ));
        }
        let pool = db.get_postgres_connection_pool();
        let (session, dedicated) = if pool.options().get_max_connections() == 1 {
            (db.clone(), false)
        } else {
            let single = PgPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with((*pool.connect_options()).clone())
                .await
                .map_err(|e| {
                    DbErr::Conn(sea_orm_migration::sea_orm::RuntimeErr::SqlxError(e.into()))
                })?;
            (SqlxPostgresConnector::from_sqlx_postgres_pool(single), true)
        };
        let mut lock = Self {
            session,
            dedicated,
            released: false,
        };
        if let Err(e) = lock.lock().await {
            lock.released = true;
            if lock.dedicated {
                lock.session.clone().close().await.ok();
            }
            return Err(e);
        }
        Ok(lock)
    }

    async fn lock(&mut self) -> Result<(), DbErr> {
        // Session-level lock taken inside a transaction: it outlives the
        // commit, while `SET LOCAL` keeps a role's or server's lock_timeout
        // from cutting the wait short without changing the session.
        let txn = self.session.begin().await?;
        txn.execute_unprepared("SET LOCAL lock_timeout = 0").await?;
        if !query_bool(
            &txn,
            &format!("SELECT pg_try_advisory_lock({MIGRATION_LOCK_KEY}) AS ok"),
        )
        .await?
        {
            let holder = match lock_holder(&txn).await? {
                Some(h) => h.to_string(),
                None => "which has just finished".to_owned(),
            };
            tracing::warn!("waiting for another migrator ({holder}) to finish");
            txn.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .await?;
            tracing::info!("migration lock acquired");
        }
        txn.commit().await
    }

    /// Releases the lock (and closes the dedicated session, if any).
    ///
    /// # Errors
    /// [`DbErr`] when the unlock statement fails, or when the lock was no
    /// longer held (the session was lost meanwhile, so the run was not
    /// protected towards its end).
    pub async fn release(mut self) -> Result<(), DbErr> {
        self.released = true;
        let held = query_bool(
            &self.session,
            &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY}) AS ok"),
        )
        .await;
        if self.dedicated {
            self.session.clone().close().await.ok();
        }
        if held? {
            Ok(())
        } else {
            Err(DbErr::Migration(
                "the migration lock was no longer held at the end of the run (its database \
                 session was lost); check with `status` and `verify`"
                    .into(),
            ))
        }
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        if !self.released {
            // Dropping the dedicated pool closes its session, which releases
            // the lock. A shared single-connection session keeps it until
            // that connection is closed.
            tracing::debug!(
                dedicated = self.dedicated,
                "migration lock dropped without release"
            );
        }
    }
}

/// The session currently holding the migration lock in this database, if
/// any (other than the caller's).
///
/// # Errors
/// Database errors.
pub async fn lock_holder<C: ConnectionTrait>(db: &C) -> Result<Option<LockHolder>, DbErr> {
    let classid = (MIGRATION_LOCK_KEY >> 32) & 0xffff_ffff;
    let objid = MIGRATION_LOCK_KEY & 0xffff_ffff;
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT l.pid, coalesce(a.application_name, '') AS app, host(a.client_addr) AS addr, \
                    coalesce(extract(epoch FROM now() - a.backend_start)::bigint, 0) AS secs \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1 \
             LIMIT 1",
            [classid.into(), objid.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(LockHolder {
            pid: r.try_get("", "pid")?,
            application_name: r.try_get("", "app")?,
            client_addr: r.try_get("", "addr")?,
            seconds: r.try_get("", "secs")?,
        })
    })
    .transpose()
}

/// Runs `f(db)` while holding the migration lock; releases it afterwards,
/// also when `f` fails.
///
/// ```no_run
/// # async fn f(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
/// use migration::{Migrator, MigratorTrait};
/// migration::lock::run_locked(db, async |db| {
///     Migrator::up(db, None).await?;
///     Migrator::status(db).await
/// })
/// .await?;
/// # Ok(()) }
/// ```
///
/// Do not nest it (or take [`MigrationLock`] again inside `f`) on a pool
/// with more than one connection: the inner call would wait for the outer.
///
/// # Errors
/// The error of `f`, else of taking or releasing the lock.
pub async fn run_locked<T, F>(db: &DatabaseConnection, f: F) -> Result<T, DbErr>
where
    F: AsyncFnOnce(&DatabaseConnection) -> Result<T, DbErr>,
{
    let lock = MigrationLock::acquire(db).await?;
    let outcome = f(db).await;
    let released = lock.release().await;
    let value = outcome?;
    released?;
    Ok(value)
}

/// `Migrator::up(db, steps)` under the migration lock: what an application
/// should call at start-up, so that instances starting together apply each
/// migration once.
///
/// # Errors
/// As [`run_locked`].
pub async fn up_locked(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    run_locked(db, async |db| Migrator::up(db, steps).await).await
}

async fn query_bool<C: ConnectionTrait>(db: &C, sql: &str) -> Result<bool, DbErr> {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("no row from `{sql}`")))?
        .try_get("", "ok")
}
