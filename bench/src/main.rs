//! `mockinterview-bench`: the mockinterview-db library measured against raw
//! PostgreSQL in one run (issue 5). See BENCHMARKS.md.
//!
//! ```bash
//! cargo build --release -p migration-tool -p mockinterview-bench \
//!   && target/release/mockinterview-bench --scale quick
//! ```
//!
//! It creates its own database `mi_bench_<scale>` on the server named by
//! `DATABASE_URL` (dropped and recreated; dropped again at the end unless
//! `--keep`), migrates it, generates a deterministic synthetic corpus and
//! prints a markdown table to stdout; progress goes to stderr. The table,
//! the details and the recall/latency points (CSV) are also written to
//! `--out` (default `bench/results/<scale>`); `bench/plot.py` renders the
//! CSV as a PNG.

mod build;
mod corpus;
mod fixture;
mod import;
mod ingest;
mod raw;
mod report;
mod search;
mod storage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use migration::MigratorTrait;
use mockinterview_db::DbConfig;
use pgconn::DbUrl;
use uuid::Uuid;

use crate::corpus::Corpus;
use crate::raw::BoxError;
use crate::report::Report;

static START: OnceLock<Instant> = OnceLock::new();

/// Prints a progress line to stderr with the elapsed time.
pub fn progress(msg: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:7.1}s] {msg}");
}

/// Preset sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scale {
    /// ~5k chunks, seconds: checks the harness end to end.
    Smoke,
    /// ~100k chunks, under 3 minutes on 2 cores.
    Quick,
    /// 1M chunks: the documented manual run (tens of minutes).
    Large,
}

/// Sections, selectable with `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Section {
    /// 1a: bulk import without HNSW, library vs binary COPY vs 500-row INSERT.
    Ingest,
    /// 4: HNSW build, server defaults vs recommended settings.
    Build,
    /// 2: scoped (one user) search, library vs same SQL, storage variants.
    Scoped,
    /// 3: whole-table HNSW search, ef_search sweep, 2 clients, filters.
    Global,
    /// 1b: steady-state per-resume uploads with all indexes.
    Steady,
    /// Layouts: halfvec expression index, PLAIN storage, vs the current one
    /// (build, size, recall, latency, insert cost, WAL, LangChain client).
    Storage,
    /// 5: test fixture (template clone) vs migrating from scratch.
    Fixture,
    /// 6: migrate up on an empty database, verify on a migrated one.
    Migrate,
    /// 7: `migration import` of a legacy v3 database vs raw binary COPY.
    Import,
}

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(
    version,
    about = "Benchmarks mockinterview-db against raw PostgreSQL (see BENCHMARKS.md)"
)]
pub struct Args {
    /// Preset: smoke (~5k chunks, seconds), quick (~100k, < 3 min), large (1M).
    #[arg(long, value_enum, default_value = "quick")]
    scale: Scale,
    /// Number of chunks (overrides the preset).
    #[arg(long)]
    chunks: Option<usize>,
    /// Topic centroids of the mixture.
    #[arg(long)]
    topics: Option<usize>,
    /// Rows of the bulk-import comparison (every path loads the same first
    /// rows; the rest is then loaded by binary COPY, not measured). Default:
    /// smoke 5k, quick 100k (all), large 100k.
    #[arg(long)]
    ingest_rows: Option<usize>,
    /// Rows of the HNSW build comparison (defaults vs recommended settings,
    /// in a scratch table). Default: quick 30k, large 100k.
    #[arg(long)]
    build_rows: Option<usize>,
    /// Whole-table queries (exact ground truth computed for each).
    #[arg(long)]
    queries: Option<usize>,
    /// Scoped (one-user) queries.
    #[arg(long)]
    scoped_queries: Option<usize>,
    /// Steady-state resumes uploaded per path.
    #[arg(long)]
    steady_resumes: Option<usize>,
    /// `hnsw.ef_search` values of the recall/latency sweep.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40,64,100,200,400")]
    ef_search: Vec<u32>,
    /// Repetitions of each fixture and migration measurement per round
    /// (default: smoke 3, quick and large 5).
    #[arg(long)]
    reps: Option<usize>,
    /// Rounds of every library-vs-baseline comparison (paths in rotated
    /// order each round); tables show the median and min–max of the rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only these sections (comma-separated); data they need is loaded
    /// the fastest way (binary COPY, then an HNSW build).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// `maintenance_work_mem` of the recommended HNSW build (default: 1GB,
    /// or about 4 KB per chunk when that is more).
    #[arg(long)]
    maintenance_work_mem: Option<String>,
    /// Storage parameters of the HNSW index, e.g. `m = 16, ef_construction
    /// = 64` (default: the migrations', `ef_construction = 200` with
    /// pgvector's m 16).
    #[arg(long)]
    hnsw_params: Option<String>,
    /// Reuse `mi_bench_<scale>` when it already holds this corpus with its
    /// HNSW index (e.g. kept with `--keep`, or left by a failed run):
    /// skips loading and building; the build section is not run.
    #[arg(long)]
    reuse: bool,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep: bool,
    /// Import section: also time both sides once with the HNSW index kept
    /// during the load (slow).
    #[arg(long)]
    import_keep_index: bool,
    /// Directory for results.md and recall_latency.csv.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Corpus seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl Args {
    fn scale_name(&self) -> &'static str {
        match self.scale {
            Scale::Smoke => "smoke",
            Scale::Quick => "quick",
            Scale::Large => "large",
        }
    }

    fn chunks(&self) -> usize {
        self.chunks.unwrap_or(match self.scale {
            Scale::Smoke => 5_000,
            Scale::Quick => 100_000,
            Scale::Large => 1_000_000,
        })
    }

    fn topics(&self) -> usize {
        self.topics.unwrap_or(match self.scale {
            Scale::Smoke => 50,
            _ => 300,
        })
    }

    /// Rows of the bulk-import comparison.
    pub fn ingest_rows(&self) -> usize {
        self.ingest_rows
            .unwrap_or(match self.scale {
                Scale::Smoke => 5_000,
                Scale::Quick => 100_000,
                Scale::Large => 100_000,
            })
            .min(self.chunks())
    }

    /// Rows of the HNSW build comparison.
    pub fn build_rows(&self) -> usize {
        self.build_rows
            .unwrap_or(match self.scale {
                Scale::Smoke => 5_000,
                Scale::Quick => 30_000,
                Scale::Large => 100_000,
            })
            .min(self.chunks())
    }

    /// Whole-table queries.
    pub fn queries(&self) -> usize {
        self.queries.unwrap_or(match self.scale {
            Scale::Smoke => 100,
            _ => 200,
        })
    }

    /// Scoped queries.
    pub fn scoped_queries(&self) -> usize {
        self.scoped_queries.unwrap_or(match self.scale {
            Scale::Smoke => 200,
            _ => 500,
        })
    }

    /// Repetitions of fixture and migration measurements.
    pub fn reps(&self) -> usize {
        self.reps.unwrap_or(match self.scale {
            Scale::Smoke => 3,
            _ => 5,
        })
    }

    /// Rounds of each comparison (at least 1).
    pub fn rounds(&self) -> usize {
        self.rounds.max(1)
    }

    /// Steady-state resumes per path.
    pub fn steady_resumes(&self) -> usize {
        self.steady_resumes.unwrap_or(match self.scale {
            Scale::Smoke => 10,
            _ => 60,
        })
    }

    /// `maintenance_work_mem` of the recommended build.
    pub fn recommended_mwm(&self) -> String {
        self.maintenance_work_mem.clone().unwrap_or_else(|| {
            // ~3.1 KB vector + graph per element, with headroom.
            let gb = (self.chunks() as f64 * 4096.0 / f64::from(1u32 << 30)).ceil() as u64;
            format!("{}GB", gb.max(1))
        })
    }

    fn wants(&self, s: Section) -> bool {
        self.only.is_empty() || self.only.contains(&s)
    }

    /// The command reproducing a section.
    pub fn command(&self, section: &str) -> String {
        let mut c = format!(
            "target/release/mockinterview-bench --scale {}",
            self.scale_name()
        );
        if let Some(n) = self.chunks {
            c.push_str(&format!(" --chunks {n}"));
        }
        c.push_str(&format!(" --only {section}"));
        c
    }
}

/// Shared state of a run.
pub struct Ctx {
    /// Command line.
    pub args: Args,
    /// `DATABASE_URL` (the admin connection's database).
    pub admin_url: DbUrl,
    /// URL of the benchmark database.
    pub url: String,
    /// Name of the benchmark database.
    pub db_name: String,
    /// The library's handle (DbConfig::new(url).connect(): ef_search from
    /// the table's size).
    pub db: mockinterview_db::Db,
    /// A bare SeaORM pool to the benchmark database (no library settings):
    /// what LangChain-style plain queries run on, for the baselines.
    pub pool: sea_orm::DatabaseConnection,
    /// A raw tokio-postgres connection to the benchmark database.
    pub raw: tokio_postgres::Client,
    /// pgvector's `vector` type in this database.
    pub vector_ty: tokio_postgres::types::Type,
    /// The corpus (empty when no section needs it).
    pub corpus: Corpus,
    /// Database id of each corpus chunk (the library picks its own ids).
    pub db_ids: Vec<Uuid>,
    /// Corpus index of each database id.
    pub index_of: HashMap<Uuid, usize>,
    /// Results.
    pub report: Report,
    /// Whole-table queries and their exact top 10 (computed once).
    pub truth: Option<search::Truth>,
}

impl Ctx {
    /// Records the database ids of chunks `start..` of the corpus.
    pub fn record_ids(&mut self, start: usize, ids: &[Uuid]) {
        for (i, id) in ids.iter().enumerate() {
            self.db_ids[start + i] = *id;
            self.index_of.insert(*id, start + i);
        }
    }

    /// Executes SQL on the raw connection.
    pub async fn sql(&self, sql: &str) -> Result<(), BoxError> {
        self.raw.batch_execute(sql).await?;
        Ok(())
    }
}

/// The HNSW index as the migrations leave it (m003's definition with
/// m008's `ef_construction`).
pub const HNSW_INDEX_SQL: &str = "CREATE INDEX idx_resume_chunks_embedding \
     ON resume_chunks USING hnsw (embedding vector_cosine_ops) WITH (ef_construction = 200)";

/// The storage parameters of [`HNSW_INDEX_SQL`].
pub const HNSW_PARAMS: &str = "ef_construction = 200";

impl Ctx {
    /// The HNSW index of `resume_chunks`: the migrations' definition, with
    /// `--hnsw-params` instead of their storage parameters if given.
    pub fn hnsw_index_sql(&self) -> String {
        format!(
            "CREATE INDEX idx_resume_chunks_embedding ON resume_chunks \
             USING hnsw (embedding vector_cosine_ops){}",
            self.hnsw_with()
        )
    }

    /// ` WITH (...)`: `--hnsw-params`, else the migrations' parameters.
    pub fn hnsw_with(&self) -> String {
        format!(
            " WITH ({})",
            self.args.hnsw_params.as_deref().unwrap_or(HNSW_PARAMS)
        )
    }

    /// Loads the HNSW index of `resume_chunks` into shared buffers (as on
    /// a server that has been answering searches), so latencies do not
    /// depend on what earlier sections evicted.
    pub async fn prewarm(&self, index: &str) -> Result<(), BoxError> {
        self.sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            .await?;
        let blocks: i64 = self
            .raw
            .query_one(&format!("SELECT pg_prewarm('{index}')"), &[])
            .await?
            .get(0);
        progress(&format!("prewarmed {index}: {blocks} blocks"));
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    START.get_or_init(Instant::now);
    let args = Args::parse();
    if let Err(e) = run(args).await {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&*e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        eprintln!("benchmark failed: {msg}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let _ = dotenvy::dotenv();
    let admin_url = DbUrl::from_env()?;
    let admin = raw::connect(admin_url.as_str()).await?;
    let env = environment(&admin).await?;
    progress(&format!("server: {env}"));

    // The migration CLI is timed in the migrate section.
    let migration_bin = if args.wants(Section::Migrate) {
        fixture::migration_binary()
    } else {
        None
    };
    // `--only import` works in databases of its own (`mi_import_bench_*`)
    // and must not recreate the `mi_bench_<scale>` of a concurrent run.
    let prefix = if args.only == [Section::Import] {
        "mi_import_bench"
    } else {
        "mi_bench"
    };
    let db_name = format!("{prefix}_{}", args.scale_name());
    let url = admin_url.with_database(&db_name).as_str().to_owned();
    let reused = args.reuse && reusable(&url, args.chunks()).await;
    if reused {
        progress(&format!(
            "reusing database {db_name} (corpus loaded, HNSW index built)"
        ));
    } else {
        progress(&format!("creating database {db_name}"));
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await?;
    }
    let owner = sea_orm::Database::connect(url.as_str()).await?;
    migration::Migrator::up(&owner, None).await?;
    owner.close().await?;
    let db = DbConfig::new(url.clone()).connect().await?;
    let raw_client = raw::connect(&url).await?;
    let vector_ty = raw::vector_type(&raw_client).await?;

    let needs_corpus = [
        Section::Ingest,
        Section::Build,
        Section::Scoped,
        Section::Global,
        Section::Steady,
        Section::Storage,
    ]
    .iter()
    .any(|&s| args.wants(s));
    let corpus = if needs_corpus {
        Corpus::generate(args.chunks(), args.topics(), args.seed)
    } else {
        Corpus::generate(0, 1, args.seed)
    };
    let n = corpus.len();
    let pool = sea_orm::Database::connect(url.as_str()).await?;
    let mut ctx = Ctx {
        db_ids: corpus.ids.clone(),
        index_of: HashMap::new(),
        args: args.clone(),
        admin_url: admin_url.clone(),
        url,
        db_name: db_name.clone(),
        db,
        pool,
        raw: raw_client,
        vector_ty,
        corpus,
        report: Report::default(),
        truth: None,
    };

    if needs_corpus {
        if reused {
            // Loaded by binary COPY with the corpus ids; drop what earlier
            // steady-state runs added.
            ctx.sql("DELETE FROM user_profiles WHERE firebase_uid LIKE 'bench-steady-%'")
                .await?;
            let ids = ctx.corpus.ids.clone();
            ctx.record_ids(0, &ids);
        } else {
            ingest::create_users(&ctx).await?;
            if args.wants(Section::Ingest) {
                ingest::bulk(&mut ctx).await?;
            } else {
                ingest::load_fast(&mut ctx).await?;
            }
        }
        ctx.sql("ANALYZE resume_chunks").await?;
        // The library's defaults: whole-table searches take their
        // ef_search from the table's size (src/tuning.rs), now analyzed.
        if reused {
        } else if args.wants(Section::Build) {
            build::hnsw(&mut ctx).await?;
        } else if [
            Section::Scoped,
            Section::Global,
            Section::Steady,
            Section::Storage,
        ]
        .iter()
        .any(|&s| args.wants(s))
        {
            build::recommended_untimed(&ctx).await?;
        }
        if args.wants(Section::Scoped) {
            search::scoped(&mut ctx).await?;
        }
        if args.wants(Section::Global) {
            search::global(&mut ctx).await?;
        }
        if args.wants(Section::Storage) {
            storage::storage(&mut ctx).await?;
        }
        if args.wants(Section::Steady) {
            ingest::steady(&mut ctx).await?;
        }
    }
    if args.wants(Section::Fixture) {
        fixture::fixture(&mut ctx, &admin).await?;
    }
    if args.wants(Section::Migrate) {
        fixture::migrate(&mut ctx, &admin, migration_bin).await?;
    }
    if args.wants(Section::Import) {
        import::import_vs_copy(&mut ctx, &admin).await?;
    }

    let Ctx {
        db,
        report,
        args,
        raw,
        ..
    } = ctx;
    db.close().await.ok();
    drop(raw);
    if args.keep {
        progress(&format!("keeping database {db_name}"));
    } else {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .await?;
    }

    let header = format!(
        "## Results: `--scale {}`, {} chunks\n\n{env}\n\nCommand: `{}`\n",
        args.scale_name(),
        fmt_count(n),
        args.command("<section>").replace(" --only <section>", "")
    );
    let md = report.markdown(&header);
    println!("{md}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench/results/{}", args.scale_name())));
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.md"), &md)?;
    if !report.recall_csv.is_empty() {
        let mut csv =
            String::from("ef_search,recall_at_10,p50_ms,p95_ms,qps_1_client,plan,library\n");
        for line in &report.recall_csv {
            csv.push_str(line);
            csv.push('\n');
        }
        std::fs::write(out.join("recall_latency.csv"), csv)?;
    }
    progress(&format!(
        "wrote {}/results.md (render the plot: python3 bench/plot.py {}/recall_latency.csv)",
        out.display(),
        out.display()
    ));
    Ok(())
}

/// Whether the database at `url` holds `chunks` corpus rows and the HNSW
/// index (so `--reuse` can skip loading and building).
async fn reusable(url: &str, chunks: usize) -> bool {
    let Ok(c) = raw::connect(url).await else {
        return false;
    };
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM resume_chunks c JOIN user_profiles p \
                       ON p.id::text = c.metadata->>'user_id' \
                     WHERE p.firebase_uid NOT LIKE 'bench-steady-%'), \
                    to_regclass('idx_resume_chunks_embedding') IS NOT NULL",
            &[],
        )
        .await;
    matches!(row, Ok(r) if r.get::<_, i64>(0) == chunks as i64 && r.get::<_, bool>(1))
}

fn fmt_count(n: usize) -> String {
    report::fmt_int(n as f64)
}

/// Server, pgvector, machine and settings, one line.
async fn environment(admin: &tokio_postgres::Client) -> Result<String, BoxError> {
    let row = admin
        .query_one(
            "SELECT current_setting('server_version'), \
                    (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'), \
                    current_setting('shared_buffers'), current_setting('maintenance_work_mem'), \
                    current_setting('max_parallel_maintenance_workers'), \
                    current_setting('work_mem'), current_setting('synchronous_commit'), \
                    current_setting('max_wal_size')",
            &[],
        )
        .await?;
    let g = |i: usize| row.get::<_, Option<String>>(i).unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    Ok(format!(
        "PostgreSQL {}, pgvector {}; {cores} cores ({cpu}), {mem_gb:.0} GiB RAM; server settings: \
         shared_buffers {}, maintenance_work_mem {}, max_parallel_maintenance_workers {}, \
         work_mem {}, synchronous_commit {}, max_wal_size {}",
        g(0),
        g(1),
        g(2),
        g(3),
        g(4),
        g(5),
        g(6),
        g(7)
    ))
}
