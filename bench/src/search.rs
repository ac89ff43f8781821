//! Items 2 and 3: scoped (one user) exact search and whole-table HNSW search.

use std::time::Instant;

use mockinterview_db::chunks::{SearchQuery, SearchScope, search_chunks};
use mockinterview_db::tuning::EF_SEARCH_BASE;
use mockinterview_db::tuning::ef_search_for;
use mockinterview_db::{DbConfig, Embedding};
use pgvector::Vector;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use uuid::Uuid;

use crate::corpus::{exact_top_k, ground_truth, recall};
use crate::raw::BoxError;
use crate::report::{Samples, fmt_int, fmt_ms, median, rounds_of, spread, spread_x, verdict};
use crate::{Ctx, progress};

/// The library's scoped SQL (`chunks::search_chunks`, `SearchScope::User`),
/// verbatim (top `k` written as a literal, as the library does), with the
/// table and the vector cast as parameters; `staged`: with the branch over
/// `resume_chunks_staged` (m009) that the library's query has.
fn scoped_sql(table: &str, cast: &str, k: usize, staged: bool) -> String {
    let part = |t: &str| {
        format!(
            "SELECT id, text, metadata, embedding, embedding <=> $1{cast} AS distance \
             FROM {t} WHERE embedding IS NOT NULL AND metadata->>'user_id' = $2"
        )
    };
    let union = if staged {
        format!(" UNION ALL {}", part("resume_chunks_staged"))
    } else {
        String::new()
    };
    format!(
        "WITH scoped AS MATERIALIZED ({}{union}) \
         SELECT id, text, metadata, 1 - distance AS score FROM scoped \
         WHERE distance NOT IN (0, 1, 2, 'NaN') \
            OR (embedding <#> embedding) NOT IN ('0', '-Infinity', 'NaN') \
         ORDER BY distance LIMIT {k}",
        part(table)
    )
}

/// The library's whole-table SQL (`SearchScope::All`), verbatim.
const GLOBAL_SQL: &str = "SELECT id, text, metadata, 1 - (embedding <=> $1) AS score \
     FROM resume_chunks  ORDER BY embedding <=> $1 LIMIT $2";

/// Same, with a metadata filter.
const GLOBAL_FILTERED_SQL: &str = "SELECT id, text, metadata, 1 - (embedding <=> $1) AS score \
     FROM resume_chunks WHERE metadata @> $2::jsonb ORDER BY embedding <=> $1 LIMIT $3";

/// Runs `sql` over the sea-orm pool and decodes the same columns the library
/// decodes; returns the ids.
async fn pool_query(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<Uuid>, BoxError> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    decode_pool_rows(&rows)
}

/// Decodes the columns the library decodes; returns the ids.
fn decode_pool_rows(rows: &[sea_orm::QueryResult]) -> Result<Vec<Uuid>, BoxError> {
    rows.iter()
        .map(|r| {
            let id: Uuid = r.try_get("", "id")?;
            let _text: Option<String> = r.try_get("", "text")?;
            let _meta: Option<serde_json::Value> = r.try_get("", "metadata")?;
            let _score: f64 = r.try_get("", "score")?;
            Ok(id)
        })
        .collect::<Result<Vec<_>, sea_orm::DbErr>>()
        .map_err(Into::into)
}

/// [`pool_query`] as an application would run it with the library's
/// whole-table settings: in a transaction that starts with one
/// `set_config` call for `hnsw.ef_search` and `hnsw.iterative_scan`.
async fn pool_query_with_ef(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
    ef_search: u32,
) -> Result<Vec<Uuid>, BoxError> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('hnsw.ef_search', $1, true), \
                set_config('hnsw.iterative_scan', 'strict_order', true)",
        vec![ef_search.to_string().into()],
    ))
    .await?;
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    txn.commit().await?;
    decode_pool_rows(&rows)
}

fn decode_tp(rows: &[tokio_postgres::Row]) -> Vec<Uuid> {
    rows.iter()
        .map(|r| {
            let _t: Option<String> = r.get(1);
            let _m: Option<serde_json::Value> = r.get(2);
            let _s: f64 = r.get(3);
            r.get::<_, Uuid>(0)
        })
        .collect()
}

/// Corpus indexes of returned ids (ids not from the corpus are dropped,
/// which counts as a miss).
fn indexes(ctx: &Ctx, ids: &[Uuid]) -> Vec<usize> {
    ids.iter()
        .filter_map(|id| ctx.index_of.get(id).copied())
        .collect()
}

const SCOPED_PATHS: [&str; 6] = [
    "library `search_chunks(User)`",
    "same SQL, same sea-orm pool (`query_all_raw`)",
    "same SQL, tokio-postgres prepared statement",
    "same SQL without the staged branch, copy with `embedding SET STORAGE PLAIN`",
    "same SQL without the staged branch, copy with `halfvec(768)` embedding",
    "same SQL without the staged branch (the query before m009), same pool",
];

/// 2: scoped search, top 5, one user.
pub async fn scoped(ctx: &mut Ctx) -> Result<(), BoxError> {
    const K: usize = 5;
    let nq = ctx.args.scoped_queries();
    let queries = ctx.corpus.scoped_queries(nq);
    let truth: Vec<_> = queries
        .iter()
        .map(|(u, q)| exact_top_k(&ctx.corpus, q, ctx.corpus.users[*u].range(), K))
        .collect();

    progress("scoped search: building the storage variants (PLAIN, halfvec copies)");
    ctx.sql(
        "DROP TABLE IF EXISTS bench_chunks_plain, bench_chunks_half; \
         CREATE TABLE bench_chunks_plain (LIKE resume_chunks INCLUDING DEFAULTS); \
         ALTER TABLE bench_chunks_plain ALTER COLUMN embedding SET STORAGE PLAIN; \
         INSERT INTO bench_chunks_plain SELECT * FROM resume_chunks; \
         CREATE INDEX ON bench_chunks_plain ((metadata->>'user_id')); \
         CREATE TABLE bench_chunks_half (id uuid PRIMARY KEY, text text, metadata jsonb, \
           embedding halfvec(768)); \
         INSERT INTO bench_chunks_half \
           SELECT id, text, metadata, embedding::halfvec(768) FROM resume_chunks; \
         CREATE INDEX ON bench_chunks_half ((metadata->>'user_id')); \
         ANALYZE bench_chunks_plain; ANALYZE bench_chunks_half; ANALYZE resume_chunks",
    )
    .await?;
    let tables = [
        (scoped_sql("resume_chunks", "", K, true), "resume_chunks"),
        (
            scoped_sql("bench_chunks_plain", "", K, false),
            "bench_chunks_plain",
        ),
        (
            scoped_sql("bench_chunks_half", "::vector::halfvec", K, false),
            "bench_chunks_half",
        ),
        (scoped_sql("resume_chunks", "", K, false), "resume_chunks"),
    ];
    let prepared = ctx.raw.prepare(&tables[0].0).await?;

    let mut lat: Vec<Samples> = vec![Samples::default(); SCOPED_PATHS.len()];
    let mut rec: Vec<f64> = vec![0.0; SCOPED_PATHS.len()];
    let warmup = 50.min(nq);
    progress(&format!(
        "scoped search: {nq} queries × {} paths (+{warmup} warm-up)",
        SCOPED_PATHS.len()
    ));
    for round in 0..warmup + nq {
        let (ui, q) = &queries[round % nq];
        let user = &ctx.corpus.users[*ui];
        let lib_query = SearchQuery::new(
            Embedding::new(
                &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
                q.clone(),
            )?,
            K as u32,
            SearchScope::User(user.id),
        );
        let vector = Vector::from(q.clone());
        let uid = user.id.to_string();
        for k in 0..SCOPED_PATHS.len() {
            let p = (round + k) % SCOPED_PATHS.len();
            let t = Instant::now();
            let ids: Vec<Uuid> = match p {
                0 => search_chunks(&ctx.db, &lib_query)
                    .await?
                    .into_iter()
                    .map(|m| m.id)
                    .collect(),
                1 | 3 | 4 | 5 => {
                    let sql = &tables[match p {
                        1 => 0,
                        3 => 1,
                        4 => 2,
                        _ => 3,
                    }]
                    .0;
                    pool_query(
                        &ctx.pool,
                        sql,
                        vec![vector.clone().into(), uid.clone().into()],
                    )
                    .await?
                }
                _ => decode_tp(&ctx.raw.query(&prepared, &[&vector, &uid]).await?),
            };
            let dt = t.elapsed();
            if round >= warmup {
                lat[p].push(dt);
                rec[p] += recall(&ctx.corpus, q, &indexes(ctx, &ids), &truth[round % nq]);
            }
        }
    }
    for r in &mut rec {
        *r /= nq as f64;
    }
    let n = fmt_int(ctx.corpus.len() as f64);
    let (lib, raw) = (&lat[0], &lat[1]);
    ctx.report.row(
        "scoped",
        "2",
        format!("scoped search (one user, top {K}), {n} rows: recall vs exact"),
        format!("{:.4}", rec[0]),
        format!("{:.4} (same SQL)", rec[1]),
        "",
        "= 1.0",
        verdict(rec[0] >= 1.0 - 1e-12),
    );
    let rounds = ctx.args.rounds();
    let ratios: Vec<f64> = rounds_of(lib, rounds)
        .iter()
        .zip(&rounds_of(raw, rounds))
        .map(|(l, r)| l.p50() / r.p50())
        .collect();
    ctx.report.row(
        "scoped",
        "2",
        format!(
            "scoped search: library vs same SQL over the same pool, latency (interleaved per query, rotated order); ratio: median (min–max) of {} rounds' p50 ratios",
            ratios.len()
        ),
        lib.summary(),
        raw.summary(),
        format!("{} (p50)", spread_x(&ratios)),
        "p50 ≤ 1.2×",
        verdict(median(&ratios) <= 1.2),
    );
    ctx.report.row(
        "scoped",
        "2",
        format!("scoped search: library p50 at {n} rows"),
        format!("{} ms", fmt_ms(lib.p50())),
        "",
        "",
        "< 1 ms",
        verdict(lib.p50() < 1.0),
    );
    for (p, what) in [
        (2, "tokio-postgres prepared statement (driver floor)"),
        (
            3,
            "`SET STORAGE PLAIN` copy (same SQL without the staged branch, same pool)",
        ),
        (
            4,
            "`halfvec(768)` copy (same SQL without the staged branch, same pool)",
        ),
        (
            5,
            "the library's query before m009 (no staged branch), same pool",
        ),
    ] {
        ctx.report.info(
            "scoped",
            "2",
            format!("scoped search, {what}: latency (recall {:.4})", rec[p]),
            lat[p].summary(),
            format!("{:.2}× the library's p50", lat[p].p50() / lib.p50()),
        );
    }

    let mut d =
        String::from("| path | p50 ms | p95 ms | p99 ms | recall@5 |\n|---|---|---|---|---|\n");
    for (p, name) in SCOPED_PATHS.iter().enumerate() {
        d.push_str(&format!(
            "| {name} | {} | {} | {} | {:.4} |\n",
            fmt_ms(lat[p].p50()),
            fmt_ms(lat[p].pct_ms(95.0)),
            fmt_ms(lat[p].pct_ms(99.0)),
            rec[p]
        ));
    }
    d.push_str("\n| table | heap | TOAST | rows per heap page |\n|---|---|---|---|\n");
    for (_, t) in &tables[..3] {
        let r = ctx
            .raw
            .query_one(
                &format!(
                    "SELECT pg_size_pretty(pg_relation_size('{t}')), \
                       pg_size_pretty(coalesce(pg_relation_size(reltoastrelid), 0)), \
                       round(reltuples / greatest(relpages, 1))::text \
                     FROM pg_class WHERE relname = '{t}'"
                ),
                &[],
            )
            .await?;
        d.push_str(&format!(
            "| `{t}` | {} | {} | {} |\n",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        ));
    }
    // One plan per variant, for the same query.
    let (ui, q) = &queries[0];
    let uid = ctx.corpus.users[*ui].id.to_string();
    let vector = Vector::from(q.clone());
    for (sql, t) in &tables[..3] {
        let rows = ctx
            .raw
            .query(
                &format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"),
                &[&vector, &uid],
            )
            .await?;
        let plan: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        d.push_str(&format!("\n`{t}`:\n\n```\n{}\n```\n", plan.join("\n")));
    }
    ctx.report.detail(
        format!("Scoped search ({nq} queries, top {K}, users of 20–80 chunks)"),
        d,
    );
    ctx.sql("DROP TABLE bench_chunks_plain, bench_chunks_half")
        .await?;
    Ok(())
}

/// Whole-table queries and their exact top 10 (corpus index, similarity).
pub type Truth = (Vec<Vec<f32>>, Vec<Vec<(usize, f32)>>);

/// The whole-table queries and their exact top 10, computed once per run.
pub fn global_truth(ctx: &mut Ctx) -> Truth {
    if ctx.truth.is_none() {
        let queries = ctx.corpus.global_queries(ctx.args.queries());
        let truth = ground_truth(&ctx.corpus, &queries, 10);
        ctx.truth = Some((queries, truth));
    }
    ctx.truth.clone().unwrap_or_default()
}

/// 3: whole-table search, top 10: recall and latency per ef_search, raw SQL,
/// 2 concurrent clients, a filtered query with and without iterative scans.
pub async fn global(ctx: &mut Ctx) -> Result<(), BoxError> {
    const K: usize = 10;
    let (queries, truth) = global_truth(ctx);
    let nq = queries.len();
    let embeddings: Vec<Embedding> = queries
        .iter()
        .map(|q| {
            Embedding::new(
                &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
                q.clone(),
            )
        })
        .collect::<Result<_, _>>()?;
    let warmup = 20.min(nq);
    let n = fmt_int(ctx.corpus.len() as f64);
    // The library's policy for this table size (src/tuning.rs), which the
    // harness's pool (`ctx.db`) applies.
    let policy = ef_search_for(ctx.corpus.len() as u64, K as u32);
    let mut efs = ctx.args.ef_search.clone();
    efs.push(policy);
    efs.sort_unstable();
    efs.dedup();
    let mut sweep = String::from(
        "| hnsw.ef_search | recall@10 | p50 ms | p95 ms | p99 ms | QPS, 1 client | plan |\n|---|---|---|---|---|---|---|\n",
    );
    ctx.prewarm("idx_resume_chunks_embedding").await?;
    // One pool per value, warmed; then `rounds` rounds of all queries per
    // value, in rotated order (whatever runs first in a round is slower),
    // p50 per round reported as median (min–max).
    let mut pools = Vec::with_capacity(efs.len());
    for &ef in &efs {
        let mut config = DbConfig::new(ctx.url.clone());
        config.hnsw_ef_search = Some(ef);
        config.max_connections = 2;
        let pool = config.connect().await?;
        for embedding in embeddings.iter().take(warmup) {
            search_chunks(
                &pool,
                &SearchQuery::new(embedding.clone(), K as u32, SearchScope::All),
            )
            .await?;
        }
        pools.push(pool);
    }
    let rounds = ctx.args.rounds();
    let mut lat = vec![Samples::default(); efs.len()];
    let mut round_p50s = vec![Vec::new(); efs.len()];
    let mut rsum = vec![0.0; efs.len()];
    for round in 0..rounds {
        for step in 0..efs.len() {
            let e = (round + step) % efs.len();
            let mut this = Samples::default();
            for i in 0..nq {
                let query = SearchQuery::new(embeddings[i].clone(), K as u32, SearchScope::All);
                let t = Instant::now();
                let res = search_chunks(&pools[e], &query).await?;
                let dt = t.elapsed();
                this.push(dt);
                lat[e].push(dt);
                if round == 0 {
                    let ids: Vec<Uuid> = res.iter().map(|m| m.id).collect();
                    rsum[e] += recall(&ctx.corpus, &queries[i], &indexes(ctx, &ids), &truth[i]);
                }
            }
            round_p50s[e].push(this.p50());
        }
    }
    let mut default_lat = Samples::default();
    let mut default_p50s = Vec::new();
    let mut default_recall = 0.0;
    for (e, &ef) in efs.iter().enumerate() {
        let pool = &pools[e];
        let lat = &lat[e];
        let r = rsum[e] / nq as f64;
        let qps = (nq * rounds) as f64 / lat.total_s();
        let plan = pool
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!("EXPLAIN (COSTS OFF) {GLOBAL_SQL}"),
                vec![Vector::from(queries[0].clone()).into(), (K as i64).into()],
            ))
            .await?
            .iter()
            .filter_map(|r| r.try_get_by_index::<String>(0).ok())
            .collect::<Vec<_>>()
            .join(" ");
        let plan = if plan.contains("idx_resume_chunks_embedding") {
            "HNSW index scan"
        } else {
            "sequential scan + sort (exact)"
        };
        progress(&format!(
            "  ef_search {ef}: recall@10 {r:.4}, p50 {} ms, p95 {} ms, {plan}",
            spread(&round_p50s[e], fmt_ms),
            fmt_ms(lat.pct_ms(95.0))
        ));
        sweep.push_str(&format!(
            "| {ef}{} | {r:.4} | {} | {} | {} | {} | {plan} |\n",
            if ef == policy {
                " (library policy)"
            } else if ef == EF_SEARCH_BASE {
                " (old fixed default)"
            } else {
                ""
            },
            spread(&round_p50s[e], fmt_ms),
            fmt_ms(lat.pct_ms(95.0)),
            fmt_ms(lat.pct_ms(99.0)),
            fmt_int(qps)
        ));
        ctx.report.recall_csv.push(format!(
            "{ef},{r:.5},{:.4},{:.4},{qps:.1},{plan},{}",
            median(&round_p50s[e]),
            lat.pct_ms(95.0),
            if ef == policy { "policy" } else { "" }
        ));
        if ef == policy {
            default_lat = lat.clone();
            default_p50s = round_p50s[e].clone();
            default_recall = r;
        }
    }
    for pool in pools {
        pool.close().await.ok();
    }
    ctx.report.row(
        "global",
        "3",
        format!(
            "whole-table search (HNSW, top {K}), {n} rows, library policy `ef_search_for({}, {K})` = {policy}: recall@10 (p50: median (min–max) of {} rounds of {nq} queries, values in rotated order)",
            ctx.corpus.len(),
            default_p50s.len()
        ),
        format!(
            "{default_recall:.4} (p50 {} ms, p95 {} ms)",
            spread(&default_p50s, fmt_ms),
            fmt_ms(default_lat.pct_ms(95.0))
        ),
        "exact top 10",
        "",
        "≥ 0.95, p50 ≤ 5 ms",
        verdict(default_recall >= 0.95 && median(&default_p50s) <= 5.0),
    );

    // Same SQL over the same (default) pool, and 2 concurrent clients.
    let db = &ctx.db;
    let mut lib = Samples::default();
    let mut raw = Samples::default();
    let fwarm = warmup.min(5);
    for round in 0..fwarm + nq {
        let i = round % nq;
        let query = SearchQuery::new(embeddings[i].clone(), K as u32, SearchScope::All);
        let vector = Vector::from(queries[i].clone());
        for k in 0..2 {
            let t = Instant::now();
            if (round + k) % 2 == 0 {
                search_chunks(db, &query).await?;
                if round >= fwarm {
                    lib.push(t.elapsed());
                }
            } else {
                pool_query_with_ef(
                    &ctx.pool,
                    GLOBAL_SQL,
                    vec![vector.clone().into(), (K as i64).into()],
                    policy,
                )
                .await?;
                if round >= fwarm {
                    raw.push(t.elapsed());
                }
            }
        }
    }
    let ratios: Vec<f64> = rounds_of(&lib, ctx.args.rounds())
        .iter()
        .zip(&rounds_of(&raw, ctx.args.rounds()))
        .map(|(l, r)| l.p50() / r.p50())
        .collect();
    ctx.report.info(
        "global",
        "3",
        format!(
            "whole-table search with the library's defaults (ef_search from the table size, set inside the search statement: one round trip) vs LangChain's query (`ORDER BY embedding <=> $1 LIMIT k`) in a transaction after `set_config` of ef_search {policy} (four round trips) over the same pool (alternating per query); ratio: median (min–max) of {} rounds",
            ratios.len()
        ),
        lib.summary(),
        format!("{} ({} p50)", raw.summary(), spread_x(&ratios)),
    );
    let mut qps = Vec::new();
    for clients in [1usize, 2] {
        let t = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let db = ctx.db.clone();
            let embeddings = embeddings.clone();
            tasks.push(tokio::spawn(async move {
                for j in 0..embeddings.len() {
                    let i = if c == 0 { j } else { embeddings.len() - 1 - j };
                    let query = SearchQuery::new(embeddings[i].clone(), K as u32, SearchScope::All);
                    search_chunks(&db, &query).await?;
                }
                Ok::<(), mockinterview_db::Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        qps.push(clients as f64 * nq as f64 / t.elapsed().as_secs_f64());
    }
    let (qps1, qps2) = (qps[0], qps[1]);
    ctx.report.info(
        "global",
        "3",
        format!("whole-table search throughput, ef_search {policy}: 2 concurrent clients vs 1"),
        format!("{} queries/s", fmt_int(qps2)),
        format!(
            "{} queries/s (1 client; {:.2}× with 2)",
            fmt_int(qps1),
            qps2 / qps1
        ),
    );

    // Filtered whole-table search: iterative scan (library) vs off.
    let section = "skills";
    let matching: Vec<usize> = (0..ctx.corpus.len())
        .filter(|&i| ctx.corpus.extras[i].0 == section)
        .collect();
    let ftruth: Vec<_> = queries
        .iter()
        .map(|q| exact_top_k(&ctx.corpus, q, matching.iter().copied(), K))
        .collect();
    let off = crate::raw::connect(&ctx.url).await?;
    off.batch_execute(&format!(
        "SET hnsw.iterative_scan = off; SET hnsw.ef_search = {policy}"
    ))
    .await?;
    let off_stmt = off.prepare(GLOBAL_FILTERED_SQL).await?;
    let filter = serde_json::json!({ "section": section });
    let (mut lat_on, mut lat_off) = (Samples::default(), Samples::default());
    let (mut r_on, mut r_off) = (0.0, 0.0);
    // Without iterative scans the planner answers with an exact scan of
    // the filtered rows: seconds per query at 1M rows, so fewer of them.
    let fq = if ctx.corpus.len() > 300_000 {
        nq.min(10)
    } else {
        nq.min(50)
    };
    let fwarm = warmup.min(5);
    for round in 0..fwarm + fq {
        let i = round % fq;
        let query = SearchQuery::new(embeddings[i].clone(), K as u32, SearchScope::All)
            .filter("section", section);
        let t = Instant::now();
        let res = search_chunks(db, &query).await?;
        let d_on = t.elapsed();
        let vector = Vector::from(queries[i].clone());
        let t = Instant::now();
        let rows = off
            .query(&off_stmt, &[&vector, &filter, &(K as i64)])
            .await?;
        let d_off = t.elapsed();
        if round >= fwarm {
            lat_on.push(d_on);
            lat_off.push(d_off);
            let ids: Vec<Uuid> = res.iter().map(|m| m.id).collect();
            r_on += recall(&ctx.corpus, &queries[i], &indexes(ctx, &ids), &ftruth[i]);
            r_off += recall(
                &ctx.corpus,
                &queries[i],
                &indexes(ctx, &decode_tp(&rows)),
                &ftruth[i],
            );
        }
    }
    let share = matching.len() as f64 / ctx.corpus.len() as f64 * 100.0;
    ctx.report.info(
        "global",
        "3",
        format!(
            "filtered whole-table search (`section = {section}`, {share:.0}% of rows): library (iterative scan, strict order) vs iterative scan off"
        ),
        format!("recall {:.4}, p50 {} ms", r_on / fq as f64, fmt_ms(lat_on.p50())),
        format!("recall {:.4}, p50 {} ms (off)", r_off / fq as f64, fmt_ms(lat_off.p50())),
    );
    ctx.report.detail(
        format!("Whole-table search: recall@10 and latency per `hnsw.ef_search` ({nq} queries, {n} rows)"),
        sweep,
    );
    Ok(())
}
