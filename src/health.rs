//! Health checks on a handle: [`readiness`] (server and pgvector
//! versions), [`require_pgvector`], and [`effective_settings`] (what the
//! server sees a call run with).

use sea_orm::{DbBackend, Statement};

use crate::error::{Error, Result};
use crate::settings::Op;
use crate::store::Store;

/// The server's version and its `vector` extension: what [`readiness`]
/// reports and what [`crate::DbConfig::connect`] reads once.
pub(crate) const READINESS_SQL: &str = "SELECT current_setting('server_version') AS server_version, \
       e.extversion AS installed, n.nspname::text AS schema, \
       (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS available \
     FROM (SELECT 1) one \
     LEFT JOIN pg_extension e ON e.extname = 'vector' \
     LEFT JOIN pg_namespace n ON n.oid = e.extnamespace";

/// What [`readiness`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// `server_version` of the PostgreSQL server, e.g. `15.18 (Debian ...)`.
    pub server_version: String,
    /// Installed pgvector version in this database, if the extension exists.
    pub pgvector_version: Option<String>,
    /// pgvector version the server could install, if its files are present.
    pub pgvector_available_version: Option<String>,
    /// The schema the `vector` extension is installed in, if it is.
    pub pgvector_schema: Option<String>,
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
/// let r = mockinterview_db::health::readiness(db).await?;
/// println!("PostgreSQL {}, pgvector {:?}", r.server_version, r.pgvector_version);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn readiness<S: Store + ?Sized>(db: &S) -> Result<Readiness> {
    use sea_orm::ConnectionTrait;
    db.route()
        .primary_read(Op::Plain, |c| async move {
            let row = c
                .query_one_raw(Statement::from_string(DbBackend::Postgres, READINESS_SQL))
                .await?
                .ok_or_else(|| Error::Config("readiness query returned no row".into()))?;
            Ok(Readiness {
                server_version: row.try_get("", "server_version")?,
                pgvector_version: row.try_get("", "installed")?,
                pgvector_available_version: row.try_get("", "available")?,
                pgvector_schema: row.try_get("", "schema")?,
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
/// mockinterview_db::health::require_pgvector(db).await?; // fail start-up early
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
/// [`crate::chunks::search_chunks`] applies them for the top 10. It gives
/// the same values through every form of the handle ([`crate::Db`], a
/// session, `primary()`, a [`crate::Transaction`]); use it to check that
/// the settings hold through a pooler.
///
/// # Errors
/// As the data functions ([`Error::Unavailable`], [`Error::Database`]).
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// let s = mockinterview_db::health::effective_settings(db).await?;
/// assert_eq!(s.hnsw_ef_search.as_deref(), Some("100"));
/// # Ok(()) }
/// ```
pub async fn effective_settings<S: Store + ?Sized>(db: &S) -> Result<EffectiveSettings> {
    use sea_orm::ConnectionTrait;
    // Applied the way a whole-table search applies them.
    let route = db.route();
    let (op, guard) = route.hnsw_search(10);
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
