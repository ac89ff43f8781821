//! Item 4: HNSW index build after a bulk load, server defaults vs the
//! recommended session settings.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::raw::BoxError;
use crate::report::{fmt_int, verdict};
use crate::{Ctx, progress};

/// A connection whose server notices (e.g. pgvector's "hnsw graph no longer
/// fits into maintenance_work_mem") are printed and collected.
async fn connect_with_notices(
    url: &str,
) -> Result<(Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>), BoxError> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    progress(&format!("  server notice: {}", n.message()));
                    if let Ok(mut v) = sink.lock() {
                        v.push(n.message().to_owned());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("connection ended: {e}");
                    break;
                }
            }
        }
    });
    Ok((client, notices))
}

/// Polls `pg_stat_progress_create_index` until `stop` fires.
fn monitor(url: String, label: String) -> tokio::sync::oneshot::Sender<()> {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok(client) = crate::raw::connect(&url).await else {
            return;
        };
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = &mut rx => break,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let row = client
                .query_opt(
                    "SELECT p.phase, p.tuples_done, p.tuples_total, \
                       (SELECT count(*) FROM pg_stat_activity a \
                         WHERE a.backend_type = 'parallel worker' AND a.datname = current_database()) \
                     FROM pg_stat_progress_create_index p \
                     WHERE p.datname = current_database() LIMIT 1",
                    &[],
                )
                .await;
            if let Ok(Some(r)) = row {
                let phase: String = r.get(0);
                let done: i64 = r.get(1);
                let total: i64 = r.get(2);
                let workers: i64 = r.get(3);
                progress(&format!(
                    "  {label}: {phase}, {done}/{total} tuples, {workers} parallel workers, {:.0}s",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
    });
    tx
}

/// Builds an index with session settings; returns the wall time and whether
/// the graph spilled out of `maintenance_work_mem`.
pub async fn timed_build(
    ctx: &Ctx,
    label: &str,
    settings: &str,
    create: &str,
) -> Result<(f64, bool), BoxError> {
    let (client, notices) = connect_with_notices(&ctx.url).await?;
    client.batch_execute(settings).await?;
    progress(&format!("building {label}: {settings}"));
    let stop = monitor(ctx.url.clone(), label.to_owned());
    let t = Instant::now();
    let result = client.batch_execute(create).await;
    let s = t.elapsed().as_secs_f64();
    let _ = stop.send(());
    result?;
    let spilled = notices
        .lock()
        .map(|v| v.iter().any(|m| m.contains("no longer fits")))
        .unwrap_or(false);
    progress(&format!("  built {label} in {s:.1}s"));
    Ok((s, spilled))
}

fn defaults() -> &'static str {
    "SET maintenance_work_mem TO DEFAULT; SET max_parallel_maintenance_workers TO DEFAULT"
}

pub fn recommended(ctx: &Ctx) -> String {
    format!(
        "SET maintenance_work_mem = '{}'; SET max_parallel_maintenance_workers = 1",
        ctx.args.recommended_mwm()
    )
}

/// Builds the HNSW index with the recommended settings, without reporting
/// (for runs that skip the build section).
pub async fn recommended_untimed(ctx: &Ctx) -> Result<(), BoxError> {
    timed_build(ctx, "HNSW index", &recommended(ctx), &ctx.hnsw_index_sql()).await?;
    ctx.sql("ANALYZE resume_chunks").await
}

async fn server_defaults(ctx: &Ctx) -> Result<String, BoxError> {
    let r = ctx
        .raw
        .query_one(
            "SELECT current_setting('maintenance_work_mem'), \
                    current_setting('max_parallel_maintenance_workers')",
            &[],
        )
        .await?;
    Ok(format!(
        "maintenance_work_mem {}, {} workers",
        r.get::<_, String>(0),
        r.get::<_, String>(1)
    ))
}

/// 4: defaults vs recommended on `--build-rows` rows (a scratch copy when
/// that is less than the table), then the full table with the recommended
/// settings.
pub async fn hnsw(ctx: &mut Ctx) -> Result<(), BoxError> {
    let n = ctx.corpus.len();
    let s = ctx.args.build_rows();
    let defaults_desc = server_defaults(ctx).await?;
    let rec_desc = format!(
        "maintenance_work_mem {}, 1 worker",
        ctx.args.recommended_mwm()
    );
    let table = if s < n {
        ctx.sql(&format!(
            "DROP TABLE IF EXISTS hnsw_scratch; \
             CREATE TABLE hnsw_scratch AS SELECT * FROM resume_chunks LIMIT {s}; \
             ANALYZE hnsw_scratch"
        ))
        .await?;
        "hnsw_scratch"
    } else {
        "resume_chunks"
    };
    let create = |name: &str| {
        format!(
            "CREATE INDEX {name} ON {table} USING hnsw (embedding vector_cosine_ops){}",
            ctx.hnsw_with()
        )
    };
    let mut details = String::from(
        "| rows | settings | build time s | rows/s | graph spilled out of maintenance_work_mem |\n|---|---|---|---|---|\n",
    );
    let mut line = |rows: usize, settings: &str, secs: f64, spilled: bool| {
        details.push_str(&format!(
            "| {} | {settings} | {secs:.1} | {} | {} |\n",
            fmt_int(rows as f64),
            fmt_int(rows as f64 / secs),
            if spilled { "yes" } else { "no" }
        ));
    };

    let (def_s, def_spill) = timed_build(
        ctx,
        &format!("HNSW on {s} rows, server defaults"),
        defaults(),
        &create("bench_hnsw_defaults"),
    )
    .await?;
    line(
        s,
        &format!("server defaults ({defaults_desc})"),
        def_s,
        def_spill,
    );
    ctx.sql("DROP INDEX bench_hnsw_defaults").await?;
    let (rec_s, rec_spill) = if table == "resume_chunks" {
        timed_build(
            ctx,
            &format!("HNSW on {s} rows, recommended"),
            &recommended(ctx),
            &ctx.hnsw_index_sql(),
        )
        .await?
    } else {
        let r = timed_build(
            ctx,
            &format!("HNSW on {s} rows, recommended"),
            &recommended(ctx),
            &create("bench_hnsw_rec"),
        )
        .await?;
        ctx.sql("DROP INDEX bench_hnsw_rec").await?;
        r
    };
    line(s, &format!("recommended ({rec_desc})"), rec_s, rec_spill);
    ctx.report.row(
        "build",
        "4",
        format!(
            "HNSW build after bulk load, {} rows: recommended ({rec_desc}) vs server defaults ({defaults_desc})",
            fmt_int(s as f64)
        ),
        format!("{rec_s:.1} s"),
        format!("{def_s:.1} s{}", if def_spill { " (graph spilled to disk)" } else { "" }),
        format!("{:.1}× faster", def_s / rec_s),
        "report both",
        verdict(rec_s <= def_s),
    );
    if table != "resume_chunks" {
        // halfvec expression index, for comparison (half the memory).
        let (half_s, half_spill) = timed_build(
            ctx,
            &format!("halfvec HNSW on {s} rows, recommended"),
            &recommended(ctx),
            &format!(
                "CREATE INDEX bench_hnsw_half ON {table} \
                 USING hnsw ((embedding::halfvec(768)) halfvec_cosine_ops){}",
                ctx.hnsw_with()
            ),
        )
        .await?;
        line(
            s,
            &format!("recommended, `halfvec(768)` expression index ({rec_desc})"),
            half_s,
            half_spill,
        );
        ctx.sql("DROP TABLE hnsw_scratch").await?;

        let (full_s, full_spill) = timed_build(
            ctx,
            &format!("HNSW on all {n} rows, recommended"),
            &recommended(ctx),
            &ctx.hnsw_index_sql(),
        )
        .await?;
        line(n, &format!("recommended ({rec_desc})"), full_s, full_spill);
        ctx.report.info(
            "build",
            "4",
            format!(
                "HNSW build, all {} rows, recommended settings (defaults not run at this size: see the {}-row rows)",
                fmt_int(n as f64),
                fmt_int(s as f64)
            ),
            format!("{full_s:.1} s ({} rows/s)", fmt_int(n as f64 / full_s)),
            "",
        );
    }
    let size: String = ctx
        .raw
        .query_one(
            "SELECT pg_size_pretty(pg_relation_size('idx_resume_chunks_embedding'))",
            &[],
        )
        .await?
        .get(0);
    details.push_str(&format!(
        "\nIndex size on all {} rows: {size}. Defaults are the server's; the recommended \
         settings are `SET maintenance_work_mem = '{}'; SET max_parallel_maintenance_workers = 1` \
         in the building session (2 cores: the leader plus one worker).\n",
        fmt_int(n as f64),
        ctx.args.recommended_mwm()
    ));
    ctx.report.detail("HNSW builds", details);
    ctx.sql("ANALYZE resume_chunks").await
}
