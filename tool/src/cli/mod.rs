//! The `migration` binary's command line: what `cargo run -p
//! migration-tool -- <command>` (or `scripts/migrate <command>`) runs.
//!
//! It accepts every subcommand and flag of sea-orm-migration's CLI (`init`, `generate`,
//! `up [-n]`, `down [-n]`, `status`, `fresh`, `refresh`, `reset`, `-u`,
//! `-s`, `-v`) and adds:
//! - `verify [--json]`: check the live database against the migrations;
//! - `up --dry-run [--json]`: apply in a transaction, report, roll back;
//! - `--force` on `down`, `refresh`, `reset`, `fresh`: allow data loss;
//! - `--lock-timeout` (`MIGRATION_LOCK_TIMEOUT`): the migrations' lock_timeout;
//! - `roles --owner <role> --app <role> [--apply]`: the SQL of the
//!   owner / application role split;
//! - `settings --role <role> [--statement-timeout-ms N] [--hnsw-ef-search
//!   N] [--apply]`: the library's settings as role settings;
//! - `doctor`: why a connection fails, the pooler's mode, the server's
//!   pgvector and the pending migrations;
//! - `import --from <legacy-url> [--dry-run] [--report FILE]
//!   [--leave-unowned-tables] [--source-timezone ZONE]`: copy a database of
//!   the TypeScript app into the (empty) database of the URL
//!   ([`crate::import`]; it takes the migration lock itself);
//! - `MIGRATION_DATABASE_URL`, preferred over `DATABASE_URL` (`-u` wins
//!   over both): the migrations' own URL (the owner role, ideally a direct
//!   connection) while the application uses `DATABASE_URL`.
//!
//! Every command runs in one transaction on the binary's single connection,
//! with the schema (`-s`, or a `search_path` in the URL's `options`) and the
//! URL's other settings set inside it, so it works through a
//! transaction-mode pooler: `status` and `verify` in a read-only one (they
//! never write, so they work as an application role and on a standby),
//! every other command in one that holds the migration advisory lock
//! ([`migration::lock`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::doctor as diagnose;
use clap::{Parser, Subcommand};
use pgconn::DbUrl;
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};

use crate::import::{self, ImportOptions};
use crate::roles::RoleSplit;
use crate::{dry_run, verify};
use migration::Migrator;
use migration::lock::{self, RunOptions};
use migration::safety::{self, SafetyOptions};
use migration::status::MigrationsStatus;
use mockinterview_db::health::Readiness;

pub mod connect;

/// Where `init` and `generate` write, as sea-orm-migration's CLI does: the
/// working directory (`generate` adds `src/mYYYYMMDD_HHMMSS_<name>.rs` and a
/// `mod` line to `src/lib.rs`). Run from `migration/`, then move the file
/// into `src/migrations/` under the next free number and list it there.
const MIGRATION_DIR: &str = "./";

#[derive(Parser)]
#[command(
    version,
    about = "Migrations of the mock-interview database (sea-orm-migration CLI plus verify, dry run and guard rails)"
)]
struct Cli {
    #[arg(short = 'v', long, global = true, help = "Show debug messages")]
    verbose: bool,

    #[arg(
        global = true,
        short = 's',
        long,
        env = "DATABASE_SCHEMA",
        long_help = "Database schema (search_path, e.g. `app` or `app,public`), set inside each \
                    command's transaction. Default: the search_path of the URL's `options` \
                    (?options=-c%20search_path%3Dapp), else the role's (usually 'public'). \
                    pgvector may live in another schema."
    )]
    database_schema: Option<String>,

    #[arg(
        global = true,
        short = 'u',
        long,
        help = "Database URL [default: $MIGRATION_DATABASE_URL, else $DATABASE_URL]"
    )]
    database_url: Option<String>,

    #[arg(
        global = true,
        long,
        env = "MIGRATION_LOCK_TIMEOUT",
        default_value = safety::DEFAULT_LOCK_TIMEOUT,
        help = "How long a migration statement may wait for a table lock before it gives up \
                (PostgreSQL lock_timeout: 500ms, 5s, 1min; 0 waits forever)"
    )]
    lock_timeout: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(about = "Initialize migration directory", display_order = 10)]
    Init,
    #[command(about = "Generate a new, empty migration", display_order = 20)]
    Generate {
        #[arg(required = true, help = "Name of the new migration")]
        migration_name: String,

        #[arg(
            long,
            default_value = "true",
            help = "Generate migration file based on Utc time",
            conflicts_with = "local_time",
            display_order = 1001
        )]
        universal_time: bool,

        #[arg(
            long,
            help = "Generate migration file based on Local time",
            conflicts_with = "universal_time",
            display_order = 1002
        )]
        local_time: bool,
    },
    #[command(
        about = "Drop all tables from the database, then reapply all migrations",
        display_order = 30
    )]
    Fresh {
        #[arg(long, help = FORCE_HELP)]
        force: bool,
    },
    #[command(
        about = "Rollback all applied migrations, then reapply all migrations",
        display_order = 40
    )]
    Refresh {
        #[arg(long, help = FORCE_HELP)]
        force: bool,
    },
    #[command(about = "Rollback all applied migrations", display_order = 50)]
    Reset {
        #[arg(long, help = FORCE_HELP)]
        force: bool,
    },
    #[command(about = "Check the status of all migrations", display_order = 60)]
    Status,
    #[command(about = "Apply pending migrations", display_order = 70)]
    Up {
        #[arg(short, long, help = "Number of pending migrations to apply")]
        num: Option<u32>,
        #[arg(
            long,
            help = "Apply inside a transaction, report what would change, and roll back"
        )]
        dry_run: bool,
        #[arg(long, requires = "dry_run", help = "Print the dry-run report as JSON")]
        json: bool,
    },
    #[command(about = "Rollback applied migrations", display_order = 80)]
    Down {
        #[arg(
            short,
            long,
            default_value = "1",
            help = "Number of applied migrations to be rolled back",
            display_order = 90
        )]
        num: u32,
        #[arg(long, help = FORCE_HELP)]
        force: bool,
    },
    #[command(
        about = "Check the database against what the migrations produce (exit 1 on any difference)",
        display_order = 85
    )]
    Verify {
        #[arg(long, help = "Print the report as JSON")]
        json: bool,
    },
    #[command(
        about = "Diagnose the connection and the database: reachability, TLS and login \
                 (each failure explained), pooler mode, server and pgvector versions, \
                 migrations (exit 1 on a failure)",
        display_order = 84
    )]
    Doctor,
    #[command(
        about = "Print (or --apply) the role settings that make the library's settings hold \
                 without being sent per transaction",
        long_about = "Print (or --apply) `ALTER ROLE <role> IN DATABASE <db> SET ...` for every \
                      setting a library handle configured like this applies: the schema list \
                      (-s / DATABASE_SCHEMA), --statement-timeout-ms, --hnsw-ef-search and \
                      hnsw.iterative_scan (pgvector 0.8+). Role settings survive any pooler; \
                      the library finds them held at connect and stops sending them; with a \
                      fixed --hnsw-ef-search too, a lone statement needs no transaction of its \
                      own (Db::settings_applied_per_transaction is then empty). New connections \
                      get them; \
                      restart the application (or let its pool recycle) after applying.",
        display_order = 91
    )]
    Settings {
        #[arg(long, help = "The application's role")]
        role: String,
        #[arg(
            long,
            help = "statement_timeout in milliseconds (DbConfig::statement_timeout)"
        )]
        statement_timeout_ms: Option<u64>,
        #[arg(long, help = "A fixed hnsw.ef_search (DbConfig::hnsw_ef_search)")]
        hnsw_ef_search: Option<u32>,
        #[arg(
            long,
            help = "Run the SQL on the URL's database instead of printing it"
        )]
        apply: bool,
    },
    #[command(
        about = "Print (or --apply) the SQL of the owner / application role split",
        long_about = "Print the SQL that creates an owner role (owns the schema, runs the \
                      migrations) and an application role (reads and writes rows only), with \
                      the grants and default privileges for tables later migrations create. \
                      Run it once as a superuser (it creates pgvector); it is idempotent. \
                      The schema is -s (default public), the database the URL's.",
        display_order = 90
    )]
    Roles {
        #[arg(long, help = "Owner / migrator role")]
        owner: String,
        #[arg(long, help = "Application role")]
        app: String,
        #[arg(long, help = "Database [default: the URL's]")]
        database: Option<String>,
        #[arg(
            long,
            help = "Run the SQL on the URL's database (as a superuser) instead of printing it"
        )]
        apply: bool,
    },
    #[command(
        about = "Move the corpus to a new embedding model while the application serves",
        long_about = "Re-embed every chunk with a new model beside the serving one (start, run), \
                      then switch atomically, undo until finish, or cancel; status reports \
                      progress per model. Resumable at any point (kill -9 included). Runs as the \
                      schema owner. See docs/operations.md, \"Changing the embedding model\".",
        display_order = 87
    )]
    Reembed {
        #[command(subcommand)]
        action: crate::reembed::Action,
    },
    #[command(
        about = "Copy a database of the TypeScript app into this one, accounting for every row",
        long_about = "Copy a database of the TypeScript app (schema versions v0 to v5) into the \
                      database of the URL (-u, MIGRATION_DATABASE_URL or DATABASE_URL), which \
                      must hold no application rows: it is migrated first, then written in one \
                      transaction (a failure leaves it empty). The source is read in one \
                      read-only snapshot and never written. Every legacy row is imported, \
                      imported with normalized values, or excluded; the report lists every \
                      normalization and every exclusion (with the full original row) and the \
                      checksums of the copied texts, embeddings and PDFs. Run it with --dry-run \
                      first. See the README, \"Coming from the TypeScript app\".",
        display_order = 86
    )]
    Import {
        #[arg(
            long,
            value_name = "LEGACY_URL",
            help = "The TypeScript app's database, postgres://user:password@host:5432/db (only read)"
        )]
        from: String,
        #[arg(
            long,
            help = "Read and decide everything, print the report, write nothing"
        )]
        dry_run: bool,
        #[arg(
            long,
            value_name = "FILE",
            help = "Also write the report as JSON to FILE"
        )]
        report: Option<PathBuf>,
        #[arg(
            long,
            help = "Acknowledge that tables outside this data layer (the interview and HR tables \
                    of v4 and v5) are not imported and stay in the source"
        )]
        leave_unowned_tables: bool,
        #[arg(
            long,
            value_name = "ZONE",
            help = "Time zone the app's timestamps were written in (default: the source \
                    server's TimeZone setting)"
        )]
        source_timezone: Option<String>,
        #[arg(
            long,
            value_name = "NAME",
            requires = "embedding_dimensions",
            help = "The model that made the source's embeddings, e.g. gemini-embedding-001 \
                    (default: the one the detected version used; required for v1 and v2 \
                    databases, and v0 tables that outlived the app's switch of model)"
        )]
        embedding_model: Option<String>,
        #[arg(
            long,
            value_name = "N",
            requires = "embedding_model",
            help = "Dimension count of --embedding-model's vectors (the app's: 768)"
        )]
        embedding_dimensions: Option<u32>,
    },
}

const FORCE_HELP: &str = "Allow destroying stored data (same as MOCKINTERVIEW_ALLOW_DATA_LOSS=1)";

/// Parses the command line, runs the command and reports: exit status 0 on
/// success, 1 with the reason on stderr on any failure (`verify` included,
/// when anything differs).
pub async fn run() -> ExitCode {
    dotenvy::dotenv().ok();
    let cli = Cli::parse();

    match &cli.command {
        Some(Command::Init) => {
            return report(sea_orm_cli::run_migrate_init(MIGRATION_DIR).map_err(|e| e.to_string()));
        }
        Some(Command::Generate {
            migration_name,
            local_time,
            ..
        }) => {
            return report(
                sea_orm_cli::run_migrate_generate(MIGRATION_DIR, migration_name, !*local_time)
                    .map_err(|e| e.to_string()),
            );
        }
        _ => {}
    }

    let json = matches!(
        cli.command,
        Some(Command::Verify { json: true } | Command::Up { json: true, .. })
    );
    // The migrator's "has been applied" lines would mislead in a dry run.
    let dry_run = matches!(cli.command, Some(Command::Up { dry_run: true, .. }));
    setup_tracing(cli.verbose, json, dry_run);
    report(run_database_command(cli).await)
}

fn report(outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The URL and where it came from: `-u`, else `MIGRATION_DATABASE_URL`,
/// else `DATABASE_URL` (environment or `.env`).
fn resolve_url(flag: Option<&str>) -> Result<(String, &'static str), String> {
    let set = |v: Option<String>| v.filter(|u| !u.trim().is_empty());
    if let Some(url) = set(flag.map(str::to_owned)) {
        return Ok((url, "-u"));
    }
    if let Some(url) = set(std::env::var(MIGRATION_DATABASE_URL_ENV).ok()) {
        return Ok((url, MIGRATION_DATABASE_URL_ENV));
    }
    if let Some(url) = set(std::env::var(pgconn::DATABASE_URL_ENV).ok()) {
        return Ok((url, pgconn::DATABASE_URL_ENV));
    }
    Err(format!(
        "no database URL: pass -u postgres://user:password@host:5432/database, or set \
         {MIGRATION_DATABASE_URL_ENV} (the migrations' own URL) or DATABASE_URL (the \
         repository's .env names the local database that scripts/db-up provisions)"
    ))
}

/// The environment variable naming the migrations' database URL, preferred
/// over `DATABASE_URL`.
pub const MIGRATION_DATABASE_URL_ENV: &str = "MIGRATION_DATABASE_URL";

/// Runs a database subcommand. `Err("")` means "failed, already reported".
async fn run_database_command(cli: Cli) -> Result<(), String> {
    if let Some(Command::Roles {
        database: Some(database),
        apply: false,
        owner,
        app,
    }) = &cli.command
    {
        // Printing the SQL for a named database needs no URL.
        let schema = cli.database_schema.as_deref().unwrap_or("public");
        print!(
            "{}",
            RoleSplit::new(owner, app, database)
                .in_schema(first_schema(schema))
                .sql()?
        );
        return Ok(());
    }
    let (raw, url_name) = resolve_url(cli.database_url.as_deref())?;
    let url = DbUrl::parse(&raw).map_err(|e| format!("{e} (from {url_name})"))?;
    safety::validate_lock_timeout(&cli.lock_timeout)?;
    // The URL's `options` settings are applied inside the transaction (a
    // pooler refuses or drops them at connection start); -s wins over its
    // search_path.
    let mut settings = url
        .startup_settings()
        .map_err(|e| format!("{e} (from {url_name})"))?;
    let url_schema = settings
        .iter()
        .position(|(name, _)| name == "search_path")
        .map(|i| settings.remove(i).1);
    let schema = cli
        .database_schema
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or(url_schema);
    let run = RunOptions { schema, settings };

    if let Some(Command::Reembed { action }) = &cli.command {
        return crate::reembed::run(url.as_str(), run.schema.as_deref(), action.clone()).await;
    }
    let command = cli.command.unwrap_or(Command::Up {
        num: None,
        dry_run: false,
        json: false,
    });
    if let Command::Roles {
        owner,
        app,
        database,
        apply,
    } = &command
    {
        let split = RoleSplit::new(
            owner,
            app,
            database
                .clone()
                .unwrap_or_else(|| url.database().to_owned()),
        );
        let split = match run.schema.as_deref() {
            Some(schema) => split.in_schema(first_schema(schema)),
            None => split,
        };
        let sql = split.sql()?;
        if !*apply {
            print!("{sql}");
            return Ok(());
        }
        let conn = connect::connect(&url, url_name, cli.verbose)
            .await
            .map_err(|f| f.message())?;
        conn.db.execute_unprepared(&sql).await.map_err(message)?;
        println!(
            "roles {owner:?} (owner) and {app:?} (application) are set up in database {:?}, \
             schema {:?}; set their passwords with ALTER ROLE ... PASSWORD",
            split.database, split.schema
        );
        return Ok(());
    }

    let conn = connect::connect(&url, url_name, cli.verbose)
        .await
        .map_err(|f| f.message())?;
    let db = &conn.db;
    // A statement that failed because of where the connection goes (a
    // standby, a pooler) is explained as such.
    let explain = |err: DbErr| match diagnose::statement_failure(&url, &err) {
        Some(failure) => failure.with_url_name(url_name).message(),
        None => message(err),
    };

    match command {
        Command::Import {
            from,
            dry_run,
            report,
            leave_unowned_tables,
            source_timezone,
            embedding_model,
            embedding_dimensions,
        } => {
            let from = DbUrl::parse(&from).map_err(|e| format!("--from: {e}"))?;
            let embedding_model = match (embedding_model, embedding_dimensions) {
                (Some(name), Some(dims)) => Some(
                    mockinterview_db::EmbeddingModel::new(name, dims)
                        .map_err(|e| format!("--embedding-model: {e}"))?,
                ),
                _ => None,
            };
            let options = ImportOptions {
                dry_run,
                leave_unowned_tables,
                source_timezone,
                embedding_model,
                run: run.clone(),
                ..ImportOptions::new(from)
            };
            let safety = SafetyOptions {
                allow_data_loss: false,
                lock_timeout: Some(cli.lock_timeout.trim().to_owned()),
            };
            safety::with_options(safety, run_import(db, &options, report)).await
        }
        Command::Verify { json } => {
            let txn = run.begin_read_only(db).await.map_err(explain)?;
            let report = verify::verify(&txn).await.map_err(explain)?;
            txn.commit().await.map_err(explain)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                println!("{report}");
            }
            if report.ok {
                Ok(())
            } else {
                Err(String::new())
            }
        }
        Command::Settings {
            role,
            statement_timeout_ms,
            hnsw_ef_search,
            apply,
        } => {
            let sql = role_settings_sql(
                db,
                &url,
                run.schema.as_deref(),
                &role,
                statement_timeout_ms,
                hnsw_ef_search,
            )
            .await
            .map_err(explain)?;
            if apply {
                db.execute_unprepared(&sql).await.map_err(explain)?;
                println!(
                    "role {role:?} now holds the library's settings in database {:?}",
                    url.database()
                );
            } else {
                print!("{sql}");
            }
            Ok(())
        }
        Command::Doctor => {
            let txn = run.begin_read_only(db).await.map_err(explain)?;
            let findings = doctor(&txn, &url, conn.pooling).await.map_err(explain)?;
            txn.commit().await.map_err(explain)?;
            for line in &findings.lines {
                println!("{line}");
            }
            if findings.problems == 0 {
                println!("doctor: no problem found");
                Ok(())
            } else {
                Err(format!(
                    "doctor: {} problem(s) found (see above)",
                    findings.problems
                ))
            }
        }
        Command::Status => {
            let txn = run.begin_read_only(db).await.map_err(explain)?;
            let status = MigrationsStatus::read(&txn).await.map_err(explain)?;
            txn.commit().await.map_err(explain)?;
            print_status(&status)
        }
        command => {
            let force = matches!(
                command,
                Command::Down { force: true, .. }
                    | Command::Refresh { force: true }
                    | Command::Reset { force: true }
                    | Command::Fresh { force: true }
            );
            let options = SafetyOptions {
                allow_data_loss: force,
                lock_timeout: Some(cli.lock_timeout.trim().to_owned()),
            };
            match command {
                // One locked transaction per migration (lock::up_locked).
                Command::Up {
                    num,
                    dry_run: false,
                    ..
                } => safety::with_options(options, lock::up_locked_with(db, &run, num)).await,
                command => {
                    safety::with_options(
                        options,
                        lock::run_locked_with(db, &run, async |txn| execute(txn, command).await),
                    )
                    .await
                }
            }
            .map_err(explain)
        }
    }
}

/// The schema that receives the objects: the first of a `-s` list, unquoted.
fn first_schema(schema: &str) -> &str {
    schema
        .split(',')
        .next()
        .unwrap_or(schema)
        .trim()
        .trim_matches('"')
}

/// `status`, as sea-orm-migration prints it (same lines, same log target),
/// from a read-only reading.
/// `ALTER ROLE ... IN DATABASE ... SET` for each setting a library handle
/// configured with these values applies
/// ([`mockinterview_db::settings::role_settings`], one definition).
async fn role_settings_sql(
    db: &DatabaseConnection,
    url: &DbUrl,
    schema: Option<&str>,
    role: &str,
    statement_timeout_ms: Option<u64>,
    hnsw_ef_search: Option<u32>,
) -> Result<String, DbErr> {
    // Read as the library reads it (where pgvector lives, its version).
    let server = Readiness::read(db).await.map_err(library_err)?;
    let mut config = mockinterview_db::DbConfig::new(url.as_str());
    config.schema = schema.map(str::to_owned);
    config.statement_timeout = statement_timeout_ms.map(std::time::Duration::from_millis);
    config.hnsw_ef_search = hnsw_ef_search;
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let settings = mockinterview_db::settings::role_settings(
        &config,
        server.pgvector_schema.as_deref(),
        server.pgvector_version.as_deref(),
    );
    Ok(settings
        .iter()
        .map(|(name, value)| {
            // Names are the library's own (`search_path`, `hnsw.ef_search`, ...).
            format!(
                "ALTER ROLE {} IN DATABASE {} SET {name} = {};\n",
                ident(role),
                ident(url.database()),
                literal(value)
            )
        })
        .collect())
}

/// A library error as the migrator's.
fn library_err(e: mockinterview_db::Error) -> DbErr {
    match e {
        mockinterview_db::Error::Database(e) => e,
        other => DbErr::Custom(other.to_string()),
    }
}

/// What `doctor` found once connected (a failure to connect is reported,
/// classified, before this runs).
struct Findings {
    lines: Vec<String>,
    problems: usize,
}

/// The checks of `doctor` on a connected database, in a read-only
/// transaction.
async fn doctor(
    txn: &DatabaseTransaction,
    url: &DbUrl,
    pooling: diagnose::Pooling,
) -> Result<Findings, DbErr> {
    let mut f = Findings {
        lines: Vec::new(),
        problems: 0,
    };
    let ok = |f: &mut Findings, line: String| f.lines.push(format!("ok       {line}"));
    let problem = |f: &mut Findings, line: String| {
        f.problems += 1;
        f.lines.push(format!("PROBLEM  {line}"));
    };
    ok(
        &mut f,
        format!("connected to {} as {}", url.target(), url.user()),
    );
    ok(
        &mut f,
        match pooling {
            diagnose::Pooling::Direct => {
                "direct connection or session-mode pooler: connection state persists".to_owned()
            }
            diagnose::Pooling::Transaction => "transaction-mode pooler that keeps prepared \
                 statements: the library applies its settings per transaction"
                .to_owned(),
        },
    );
    let server = Readiness::read(txn).await.map_err(library_err)?;
    let standby: bool = txn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS standby",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?
        .try_get("", "standby")?;
    ok(&mut f, format!("PostgreSQL {}", server.server_version));
    if standby {
        problem(
            &mut f,
            "the server is a read-only hot standby: migrations and writes need the primary"
                .to_owned(),
        );
    }
    match (
        server.pgvector_version.clone(),
        server.pgvector_available_version.clone(),
    ) {
        (Some(v), _) => {
            let bugs = server.pgvector_known_bugs();
            if bugs.is_empty() {
                ok(&mut f, format!("pgvector {v} installed in this database"));
            } else {
                for bug in bugs {
                    problem(
                        &mut f,
                        format!(
                            "pgvector {v} has a known bug: {bug} (CHANGELOG: {})",
                            bug.changelog
                        ),
                    );
                }
                f.lines.push(format!(
                    "         what to do: {}",
                    mockinterview_db::health::PGVECTOR_UPGRADE_ADVICE
                ));
            }
        }
        (None, Some(v)) => problem(
            &mut f,
            format!(
                "pgvector {v} is available on the server but not created in this database: \
                 `migration up` creates it (as a role that may), or a superuser runs \
                 CREATE EXTENSION vector"
            ),
        ),
        (None, None) => problem(
            &mut f,
            "the server has no pgvector files: install pgvector on the server (a managed \
             server's extension list, or the distribution's package)"
                .to_owned(),
        ),
    }
    let status = MigrationsStatus::read(txn).await?;
    if status.pending.is_empty() {
        ok(
            &mut f,
            format!("{} migrations applied, none pending", status.applied.len()),
        );
    } else {
        problem(
            &mut f,
            format!(
                "pending migrations: {} (run `migration up`)",
                status.pending.join(", ")
            ),
        );
    }
    if !status.unknown.is_empty() {
        problem(
            &mut f,
            format!(
                "migrations applied by a newer release: {} (use that release's tool)",
                status.unknown.join(", ")
            ),
        );
    }
    Ok(f)
}

fn print_status(status: &MigrationsStatus) -> Result<(), String> {
    const TARGET: &str = "sea_orm_migration::migrator";
    tracing::info!(target: TARGET, "Checking migration status");
    for m in Migrator::migrations() {
        let state = if status.applied.iter().any(|a| a == m.name()) {
            "Applied"
        } else {
            "Pending"
        };
        tracing::info!(target: TARGET, "Migration '{}'... {state}", m.name());
    }
    if status.unknown.is_empty() {
        Ok(())
    } else {
        Err(status
            .unknown
            .iter()
            .map(|u| {
                format!(
                    "Migration file of version '{u}' is missing, this migration has been \
                     applied but its file is missing (a newer version of the migrator applied \
                     it: use that version)"
                )
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

/// One command, inside the locked transaction.
async fn execute(txn: &DatabaseTransaction, command: Command) -> Result<(), DbErr> {
    match command {
        Command::Fresh { .. } => Migrator::fresh(txn).await,
        Command::Refresh { .. } => Migrator::refresh(txn).await,
        Command::Reset { .. } => Migrator::reset(txn).await,
        Command::Up {
            num,
            dry_run: true,
            json,
        } => {
            let report = dry_run::dry_run_up(txn, num).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| DbErr::Custom(e.to_string()))?
                );
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Command::Up { .. } => unreachable!("handled before: one transaction per migration"),
        Command::Down { num, .. } => Migrator::down(txn, Some(num)).await,
        Command::Init
        | Command::Generate { .. }
        | Command::Doctor
        | Command::Settings { .. }
        | Command::Verify { .. }
        | Command::Status
        | Command::Roles { .. }
        | Command::Reembed { .. }
        | Command::Import { .. } => {
            unreachable!("handled before")
        }
    }
}

/// `import`: runs it, prints the report, writes the JSON file.
async fn run_import(
    db: &DatabaseConnection,
    options: &ImportOptions,
    report_file: Option<PathBuf>,
) -> Result<(), String> {
    let report = import::import(db, options)
        .await
        .map_err(|e| e.to_string())?;
    println!("{report}");
    if let Some(path) = report_file {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&path, json)
            .map_err(|e| format!("could not write the report to {}: {e}", path.display()))?;
        println!("Report written to {}", path.display());
    }
    Ok(())
}

/// The error's own text, without sea-orm's "Migration Error: " style prefix
/// when the text is already a full explanation.
fn message(err: DbErr) -> String {
    match err {
        DbErr::Migration(m) | DbErr::Custom(m) => m,
        DbErr::Conn(sea_orm_migration::sea_orm::RuntimeErr::Internal(m)) => m,
        other => other.to_string(),
    }
}

/// Same output as sea-orm-migration's CLI: progress lines on stdout without
/// time or level; everything (`debug`) with `-v`. With `--json`, logs go to
/// stderr so stdout is only the JSON document. A dry run leaves out the
/// migrator's progress lines (its report says what would happen).
fn setup_tracing(verbose: bool, json: bool, dry_run: bool) {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter = if verbose {
        "debug"
    } else if dry_run {
        "migration=info"
    } else {
        "sea_orm_migration=info,migration=info"
    };
    let filter = EnvFilter::try_new(filter).expect("valid filter");
    let writer = move || -> Box<dyn std::io::Write> {
        if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    };
    if verbose {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt::layer().with_writer(writer))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_level(false)
                    .without_time()
                    .with_writer(writer),
            )
            .init();
    }
}
