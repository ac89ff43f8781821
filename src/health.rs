//! Health checks on a handle: [`readiness`] (server and pgvector
//! versions, with the [known bugs](PGVECTOR_KNOWN_BUGS) of that pgvector),
//! [`require_pgvector`], and [`effective_settings`] (what the server sees
//! a call run with).

use sea_orm::{DbBackend, Statement};

use crate::error::{Error, Result};
use crate::settings::{Op, parse_version};
use crate::store::Store;

/// The server's version and its `vector` extension.
const READINESS_SQL: &str = "SELECT current_setting('server_version') AS server_version, \
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
    /// Reads it on `conn`: what [`readiness`] reports, and what
    /// [`crate::DbConfig::connect`] reads once on its first connection.
    ///
    /// # Errors
    /// Database failures.
    pub async fn read<C: sea_orm::ConnectionTrait>(conn: &C) -> Result<Self> {
        let row = conn
            .query_one_raw(Statement::from_string(DbBackend::Postgres, READINESS_SQL))
            .await?
            .ok_or_else(|| Error::Config("the readiness query returned no row".into()))?;
        Ok(Self {
            server_version: row.try_get("", "server_version")?,
            pgvector_version: row.try_get("", "installed")?,
            pgvector_available_version: row.try_get("", "available")?,
            pgvector_schema: row.try_get("", "schema")?,
        })
    }

    /// True when pgvector is installed in the database.
    pub fn is_ready(&self) -> bool {
        self.pgvector_version.is_some()
    }

    /// The known bugs of the installed pgvector ([`pgvector_known_bugs`]).
    pub fn pgvector_known_bugs(&self) -> Vec<&'static KnownBug> {
        self.pgvector_version
            .as_deref()
            .map_or_else(Vec::new, pgvector_known_bugs)
    }
}

/// A pgvector bug that this workload can meet, fixed in a later release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownBug {
    /// The first release with the fix, e.g. `0.8.4`.
    pub fixed_in: &'static str,
    /// What goes wrong, in a few words.
    pub summary: &'static str,
    /// The line of pgvector's CHANGELOG that records the fix.
    pub changelog: &'static str,
}

impl std::fmt::Display for KnownBug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fixed in {})", self.summary, self.fixed_in)
    }
}

/// The oldest pgvector without a [known bug](PGVECTOR_KNOWN_BUGS).
pub const PGVECTOR_MIN_VERSION: &str = "0.8.4";

/// The pgvector bugs fixed after 0.8.0 that this workload meets: every
/// chunk replacement deletes rows, so VACUUM repairs the HNSW graph all the
/// time. The one list; [`pgvector_known_bugs`], the library's warning at
/// connect, and the migration tool's `doctor` and `verify` read it.
pub const PGVECTOR_KNOWN_BUGS: &[KnownBug] = &[
    KnownBug {
        fixed_in: "0.8.2",
        summary: "buffer overflow with parallel HNSW index builds",
        changelog: "0.8.2 (2026-02-25): Fixed buffer overflow with parallel HNSW index build (#959)",
    },
    KnownBug {
        fixed_in: "0.8.3",
        summary: "possible HNSW index corruption when VACUUM repairs the graph",
        changelog: "0.8.3 (2026-06-17): Fixed possible index corruption with HNSW vacuuming",
    },
    KnownBug {
        fixed_in: "0.8.4",
        summary: "`hnsw graph not repaired` errors when VACUUM repairs the graph",
        changelog: "0.8.4 (2026-06-30): Fixed `hnsw graph not repaired` error with HNSW vacuuming",
    },
    KnownBug {
        fixed_in: "0.8.4",
        summary: "possible errors from inserts while VACUUM repairs the graph",
        changelog: "0.8.4 (2026-06-30): Fixed possible error with inserts during HNSW vacuuming",
    },
];

/// What to do about [`pgvector_known_bugs`].
pub const PGVECTOR_UPGRADE_ADVICE: &str = "upgrade pgvector on the server to 0.8.4 or newer, run \
    ALTER EXTENSION vector UPDATE in each database, then rebuild the HNSW index, which the bugs \
    may have damaged: REINDEX INDEX CONCURRENTLY idx_resume_chunks_embedding";

/// The [known bugs](PGVECTOR_KNOWN_BUGS) of pgvector `version` (as
/// `pg_extension.extversion` gives it, e.g. `0.8.0`): those fixed in a
/// later release. A version that does not parse has none (it is not one
/// pgvector released).
///
/// ```
/// use mockinterview_db::health::pgvector_known_bugs;
/// assert_eq!(pgvector_known_bugs("0.8.0").len(), 4);
/// assert_eq!(pgvector_known_bugs("0.8.3").len(), 2);
/// assert!(pgvector_known_bugs("0.8.4").is_empty());
/// assert!(pgvector_known_bugs("0.10.0").is_empty());
/// ```
pub fn pgvector_known_bugs(version: &str) -> Vec<&'static KnownBug> {
    let Some(found) = parse_version(version) else {
        return Vec::new();
    };
    PGVECTOR_KNOWN_BUGS
        .iter()
        .filter(|bug| parse_version(bug.fixed_in).is_some_and(|fixed| found < fixed))
        .collect()
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
    db.route()
        .primary_read(Op::Plain, |c| async move { Readiness::read(&c).await })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_versions_have_the_bugs_fixed_after_them() {
        let fixed_in = |v: &str| {
            pgvector_known_bugs(v)
                .iter()
                .map(|b| b.fixed_in)
                .collect::<Vec<_>>()
        };
        assert_eq!(fixed_in("0.7.4"), ["0.8.2", "0.8.3", "0.8.4", "0.8.4"]);
        assert_eq!(fixed_in("0.8.0"), ["0.8.2", "0.8.3", "0.8.4", "0.8.4"]);
        assert_eq!(fixed_in("0.8.2"), ["0.8.3", "0.8.4", "0.8.4"]);
        assert_eq!(fixed_in("0.8.3"), ["0.8.4", "0.8.4"]);
    }

    #[test]
    fn current_versions_have_none() {
        for v in [
            PGVECTOR_MIN_VERSION,
            "0.8.6",
            "0.8.7",
            "0.9",
            "1.0.0",
            "0.10.0",
        ] {
            assert!(pgvector_known_bugs(v).is_empty(), "{v}");
        }
    }

    #[test]
    fn unparsable_versions_have_none() {
        for v in ["", "x", "0.8.0beta", "0.8.0.1"] {
            assert!(pgvector_known_bugs(v).is_empty(), "{v:?}");
        }
    }

    #[test]
    fn every_entry_cites_its_changelog_line() {
        for bug in PGVECTOR_KNOWN_BUGS {
            assert!(bug.changelog.starts_with(bug.fixed_in), "{bug:?}");
            assert!(parse_version(bug.fixed_in).is_some(), "{bug:?}");
        }
        assert_eq!(
            parse_version(PGVECTOR_MIN_VERSION),
            PGVECTOR_KNOWN_BUGS
                .iter()
                .filter_map(|b| parse_version(b.fixed_in))
                .max()
        );
    }
}
