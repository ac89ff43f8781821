//! `mockinterview-bench-reembed`: re-embedding a live corpus (issue 18,
//! item 7).
//!
//! ```bash
//! cargo build --release -p mockinterview-bench
//! target/release/mockinterview-bench-reembed --chunks 100000
//! ```
//!
//! In a database of its own (test-db) it loads `--chunks` chunks of the
//! serving model (`gemini-embedding-001`, clustered vectors, 50 per
//! resume), then:
//! 1. **before**: `--before-secs` of application load alone: scoped top-5
//!    searches and whole-table top-10 searches from 2 tasks, and an upload
//!    (a resume's 50 chunks replaced) every 250 ms;
//! 2. **job**: starts a job to `hashing-next` (768 dimensions) and runs it
//!    in a child process (this binary with `--worker`): an offline embedder
//!    with a fixed delay per batch, `--in-flight` batches in flight, tuned
//!    to `--rate` chunks/s; the same load goes on. At half the corpus the
//!    child is killed with SIGKILL, and a new one resumes once the lease
//!    lapsed;
//! 3. **switch** from this process while the load goes on; the application
//!    notices `NotServing` and moves to the new model's handle (counted,
//!    not failures); then 10 s more, and `finish`.
//!
//! Every search hit is checked: a hit of another model than the searching
//! handle's is counted (must be 0); any error other than `NotServing` is a
//! failed call (must be 0). It prints a markdown report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks, search_chunks};
use mockinterview_db::embedder::{Embedder, HashingEmbedder, Purpose};
use mockinterview_db::reembed::{self, RunOptions};
use mockinterview_db::{
    Db, DbConfig, Embedding, EmbeddingModel, Error, NewChunk, SearchQuery, SearchScope,
};
use tokio::sync::Mutex;
use uuid::Uuid;

#[path = "common/clustered.rs"]
mod clustered;
use clustered::{BoxError, PER_RESUME, vector};

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// Chunks to load.
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// The offline embedder's throughput, chunks per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Chunks per embedder call.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Embedder calls in flight.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Seconds of load before the job.
    #[arg(long, default_value_t = 20)]
    before_secs: u64,
    /// Seconds between uploads (a resume's 50 chunks replaced).
    #[arg(long, default_value_t = 5)]
    upload_every: u64,
    /// Worker mode (internal): run the job on `--url` and print a summary.
    #[arg(long)]
    worker: bool,
    /// Database of the worker.
    #[arg(long)]
    url: Option<String>,
    /// Worker: file to write the embedded texts to, one per line.
    #[arg(long)]
    log: Option<std::path::PathBuf>,
}

fn new_model() -> EmbeddingModel {
    EmbeddingModel::new("hashing-next", 768).expect("valid")
}

/// The hashing embedder, slowed down to a fixed delay per batch.
struct Delayed {
    inner: HashingEmbedder,
    per_batch: Duration,
    /// Every text embedded, in order.
    texts: std::sync::Mutex<Vec<String>>,
}

impl Embedder for Delayed {
    fn model(&self) -> &EmbeddingModel {
        self.inner.model()
    }
    fn max_batch(&self) -> usize {
        self.inner.max_batch()
    }
    async fn embed(
        &self,
        texts: &[String],
        purpose: Purpose,
    ) -> mockinterview_db::Result<Vec<Embedding>> {
        tokio::time::sleep(self.per_batch).await;
        self.texts
            .lock()
            .expect("not poisoned")
            .extend(texts.iter().cloned());
        self.inner.embed(texts, purpose).await
    }
}

fn text(n: usize) -> String {
    format!("resume chunk {n} about topic {} kubernetes rust", n % 300)
}

async fn connect(url: &str, model: EmbeddingModel) -> Result<Db, BoxError> {
    let mut config = DbConfig::new(url);
    config.embedding_model = model;
    config.max_connections = 8;
    Ok(config.connect().await?)
}

/// `--worker`: runs the job until done, retrying while another runner's
/// lease has not lapsed; prints one line of JSON.
async fn worker(args: &Args) -> Result<(), BoxError> {
    let url = args.url.as_deref().ok_or("--url")?;
    let db = connect(url, EmbeddingModel::gemini_embedding_001_768()).await?;
    let per_batch =
        Duration::from_secs_f64(args.batch as f64 * args.in_flight as f64 / args.rate as f64);
    let embedder = Delayed {
        inner: HashingEmbedder::new(new_model()),
        per_batch,
        texts: std::sync::Mutex::new(Vec::new()),
    };
    let started = Instant::now();
    let summary = loop {
        match reembed::run(
            &db,
            &embedder,
            RunOptions {
                in_flight: args.in_flight,
                batch: args.batch,
            },
            |_| {},
        )
        .await
        {
            Err(Error::Conflict { message }) if message.contains("another runner") => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other?,
        }
    };
    if let Some(path) = &args.log {
        std::fs::write(
            path,
            embedder.texts.lock().expect("not poisoned").join("\n"),
        )?;
    }
    println!(
        "{{\"embedded\": {}, \"backfilled\": {}, \"caught_up\": {}, \"embedding_s\": {:.2}, \
         \"writing_s\": {:.2}, \"indexing_s\": {:.2}, \"wall_s\": {:.2}}}",
        summary.embedded,
        summary.backfilled,
        summary.caught_up,
        summary.embedding.as_secs_f64(),
        summary.writing.as_secs_f64(),
        summary.indexing.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the application load records, per phase.
#[derive(Default)]
struct Record {
    scoped_ms: Vec<f64>,
    global_ms: Vec<f64>,
    uploads_ms: Vec<f64>,
    failed: u64,
    other_model_hits: u64,
    not_serving: u64,
}

/// The application: two searchers and an uploader, with a handle of the
/// serving model; on `NotServing` they move to the new model's handle.
struct App {
    upload_every: u64,
    handles: [Db; 2],
    use_new: AtomicBool,
    owners: Vec<(Uuid, Uuid)>,
    phase: Mutex<String>,
    records: Mutex<BTreeMap<String, Record>>,
    stop: AtomicBool,
    counter: AtomicU64,
}

impl App {
    fn current(&self) -> (usize, &Db) {
        let i = usize::from(self.use_new.load(Ordering::SeqCst));
        (i, &self.handles[i])
    }

    fn query(&self, i: usize, seed: u64) -> Embedding {
        if i == 0 {
            vector(seed)
        } else {
            let e = HashingEmbedder::new(new_model());
            Embedding::new(&new_model(), e.vector(&text(seed as usize))).expect("valid")
        }
    }

    async fn note(&self, f: impl FnOnce(&mut Record)) {
        let phase = self.phase.lock().await.clone();
        let mut records = self.records.lock().await;
        f(records.entry(phase).or_default());
    }

    async fn search_loop(self: Arc<Self>) {
        while !self.stop.load(Ordering::SeqCst) {
            let n = self.counter.fetch_add(1, Ordering::SeqCst);
            let (i, db) = self.current();
            let (user, _) = self.owners[(n as usize * 7919) % self.owners.len()];
            let global = n % 2 == 1;
            let scope = if global {
                SearchScope::All
            } else {
                SearchScope::User(user)
            };
            let q = SearchQuery::new(self.query(i, n), if global { 10 } else { 5 }, scope);
            let started = Instant::now();
            let result = search_chunks(db, &q).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(hits) => {
                    let stamp = db.embedding_model().stamp();
                    let other = hits
                        .iter()
                        .filter(|h| {
                            h.metadata.as_ref().and_then(|m| m.get("embedding_model"))
                                != Some(&stamp)
                        })
                        .count() as u64;
                    self.note(|r| {
                        if global {
                            r.global_ms.push(ms);
                        } else {
                            r.scoped_ms.push(ms);
                        }
                        r.other_model_hits += other;
                    })
                    .await;
                }
                Err(Error::NotServing { .. }) => {
                    self.use_new.store(i == 0, Ordering::SeqCst);
                    self.note(|r| r.not_serving += 1).await;
                }
                Err(e) => {
                    eprintln!("search failed: {e}");
                    self.note(|r| r.failed += 1).await;
                }
            }
        }
    }

    async fn upload_loop(self: Arc<Self>) {
        let mut n = 0_usize;
        while !self.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(self.upload_every)).await;
            n += 1;
            let (i, db) = self.current();
            let (user_id, resume_id) = self.owners[(n * 104_729) % self.owners.len()];
            let chunks: Vec<NewChunk> = (0..PER_RESUME)
                .map(|j| {
                    let seed = 10_000_000 + n * PER_RESUME + j;
                    NewChunk::new(text(seed), self.query(i, seed as u64))
                })
                .collect();
            let started = Instant::now();
            let result = replace_chunks(
                db,
                &[ResumeChunks {
                    user_id,
                    resume_id,
                    chunks: &chunks,
                }],
                Indexing::Now,
            )
            .await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok(_) => self.note(|r| r.uploads_ms.push(ms)).await,
                Err(Error::NotServing { .. }) => {
                    self.use_new.store(i == 0, Ordering::SeqCst);
                    self.note(|r| r.not_serving += 1).await;
                }
                Err(e) => {
                    eprintln!("upload failed: {e}");
                    self.note(|r| r.failed += 1).await;
                }
            }
        }
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn shadow_texts(url: &str) -> Result<std::collections::HashSet<String>, BoxError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client
        .query("SELECT text FROM resume_chunks_shadow", &[])
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

async fn shadow_count(url: &str) -> Result<i64, BoxError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let n: i64 = client
        .query_one(
            "SELECT CASE WHEN to_regclass('resume_chunks_shadow') IS NULL THEN 0 \
             ELSE (SELECT count(*) FROM resume_chunks_shadow) END",
            &[],
        )
        .await?
        .get(0);
    Ok(n)
}

fn spawn_worker(args: &Args, url: &str, log: &str) -> Result<tokio::process::Child, BoxError> {
    Ok(tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--log",
            log,
            "--worker",
            "--url",
            url,
            "--rate",
            &args.rate.to_string(),
            "--batch",
            &args.batch.to_string(),
            "--in-flight",
            &args.in_flight.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    dotenvy::dotenv().ok();
    if args.worker {
        return worker(&args).await;
    }
    let database = test_db::TestDatabase::fresh().await;
    let url = database.url().to_owned();
    let a = connect(&url, EmbeddingModel::gemini_embedding_001_768()).await?;
    eprintln!("loading {} chunks", args.chunks);
    let owners = clustered::load(&a, database.conn(), args.chunks, "re", |n| {
        NewChunk::new(text(n), vector(n as u64))
    })
    .await?;
    let b = connect(&url, new_model()).await?;
    let app = Arc::new(App {
        upload_every: args.upload_every,
        handles: [a, b],
        use_new: AtomicBool::new(false),
        owners,
        phase: Mutex::new("before".into()),
        records: Mutex::new(BTreeMap::new()),
        stop: AtomicBool::new(false),
        counter: AtomicU64::new(0),
    });
    let tasks = vec![
        tokio::spawn(app.clone().search_loop()),
        tokio::spawn(app.clone().search_loop()),
        tokio::spawn(app.clone().upload_loop()),
    ];
    tokio::time::sleep(Duration::from_secs(args.before_secs)).await;

    *app.phase.lock().await = "during the job".into();
    let job_started = Instant::now();
    reembed::start(&app.handles[0], &new_model()).await?;
    let log = std::env::temp_dir().join(format!("reembed-{}.log", std::process::id()));
    let log = log.to_str().ok_or("temp path")?.to_owned();
    let mut child = spawn_worker(&args, &url, &log)?;
    let half = (args.chunks / 2) as i64;
    let stored_at_kill = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if shadow_count(&url).await? >= half {
            child.start_kill()?; // SIGKILL
            child.wait().await?;
            break shadow_texts(&url).await?;
        }
    };
    let killed_at = job_started.elapsed();
    eprintln!(
        "killed the worker at {} stored chunks; resuming",
        stored_at_kill.len()
    );
    let resumed = spawn_worker(&args, &url, &log)?;
    let out = resumed.wait_with_output().await?;
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let again: Vec<String> = std::fs::read_to_string(&log)?
        .lines()
        .map(str::to_owned)
        .collect();
    let _ = std::fs::remove_file(&log);
    let embedded_twice = again.iter().filter(|t| stored_at_kill.contains(*t)).count();
    let stored_at_kill = stored_at_kill.len();
    let job_wall = job_started.elapsed();

    *app.phase.lock().await = "switch".into();
    let switch_started = Instant::now();
    let fast = HashingEmbedder::new(new_model());
    reembed::switch(&app.handles[1], &fast).await?;
    let switch_took = switch_started.elapsed();
    *app.phase.lock().await = "after the switch".into();
    tokio::time::sleep(Duration::from_secs(10)).await;
    reembed::finish(&app.handles[1]).await?;
    app.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await?;
    }

    let expected_rate = args.rate as f64;
    println!(
        "## Re-embedding {} chunks while the application serves\n",
        args.chunks
    );
    println!(
        "Offline embedder: {} chunks/s ({} per batch, {} in flight, {:.2} s per batch). Worker \
         killed (SIGKILL) at {:.1} s with {stored_at_kill} chunks stored; the resumed worker \
         reported {summary}, and embedded {embedded_twice} of the chunks stored before the kill \
         again. Job wall time (start to the end of the resumed run, the lease's \
         lapse included): {:.1} s. Switch: {:.3} s.\n",
        args.rate,
        args.batch,
        args.in_flight,
        args.batch as f64 * args.in_flight as f64 / expected_rate,
        killed_at.as_secs_f64(),
        job_wall.as_secs_f64(),
        switch_took.as_secs_f64()
    );
    println!(
        "| phase | scoped top-5 p50 / p99 ms | whole-table top-10 p50 / p99 ms | upload p50 ms | \
         searches | failed calls | hits of the other model | NotServing seen |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (phase, r) in app.records.lock().await.iter() {
        println!(
            "| {phase} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} | {} | {} | {} | {} |",
            pct(&r.scoped_ms, 0.5),
            pct(&r.scoped_ms, 0.99),
            pct(&r.global_ms, 0.5),
            pct(&r.global_ms, 0.99),
            pct(&r.uploads_ms, 0.5),
            r.scoped_ms.len() + r.global_ms.len(),
            r.failed,
            r.other_model_hits,
            r.not_serving
        );
    }
    Ok(())
}
