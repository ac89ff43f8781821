//! `verify`: diffs a snapshot of the live database against what the
//! migrations produce ([`migration::expected`]) and reports table sizes.
//!
//! The specification's "Verify Migrations" queries, as one command: pgvector
//! installed (and its version), every table, `resume_chunks`' structure,
//! every index, constraint, trigger and function, pending migrations and
//! applied ones this binary does not know. Objects the migrations do not
//! create (another service's table, a hand-made index) are listed as
//! warnings; everything missing or different is a problem.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};
use serde::Serialize;

use migration::catalog::{Catalog, ChangeAction, ObjectKind};
use migration::{expected, lock};

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As expected.
    Ok,
    /// Expected but absent.
    Missing,
    /// Present with another definition.
    Different,
    /// Present but not created by the migrations (a warning only).
    Unexpected,
}

impl Status {
    /// Missing or different.
    pub fn is_problem(self) -> bool {
        matches!(self, Self::Missing | Self::Different)
    }
}

/// One checked object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Object kind.
    pub kind: ObjectKind,
    /// Object name (`table.column` for columns, constraints, triggers).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// Expected definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Definition found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

/// pgvector in this database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PgvectorStatus {
    /// Installed version, if the extension exists here.
    pub installed_version: Option<String>,
    /// Version the server could install, if its files are present.
    pub available_version: Option<String>,
    /// Oldest version that works (HNSW).
    pub min_version: String,
    /// Installed and recent enough.
    pub ok: bool,
}

pub use migration::status::MigrationsStatus;

/// Size of one table (the specification's "Check table sizes" query).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableSize {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// `pg_total_relation_size` (table, indexes, TOAST).
    pub bytes: i64,
    /// The same, `pg_size_pretty`.
    pub size: String,
}

/// Everything `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// No problem found (warnings aside).
    pub ok: bool,
    /// Number of problems.
    pub problems: usize,
    /// `current_database()`.
    pub database: String,
    /// The schema checked (`current_schema()`).
    pub schema: String,
    /// `server_version`.
    pub server_version: String,
    /// pgvector.
    pub pgvector: PgvectorStatus,
    /// Applied, pending and unknown migrations.
    pub migrations: MigrationsStatus,
    /// One entry per expected object (and per unexpected one).
    pub checks: Vec<Check>,
    /// Tables of the schema, largest first.
    pub table_sizes: Vec<TableSize>,
    /// Warnings that do not fail the check.
    pub warnings: Vec<String>,
}

/// Checks the database behind `db` (current schema).
///
/// Read-only: it never creates `seaql_migrations` and takes no migration
/// lock (if a migrator is running, a warning says so).
///
/// # Errors
/// Database errors.
pub async fn verify<C: ConnectionTrait>(db: &C) -> Result<VerifyReport, DbErr> {
    let info = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_database()::text AS db, coalesce(current_schema()::text, '') AS schema, \
                    current_setting('server_version') AS version, \
                    (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed, \
                    (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') \
                      AS available",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row from the verify query".into()))?;
    let catalog = Catalog::snapshot(db).await?;
    let installed: Option<String> = info.try_get("", "installed")?;
    let pgvector = PgvectorStatus {
        ok: installed
            .as_deref()
            .is_some_and(|v| version_at_least(v, expected::PGVECTOR_MIN_VERSION)),
        installed_version: installed,
        available_version: info.try_get("", "available")?,
        min_version: expected::PGVECTOR_MIN_VERSION.to_owned(),
    };
    let migrations = MigrationsStatus::read(db).await?;
    let checks = compare(&catalog);
    let mut warnings: Vec<String> = checks
        .iter()
        .filter(|c| c.status == Status::Unexpected)
        .map(|c| format!("{} {} is not created by the migrations", c.kind, c.name))
        .collect();
    if let Some(version) = pgvector.installed_version.as_deref() {
        let bugs = mockinterview_db::health::pgvector_known_bugs(version);
        for bug in &bugs {
            warnings.push(format!(
                "pgvector {version} has a known bug: {bug} (CHANGELOG: {})",
                bug.changelog
            ));
        }
        if !bugs.is_empty() {
            warnings.push(format!(
                "pgvector {version}: {}",
                mockinterview_db::health::PGVECTOR_UPGRADE_ADVICE
            ));
        }
    }
    if let Some(holder) = lock::lock_holder(db).await? {
        warnings.push(format!(
            "a migrator is running ({holder}); the results may change when it finishes"
        ));
    }
    let problems = checks.iter().filter(|c| c.status.is_problem()).count()
        + usize::from(!pgvector.ok)
        + migrations.pending.len()
        + migrations.unknown.len();
    Ok(VerifyReport {
        ok: problems == 0,
        problems,
        database: info.try_get("", "db")?,
        schema: info.try_get("", "schema")?,
        server_version: info.try_get("", "version")?,
        pgvector,
        migrations,
        checks,
        table_sizes: table_sizes(db).await?,
        warnings,
    })
}

/// Compares a snapshot with [`expected::catalog`] through
/// [`Catalog::diff`]: one check per expected object (ok, missing or
/// different), plus the unexpected tables, and the unexpected columns,
/// indexes, constraints and triggers of the migrations' own tables (another
/// service's tables are its business). Extensions are left to the pgvector
/// check.
pub fn compare(actual: &Catalog) -> Vec<Check> {
    let expected = expected::catalog();
    let ours = |table: &Option<String>| {
        table
            .as_ref()
            .is_some_and(|t| expected.tables.contains_key(t))
    };
    let mut actual = actual.clone();
    actual.extensions.clear();
    let mut checks: Vec<Check> = expected
        .objects()
        .into_iter()
        .map(|((kind, name), object)| Check {
            kind,
            name,
            status: Status::Ok,
            expected: Some(object.definition.clone()),
            actual: Some(object.definition),
        })
        .collect();
    for change in expected.diff(&actual) {
        let check = checks
            .iter_mut()
            .find(|c| c.kind == change.kind && c.name == change.name);
        match (change.action, check) {
            (ChangeAction::Removed, Some(check)) => {
                check.status = Status::Missing;
                check.actual = None;
            }
            (ChangeAction::Changed, Some(check)) => {
                check.status = Status::Different;
                check.actual = change.after;
            }
            (ChangeAction::Added, _)
                if change.kind == ObjectKind::Table
                    || (change.kind != ObjectKind::Function && ours(&change.table)) =>
            {
                checks.push(Check {
                    kind: change.kind,
                    name: change.name,
                    status: Status::Unexpected,
                    expected: None,
                    actual: change.after,
                });
            }
            _ => {}
        }
    }
    checks
}

/// The specification's "Check table sizes" query, for the current schema
/// (names quoted, so any table name works).
async fn table_sizes<C: ConnectionTrait>(db: &C) -> Result<Vec<TableSize>, DbErr> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT schemaname::text AS schema, tablename::text AS tab, \
                pg_total_relation_size(format('%I.%I', schemaname, tablename)) AS bytes, \
                pg_size_pretty(pg_total_relation_size(format('%I.%I', schemaname, tablename))) \
                  AS size \
         FROM pg_tables WHERE schemaname = current_schema() \
         ORDER BY pg_total_relation_size(format('%I.%I', schemaname, tablename)) DESC, tablename",
    ))
    .await?
    .iter()
    .map(|r| {
        Ok(TableSize {
            schema: r.try_get("", "schema")?,
            table: r.try_get("", "tab")?,
            bytes: r.try_get("", "bytes")?,
            size: r.try_get("", "size")?,
        })
    })
    .collect()
}

/// `a >= b` for dotted numeric versions (`0.8.0` >= `0.5.0`).
pub fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.split(['.', '-'])
            .map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    };
    let (mut a, mut b) = (parse(a), parse(b));
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a >= b
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Verifying database {} (schema {}), PostgreSQL {}",
            self.database, self.schema, self.server_version
        )?;
        let mark = |ok: bool| if ok { "ok     " } else { "PROBLEM" };
        let pg = &self.pgvector;
        match &pg.installed_version {
            Some(v) => writeln!(
                f,
                "  {} pgvector {v} installed (at least {} needed for HNSW)",
                mark(pg.ok),
                pg.min_version
            )?,
            None => writeln!(
                f,
                "  {} pgvector is not installed in this database ({}); run the migrations",
                mark(false),
                match &pg.available_version {
                    Some(v) => format!("version {v} is available on the server"),
                    None => "and the server has no pgvector files: install pgvector".into(),
                }
            )?,
        }
        let m = &self.migrations;
        writeln!(
            f,
            "  {} migrations: {} applied, {} pending, {} unknown",
            mark(m.pending.is_empty() && m.unknown.is_empty()),
            m.applied.len(),
            m.pending.len(),
            m.unknown.len()
        )?;
        for p in &m.pending {
            writeln!(f, "          pending: {p} (run `up`)")?;
        }
        for u in &m.unknown {
            writeln!(
                f,
                "          unknown: {u} is recorded as applied but this migrator does not have \
                 it (deploy the binary that does)"
            )?;
        }
        for kind in [
            ObjectKind::Table,
            ObjectKind::Column,
            ObjectKind::Index,
            ObjectKind::Constraint,
            ObjectKind::Trigger,
            ObjectKind::Function,
        ] {
            let of_kind: Vec<&Check> = self
                .checks
                .iter()
                .filter(|c| c.kind == kind && c.status != Status::Unexpected)
                .collect();
            let bad: Vec<&&Check> = of_kind.iter().filter(|c| c.status.is_problem()).collect();
            writeln!(
                f,
                "  {} {}: {}/{} as expected",
                mark(bad.is_empty()),
                kind.plural(),
                of_kind.len() - bad.len(),
                of_kind.len()
            )?;
            for c in bad {
                match c.status {
                    Status::Missing => writeln!(
                        f,
                        "          missing {kind} {}{}",
                        c.name,
                        c.expected
                            .as_deref()
                            .filter(|e| !e.is_empty())
                            .map(|e| format!(": expected {e}"))
                            .unwrap_or_default()
                    )?,
                    _ => writeln!(
                        f,
                        "          different {kind} {}: expected {}, found {}",
                        c.name,
                        c.expected.as_deref().unwrap_or(""),
                        c.actual.as_deref().unwrap_or("")
                    )?,
                }
            }
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        writeln!(f, "Table sizes:")?;
        let width = self
            .table_sizes
            .iter()
            .map(|t| t.schema.len() + t.table.len() + 1)
            .max()
            .unwrap_or(0);
        for t in &self.table_sizes {
            writeln!(
                f,
                "  {:<width$}  {:>10}",
                format!("{}.{}", t.schema, t.table),
                t.size
            )?;
        }
        if self.ok {
            write!(f, "OK: the database matches the migrations")
        } else {
            write!(
                f,
                "FAILED: {} problem(s); see above (`up` applies pending migrations)",
                self.problems
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("0.8.0", "0.5.0"));
        assert!(version_at_least("0.10.1", "0.5.0"));
        assert!(version_at_least("0.5", "0.5.0"));
        assert!(!version_at_least("0.4.4", "0.5.0"));
    }
}
