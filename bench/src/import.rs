//! 7: `migration import` of a TypeScript-app database (the legacy v3
//! fixture plus the fixtures' `scale.sql` with `--chunks` chunks) against a
//! raw binary `COPY` of the same chunk rows, source to target.
//!
//! Both sides start from a freshly migrated, empty target (created and
//! migrated untimed) and handle the HNSW index the same way: dropped in the
//! transaction, rows loaded, index rebuilt with the same
//! `maintenance_work_mem`, commit. The import also copies profiles,
//! preferences, resumes with their PDFs and the id map, rewrites every
//! chunk's metadata and compares checksums before commit; the raw side
//! copies the chunk rows only (`gen_random_uuid()` ids, metadata as is).
//! Rounds alternate which side runs first. Databases: `mi_import_bench_*`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, pin_mut};
use migration::{Migrator, MigratorTrait};
use migration_tool::import::{ImportOptions, import};
use pgconn::DbUrl;
use tokio_postgres::Client;

use crate::raw::{self, BoxError};
use crate::report::{Samples, verdict};
use crate::{Ctx, progress};

const LEGACY: &str = "mi_import_bench_legacy";
const TARGET: &str = "mi_import_bench_target";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tool/tests/fixtures/legacy")
}

fn psql(url: &str, args: &[&str]) -> Result<(), BoxError> {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .arg(url)
        .output()
        .map_err(|e| format!("psql (package postgresql-client) could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!("psql {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// The legacy database: v3.sql + scale.sql with `chunks` chunks, reused
/// when it already has them (building 100k chunks takes about a minute).
async fn legacy_database(admin: &Client, url: &DbUrl, chunks: usize) -> Result<String, BoxError> {
    let legacy_url = url.with_database(LEGACY).as_str().to_owned();
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&LEGACY])
        .await?
        .is_some();
    if exists {
        let client = raw::connect(&legacy_url).await?;
        let have: i64 = client
            .query_one("SELECT count(*) FROM resume_chunks", &[])
            .await?
            .get(0);
        if have == chunks as i64 + 32 {
            progress(&format!("import: reusing {LEGACY} ({have} chunks)"));
            return Ok(legacy_url);
        }
    }
    progress(&format!(
        "import: building {LEGACY}: v3.sql + scale.sql with {chunks} chunks"
    ));
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {LEGACY} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {LEGACY}"))
        .await?;
    let dir = fixtures();
    psql(&legacy_url, &["-f", dir.join("v3.sql").to_str().unwrap()])?;
    psql(
        &legacy_url,
        &[
            "-v",
            &format!("chunks={chunks}"),
            "-f",
            dir.join("scale.sql").to_str().unwrap(),
        ],
    )?;
    raw::connect(&legacy_url)
        .await?
        .batch_execute("VACUUM ANALYZE")
        .await?;
    Ok(legacy_url)
}

/// A freshly created and migrated, empty target.
async fn fresh_target(admin: &Client, url: &DbUrl) -> Result<String, BoxError> {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {TARGET} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {TARGET}"))
        .await?;
    let target_url = url.with_database(TARGET).as_str().to_owned();
    let db = sea_orm::Database::connect(target_url.as_str()).await?;
    Migrator::up(&db, None).await?;
    db.close().await?;
    Ok(target_url)
}

/// One import, timed; returns the total and the report's phase timings.
async fn run_import(
    source: &str,
    target: &str,
    mwm: &str,
    keep_index: bool,
) -> Result<(Duration, Vec<(String, f64)>), BoxError> {
    let mut options = sea_orm::ConnectOptions::new(target.to_owned());
    options.max_connections(1).sqlx_logging(false);
    let db = sea_orm::Database::connect(options).await?;
    let mut opts = ImportOptions::new(DbUrl::parse(source)?);
    opts.maintenance_work_mem = Some(mwm.to_owned());
    opts.keep_chunk_index = keep_index;
    let t = Instant::now();
    let report = import(&db, &opts).await?;
    let took = t.elapsed();
    db.close().await?;
    if !report.committed {
        return Err("the import did not commit".into());
    }
    Ok((took, report.timings.into_iter().collect()))
}

/// The raw baseline, timed: in one transaction, drop the HNSW index, pipe
/// `COPY (SELECT ...) TO STDOUT (FORMAT binary)` of the source into `COPY
/// resume_chunks FROM STDIN (FORMAT binary)`, rebuild the index, commit.
/// Returns (total, copy only).
async fn run_raw(
    source: &str,
    target: &str,
    mwm: &str,
    keep_index: bool,
) -> Result<(Duration, Duration), BoxError> {
    let src = raw::connect(source).await?;
    let dst = raw::connect(target).await?;
    let t = Instant::now();
    src.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    dst.batch_execute("BEGIN").await?;
    if !keep_index {
        dst.batch_execute("DROP INDEX idx_resume_chunks_embedding")
            .await?;
    }
    let c = Instant::now();
    let out = src
        .copy_out(
            "COPY (SELECT gen_random_uuid(), text, metadata, embedding FROM resume_chunks \
             WHERE embedding IS NOT NULL ORDER BY id) TO STDOUT (FORMAT binary)",
        )
        .await?;
    let sink = dst
        .copy_in("COPY resume_chunks (id, text, metadata, embedding) FROM STDIN (FORMAT binary)")
        .await?;
    pin_mut!(out);
    pin_mut!(sink);
    while let Some(piece) = out.next().await {
        sink.send(piece?).await?;
    }
    sink.finish().await?;
    let copy = c.elapsed();
    if !keep_index {
        dst.batch_execute(&format!(
            "SET LOCAL maintenance_work_mem = '{mwm}'; {}",
            crate::HNSW_INDEX_SQL
        ))
        .await?;
    }
    dst.batch_execute("COMMIT").await?;
    src.batch_execute("COMMIT").await?;
    Ok((t.elapsed(), copy))
}

/// 7: `migration import` vs raw binary `COPY`.
pub async fn import_vs_copy(ctx: &mut Ctx, admin: &Client) -> Result<(), BoxError> {
    let chunks = ctx.args.chunks();
    let rounds = ctx.args.reps().max(3);
    let mwm = ctx.args.recommended_mwm();
    let url = ctx.admin_url.clone();
    let source = legacy_database(admin, &url, chunks).await?;

    let (mut imp, mut raw_total, mut raw_copy) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut phases: Vec<Vec<(String, f64)>> = Vec::new();
    for round in 0..rounds {
        let import_first = round % 2 == 0;
        for import_side in [import_first, !import_first] {
            let target = fresh_target(admin, &url).await?;
            if import_side {
                progress(&format!("import: round {} migration import", round + 1));
                let (took, timings) = run_import(&source, &target, &mwm, false).await?;
                imp.push(took);
                phases.push(timings);
            } else {
                progress(&format!("import: round {} raw binary COPY", round + 1));
                let (total, copy) = run_raw(&source, &target, &mwm, false).await?;
                raw_total.push(total);
                raw_copy.push(copy);
            }
        }
    }
    let ratio = imp.p50() / raw_total.p50();
    let spread = |s: &Samples| {
        format!(
            "{} s (min {}, max {})",
            fmt_s(s.p50()),
            fmt_s(s.pct_ms(0.0)),
            fmt_s(s.pct_ms(100.0))
        )
    };
    ctx.report.row(
        "import",
        "7",
        format!(
            "`migration import` of a v3 database with {chunks} chunks (profiles, preferences, \
             resumes with PDFs, id map, chunks rewritten, checksums; HNSW dropped and rebuilt) vs \
             raw binary COPY of the same chunk rows (HNSW dropped and rebuilt), p50 of {rounds} \
             alternating rounds"
        ),
        spread(&imp),
        spread(&raw_total),
        format!("{ratio:.2}×"),
        "≤ 1.5×",
        verdict(ratio <= 1.5),
    );
    ctx.report.info(
        "import",
        "7",
        "raw side: the COPY pipe alone (without the index rebuild), p50",
        format!("{} s", fmt_s(raw_copy.p50())),
        "",
    );
    let mut body =
        String::from("Phases of each import (seconds, from the report's `timings`):\n\n");
    for (i, p) in phases.iter().enumerate() {
        let line: Vec<String> = p.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
        body.push_str(&format!("- import {}: {}\n", i + 1, line.join(", ")));
    }
    body.push_str(&format!(
        "\nSamples: import {:?} s; raw {:?} s (copy only {:?} s); maintenance_work_mem {mwm}.\n",
        imp.0
            .iter()
            .map(|d| round2(d.as_secs_f64()))
            .collect::<Vec<_>>(),
        raw_total
            .0
            .iter()
            .map(|d| round2(d.as_secs_f64()))
            .collect::<Vec<_>>(),
        raw_copy
            .0
            .iter()
            .map(|d| round2(d.as_secs_f64()))
            .collect::<Vec<_>>(),
    ));

    // The alternative the import did not choose: load into the live HNSW
    // index. Once per side (it is slow), same rows.
    if ctx.args.import_keep_index {
        let target = fresh_target(admin, &url).await?;
        progress("import: migration import into the live HNSW index");
        let (keep_import, _) = run_import(&source, &target, &mwm, true).await?;
        let target = fresh_target(admin, &url).await?;
        progress("import: raw binary COPY into the live HNSW index");
        let (keep_raw, _) = run_raw(&source, &target, &mwm, true).await?;
        ctx.report.info(
            "import",
            "7",
            "the same with the HNSW index kept (every row inserted into the graph): import / raw COPY, one run each",
            format!("{} s", fmt_s(keep_import.as_secs_f64() * 1000.0)),
            format!("{} s", fmt_s(keep_raw.as_secs_f64() * 1000.0)),
        );
        body.push_str(&format!(
            "\nHNSW index kept: import {:.1} s, raw COPY {:.1} s.\n",
            keep_import.as_secs_f64(),
            keep_raw.as_secs_f64()
        ));
    }
    ctx.report
        .detail("Import of a legacy database (item 7)", body);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {TARGET} WITH (FORCE)"))
        .await?;
    if !ctx.args.keep {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {LEGACY} WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

fn fmt_s(ms: f64) -> String {
    format!("{:.1}", ms / 1000.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
