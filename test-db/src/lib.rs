//! Test fixtures: a freshly migrated, isolated database per test.
//!
//! Applications get it as `mockinterview_db::testing` (feature `testing`);
//! the project's own tests use this crate directly. [`TestDatabase::new`] hands each test its
//! own database, cloned from a template that is migrated once per schema
//! version (`CREATE DATABASE ... TEMPLATE`), so a test gets a migrated
//! database in milliseconds instead of running every migration. Databases are
//! dropped when the guard is dropped, also when the test panics, and
//! leftovers of crashed runs are swept when the next run starts.
//!
//! Administrative work (building the template, creating, emptying and
//! dropping databases) runs on one process-wide background runtime with one
//! admin connection, so each test only opens its own pool. Once a process
//! has handed out a database, it clones the next one in the background while
//! the test runs, so later tests usually find one ready.
//!
//! **Reuse.** When a test ends, its database is given to the next test of
//! the process instead of being dropped, if nothing but rows and sequence
//! values changed in it: its connections are terminated, a fingerprint of
//! everything else (schemas, relations and their options and privileges,
//! columns, functions, constraints, triggers, extensions, role and database
//! settings, recorded migrations, planner statistics, large objects;
//! `src/sql/fingerprint.sql`) is compared with a fresh clone's, and every
//! table but `seaql_migrations` is truncated with its identities and every
//! sequence restarted (`src/sql/empty.sql`). Any other change (a test that
//! migrated down, created a schema, set a role setting, analyzed a table)
//! drops the database as before. A test that needs a database nobody used
//! before gets one with [`TestDatabase::fresh`].
//!
//! The server comes from `DATABASE_URL` (environment or `.env`); the role
//! needs `CREATEDB`. With `MOCKINTERVIEW_KEEP_TEST_DB=1` the databases are kept
//! for inspection and their names printed.
//!
//! ```no_run
//! use test_db::TestDatabase;
//! use sea_orm::ConnectionTrait;
//!
//! #[tokio::test]
//! async fn my_test() {
//!     let db = TestDatabase::new().await;
//!     // db.conn() is a DatabaseConnection to a database nobody else uses.
//!     db.conn().execute_unprepared("SELECT 1").await.unwrap();
//! }
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use migration::{Migrator, MigratorTrait};
use pgconn::DbUrl;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};

/// Why the fixture could not hand out a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `DATABASE_URL` is missing or not a PostgreSQL URL.
    #[error(transparent)]
    Config(#[from] pgconn::UrlError),
    /// The server did not accept a connection.
    #[error("cannot connect to the test server at {target}")]
    Unavailable {
        /// `host:port/database`.
        target: String,
        /// The connection error.
        #[source]
        source: DbErr,
    },
    /// A statement of the fixture failed (creating, migrating or dropping a
    /// database).
    #[error("{action} failed")]
    Database {
        /// What the fixture was doing.
        action: String,
        /// The database error.
        #[source]
        source: DbErr,
    },
    /// The fixture's background task died.
    #[error("the test fixture's admin task failed: {0}")]
    Task(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a database error of `action` to [`Error::Database`].
fn failed(action: impl Into<String>) -> impl FnOnce(DbErr) -> Error {
    move |source| Error::Database {
        action: action.into(),
        source,
    }
}

/// Prefix of every per-test database name.
pub const TEST_DB_PREFIX: &str = "mi_test_";
/// Prefix of the template database names.
pub const TEMPLATE_PREFIX: &str = "mi_template_";
/// Leftover test databases older than this, with no connections, are swept.
const SWEEP_AFTER: Duration = Duration::from_secs(15 * 60);
/// Advisory-lock key serializing template builds across processes.
const TEMPLATE_LOCK_KEY: i64 = 0x6d69_5f74_656d_706c; // "mi_templ"

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// An isolated database for one test, emptied for the next test of the
/// process or dropped with the guard (see the crate docs, "Reuse").
pub struct TestDatabase {
    name: String,
    url: DbUrl,
    admin: Arc<Admin>,
    conn: Option<DatabaseConnection>,
    /// Whether the database may be emptied and reused (migrated clones).
    reusable: bool,
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
        Self::migrated(true).await
    }

    /// A freshly migrated database that no other test has used (a new
    /// clone of the template), for tests that look at what reuse resets
    /// (statistics, `pg_stat_*` counters, relation file sizes).
    ///
    /// # Panics
    /// As [`TestDatabase::new`].
    pub async fn fresh() -> Self {
        Self::migrated(false)
            .await
            .unwrap_or_else(|e| panic!("{}", fixture_failure(&e)))
    }

    /// A migrated clone: an emptied one of an earlier test when `reuse`
    /// allows and one is ready, else a new one.
    async fn migrated(reuse: bool) -> Result<Self> {
        let admin = Admin::get().await?;
        let name = on_admin_runtime({
            let admin = admin.clone();
            async move { admin.take_clone(reuse).await }
        })
        .await?;
        Self::open(admin, name, true).await
    }

    /// Like [`TestDatabase::empty`], returning errors.
    ///
    /// # Errors
    /// As [`TestDatabase::try_new`].
    pub async fn try_empty() -> Result<Self> {
        let admin = Admin::get().await?;
        let name = on_admin_runtime({
            let admin = admin.clone();
            async move { admin.create_database(None).await }
        })
        .await?;
        Self::open(admin, name, false).await
    }

    /// Takes ownership of the created database `name` and connects to it.
    async fn open(admin: Arc<Admin>, name: String, reusable: bool) -> Result<Self> {
        let url = admin.url.with_database(&name);
        // From here on the guard owns the database and drops it on failure.
        let mut db = Self {
            name,
            url,
            admin,
            conn: None,
            reusable,
        };
        db.conn = Some(connect(&db.url, 5, "mockinterview-db-test").await?);
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
        self.url.as_str()
    }

    /// The same URL, parsed.
    pub fn db_url(&self) -> &DbUrl {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop the pool here, on the test's runtime; FORCE below terminates
        // any backend that is still open.
        drop(self.conn.take());
        if std::env::var_os("MOCKINTERVIEW_KEEP_TEST_DB").is_some() {
            eprintln!(
                "keeping test database {} ({})",
                self.name,
                self.url.as_str()
            );
            return;
        }
        // Drop can't await: empty or drop the database on the admin runtime
        // and wait for it here (this thread only blocks; the work happens on
        // the admin's).
        let (done, wait) = std::sync::mpsc::channel();
        let (admin, name, reusable) = (self.admin.clone(), self.name.clone(), self.reusable);
        admin_runtime().spawn(async move {
            let _ = done.send(admin.release(name, reusable).await);
        });
        match wait.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: admin task died",
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
    let mut causes = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    format!(
        "test database fixture failed: {e}{causes}\n\
         The tests need PostgreSQL with pgvector at DATABASE_URL (see .env). \
         Start the local one with `scripts/db-up` (or run the whole suite with `scripts/test`)."
    )
}

/// How many migrated clones a process keeps ready ahead of its tests.
const PREFETCH: usize = 1;

/// Process-wide administration: one connection to the server's own
/// database (from `DATABASE_URL`), the template, and prefetched clones. It
/// lives on [`admin_runtime`], because a pool must stay on the runtime that
/// opened it and every `#[tokio::test]` has a runtime of its own.
struct Admin {
    url: DbUrl,
    conn: DatabaseConnection,
    template: String,
    ready: Mutex<Vec<String>>,
    /// Emptied databases of finished tests, to hand out again.
    reused: Mutex<Vec<String>>,
    /// The fingerprint of a fresh clone (`src/sql/fingerprint.sql`).
    pristine: String,
    handed_out: AtomicUsize,
}

static ADMIN: tokio::sync::OnceCell<Arc<Admin>> = tokio::sync::OnceCell::const_new();

impl Admin {
    /// Connects, sweeps leftovers and builds the template, once per process.
    async fn get() -> Result<Arc<Admin>> {
        ADMIN
            .get_or_try_init(|| on_admin_runtime(Admin::start()))
            .await
            .cloned()
    }

    async fn start() -> Result<Arc<Admin>> {
        let url = DbUrl::from_env()?;
        let conn = connect(&url, 1, "mockinterview-db-test-admin").await?;
        sweep(&conn, &url).await?;
        let template = ensure_template(&conn, &url).await?;
        let mut admin = Admin {
            url,
            conn,
            template,
            ready: Mutex::new(Vec::new()),
            reused: Mutex::new(Vec::new()),
            pristine: String::new(),
            handed_out: AtomicUsize::new(0),
        };
        // The baseline of reuse: a fresh clone's fingerprint (the template
        // itself cannot be connected to while it is being cloned). The
        // clone is then the first one handed out.
        let first = admin.create_database(Some(&admin.template)).await?;
        let probe = connect(
            &admin.url.with_database(&first),
            1,
            "mockinterview-db-test-admin",
        )
        .await?;
        let fingerprint = fingerprint(&probe).await;
        probe.close().await.ok();
        admin.pristine = fingerprint?;
        admin.ready.lock().expect("not poisoned").push(first);
        Ok(Arc::new(admin))
    }

    /// Gives a finished test's database to the next test when only rows
    /// and sequence values changed in it (emptied first), else drops it.
    async fn release(&self, name: String, reusable: bool) -> Result<()> {
        if reusable && self.empty_for_reuse(&name).await.unwrap_or(false) {
            self.reused.lock().expect("not poisoned").push(name);
            return Ok(());
        }
        drop_database(&self.conn, &name).await
    }

    /// Terminates every connection to `name`, compares its fingerprint with
    /// a fresh clone's and, when they match, empties it. `Ok(false)`: it
    /// changed otherwise and must be dropped.
    async fn empty_for_reuse(&self, name: &str) -> Result<bool> {
        self.conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                [name.into()],
            ))
            .await
            .map_err(failed(format!("ending the connections to {name}")))?;
        let conn = connect(
            &self.url.with_database(name),
            1,
            "mockinterview-db-test-admin",
        )
        .await?;
        let outcome = async {
            if fingerprint(&conn).await? != self.pristine {
                return Ok(false);
            }
            conn.execute_unprepared(include_str!("sql/empty.sql"))
                .await
                .map_err(failed(format!("emptying {name}")))?;
            Ok(true)
        }
        .await;
        conn.close().await.ok();
        outcome
    }

    /// A migrated clone: a prefetched one if ready, else a new one. From the
    /// second request of a process on, the next clone is prepared in the
    /// background (a process that runs one test prepares none).
    async fn take_clone(self: Arc<Self>, reuse: bool) -> Result<String> {
        if reuse && let Some(name) = self.reused.lock().expect("not poisoned").pop() {
            return Ok(name);
        }
        let prefetched = self.ready.lock().expect("not poisoned").pop();
        let name = match prefetched {
            Some(name) => name,
            None => self.create_database(Some(&self.template)).await?,
        };
        if self.handed_out.fetch_add(1, Ordering::SeqCst) >= 1 {
            let admin = self.clone();
            tokio::spawn(async move {
                if admin.ready.lock().expect("not poisoned").len() >= PREFETCH {
                    return;
                }
                match admin.create_database(Some(&admin.template)).await {
                    Ok(name) => admin.ready.lock().expect("not poisoned").push(name),
                    Err(e) => tracing::warn!("could not prefetch a test database: {e}"),
                }
            });
        }
        Ok(name)
    }

    async fn create_database(&self, template: Option<&str>) -> Result<String> {
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
        match self.conn.execute_unprepared(&sql).await {
            Ok(_) => {}
            // A test process of another checkout (other migrations, another
            // template) dropped ours as outdated: build it again, once.
            Err(e) if template.is_some() && pgconn::sqlstate(&e).as_deref() == Some("3D000") => {
                tracing::warn!("test template vanished ({e}); building it again");
                {
                    // The advisory lock in ensure_template is per session,
                    // and this process has one admin session: serialize here.
                    static REBUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
                    let _one_at_a_time = REBUILD.lock().await;
                    ensure_template(&self.conn, &self.url).await?;
                }
                self.conn
                    .execute_unprepared(&sql)
                    .await
                    .map_err(failed(format!("creating test database {name}")))?;
            }
            Err(e) => return Err(failed(format!("creating test database {name}"))(e)),
        }
        Ok(name)
    }
}

/// The fingerprint of the database `conn` is connected to
/// (`src/sql/fingerprint.sql`).
async fn fingerprint(conn: &DatabaseConnection) -> Result<String> {
    conn.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        include_str!("sql/fingerprint.sql"),
    ))
    .await
    .and_then(|row| {
        row.ok_or_else(|| DbErr::Custom("no fingerprint row".into()))?
            .try_get("", "fingerprint")
    })
    .map_err(failed("reading a test database's fingerprint"))
}

/// A pool of up to `max_connections` to `url`. The admin pool has one
/// connection, so that session-level advisory locks stay on it.
async fn connect(
    url: &DbUrl,
    max_connections: u32,
    application: &str,
) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.as_str());
    options
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .set_application_name(application)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .map_err(|source| Error::Unavailable {
            target: url.target(),
            source,
        })
}

/// The process-wide runtime that owns the admin connection.
fn admin_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mockinterview-test-admin")
            .enable_all()
            .build()
            .expect("start the test fixture's admin runtime")
    })
}

/// Runs `fut` on the admin runtime and waits for it from any runtime.
async fn on_admin_runtime<T, F>(fut: F) -> Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T>> + Send + 'static,
{
    admin_runtime()
        .spawn(fut)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// Builds the template database once per schema fingerprint, under an
/// advisory lock so parallel test processes do not race.
async fn ensure_template(admin: &DatabaseConnection, admin_url: &DbUrl) -> Result<String> {
    let template = template_name();
    if database_exists(admin, &template).await? {
        return Ok(template);
    }
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .await
        .map_err(failed("waiting for the template lock"))?;
    let built = build_template(admin, admin_url, &template).await;
    admin
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .await
        .map_err(failed("releasing the template lock"))?;
    built.map(|()| template)
}

async fn build_template(
    admin: &DatabaseConnection,
    admin_url: &DbUrl,
    template: &str,
) -> Result<()> {
    if database_exists(admin, template).await? {
        return Ok(()); // another process built it while we waited
    }
    // Templates of older schema versions are useless now, but a template
    // built recently belongs to another checkout (other migrations) testing
    // against the same server right now: keep those for a day.
    for old in databases_like(admin, TEMPLATE_PREFIX).await? {
        if old == template || old.ends_with("_building") && old != format!("{template}_building") {
            continue;
        }
        if template_built_at(admin, &old)
            .await?
            .is_some_and(|t| t + TEMPLATE_KEPT.as_secs() > unix_now())
        {
            continue;
        }
        tracing::info!(database = %old, "dropping outdated test template");
        drop_database(admin, &old).await?;
    }
    // Build under a temporary name and rename when complete, so a crash
    // mid-build never leaves a half-migrated template behind.
    let building = format!("{template}_building");
    drop_database(admin, &building).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{building}\""))
        .await
        .map_err(failed(format!("creating {building}")))?;
    let conn = connect(
        &admin_url.with_database(&building),
        1,
        "mockinterview-db-test-admin",
    )
    .await?;
    let migrated = Migrator::up(&conn, None).await;
    conn.close().await.ok();
    migrated.map_err(failed(format!("migrating the test template {building}")))?;
    for sql in [
        format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""),
        format!("ALTER DATABASE \"{template}\" IS_TEMPLATE true"),
        format!(
            "COMMENT ON DATABASE \"{template}\" IS '{TEMPLATE_COMMENT}{}'",
            unix_now()
        ),
    ] {
        admin
            .execute_unprepared(&sql)
            .await
            .map_err(failed(format!("publishing the test template {template}")))?;
    }
    Ok(())
}

/// Drops leftover test databases of earlier runs: those nobody is connected
/// to that are older than [`SWEEP_AFTER`] or, on a server on this machine,
/// whose creating process is gone (a crashed run, or a prefetched clone a
/// finished run did not use).
async fn sweep(admin: &DatabaseConnection, url: &DbUrl) -> Result<()> {
    let cutoff = unix_now().saturating_sub(SWEEP_AFTER.as_secs());
    let local = url.is_local();
    let rows = admin
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT d.datname FROM pg_database d \
             WHERE d.datname LIKE $1 \
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
            [format!("{TEST_DB_PREFIX}%").into()],
        ))
        .await
        .map_err(failed("listing leftover test databases"))?;
    for row in rows {
        let name: String = row
            .try_get("", "datname")
            .map_err(failed("listing leftover test databases"))?;
        let mut parts = name.strip_prefix(TEST_DB_PREFIX).unwrap_or("").split('_');
        let created = parts.next().and_then(|t| t.parse::<u64>().ok());
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let owner_gone = local
            && pid.is_some_and(|p| {
                p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()
            });
        if created.is_some_and(|t| t < cutoff) || owner_gone {
            tracing::info!(database = %name, "sweeping leftover test database");
            // Another test process may be sweeping the same leftover right
            // now (its DROP marks the database invalid, and our ALTER then
            // fails): a leftover is not worth failing this run for.
            if let Err(e) = drop_database(admin, &name).await {
                tracing::warn!(database = %name, error = %e, "could not sweep leftover test database");
            }
        }
    }
    Ok(())
}

/// How long a template of another schema version is kept (it may belong
/// to another checkout testing against the same server).
const TEMPLATE_KEPT: Duration = Duration::from_secs(24 * 60 * 60);
/// Start of a template's comment; the build time (Unix seconds) follows.
const TEMPLATE_COMMENT: &str = "mockinterview test template, built at ";

/// When template `name` was built, from its comment (`None` for templates
/// of older fixtures, which had none).
async fn template_built_at(admin: &DatabaseConnection, name: &str) -> Result<Option<u64>> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database \
             WHERE datname = $1",
            [name.into()],
        ))
        .await
        .map_err(failed(format!("looking up database {name}")))?;
    let comment: Option<String> = match row {
        Some(r) => r
            .try_get("", "comment")
            .map_err(failed(format!("looking up database {name}")))?,
        None => None,
    };
    Ok(comment
        .as_deref()
        .and_then(|c| c.strip_prefix(TEMPLATE_COMMENT))
        .and_then(|t| t.trim().parse().ok()))
}

async fn database_exists(admin: &DatabaseConnection, name: &str) -> Result<bool> {
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found",
            [name.into()],
        ))
        .await
        .map_err(failed(format!("looking up database {name}")))?;
    Ok(match row {
        Some(r) => r
            .try_get("", "found")
            .map_err(failed(format!("looking up database {name}")))?,
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
        .await
        .map_err(failed(format!("listing databases {prefix}*")))?;
    rows.iter()
        .map(|r| {
            r.try_get("", "datname")
                .map_err(failed(format!("listing databases {prefix}*")))
        })
        .collect()
}

async fn drop_database(admin: &DatabaseConnection, name: &str) -> Result<()> {
    // A template database can't be dropped until it is unmarked.
    if database_exists(admin, name).await? {
        admin
            .execute_unprepared(&format!("ALTER DATABASE \"{name}\" IS_TEMPLATE false"))
            .await
            .map_err(failed(format!("dropping database {name}")))?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .map_err(failed(format!("dropping database {name}")))?;
    }
    Ok(())
}

/// `pg_dump --schema-only --no-owner --no-privileges` of the database at
/// `url`, without the random `\restrict` token lines of pg_dump 15.14+, for
/// comparing schemas (e.g. that up, down, up gives the same schema).
///
/// # Panics
/// When `pg_dump` is not installed or fails (its major version must be at
/// least the server's).
pub fn schema_dump(url: &str) -> String {
    let out = std::process::Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", "--no-privileges", url])
        .output()
        .expect("pg_dump must be installed (package postgresql-client)");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 dump")
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::{Error, fixture_failure};

    #[test]
    fn fixture_failure_says_how_to_start_the_database() {
        let msg = fixture_failure(&Error::Config(pgconn::UrlError::Missing));
        assert!(msg.contains("DATABASE_URL is not set"), "{msg}");
        assert!(
            msg.contains("scripts/db-up") && msg.contains("scripts/test"),
            "{msg}"
        );
    }

    #[test]
    fn fixture_failure_names_every_cause_once() {
        let msg = fixture_failure(&Error::Unavailable {
            target: "127.0.0.1:1/x".into(),
            source: sea_orm::DbErr::Custom("connection refused".into()),
        });
        assert_eq!(msg.matches("connection refused").count(), 1, "{msg}");
        assert!(msg.contains("127.0.0.1:1/x"), "{msg}");
    }
}
