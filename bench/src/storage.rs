//! Issue 12, item 4: storage and index layouts of `resume_chunks`, decided
//! by measurement.
//!
//! Layouts, all on the same rows:
//! - **current**: `vector(768)` column, default storage (the 3 KB vector
//!   goes to TOAST), HNSW `vector_cosine_ops` index;
//! - **halfvec index**: the same table with an HNSW expression index on
//!   `embedding::halfvec(768)` (`halfvec_cosine_ops`), queried by the
//!   library as `ORDER BY embedding::halfvec(768) <=> $1::halfvec(768)`,
//!   with and without re-ranking the top candidates by the exact distance;
//! - **PLAIN**: a copy with `embedding SET STORAGE PLAIN` (vectors inline in
//!   the heap, 2 rows per page) and the same indexes as the current table.
//!
//! For each: index build time and size, recall@10 and latency per
//! `ef_search`, insert cost and WAL per chunk (50-chunk COPYs in rolled-back
//! transactions, the other index dropped inside them, layouts in rotated
//! order), and what a LangChain `PGVectorStore` client gets (`ORDER BY
//! embedding <=> $1`, with and without a metadata filter; it cannot use an
//! expression index on halfvec).

use std::time::Instant;

use pgvector::Vector;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::build::timed_build;
use crate::corpus::{DIMS, Rng, recall};
use crate::raw::{self, BoxError, RawRow};
use crate::report::{Samples, fmt_int, fmt_ms, median, spread};
use crate::{Ctx, progress};

const K: usize = 10;
/// Candidates re-ranked by the exact distance in the halfvec variant.
const RERANK: i64 = 40;

/// The halfvec expression index (what a migration would create).
pub const HALFVEC_INDEX_SQL: &str = "CREATE INDEX bench_hnsw_half ON resume_chunks \
     USING hnsw ((embedding::halfvec(768)) halfvec_cosine_ops)";

const VECTOR_SQL: &str = "SELECT id, text, metadata, 1 - (embedding <=> $1) AS score \
     FROM resume_chunks ORDER BY embedding <=> $1 LIMIT $2";
const HALF_SQL: &str = "SELECT id, text, metadata, \
     1 - (embedding::halfvec(768) <=> $1::vector::halfvec(768)) AS score \
     FROM resume_chunks ORDER BY embedding::halfvec(768) <=> $1::vector::halfvec(768) LIMIT $2";
const HALF_RERANK_SQL: &str = "SELECT id, text, metadata, 1 - (embedding <=> $1) AS score \
     FROM (SELECT id, text, metadata, embedding FROM resume_chunks \
           ORDER BY embedding::halfvec(768) <=> $1::vector::halfvec(768) LIMIT $3) c \
     ORDER BY embedding <=> $1 LIMIT $2";
const PLAIN_SQL: &str = "SELECT id, text, metadata, 1 - (embedding <=> $1) AS score \
     FROM bench_chunks_plain ORDER BY embedding <=> $1 LIMIT $2";

/// What a LangChain `PGVectorStore` client sends (distance in the select
/// list, ordered by the vector operator, optional metadata containment).
fn langchain_sql(table: &str, filtered: bool) -> String {
    format!(
        "SELECT id, text, metadata, embedding, embedding <=> $1 AS distance FROM {table} {} \
         ORDER BY embedding <=> $1 LIMIT 10",
        if filtered {
            "WHERE metadata @> $2::jsonb"
        } else {
            ""
        }
    )
}

async fn one_str(c: &Client, sql: &str) -> Result<String, BoxError> {
    Ok(c.query_one(sql, &[]).await?.get::<_, String>(0))
}

async fn size_of(c: &Client, rel: &str) -> Result<String, BoxError> {
    one_str(
        c,
        &format!("SELECT pg_size_pretty(pg_relation_size('{rel}'))"),
    )
    .await
}

async fn wal_lsn(c: &Client) -> Result<String, BoxError> {
    one_str(c, "SELECT pg_current_wal_insert_lsn()::text").await
}

/// The plan's access path for `sql` with these parameters.
async fn plan(
    c: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<String, BoxError> {
    let rows = c
        .query(&format!("EXPLAIN (COSTS OFF) {sql}"), params)
        .await?;
    let text: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let text = text.join(" ");
    Ok(if text.contains("bench_hnsw_half") {
        "halfvec HNSW".into()
    } else if text.contains("Index Scan using") && text.contains("embedding") {
        "vector HNSW".into()
    } else if text.contains("Bitmap") {
        "GIN bitmap + sort (exact)".into()
    } else {
        "seq scan + sort (exact)".into()
    })
}

/// Builds the PLAIN copy with the same indexes as `resume_chunks` (HNSW
/// built with the recommended settings, timed). Returns (copy s, build s).
async fn build_plain(ctx: &Ctx) -> Result<(f64, f64), BoxError> {
    progress("storage: building the SET STORAGE PLAIN copy");
    let t = Instant::now();
    ctx.sql(
        "DROP TABLE IF EXISTS bench_chunks_plain; \
         CREATE TABLE bench_chunks_plain (LIKE resume_chunks INCLUDING DEFAULTS INCLUDING CONSTRAINTS); \
         ALTER TABLE bench_chunks_plain ALTER COLUMN embedding SET STORAGE PLAIN; \
         INSERT INTO bench_chunks_plain SELECT * FROM resume_chunks; \
         ALTER TABLE bench_chunks_plain ADD PRIMARY KEY (id); \
         CREATE INDEX bench_plain_metadata ON bench_chunks_plain USING gin (metadata); \
         CREATE INDEX bench_plain_user ON bench_chunks_plain ((metadata->>'user_id')); \
         CREATE INDEX bench_plain_resume ON bench_chunks_plain ((metadata->>'resume_id'))",
    )
    .await?;
    ctx.sql("VACUUM ANALYZE bench_chunks_plain").await?;
    let copy_s = t.elapsed().as_secs_f64();
    let (build_s, _) = timed_build(
        ctx,
        "HNSW on the PLAIN copy",
        &crate::build::recommended(ctx),
        &format!(
            "CREATE INDEX bench_plain_hnsw ON bench_chunks_plain USING hnsw (embedding vector_cosine_ops){}",
            ctx.hnsw_with()
        ),
    )
    .await?;
    Ok((copy_s, build_s))
}

/// Recall@10 and latency of `sql` over `queries` at `ef` on `c`.
async fn sweep_one(
    ctx: &Ctx,
    c: &Client,
    sql: &str,
    ef: u32,
    queries: &[Vec<f32>],
    truth: &[Vec<(usize, f32)>],
) -> Result<(f64, Samples, String), BoxError> {
    c.batch_execute(&format!("SET hnsw.ef_search = {ef}"))
        .await?;
    let stmt = c.prepare(sql).await?;
    let rerank = sql.contains("$3");
    let warmup = 10.min(queries.len());
    let mut lat = Samples::default();
    let mut rsum = 0.0;
    for round in 0..warmup + queries.len() {
        let i = round % queries.len();
        let v = Vector::from(queries[i].clone());
        let t = Instant::now();
        let rows = if rerank {
            c.query(&stmt, &[&v, &(K as i64), &RERANK]).await?
        } else {
            c.query(&stmt, &[&v, &(K as i64)]).await?
        };
        let dt = t.elapsed();
        if round >= warmup {
            lat.push(dt);
            let idx: Vec<usize> = rows
                .iter()
                .filter_map(|r| ctx.index_of.get(&r.get::<_, Uuid>(0)).copied())
                .collect();
            rsum += recall(&ctx.corpus, &queries[i], &idx, &truth[i]);
        }
    }
    let v = Vector::from(queries[0].clone());
    let p = if rerank {
        plan(c, sql, &[&v, &(K as i64), &RERANK]).await?
    } else {
        plan(c, sql, &[&v, &(K as i64)]).await?
    };
    Ok((rsum / queries.len() as f64, lat, p))
}

/// Item 4: the layouts compared.
pub async fn storage(ctx: &mut Ctx) -> Result<(), BoxError> {
    let n = ctx.corpus.len();
    let c = &ctx.raw;
    let mut d = String::new();

    // Index builds and sizes.
    let vector_index = size_of(c, "idx_resume_chunks_embedding").await?;
    progress("storage: building the halfvec expression index");
    c.batch_execute("DROP INDEX IF EXISTS bench_hnsw_half")
        .await?;
    let (half_build, _) = timed_build(
        ctx,
        "halfvec HNSW expression index",
        &crate::build::recommended(ctx),
        &format!("{HALFVEC_INDEX_SQL}{}", ctx.hnsw_with()),
    )
    .await?;
    let half_index = size_of(c, "bench_hnsw_half").await?;
    let (plain_copy, plain_build) = build_plain(ctx).await?;
    let c = &ctx.raw;
    c.batch_execute("ANALYZE resume_chunks").await?;
    let sizes = c
        .query_one(
            "SELECT pg_size_pretty(pg_relation_size('resume_chunks')), \
               pg_size_pretty(pg_relation_size((SELECT reltoastrelid FROM pg_class WHERE relname = 'resume_chunks'))), \
               pg_size_pretty(pg_relation_size('bench_chunks_plain')), \
               pg_size_pretty(pg_relation_size((SELECT reltoastrelid FROM pg_class WHERE relname = 'bench_chunks_plain'))), \
               pg_size_pretty(pg_relation_size('bench_plain_hnsw'))",
            &[],
        )
        .await?;
    let s = |i: usize| sizes.get::<_, String>(i);
    d.push_str(&format!(
        "| layout | heap | TOAST | HNSW index | HNSW build s (recommended settings) |\n|---|---|---|---|---|\n\
         | current (`vector`, default storage, `vector_cosine_ops`) | {} | {} | {vector_index} | see the build rows |\n\
         | + halfvec expression index (`halfvec_cosine_ops`) | same | same | {half_index} | {half_build:.1} |\n\
         | PLAIN copy (`SET STORAGE PLAIN`, same indexes) | {} | {} | {} | {plain_build:.1} (copy + other indexes {plain_copy:.1} s) |\n\n",
        s(0),
        s(1),
        s(2),
        s(3),
        s(4)
    ));

    // Recall and latency per ef_search.
    let (queries, truth) = crate::search::global_truth(ctx);
    let c = &ctx.raw;
    let policy = mockinterview_db::tuning::ef_search_for(n as u64, K as u32);
    let mut efs: Vec<u32> = vec![40, 100, 200, 400, policy];
    efs.sort_unstable();
    efs.dedup();
    d.push_str(&format!(
        "Whole-table top {K}, {} queries, tokio-postgres prepared statements (same client for every layout):\n\n\
         | layout / query | ef_search | recall@10 | p50 ms | p95 ms | plan |\n|---|---|---|---|---|---|\n",
        queries.len()
    ));
    let variants: [(&str, &str); 4] = [
        ("current: `ORDER BY embedding <=> $1`", VECTOR_SQL),
        (
            "halfvec index: `ORDER BY embedding::halfvec(768) <=> $1::halfvec(768)`",
            HALF_SQL,
        ),
        (
            "halfvec index + exact re-rank of the top 40",
            HALF_RERANK_SQL,
        ),
        ("PLAIN copy: `ORDER BY embedding <=> $1`", PLAIN_SQL),
    ];
    let mut at_policy: Vec<(f64, f64)> = Vec::new();
    for (v, (name, sql)) in variants.into_iter().enumerate() {
        ctx.prewarm(match v {
            0 => "idx_resume_chunks_embedding",
            1 | 2 => "bench_hnsw_half",
            _ => "bench_plain_hnsw",
        })
        .await?;
        for &ef in &efs {
            let (r, lat, p) = sweep_one(ctx, c, sql, ef, &queries, &truth).await?;
            progress(&format!(
                "  {name}, ef {ef}: recall {r:.4}, p50 {} ms, {p}",
                fmt_ms(lat.p50())
            ));
            d.push_str(&format!(
                "| {name} | {ef}{} | {r:.4} | {} | {} | {p} |\n",
                if ef == policy { " (policy)" } else { "" },
                fmt_ms(lat.p50()),
                fmt_ms(lat.pct_ms(95.0))
            ));
            if ef == policy {
                at_policy.push((r, lat.p50()));
            }
        }
    }
    c.batch_execute("RESET hnsw.ef_search").await?;
    ctx.report.info(
        "storage",
        "4",
        format!(
            "whole-table search at the policy's ef_search {policy}, {} rows: recall@10 / p50, current vs halfvec index vs halfvec + re-rank vs PLAIN",
            fmt_int(n as f64)
        ),
        at_policy
            .iter()
            .map(|(r, p)| format!("{r:.4} / {} ms", fmt_ms(*p)))
            .collect::<Vec<_>>()
            .join("; "),
        "",
    );

    // What a LangChain PGVectorStore client gets (its own session: pgvector
    // defaults, ef_search 40, no iterative scan).
    let (lc_rows, lc_summary) = langchain(ctx, &queries).await?;
    d.push_str(&lc_rows);
    ctx.report.info(
        "storage",
        "4",
        format!(
            "LangChain `PGVectorStore` query (`ORDER BY embedding <=> $1 LIMIT 10`) at {} rows, p50: vector index present vs only a halfvec expression index (exact scan) vs that on the PLAIN copy",
            fmt_int(n as f64)
        ),
        lc_summary,
        "",
    );

    // Insert cost and WAL.
    let (ins_rows, ins_summary) = inserts(ctx).await?;
    d.push_str(&ins_rows);
    ctx.report.info(
        "storage",
        "4",
        format!(
            "steady-state COPY of one resume into {} rows, per chunk: statement ms / WAL KB (with full-page images, which depend on checkpoint timing) and without, median of rounds; current vs halfvec index instead vs both indexes vs PLAIN",
            fmt_int(n as f64)
        ),
        ins_summary,
        "",
    );

    // Heap scans that do not need the vector: PLAIN's cost.
    let c = &ctx.raw;
    let mut scan = Vec::new();
    for table in ["resume_chunks", "bench_chunks_plain"] {
        let sql = format!("SELECT count(*) FROM {table} WHERE metadata->>'section' = 'skills'");
        c.query(&sql, &[]).await?;
        let mut s = Samples::default();
        for _ in 0..3 {
            let t = Instant::now();
            c.query(&sql, &[]).await?;
            s.push(t.elapsed());
        }
        scan.push(s.p50());
    }
    d.push_str(&format!(
        "\nA heap scan that does not read the vector (`count(*) WHERE metadata->>'section' = 'skills'`, seq scan, p50 of 3): current {} ms, PLAIN {} ms.\n",
        fmt_ms(scan[0]),
        fmt_ms(scan[1])
    ));
    ctx.report.info(
        "storage",
        "4",
        "heap scan not reading the vector (`count(*)` with a metadata condition), p50: current vs PLAIN",
        format!("{} ms", fmt_ms(scan[0])),
        format!("{} ms (PLAIN)", fmt_ms(scan[1])),
    );
    ctx.report.detail(
        format!("Storage and index layouts ({} rows)", fmt_int(n as f64)),
        d,
    );
    ctx.sql("DROP TABLE bench_chunks_plain; DROP INDEX bench_hnsw_half")
        .await?;
    Ok(())
}

/// LangChain client queries per layout; the exact scans run a few times.
async fn langchain(ctx: &Ctx, queries: &[Vec<f32>]) -> Result<(String, String), BoxError> {
    let lc = crate::raw::connect(&ctx.url).await?;
    let filter = serde_json::json!({ "section": "skills" });
    let mut out = String::from(
        "\nLangChain `PGVectorStore` client (own session, pgvector defaults: ef_search 40, iterative scan off):\n\n\
         | layout | filter | p50 ms | rows returned (of 10) | plan |\n|---|---|---|---|---|\n",
    );
    let mut summary = Vec::new();
    // (layout, table, statements run first inside the transaction)
    let layouts: [(&str, &str, &str); 3] = [
        ("current (vector HNSW)", "resume_chunks", ""),
        (
            "only the halfvec expression index",
            "resume_chunks",
            "DROP INDEX idx_resume_chunks_embedding",
        ),
        (
            "PLAIN, only a halfvec expression index",
            "bench_chunks_plain",
            "DROP INDEX bench_plain_hnsw",
        ),
    ];
    for (name, table, setup) in layouts {
        for filtered in [false, true] {
            let sql = langchain_sql(table, filtered);
            lc.batch_execute("BEGIN").await?;
            if !setup.is_empty() {
                lc.batch_execute(setup).await?;
            }
            let stmt = lc.prepare(&sql).await?;
            let exact = !setup.is_empty();
            let count = if exact { 3 } else { 50 };
            let mut lat = Samples::default();
            let mut returned = 0usize;
            for (i, q) in queries.iter().take(count + 1).enumerate() {
                let v = Vector::from(q.clone());
                let t = Instant::now();
                let rows = if filtered {
                    lc.query(&stmt, &[&v, &filter]).await?
                } else {
                    lc.query(&stmt, &[&v]).await?
                };
                if i > 0 {
                    lat.push(t.elapsed());
                    returned += rows.len();
                }
            }
            let v = Vector::from(queries[0].clone());
            let p = if filtered {
                plan(&lc, &sql, &[&v, &filter]).await?
            } else {
                plan(&lc, &sql, &[&v]).await?
            };
            lc.batch_execute("ROLLBACK").await?;
            let f = if filtered {
                "`section = skills`"
            } else {
                "none"
            };
            out.push_str(&format!(
                "| {name} | {f} | {} | {:.1} | {p} |\n",
                fmt_ms(lat.p50()),
                returned as f64 / count as f64
            ));
            if !filtered {
                summary.push(format!("{} ms ({name})", fmt_ms(lat.p50())));
            }
            progress(&format!(
                "  LangChain query, {name}, filter {f}: p50 {} ms, {p}",
                fmt_ms(lat.p50())
            ));
        }
    }
    Ok((out, summary.join("; ")))
}

/// Rolled-back 50-chunk COPYs per layout, rotated: statement time and WAL.
async fn inserts(ctx: &Ctx) -> Result<(String, String), BoxError> {
    let rounds = ctx.args.rounds();
    let per_round = 10;
    let lens: Vec<usize> = vec![50; rounds * per_round + 2];
    let users = ctx.corpus.new_users(&lens, 99);
    let layouts: [(&str, &str, &str); 4] = [
        (
            "current (vector HNSW)",
            "resume_chunks",
            "DROP INDEX bench_hnsw_half",
        ),
        (
            "halfvec HNSW instead",
            "resume_chunks",
            "DROP INDEX idx_resume_chunks_embedding",
        ),
        ("both HNSW indexes", "resume_chunks", ""),
        ("PLAIN copy (vector HNSW)", "bench_chunks_plain", ""),
    ];
    let c = &ctx.raw;
    // Full-page images make the WAL of one insert depend on when the last
    // checkpoint was: start from one, and split record bytes from FPIs with
    // pg_walinspect (PostgreSQL 15 contrib) where it can be installed.
    let walinspect = c
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .is_ok();
    c.batch_execute("CHECKPOINT").await?;
    // (layout, round, ms per chunk); WAL (total, records, FPIs) in KB per chunk
    let mut samples: Vec<(usize, usize, f64)> = Vec::new();
    let mut wal: Vec<(f64, f64, f64)> = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut rng = Rng::new(i as u64, 17);
        let (user_id, resume_id) = (rng.uuid(), rng.uuid());
        let rows = || {
            let mut r = Rng::new(i as u64, 18);
            u.chunks
                .iter()
                .enumerate()
                .map(move |(j, (text, section, page))| RawRow {
                    id: r.uuid(),
                    text,
                    user_id,
                    resume_id,
                    section,
                    page: *page,
                    vector: &u.vectors[j * DIMS..(j + 1) * DIMS],
                })
        };
        for k in 0..layouts.len() {
            let l = (i + k) % layouts.len();
            let (_, table, setup) = layouts[l];
            c.batch_execute("BEGIN").await?;
            if !setup.is_empty() {
                c.batch_execute(setup).await?;
            }
            let lsn = wal_lsn(c).await?;
            let t = Instant::now();
            raw::copy_rows(c, table, &ctx.vector_ty, rows()).await?;
            let dt = t.elapsed();
            let end = wal_lsn(c).await?;
            c.batch_execute("ROLLBACK").await?;
            if i < 2 {
                continue;
            }
            // Flush the WAL up to here (a commit with an xid flushes), and
            // read it back before a checkpoint can recycle it.
            c.batch_execute("BEGIN; SELECT txid_current(); COMMIT")
                .await?;
            let total: f64 = c
                .query_one(
                    "SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::float8",
                    &[&lsn, &end],
                )
                .await?
                .get(0);
            let (records, fpis) = if walinspect {
                let r = c
                    .query_one(
                        "SELECT coalesce(sum(record_size), 0)::float8, coalesce(sum(fpi_size), 0)::float8 \
                         FROM pg_get_wal_stats($1::text::pg_lsn, $2::text::pg_lsn)",
                        &[&lsn, &end],
                    )
                    .await?;
                (r.get::<_, f64>(0), r.get::<_, f64>(1))
            } else {
                (f64::NAN, f64::NAN)
            };
            let round = (i - 2) / per_round;
            samples.push((l, round, dt.as_secs_f64() * 1e3 / 50.0));
            wal.push((
                total / 1024.0 / 50.0,
                records / 1024.0 / 50.0,
                fpis / 1024.0 / 50.0,
            ));
        }
    }
    let per_round_median = |l: usize, f: &dyn Fn(usize) -> f64| -> Vec<f64> {
        (0..rounds)
            .map(|r| {
                let v: Vec<f64> = samples
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.0 == l && s.1 == r)
                    .map(|(j, _)| f(j))
                    .collect();
                median(&v)
            })
            .collect()
    };
    let mut round_ms: Vec<Vec<f64>> = Vec::new();
    let mut round_wal: Vec<Vec<f64>> = Vec::new();
    let mut round_rec: Vec<Vec<f64>> = Vec::new();
    let mut round_fpi: Vec<Vec<f64>> = Vec::new();
    for l in 0..layouts.len() {
        round_ms.push(per_round_median(l, &|j| samples[j].2));
        round_wal.push(per_round_median(l, &|j| wal[j].0));
        round_rec.push(per_round_median(l, &|j| wal[j].1));
        round_fpi.push(per_round_median(l, &|j| wal[j].2));
    }
    let mut out = format!(
        "\nSteady-state COPY of one 50-chunk resume into the full table (rolled back; the other HNSW index dropped inside the transaction), {rounds} rounds of {per_round}, rotated order; per chunk, median (min–max) of the rounds' medians:\n\n\
         | layout | COPY ms per chunk | WAL KB per chunk | of which WAL records | of which full-page images |\n|---|---|---|---|---|\n"
    );
    let mut summary = Vec::new();
    let f2 = |x: f64| format!("{x:.3}");
    let f1 = |x: f64| format!("{x:.1}");
    for (l, (name, _, _)) in layouts.iter().enumerate() {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            spread(&round_ms[l], f2),
            spread(&round_wal[l], f1),
            spread(&round_rec[l], f1),
            spread(&round_fpi[l], f1)
        ));
        summary.push(format!(
            "{} ms / {} KB, {} KB without FPIs ({name})",
            f2(median(&round_ms[l])),
            f1(median(&round_wal[l])),
            f1(median(&round_rec[l]))
        ));
    }
    Ok((out, summary.join("; ")))
}
