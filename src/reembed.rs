//! Moving a live corpus to a new embedding model without downtime.
//!
//! The vectors of one model live in one table: `resume_chunks` holds the
//! **serving** model's (the one `embedding_models` marks `serving`, which
//! searches use and LangChain JS reads). A job builds the new model's copy
//! beside it, in `resume_chunks_shadow` (same columns, indexes, triggers
//! and grants; its own HNSW index), while the application keeps serving
//! from `resume_chunks`:
//!
//! 1. [`start`] creates the shadow table and a trigger on `resume_chunks`
//!    that records every chunk written or deleted from then on in
//!    `reembed_queue`.
//! 2. [`run`] embeds every chunk of the serving table that the shadow lacks
//!    (in batches, several in flight), then the queued ones. It is
//!    resumable: what it wrote is committed batch by batch, and a new run
//!    starts with what is still missing, so no stored chunk is embedded
//!    twice after a crash (only the batches in flight at the crash are
//!    lost and embedded again). One runner at a time (a lease).
//! 3. [`switch`] makes the new model the serving one, atomically: under a
//!    lock that blocks writes (not reads) it embeds the last queued chunks,
//!    then swaps the two tables' names and the registry's serving model in
//!    one transaction. Reads wait only for the rename itself.
//! 4. Until [`finish`], the old model's table stays as the shadow and keeps
//!    being caught up (the trigger follows the serving table), so
//!    [`undo`] can swap back.
//! 5. [`finish`] drops the old model's table (its vectors and HNSW index)
//!    and the trigger; [`cancel`] does the same before a switch.
//!
//! Uploads during the job keep using the serving model; the queue catches
//! the shadow up with them before the switch. After a switch, handles of
//! the old model get [`Error::NotServing`] from searches and uploads: an
//! application switching models holds an embedder for each and reconnects
//! with the new [`crate::DbConfig::embedding_model`].
//!
//! The job's DDL needs the schema owner's privileges (the `migration`
//! tool's role). This release stores 768-dimension vectors only.

use std::time::Duration;

use futures_util::{TryStreamExt, stream};
use sea_orm::sqlx::{self, Postgres, Row};
use sea_orm::{DbErr, RuntimeErr};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::Db;
use crate::embedder::{Embedder, Purpose};
use crate::embedding::{EmbeddingModel, MODEL_KEY};
use crate::error::{Error, Result};
use crate::schema::parse_row;
use crate::store::{Route, Store};
use pgconn::copy::Encoder;

/// The shadow table: the copy being built (before a switch) or the old
/// model's (after it, until [`finish`]).
pub const SHADOW_TABLE: &str = "resume_chunks_shadow";
/// The trigger that queues writes to the serving table.
const QUEUE_TRIGGER: &str = "trg_resume_chunks_reembed";
/// How long a runner's lease lasts without renewal.
const LEASE: &str = "30 seconds";
/// `lock_timeout` of the job's DDL and of the switch: bounds how long
/// searches (queued behind the rename's lock) can wait.
const LOCK_TIMEOUT: &str = "500ms";
/// `lock_timeout` while taking the lock that stops writers (readers go
/// on): longer than `deadlock_timeout` (1 s by default), after which an
/// autovacuum of the table in the way is cancelled for the waiter.
const WRITERS_LOCK_TIMEOUT: &str = "3s";
/// Attempts of a statement that hit [`LOCK_TIMEOUT`].
const LOCK_ATTEMPTS: u32 = 8;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Building the new model's table; the old model serves.
    Backfill,
    /// The new model serves; the old model's table is kept for [`undo`].
    Switched,
    /// Done: the old model's table is dropped.
    Finished,
    /// Abandoned before a switch: the new model's table is dropped.
    Cancelled,
}

impl JobState {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "backfill" => Self::Backfill,
            "switched" => Self::Switched,
            "finished" => Self::Finished,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(Error::Config(format!(
                    "unknown re-embedding state {other:?}"
                )));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Backfill => "backfill",
            Self::Switched => "switched",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A re-embedding job.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// The model the corpus is moved from.
    pub from: EmbeddingModel,
    /// The model it is moved to.
    pub to: EmbeddingModel,
    /// Where it is.
    pub state: JobState,
    /// Every chunk present at the start has been embedded (what remains is
    /// the queue).
    pub backfilled: bool,
}

impl Job {
    /// The model of the shadow table: the new one before a switch, the old
    /// one after.
    pub fn shadow_model(&self) -> &EmbeddingModel {
        match self.state {
            JobState::Switched => &self.from,
            _ => &self.to,
        }
    }

    fn is_active(&self) -> bool {
        matches!(self.state, JobState::Backfill | JobState::Switched)
    }
}

/// Chunks of one model, for [`status`].
#[derive(Clone, Debug, PartialEq)]
pub struct ModelProgress {
    /// The model.
    pub model: EmbeddingModel,
    /// Whether it is the serving model.
    pub serving: bool,
    /// Chunks with a vector of this model.
    pub chunks: i64,
}

/// What [`status`] reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The latest job, if any.
    pub job: Option<Job>,
    /// The serving model, if declared.
    pub serving: Option<EmbeddingModel>,
    /// Per model: the serving table's, and the shadow table's during a job.
    pub models: Vec<ModelProgress>,
    /// Chunks written since the job started that the shadow table has not
    /// caught up with yet.
    pub queued: i64,
    /// Chunks staged for indexing (they must be moved before a switch).
    pub staged: i64,
}

/// How [`run`] works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Embedder calls in flight at once.
    pub in_flight: usize,
    /// Chunks per embedder call (at most the embedder's `max_batch`).
    pub batch: usize,
}

impl Default for RunOptions {
    /// 4 calls of 100 chunks in flight.
    fn default() -> Self {
        Self {
            in_flight: 4,
            batch: 100,
        }
    }
}

/// Progress of [`run`], reported after every committed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Chunks in the shadow table.
    pub done: i64,
    /// Chunks in the serving table.
    pub total: i64,
    /// Chunks embedded by this run.
    pub embedded: u64,
    /// Queued writes left (read when the backfill ended).
    pub queued: i64,
}

/// What [`run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Chunks embedded and stored (backfill and queue).
    pub embedded: u64,
    /// Of those, chunks of the backfill (present when the job started and
    /// not stored by an earlier run).
    pub backfilled: u64,
    /// Chunks without text (stored without a vector: nothing to embed).
    pub without_text: u64,
    /// Queue entries processed.
    pub caught_up: u64,
    /// Time spent waiting for the embedder.
    pub embedding: Duration,
    /// Time spent writing (COPY, commits).
    pub writing: Duration,
    /// Time spent building the new model's HNSW index.
    pub indexing: Duration,
}

fn sqlx_err(e: sqlx::Error) -> Error {
    if let Some(db) = e.as_database_error()
        && db.code().as_deref() == Some("55P03")
    {
        return Error::Conflict {
            message: format!("a lock was not granted within {LOCK_TIMEOUT}: {db}"),
        };
    }
    Error::from(DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(e))))
}

type Tx = sqlx::Transaction<'static, Postgres>;

async fn begin(route: &Route<'_>) -> Result<Tx> {
    route.begin_sqlx("reembed").await
}

async fn exec(tx: &mut Tx, sql: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err)?;
    Ok(())
}

/// The latest job.
async fn latest(tx: &mut Tx) -> Result<Option<Job>> {
    let row = sqlx::query(
        "SELECT id, from_name, from_dimensions, to_name, to_dimensions, state, \
                backfilled_at IS NOT NULL AS backfilled \
         FROM reembed_jobs ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await
    .map_err(sqlx_err)?;
    let Some(r) = row else { return Ok(None) };
    let model = |name: &str, dims: &str| -> Result<EmbeddingModel> {
        EmbeddingModel::new(
            r.get::<String, _>(name),
            u32::try_from(r.get::<i32, _>(dims)).unwrap_or(0),
        )
    };
    Ok(Some(Job {
        id: r.get("id"),
        from: model("from_name", "from_dimensions")?,
        to: model("to_name", "to_dimensions")?,
        state: JobState::parse(&r.get::<String, _>("state"))?,
        backfilled: r.get("backfilled"),
    }))
}

/// The active job, or a clear error.
async fn active(tx: &mut Tx) -> Result<Job> {
    match latest(tx).await? {
        Some(job) if job.is_active() => Ok(job),
        _ => Err(Error::NotFound {
            entity: "re-embedding job",
            key: "active (start one with `migration reembed start`)".into(),
        }),
    }
}

async fn serving(tx: &mut Tx) -> Result<Option<EmbeddingModel>> {
    let s: Option<String> =
        sqlx::query_scalar("SELECT (name, dimensions)::text FROM embedding_models WHERE serving")
            .fetch_optional(&mut **tx)
            .await
            .map_err(sqlx_err)?;
    Ok(s.as_deref().and_then(parse_row))
}

/// Stops writers to `tables` (readers go on) for the rest of the
/// transaction: waits up to [`WRITERS_LOCK_TIMEOUT`] (so that an autovacuum
/// in the way is cancelled), then sets the short [`LOCK_TIMEOUT`] again for
/// what follows (a rename, which readers wait for).
async fn lock_writers(tx: &mut Tx, tables: &str) -> Result<()> {
    exec(
        tx,
        &format!(
            "SET LOCAL lock_timeout = '{WRITERS_LOCK_TIMEOUT}'; \
             LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE; \
             SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
        ),
    )
    .await
}

/// Runs `f` in a transaction with the job's `lock_timeout`, again after a
/// pause when a lock was not granted in time.
async fn with_lock_retries<T, F>(route: &Route<'_>, mut f: F) -> Result<T>
where
    F: for<'t> AsyncFnMut(&'t mut Tx) -> Result<T>,
{
    let mut attempt = 0;
    loop {
        let mut tx = begin(route).await?;
        exec(
            &mut tx,
            &format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"),
        )
        .await?;
        match f(&mut tx).await {
            Ok(v) => {
                tx.commit().await.map_err(sqlx_err)?;
                return Ok(v);
            }
            Err(Error::Conflict { message }) if message.contains("lock was not granted") => {
                tx.rollback().await.ok();
                attempt += 1;
                if attempt >= LOCK_ATTEMPTS {
                    return Err(Error::Conflict {
                        message: format!(
                            "{message} ({attempt} attempts): long transactions hold locks on \
                             resume_chunks; retry when they have ended"
                        ),
                    });
                }
                tracing::warn!(attempt, "re-embedding: lock not granted in time; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => {
                tx.rollback().await.ok();
                return Err(e);
            }
        }
    }
}

/// Starts moving the corpus to `to`: creates the shadow table (like
/// `resume_chunks`: columns, indexes with the suffix `_shadow`, triggers,
/// grants) and the trigger that queues writes, registers `to` and records
/// the job. Online: the only lock on `resume_chunks` is the trigger's
/// creation (brief, retried on `lock_timeout`).
///
/// # Errors
/// [`Error::Conflict`] when a job is active; [`Error::Config`] when `to`
/// cannot be stored, is the serving model, or no serving model is
/// declared; database failures (the role must own the schema).
pub async fn start(db: &Db, to: &EmbeddingModel) -> Result<Job> {
    to.check_storable()?;
    let route = db.route();
    with_lock_retries(&route, async |tx| {
        if let Some(job) = latest(tx).await?.filter(Job::is_active) {
            return Err(Error::Conflict {
                message: format!(
                    "re-embedding job {} ({} to {}) is {}: finish or cancel it first",
                    job.id,
                    job.from,
                    job.to,
                    job.state.as_str()
                ),
            });
        }
        let from = serving(tx).await?.ok_or_else(|| {
            Error::Config(
                "the database declares no serving embedding model (embedding_models): declare \
                 the model of its vectors first"
                    .into(),
            )
        })?;
        if &from == to {
            return Err(Error::Config(format!("{to} is already the serving model")));
        }
        exec(
            tx,
            &format!(
                "DROP TABLE IF EXISTS {SHADOW_TABLE}; \
                 CREATE TABLE {SHADOW_TABLE} (LIKE resume_chunks INCLUDING DEFAULTS \
                   INCLUDING STORAGE INCLUDING COMMENTS)"
            ),
        )
        .await?;
        // Indexes (the primary key's too), triggers and grants, as
        // resume_chunks has them, read from the catalog.
        exec(tx, COPY_OBJECTS_SQL).await?;
        lock_writers(tx, "resume_chunks").await?;
        exec(
            tx,
            &format!(
                "DELETE FROM reembed_queue; \
                 CREATE TRIGGER {QUEUE_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON resume_chunks \
                 FOR EACH ROW EXECUTE FUNCTION reembed_enqueue()"
            ),
        )
        .await?;
        sqlx::query(
            "INSERT INTO embedding_models (name, dimensions) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(to.name())
        .bind(to.dimensions() as i32)
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err)?;
        sqlx::query(
            "INSERT INTO reembed_jobs (from_name, from_dimensions, to_name, to_dimensions, state) \
             VALUES ($1, $2, $3, $4, 'backfill')",
        )
        .bind(from.name())
        .bind(from.dimensions() as i32)
        .bind(to.name())
        .bind(to.dimensions() as i32)
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err)?;
        active(tx).await
    })
    .await
}

/// Creates on the shadow table the indexes (named `<name>_shadow`; the
/// primary key through its index) but the HNSW ones ([`build_indexes`]
/// builds those once the backfill is done: a bulk build costs a fraction of
/// inserting every chunk into the graph), the triggers and the grants of
/// `resume_chunks`. Names are the migrations' own (no quoting needed).
const COPY_OBJECTS_SQL: &str = r"
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS def,
           c.conname IS NOT NULL AS pkey
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.contype = 'p'
    WHERE x.indrelid = 'resume_chunks'::regclass
      AND pg_get_indexdef(x.indexrelid) NOT LIKE '% USING hnsw %'
  LOOP
    EXECUTE regexp_replace(r.def, '^(CREATE (UNIQUE )?INDEX )(\S+) ON (\S+\.)?resume_chunks ',
                           '\1\3_shadow ON \4resume_chunks_shadow ');
    IF r.pkey THEN
      EXECUTE format('ALTER TABLE resume_chunks_shadow ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I',
                     r.name || '_shadow', r.name || '_shadow');
    END IF;
  END LOOP;
  FOR r IN
    SELECT pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
    WHERE t.tgrelid = 'resume_chunks'::regclass AND NOT t.tgisinternal
      AND t.tgname <> 'trg_resume_chunks_reembed'
  LOOP
    EXECUTE regexp_replace(r.def, ' ON (\S+\.)?resume_chunks ', ' ON \1resume_chunks_shadow ');
  END LOOP;
  FOR r IN
    SELECT a.privilege_type AS privilege,
           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END AS grantee
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid = 'resume_chunks'::regclass AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('GRANT %s ON resume_chunks_shadow TO %s', r.privilege, r.grantee);
  END LOOP;
END
$$";

/// For each HNSW index of `resume_chunks`: its name on the shadow table,
/// the statement that builds it there (`CONCURRENTLY`), and whether it
/// exists there (`NULL`), is valid (`true`) or was left invalid by an
/// interrupted build (`false`).
const HNSW_SQL: &str = r"
SELECT i.relname || '_shadow' AS name,
       regexp_replace(pg_get_indexdef(x.indexrelid),
                      '^CREATE INDEX (\S+) ON (\S+\.)?resume_chunks ',
                      'CREATE INDEX CONCURRENTLY \1_shadow ON \2resume_chunks_shadow ') AS def,
       (SELECT s.indisvalid FROM pg_index s
        WHERE s.indexrelid = to_regclass(quote_ident(i.relname || '_shadow'))) AS valid
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'resume_chunks'::regclass
  AND pg_get_indexdef(x.indexrelid) LIKE '% USING hnsw %'";

/// Builds the shadow table's HNSW indexes where missing or left invalid
/// ([`HNSW_SQL`]), `CONCURRENTLY` on a connection of its own (1 GB of
/// `maintenance_work_mem`, one parallel worker). A plain build would also
/// index the rows the queue catch-up replaced, still visible to older
/// snapshots, and read their TOASTed vectors, which PostgreSQL may have
/// pruned ("missing chunk number 0 for toast value", seen in the
/// benchmark); a concurrent build indexes only what its snapshot sees.
async fn build_indexes(route: &Route<'_>) -> Result<()> {
    let mut tx = begin(route).await?;
    let rows = sqlx::query(HNSW_SQL)
        .fetch_all(&mut *tx)
        .await
        .map_err(sqlx_err)?;
    tx.commit().await.map_err(sqlx_err)?;
    let mut statements = Vec::new();
    for r in rows {
        let name: String = r.get("name");
        match r.get::<Option<bool>, _>("valid") {
            Some(true) => {}
            Some(false) => {
                statements.push(format!("DROP INDEX CONCURRENTLY IF EXISTS \"{name}\""));
                statements.push(r.get("def"));
            }
            None => statements.push(r.get("def")),
        }
    }
    if statements.is_empty() {
        return Ok(());
    }
    let pool = route
        .primary_pool()
        .ok_or_else(|| Error::Config("re-embedding needs the Db, not a transaction".into()))?;
    let mut settings = vec![
        ("maintenance_work_mem".to_owned(), "1GB".to_owned()),
        (
            "max_parallel_maintenance_workers".to_owned(),
            "1".to_owned(),
        ),
    ];
    settings.extend(
        route
            .settings()
            .statement
            .iter()
            .filter(|(n, _)| n == "search_path")
            .cloned(),
    );
    let options = (*pool.get_postgres_connection_pool().connect_options())
        .clone()
        .options(settings);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .map_err(sqlx_err)?;
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .map_err(sqlx_err)?;
    }
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

/// A chunk read for embedding.
struct Pending {
    id: Uuid,
    seq: Option<i64>,
    present: bool,
    text: Option<String>,
    metadata: Option<String>,
}

/// Embeds every chunk of the serving table that the shadow table lacks,
/// then the queued writes until less than one batch is left (uploads keep
/// coming; [`switch`] embeds the rest), with `embedder` (whose model must be the
/// shadow table's: [`Job::shadow_model`]). Calls `progress` after every
/// committed batch. Holds the job's lease (renewed with every batch; it
/// lapses 30 s after a crash) so that two runners never share a job.
///
/// Resumable and safe to interrupt at any point (`kill -9` included):
/// every batch commits its chunks and nothing else, and a run starts from
/// what the shadow table still lacks.
///
/// # Errors
/// [`Error::NotFound`] without an active job; [`Error::ModelMismatch`] for
/// an embedder of another model; [`Error::Conflict`] while another runner
/// holds the lease; the embedder's errors; database failures.
pub async fn run<E: Embedder>(
    db: &Db,
    embedder: &E,
    options: RunOptions,
    mut progress: impl FnMut(Progress),
) -> Result<RunSummary> {
    let route = db.route();
    let job = lease(&route, embedder).await?;
    let result = run_leased(&route, &job, embedder, options, &mut progress).await;
    release(&route, &job).await;
    result
}

/// Checks that `embedder` is of the active job's shadow model and takes
/// the job's lease.
async fn lease<E: Embedder>(route: &Route<'_>, embedder: &E) -> Result<Job> {
    let mut tx = begin(route).await?;
    let job = active(&mut tx).await?;
    if embedder.model() != job.shadow_model() {
        return Err(Error::ModelMismatch {
            handle: job.shadow_model().clone(),
            given: embedder.model().clone(),
        });
    }
    let got: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE reembed_jobs SET lease_until = now() + interval '{LEASE}' \
         WHERE id = $1 AND (lease_until IS NULL OR lease_until < now()) RETURNING id"
    )))
    .bind(job.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(sqlx_err)?;
    if got.is_none() {
        return Err(Error::Conflict {
            message: format!(
                "another runner holds re-embedding job {} (its lease lapses {LEASE} after its \
                 last batch)",
                job.id
            ),
        });
    }
    tx.commit().await.map_err(sqlx_err)?;
    Ok(job)
}

/// Releases the lease (also after a failure, so that a retry need not
/// wait for it to lapse).
async fn release(route: &Route<'_>, job: &Job) {
    if let Ok(mut tx) = begin(route).await {
        let _ = sqlx::query("UPDATE reembed_jobs SET lease_until = NULL WHERE id = $1")
            .bind(job.id)
            .execute(&mut *tx)
            .await;
        let _ = tx.commit().await;
    }
}

/// Chunks in the shadow table, in the serving table, and queued writes:
/// one statement.
async fn counts(route: &Route<'_>) -> Result<(i64, i64, i64)> {
    let mut tx = begin(route).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {SHADOW_TABLE}) AS done, \
                (SELECT count(*) FROM resume_chunks) AS total, \
                (SELECT count(*) FROM reembed_queue) AS queued"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(sqlx_err)?;
    tx.commit().await.map_err(sqlx_err)?;
    Ok((row.get("done"), row.get("total"), row.get("queued")))
}

async fn run_leased<E: Embedder>(
    route: &Route<'_>,
    job: &Job,
    embedder: &E,
    options: RunOptions,
    progress: &mut impl FnMut(Progress),
) -> Result<RunSummary> {
    let batch = options.batch.clamp(1, embedder.max_batch());
    let in_flight = options.in_flight.max(1);
    let mut summary = RunSummary::default();
    let (mut done, total, _) = counts(route).await?;
    if !job.backfilled {
        // Read batches in id order (each read starts where the last ended),
        // embed several at once, write them in order.
        let reads = stream::try_unfold(Uuid::nil(), |after| async move {
            let mut tx = begin(route).await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT c.id, c.text, c.metadata::text AS metadata, q.seq FROM resume_chunks c \
                 LEFT JOIN reembed_queue q ON q.id = c.id \
                 WHERE c.id > $1 AND NOT EXISTS (SELECT 1 FROM {SHADOW_TABLE} s WHERE s.id = c.id) \
                 ORDER BY c.id LIMIT $2"
            )))
            .bind(after)
            .bind(batch as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(sqlx_err)?;
            tx.commit().await.map_err(sqlx_err)?;
            let Some(last) = rows.last().map(|r| r.get::<Uuid, _>("id")) else {
                return Ok(None);
            };
            let pending: Vec<Pending> = rows
                .into_iter()
                .map(|r| Pending {
                    id: r.get("id"),
                    // A chunk written since the job started is also queued:
                    // storing the version read here answers that entry
                    // (unless written again since), so it is not embedded
                    // twice.
                    seq: r.get("seq"),
                    present: true,
                    text: r.get("text"),
                    metadata: r.get("metadata"),
                })
                .collect();
            Ok::<_, Error>(Some((pending, last)))
        });
        let embedded = reads
            .map_ok(|pending| embed_batch(embedder, pending))
            .try_buffered(in_flight);
        let mut embedded = std::pin::pin!(embedded);
        while let Some((pending, vectors, took)) = embedded.try_next().await? {
            summary.embedding += took;
            let started = std::time::Instant::now();
            let mut tx = begin(route).await?;
            write_batch(&mut tx, job, &pending, &vectors).await?;
            tx.commit().await.map_err(sqlx_err)?;
            summary.writing += started.elapsed();
            let stored = pending.iter().filter(|p| p.present).count() as u64;
            summary.embedded += vectors.iter().filter(|v| v.is_some()).count() as u64;
            summary.backfilled += stored;
            summary.without_text += stored - vectors.iter().filter(|v| v.is_some()).count() as u64;
            done += stored as i64;
            progress(Progress {
                done,
                total,
                embedded: summary.embedded,
                queued: -1,
            });
        }
        let mut tx = begin(route).await?;
        sqlx::query("UPDATE reembed_jobs SET backfilled_at = now() WHERE id = $1")
            .bind(job.id)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err)?;
        tx.commit().await.map_err(sqlx_err)?;
    }
    // The writes queued during the backfill, while inserts are cheap (no
    // graph yet); then the new model's HNSW index, built once over the
    // whole table; then what was queued during the build.
    catch_up(
        route,
        job,
        embedder,
        batch,
        in_flight,
        batch - 1,
        &mut summary,
        progress,
    )
    .await?;
    let started = std::time::Instant::now();
    build_indexes(route).await?;
    summary.indexing += started.elapsed();
    // The writes queued meanwhile, until less than a batch is left (uploads
    // keep coming; `switch` embeds the rest under its lock).
    catch_up(
        route,
        job,
        embedder,
        batch,
        in_flight,
        batch - 1,
        &mut summary,
        progress,
    )
    .await?;
    Ok(summary)
}

/// Embeds the queued writes, `in_flight` batches at a time, until fewer
/// than `leave + 1` are left.
#[allow(clippy::too_many_arguments)]
async fn catch_up<E: Embedder>(
    route: &Route<'_>,
    job: &Job,
    embedder: &E,
    batch: usize,
    in_flight: usize,
    leave: usize,
    summary: &mut RunSummary,
    progress: &mut impl FnMut(Progress),
) -> Result<()> {
    loop {
        let mut tx = begin(route).await?;
        let mut pending = read_queue(&mut tx, (batch * in_flight).max(leave + 1)).await?;
        tx.commit().await.map_err(sqlx_err)?;
        if pending.len() <= leave {
            return Ok(());
        }
        let mut batches = Vec::new();
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(batch));
            batches.push(std::mem::replace(&mut pending, rest));
        }
        let embedded = futures_util::future::try_join_all(
            batches.into_iter().map(|b| embed_batch(embedder, b)),
        )
        .await?;
        for (pending, vectors, took) in embedded {
            summary.embedding += took;
            let started = std::time::Instant::now();
            let mut tx = begin(route).await?;
            write_batch(&mut tx, job, &pending, &vectors).await?;
            tx.commit().await.map_err(sqlx_err)?;
            summary.writing += started.elapsed();
            summary.caught_up += pending.len() as u64;
            summary.embedded += vectors.iter().filter(|v| v.is_some()).count() as u64;
        }
        let (done, total, queued) = counts(route).await?;
        progress(Progress {
            done,
            total,
            embedded: summary.embedded,
            queued,
        });
    }
}

/// Up to `batch` queue entries with the chunks' current rows (one
/// statement: one snapshot of both).
async fn read_queue(tx: &mut Tx, batch: usize) -> Result<Vec<Pending>> {
    let rows = sqlx::query(
        "SELECT q.id, q.seq, c.id IS NOT NULL AS present, c.text, c.metadata::text AS metadata \
         FROM reembed_queue q LEFT JOIN resume_chunks c ON c.id = q.id \
         ORDER BY q.seq LIMIT $1",
    )
    .bind(batch as i64)
    .fetch_all(&mut **tx)
    .await
    .map_err(sqlx_err)?;
    Ok(rows
        .into_iter()
        .map(|r| Pending {
            id: r.get("id"),
            seq: Some(r.get("seq")),
            present: r.get("present"),
            text: r.get("text"),
            metadata: r.get("metadata"),
        })
        .collect())
}

type Embedded = (Vec<Pending>, Vec<Option<Vec<f32>>>, Duration);

/// Embeds the texts of the present chunks (a chunk without text gets no
/// vector).
async fn embed_batch<E: Embedder>(embedder: &E, pending: Vec<Pending>) -> Result<Embedded> {
    let texts: Vec<String> = pending
        .iter()
        .filter(|p| p.present)
        .filter_map(|p| p.text.clone())
        .collect();
    let started = std::time::Instant::now();
    let vectors = if texts.is_empty() {
        Vec::new()
    } else {
        embedder.embed(&texts, Purpose::Document).await?
    };
    let took = started.elapsed();
    let mut it = vectors.into_iter();
    let out = pending
        .iter()
        .map(|p| match (p.present, &p.text) {
            (true, Some(_)) => it.next().map(Vec::from),
            _ => None,
        })
        .collect();
    Ok((pending, out, took))
}

/// Replaces the batch's rows in the shadow table (present chunks with
/// their new vector and stamp; deleted ones removed) and clears the queue
/// entries it answered (only those not written again since).
async fn write_batch(
    tx: &mut Tx,
    job: &Job,
    pending: &[Pending],
    vectors: &[Option<Vec<f32>>],
) -> Result<()> {
    let ids: Vec<Uuid> = pending.iter().map(|p| p.id).collect();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {SHADOW_TABLE} WHERE id = ANY($1)"
    )))
    .bind(&ids)
    .execute(&mut **tx)
    .await
    .map_err(sqlx_err)?;
    let stamp = job.shadow_model().stamp();
    let mut enc = Encoder::new();
    let mut rows = 0;
    for (p, v) in pending.iter().zip(vectors) {
        if !p.present {
            continue;
        }
        let mut metadata: Map<String, Json> = p
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        metadata.insert(MODEL_KEY.into(), stamp.clone());
        let metadata = serde_json::to_vec(&metadata).map_err(|e| Error::Validation {
            field: "metadata",
            reason: e.to_string(),
        })?;
        let row = enc.row(4);
        row.uuid(&p.id).text(p.text.as_deref()).jsonb(&metadata);
        match v {
            Some(v) => row.vector(v),
            None => row.raw(None),
        };
        rows += 1;
    }
    if rows > 0 {
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY {SHADOW_TABLE} (id, text, metadata, embedding) FROM STDIN (FORMAT binary)"
            ))
            .await
            .map_err(sqlx_err)?;
        copy.send(enc.finish()).await.map_err(sqlx_err)?;
        copy.finish().await.map_err(sqlx_err)?;
    }
    let answered: Vec<(Uuid, i64)> = pending
        .iter()
        .filter_map(|p| p.seq.map(|s| (p.id, s)))
        .collect();
    if !answered.is_empty() {
        let (qids, seqs): (Vec<Uuid>, Vec<i64>) = answered.into_iter().unzip();
        sqlx::query(
            "DELETE FROM reembed_queue q USING unnest($1::uuid[], $2::bigint[]) a(id, seq) \
             WHERE q.id = a.id AND q.seq = a.seq",
        )
        .bind(&qids)
        .bind(&seqs)
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err)?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE reembed_jobs SET lease_until = now() + interval '{LEASE}' WHERE id = $1"
    )))
    .bind(job.id)
    .execute(&mut **tx)
    .await
    .map_err(sqlx_err)?;
    Ok(())
}

/// Makes the job's new model the serving one (see the module). `embedder`
/// is the new model's: it embeds the writes queued since the last [`run`]
/// (they must fit in one batch; run first otherwise).
///
/// # Errors
/// [`Error::Conflict`] when the backfill is not complete, chunks are still
/// staged, too many writes are queued, or locks could not be had in time
/// (searches are then not held up: retry); as [`run`].
pub async fn switch<E: Embedder>(db: &Db, embedder: &E) -> Result<Job> {
    swap(db, embedder, JobState::Backfill, JobState::Switched).await
}

/// Swaps back to the old model after [`switch`], before [`finish`].
/// `embedder` is the old model's, for the writes queued since the last
/// [`run`] (none if no upload happened: it is then not called).
///
/// # Errors
/// As [`switch`].
pub async fn undo<E: Embedder>(db: &Db, embedder: &E) -> Result<Job> {
    swap(db, embedder, JobState::Switched, JobState::Backfill).await
}

async fn swap<E: Embedder>(db: &Db, embedder: &E, from: JobState, to: JobState) -> Result<Job> {
    let route = db.route();
    // Chunks still staged would stay with the old model: move them first.
    loop {
        let moved = crate::staged::index_staged_chunks(db, 100).await?;
        if moved.resumes == 0 {
            break;
        }
    }
    let batch = embedder.max_batch().min(100);
    let job = lease(&route, embedder).await?;
    if let Err(e) = build_indexes(&route).await {
        release(&route, &job).await;
        return Err(e);
    }
    let mut result = Err(Error::Conflict {
        message: "writes kept arriving faster than the switch could catch up".into(),
    });
    for _ in 0..5 {
        // Catch up outside the lock, so that little is left under it.
        let mut summary = RunSummary::default();
        if let Err(e) = catch_up(
            &route,
            &job,
            embedder,
            batch,
            RunOptions::default().in_flight,
            batch / 2,
            &mut summary,
            &mut |_| {},
        )
        .await
        {
            result = Err(e);
            break;
        }
        result = locked_swap(&route, embedder, batch, from, to).await;
        match &result {
            Err(Error::Conflict { message }) if message.contains("queued") => continue,
            _ => break,
        }
    }
    release(&route, &job).await;
    result
}

/// The swap itself, in one transaction (see [`switch`]).
async fn locked_swap<E: Embedder>(
    route: &Route<'_>,
    embedder: &E,
    batch: usize,
    from: JobState,
    to: JobState,
) -> Result<Job> {
    with_lock_retries(route, async |tx| {
        let job = active(tx).await?;
        if job.state != from {
            return Err(Error::Conflict {
                message: format!(
                    "re-embedding job {} is {}, not {}",
                    job.id,
                    job.state.as_str(),
                    from.as_str()
                ),
            });
        }
        if from == JobState::Backfill && !job.backfilled {
            return Err(Error::Conflict {
                message: "the backfill is not complete: run `migration reembed run` first".into(),
            });
        }
        if embedder.model() != job.shadow_model() {
            return Err(Error::ModelMismatch {
                handle: job.shadow_model().clone(),
                given: embedder.model().clone(),
            });
        }
        // Writers wait from here; readers go on.
        lock_writers(tx, "resume_chunks, resume_chunks_staged").await?;
        let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM resume_chunks_staged")
            .fetch_one(&mut **tx)
            .await
            .map_err(sqlx_err)?;
        if staged > 0 {
            return Err(Error::Conflict {
                message: format!(
                    "{staged} chunks are staged (a staged upload arrived meanwhile): retry"
                ),
            });
        }
        // Writers are stopped: the queue cannot grow. At most one round of
        // calls in flight is embedded here, the rest is refused (retried
        // after another catch-up outside the lock).
        let most = batch * RunOptions::default().in_flight;
        let mut pending = read_queue(tx, most + 1).await?;
        if pending.len() > most {
            return Err(Error::Conflict {
                message: "more writes are queued than one round of embedder calls: run \
                          `migration reembed run`, then switch"
                    .into(),
            });
        }
        let mut batches = Vec::new();
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(batch));
            batches.push(std::mem::replace(&mut pending, rest));
        }
        for (pending, vectors, _) in futures_util::future::try_join_all(
            batches.into_iter().map(|b| embed_batch(embedder, b)),
        )
        .await?
        {
            write_batch(tx, &job, &pending, &vectors).await?;
        }
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM reembed_queue")
            .fetch_one(&mut **tx)
            .await
            .map_err(sqlx_err)?;
        if left > 0 {
            return Err(Error::Conflict {
                message: format!("{left} queued writes remain: retry"),
            });
        }
        exec(tx, SWAP_SQL).await?;
        let model = job.shadow_model();
        sqlx::query("UPDATE embedding_models SET serving = false WHERE serving")
            .execute(&mut **tx)
            .await
            .map_err(sqlx_err)?;
        sqlx::query(
            "UPDATE embedding_models SET serving = true WHERE name = $1 AND dimensions = $2",
        )
        .bind(model.name())
        .bind(model.dimensions() as i32)
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err)?;
        sqlx::query(
            "UPDATE reembed_jobs SET state = $2, \
               switched_at = CASE WHEN $2 = 'switched' THEN now() END WHERE id = $1",
        )
        .bind(job.id)
        .bind(to.as_str())
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err)?;
        active(tx).await
    })
    .await
}

/// Swaps the names of `resume_chunks` and the shadow table, and of their
/// indexes (`<name>` and `<name>_shadow`), and moves the queue trigger to
/// the new `resume_chunks`. Takes ACCESS EXCLUSIVE locks on both tables
/// for the rest of the (short) transaction.
const SWAP_SQL: &str = r"
DO $$
DECLARE
  r record;
BEGIN
  EXECUTE 'DROP TRIGGER trg_resume_chunks_reembed ON resume_chunks';
  FOR r IN SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
           WHERE x.indrelid = 'resume_chunks'::regclass LOOP
    EXECUTE format('ALTER INDEX %I RENAME TO %I', r.name, r.name || '_swap');
  END LOOP;
  FOR r IN SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
           WHERE x.indrelid = 'resume_chunks_shadow'::regclass LOOP
    EXECUTE format('ALTER INDEX %I RENAME TO %I', r.name, left(r.name, length(r.name) - 7));
  END LOOP;
  FOR r IN SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
           WHERE x.indrelid = 'resume_chunks'::regclass LOOP
    EXECUTE format('ALTER INDEX %I RENAME TO %I', r.name,
                   left(r.name, length(r.name) - 5) || '_shadow');
  END LOOP;
  ALTER TABLE resume_chunks RENAME TO resume_chunks_swap;
  ALTER TABLE resume_chunks_shadow RENAME TO resume_chunks;
  ALTER TABLE resume_chunks_swap RENAME TO resume_chunks_shadow;
  EXECUTE 'CREATE TRIGGER trg_resume_chunks_reembed AFTER INSERT OR UPDATE OR DELETE '
       || 'ON resume_chunks FOR EACH ROW EXECUTE FUNCTION reembed_enqueue()';
END
$$";

/// Ends a switched job: drops the old model's table (its vectors and HNSW
/// index) and the queue trigger.
///
/// # Errors
/// [`Error::Conflict`] unless the job is switched; lock timeouts after
/// retries; database failures.
pub async fn finish(db: &Db) -> Result<Job> {
    end(db, JobState::Switched, JobState::Finished).await
}

/// Abandons a job before its switch: drops the new model's table and the
/// queue trigger. The serving model is unchanged.
///
/// # Errors
/// As [`finish`], unless the job is in backfill.
pub async fn cancel(db: &Db) -> Result<Job> {
    end(db, JobState::Backfill, JobState::Cancelled).await
}

async fn end(db: &Db, from: JobState, to: JobState) -> Result<Job> {
    let route = db.route();
    with_lock_retries(&route, async |tx| {
        let job = active(tx).await?;
        if job.state != from {
            return Err(Error::Conflict {
                message: format!(
                    "re-embedding job {} is {}: only a {} job can be {}",
                    job.id,
                    job.state.as_str(),
                    from.as_str(),
                    to.as_str()
                ),
            });
        }
        lock_writers(tx, "resume_chunks").await?;
        exec(
            tx,
            &format!(
                "DROP TRIGGER IF EXISTS {QUEUE_TRIGGER} ON resume_chunks; \
                 DROP TABLE IF EXISTS {SHADOW_TABLE}; DELETE FROM reembed_queue"
            ),
        )
        .await?;
        sqlx::query(
            "UPDATE reembed_jobs SET state = $2, ended_at = now(), lease_until = NULL \
             WHERE id = $1",
        )
        .bind(job.id)
        .bind(to.as_str())
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err)?;
        Ok(Job { state: to, ..job })
    })
    .await
}

/// The latest job and the chunks of each model.
///
/// # Errors
/// Database failures.
pub async fn status(db: &Db) -> Result<Status> {
    let route = db.route();
    let mut tx = begin(&route).await?;
    let job = latest(&mut tx).await?;
    let serving = serving(&mut tx).await?;
    let mut models = Vec::new();
    let serving_chunks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM resume_chunks WHERE embedding IS NOT NULL")
            .fetch_one(&mut *tx)
            .await
            .map_err(sqlx_err)?;
    if let Some(model) = &serving {
        models.push(ModelProgress {
            model: model.clone(),
            serving: true,
            chunks: serving_chunks,
        });
    }
    if let Some(job) = job.as_ref().filter(|j| j.is_active()) {
        let shadow: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {SHADOW_TABLE} WHERE embedding IS NOT NULL"
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlx_err)?;
        models.push(ModelProgress {
            model: job.shadow_model().clone(),
            serving: false,
            chunks: shadow,
        });
    }
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM reembed_queue")
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlx_err)?;
    let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM resume_chunks_staged")
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlx_err)?;
    tx.commit().await.map_err(sqlx_err)?;
    Ok(Status {
        job,
        serving,
        models,
        queued,
        staged,
    })
}
