//! One migrator at a time: every migration run is one transaction that
//! first takes a PostgreSQL transaction-level advisory lock.
//!
//! Several application instances (or deploy jobs) starting at the same time
//! and all running `up` would otherwise race: both see migration 001
//! pending, both run it, one fails on a duplicate `seaql_migrations` row
//! (or `CREATE TABLE` of sea-orm's own bookkeeping table collides) and the
//! instance crashes.
//!
//! [`run_locked`] opens a transaction, takes
//! `pg_advisory_xact_lock(`[`MIGRATION_LOCK_KEY`]`)` in it, and only then
//! lets the caller look at what is pending and migrate, inside the same
//! transaction (sea-orm-migration turns each migration's own transaction
//! into a savepoint). A second migrator says whom it is waiting for, blocks
//! until the first has committed, then finds nothing pending. The lock ends
//! with the transaction: it cannot outlive a crashed migrator, and it
//! cannot be lost halfway (the run would be rolled back with it).
//!
//! **Why a transaction rather than a session lock**: behind a
//! transaction-mode connection pooler (PgBouncer, the default of managed
//! services) a client's consecutive transactions run on whatever server
//! session is free, so a session-level advisory lock is taken on one server
//! session and released (or not) on another, and settings made with `SET`
//! vanish. A transaction keeps its server connection until it ends, so the
//! lock, the `search_path` and the `lock_timeout` ([`RunOptions`]) hold for
//! the whole run, through a pooler as on a direct connection. The price of
//! one transaction: the locks the run's statements take are held until it
//! commits. Migrations that must run outside a transaction
//! (`use_transaction() == Some(false)`, e.g. `CREATE INDEX CONCURRENTLY`)
//! cannot run this way; there are none.
//!
//! `up` ([`up_locked`]) is the exception to one transaction per run: it
//! runs one locked transaction per migration, so that the locks each
//! migration takes end with it (see [`up_locked`]).
//!
//! From application code, use [`up_locked`] at start-up (it first checks,
//! read-only, whether anything is pending: an application role without DDL
//! privileges can call it when the schema is current), or [`run_locked`]
//! around any sequence of migrator calls. The migration binary runs `up`
//! through [`up_locked_with`] and every other command that changes the
//! database through [`run_locked_with`].
//!
//! Advisory locks are per database: migrators of different databases on
//! one server do not wait for each other.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{
    AccessMode, DatabaseConnection, DatabaseTransaction, DbBackend, IsolationLevel, Statement,
    TransactionTrait,
};

use crate::Migrator;
use crate::guard::{safety, search_path};
use crate::schema::status::MigrationsStatus;

/// The advisory-lock key (`pg_advisory_xact_lock(bigint)`) every migrator
/// of this schema takes: the ASCII bytes of `"migrate!"`.
pub const MIGRATION_LOCK_KEY: i64 = 0x6d69_6772_6174_6521;

/// How a run sets up its transaction: the schema it works in and other
/// settings, applied with `SET LOCAL` semantics (they end with the
/// transaction, and work through a transaction-mode pooler, where
/// connection-level settings are refused or lost).
///
/// The default changes nothing: the session's `search_path` (the role's or
/// database's default) is used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// `search_path` for the run, as the `-s` flag takes it: `app`, or
    /// `app,public`. New objects go to the first schema that exists.
    /// pgvector's schema is appended when the extension lives elsewhere.
    pub schema: Option<String>,
    /// Other server settings `(name, value)` for the run, e.g. those of a
    /// URL's `options` parameter ([`pgconn::DbUrl::startup_settings`]).
    /// A `search_path` here is overridden by [`RunOptions::schema`].
    pub settings: Vec<(String, String)>,
}

impl RunOptions {
    /// Options that work in `schema` (see [`RunOptions::schema`]).
    pub fn in_schema(schema: impl Into<String>) -> Self {
        Self {
            schema: Some(schema.into()),
            settings: Vec::new(),
        }
    }

    /// Begins a read-write transaction with these settings.
    ///
    /// # Errors
    /// Database errors; [`DbErr::Migration`] when no schema of
    /// [`RunOptions::schema`] exists.
    pub async fn begin<C>(&self, db: &C) -> Result<DatabaseTransaction, DbErr>
    where
        C: TransactionTrait<Transaction = DatabaseTransaction>,
    {
        let txn = db.begin().await?;
        self.apply(&txn).await?;
        Ok(txn)
    }

    /// Begins a read-only transaction (`REPEATABLE READ`, one consistent
    /// snapshot) with these settings: what status checks and `verify` use.
    /// It works on a hot standby and proves that nothing is written.
    ///
    /// # Errors
    /// As [`RunOptions::begin`].
    pub async fn begin_read_only<C>(&self, db: &C) -> Result<DatabaseTransaction, DbErr>
    where
        C: TransactionTrait<Transaction = DatabaseTransaction>,
    {
        let txn = db
            .begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?;
        self.apply(&txn).await?;
        Ok(txn)
    }

    async fn apply(&self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        for (name, value) in &self.settings {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config($1, $2, true)",
                [name.clone().into(), value.clone().into()],
            ))
            .await?;
        }
        if let Some(schema) = &self.schema {
            search_path::set_local_schema(txn, schema).await?;
        }
        search_path::include_extension_schemas(txn).await
    }
}

/// Who holds the migration lock (from `pg_locks` and `pg_stat_activity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Backend process id of the holding session (behind a pooler: the
    /// server connection the holder's transaction runs on).
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Its client address, if connected over TCP (behind a pooler: the
    /// pooler's).
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

/// Takes the migration lock in `txn`, waiting for another migrator to
/// finish if one holds it. While waiting it logs (`tracing`, level `warn`,
/// target `migration::lock`) "waiting for another migrator (pid N, ...) to
/// finish". Fails at once on a hot standby. Then sets the configured
/// migration `lock_timeout` ([`safety::lock_timeout`]) for the rest of the
/// transaction.
///
/// The wait itself is not limited by `lock_timeout` or `statement_timeout`
/// (the holder's own statements are).
///
/// # Errors
/// [`DbErr::Migration`] on a hot standby; database errors.
pub async fn lock(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    // A role's or server's lock_timeout must not cut the wait short.
    txn.execute_unprepared("SET LOCAL lock_timeout = 0").await?;
    let row = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS standby, \
                    coalesce(host(inet_server_addr()) || ':' || inet_server_port(), 'local socket') \
                      AS server, current_database()::text AS db",
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("no row from the lock query".into()))?;
    if row.try_get::<bool>("", "standby")? {
        let server: String = row.try_get("", "server")?;
        let db: String = row.try_get("", "db")?;
        return Err(DbErr::Migration(format!(
            "PostgreSQL at {server} (database {db}) is a read-only hot standby (in recovery): \
             migrations and writes need the primary. Point MIGRATION_DATABASE_URL (or \
             DATABASE_URL / -u) at the primary (with a managed service or a pooler: its \
             read-write endpoint)."
        )));
    }
    if !query_bool(
        txn,
        &format!("SELECT pg_try_advisory_xact_lock({MIGRATION_LOCK_KEY}) AS ok"),
    )
    .await?
    {
        let holder = match lock_holder(txn).await? {
            Some(h) => h.to_string(),
            None => "which has just finished".to_owned(),
        };
        tracing::warn!("waiting for another migrator ({holder}) to finish");
        // Nor a statement_timeout (a role default on managed services):
        // waiting is what this statement is for. Restored afterwards.
        let statement_timeout =
            query_string(txn, "SELECT current_setting('statement_timeout') AS s").await?;
        txn.execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
        ))
        .await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('statement_timeout', $1, true)",
            [statement_timeout.into()],
        ))
        .await?;
        tracing::info!("migration lock acquired");
    }
    safety::set_local_lock_timeout(txn).await
}

/// Runs `f` in one transaction that holds the migration lock, then commits
/// (or rolls back when `f` fails). `f` gets the transaction: run every
/// migrator call on it.
///
/// ```no_run
/// # async fn f(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
/// use migration::{Migrator, MigratorTrait};
/// migration::lock::run_locked(db, async |txn| {
///     Migrator::up(txn, None).await?;
///     Migrator::status(txn).await
/// })
/// .await?;
/// # Ok(()) }
/// ```
///
/// Do not nest it: the inner call would wait for the outer.
///
/// # Errors
/// The error of `f` (explained when the role lacks a privilege), else of
/// taking the lock or committing.
pub async fn run_locked<T, F>(db: &DatabaseConnection, f: F) -> Result<T, DbErr>
where
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<T, DbErr>,
{
    run_locked_with(db, &RunOptions::default(), f).await
}

/// [`run_locked`] with [`RunOptions`] (schema, settings).
///
/// # Errors
/// As [`run_locked`].
pub async fn run_locked_with<T, F>(
    db: &DatabaseConnection,
    options: &RunOptions,
    f: F,
) -> Result<T, DbErr>
where
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<T, DbErr>,
{
    let txn = options.begin(db).await?;
    lock(&txn).await?;
    let role = query_string(&txn, "SELECT current_user::text AS s").await?;
    match f(&txn).await {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(err) => {
            txn.rollback().await.ok();
            Err(explain_privileges(err, &role))
        }
    }
}

/// `Migrator::up(steps)` under the migration lock: what an application
/// should call at start-up, so that instances starting together apply each
/// migration once. It first checks, in a read-only transaction, whether
/// anything is pending: when nothing is, it returns without writing or
/// locking anything (so it also works as an application role without DDL
/// privileges, or on a standby).
///
/// Otherwise it applies the pending migrations **one transaction each**,
/// every one under the lock ([`run_locked`], which finds what is pending
/// again once the lock is held): the locks a migration takes end when it
/// commits, not when the last pending migration does. A migration that
/// fails is rolled back whole; those before it stay applied, and the error
/// names them. One that waited longer than `lock_timeout` (behind a long
/// transaction, or an anti-wraparound vacuum, which is never cancelled) is
/// tried again after a pause, up to [`safety::lock_retries`] times: being
/// rolled back whole, it is safe to retry.
///
/// # Errors
/// As [`run_locked`] and the migration.
pub async fn up_locked(db: &DatabaseConnection, steps: Option<u32>) -> Result<(), DbErr> {
    up_locked_with(db, &RunOptions::default(), steps).await
}

/// [`up_locked`] with [`RunOptions`] (schema, settings).
///
/// # Errors
/// As [`up_locked`].
pub async fn up_locked_with(
    db: &DatabaseConnection,
    options: &RunOptions,
    steps: Option<u32>,
) -> Result<(), DbErr> {
    let status = {
        let txn = options.begin_read_only(db).await?;
        let status = MigrationsStatus::read(&txn).await;
        txn.commit().await?;
        status?
    };
    if steps == Some(0) || status.pending.is_empty() {
        tracing::info!("No pending migrations");
        return Ok(());
    }
    // Refuse, before applying anything, what would stop the run midway.
    run_locked_with(db, options, async |txn| {
        Migrator::check_up(txn, steps).await
    })
    .await?;
    let mut applied: Vec<String> = Vec::new();
    while steps.is_none_or(|s| applied.len() < s as usize) {
        let mut attempt = 0;
        let outcome = loop {
            let result = run_locked_with(db, options, async |txn| {
                let pending = Migrator::get_pending_migrations(txn).await?;
                let Some(next) = pending.first() else {
                    return Ok(None);
                };
                let name = next.name().to_owned();
                Migrator::up(txn, Some(1)).await?;
                Ok(Some(name))
            })
            .await;
            match result {
                Err(err) if safety::is_lock_timeout(&err) && attempt < safety::lock_retries() => {
                    attempt += 1;
                    let wait = std::time::Duration::from_millis(500 << Ord::min(attempt - 1, 6));
                    tracing::warn!(
                        attempt,
                        ?wait,
                        "a migration waited longer than lock_timeout and was rolled back; \
                         trying again"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => break other.map_err(|e| with_progress_note(e, &applied, attempt)),
            }
        };
        match outcome? {
            Some(name) => applied.push(name),
            None => break,
        }
    }
    Ok(())
}

/// Appends to `err` which migrations of this run were applied (committed)
/// before the failure, and how often a lock timeout was retried.
fn with_progress_note(err: DbErr, applied: &[String], retries: u32) -> DbErr {
    let mut note = String::new();
    if retries > 0 {
        note.push_str(&format!(
            " (Tried {} times: it was rolled back after each lock timeout.)",
            retries + 1
        ));
    }
    if !applied.is_empty() {
        note.push_str(&format!(
            " (Each migration commits on its own: {} of this run {} applied; the failed one was \
             rolled back whole. Run `up` again once the cause is fixed.)",
            applied.join(", "),
            if applied.len() == 1 { "is" } else { "are" }
        ));
    }
    if note.is_empty() {
        return err;
    }
    match err {
        DbErr::Migration(m) => DbErr::Migration(format!("{m}{note}")),
        other => DbErr::Migration(format!("{other}{note}")),
    }
}

/// Adds who ran the migrations and what to do to a permission error.
fn explain_privileges(err: DbErr, role: &str) -> DbErr {
    let text = match &err {
        DbErr::Migration(m) => m.clone(),
        other => other.to_string(),
    };
    if pgconn::sqlstate(&err).as_deref() != Some("42501")
        && !text.contains("permission denied for")
        && !text.contains("must be owner of")
    {
        return err;
    }
    DbErr::Migration(format!(
        "{text}. The migrations ran as role \"{role}\", which may not change the schema: run \
         them as the role that owns it (the migration binary with MIGRATION_DATABASE_URL set to \
         that role's URL; `migration roles` prints the SQL of the owner / application role \
         split). An application role checks the schema with `migration::ensure_schema_current` \
         instead."
    ))
}

async fn query_bool<C: ConnectionTrait>(db: &C, sql: &str) -> Result<bool, DbErr> {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("no row from `{sql}`")))?
        .try_get("", "ok")
}

async fn query_string<C: ConnectionTrait>(db: &C, sql: &str) -> Result<String, DbErr> {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("no row from `{sql}`")))?
        .try_get("", "s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_note_names_what_stays_applied_and_the_retries() {
        let err = with_progress_note(
            DbErr::Migration("m003 failed".into()),
            &["m001_a".into(), "m002_b".into()],
            2,
        )
        .to_string();
        assert!(err.contains("m003 failed"), "{err}");
        assert!(err.contains("Tried 3 times"), "{err}");
        assert!(
            err.contains("m001_a, m002_b of this run are applied"),
            "{err}"
        );
        let same = with_progress_note(DbErr::Migration("x".into()), &[], 0);
        assert_eq!(same.to_string(), DbErr::Migration("x".into()).to_string());
    }

    #[test]
    fn permission_errors_name_the_role_and_the_fix() {
        let err = explain_privileges(
            DbErr::Custom("permission denied for schema public".into()),
            "app_role",
        )
        .to_string();
        assert!(err.contains("role \"app_role\""), "{err}");
        assert!(err.contains("MIGRATION_DATABASE_URL"), "{err}");
        let other = explain_privileges(DbErr::Custom("boom".into()), "r").to_string();
        assert!(!other.contains("MIGRATION_DATABASE_URL"), "{other}");
    }
}
