//! Guard rails for running migrations against a live database.
//!
//! - **`lock_timeout`**: every migration starts with
//!   `SET LOCAL lock_timeout` ([`prepare_up`] / [`prepare_down`]), so a DDL
//!   statement that queues behind a long transaction gives up after a few
//!   seconds instead of waiting indefinitely while every query on that table
//!   queues behind *it*. Default [`DEFAULT_LOCK_TIMEOUT`]; the environment
//!   variable [`LOCK_TIMEOUT_ENV`] or [`SafetyOptions::lock_timeout`]
//!   changes it. The failure is turned into a message naming the sessions
//!   that hold the locks and what to do.
//! - **Destructive rollbacks**: a `down` that would destroy stored data
//!   (the rows of the tables it drops, the PDFs in `resumes.file_data`)
//!   refuses with an explanation, before anything is changed, unless data
//!   loss is explicitly allowed: [`ALLOW_DATA_LOSS_ENV`]`=1` in the
//!   environment, `--force` on the command line, or [`allow_data_loss`]
//!   from code. `fresh` (which drops every table of the schema without
//!   running any `down`) is guarded the same way: it refuses while any table
//!   of the schema has rows.
//!
//! What each rollback would destroy is listed once, in [`DATA_AT_RISK`].

use std::future::Future;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::guard::search_path;

/// `lock_timeout` used when nothing else is configured.
pub const DEFAULT_LOCK_TIMEOUT: &str = "5s";
/// Environment variable overriding the migrations' `lock_timeout`
/// (any PostgreSQL duration: `500ms`, `5s`, `1min`; `0` waits forever).
pub const LOCK_TIMEOUT_ENV: &str = "MIGRATION_LOCK_TIMEOUT";
/// Environment variable giving how many times `up` retries a migration
/// that waited longer than `lock_timeout` (default
/// [`DEFAULT_LOCK_RETRIES`]; `0` never retries).
pub const LOCK_RETRIES_ENV: &str = "MIGRATION_LOCK_RETRIES";
/// Retries of a migration rolled back by its `lock_timeout`, by default.
pub const DEFAULT_LOCK_RETRIES: u32 = 2;
/// Environment variable that allows rollbacks (and `fresh`) that destroy
/// stored data: `1`, `true` or `yes`.
pub const ALLOW_DATA_LOSS_ENV: &str = "MOCKINTERVIEW_ALLOW_DATA_LOSS";

/// Per-task settings of the guard rails; see [`with_options`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SafetyOptions {
    /// Let rollbacks and `fresh` destroy stored data (like
    /// [`ALLOW_DATA_LOSS_ENV`]`=1`).
    pub allow_data_loss: bool,
    /// `lock_timeout` for every migration; `None` means
    /// [`LOCK_TIMEOUT_ENV`], else [`DEFAULT_LOCK_TIMEOUT`].
    pub lock_timeout: Option<String>,
}

tokio::task_local! {
    static OPTIONS: SafetyOptions;
}

/// Runs `f` (e.g. `Migrator::down(&db, None)`) with `options` in effect.
///
/// The options are task-local: they apply to everything `f` awaits on the
/// current task and to nothing else, so concurrent tests or requests do not
/// see each other's settings.
pub async fn with_options<F: Future>(options: SafetyOptions, f: F) -> F::Output {
    OPTIONS.scope(options, f).await
}

/// Runs `f` with data loss allowed (the library form of `--force`):
///
/// ```no_run
/// # async fn f(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
/// use migration::{Migrator, MigratorTrait};
/// migration::safety::allow_data_loss(Migrator::reset(db)).await?;
/// # Ok(()) }
/// ```
pub async fn allow_data_loss<F: Future>(f: F) -> F::Output {
    let mut options = current_options();
    options.allow_data_loss = true;
    with_options(options, f).await
}

fn current_options() -> SafetyOptions {
    OPTIONS.try_with(Clone::clone).unwrap_or_default()
}

/// Whether data loss is allowed here: [`allow_data_loss`] /
/// [`SafetyOptions::allow_data_loss`] on this task, or
/// [`ALLOW_DATA_LOSS_ENV`] set to `1`, `true` or `yes`.
pub fn data_loss_allowed() -> bool {
    current_options().allow_data_loss
        || std::env::var(ALLOW_DATA_LOSS_ENV).is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
}

/// How many times `up` retries a migration rolled back by its
/// `lock_timeout`: [`LOCK_RETRIES_ENV`], else [`DEFAULT_LOCK_RETRIES`].
pub fn lock_retries() -> u32 {
    std::env::var(LOCK_RETRIES_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_LOCK_RETRIES)
}

/// The `lock_timeout` migrations use here: [`SafetyOptions::lock_timeout`],
/// else [`LOCK_TIMEOUT_ENV`], else [`DEFAULT_LOCK_TIMEOUT`].
pub fn lock_timeout() -> String {
    current_options()
        .lock_timeout
        .or_else(|| {
            std::env::var(LOCK_TIMEOUT_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_LOCK_TIMEOUT.to_owned())
        .trim()
        .to_owned()
}

/// Checks that `value` is a PostgreSQL duration that `lock_timeout`
/// accepts: a number with an optional unit (`us`, `ms`, `s`, `min`, `h`,
/// `d`; none means milliseconds), e.g. `5s`, `500ms`, `1min`, `0`.
///
/// # Errors
/// A message saying what is accepted.
pub fn validate_lock_timeout(value: &str) -> Result<(), String> {
    let v = value.trim();
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    let number_ok = !number.is_empty()
        && number.chars().filter(|c| *c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let unit_ok = matches!(unit.trim(), "" | "us" | "ms" | "s" | "min" | "h" | "d");
    if number_ok && unit_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid lock timeout {value:?} ({LOCK_TIMEOUT_ENV} / --lock-timeout): use a PostgreSQL \
             duration such as 5s, 500ms or 1min (0 waits forever)"
        ))
    }
}

/// Start of every migration's `up`: sets `lock_timeout` for the migration's
/// transaction (`SET LOCAL`, so it ends with the migration), and puts the
/// schema of pgvector on the `search_path` when it lives elsewhere
/// ([`search_path::include_extension_schemas`]).
///
/// # Errors
/// When the configured timeout is invalid, or the statement fails.
pub async fn prepare_up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    set_local_lock_timeout(db).await?;
    search_path::include_extension_schemas(db).await
}

/// Start of every migration's `down`: sets `lock_timeout` like
/// [`prepare_up`], then refuses if the rollback of `migration` would destroy
/// stored data (see [`DATA_AT_RISK`]) and data loss is not allowed.
///
/// The tables concerned are locked (`ACCESS EXCLUSIVE`, which the drop needs
/// anyway) before they are checked, so no row can be written between the
/// check and the drop.
///
/// # Errors
/// [`DbErr::Migration`] explaining what would be lost and how to force it;
/// database errors (a lock timeout included).
pub async fn prepare_down(manager: &SchemaManager<'_>, migration: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    set_local_lock_timeout(db).await?;
    search_path::include_extension_schemas(db).await?;
    let findings = data_at_risk(db, migration, true).await?;
    refuse_unless_allowed(&findings, false)
}

/// Sets the configured [`lock_timeout`] for the current transaction.
///
/// # Errors
/// When the configured timeout is invalid, or the statement fails.
pub async fn set_local_lock_timeout<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let value = lock_timeout();
    validate_lock_timeout(&value).map_err(DbErr::Migration)?;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('lock_timeout', $1, true)",
        [value.into()],
    ))
    .await?;
    Ok(())
}

/// Stored data that rolling back a migration destroys.
#[derive(Clone, Copy, Debug)]
pub struct DataAtRisk {
    /// The migration whose `down` destroys it.
    pub migration: &'static str,
    /// The table holding it.
    pub table: &'static str,
    /// Which rows (SQL condition), `None` for all of them.
    pub rows: Option<&'static str>,
    /// What those rows are, for the message.
    pub what: &'static str,
    /// How to keep the data, for the message.
    pub advice: &'static str,
}

/// Everything the rollbacks destroy. m004's `down` removes triggers only.
pub const DATA_AT_RISK: &[DataAtRisk] = &[
    DataAtRisk {
        migration: "m005_legacy_import",
        table: "legacy_ids",
        rows: None,
        what: "the map from the TypeScript app's integer ids to uuids (written by \
               `migration import`)",
        advice: "old URLs and cache keys that name integer ids stop resolving; export the table \
                 first (pg_dump -t legacy_ids)",
    },
    DataAtRisk {
        migration: "m005_legacy_import",
        table: "resumes",
        rows: Some("is_primary"),
        what: "which resume is each user's primary one (resumes.is_primary)",
        advice: "export them first (SELECT user_id, id FROM resumes WHERE is_primary)",
    },
    DataAtRisk {
        migration: "m003_create_vector_store",
        table: "resume_chunks",
        rows: None,
        what: "resume chunks with their embeddings",
        advice: "they can only be rebuilt by re-embedding every resume",
    },
    DataAtRisk {
        migration: "m002_add_pdf_storage",
        table: "resumes",
        rows: Some("file_data IS NOT NULL"),
        what: "PDFs stored in resumes.file_data",
        advice: "export them first (write each PDF to a file and set resumes.file_path)",
    },
    DataAtRisk {
        migration: "m001_user_profiles",
        table: "resumes",
        rows: None,
        what: "resumes",
        advice: "back the database up first (pg_dump)",
    },
    DataAtRisk {
        migration: "m001_user_profiles",
        table: "user_preferences",
        rows: None,
        what: "interview preferences",
        advice: "back the database up first (pg_dump)",
    },
    DataAtRisk {
        migration: "m001_user_profiles",
        table: "user_profiles",
        rows: None,
        what: "user profiles",
        advice: "back the database up first (pg_dump)",
    },
];

/// Rows counted beyond this are reported as "at least".
const COUNT_CAP: i64 = 100_000;

/// Data found that a rollback (or `fresh`) would destroy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The migration being rolled back (`None` for `fresh`).
    pub migration: Option<String>,
    /// The table holding the data.
    pub table: String,
    /// What the rows are.
    pub what: String,
    /// Which rows, if not all.
    pub rows_where: Option<String>,
    /// How many rows (counting stops at 100,000).
    pub rows: i64,
    /// How to keep them.
    pub advice: String,
}

/// What rolling back `migration` would destroy right now. With `lock`, the
/// tables are locked first (inside the migration's transaction).
///
/// # Errors
/// Database errors.
pub async fn data_at_risk<C: ConnectionTrait>(
    db: &C,
    migration: &str,
    lock: bool,
) -> Result<Vec<Finding>, DbErr> {
    let mut findings = Vec::new();
    for risk in DATA_AT_RISK.iter().filter(|r| r.migration == migration) {
        if !table_exists(db, risk.table).await? {
            continue;
        }
        if lock {
            db.execute_unprepared(&format!(
                "LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
                risk.table
            ))
            .await?;
        }
        let rows = count_rows(db, risk.table, risk.rows).await?;
        if rows > 0 {
            findings.push(Finding {
                migration: Some(migration.to_owned()),
                table: risk.table.to_owned(),
                what: risk.what.to_owned(),
                rows_where: risk.rows.map(str::to_owned),
                rows,
                advice: risk.advice.to_owned(),
            });
        }
    }
    Ok(findings)
}

/// What `fresh` would destroy: the rows of every table in the current
/// schema (it drops them all, not only this project's), but
/// `embedding_models`: m010 writes its row itself, and what it declares
/// (the model of unstamped chunks) matters only while chunks exist, whose
/// rows are counted.
///
/// # Errors
/// Database errors.
pub async fn data_at_risk_fresh<C: ConnectionTrait>(db: &C) -> Result<Vec<Finding>, DbErr> {
    let tables = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT tablename::text AS name FROM pg_tables \
             WHERE schemaname = current_schema() \
               AND tablename NOT IN ('seaql_migrations', 'embedding_models') \
             ORDER BY 1",
        ))
        .await?;
    let mut findings = Vec::new();
    for row in tables {
        let table: String = row.try_get("", "name")?;
        let rows = count_rows(db, &table, None).await?;
        if rows > 0 {
            findings.push(Finding {
                migration: None,
                what: "rows".into(),
                table,
                rows_where: None,
                rows,
                advice: "back the database up first (pg_dump)".into(),
            });
        }
    }
    Ok(findings)
}

/// Refuses (before changing anything) when rolling back `migrations`, in
/// that order, would destroy stored data and data loss is not allowed.
///
/// # Errors
/// [`DbErr::Migration`] explaining what would be lost; database errors.
pub async fn check_rollbacks<C: ConnectionTrait>(
    db: &C,
    migrations: &[String],
) -> Result<(), DbErr> {
    if data_loss_allowed() {
        return Ok(());
    }
    let mut findings = Vec::new();
    for name in migrations {
        findings.extend(data_at_risk(db, name, false).await?);
    }
    refuse_unless_allowed(&findings, true)
}

/// Refuses `fresh` while any table of the schema has rows, unless data loss
/// is allowed.
///
/// # Errors
/// As [`check_rollbacks`].
pub async fn check_fresh<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    if data_loss_allowed() {
        return Ok(());
    }
    refuse_unless_allowed(&data_at_risk_fresh(db).await?, true)
}

fn refuse_unless_allowed(findings: &[Finding], before_any_change: bool) -> Result<(), DbErr> {
    if findings.is_empty() || data_loss_allowed() {
        return Ok(());
    }
    Err(DbErr::Migration(refusal_message(
        findings,
        before_any_change,
    )))
}

/// The explanation of a refused destructive operation; `before_any_change`
/// when it was refused before anything ran (otherwise only the refusing
/// migration's transaction was rolled back).
pub fn refusal_message(findings: &[Finding], before_any_change: bool) -> String {
    let what = match findings.iter().find_map(|f| f.migration.as_deref()) {
        Some(_) => {
            let mut names: Vec<&str> = findings
                .iter()
                .filter_map(|f| f.migration.as_deref())
                .collect();
            names.dedup();
            format!("roll back {}", names.join(", "))
        }
        None => "run `fresh` (it drops every table of the schema)".to_owned(),
    };
    let mut msg = format!("refusing to {what}: it would destroy stored data:\n");
    for f in findings {
        let count = if f.rows >= COUNT_CAP {
            format!("at least {}", f.rows)
        } else {
            f.rows.to_string()
        };
        let rows = match &f.rows_where {
            Some(cond) => format!("{count} row(s) of {} where {cond}", f.table),
            None => format!("{count} row(s) of {}", f.table),
        };
        match &f.migration {
            Some(m) => msg.push_str(&format!(
                "  - {rows}: {}, dropped by the down of {m}; {}\n",
                f.what, f.advice
            )),
            None => msg.push_str(&format!("  - {rows}\n")),
        }
    }
    msg.push_str(if before_any_change {
        "Nothing was changed. "
    } else {
        "That rollback was cancelled (its transaction rolled back). "
    });
    msg.push_str(&format!(
        "If losing this data is intended, back the database up \
         (pg_dump), then run again with --force (migration binary) or with \
         {ALLOW_DATA_LOSS_ENV}=1 in the environment \
         (migration::safety::allow_data_loss(...) from code)."
    ));
    msg
}

async fn table_exists<C: ConnectionTrait>(db: &C, table: &str) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_tables \
             WHERE schemaname = current_schema() AND tablename = $1) AS found",
            [table.into()],
        ))
        .await?;
    match row {
        Some(r) => r.try_get("", "found"),
        None => Ok(false),
    }
}

async fn count_rows<C: ConnectionTrait>(
    db: &C,
    table: &str,
    condition: Option<&str>,
) -> Result<i64, DbErr> {
    let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
    let quoted = table.replace('"', "\"\"");
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT count(*) AS n FROM (SELECT 1 FROM \"{quoted}\"{filter} LIMIT {COUNT_CAP}) s"
            ),
        ))
        .await?;
    match row {
        Some(r) => r.try_get("", "n"),
        None => Ok(0),
    }
}

/// True for PostgreSQL's `lock_not_available` (SQLSTATE 55P03), which a
/// statement cancelled by `lock_timeout` raises.
pub fn is_lock_timeout(err: &DbErr) -> bool {
    pgconn::sqlstate(err).as_deref() == Some("55P03") || err.to_string().contains("lock timeout")
}

/// Turns a lock-timeout failure of `migration` into an explanation naming
/// the sessions that hold locks on the schema's tables and what to do;
/// returns every other error unchanged.
pub async fn explain_lock_timeout<C: ConnectionTrait>(
    db: &C,
    err: DbErr,
    migration: Option<&str>,
) -> DbErr {
    if !is_lock_timeout(&err) {
        return err;
    }
    let who = migration.map_or_else(
        || "a migration statement".to_owned(),
        |m| format!("migration '{m}'"),
    );
    let timeout = lock_timeout();
    let mut msg = format!(
        "{who} waited longer than lock_timeout = {timeout} for a table lock and was cancelled; \
         its transaction was rolled back, so that step left the database as it was. "
    );
    match lock_holders(db).await {
        Ok(holders) if !holders.is_empty() => {
            msg.push_str("Sessions holding locks on this schema's tables: ");
            msg.push_str(&holders.join("; "));
            msg.push_str(". ");
        }
        Ok(_) => msg.push_str(
            "The transaction that held the lock has ended since (look for long transactions in \
             pg_stat_activity if it happens again). ",
        ),
        Err(e) => msg.push_str(&format!("(could not list the lock holders: {e}) ")),
    }
    msg.push_str(&format!(
        "Let those transactions finish, or end one with `SELECT pg_terminate_backend(<pid>);`, \
         then run the migration again (deploy when traffic is low); to wait longer, set \
         {LOCK_TIMEOUT_ENV} (e.g. {LOCK_TIMEOUT_ENV}=30s) or pass --lock-timeout 30s. \
         PostgreSQL said: {err}"
    ));
    DbErr::Migration(msg)
}

async fn lock_holders<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT a.pid, coalesce(a.usename::text, '?') AS usename, \
                    coalesce(a.application_name, '') AS app, coalesce(a.state, '?') AS state, \
                    coalesce(extract(epoch FROM now() - a.xact_start)::bigint, 0) AS secs, \
                    left(coalesce(a.query, ''), 120) AS query, \
                    string_agg(DISTINCT c.relname::text, ', ') AS tables \
             FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             JOIN pg_class c ON c.oid = l.relation \
             WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() \
               AND c.relkind IN ('r', 'p') \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
             GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY secs DESC LIMIT 5",
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let pid: i32 = r.try_get("", "pid")?;
            let user: String = r.try_get("", "usename")?;
            let app: String = r.try_get("", "app")?;
            let state: String = r.try_get("", "state")?;
            let secs: i64 = r.try_get("", "secs")?;
            let query: String = r.try_get("", "query")?;
            let tables: String = r.try_get("", "tables")?;
            let app = if app.is_empty() {
                String::new()
            } else {
                format!(", application {app}")
            };
            Ok(format!(
                "pid {pid} (role {user}{app}, {state}, transaction open {secs}s, \
                 locks {tables}, last query: {})",
                query.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeout_values() {
        for ok in [
            "5s", "500ms", "1min", "0", "250", " 2 s ", "1.5s", "1h", "10us",
        ] {
            assert!(validate_lock_timeout(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "s",
            "five",
            "5 seconds",
            "5s; DROP TABLE x",
            "-1s",
            "1.2.3s",
        ] {
            assert!(validate_lock_timeout(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn options_are_task_local() {
        assert!(!current_options().allow_data_loss);
        let inside = allow_data_loss(async { current_options().allow_data_loss }).await;
        assert!(inside);
        assert!(!current_options().allow_data_loss);
        let timeout = with_options(
            SafetyOptions {
                allow_data_loss: false,
                lock_timeout: Some("42ms".into()),
            },
            async { allow_data_loss(async { lock_timeout() }).await },
        )
        .await;
        assert_eq!(timeout, "42ms", "allow_data_loss keeps the other options");
    }

    #[test]
    fn every_risk_names_a_known_migration() {
        let names: Vec<String> = {
            use crate::{Migrator, MigratorTrait};
            Migrator::migrations()
                .iter()
                .map(|m| m.name().to_owned())
                .collect()
        };
        for risk in DATA_AT_RISK {
            assert!(names.iter().any(|n| n == risk.migration), "{risk:?}");
        }
    }
}
