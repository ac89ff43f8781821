//! Test fixtures: a freshly migrated, isolated database per test.
//!
//! Enabled by the `testing` feature. [`TestDatabase::new`] hands each test its
//! own database, cloned from a template that is migrated once per schema
//! version (`CREATE DATABASE ... TEMPLATE`), so a test gets a migrated
//! database in milliseconds instead of running every migration. Databases are
//! dropped when the guard is dropped, also when the test panics, and
//! leftovers of crashed runs are swept when the next run starts.
//!
//! The server comes from `DATABASE_URL` (environment or `.env`); the role
//! needs `CREATEDB`. With `MOCKINTERVIEW_KEEP_TEST_DB=1` the databases are kept
//! for inspection and their names printed.
//!
//! ```no_run
//! use mockinterview_db::testing::TestDatabase;
//!
//! #[tokio::test]
//! async fn my_test() {
//!     let db = TestDatabase::new().await;
//!     // db.conn() is a DatabaseConnection to a database nobody else uses.
//!     mockinterview_db::readiness(db.conn()).await.unwrap();
//! }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::config::DbConfig;
use crate::error::{Error, Result};

/// Prefix of every per-test database name.
pub const TEST_DB_PREFIX: &str = "mi_test_";
/// Prefix of the template database names.
pub const TEMPLATE_PREFIX: &str = "mi_template_";
/// Leftover test databases older than this, with no connections, are swept.
const SWEEP_AFTER: Duration = Duration::from_secs(15 * 60);
/// Advisory-lock key serializing template builds across processes.
const TEMPLATE_LOCK_KEY: i64 = 0x6d69_5f74_656d_706c; // "mi_templ"

static SEQUENCE: AtomicU64 = AtomicU64::new(0);
static SWEPT: AtomicBool = AtomicBool::new(false);

/// An isolated database for one test, dropped with the guard.
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
    conn: Option<DatabaseConnection>,
}

impl TestDatabase {
    /// A freshly migrated database of its own (clone of the template).
    ///
    /// # Panics
    /// When the server cannot be reached or the database cannot be created;
    /// the message says how to start the local database. Use
    /// [`TestDatabase::try_new`] to get the error instead.
    pub async fn new() -> Self {
        Self::try_new()
            .await
            .unwrap_or_else(|e| panic!("{}", fixture_failure(&e)))
    }

    /// An empty database of its own, without any migration applied.
    ///
    /// # Panics
    /// As [`TestDatabase::new`].
    pub async fn empty() -> Self {
        Self::try_empty()
            .await
            .unwrap_or_else(|e| panic!("{}", fixture_failure(&e)))
    }

    /// Like [`TestDatabase::new`], returning errors.
    ///
    /// # Errors
    /// [`Error::Config`] without `DATABASE_URL`, [`Error::Unavailable`] when
    /// the server is down, [`Error::Database`] when creating or migrating the
    /// database fails.
    pub async fn try_new() -> Result<Self> {
        let admin_url = admin_url()?;
        let admin = admin_connection(&admin_url).await?;
        sweep_once(&admin).await?;
        let template = ensure_template(&admin, &admin_url).await?;
        Self::create(&admin, admin_url, Some(&template)).await
    }

    /// Like [`TestDatabase::empty`], returning errors.
    ///
    /// # Errors
    /// As [`TestDatabase::try_new`].
    pub async fn try_empty() -> Result<Self> {
        let admin_url = admin_url()?;
        let admin = admin_connection(&admin_url).await?;
        sweep_once(&admin).await?;
        Self::create(&admin, admin_url, None).await
    }

    async fn create(
        admin: &DatabaseConnection,
        admin_url: String,
        template: Option<&str>,
    ) -> Result<Self> {
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}_{}",
            unix_now(),
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        admin.execute_unprepared(&sql).await?;
        admin.clone().close().await.ok();
        let url = with_database(&admin_url, &name);
        // From here on the guard owns the database and drops it on failure.
        let mut db = Self {
            name,
            url,
            admin_url,
            conn: None,
        };
        let mut config = DbConfig::new(db.url.clone());
        config.max_connections = 5;
        config.application_name = "mockinterview-db-test".into();
        db.conn = Some(config.connect().await?);
        Ok(db)
    }

    /// The connection pool to this test's database.
    pub fn conn(&self) -> &DatabaseConnection {
        self.conn
            .as_ref()
            .expect("connection is present until drop")
    }

    /// The database's name (`mi_test_...`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `postgres://` URL for this database, e.g. to run a CLI against it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop the pool here, on the test's runtime; FORCE below terminates
        // any backend that is still open.
        drop(self.conn.take());
        if std::env::var_os("MOCKINTERVIEW_KEEP_TEST_DB").is_some() {
            eprintln!("keeping test database {} ({})", self.name, self.url);
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop can't await, and the test's runtime may be single-threaded:
        // run the DROP on a runtime of its own in a helper thread.
        let outcome = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Config(format!("cannot start a runtime: {e}")))?;
            rt.block_on(async move {
                let admin = admin_connection(&admin_url).await?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await?;
                admin.close().await.ok();
                Ok(())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: helper panicked",
                self.name
            ),
        }
    }
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish()
    }
}

/// The name of the migrated template for the current migrations.
pub fn template_name() -> String {
    format!("{TEMPLATE_PREFIX}{:016x}", migration::schema_fingerprint())
}

fn fixture_failure(e: &Error) -> String {
    format!(
        "test database fixture failed: {e}\n\
         The tests need PostgreSQL with pgvector at DATABASE_URL (see .env). \
         Start the local one with `scripts/db-up` (or run the whole suite with `scripts/test`)."
    )
}

fn admin_url() -> Result<String> {
    Ok(DbConfig::from_env()?.url)
}

async fn admin_connection(url: &str) -> Result<DatabaseConnection> {
    // One connection, so that session-level advisory locks stay on it.
    let mut config = DbConfig::new(url);
    config.max_connections = 1;
    config.application_name = "mockinterview-db-test-admin".into();
    config.connect().await
}

/// Builds the template database once per schema fingerprint, under an
/// advisory lock so parallel test processes do not race.
async fn ensure_template(admin: &DatabaseConnection, admin_url: &str) -> Result<String> {
    let template = template_name();
    if database_exists(admin, &template).await? {
        return Ok(template);
    }
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .await?;
    let built = build_template(admin, admin_url, &template).await;
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .await?;
    built.map(|()| template)
}

async fn build_template(admin: &DatabaseConnection, admin_url: &str, template: &str) -> Result<()> {
    if database_exists(admin, template).await? {
        return Ok(()); // another process built it while we waited
    }
    // Templates of older schema versions are useless now.
    for old in databases_like(admin, TEMPLATE_PREFIX).await? {
        tracing::info!(database = %old, "dropping outdated test template");
        drop_database(admin, &old).await?;
    }
    // Build under a temporary name and rename when complete, so a crash
    // mid-build never leaves a half-migrated template behind.
    let building = format!("{template}_building");
    drop_database(admin, &building).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{building}\""))
        .await?;
    let conn = DbConfig::new(with_database(admin_url, &building))
        .connect()
        .await?;
    let migrated = Migrator::up(&conn, None).await;
    conn.close().await.ok();
    migrated?;
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
        ))
        .await?;
    admin
        .execute_unprepared(&format!("ALTER DATABASE \"{template}\" IS_TEMPLATE true"))
        .await?;
    Ok(())
}

/// Drops leftover test databases of crashed runs (once per process).
async fn sweep_once(admin: &DatabaseConnection) -> Result<()> {
    if SWEPT.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let cutoff = unix_now().saturating_sub(SWEEP_AFTER.as_secs());
    let rows = admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT d.datname FROM pg_database d \
             WHERE d.datname LIKE $1 \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            [format!("{TEST_DB_PREFIX}%").into()],
        ))
        .await?;
    for row in rows {
        let name: String = row.try_get("", "datname")?;
        let created = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|ts| ts.parse::<u64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            tracing::info!(database = %name, "sweeping leftover test database");
            drop_database(admin, &name).await?;
        }
    }
    Ok(())
}

async fn database_exists(admin: &DatabaseConnection, name: &str) -> Result<bool> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found",
            [name.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get("", "found")?,
        None => false,
    })
}

async fn databases_like(admin: &DatabaseConnection, prefix: &str) -> Result<Vec<String>> {
    let rows = admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            [format!("{prefix}%").into()],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get("", "datname").map_err(Error::from))
        .collect()
}

async fn drop_database(admin: &DatabaseConnection, name: &str) -> Result<()> {
    // A template database can't be dropped until it is unmarked.
    if database_exists(admin, name).await? {
        admin
            .execute_unprepared(&format!("ALTER DATABASE \"{name}\" IS_TEMPLATE false"))
            .await?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

/// `url` with its database name replaced by `database`.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_name_and_keeps_query() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/app?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5432", "t1"),
            "postgres://u:p@h:5432/t1"
        );
        assert_eq!(with_database("postgres://h/app", "t2"), "postgres://h/t2");
    }
}
