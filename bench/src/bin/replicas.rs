//! `mockinterview-bench-replicas`: search throughput with reads spread over
//! streaming standbys (issue 13), measured against the local standbys of
//! `scripts/replica-up` (5433, 5434).
//!
//! ```bash
//! scripts/test   # or: scripts/replica-up and the replica2 variant (see BENCHMARKS.md)
//! cargo build --release -p mockinterview-bench \
//!   && target/release/mockinterview-bench-replicas --chunks 100000 --seconds 10 --rounds 3
//! ```
//!
//! It loads a synthetic corpus into `mi_bench_replicas` (library bulk
//! replace, then the HNSW index), waits until both standbys have replayed
//! it, and then runs closed-loop clients against three set-ups, in an order
//! that rotates every round: the primary alone, the primary plus one
//! standby, the primary plus two standbys (reads then go to the standbys,
//! round robin). It prints queries per second per set-up and scope, the
//! median over the rounds with min–max, and the ratios to the primary alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use migration::MigratorTrait;
use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks, search_chunks};
use mockinterview_db::profiles::{FirebaseUser, upsert_profile};
use mockinterview_db::resumes::{NewResume, PdfUpload, create_resume};
use mockinterview_db::{Db, DbConfig, Embedding, NewChunk, SearchQuery, SearchScope};
use pgconn::DbUrl;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Search throughput on the primary alone vs with 1 and 2 streaming standbys")]
struct Args {
    /// Chunks in the corpus (50 per user).
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Seconds each set-up runs per round and scope.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds (the set-ups' order rotates every round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Ports of the standbys (same host, role and password as DATABASE_URL).
    #[arg(long, value_delimiter = ',', default_value = "5433,5434")]
    standby_ports: Vec<u16>,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep: bool,
}

const PER_USER: usize = 50;
const DB_NAME: &str = "mi_bench_replicas";

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let admin_url = DbUrl::from_env()?;
    let admin = sea_orm::Database::connect(admin_url.as_str()).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {DB_NAME}"))
        .await?;
    let url = admin_url.with_database(DB_NAME);
    let owner = sea_orm::Database::connect(url.as_str()).await?;
    migration::Migrator::up(&owner, None).await?;
    owner.close().await?;
    let load = DbConfig::new(url.as_str()).connect().await?;
    let users = load_corpus(&load, args.chunks).await?;
    eprintln!("loaded {} chunks for {} users", args.chunks, users.len());

    let standbys: Vec<String> = args
        .standby_ports
        .iter()
        .map(|p| url.with_port(*p).as_str().to_owned())
        .collect();
    let setups: Vec<(&str, Vec<String>)> = vec![
        ("primary only", Vec::new()),
        ("primary + 1 standby", standbys[..1].to_vec()),
        ("primary + 2 standbys", standbys.clone()),
    ];
    let mut handles = Vec::new();
    for (name, replicas) in &setups {
        let mut config = DbConfig::new(url.as_str());
        config.max_connections = args.clients as u32;
        config.replica_urls = replicas.clone();
        let db = config.connect().await?;
        wait_fresh(&db).await?;
        handles.push((*name, db));
    }
    eprintln!(
        "environment: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    for scope in [Scope::User, Scope::All] {
        let mut qps: Vec<Vec<f64>> = vec![Vec::new(); handles.len()];
        for round in 0..args.rounds {
            for i in 0..handles.len() {
                let which = (round + i) % handles.len();
                let (name, db) = &handles[which];
                let q = measure(db, &users, scope, &args).await?;
                eprintln!("round {round}: {name}, {scope:?} scope: {q:.0} queries/s");
                qps[which].push(q);
            }
        }
        println!(
            "\n{scope:?}-scope search, {} clients, {} s × {} rounds:",
            args.clients, args.seconds, args.rounds
        );
        println!("| set-up | queries/s (median) | min–max | vs primary only |");
        println!("|---|---|---|---|");
        let base = median(&qps[0]);
        for ((name, db), samples) in handles.iter().zip(&qps) {
            let m = median(samples);
            let (lo, hi) = min_max(samples);
            let share: Vec<String> = db
                .replicas()
                .iter()
                .map(|r| format!("{} reads", r.reads_served()))
                .collect();
            println!(
                "| {name} | {m:.0} | {lo:.0}–{hi:.0} | {:.2}× ({}) |",
                m / base,
                if share.is_empty() {
                    "all on the primary".to_owned()
                } else {
                    format!("standbys answered {}", share.join(", "))
                }
            );
        }
    }

    for (_, db) in handles {
        db.close().await?;
    }
    load.close().await?;
    if !args.keep {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Scope {
    User,
    All,
}

/// Closed-loop clients for `args.seconds`; queries per second.
async fn measure(db: &Db, users: &[Uuid], scope: Scope, args: &Args) -> Result<f64, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..args.clients {
        let (db, stop, done) = (db.clone(), stop.clone(), done.clone());
        let users = users.to_vec();
        clients.push(tokio::spawn(async move {
            let mut i = client as u64;
            while !stop.load(Ordering::Relaxed) {
                let user = users[(i as usize * 7919) % users.len()];
                let scope = match scope {
                    Scope::User => SearchScope::User(user),
                    Scope::All => SearchScope::All,
                };
                let q = SearchQuery::new(embedding(i * 31 + 7), 10, scope);
                search_chunks(&db, &q).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += CLIENT_STRIDE;
            }
            Ok::<(), mockinterview_db::Error>(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// How far a client's query seed moves per query (queries differ across
/// clients and rounds).
const CLIENT_STRIDE: u64 = 1_000_003;

/// Waits until every standby of `db` is in rotation and has replayed
/// everything.
async fn wait_fresh(db: &Db) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !db
        .replicas()
        .iter()
        .all(|r| r.is_up() && r.staleness() == Some(Duration::ZERO))
    {
        if Instant::now() > deadline {
            return Err(
                "the standbys did not catch up within 5 minutes (scripts/replica-up?)".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// One resume of `PER_USER` chunks per user, loaded with the library's bulk
/// replace; the HNSW index is dropped for the load and rebuilt after, as
/// README's re-embedding recipe does.
async fn load_corpus(db: &Db, chunks: usize) -> Result<Vec<Uuid>, BoxError> {
    db.execute_unprepared("DROP INDEX idx_resume_chunks_embedding")
        .await?;
    let pdf = b"%PDF-1.7\n%%EOF\n".to_vec();
    let mut users = Vec::new();
    let mut batch: Vec<(Uuid, Uuid, Vec<NewChunk>)> = Vec::new();
    for u in 0..chunks.div_ceil(PER_USER) {
        let user = upsert_profile(
            db,
            &FirebaseUser {
                uid: format!("bench-user-{u}"),
                ..Default::default()
            },
        )
        .await?;
        let resume = create_resume(
            db,
            NewResume {
                user_id: user.id,
                title: "CV".into(),
                file_name: "cv.pdf".into(),
                pdf: PdfUpload::inline(pdf.clone())?,
                content: None,
            },
        )
        .await?;
        let chunks: Vec<NewChunk> = (0..PER_USER)
            .map(|i| {
                NewChunk::new(
                    format!("user {u} chunk {i}"),
                    embedding((u * PER_USER + i) as u64),
                )
            })
            .collect();
        batch.push((user.id, resume.id, chunks));
        users.push(user.id);
        if batch.len() == 200 {
            flush(db, &mut batch).await?;
        }
    }
    flush(db, &mut batch).await?;
    db.execute_unprepared(
        "SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = 1; \
         CREATE INDEX idx_resume_chunks_embedding ON resume_chunks \
         USING hnsw (embedding vector_cosine_ops); RESET maintenance_work_mem; \
         RESET max_parallel_maintenance_workers; ANALYZE resume_chunks",
    )
    .await?;
    Ok(users)
}

async fn flush(db: &Db, batch: &mut Vec<(Uuid, Uuid, Vec<NewChunk>)>) -> Result<(), BoxError> {
    let sets: Vec<ResumeChunks<'_>> = batch
        .iter()
        .map(|(user_id, resume_id, chunks)| ResumeChunks {
            user_id: *user_id,
            resume_id: *resume_id,
            chunks,
        })
        .collect();
    replace_chunks(db, &sets, Indexing::Now).await?;
    batch.clear();
    Ok(())
}

/// Deterministic pseudo-random vector (xorshift), never zero.
fn embedding(seed: u64) -> Embedding {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values = (0..768)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Embedding::new(
        &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
        values,
    )
    .expect("a valid embedding")
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn min_max(samples: &[f64]) -> (f64, f64) {
    samples
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}
