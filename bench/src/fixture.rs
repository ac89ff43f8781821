//! Items 5 and 6: the test fixture (template clone) against migrating from
//! scratch; `migrate up` on an empty database and `verify` on a migrated one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use mockinterview_db::DbConfig;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use test_db::{TestDatabase, template_name};
use tokio_postgres::Client;

use crate::raw::BoxError;
use crate::report::{Samples, fmt_ms, median, rounds_of, spread, spread_x, verdict};
use crate::{Ctx, progress};

/// The first query a test runs on its fresh database.
const FIRST_QUERY: &str = "SELECT count(*) FROM resumes";

/// One whole test's database cycle without the fixture: CREATE DATABASE,
/// connect the library's pool, `Migrator::up`, the first query, close, DROP
/// DATABASE. Returns (the whole cycle, `Migrator::up` alone).
async fn scratch_cycle(
    ctx: &Ctx,
    admin: &Client,
    name: &str,
) -> Result<(Duration, Duration), BoxError> {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    let t = Instant::now();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let url = ctx.admin_url.with_database(name);
    // Migrated as an application does at start-up (SeaORM's Migrator on a
    // connection of its own), then the library's handle.
    let m = Instant::now();
    let owner = sea_orm::Database::connect(url.as_str()).await?;
    Migrator::up(&owner, None).await?;
    owner.close().await?;
    let migrate = m.elapsed();
    let mut config = DbConfig::new(url.as_str());
    config.max_connections = 5;
    let db = config.connect().await?;
    db.execute_unprepared(FIRST_QUERY).await?;
    db.close().await.ok();
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await?;
    Ok((t.elapsed(), migrate))
}

/// One whole test's database cycle with the fixture: `TestDatabase::new()`
/// (a prefetched or new clone, its pool), the first query, and the guard's
/// drop, which waits for `DROP DATABASE` and so for any prefetch queued
/// before it on the fixture's admin connection.
async fn fixture_cycle() -> Result<(Duration, Duration, Duration), BoxError> {
    let t = Instant::now();
    let db = TestDatabase::try_new().await?;
    let created = t.elapsed();
    db.conn().execute_unprepared(FIRST_QUERY).await?;
    let d = Instant::now();
    drop(db);
    Ok((t.elapsed(), created, d.elapsed()))
}

/// 5: full per-test cycles, fixture vs migrating from scratch (rounds of
/// back-to-back blocks, block order alternating); CREATE DATABASE
/// strategies; reuse and schema per test.
pub async fn fixture(ctx: &mut Ctx, admin: &Client) -> Result<(), BoxError> {
    let reps = ctx.args.reps().max(1);
    let rounds = ctx.args.rounds();
    progress(&format!(
        "fixture: {rounds} rounds × ({reps} fixture cycles, {reps} migrate-from-scratch cycles)"
    ));
    let t = Instant::now();
    drop(TestDatabase::try_new().await?);
    let first = t.elapsed();
    let (mut cycle, mut create, mut dropping) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut scratch = Samples::default();
    let mut ratios = Vec::new();
    let mut block_rates = Vec::new();
    for round in 0..rounds {
        let (mut fx, mut sc) = (Samples::default(), Samples::default());
        let mut fx_wall = Duration::ZERO;
        for block in 0..2 {
            // Let any background prefetch of the previous block finish, so
            // no block inherits the other's work.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if (block + round) % 2 == 0 {
                let w = Instant::now();
                for _ in 0..reps {
                    let (total, c, d) = fixture_cycle().await?;
                    fx.push(total);
                    create.push(c);
                    dropping.push(d);
                }
                fx_wall = w.elapsed();
            } else {
                for i in 0..reps {
                    sc.push(
                        scratch_cycle(ctx, admin, &format!("mi_bench_fixture_{i}"))
                            .await?
                            .0,
                    );
                }
            }
        }
        ratios.push(sc.p50() / fx.p50());
        block_rates.push(fx_wall.as_secs_f64() * 1e3 / reps as f64);
        cycle.0.extend(fx.0);
        scratch.0.extend(sc.0);
    }
    let cycle_p50s: Vec<f64> = rounds_of(&cycle, rounds).iter().map(Samples::p50).collect();
    let scratch_p50s: Vec<f64> = rounds_of(&scratch, rounds)
        .iter()
        .map(Samples::p50)
        .collect();
    ctx.report.row(
        "fixture",
        "5",
        format!(
            "test fixture, full per-test cycle: `TestDatabase::new()` (incl. waiting for a prefetched clone) + first query + guard drop vs CREATE DATABASE + connect + `Migrator::up` + first query + DROP DATABASE; p50 per round, median (min–max) of {rounds} rounds of {reps} back-to-back cycles"
        ),
        format!(
            "{} ms (block wall time per cycle {} ms)",
            spread(&cycle_p50s, fmt_ms),
            spread(&block_rates, fmt_ms)
        ),
        format!("{} ms", spread(&scratch_p50s, fmt_ms)),
        format!("{} faster", spread_x(&ratios)),
        "≥ 5×",
        verdict(median(&ratios) >= 5.0),
    );
    ctx.report.info(
        "fixture",
        "5",
        "test fixture, parts of the cycle: `TestDatabase::new()` / guard drop (waits for DROP DATABASE and any prefetch queued before it), p50; first call of the run (template present or built)",
        format!("{} / {} ms", fmt_ms(create.p50()), fmt_ms(dropping.p50())),
        format!("first call {} ms", fmt_ms(first.as_secs_f64() * 1e3)),
    );
    let mut migrate_only = Samples::default();
    for i in 0..reps {
        let (_, m) = scratch_cycle(ctx, admin, &format!("mi_bench_fixture_{i}")).await?;
        migrate_only.push(m);
    }

    // CREATE DATABASE strategies (PostgreSQL 15+): WAL_LOG (default) vs FILE_COPY.
    let template = template_name();
    let mut strategies = Vec::new();
    for strategy in ["wal_log", "file_copy"] {
        let mut s = Samples::default();
        for i in 0..reps {
            let name = format!("mi_bench_strategy_{i}");
            let t = Instant::now();
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE {name} TEMPLATE \"{template}\" STRATEGY {strategy}"
                ))
                .await?;
            s.push(t.elapsed());
            admin
                .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .await?;
        }
        strategies.push(s);
    }
    let (wal, file) = (&strategies[0], &strategies[1]);
    ctx.report.info(
        "fixture",
        "5",
        "CREATE DATABASE ... TEMPLATE: STRATEGY FILE_COPY vs WAL_LOG (default), p50",
        format!("{} ms (FILE_COPY)", fmt_ms(file.p50())),
        format!(
            "{} ms (WAL_LOG); {} is faster by {:.1}×",
            fmt_ms(wal.p50()),
            if file.p50() < wal.p50() {
                "FILE_COPY"
            } else {
                "WAL_LOG"
            },
            (wal.p50() / file.p50()).max(file.p50() / wal.p50())
        ),
    );

    // Reusing one migrated database per test thread, emptied between tests.
    let reuse = TestDatabase::try_new().await?;
    let client = crate::raw::connect(reuse.url()).await?;
    let mut truncate = Samples::default();
    for _ in 0..reps {
        let t = Instant::now();
        client
            // What the fixture runs before reusing a database.
            .batch_execute(include_str!("../../test-db/src/sql/empty.sql"))
            .await?;
        truncate.push(t.elapsed());
    }
    drop(client);
    drop(reuse);
    ctx.report.info(
        "fixture",
        "5",
        "alternative: reuse one migrated database per test thread, TRUNCATE its tables between tests, p50",
        format!("{} ms", fmt_ms(truncate.p50())),
        format!("{} ms (full fixture cycle)", fmt_ms(cycle.p50())),
    );

    // Schema per test: migrations into a fresh schema of one shared database.
    let mut schema = Samples::default();
    let mut schema_err = None;
    for i in 0..reps {
        let name = format!("bench_schema_{i}");
        ctx.sql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            .await?;
        let t = Instant::now();
        let outcome: Result<(), BoxError> = async {
            ctx.sql(&format!("CREATE SCHEMA {name}")).await?;
            let mut opts = ConnectOptions::new(ctx.url.clone());
            opts.max_connections(1)
                .set_schema_search_path(format!("{name},public"))
                .sqlx_logging(false);
            let db = Database::connect(opts).await?;
            Migrator::up(&db, None).await?;
            db.close().await.ok();
            Ok(())
        }
        .await;
        let dt = t.elapsed();
        ctx.sql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
            .await?;
        match outcome {
            Ok(()) => schema.push(dt),
            Err(e) => {
                schema_err = Some(e.to_string());
                break;
            }
        }
    }
    ctx.report.info(
        "fixture",
        "5",
        "schema per test (CREATE SCHEMA + `Migrator::up` with search_path), p50",
        match &schema_err {
            None => format!("{} ms", fmt_ms(schema.p50())),
            Some(e) => format!("failed: {}", e.lines().next().unwrap_or_default()),
        },
        format!("{} ms (full fixture cycle)", fmt_ms(cycle.p50())),
    );
    ctx.report.detail(
        format!("Fixtures ({reps} repetitions each)"),
        format!(
            "| what | p50 ms | p95 ms | max ms |\n|---|---|---|---|\n\
             | full fixture cycle: `TestDatabase::new()` + first query + drop | {} | {} | {} |\n\
             | of which `TestDatabase::new()` (prefetched or new clone; pool; ping) | {} | {} | {} |\n\
             | of which dropping it (`DROP DATABASE ... WITH (FORCE)` from `Drop`) | {} | {} | {} |\n\
             | full cycle from scratch: CREATE DATABASE + connect + `Migrator::up` + first query + DROP | {} | {} | {} |\n\
             | of which `Migrator::up` | {} | {} | {} |\n\
             | CREATE DATABASE ... TEMPLATE ... STRATEGY WAL_LOG | {} | {} | {} |\n\
             | CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY | {} | {} | {} |\n\
             | CREATE SCHEMA + `Migrator::up` (schema per test) | {} | {} | {} |\n\
             | TRUNCATE the tables of a migrated database (reuse per thread) | {} | {} | {} |\n",
            fmt_ms(cycle.p50()),
            fmt_ms(cycle.pct_ms(95.0)),
            fmt_ms(cycle.pct_ms(100.0)),
            fmt_ms(create.p50()),
            fmt_ms(create.pct_ms(95.0)),
            fmt_ms(create.pct_ms(100.0)),
            fmt_ms(dropping.p50()),
            fmt_ms(dropping.pct_ms(95.0)),
            fmt_ms(dropping.pct_ms(100.0)),
            fmt_ms(scratch.p50()),
            fmt_ms(scratch.pct_ms(95.0)),
            fmt_ms(scratch.pct_ms(100.0)),
            fmt_ms(migrate_only.p50()),
            fmt_ms(migrate_only.pct_ms(95.0)),
            fmt_ms(migrate_only.pct_ms(100.0)),
            fmt_ms(wal.p50()),
            fmt_ms(wal.pct_ms(95.0)),
            fmt_ms(wal.pct_ms(100.0)),
            fmt_ms(file.p50()),
            fmt_ms(file.pct_ms(95.0)),
            fmt_ms(file.pct_ms(100.0)),
            fmt_ms(schema.p50()),
            fmt_ms(schema.pct_ms(95.0)),
            fmt_ms(schema.pct_ms(100.0)),
            fmt_ms(truncate.p50()),
            fmt_ms(truncate.pct_ms(95.0)),
            fmt_ms(truncate.pct_ms(100.0)),
        ),
    );
    Ok(())
}

/// The `migration` binary next to this one (`target/<profile>/migration`).
/// It is not built from here: a nested `cargo build` inside `cargo run`
/// sees a different environment and rebuilds half the dependency tree. The
/// documented command builds both binaries together:
/// `cargo build --release -p migration-tool -p mockinterview-bench`.
pub fn migration_binary() -> Option<PathBuf> {
    let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let bin = dir.join("migration");
    if !bin.exists() {
        progress(&format!(
            "{} is missing: the migration CLI is not measured (build it with \
             `cargo build --release -p migration-tool -p mockinterview-bench`)",
            bin.display()
        ));
    }
    bin.exists().then_some(bin)
}

fn run_cli(bin: &PathBuf, url: &str, args: &[&str]) -> Result<(Duration, String), BoxError> {
    let t = Instant::now();
    let out = std::process::Command::new(bin)
        .arg("-u")
        .arg(url)
        .args(args)
        .env("DATABASE_URL", url)
        .output()?;
    let dt = t.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("migration {args:?} failed: {text}").into());
    }
    Ok((dt, text))
}

/// 6: `migrate up` on an empty database (in process and through the CLI),
/// `verify` on a migrated one.
pub async fn migrate(ctx: &mut Ctx, admin: &Client, bin: Option<PathBuf>) -> Result<(), BoxError> {
    let reps = ctx.args.reps().max(1);
    progress(&format!(
        "migrations: {reps} × Migrator::up on an empty database"
    ));
    let mut up = Samples::default();
    for i in 0..reps {
        let (_, m) = scratch_cycle(ctx, admin, &format!("mi_bench_migrate_{i}")).await?;
        up.push(m);
    }
    ctx.report.info(
        "migrate",
        "6",
        "`Migrator::up` on an empty database (in process, 4 migrations), p50 / max",
        format!("{} ms", fmt_ms(up.p50())),
        format!("max {} ms", fmt_ms(up.pct_ms(100.0))),
    );
    let Some(bin) = bin else {
        ctx.report.info(
            "migrate",
            "6",
            "migration CLI: binary not found (build it with `cargo build --release -p migration-tool -p mockinterview-bench`)",
            "not measured",
            "",
        );
        return Ok(());
    };
    let name = "mi_bench_cli";
    let url = ctx.admin_url.with_database(name).as_str().to_owned();
    let (mut cli_up, mut cli_verify) = (Samples::default(), Samples::default());
    let help = std::process::Command::new(&bin)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let has_verify = help.lines().any(|l| l.trim_start().starts_with("verify"));
    for _ in 0..reps {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        cli_up.push(run_cli(&bin, &url, &["up"])?.0);
        if has_verify {
            cli_verify.push(run_cli(&bin, &url, &["verify"])?.0);
        }
    }
    ctx.report.info(
        "migrate",
        "6",
        "`migration up` CLI on an empty database (process start, connect, 4 migrations), p50",
        format!("{} ms", fmt_ms(cli_up.p50())),
        format!("max {} ms", fmt_ms(cli_up.pct_ms(100.0))),
    );
    if has_verify {
        ctx.report.info(
            "migrate",
            "6",
            "`migration verify` CLI on a migrated database (process start, connect, catalog checks), p50",
            format!("{} ms", fmt_ms(cli_verify.p50())),
            format!("max {} ms", fmt_ms(cli_verify.pct_ms(100.0))),
        );
    } else {
        // No verify subcommand in this build: time the catalog queries such
        // a check needs, in process.
        let client = crate::raw::connect(&url).await?;
        let mut cat = Samples::default();
        for _ in 0..reps {
            let t = Instant::now();
            client
                .query(
                    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped",
                    &[],
                )
                .await?;
            client
                .query(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
                    &[],
                )
                .await?;
            client
                .query(
                    "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal",
                    &[],
                )
                .await?;
            client
                .query("SELECT version FROM seaql_migrations ORDER BY version", &[])
                .await?;
            cat.push(t.elapsed());
        }
        ctx.report.info(
            "migrate",
            "6",
            "verify: no `verify` subcommand in this build; catalog queries such a check runs (columns, indexes, triggers, applied versions), p50",
            format!("{} ms", fmt_ms(cat.p50())),
            "",
        );
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}
