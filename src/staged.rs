//! Staged uploads: a resume's new chunks are stored and searchable at once,
//! and their insertion into the HNSW graph happens later, off the request
//! path.
//!
//! Why: at a million chunks, inserting chunks into the HNSW graph is
//! nearly all the cost of an upload (figures in BENCHMARKS.md, "A million
//! chunks"). [`replace_chunks`](crate::chunks::replace_chunks) with
//! [`Indexing::Deferred`](crate::chunks::Indexing::Deferred) does the same
//! replacement but copies the new chunks into `resume_chunks_staged`
//! (migration 009), which has no vector index, so the upload costs what the
//! `COPY` costs.
//! [`index_staged_chunks`], usually run by a [`StagedIndexer`] in the
//! background, then moves each staged resume into `resume_chunks`.
//!
//! What readers see:
//! - **The library's reads** ([`search_chunks`](crate::chunks::search_chunks),
//!   [`resume_chunks`](crate::chunks::resume_chunks)) read both tables, so a
//!   staged resume's new chunks replace its old ones for them at once.
//!   Scoped searches are exact either way; whole-table searches merge the
//!   HNSW index's top `k` with the exact top `k` of the staged chunks.
//! - **Services reading `resume_chunks` directly** (LangChain
//!   `PGVectorStore`) see the resume without chunks from the staged upload
//!   until the indexer has moved them (the old chunks are deleted by the
//!   upload itself).
//!
//! Consistency: a replacement (staged or not) and the indexer's move of the
//! same resume take the same per-resume advisory lock, so a move never
//! brings back chunks that a later replacement removed; a move is one
//! statement, so no reader sees a chunk twice or not at all. Deleting a
//! resume or its owner deletes its staged chunks (foreign key, cascade).
//! Several indexers (one per application instance) can run at once: each
//! skips resumes that another one, or a replacement, holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::chunks::RESUME_LOCK_KEY_SQL;
use crate::db::Db;
use crate::error::Result;
use crate::settings::Op;
use crate::store::Store;

/// What one [`index_staged_chunks`] call moved into the HNSW index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexedBatch {
    /// Resumes whose staged chunks were moved.
    pub resumes: u64,
    /// Chunks moved.
    pub chunks: u64,
}

/// Moves the staged chunks of up to `max_resumes` resumes (oldest upload
/// first) into `resume_chunks`, where they are inserted into the HNSW
/// index: one statement, one transaction. Resumes being replaced or moved
/// by another call at that moment are skipped (they are taken by a later
/// call). Returns what was moved; `resumes == 0` means nothing was waiting
/// (or everything waiting was busy).
///
/// Each chunk costs its HNSW insertion (3-5.5 ms at 1M chunks on the
/// benchmark machine), and a resume being moved cannot be replaced until
/// the transaction ends, so keep `max_resumes` small (a
/// [`StagedIndexer`] moves one resume per call).
///
/// # Errors
/// [`Error::Validation`](crate::Error::Validation) for `max_resumes` 0;
/// database failures (nothing is moved).
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// use mockinterview_db::staged::index_staged_chunks;
/// while index_staged_chunks(db, 1).await?.resumes > 0 {}
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn index_staged_chunks<S: Store + ?Sized>(
    db: &S,
    max_resumes: u32,
) -> Result<IndexedBatch> {
    if max_resumes == 0 {
        return Err(crate::validate::invalid(
            "max_resumes",
            "0; move at least one resume per call".into(),
        ));
    }
    // Candidates are the oldest few times `max_resumes` resumes, so that
    // indexers running at once (or a replacement holding the oldest) do not
    // leave each other idle. `picked` is referenced twice, so it is
    // evaluated once, in candidate order, until it has `max_resumes`: each
    // candidate is try-locked at most once, and no more locks are taken
    // than resumes moved. A resume replaced between this statement's
    // snapshot and its lock has no visible staged rows left to delete
    // (DELETE skips rows deleted by a committed transaction), so nothing
    // stale is moved.
    let sql = format!(
        "WITH candidates AS MATERIALIZED ( \
           SELECT resume_id FROM resume_chunks_staged \
           GROUP BY resume_id ORDER BY min(staged_at), resume_id LIMIT $1 * 4), \
         picked AS ( \
           SELECT resume_id FROM candidates \
           WHERE pg_try_advisory_xact_lock({RESUME_LOCK_KEY_SQL}) LIMIT $1), \
         moved AS ( \
           DELETE FROM resume_chunks_staged s USING picked p WHERE s.resume_id = p.resume_id \
           RETURNING s.id, s.text, s.metadata, s.embedding, s.resume_id), \
         inserted AS ( \
           INSERT INTO resume_chunks (id, text, metadata, embedding) \
           SELECT id, text, metadata, embedding FROM moved RETURNING 1) \
         SELECT (SELECT count(DISTINCT resume_id) FROM moved) AS resumes, \
                (SELECT count(*) FROM inserted) AS chunks"
    );
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [i64::from(max_resumes).into()]);
    // One statement: atomic, and its advisory locks last until it ends, so
    // no transaction of its own (no BEGIN / COMMIT round trips).
    db.route()
        .write(Op::Plain, |c| async move {
            let row = c
                .query_one_raw(statement)
                .await?
                .expect("an aggregate returns one row");
            let resumes: i64 = row.try_get("", "resumes")?;
            let chunks: i64 = row.try_get("", "chunks")?;
            Ok(IndexedBatch {
                resumes: resumes.unsigned_abs(),
                chunks: chunks.unsigned_abs(),
            })
        })
        .await
}

/// What is waiting in `resume_chunks_staged`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StagedBacklog {
    /// Staged chunks.
    pub chunks: u64,
    /// Resumes they belong to.
    pub resumes: u64,
    /// How long the oldest has waited (`None` when nothing waits).
    pub oldest: Option<Duration>,
}

/// The staged chunks not yet moved into the HNSW index, read on the
/// primary: for monitoring a [`StagedIndexer`] (a backlog that grows means
/// uploads outpace the indexers).
///
/// # Errors
/// Database failures only.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// let backlog = mockinterview_db::staged::staged_backlog(db).await?;
/// tracing::info!(chunks = backlog.chunks, oldest = ?backlog.oldest, "staged");
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn staged_backlog<S: Store + ?Sized>(db: &S) -> Result<StagedBacklog> {
    let statement = Statement::from_string(
        DbBackend::Postgres,
        "SELECT count(*) AS chunks, count(DISTINCT resume_id) AS resumes, \
                extract(epoch FROM clock_timestamp() - min(staged_at))::float8 AS oldest \
         FROM resume_chunks_staged",
    );
    db.route()
        .primary_read(Op::Plain, |c| async move {
            let row = c
                .query_one_raw(statement)
                .await?
                .expect("an aggregate returns one row");
            let chunks: i64 = row.try_get("", "chunks")?;
            let resumes: i64 = row.try_get("", "resumes")?;
            let oldest: Option<f64> = row.try_get("", "oldest")?;
            Ok(StagedBacklog {
                chunks: chunks.unsigned_abs(),
                resumes: resumes.unsigned_abs(),
                oldest: oldest.map(|s| Duration::from_secs_f64(s.max(0.0))),
            })
        })
        .await
}

/// Settings of a [`StagedIndexer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexerOptions {
    /// How long to wait before looking again when nothing was waiting
    /// (default 1 s). While there is work, batches follow each other at once.
    pub idle_poll: Duration,
    /// Resumes per [`index_staged_chunks`] call (default 1: a resume being
    /// moved cannot be replaced meanwhile, so short transactions).
    pub resumes_per_batch: u32,
    /// How long to wait after a failed batch (default 5 s); the failure is
    /// logged with `tracing` at `warn`.
    pub retry_after: Duration,
}

impl Default for IndexerOptions {
    fn default() -> Self {
        Self {
            idle_poll: Duration::from_secs(1),
            resumes_per_batch: 1,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Counters of a [`StagedIndexer`], since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexerStats {
    /// Resumes moved.
    pub resumes: u64,
    /// Chunks moved.
    pub chunks: u64,
    /// Failed batches.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    resumes: AtomicU64,
    chunks: AtomicU64,
    errors: AtomicU64,
}

/// A tokio task that keeps moving staged chunks into the HNSW index
/// ([`index_staged_chunks`]) until [`StagedIndexer::shutdown`] or drop.
/// Run one per application instance (they share the work safely), on the
/// [`Db`] the application uses.
///
/// ```no_run
/// # async fn f() -> mockinterview_db::Result<()> {
/// use mockinterview_db::{staged::{IndexerOptions, StagedIndexer}, DbConfig};
/// let db = DbConfig::from_env()?.connect().await?;
/// let indexer = StagedIndexer::spawn(db.clone(), IndexerOptions::default());
/// // ... serve requests ...
/// indexer.shutdown().await;
/// # Ok(()) }
/// ```
pub struct StagedIndexer {
    task: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    counters: Arc<Counters>,
}

impl StagedIndexer {
    /// Starts the task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(db: Db, options: IndexerOptions) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let batch = options.resumes_per_batch.max(1);
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                let pause = match index_staged_chunks(&db, batch).await {
                    Ok(done) if done.resumes > 0 => {
                        shared.resumes.fetch_add(done.resumes, Ordering::Relaxed);
                        shared.chunks.fetch_add(done.chunks, Ordering::Relaxed);
                        tracing::debug!(
                            resumes = done.resumes,
                            chunks = done.chunks,
                            "moved staged chunks into the HNSW index"
                        );
                        continue;
                    }
                    Ok(_) => options.idle_poll,
                    Err(e) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            error = %e,
                            retry_in = ?options.retry_after,
                            "moving staged chunks into the HNSW index failed; they stay \
                             searchable and will be moved on a later attempt"
                        );
                        options.retry_after
                    }
                };
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        });
        Self {
            task: Some(task),
            stop,
            counters,
        }
    }

    /// What the task has done so far.
    pub fn stats(&self) -> IndexerStats {
        IndexerStats {
            resumes: self.counters.resumes.load(Ordering::Relaxed),
            chunks: self.counters.chunks.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }

    /// Stops the task after the batch in progress commits, and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StagedIndexer {
    /// Aborts the task; a batch in progress is rolled back (nothing is
    /// lost: its chunks stay staged).
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl std::fmt::Debug for StagedIndexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedIndexer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
