//! The `migration` binary's command line (feature `cli`): what
//! `cargo run -p migration -- <command>` and `sea-orm-cli migrate <command>`
//! run.
//!
//! It accepts every subcommand and flag of sea-orm-migration's CLI (`init`, `generate`,
//! `up [-n]`, `down [-n]`, `status`, `fresh`, `refresh`, `reset`, `-u`,
//! `-s`, `-v`) and adds:
//! - `verify [--json]`: check the live database against the migrations;
//! - `up --dry-run [--json]`: apply in a transaction, report, roll back;
//! - `--force` on `down`, `refresh`, `reset`, `fresh`: allow data loss;
//! - `--lock-timeout` (`MIGRATION_LOCK_TIMEOUT`): the migrations' lock_timeout;
//! - `import --from <legacy-url> [--dry-run] [--report FILE]
//!   [--leave-unowned-tables] [--source-timezone ZONE]`: copy a database of
//!   the TypeScript app into the (empty) database of DATABASE_URL
//!   ([`crate::import`]).
//!
//! Every subcommand that touches the database except `verify` holds the
//! migration advisory lock for the whole run, on the binary's single
//! connection (`import` takes it itself, except in a dry run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbErr};

use crate::Migrator;
use crate::guard::lock::MigrationLock;
use crate::guard::safety::{self, SafetyOptions};
use crate::import::{self, ImportOptions};
use crate::schema::{dry_run, verify};

pub mod connect;

/// Where `init` and `generate` write (sea-orm-migration's choice).
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
        long_help = "Database schema\n \
                    - For MySQL and SQLite, this argument is ignored.\n \
                    - For PostgreSQL, this argument is optional with default value 'public'.\n"
    )]
    database_schema: Option<String>,

    #[arg(
        global = true,
        short = 'u',
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        help = "Database URL"
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
        about = "Copy a database of the TypeScript app into this one (DATABASE_URL), accounting \
                 for every row",
        long_about = "Copy a database of the TypeScript app (schema versions v0 to v5) into the \
                      database of DATABASE_URL, which must hold no application rows: it is \
                      migrated first, then written in one transaction (a failure leaves it \
                      empty). The source is read in one read-only snapshot and never written. \
                      Every legacy row is imported, imported with normalized values, or \
                      excluded; the report lists every normalization and every exclusion (with \
                      the full original row) and the checksums of the copied texts, embeddings \
                      and PDFs. Run it with --dry-run first. See the README, \"Coming from the \
                      TypeScript app\".",
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

/// Runs a database subcommand. `Err("")` means "failed, already reported".
async fn run_database_command(cli: Cli) -> Result<(), String> {
    let url = cli
        .database_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            "DATABASE_URL is not set: pass -u postgres://user:password@host:5432/database or set \
         DATABASE_URL (the repository's .env names the local database that scripts/db-up \
         provisions)"
                .to_owned()
        })?;
    let schema = cli
        .database_schema
        .clone()
        .unwrap_or_else(|| "public".to_owned());
    safety::validate_lock_timeout(&cli.lock_timeout)?;
    let db = connect::connect(&url, &schema, cli.lock_timeout.trim(), cli.verbose)
        .await
        .map_err(message)?;

    let command = cli.command.unwrap_or(Command::Up {
        num: None,
        dry_run: false,
        json: false,
    });
    if let Command::Import {
        from,
        dry_run,
        report,
        leave_unowned_tables,
        source_timezone,
    } = command
    {
        return run_import(
            &db,
            &from,
            dry_run,
            report,
            leave_unowned_tables,
            source_timezone,
        )
        .await;
    }
    if let Command::Verify { json } = command {
        let report = verify::verify(&db).await.map_err(message)?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
        } else {
            println!("{report}");
        }
        return if report.ok {
            Ok(())
        } else {
            Err(String::new())
        };
    }

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
    let lock = MigrationLock::acquire(&db).await.map_err(message)?;
    let outcome = safety::with_options(options, execute(&db, command)).await;
    let released = lock.release().await.map_err(message);
    outcome.and(released)
}

async fn execute(db: &DatabaseConnection, command: Command) -> Result<(), String> {
    let outcome = match command {
        Command::Fresh { .. } => Migrator::fresh(db).await,
        Command::Refresh { .. } => Migrator::refresh(db).await,
        Command::Reset { .. } => Migrator::reset(db).await,
        Command::Status => Migrator::status(db).await,
        Command::Up {
            num,
            dry_run: true,
            json,
        } => {
            let report = dry_run::dry_run_up(db, num).await.map_err(message)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Command::Up { num, .. } => Migrator::up(db, num).await,
        Command::Down { num, .. } => Migrator::down(db, Some(num)).await,
        Command::Init
        | Command::Generate { .. }
        | Command::Verify { .. }
        | Command::Import { .. } => {
            unreachable!("handled before taking the lock")
        }
    };
    outcome.map_err(message)
}

/// `import`: runs it, prints the report, writes the JSON file.
async fn run_import(
    db: &DatabaseConnection,
    from: &str,
    dry_run: bool,
    report_file: Option<PathBuf>,
    leave_unowned_tables: bool,
    source_timezone: Option<String>,
) -> Result<(), String> {
    let from = pgconn::DbUrl::parse(from).map_err(|e| format!("--from: {e}"))?;
    let options = ImportOptions {
        dry_run,
        leave_unowned_tables,
        source_timezone,
        ..ImportOptions::new(from)
    };
    let report = import::import(db, &options)
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
