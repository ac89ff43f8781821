//! `mockinterview-bench-churn`: a soak of the HNSW index under chunk
//! churn, the workload pgvector's 0.8.2–0.8.4 fixes concern (see
//! `mockinterview_db::health::PGVECTOR_KNOWN_BUGS`): every chunk replacement
//! deletes rows, so VACUUM repairs the HNSW graph all the time.
//!
//! ```bash
//! cargo build --release -p mockinterview-bench
//! target/release/mockinterview-bench-churn --chunks 100000 --minutes 20
//! ```
//!
//! It loads `--chunks` chunks (50 per resume, clustered vectors) into
//! `mi_bench_churn` with the HNSW index built afterwards, then, for
//! `--minutes`, at the same time:
//! - a writer replaces the chunks of random resumes with new vectors
//!   (`replace_chunks`, `Indexing::Now`), 20% of the corpus per cycle;
//! - two searchers run whole-table and scoped searches through the library;
//! - autovacuum runs (thresholds lowered on `resume_chunks`), and an
//!   explicit `VACUUM resume_chunks` every `--vacuum-every` seconds;
//! - every `--report-every` seconds: recall@10 of 20 whole-table searches
//!   against an exact scan, the index size, rows replaced, vacuums, errors.
//!
//! It prints a markdown table (and the pgvector version) and exits 1 when
//! any call failed. It never stops early on an error: every error counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use migration::MigratorTrait;
use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks, search_chunks};
use mockinterview_db::{Db, DbConfig, NewChunk, SearchQuery, SearchScope};
use pgconn::DbUrl;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use uuid::Uuid;

#[path = "common/clustered.rs"]
mod clustered;
use clustered::{BoxError, PER_RESUME, vector};

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "HNSW soak: chunk replacements, vacuums and searches at once")]
struct Args {
    /// Chunks in the corpus (50 per resume).
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// How long the churn runs.
    #[arg(long, default_value_t = 20)]
    minutes: u64,
    /// Seconds between reports.
    #[arg(long, default_value_t = 60)]
    report_every: u64,
    /// Seconds between explicit VACUUMs.
    #[arg(long, default_value_t = 90)]
    vacuum_every: u64,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
}

const DB_NAME: &str = "mi_bench_churn";

/// Counters shared by the tasks.
#[derive(Default)]
struct Counters {
    replaced_chunks: AtomicU64,
    searches: AtomicU64,
    vacuums: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(0) => {}
        Ok(errors) => {
            eprintln!("{errors} calls failed");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("soak failed: {e}");
            std::process::exit(2);
        }
    }
}

fn chunk_set(resume: usize, generation: u64) -> Vec<NewChunk> {
    (0..PER_RESUME)
        .map(|i| {
            let seed = generation * 10_000_000 + (resume * PER_RESUME + i) as u64;
            NewChunk::new(
                format!("resume {resume} chunk {i} gen {generation}"),
                vector(seed),
            )
        })
        .collect()
}

async fn run(args: Args) -> Result<u64, BoxError> {
    let admin_url = DbUrl::from_env()?;
    let admin = sea_orm::Database::connect(admin_url.as_str()).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {DB_NAME}"))
        .await?;
    let url = admin_url.with_database(DB_NAME);
    // A bare connection for what cannot run in a transaction (VACUUM, the
    // index build) and for the exact scans.
    let raw = sea_orm::Database::connect(url.as_str()).await?;
    migration::Migrator::up(&raw, None).await?;
    let version: String = raw
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
        ))
        .await?
        .ok_or("no pgvector")?
        .try_get_by_index(0)?;
    eprintln!("pgvector {version}");

    let mut config = DbConfig::new(url.as_str());
    config.max_connections = 6;
    let db = config.connect().await?;
    let owners = load(&db, &raw, args.chunks).await?;
    eprintln!("loaded {} chunks ({} resumes)", args.chunks, owners.len());

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(writer(
        db.clone(),
        owners.clone(),
        counters.clone(),
        stop.clone(),
    )));
    for s in 0..2 {
        tasks.push(tokio::spawn(searcher(
            db.clone(),
            owners.clone(),
            counters.clone(),
            stop.clone(),
            s,
        )));
    }
    tasks.push(tokio::spawn(vacuumer(
        url.as_str().to_owned(),
        Duration::from_secs(args.vacuum_every),
        counters.clone(),
        stop.clone(),
    )));

    println!(
        "pgvector {version}, {} chunks, {} minutes\n",
        args.chunks, args.minutes
    );
    println!(
        "| minute | recall@10 (20 queries) | index MB | chunks replaced | searches | vacuums (explicit + auto) | errors |"
    );
    println!("|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let end = started + Duration::from_secs(args.minutes * 60);
    let mut recalls = Vec::new();
    let mut round = 0_u64;
    loop {
        let next = started + Duration::from_secs(args.report_every * (round + 1));
        tokio::time::sleep_until(next.min(end).into()).await;
        round += 1;
        let recall = match recall_at_10(&db, &raw, round).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("recall check failed: {e}");
                counters.errors.fetch_add(1, Ordering::Relaxed);
                f64::NAN
            }
        };
        recalls.push(recall);
        let (size, autovacuums) = index_stats(&raw).await?;
        println!(
            "| {:.1} | {recall:.4} | {:.1} | {} | {} | {} + {autovacuums} | {} |",
            started.elapsed().as_secs_f64() / 60.0,
            size as f64 / 1e6,
            counters.replaced_chunks.load(Ordering::Relaxed),
            counters.searches.load(Ordering::Relaxed),
            counters.vacuums.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
        );
        if Instant::now() >= end {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    // An explicit VACUUM still running would hold the run for as long as it
    // takes: report it, then cancel it.
    let running = raw
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pid, extract(epoch FROM now() - query_start)::float8 AS secs \
             FROM pg_stat_activity \
             WHERE datname = current_database() AND query = 'VACUUM resume_chunks' \
               AND state = 'active'",
        ))
        .await?;
    for row in running {
        let (pid, secs): (i32, f64) = (row.try_get("", "pid")?, row.try_get("", "secs")?);
        println!(
            "\nan explicit VACUUM had been running for {:.1} minutes at the end; cancelled",
            secs / 60.0
        );
        raw.execute_unprepared(&format!("SELECT pg_cancel_backend({pid})"))
            .await?;
    }
    for t in tasks {
        t.await?;
    }
    let errors = counters.errors.load(Ordering::Relaxed);
    let finite: Vec<f64> = recalls.iter().copied().filter(|r| r.is_finite()).collect();
    println!(
        "\nrecall@10 min {:.4}, last {:.4}; errors {errors}",
        finite.iter().copied().fold(f64::INFINITY, f64::min),
        finite.last().copied().unwrap_or(f64::NAN)
    );
    db.close().await?;
    raw.close().await?;
    if !args.keep {
        admin
            .execute_unprepared(&format!("DROP DATABASE {DB_NAME} WITH (FORCE)"))
            .await?;
    }
    Ok(errors)
}

/// The corpus ([`clustered::load`]), then autovacuum thresholds lowered
/// so that it vacuums the churn.
async fn load(
    db: &Db,
    raw: &DatabaseConnection,
    chunks: usize,
) -> Result<Vec<(Uuid, Uuid)>, BoxError> {
    let owners = clustered::load(db, raw, chunks, "churn", |n| {
        chunk_set(n / PER_RESUME, 0).swap_remove(n % PER_RESUME)
    })
    .await?;
    raw.execute_unprepared(
        "ALTER TABLE resume_chunks SET (autovacuum_vacuum_scale_factor = 0.02, \
           autovacuum_vacuum_threshold = 1000)",
    )
    .await?;
    Ok(owners)
}

/// Replaces random resumes' chunks, forever until `stop`.
async fn writer(db: Db, owners: Vec<(Uuid, Uuid)>, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut generation = 1;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = (x % owners.len() as u64) as usize;
        let chunks = chunk_set(r, generation);
        generation += 1;
        let (user_id, resume_id) = owners[r];
        let set = ResumeChunks {
            user_id,
            resume_id,
            chunks: &chunks,
        };
        match replace_chunks(&db, &[set], Indexing::Now).await {
            Ok(_) => {
                counters
                    .replaced_chunks
                    .fetch_add(PER_RESUME as u64, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("replace failed: {e}");
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whole-table and scoped searches, alternating, until `stop`.
async fn searcher(
    db: Db,
    owners: Vec<(Uuid, Uuid)>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        i += 2;
        let scope = if i % 4 < 2 {
            SearchScope::All
        } else {
            SearchScope::User(owners[(i as usize * 7919) % owners.len()].0)
        };
        let query = SearchQuery::new(vector(900_000_000 + i), 10, scope);
        match search_chunks(&db, &query).await {
            Ok(_) => {
                counters.searches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("search failed: {e}");
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `VACUUM resume_chunks` every `every`, until `stop`.
async fn vacuumer(url: String, every: Duration, counters: Arc<Counters>, stop: Arc<AtomicBool>) {
    let conn = match sea_orm::Database::connect(url.as_str()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vacuum connection failed: {e}");
            counters.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        next = Instant::now() + every;
        match conn.execute_unprepared("VACUUM resume_chunks").await {
            Ok(_) => {
                counters.vacuums.fetch_add(1, Ordering::Relaxed);
            }
            // Cancelled at the end of the run (see `run`): not a failure.
            Err(_) if stop.load(Ordering::Relaxed) => {}
            Err(e) => {
                eprintln!("vacuum failed: {e}");
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// recall@10 of 20 whole-table library searches against an exact scan run
/// right after each (the writer keeps going, so a result replaced in
/// between counts as a miss: a slight underestimate).
async fn recall_at_10(db: &Db, raw: &DatabaseConnection, round: u64) -> Result<f64, BoxError> {
    let mut found = 0;
    let mut total = 0;
    for q in 0..20 {
        let embedding = vector(800_000_000 + round * 100 + q);
        let hits = search_chunks(
            db,
            &SearchQuery::new(embedding.clone(), 10, SearchScope::All),
        )
        .await?;
        let txn = raw.begin().await?;
        txn.execute_unprepared("SET LOCAL enable_indexscan = off")
            .await?;
        let exact = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id FROM resume_chunks ORDER BY embedding <=> $1 LIMIT 10",
                [embedding.to_vector().into()],
            ))
            .await?;
        txn.commit().await?;
        let exact: Vec<Uuid> = exact
            .iter()
            .map(|r| r.try_get_by_index::<Uuid>(0))
            .collect::<Result<_, _>>()?;
        found += hits.iter().filter(|h| exact.contains(&h.id)).count();
        total += exact.len();
    }
    Ok(found as f64 / total.max(1) as f64)
}

/// The HNSW index's size and how often autovacuum has vacuumed the table.
async fn index_stats(raw: &DatabaseConnection) -> Result<(i64, i64), BoxError> {
    let row = raw
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_relation_size('idx_resume_chunks_embedding') AS size, \
                    (SELECT autovacuum_count FROM pg_stat_user_tables \
                     WHERE relname = 'resume_chunks') AS autovacuums",
        ))
        .await?
        .ok_or("no row")?;
    Ok((row.try_get("", "size")?, row.try_get("", "autovacuums")?))
}
