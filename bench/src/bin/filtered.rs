//! `mockinterview-bench-filtered`: whole-table top-10 searches with a
//! metadata filter, by the filter's selectivity, the library against
//! LangChain JS `PGVectorStore`'s plain query (issue 21, item 1).
//!
//! ```bash
//! cargo build --release -p mockinterview-bench
//! target/release/mockinterview-bench-filtered --chunks 100000 --queries 50 --rounds 3
//! ```
//!
//! It loads `--chunks` chunks (50 per resume, clustered vectors, HNSW built
//! afterwards at `ef_construction` 200) whose metadata carries `k2`, `k5`,
//! `k20`, `k100` and `k1000`, true for one chunk in 2, 5, 20, 100 and 1000
//! (50%, 20%, 5%, 1% and 0.1% of the rows). For each filter it runs
//! `--queries` queries per round, the two paths alternating per query and
//! the first path alternating per round:
//! - **library**: `search_chunks` with `SearchScope::All` and the filter;
//! - **LangChain**: `SELECT ... FROM resume_chunks WHERE metadata @> $2
//!   ORDER BY embedding <=> $1 LIMIT 10` over a bare pool with pgvector's
//!   defaults (what `PGVectorStore.similaritySearchVectorWithScore` sends).
//!
//! Recall@10 is against an exact scan of the filtered rows. It prints a
//! markdown table: per filter, each path's recall and p50 (median and
//! min–max of the rounds' p50s), and the ratio of p50s.

use std::time::{Duration, Instant};

use clap::Parser;
use migration::MigratorTrait;
use mockinterview_db::chunks::search_chunks;
use mockinterview_db::{DbConfig, Embedding, NewChunk, SearchQuery, SearchScope};
use pgconn::DbUrl;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use uuid::Uuid;

#[path = "common/clustered.rs"]
mod clustered;
use clustered::{BoxError, vector};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Filtered whole-table search by selectivity: library vs LangChain's query")]
struct Args {
    /// Chunks in the corpus (50 per resume).
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Queries per filter and round.
    #[arg(long, default_value_t = 50)]
    queries: u64,
    /// Rounds (the first path alternates between rounds).
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// Reuse the loaded database of an earlier run (`--keep`).
    #[arg(long)]
    reuse: bool,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
}

const DB_NAME: &str = "mi_bench_filtered";
/// (metadata key, one chunk in n).
const FILTERS: [(&str, usize); 5] = [
    ("k2", 2),
    ("k5", 5),
    ("k20", 20),
    ("k100", 100),
    ("k1000", 1000),
];
const LANGCHAIN_SQL: &str = "SELECT id, text, metadata, 1 - (embedding <=> $1) AS score \
     FROM resume_chunks WHERE metadata @> $2::jsonb ORDER BY embedding <=> $1 LIMIT 10";
const EXACT_SQL: &str = "SELECT id FROM resume_chunks WHERE metadata @> $2::jsonb \
     ORDER BY embedding <=> $1 LIMIT 10";

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let admin_url = DbUrl::from_env()?;
    let url = admin_url.with_database(DB_NAME);
    let admin = sea_orm::Database::connect(admin_url.as_str()).await?;
    if !args.reuse {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
            .await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {DB_NAME}"))
            .await?;
    }
    let raw = sea_orm::Database::connect(url.as_str()).await?;
    let db = DbConfig::new(url.as_str()).connect().await?;
    if !args.reuse {
        migration::Migrator::up(&raw, None).await?;
        load(&db, &raw, args.chunks).await?;
        eprintln!("loaded {} chunks", args.chunks);
    }

    println!(
        "{} chunks, top 10, {} queries × {} rounds per filter, paths alternating per query\n",
        args.chunks, args.queries, args.rounds
    );
    println!(
        "| filter keeps | library recall@10 | library p50 ms | LangChain recall@10 | LangChain p50 ms | library / LangChain p50 |"
    );
    println!("|---|---|---|---|---|---|");
    for (key, n) in FILTERS {
        let filter = serde_json::json!({ key: true });
        let mut lib_p50 = Vec::new();
        let mut lc_p50 = Vec::new();
        let (mut lib_found, mut lc_found, mut total) = (0usize, 0usize, 0usize);
        for round in 0..args.rounds {
            let (mut lib, mut lc) = (Vec::new(), Vec::new());
            for q in 0..args.queries {
                let embedding = vector(700_000_000 + round * 10_000 + q);
                let exact = ids(&raw, EXACT_SQL, &embedding, &filter, true).await?;
                for turn in 0..2 {
                    if (round + turn) % 2 == 0 {
                        let query = SearchQuery::new(embedding.clone(), 10, SearchScope::All)
                            .filter(key, true);
                        let t = Instant::now();
                        let hits = search_chunks(&db, &query).await?;
                        lib.push(t.elapsed());
                        lib_found += hits.iter().filter(|h| exact.contains(&h.id)).count();
                    } else {
                        let t = Instant::now();
                        let hits = ids(&raw, LANGCHAIN_SQL, &embedding, &filter, false).await?;
                        lc.push(t.elapsed());
                        lc_found += hits.iter().filter(|h| exact.contains(h)).count();
                    }
                }
                total += exact.len();
            }
            lib_p50.push(p50(lib));
            lc_p50.push(p50(lc));
        }
        let ratios: Vec<f64> = lib_p50.iter().zip(&lc_p50).map(|(a, b)| a / b).collect();
        println!(
            "| {} ({key}) | {:.4} | {} | {:.4} | {} | {} |",
            format_args!("{:.1}%", 100.0 / n as f64),
            lib_found as f64 / total.max(1) as f64,
            spread(&lib_p50),
            lc_found as f64 / total.max(1) as f64,
            spread(&lc_p50),
            spread(&ratios).replace(" (", "× ("),
        );
    }
    db.close().await?;
    raw.close().await?;
    if !args.keep {
        admin
            .execute_unprepared(&format!("DROP DATABASE {DB_NAME} WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

/// The ids `sql` returns for `embedding` and `filter`; `exact` disables
/// index scans (the truth).
async fn ids(
    raw: &DatabaseConnection,
    sql: &str,
    embedding: &Embedding,
    filter: &serde_json::Value,
    exact: bool,
) -> Result<Vec<Uuid>, BoxError> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [embedding.to_vector().into(), filter.clone().into()],
    );
    let rows = if exact {
        let txn = raw.begin().await?;
        txn.execute_unprepared("SET LOCAL enable_indexscan = off")
            .await?;
        let rows = txn.query_all_raw(statement).await?;
        txn.commit().await?;
        rows
    } else {
        raw.query_all_raw(statement).await?
    };
    Ok(rows
        .iter()
        .map(|r| r.try_get::<Uuid>("", "id"))
        .collect::<Result<_, _>>()?)
}

fn p50(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// `median (min–max)`.
fn spread(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    format!("{:.2} ({:.2}–{:.2})", v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The corpus ([`clustered::load`]) with the selectivity keys.
async fn load(
    db: &mockinterview_db::Db,
    raw: &DatabaseConnection,
    chunks: usize,
) -> Result<(), BoxError> {
    clustered::load(db, raw, chunks, "filtered", |n| {
        let mut chunk = NewChunk::new(format!("chunk {n}"), vector(n as u64));
        for (key, every) in FILTERS {
            if n.is_multiple_of(every) {
                chunk = chunk.with_metadata(key, true);
            }
        }
        chunk
    })
    .await?;
    Ok(())
}
