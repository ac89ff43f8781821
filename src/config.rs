//! Connecting: configuration, the pools and the readiness check.

use std::sync::Arc;
use std::time::Duration;

use pgconn::DbUrl;
use pgconn::diagnose::{self, ConnectFailure, FailureKind};
use pgconn::socket::{Keepalive, SocketTuning};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
use sea_orm::{DatabaseConnection, DbBackend, DbErr, SqlxPostgresConnector, Statement};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::replica::{Replica, Replicas};
use crate::store::{EfSearch, Op, Settings, Store};

/// Connection settings. Build one with [`DbConfig::from_env`] or
/// [`DbConfig::new`] and adjust the public fields, then
/// [`DbConfig::connect`].
///
/// Nothing here is sent as a startup parameter or kept as session state:
/// the library applies `search_path`, `statement_timeout` and the `hnsw.*`
/// settings inside each call's own transaction, so they hold behind a
/// transaction-mode pooler (PgBouncer) too.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DbConfig {
    /// `postgres://user:password@host:port/dbname` of the primary.
    pub url: String,
    /// Upper bound of pooled connections (per server).
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long [`DbConfig::connect`] waits for the server to accept the
    /// first connection.
    pub connect_timeout: Duration,
    /// How long a caller waits for a free pooled connection (opening a new
    /// one included).
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this.
    pub idle_timeout: Duration,
    /// Connections are recycled after this, so server-side memory stays bounded.
    pub max_lifetime: Duration,
    /// `statement_timeout` for every statement the library runs, if set
    /// (the server cancels a statement that runs longer).
    pub statement_timeout: Option<Duration>,
    /// Client-side bound of every data function call, from the first
    /// statement to the last (`None`: unbounded). A call that gets no answer
    /// in time (server frozen, network cut without a reset) fails with
    /// [`Error::Unavailable`] instead of waiting forever. Default
    /// [`DEFAULT_CALL_TIMEOUT`].
    pub call_timeout: Option<Duration>,
    /// The same bound for the chunk-replacing calls
    /// ([`crate::chunks::replace_resume_chunks`],
    /// [`crate::chunks::replace_chunks_bulk`]), whose work grows with the
    /// number of chunks (each costs an HNSW insertion, ~1–10 ms). Default
    /// [`DEFAULT_BULK_CALL_TIMEOUT`]; TCP keepalive still notices a dead
    /// connection sooner.
    pub bulk_call_timeout: Option<Duration>,
    /// `application_name` shown in `pg_stat_activity`.
    pub application_name: String,
    /// Log every statement through `tracing` (noisy; off by default).
    pub log_statements: bool,
    /// The schema holding the tables when it is not the role's default
    /// (`public`), e.g. `app`. The library then sets `search_path` to it
    /// (followed by the schema of the `vector` extension, which may live
    /// elsewhere) inside each call. From `DATABASE_SCHEMA` in
    /// [`DbConfig::from_env`].
    pub schema: Option<String>,
    /// `hnsw.ef_search` of whole-table (HNSW) searches: the candidate list
    /// size. Higher is more accurate and slower. `None` (the default): it
    /// follows the table's size (`pg_class.reltuples`, read by the server
    /// inside each search): [`crate::tuning::EF_SEARCH_BASE`] up to 500k
    /// chunks, more above ([`crate::tuning::ef_search_for`]; the figures
    /// behind it are in BENCHMARKS.md). `Some(n)` fixes it, e.g. `Some(40)`
    /// for pgvector's own default. Very high values make the planner prefer an exact
    /// sequential scan, hundreds of times slower on large tables.
    pub hnsw_ef_search: Option<u32>,
    /// Read replicas (streaming standbys of the primary), each with its own
    /// pool. Reads go to them; writes and reads inside a caller's
    /// transaction go to the primary. From `DATABASE_REPLICA_URLS`
    /// (comma-separated) in [`DbConfig::from_env`].
    pub replica_urls: Vec<String>,
    /// Replicas further behind the primary than this get no reads until
    /// they catch up (bounded staleness for reads outside a [`crate::Session`]).
    pub max_replica_lag: Duration,
    /// How long a read through a [`crate::Session`] waits for a replica to
    /// replay the session's last write before it skips the replica (and
    /// eventually reads from the primary).
    pub read_your_writes_wait: Duration,
    /// How often the replica monitor measures each replica's lag.
    pub replica_check_interval: Duration,
    /// How long a replica that failed stays out of rotation before the
    /// monitor tries it again.
    pub replica_retry_after: Duration,
    /// Acquire timeout of the replica pools: short, so that a read falls
    /// back to the primary quickly when a replica stops answering.
    pub replica_acquire_timeout: Duration,
    /// TCP keepalive on the pools' connections: after this long without
    /// traffic the kernel probes the server (every third of it, at least
    /// 1 s, three times) and drops a connection whose peer is gone (host
    /// down, network cut), so a call waiting on it fails instead of hanging
    /// until [`DbConfig::call_timeout`]. `None` leaves the system default
    /// (usually off). Set at run time on each new connection
    /// ([`crate::net`], Linux); default 30 s.
    pub tcp_keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT` on the pools' connections: how long sent data may
    /// stay unacknowledged before the kernel drops the connection (a cut
    /// network during a write or a `COPY`). `None` leaves the system
    /// default (about 15 minutes of retransmissions); default 30 s.
    pub tcp_user_timeout: Option<Duration>,
}

/// The `hnsw.ef_search` of whole-table searches in tables of up to 500k
/// chunks; it grows with the table unless [`DbConfig::hnsw_ef_search`] is
/// set (see [`crate::tuning`]).
pub const DEFAULT_HNSW_EF_SEARCH: u32 = crate::tuning::EF_SEARCH_BASE;
/// The [`DbConfig::call_timeout`] that [`DbConfig::new`] sets.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The [`DbConfig::bulk_call_timeout`] that [`DbConfig::new`] sets.
pub const DEFAULT_BULK_CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Environment variable naming the schema of the tables.
pub const SCHEMA_ENV: &str = "DATABASE_SCHEMA";
/// Environment variable listing replica URLs, comma-separated.
pub const REPLICA_URLS_ENV: &str = "DATABASE_REPLICA_URLS";

impl DbConfig {
    /// Settings with sensible limits for `url`: up to 10 connections, 5 s
    /// connect and acquire timeouts, 10 min idle timeout, 30 min lifetime,
    /// 30 s call timeout (10 min for chunk replacement), `ef_search` from
    /// the table's size,
    /// TCP keepalive after 30 s idle and a 30 s TCP user timeout, no
    /// replicas (when some are added: 2 s maximum lag, 50 ms
    /// read-your-writes wait, checks every 100 ms, retry after 5 s, 1 s
    /// acquire timeout).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            statement_timeout: None,
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            bulk_call_timeout: Some(DEFAULT_BULK_CALL_TIMEOUT),
            application_name: "mockinterview-db".into(),
            log_statements: false,
            schema: None,
            hnsw_ef_search: None,
            replica_urls: Vec::new(),
            max_replica_lag: Duration::from_secs(2),
            read_your_writes_wait: Duration::from_millis(50),
            replica_check_interval: Duration::from_millis(100),
            replica_retry_after: Duration::from_secs(5),
            replica_acquire_timeout: Duration::from_secs(1),
            tcp_keepalive: Some(Duration::from_secs(30)),
            tcp_user_timeout: Some(Duration::from_secs(30)),
        }
    }

    /// Reads `DATABASE_URL` (required), `DATABASE_SCHEMA` and
    /// `DATABASE_REPLICA_URLS` (optional) from the environment, loading a
    /// `.env` file from the working directory (or a parent) first if there
    /// is one.
    ///
    /// # Errors
    /// [`Error::Config`] when `DATABASE_URL` is unset or a URL is not a
    /// PostgreSQL URL.
    ///
    /// ```no_run
    /// # async fn f() -> mockinterview_db::Result<()> {
    /// let mut config = mockinterview_db::DbConfig::from_env()?;
    /// config.max_connections = 20;
    /// let db = config.connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Self> {
        let url = DbUrl::from_env().map_err(|e| Error::Config(e.to_string()))?;
        let mut config = Self::new(url.as_str());
        config.schema = std::env::var(SCHEMA_ENV)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        config.replica_urls = std::env::var(REPLICA_URLS_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for replica in &config.replica_urls {
            parse_url(replica, REPLICA_URLS_ENV)?;
        }
        Ok(config)
    }

    /// `host:port/dbname` of the primary, without credentials, for messages.
    pub fn target(&self) -> String {
        parse_url(&self.url, "DATABASE_URL")
            .map_or_else(|_| "an invalid DATABASE_URL".to_owned(), |u| u.target())
    }

    /// Opens the pools and checks that the primary answers. Replicas are
    /// opened lazily and monitored: one that is down does not fail
    /// `connect` (reads use the primary until it is back).
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or schema,
    /// [`Error::Unavailable`] when the primary cannot be reached or refuses
    /// the login.
    #[tracing::instrument(skip(self), fields(target = %self.target()))]
    pub async fn connect(&self) -> Result<Db> {
        let url = parse_url(&self.url, "DATABASE_URL")?;
        if let Some(schema) = &self.schema {
            validate_schema(schema)?;
        }
        // Settings given in the URL (`?options=-c name=value`) are applied
        // per call like the others: a pooler drops startup options.
        let url_settings = url
            .startup_settings()
            .map_err(|e| Error::Config(format!("DATABASE_URL: {e}")))?;
        let url = url.without_startup_options();
        let target = url.target();
        let options = self.connect_options(&url);

        // One attempt first, bounded by connect_timeout, so that a failure
        // is reported as what it is (refused, TLS, pg_hba, password, ...)
        // instead of the pool's retries ending in "timed out".
        diagnose::connect_one(&url, &options, self.connect_timeout)
            .await
            .map_err(|f| {
                let mut e = unavailable(&f);
                if f.kind() == &FailureKind::Timeout
                    && let Error::Unavailable { reason, .. } = &mut e
                {
                    reason.push_str(&format!(
                        " The limit is DbConfig::connect_timeout ({:?}).",
                        self.connect_timeout
                    ));
                }
                e
            })?
            .close()
            .await
            .ok();
        let pool = self
            .pool_options(self.acquire_timeout, &url)
            .connect_with(options)
            .await
            .map_err(|e| unavailable(&diagnose::classify(&url, &e)))?;
        // Through a transaction-mode pooler every setting is per call
        // already; a pooler that loses prepared statements cannot work at
        // all, and is refused here rather than failing at random later.
        match diagnose::detect_pooler(&url, &pool).await {
            Ok(pooling) => tracing::debug!(?pooling, "connection mode"),
            Err(f) if f.kind() == &FailureKind::PoolerWithoutPreparedStatements => {
                return Err(Error::Config(f.message()));
            }
            Err(f) => return Err(unavailable(&f)),
        }
        let primary = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
        let probe = probe(&primary).await.map_err(|e| e.with_target(&target))?;

        let mut extra: Vec<(String, String)> = url_settings
            .into_iter()
            .filter(|(name, _)| !(self.schema.is_some() && name == "search_path"))
            .collect();
        extra.retain(|(name, _)| name != "statement_timeout" || self.statement_timeout.is_none());
        let settings = Settings {
            search_path: self
                .schema
                .as_deref()
                .map(|s| search_path(s, probe.vector_schema.as_deref())),
            statement_timeout_ms: self.statement_timeout.map(|t| t.as_millis()),
            ef_search: self.hnsw_ef_search.map_or(EfSearch::Auto, EfSearch::Fixed),
            // `hnsw.iterative_scan` exists from pgvector 0.8 on.
            iterative_scan: probe
                .pgvector_version
                .as_deref()
                .is_none_or(|v| version_at_least(v, (0, 8))),
            call_timeout: self.call_timeout,
            bulk_call_timeout: self.bulk_call_timeout,
            extra,
        };

        let mut replicas = Vec::with_capacity(self.replica_urls.len());
        for replica_url in &self.replica_urls {
            let replica_url = parse_url(replica_url, REPLICA_URLS_ENV)?.without_startup_options();
            let pool = self.lazy_pool(&replica_url);
            replicas.push(Arc::new(Replica::new(
                pool,
                replica_url.target(),
                self.replica_retry_after,
            )));
        }
        let replicas = Replicas::start(replicas, primary.clone(), self);
        Ok(Db::new(primary, replicas, settings, self.clone(), target))
    }

    /// What every connection sends at start: the URL's role, database and
    /// TLS settings and `application_name`; not sqlx's default
    /// `extra_float_digits` (PostgreSQL 12+ prints floats exactly without
    /// it, and PgBouncer refuses unknown startup parameters).
    fn connect_options(&self, url: &DbUrl) -> PgConnectOptions {
        let options = url
            .connect_options()
            .extra_float_digits(None)
            .application_name(&self.application_name);
        if self.log_statements {
            options.log_statements(tracing::log::LevelFilter::Debug)
        } else {
            options.disable_statement_logging()
        }
    }

    /// Pool limits, and the hook that sets `TCP_NODELAY`, keepalive and the
    /// user timeout on each new connection's socket ([`crate::net`]).
    fn pool_options(&self, acquire_timeout: Duration, url: &DbUrl) -> PgPoolOptions {
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(acquire_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime);
        crate::net::with_socket_tuning(pool, url, self.socket_tuning())
    }

    /// The TCP options of [`DbConfig::tcp_keepalive`] and
    /// [`DbConfig::tcp_user_timeout`], with `TCP_NODELAY`.
    fn socket_tuning(&self) -> SocketTuning {
        SocketTuning {
            nodelay: true,
            keepalive: self.tcp_keepalive.map(|idle| {
                let idle = idle.max(Duration::from_secs(1));
                Keepalive {
                    idle,
                    interval: (idle / 3).max(Duration::from_secs(1)),
                    count: 3,
                }
            }),
            user_timeout: self.tcp_user_timeout,
        }
    }

    /// A pool to `url` that connects on first use.
    fn lazy_pool(&self, url: &DbUrl) -> DatabaseConnection {
        let pool = self
            .pool_options(self.replica_acquire_timeout, url)
            .connect_lazy_with(self.connect_options(url));
        SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
    }
}

/// [`Error::Unavailable`] for a classified connection failure: its message
/// is the reason; the source names its kind only (the reason already says
/// everything, and reporters print sources too).
fn unavailable(failure: &ConnectFailure) -> Error {
    Error::Unavailable {
        target: failure.target(),
        reason: failure.message(),
        source: DbErr::Custom(format!("connection failure: {:?}", failure.kind())),
    }
}

fn parse_url(url: &str, what: &str) -> Result<DbUrl> {
    DbUrl::parse(url).map_err(|e| Error::Config(format!("{what}: {e}")))
}

/// A schema name is an identifier: it is quoted when used, but control
/// characters and empty names are refused up front.
fn validate_schema(schema: &str) -> Result<()> {
    if schema.is_empty() || schema.len() > 63 || schema.chars().any(char::is_control) {
        return Err(Error::Config(format!(
            "invalid schema name {schema:?} (DbConfig::schema / DATABASE_SCHEMA): use the \
             name of an existing schema, 1 to 63 bytes"
        )));
    }
    Ok(())
}

/// `"schema", "extension schema"` for `set_config('search_path', ...)`.
fn search_path(schema: &str, vector_schema: Option<&str>) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    match vector_schema {
        Some(v) if v != schema => format!("{}, {}", quote(schema), quote(v)),
        _ => quote(schema),
    }
}

/// `a.b[.c]` >= `(major, minor)`.
fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version
        .split('.')
        .map(|p| p.trim().parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// What `connect` learns from the primary once.
struct Probe {
    pgvector_version: Option<String>,
    vector_schema: Option<String>,
}

async fn probe(primary: &DatabaseConnection) -> Result<Probe> {
    use sea_orm::ConnectionTrait;
    let row = primary
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT e.extversion AS version, n.nspname::text AS schema \
             FROM (SELECT 1) one \
             LEFT JOIN pg_extension e ON e.extname = 'vector' \
             LEFT JOIN pg_namespace n ON n.oid = e.extnamespace",
        ))
        .await?
        .ok_or_else(|| Error::Config("the connection check returned no row".into()))?;
    Ok(Probe {
        pgvector_version: row.try_get("", "version")?,
        vector_schema: row.try_get("", "schema")?,
    })
}

/// Connects with [`DbConfig::from_env`] (`DATABASE_URL`, `.env`).
///
/// # Errors
/// As [`DbConfig::from_env`] and [`DbConfig::connect`].
///
/// ```no_run
/// # async fn f() -> mockinterview_db::Result<()> {
/// let db = mockinterview_db::connect_from_env().await?;
/// # Ok(()) }
/// ```
pub async fn connect_from_env() -> Result<Db> {
    DbConfig::from_env()?.connect().await
}

/// What [`readiness`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// `server_version` of the PostgreSQL server, e.g. `15.18 (Debian ...)`.
    pub server_version: String,
    /// Installed pgvector version in this database, if the extension exists.
    pub pgvector_version: Option<String>,
    /// pgvector version the server could install, if its files are present.
    pub pgvector_available_version: Option<String>,
}

impl Readiness {
    /// True when pgvector is installed in the database.
    pub fn is_ready(&self) -> bool {
        self.pgvector_version.is_some()
    }
}

/// Checks that the primary answers and reports whether pgvector is
/// installed, and which version.
///
/// # Errors
/// [`Error::Unavailable`] when no connection can be made,
/// [`Error::Database`] for other failures.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// let r = mockinterview_db::readiness(db).await?;
/// println!("PostgreSQL {}, pgvector {:?}", r.server_version, r.pgvector_version);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn readiness<S: Store + ?Sized>(db: &S) -> Result<Readiness> {
    use sea_orm::ConnectionTrait;
    db.route()
        .primary_read(Op::Plain, |c| async move {
            let row = c
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT current_setting('server_version') AS server_version, \
                        (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed, \
                        (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') \
                          AS available",
                ))
                .await?
                .ok_or_else(|| Error::Config("readiness query returned no row".into()))?;
            Ok(Readiness {
                server_version: row.try_get("", "server_version")?,
                pgvector_version: row.try_get("", "installed")?,
                pgvector_available_version: row.try_get("", "available")?,
            })
        })
        .await
}

/// Checks readiness and fails unless pgvector is installed.
///
/// # Errors
/// As [`readiness`], plus [`Error::PgvectorMissing`] when the extension is
/// not installed in the database.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// mockinterview_db::require_pgvector(db).await?; // fail start-up early
/// # Ok(()) }
/// ```
pub async fn require_pgvector<S: Store + ?Sized>(db: &S) -> Result<Readiness> {
    let r = readiness(db).await?;
    if r.is_ready() {
        return Ok(r);
    }
    let detail = match &r.pgvector_available_version {
        Some(v) => format!("version {v} is available on the server but not created here"),
        None => "the server has no pgvector files either".into(),
    };
    Err(Error::PgvectorMissing { detail })
}

/// The session settings a whole-table search runs with, as the server sees
/// them inside the search's transaction (`current_setting`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveSettings {
    /// `search_path`.
    pub search_path: String,
    /// `statement_timeout`.
    pub statement_timeout: String,
    /// `hnsw.ef_search` (`None` when pgvector is not loaded and it was not set).
    pub hnsw_ef_search: Option<String>,
    /// `hnsw.iterative_scan`.
    pub hnsw_iterative_scan: Option<String>,
}

/// What a whole-table search on `db` runs with: `current_setting` of each
/// value, read with the settings applied exactly as
/// [`crate::chunks::search_chunks`] applies them for the top 10 (inside the
/// statement, or in a transaction after a settings statement when a schema,
/// a statement timeout or URL options are configured). Use it to check that
/// the settings hold through a pooler.
///
/// # Errors
/// As the data functions ([`Error::Unavailable`], [`Error::Database`]).
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// let s = mockinterview_db::config::effective_settings(db).await?;
/// assert_eq!(s.hnsw_ef_search.as_deref(), Some("100"));
/// # Ok(()) }
/// ```
pub async fn effective_settings<S: Store + ?Sized>(db: &S) -> Result<EffectiveSettings> {
    use sea_orm::ConnectionTrait;
    // Applied the way a whole-table search applies them.
    let route = db.route();
    let (op, guard) = route.settings().hnsw_search(10);
    let sql = format!(
        "SELECT current_setting('search_path') AS search_path, \
                current_setting('statement_timeout') AS statement_timeout, \
                current_setting('hnsw.ef_search', true) AS ef_search, \
                current_setting('hnsw.iterative_scan', true) AS iterative_scan{}",
        guard.map_or(String::new(), |g| format!(" WHERE {g}"))
    );
    route
        .read(op, |c| {
            let sql = sql.clone();
            async move {
                let row = c
                    .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                    .await?
                    .ok_or_else(|| Error::Config("current_setting returned no row".into()))?;
                Ok(EffectiveSettings {
                    search_path: row.try_get("", "search_path")?,
                    statement_timeout: row.try_get("", "statement_timeout")?,
                    hnsw_ef_search: row.try_get("", "ef_search")?,
                    hnsw_iterative_scan: row.try_get("", "iterative_scan")?,
                })
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_hides_credentials() {
        let config = DbConfig::new("postgres://u:secret@localhost:5432/db?sslmode=disable");
        assert_eq!(config.target(), "localhost:5432/db");
    }

    #[test]
    fn rejects_non_postgres_url() {
        let err = parse_url("mysql://x@y/z", "DATABASE_URL").unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn search_path_quotes_and_adds_the_extension_schema() {
        assert_eq!(search_path("app", Some("public")), r#""app", "public""#);
        assert_eq!(search_path("app", Some("app")), r#""app""#);
        assert_eq!(search_path(r#"we"ird"#, None), r#""we""ird""#);
        assert!(validate_schema("").is_err());
        assert!(validate_schema("a\nb").is_err());
        assert!(validate_schema("app").is_ok());
    }

    #[test]
    fn pgvector_versions_compare() {
        assert!(version_at_least("0.8.0", (0, 8)));
        assert!(version_at_least("0.10.1", (0, 8)));
        assert!(!version_at_least("0.7.4", (0, 8)));
    }
}
