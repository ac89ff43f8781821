//! `migration reembed`: the library's re-embedding job
//! ([`mockinterview_db::reembed`]) from the command line, with a progress
//! bar and an ETA.
//!
//! ```text
//! migration reembed start --model gemini-embedding-001 --dimensions 768
//! migration reembed run --embedder gemini        # resumable; Ctrl-C / kill -9 safe
//! migration reembed switch --embedder gemini     # the new model serves
//! migration reembed undo --embedder hashing      # (until finish) the old one again
//! migration reembed finish                       # drop the old model's table
//! migration reembed status
//! ```

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mockinterview_db::embedder::gemini::{GeminiConfig, GeminiEmbedder};
use mockinterview_db::embedder::{Embedder, HashingEmbedder, Purpose};
use mockinterview_db::reembed::{self, RunOptions, Status};
use mockinterview_db::{Db, DbConfig, Embedding, EmbeddingModel};

/// The `reembed` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Start moving the corpus to a new model (creates its table beside
    /// resume_chunks; the current model keeps serving).
    Start {
        /// The new model's name, e.g. gemini-embedding-001.
        #[arg(long)]
        model: String,
        /// Its dimension count (this release: 768).
        #[arg(long)]
        dimensions: u32,
    },
    /// Embed every chunk the new model's table lacks, then the uploads
    /// queued meanwhile. Resumable: run it again after any interruption.
    Run {
        /// The embedder of the job's model.
        #[command(flatten)]
        embedder: EmbedderArgs,
        /// Embedder calls in flight at once.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Chunks per embedder call.
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
    /// Make the new model the serving one (atomic; reads never stop).
    Switch {
        /// The embedder of the job's model.
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
    /// After `switch`, before `finish`: serve the old model again (its
    /// embedder catches up with uploads made since the switch).
    Undo {
        /// The embedder of the job's model.
        #[command(flatten)]
        embedder: EmbedderArgs,
    },
    /// After `switch`: drop the old model's vectors and their index.
    Finish,
    /// Before `switch`: abandon the job and drop the new model's table.
    Cancel,
    /// The job and the chunks of each model.
    Status,
}

/// Which embedder makes the vectors of the job's model.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbedderArgs {
    /// `gemini` (GEMINI_API_KEY; the binary must be built with feature
    /// gemini) or `hashing` (offline and deterministic: tests and demos).
    #[arg(long, value_enum)]
    embedder: EmbedderKind,
}

/// Embedders the command can use.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderKind {
    /// Google's Gemini API.
    Gemini,
    /// [`HashingEmbedder`].
    Hashing,
}

/// One of the embedders (the trait is not object-safe: dispatch by hand).
enum AnyEmbedder {
    Gemini(GeminiEmbedder),
    Hashing(HashingEmbedder),
}

impl Embedder for AnyEmbedder {
    fn model(&self) -> &EmbeddingModel {
        match self {
            Self::Gemini(e) => e.model(),
            Self::Hashing(e) => e.model(),
        }
    }

    fn max_batch(&self) -> usize {
        match self {
            Self::Gemini(e) => e.max_batch(),
            Self::Hashing(e) => e.max_batch(),
        }
    }

    async fn embed(
        &self,
        texts: &[String],
        purpose: Purpose,
    ) -> mockinterview_db::Result<Vec<Embedding>> {
        match self {
            Self::Gemini(e) => e.embed(texts, purpose).await,
            Self::Hashing(e) => e.embed(texts, purpose).await,
        }
    }
}

/// The embedder of `kind` for the active job's shadow model.
async fn embedder(db: &Db, kind: EmbedderKind) -> Result<AnyEmbedder, String> {
    let status = reembed::status(db).await.map_err(text)?;
    let job = status
        .job
        .filter(|j| {
            matches!(
                j.state,
                reembed::JobState::Backfill | reembed::JobState::Switched
            )
        })
        .ok_or("no active re-embedding job: `migration reembed start` first")?;
    let model = job.shadow_model().clone();
    Ok(match kind {
        EmbedderKind::Hashing => AnyEmbedder::Hashing(HashingEmbedder::new(model)),
        EmbedderKind::Gemini => AnyEmbedder::Gemini(
            GeminiEmbedder::new(GeminiConfig::from_env(model).map_err(text)?).map_err(text)?,
        ),
    })
}

/// Runs `action` on the database of `url` (schema list `schema`).
///
/// # Errors
/// The library's error, as text.
pub async fn run(url: &str, schema: Option<&str>, action: Action) -> Result<(), String> {
    let mut config = DbConfig::new(url);
    config.schema = schema.map(str::to_owned);
    // The job's statements (backfill reads, index builds) can be long.
    config.call_timeout = None;
    config.bulk_call_timeout = None;
    let db = config.connect().await.map_err(text)?;
    match action {
        Action::Start { model, dimensions } => {
            let model = EmbeddingModel::new(model, dimensions).map_err(text)?;
            let job = reembed::start(&db, &model).await.map_err(text)?;
            println!(
                "Re-embedding job {} started: {} to {}. Next: `migration reembed run`.",
                job.id, job.from, job.to
            );
        }
        Action::Run {
            embedder: args,
            in_flight,
            batch,
        } => {
            let embedder = embedder(&db, args.embedder).await?;
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {pos}/{len} chunks, {per_sec}, ETA {eta} {msg}",
                )
                .map_err(|e| e.to_string())?,
            );
            bar.enable_steady_tick(Duration::from_millis(500));
            let summary = reembed::run(&db, &embedder, RunOptions { in_flight, batch }, |p| {
                bar.set_length(p.total.max(0) as u64);
                bar.set_position(p.done.max(0) as u64);
                if p.queued >= 0 {
                    bar.set_message(format!("({} queued writes)", p.queued));
                }
            })
            .await
            .map_err(text)?;
            bar.finish();
            println!(
                "Embedded {} chunks ({} queued writes caught up, {} without text); embedder {:.1} s, \
                 writing {:.1} s. Next: `migration reembed switch`.",
                summary.embedded,
                summary.caught_up,
                summary.without_text,
                summary.embedding.as_secs_f64(),
                summary.writing.as_secs_f64()
            );
        }
        Action::Switch { embedder: args } => {
            let embedder = embedder(&db, args.embedder).await?;
            let job = reembed::switch(&db, &embedder).await.map_err(text)?;
            println!(
                "{} now serves. Undo with `migration reembed undo` until `migration reembed finish`.",
                job.to
            );
        }
        Action::Undo { embedder: args } => {
            let embedder = embedder(&db, args.embedder).await?;
            let job = reembed::undo(&db, &embedder).await.map_err(text)?;
            println!(
                "{} serves again (job {} is back in backfill).",
                job.from, job.id
            );
        }
        Action::Finish => {
            let job = reembed::finish(&db).await.map_err(text)?;
            println!(
                "Job {} finished: the vectors of {} are dropped.",
                job.id, job.from
            );
        }
        Action::Cancel => {
            let job = reembed::cancel(&db).await.map_err(text)?;
            println!("Job {} cancelled: {} still serves.", job.id, job.from);
        }
        Action::Status => print_status(&reembed::status(&db).await.map_err(text)?),
    }
    Ok(())
}

/// The error with its causes (the server's message included).
fn text(e: mockinterview_db::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

fn print_status(status: &Status) {
    match &status.serving {
        Some(m) => println!("Serving model: {m}"),
        None => println!("Serving model: none declared"),
    }
    match &status.job {
        Some(job) => println!(
            "Job {}: {} to {}, {:?}{}",
            job.id,
            job.from,
            job.to,
            job.state,
            if job.backfilled { ", backfilled" } else { "" }
        ),
        None => println!("No re-embedding job."),
    }
    let total = status
        .models
        .iter()
        .find(|m| m.serving)
        .map_or(0, |m| m.chunks);
    for m in &status.models {
        let pct = if total > 0 {
            100.0 * m.chunks as f64 / total as f64
        } else {
            100.0
        };
        println!(
            "  {}{}: {} chunks with a vector ({pct:.1}% of the serving table's)",
            m.model,
            if m.serving { " (serving)" } else { "" },
            m.chunks
        );
    }
    println!(
        "  queued writes: {}; staged chunks: {}",
        status.queued, status.staged
    );
}
