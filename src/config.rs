//! Connecting: configuration, the connection pool and the readiness check.

use std::time::Duration;

use pgconn::DbUrl;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

use crate::error::{Error, Result, UNAVAILABLE_REASON};

/// Connection settings. Build one with [`DbConfig::from_env`] or
/// [`DbConfig::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct DbConfig {
    /// `postgres://user:password@host:port/dbname`.
    pub url: String,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long to wait for the server when opening a connection.
    pub connect_timeout: Duration,
    /// How long a caller waits for a free pooled connection.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this.
    pub idle_timeout: Duration,
    /// Connections are recycled after this, so server-side memory stays bounded.
    pub max_lifetime: Duration,
    /// `statement_timeout` for every statement, if set.
    pub statement_timeout: Option<Duration>,
    /// `application_name` shown in `pg_stat_activity`.
    pub application_name: String,
    /// Log every statement through `tracing` (noisy; off by default).
    pub log_statements: bool,
    /// `hnsw.ef_search` for every connection: the candidate list size of
    /// whole-table (HNSW) searches. Higher is more accurate and slower;
    /// pgvector's default is 40. Measured here (BENCHMARKS.md): 100 gives
    /// recall@10 of about 0.97–0.99 at 100k chunks and 0.96–0.98 at 200k for
    /// ~1 ms; 200 gives 0.98–0.99 at 200k for ~0.5 ms more. Recall falls as
    /// the table grows: measure at your size (`mockinterview-bench`). Very
    /// high values (400 at 100k rows) make the planner prefer an exact
    /// sequential scan, hundreds of times slower.
    pub hnsw_ef_search: Option<u32>,
}

/// The `hnsw.ef_search` that [`DbConfig::new`] sets (see BENCHMARKS.md).
pub const DEFAULT_HNSW_EF_SEARCH: u32 = 100;

impl DbConfig {
    /// Settings with sensible pool limits for `url`: up to 10 connections,
    /// 5 s connect and acquire timeouts, 10 min idle timeout, 30 min lifetime.
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
            application_name: "mockinterview-db".into(),
            log_statements: false,
            hnsw_ef_search: Some(DEFAULT_HNSW_EF_SEARCH),
        }
    }

    /// Reads `DATABASE_URL` from the environment, loading a `.env` file from
    /// the working directory (or a parent) first if there is one.
    ///
    /// # Errors
    /// [`Error::Config`] when `DATABASE_URL` is unset or not a PostgreSQL URL.
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
        Ok(Self::new(url.as_str()))
    }

    /// `host:port/dbname` of the URL, without credentials, for messages.
    pub fn target(&self) -> String {
        self.db_url()
            .map_or_else(|_| "an invalid DATABASE_URL".to_owned(), |u| u.target())
    }

    fn db_url(&self) -> Result<DbUrl> {
        DbUrl::parse(&self.url).map_err(|e| Error::Config(e.to_string()))
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut opts = ConnectOptions::new(self.url.clone());
        opts.max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .connect_timeout(self.connect_timeout)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
            .set_application_name(self.application_name.clone())
            .sqlx_logging(self.log_statements);
        if let Some(timeout) = self.statement_timeout {
            opts.statement_timeout(timeout);
        }
        // Session settings sent in the startup packet: no extra round trip.
        // Filtered whole-table searches continue the HNSW scan until k rows
        // pass the filter (pgvector 0.8 iterative scans), in exact order.
        let mut settings = vec![("hnsw.iterative_scan".to_owned(), "strict_order".to_owned())];
        if let Some(ef) = self.hnsw_ef_search {
            settings.push(("hnsw.ef_search".to_owned(), ef.to_string()));
        }
        opts.map_sqlx_postgres_opts(move |o| o.options(settings.clone()));
        // --- TCP_NODELAY at run time (src/net.rs, issue 12) ---
        // sqlx 0.9.0 does not set it and a workspace patch does not reach
        // applications: a pool hook sets it on each new connection's socket
        // (or warns once). Note: sqlx keeps one after_connect hook per pool.
        if let Ok(url) = self.db_url() {
            opts.map_sqlx_postgres_pool_opts(move |p| crate::net::with_socket_tuning(p, &url));
        }
        // --- end TCP_NODELAY ---
        opts
    }

    /// Opens the pool and checks that the server answers.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL, [`Error::Unavailable`] when the
    /// server cannot be reached or refuses the login.
    #[tracing::instrument(skip(self), fields(target = %self.target()))]
    pub async fn connect(&self) -> Result<DatabaseConnection> {
        let url = self.db_url()?;
        let unavailable = |source| Error::Unavailable {
            target: url.target(),
            reason: UNAVAILABLE_REASON.into(),
            source,
        };
        let db = Database::connect(self.connect_options())
            .await
            .map_err(unavailable)?;
        db.ping().await.map_err(unavailable)?;
        Ok(db)
    }
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
pub async fn connect_from_env() -> Result<DatabaseConnection> {
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

/// Checks that the database answers and reports whether pgvector is
/// installed, and which version.
///
/// # Errors
/// [`Error::Unavailable`] when no connection can be made,
/// [`Error::Database`] for other failures.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection) -> mockinterview_db::Result<()> {
/// let r = mockinterview_db::readiness(db).await?;
/// println!("PostgreSQL {}, pgvector {:?}", r.server_version, r.pgvector_version);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn readiness<C: ConnectionTrait>(db: &C) -> Result<Readiness> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('server_version') AS server_version, \
                    (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed, \
                    (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS available",
        ))
        .await
        .map_err(|e| match e {
            e @ (sea_orm::DbErr::Conn(_) | sea_orm::DbErr::ConnectionAcquire(_)) => {
                Error::Unavailable {
                    target: "the configured database".into(),
                    reason: UNAVAILABLE_REASON.into(),
                    source: e,
                }
            }
            e => Error::from(e),
        })?
        .ok_or_else(|| Error::Config("readiness query returned no row".into()))?;
    Ok(Readiness {
        server_version: row.try_get("", "server_version")?,
        pgvector_version: row.try_get("", "installed")?,
        pgvector_available_version: row.try_get("", "available")?,
    })
}

/// Checks readiness and fails unless pgvector is installed.
///
/// # Errors
/// As [`readiness`], plus [`Error::PgvectorMissing`] when the extension is
/// not installed in the database.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection) -> mockinterview_db::Result<()> {
/// mockinterview_db::require_pgvector(db).await?; // fail start-up early
/// # Ok(()) }
/// ```
pub async fn require_pgvector<C: ConnectionTrait>(db: &C) -> Result<Readiness> {
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
        let err = DbConfig::new("mysql://x@y/z").db_url().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
