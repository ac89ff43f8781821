//! Configuration as data: [`DbConfig`], read from the environment or built
//! in code. Connecting is [`DbConfig::connect`] (`connect.rs`).

use std::time::Duration;

use pgconn::DbUrl;

use crate::embedding::EmbeddingModel;
use crate::error::{Error, Result};

/// Connection settings. Build one with [`DbConfig::from_env`] or
/// [`DbConfig::new`] and adjust the public fields, then
/// [`DbConfig::connect`].
///
/// Configuration is data: nothing here connects. Every form of the handle
/// it makes ([`crate::Db`], its sessions, `primary()`, transactions from
/// `db.begin()`, and the handle used as a SeaORM connection) runs with the
/// same settings: `schema`, `statement_timeout`, `hnsw_ef_search`, the
/// URL's `options=-c name=value`, and the call timeouts. How they reach the
/// server, through any pooler, is in [`crate::settings`].
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
    /// The same bound for [`crate::chunks::replace_chunks`], whose work
    /// grows with the number of chunks (each costs an HNSW insertion;
    /// figures in BENCHMARKS.md). Default [`DEFAULT_BULK_CALL_TIMEOUT`].
    pub bulk_call_timeout: Option<Duration>,
    /// `application_name` shown in `pg_stat_activity`.
    pub application_name: String,
    /// Log every statement through `tracing` (noisy; off by default).
    pub log_statements: bool,
    /// The schemas to use when they are not the role's default, as a
    /// comma-separated `search_path` list: `app`, or `app,public`; the
    /// tables live in the first. The schema of the `vector` extension is
    /// appended when it is not in the list. The same list, parsed the same
    /// way, as the migration tool's `-s` / `DATABASE_SCHEMA`
    /// ([`pgconn::quote_search_path`]). From
    /// `DATABASE_SCHEMA` in [`DbConfig::from_env`].
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
    /// The embedding model of this handle: searches compare only chunks of
    /// this model, query embeddings and written chunks must be of it
    /// ([`crate::embedding`]). Default: `gemini-embedding-001` at 768
    /// dimensions, the TypeScript app's model since its commit 86f8fc7.
    /// From `EMBEDDING_MODEL` and `EMBEDDING_DIMENSIONS` in
    /// [`DbConfig::from_env`]. This release stores 768-dimension vectors.
    pub embedding_model: EmbeddingModel,
}

/// The [`DbConfig::call_timeout`] that [`DbConfig::new`] sets.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The [`DbConfig::bulk_call_timeout`] that [`DbConfig::new`] sets.
pub const DEFAULT_BULK_CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Environment variable naming the schemas (a `search_path` list).
pub const SCHEMA_ENV: &str = "DATABASE_SCHEMA";
/// Environment variable listing replica URLs, comma-separated.
pub const REPLICA_URLS_ENV: &str = "DATABASE_REPLICA_URLS";
/// Environment variable naming the embedding model
/// ([`DbConfig::embedding_model`]).
pub const EMBEDDING_MODEL_ENV: &str = "EMBEDDING_MODEL";
/// Environment variable giving the embedding model's dimension count
/// (required with [`EMBEDDING_MODEL_ENV`]).
pub const EMBEDDING_DIMENSIONS_ENV: &str = "EMBEDDING_DIMENSIONS";

impl DbConfig {
    /// Settings with sensible limits for `url`: up to 10 connections, 5 s
    /// connect and acquire timeouts, 10 min idle timeout, 30 min lifetime,
    /// 30 s call timeout (10 min for chunk writes), `ef_search` from
    /// the table's size, no replicas (when some are added: 2 s maximum lag, 50 ms
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
            embedding_model: EmbeddingModel::gemini_embedding_001_768(),
        }
    }

    /// Reads `DATABASE_URL` (required), `DATABASE_SCHEMA`,
    /// `DATABASE_REPLICA_URLS`, and `EMBEDDING_MODEL` with
    /// `EMBEDDING_DIMENSIONS` (optional, both or neither) from the
    /// environment, loading a `.env` file from the working directory (or a
    /// parent) first if there is one.
    ///
    /// # Errors
    /// [`Error::Config`] when `DATABASE_URL` is unset, a URL is not a
    /// PostgreSQL URL, a schema name is invalid, or the embedding model is
    /// half given or invalid.
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
        if let Some(schema) = &config.schema {
            validate_schema(schema)?;
        }
        if let Some(model) = embedding_model_from(
            std::env::var(EMBEDDING_MODEL_ENV).ok(),
            std::env::var(EMBEDDING_DIMENSIONS_ENV).ok(),
        )? {
            config.embedding_model = model;
        }
        Ok(config)
    }

    /// `host:port/dbname` of the primary, without credentials, for messages.
    pub fn target(&self) -> String {
        parse_url(&self.url, "DATABASE_URL")
            .map_or_else(|_| "an invalid DATABASE_URL".to_owned(), |u| u.target())
    }
}

/// The model named by `EMBEDDING_MODEL` and `EMBEDDING_DIMENSIONS`, if set.
fn embedding_model_from(
    name: Option<String>,
    dimensions: Option<String>,
) -> Result<Option<EmbeddingModel>> {
    let name = name.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let dimensions = dimensions
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let (name, dimensions) = match (name, dimensions) {
        (None, None) => return Ok(None),
        (Some(name), Some(dimensions)) => (name, dimensions),
        _ => {
            return Err(Error::Config(format!(
                "set both {EMBEDDING_MODEL_ENV} and {EMBEDDING_DIMENSIONS_ENV} (e.g. \
                 gemini-embedding-001 and 768), or neither: a model's vectors at another \
                 dimension count are another space"
            )));
        }
    };
    let dimensions: u32 = dimensions.parse().map_err(|_| {
        Error::Config(format!(
            "{EMBEDDING_DIMENSIONS_ENV}={dimensions:?} is not a whole number"
        ))
    })?;
    EmbeddingModel::new(name, dimensions)
        .map(Some)
        .map_err(|e| Error::Config(format!("{EMBEDDING_MODEL_ENV}: {e}")))
}

pub(crate) fn parse_url(url: &str, what: &str) -> Result<DbUrl> {
    DbUrl::parse(url).map_err(|e| Error::Config(format!("{what}: {e}")))
}

/// Each name of a schema list is an identifier: quoted when used, but
/// empty lists, control characters and names over 63 bytes are refused up
/// front.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let names = pgconn::split_schemas(schema);
    if names.is_empty()
        || names
            .iter()
            .any(|n| n.trim_matches('"').len() > 63 || n.chars().any(char::is_control))
    {
        return Err(Error::Config(format!(
            "invalid schema list {schema:?} (DbConfig::schema / DATABASE_SCHEMA): use the \
             comma-separated names of existing schemas, e.g. `app` or `app,public`, each 1 to \
             63 bytes"
        )));
    }
    Ok(())
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
    fn the_embedding_model_needs_both_variables_and_valid_values() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(embedding_model_from(None, None).unwrap(), None);
        assert_eq!(embedding_model_from(s(" "), s("")).unwrap(), None);
        assert_eq!(
            embedding_model_from(s(" gemini-embedding-001 "), s("768")).unwrap(),
            Some(EmbeddingModel::gemini_embedding_001_768())
        );
        for (name, dims) in [
            (s("gemini-embedding-001"), None),
            (None, s("768")),
            (s("gemini-embedding-001"), s("768.0")),
            (s("gemini-embedding-001"), s("0")),
            (s("bad model"), s("768")),
        ] {
            let err = embedding_model_from(name, dims).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err}");
        }
    }

    #[test]
    fn rejects_non_postgres_url() {
        let err = parse_url("mysql://x@y/z", "DATABASE_URL").unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn schema_lists_are_validated() {
        assert!(validate_schema("").is_err());
        assert!(validate_schema(" , ").is_err());
        assert!(validate_schema("a\nb").is_err());
        assert!(validate_schema(&"x".repeat(64)).is_err());
        assert!(validate_schema("app").is_ok());
        assert!(validate_schema("app, public").is_ok());
    }
}
