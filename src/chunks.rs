//! Resume chunks: atomic bulk replacement and semantic search.
//!
//! `resume_chunks` has LangChain `PGVectorStore`'s layout (`id`, `text`,
//! `metadata`, `embedding`) because other services share it. Every chunk
//! written here carries `user_id` and `resume_id` in `metadata` as strings,
//! the way those services read it, plus any extra keys the caller supplies.
//!
//! Rules shared with the other writers of the table:
//! - **Ids in metadata compare case-insensitively.** `user_id` and
//!   `resume_id` strings in the form of a UUID are stored in lower case
//!   whoever writes them (migration 007's trigger lowercases them on insert
//!   and update, and lowercased the rows already there), so searches,
//!   [`resume_chunks`], chunk replacement and the deletion of a resume or a
//!   profile all find a chunk another service wrote with `"3F2A…"`. Other
//!   strings (a Firebase uid written by the legacy app) are left as written.
//! - **Metadata filters follow LangChain**: a scalar filter value matches by
//!   its text form (`metadata->>key = '3'`), so `page: 3` finds both `3`
//!   and `"3"`; see [`SearchQuery::metadata_filter`].
//! - **Rows other services wrote never break a read**: chunks without an
//!   embedding (or with one pgvector cannot compare) are skipped by
//!   searches, and metadata nested deeper than [`METADATA_READ_DEPTH`] is
//!   returned with the too-deep values as JSON text (see
//!   [`METADATA_READ_DEPTH`]).

use entity::resume_chunks::{METADATA_RESUME_ID, METADATA_USER_ID};
use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use pgconn::copy::Encoder;

use crate::embedding::{Embedding, MODEL_KEY, ModelScope};
use crate::error::{Error, Result};
use crate::settings::Op;
#[cfg(test)]
use crate::settings::Settings;
use crate::store::Store;
use crate::validate::{Chars, JsonProblem, TextRule, check_json, invalid, json_text_depth};

/// Largest `k` a search accepts.
pub const MAX_TOP_K: u32 = 1000;
/// Longest chunk text, in bytes (32 KiB; chunks for embedding are usually
/// 1–4 KiB).
pub const MAX_CHUNK_TEXT_BYTES: usize = 32 * 1024;
/// Deepest nesting of arrays and objects in a chunk's metadata, the
/// metadata object itself included (`{"a": [1]}` is 2 deep). Also the
/// bound of a search's [`SearchQuery::metadata_filter`].
pub const MAX_METADATA_DEPTH: usize = 32;
/// Largest extra metadata of one chunk, serialized as JSON, in bytes (64 KiB).
/// Also the bound of a search's [`SearchQuery::metadata_filter`].
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Most keys in a search's [`SearchQuery::metadata_filter`].
pub const MAX_FILTER_KEYS: usize = 32;
/// Deepest metadata the read functions return as JSON values. Other
/// services may have written metadata nested deeper (PostgreSQL accepts
/// thousands of levels; serde_json, and so most consumers, stop at 128).
/// Such a chunk is still returned: each top-level metadata value nested
/// deeper than this (counting the metadata object) comes back as a JSON
/// string holding its JSON text, unchanged and parseable with a parser
/// without a depth limit; the other keys (`user_id`, `resume_id`, ...) come
/// back as usual. 64 leaves room for callers' own envelopes under serde_json's
/// limit.
pub const METADATA_READ_DEPTH: usize = 64;

const CHUNK_TEXT: TextRule = TextRule {
    field: "text",
    max_chars: MAX_CHUNK_TEXT_BYTES,
    max_bytes: MAX_CHUNK_TEXT_BYTES,
    chars: Chars::Any,
    blank_ok: false,
    padding_ok: true,
};

/// A chunk to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChunk {
    /// The chunk's text: not blank, at most [`MAX_CHUNK_TEXT_BYTES`], no NUL.
    pub text: String,
    /// Its validated embedding.
    pub embedding: Embedding,
    /// Extra metadata keys (`page`, `section`, ...). `user_id` and
    /// `resume_id` are set by the library and may not appear here. At most
    /// [`MAX_METADATA_DEPTH`] deep and [`MAX_METADATA_BYTES`] as JSON; no
    /// NUL in keys or strings (`jsonb` cannot store `\u0000`).
    pub extra_metadata: Map<String, Json>,
}

impl NewChunk {
    /// A chunk without extra metadata.
    pub fn new(text: impl Into<String>, embedding: Embedding) -> Self {
        Self {
            text: text.into(),
            embedding,
            extra_metadata: Map::new(),
        }
    }

    /// Adds an extra metadata key.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.extra_metadata.insert(key.into(), value.into());
        self
    }
}

/// Which chunks a search looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchScope {
    /// One user's chunks: exact search, every chunk of the user is compared.
    User(Uuid),
    /// One resume of one user: exact search.
    Resume {
        /// Owner of the resume.
        user_id: Uuid,
        /// The resume.
        resume_id: Uuid,
    },
    /// Every chunk in the table, through the HNSW index (approximate).
    All,
}

/// A search request.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    /// The query embedding.
    pub embedding: Embedding,
    /// How many chunks to return (1 to [`MAX_TOP_K`]).
    pub k: u32,
    /// Which chunks to consider.
    pub scope: SearchScope,
    /// Only chunks whose metadata has these keys with these values, all of
    /// them. LangChain's rule, since both write the same table: a scalar
    /// value matches by its text form, `metadata->>key = text` (a string as
    /// is, a number as JSON prints it, `true`/`false`), so `3` matches the
    /// stored number `3` and the string `"3"` (but not `3.0`); `null`, arrays
    /// and objects match by JSON containment (`metadata @> {key: value}`:
    /// `null` only where the key is present with `null`; an array matches
    /// an array holding those elements). Keys and values are bound as
    /// parameters. At most [`MAX_FILTER_KEYS`] keys, [`MAX_METADATA_DEPTH`]
    /// deep, [`MAX_METADATA_BYTES`] as JSON, no NUL.
    pub metadata_filter: Map<String, Json>,
}

impl SearchQuery {
    /// Top `k` in `scope`, without metadata filters.
    pub fn new(embedding: Embedding, k: u32, scope: SearchScope) -> Self {
        Self {
            embedding,
            k,
            scope,
            metadata_filter: Map::new(),
        }
    }

    /// Adds an equality filter on a metadata key (see
    /// [`SearchQuery::metadata_filter`]).
    pub fn filter(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.metadata_filter.insert(key.into(), value.into());
        self
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkMatch {
    /// Chunk id.
    pub id: Uuid,
    /// Chunk text.
    pub text: Option<String>,
    /// Chunk metadata (`user_id`, `resume_id`, extras).
    pub metadata: Option<Json>,
    /// Cosine similarity to the query, `1 - cosine distance` (1 = same direction).
    pub score: f64,
}

/// One resume's new chunk set, for [`replace_chunks`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResumeChunks<'a> {
    /// Owner of the resume.
    pub user_id: Uuid,
    /// The resume whose chunks are replaced.
    pub resume_id: Uuid,
    /// Its new chunks (may be empty: the resume then has none).
    pub chunks: &'a [NewChunk],
}

/// When newly written chunks enter the HNSW index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// In the write itself: the chunks go into `resume_chunks` and its HNSW
    /// graph. Every reader, LangChain `PGVectorStore` included, sees them
    /// when the call returns; the call pays the graph insertion (the
    /// per-chunk cost is in BENCHMARKS.md). For first loads and bulk
    /// re-embedding.
    Now,
    /// Later, by [`crate::staged::index_staged_chunks`] (usually a
    /// [`crate::staged::StagedIndexer`]): the chunks go into
    /// `resume_chunks_staged`, which has no vector index, so the call costs
    /// what the `COPY` costs. The library's reads find them at once;
    /// services reading `resume_chunks` directly see them once indexed (see
    /// [`crate::staged`]). For uploads on the request path.
    Deferred,
}

/// Replaces all chunks of each resume in `sets`, atomically, in one
/// transaction of its own: every resume is locked (in id order, so
/// concurrent calls cannot deadlock), all their old chunks (indexed and
/// staged) are deleted, and all new chunks are loaded with one binary
/// `COPY` stream, into the table `indexing` names. Readers see either a
/// resume's old or its new set, never a mix. The one way to write chunks:
/// one resume per upload, or a few thousand per call for first loads and
/// re-embedding.
///
/// Locking: concurrent replacements of the same resume take turns (a
/// transaction-level advisory lock per resume). The resume rows are only
/// key-share locked: they cannot be deleted while the call runs (the
/// delete waits, then removes the new chunks too), but their other columns
/// stay editable ([`crate::resumes::update_resume_content`] does not wait).
///
/// Needs the pool (`COPY` takes a raw connection), so it cannot run inside
/// a caller's [`crate::Transaction`]. Bounded by
/// [`crate::DbConfig::bulk_call_timeout`].
///
/// Returns the new chunk ids per resume, in input order.
///
/// # Errors
/// [`Error::Validation`] for a chunk breaking the rules of [`NewChunk`]
/// (blank, over-long or NUL text; a reserved, too-deep, too-large or NUL
/// metadata key), naming the resume, the chunk and the key, or a resume
/// listed twice, before anything is sent (nothing is written);
/// [`Error::ModelMismatch`] for an embedding of another model than the
/// handle's, [`Error::NotServing`] when the database serves another model
/// than the handle's (nothing is written);
/// [`Error::NotFound`] when a resume does not exist or belongs to another
/// user (nothing is written); [`Error::Config`] inside a transaction;
/// [`Error::Unavailable`] when the connection fails, also in the middle of
/// the `COPY`.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid,
/// #            vectors: Vec<Vec<f32>>) -> mockinterview_db::Result<()> {
/// use mockinterview_db::chunks::{replace_chunks, Indexing, ResumeChunks};
/// use mockinterview_db::{Embedding, EmbeddingModel, NewChunk};
/// let model = EmbeddingModel::gemini_embedding_001_768();
/// let new: Vec<NewChunk> = vectors
///     .into_iter()
///     .enumerate()
///     .map(|(i, v)| Ok(NewChunk::new(format!("chunk {i}"), Embedding::new(&model, v)?).with_metadata("page", 1)))
///     .collect::<mockinterview_db::Result<_>>()?;
/// let set = ResumeChunks { user_id, resume_id, chunks: &new };
/// let ids = replace_chunks(db, &[set], Indexing::Deferred).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, sets), fields(resumes = sets.len()))]
pub async fn replace_chunks<S: Store + ?Sized>(
    db: &S,
    sets: &[ResumeChunks<'_>],
    indexing: Indexing,
) -> Result<Vec<Vec<Uuid>>> {
    write_sets(db, sets, indexing).await
}

impl Indexing {
    fn copy_sql(self) -> &'static str {
        match self {
            Indexing::Now => {
                "COPY resume_chunks (id, text, metadata, embedding) FROM STDIN (FORMAT binary)"
            }
            Indexing::Deferred => {
                "COPY resume_chunks_staged (id, text, metadata, embedding) FROM STDIN (FORMAT binary)"
            }
        }
    }
}

/// [`replace_chunks`].
async fn write_sets<S: Store + ?Sized>(
    db: &S,
    sets: &[ResumeChunks<'_>],
    table: Indexing,
) -> Result<Vec<Vec<Uuid>>> {
    // Validate everything before touching the database.
    let route = db.route();
    let mut seen = std::collections::HashSet::with_capacity(sets.len());
    for set in sets {
        if !seen.insert(set.resume_id) {
            return Err(Error::Validation {
                field: "resume_id",
                reason: format!("resume {} is listed twice", set.resume_id),
            });
        }
        validate_chunks(set, route.models())?;
    }
    let ids: Vec<Vec<Uuid>> = sets
        .iter()
        .map(|s| s.chunks.iter().map(|_| Uuid::new_v4()).collect())
        .collect();
    let resume_ids: Vec<Uuid> = sets.iter().map(|s| s.resume_id).collect();

    route
        .bounded_bulk(async {
            let mut tx = route.begin_sqlx("replace_chunks").await?;
            copy_sets(&mut tx, route.models(), sets, &resume_ids, &ids, table).await?;
            tx.commit().await.map_err(sqlx_err)?;
            route.after_write().await
        })
        .await?;
    Ok(ids)
}

/// Inside `tx`: locks the resumes, deletes their chunks (indexed and
/// staged) and loads the new ones into `table` with one binary `COPY`
/// stream.
async fn copy_sets(
    tx: &mut sqlx::PgConnection,
    models: &ModelScope,
    sets: &[ResumeChunks<'_>],
    resume_ids: &[Uuid],
    ids: &[Vec<Uuid>],
    table: Indexing,
) -> Result<()> {
    // Replacements of one resume take turns (a transaction-level advisory
    // lock per resume, in id order, so concurrent bulk calls cannot
    // deadlock). The resume rows themselves are only key-share locked: they
    // cannot be deleted meanwhile, but their other columns stay editable
    // (`update_resume_content` does not wait for a long replace).
    let mut sorted = resume_ids.to_vec();
    sorted.sort();
    let keys: Vec<i64> = sorted.iter().map(|id| resume_lock_key(*id)).collect();
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY u(k, n) ORDER BY n")
        .bind(&keys)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err)?;
    let owners: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, user_id FROM resumes WHERE id = ANY($1) ORDER BY id FOR KEY SHARE",
    )
    .bind(resume_ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(sqlx_err)?;
    let owners: std::collections::HashMap<Uuid, Uuid> = owners.into_iter().collect();
    if let Some(set) = sets
        .iter()
        .find(|s| owners.get(&s.resume_id) != Some(&s.user_id))
    {
        return Err(crate::resumes::not_found(set.resume_id));
    }
    let resume_keys: Vec<String> = resume_ids.iter().map(Uuid::to_string).collect();
    sqlx::query("DELETE FROM resume_chunks WHERE metadata->>'resume_id' = ANY($1)")
        .bind(&resume_keys)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err)?;
    // Staged chunks of these resumes (not yet moved by the indexer, which
    // takes the same advisory locks) are replaced too.
    sqlx::query("DELETE FROM resume_chunks_staged WHERE resume_id = ANY($1)")
        .bind(resume_ids)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err)?;
    // Only the served model's vectors go into its table (a re-embedding
    // job may have switched it since this handle connected). Checked after
    // the deletes: they wait for a switch in progress (its lock on the
    // table), and this statement then sees its outcome.
    if models.registry {
        let serving: Option<String> = sqlx::query_scalar(
            "SELECT (name, dimensions)::text FROM embedding_models WHERE serving",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(sqlx_err)?;
        let serving = serving.as_deref().and_then(crate::schema::parse_row);
        if serving.as_ref().is_some_and(|s| s != &models.model) {
            return Err(Error::NotServing {
                handle: models.model.clone(),
                serving,
            });
        }
    }
    if sets.iter().all(|s| s.chunks.is_empty()) {
        return Ok(());
    }
    let mut copy = tx.copy_in_raw(table.copy_sql()).await.map_err(sqlx_err)?;
    // Stream in pieces of about 1 MiB: bounded memory, and the server
    // starts inserting while the rest is encoded.
    let mut enc = Encoder::new();
    for (set, set_ids) in sets.iter().zip(ids) {
        for (chunk, id) in set.chunks.iter().zip(set_ids) {
            encode_row(&mut enc, set.user_id, set.resume_id, chunk, *id)?;
            if enc.is_full() {
                copy.send(enc.take()).await.map_err(sqlx_err)?;
            }
        }
    }
    copy.send(enc.finish()).await.map_err(sqlx_err)?;
    copy.finish().await.map_err(sqlx_err)?;
    Ok(())
}

/// The advisory-lock key serializing replacements of one resume: its first
/// 8 bytes (a collision only makes two replacements take turns). The
/// staged-chunk indexer computes the same key in SQL
/// ([`RESUME_LOCK_KEY_SQL`]).
fn resume_lock_key(resume_id: Uuid) -> i64 {
    let b = resume_id.as_bytes();
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// [`resume_lock_key`] of the `uuid` column `resume_id`, in SQL: the first
/// 16 hex digits as a big-endian signed 64-bit integer.
pub(crate) const RESUME_LOCK_KEY_SQL: &str =
    "('x' || left(replace(resume_id::text, '-', ''), 16))::bit(64)::bigint";

/// The resume's chunks, as stored, in no particular order. Metadata nested
/// deeper than [`METADATA_READ_DEPTH`] (written by another service) comes
/// back as described there instead of failing the call.
///
/// # Errors
/// Database failures only.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// let stored = mockinterview_db::chunks::resume_chunks(db, user_id, resume_id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn resume_chunks<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
) -> Result<Vec<entity::resume_chunks::Model>> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id, text, metadata::text AS metadata, embedding FROM resume_chunks \
         WHERE metadata->>'user_id' = $1 AND metadata->>'resume_id' = $2 \
         UNION ALL \
         SELECT id, text, metadata::text AS metadata, embedding FROM resume_chunks_staged \
         WHERE metadata->>'user_id' = $1 AND metadata->>'resume_id' = $2",
        [user_id.to_string().into(), resume_id.to_string().into()],
    );
    db.route()
        .read(Op::Plain, |c| {
            let statement = statement.clone();
            async move {
                c.query_all_raw(statement)
                    .await?
                    .iter()
                    .map(|r| {
                        let id: Uuid = r.try_get("", "id")?;
                        Ok(entity::resume_chunks::Model {
                            id,
                            text: r.try_get("", "text")?,
                            metadata: decode_metadata(r.try_get("", "metadata")?, id),
                            embedding: r.try_get("", "embedding")?,
                        })
                    })
                    .collect()
            }
        })
        .await
}

/// SQL condition: `embedding` (not NULL) is one pgvector can rank by cosine,
/// i.e. its single-precision sum of squares is neither 0 nor infinite. One
/// `NOT IN` evaluates `<#>` once, and the planner estimates it as nearly
/// always true: written as `< 0 AND > '-Infinity'` it was estimated at 1/9
/// of the rows, which with a metadata filter made whole-table searches at 1M
/// chunks choose an exact scan (9.7 s instead of 5 ms, BENCHMARKS.md).
const RANKABLE: &str = "(embedding <#> embedding) NOT IN ('0', '-Infinity', 'NaN')";

/// Finds the `k` chunks most similar (cosine) to the query embedding.
///
/// Scoped searches ([`SearchScope::User`], [`SearchScope::Resume`]) compare
/// every chunk of the scope and return the exact top `k`, however large the
/// table is. [`SearchScope::All`] uses the HNSW index (approximate): its
/// `hnsw.ef_search` follows the table's size unless
/// [`crate::DbConfig::hnsw_ef_search`] fixes it ([`crate::tuning`]). With
/// a metadata filter that at most 10,000 chunks pass, a whole-table search
/// compares them all instead (exact); the same statement counts them first,
/// through the GIN index on `metadata`.
/// All values, metadata keys included, are bound as parameters; filters
/// follow [`SearchQuery::metadata_filter`]'s rule.
///
/// Only chunks of the handle's embedding model are compared (and
/// returned): those stamped with it, and the unstamped ones when the
/// database declares them to be of it ([`crate::embedding`]).
///
/// Chunks another service wrote without an embedding, or with one whose
/// norm pgvector cannot compute (a zero vector, or values so small or large
/// that the single-precision sum of squares is 0 or infinite; see
/// [`Embedding`]), are skipped: their cosine with anything comes out 1.0 or
/// undefined, so they would otherwise rank first. Metadata is decoded as in [`resume_chunks`].
///
/// # Errors
/// [`Error::Validation`] for `k` out of range or a filter breaking the
/// bounds of [`SearchQuery::metadata_filter`]; [`Error::ModelMismatch`]
/// for a query embedding of another model than the handle's;
/// [`Error::NotServing`] (when nothing matched) if the database serves
/// another model than the handle's.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, query: Vec<f32>) -> mockinterview_db::Result<()> {
/// use mockinterview_db::{chunks::search_chunks, Embedding, SearchQuery, SearchScope};
/// let q = SearchQuery::new(Embedding::new(db.embedding_model(), query)?, 5, SearchScope::User(user_id))
///     .filter("section", "experience");
/// for hit in search_chunks(db, &q).await? {
///     println!("{:.3} {}", hit.score, hit.text.unwrap_or_default());
/// }
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, query), fields(k = query.k, scope = ?query.scope))]
pub async fn search_chunks<S: Store + ?Sized>(
    db: &S,
    query: &SearchQuery,
) -> Result<Vec<ChunkMatch>> {
    let route = db.route();
    let models = route.models();
    let (op, statement) = search_statement(query, models, |k| route.hnsw_search(k))?;
    route
        .read(op, |c| {
            let statement = statement.clone();
            async move {
                let rows = c.query_all_raw(statement).await?;
                // No chunk of the handle's model: maybe the database serves
                // another one now (a re-embedding job switched it).
                if rows.is_empty() && models.registry {
                    let serving = crate::schema::serving_model(&c).await?;
                    if serving.as_ref() != Some(&models.model) {
                        return Err(Error::NotServing {
                            handle: models.model.clone(),
                            serving,
                        });
                    }
                }
                let mut out = Vec::new();
                for r in rows {
                    let id: Uuid = r.try_get("", "id")?;
                    let score: f64 = r.try_get("", "score")?;
                    if score.is_nan() {
                        continue;
                    }
                    out.push(ChunkMatch {
                        id,
                        text: r.try_get("", "text")?,
                        metadata: decode_metadata(r.try_get("", "metadata")?, id),
                        score,
                    });
                }
                Ok(out)
            }
        })
        .await
}

/// The statement of [`search_chunks`], and how to run it (`hnsw_search`:
/// the route's [`crate::store::Route::hnsw_search`]).
fn search_statement(
    query: &SearchQuery,
    models: &ModelScope,
    hnsw_search: impl FnOnce(u32) -> (Op, Option<String>),
) -> Result<(Op, Statement)> {
    if query.k == 0 || query.k > MAX_TOP_K {
        return Err(Error::Validation {
            field: "k",
            reason: format!(
                "{} is out of range; ask for 1 to {MAX_TOP_K} results",
                query.k
            ),
        });
    }
    if query.metadata_filter.len() > MAX_FILTER_KEYS {
        return Err(invalid(
            "metadata_filter",
            format!(
                "{} keys; at most {MAX_FILTER_KEYS}",
                query.metadata_filter.len()
            ),
        ));
    }
    check_metadata_map(&query.metadata_filter).map_err(|why| invalid("metadata_filter", why))?;
    models.check(&query.embedding)?;
    let mut values: Vec<Value> = vec![query.embedding.to_vector().into()];
    // Rows another service wrote without an embedding, or with one whose
    // norm pgvector cannot compute (the sum of squares in single precision,
    // which `<#>` with itself computes as its negative, is 0 or infinite:
    // such a vector's cosine with anything comes out exactly 0, 1 or 2
    // (pgvector clamps an infinite similarity) or NaN), cannot be ranked:
    // see RANKABLE. Each evaluation of `<#>` reads the TOASTed vector twice.
    let mut conditions: Vec<String> = vec!["embedding IS NOT NULL".to_owned()];
    let bind = |v: Value, values: &mut Vec<Value>| {
        values.push(v);
        format!("${}", values.len())
    };
    match query.scope {
        SearchScope::User(user_id) => {
            let p = bind(user_id.to_string().into(), &mut values);
            conditions.push(format!("metadata->>'user_id' = {p}"));
        }
        SearchScope::Resume { user_id, resume_id } => {
            let p = bind(user_id.to_string().into(), &mut values);
            conditions.push(format!("metadata->>'user_id' = {p}"));
            let p = bind(resume_id.to_string().into(), &mut values);
            conditions.push(format!("metadata->>'resume_id' = {p}"));
        }
        SearchScope::All => {}
    }
    // Only chunks of the query's model (crate::embedding).
    let stamp = bind(models.model.stamp().into(), &mut values);
    let row_model = models.row_condition(&stamp);
    // Only the serving model is searched: a one-time check (no row
    // referenced) gates the scans. Scoped searches also check each row;
    // whole-table ones check the rows found afterwards (below), not inside
    // the index scans, where the planner would estimate the condition as
    // selective and could trade the HNSW index for an exact scan (see
    // RANKABLE).
    conditions.extend(models.gate(&stamp));
    if !matches!(query.scope, SearchScope::All) {
        conditions.push(row_model.clone());
    }
    // Containment prefilters the GIN index on `metadata` can answer, for
    // the exact branch of a filtered whole-table search (below).
    let mut prefilters: Vec<String> = Vec::new();
    for (key, value) in &query.metadata_filter {
        let k = bind(key.clone().into(), &mut values);
        let text = match value {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            Json::Null | Json::Array(_) | Json::Object(_) => None,
        };
        match text {
            Some(text) => {
                if matches!(query.scope, SearchScope::All) {
                    let forms: Vec<String> = text_forms(&text)
                        .into_iter()
                        .map(|form| {
                            let f = bind(form.into(), &mut values);
                            format!("metadata @> jsonb_build_object({k}::text, {f}::jsonb)")
                        })
                        .collect();
                    prefilters.push(format!("({})", forms.join(" OR ")));
                }
                let v = bind(text.into(), &mut values);
                conditions.push(format!("metadata->>({k}::text) = {v}::text"));
            }
            None => {
                let v = bind(value.clone().into(), &mut values);
                conditions.push(format!(
                    "metadata @> jsonb_build_object({k}::text, {v}::jsonb)"
                ));
            }
        }
    }
    // `k` (validated above) is written into the statement rather than bound:
    // with `LIMIT $n` PostgreSQL prices a generic plan for an unknown limit,
    // finds it dearer than a custom one and plans every execution again
    // (0.25-0.35 ms of a 4-5 ms whole-table search at 1M chunks); with a
    // literal limit the prepared statement's generic plan is as cheap and
    // is reused after five executions. One statement per `k` in sqlx's
    // per-connection cache.
    let k = query.k;
    let filter = format!("WHERE {}", conditions.join(" AND "));
    let rankable = format!("((embedding <=> $1) NOT IN (0, 1, 2, 'NaN') OR {RANKABLE})");
    let (op, hnsw_guard) = match query.scope {
        SearchScope::All => hnsw_search(query.k),
        _ => (Op::Plain, None),
    };
    let sql = match query.scope {
        // Materializing the scope keeps the planner from answering with the
        // HNSW index and filtering afterwards, which can miss results: scoped
        // searches are exact (the scope is a few dozen rows via the B-tree
        // expression indexes). The distance is computed once per row; the
        // costlier RANKABLE check only runs for the distances an unrankable
        // vector can produce (exactly 0, 1, 2 or NaN), so a normal row's
        // vector is read once. PostgreSQL's NaN equals itself, so `NOT IN`
        // catches it.
        // Staged chunks (migration 009, not yet moved into the HNSW index)
        // are part of the scope.
        SearchScope::User(_) | SearchScope::Resume { .. } => format!(
            "WITH scoped AS MATERIALIZED ( \
               SELECT id, text, metadata, embedding, embedding <=> $1 AS distance \
               FROM resume_chunks {filter} \
               UNION ALL \
               SELECT id, text, metadata, embedding, embedding <=> $1 AS distance \
               FROM resume_chunks_staged {filter}) \
             SELECT id, text, metadata::text AS metadata, 1 - distance AS score FROM scoped \
             WHERE distance NOT IN (0, 1, 2, 'NaN') OR {RANKABLE} \
             ORDER BY distance LIMIT {k}"
        ),
        // The HNSW index holds no NULL or zero-norm vectors, but it does
        // hold vectors whose single-precision norm over- or underflows; a
        // plan without it may meet any (and NaN scores are dropped below).
        // As above, RANKABLE only runs for the distances such a vector
        // produces, so each result's vector is read twice (the filter, the
        // score) instead of three times. Staged chunks have no vector index:
        // their top k is exact (an index scan of an empty or small table),
        // merged with the index's top k. The hnsw.* settings, when the call
        // needs no others, are set by the statement itself before its scans
        // start (one round trip; see `Settings::search_guard`).
        SearchScope::All if prefilters.is_empty() => format!(
            "SELECT id, text, metadata::text AS metadata, 1 - distance AS score FROM ( \
               (SELECT id, text, metadata, embedding <=> $1 AS distance FROM resume_chunks \
                {filter} AND {rankable} ORDER BY embedding <=> $1 LIMIT {k}) \
               UNION ALL \
               (SELECT id, text, metadata, embedding <=> $1 AS distance FROM resume_chunks_staged \
                {filter} AND {rankable} ORDER BY 4 LIMIT {k}) \
             ) hits {} ORDER BY distance LIMIT {k}",
            hnsw_guard
                .as_deref()
                .map_or(String::new(), |g| format!("WHERE {g}"))
        ),
        // With a metadata filter the plan depends on how many rows it
        // keeps, which only the data knows: a bounded count of the rows the
        // GIN index finds for the containment prefilter (at most
        // EXACT_FILTERED_ROWS + 1 are counted) decides, in the same
        // statement, between two branches gated by one-time filters. Few
        // rows: all of them are compared (exact, and fast: the HNSW graph
        // would be walked far to meet enough of them). Many: the HNSW
        // index with an iterative scan, as without a filter.
        SearchScope::All => {
            let exact_filter = format!("{filter} AND {}", prefilters.join(" AND "));
            format!(
                "WITH matched AS MATERIALIZED ( \
                   SELECT count(*) AS n FROM (SELECT 1 FROM resume_chunks {exact_filter} \
                                               LIMIT {cap}) m), \
                 few AS MATERIALIZED ( \
                   SELECT id, text, metadata, embedding, embedding <=> $1 AS distance \
                   FROM resume_chunks {exact_filter} AND (SELECT n FROM matched) <= {max}) \
                 SELECT id, text, metadata::text AS metadata, 1 - distance AS score FROM ( \
                   (SELECT id, text, metadata, distance FROM few \
                    WHERE distance NOT IN (0, 1, 2, 'NaN') OR {RANKABLE} \
                    ORDER BY distance LIMIT {k}) \
                   UNION ALL \
                   (SELECT id, text, metadata, embedding <=> $1 AS distance FROM resume_chunks \
                    {filter} AND (SELECT n FROM matched) > {max} AND {rankable} \
                    ORDER BY embedding <=> $1 LIMIT {k}) \
                   UNION ALL \
                   (SELECT id, text, metadata, embedding <=> $1 AS distance \
                    FROM resume_chunks_staged {filter} AND {rankable} ORDER BY 4 LIMIT {k}) \
                 ) hits {} ORDER BY distance LIMIT {k}",
                hnsw_guard
                    .as_deref()
                    .map_or(String::new(), |g| format!("WHERE {g}")),
                cap = EXACT_FILTERED_ROWS + 1,
                max = EXACT_FILTERED_ROWS,
            )
        }
    };
    let sql = match query.scope {
        SearchScope::All => format!(
            "SELECT id, text, metadata, score FROM ({sql}) found \
             WHERE {}",
            row_model.replace("metadata->", "metadata::jsonb->")
        ),
        _ => sql,
    };
    Ok((
        op,
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values),
    ))
}

/// A filtered whole-table search compares every matching chunk exactly
/// when at most this many match (measured in BENCHMARKS.md, "Filtered
/// whole-table search"), else it uses the HNSW index.
const EXACT_FILTERED_ROWS: usize = 10_000;

/// Every JSON value whose text form (`->>`) can be `text`: the string, and
/// the number or boolean it spells. A containment test on them finds a
/// superset of the rows the text rule matches (`3` also finds `3.0`), so
/// the rule itself is checked too.
fn text_forms(text: &str) -> Vec<Json> {
    let mut forms = vec![Json::String(text.to_owned())];
    if let Ok(n) = text.parse::<serde_json::Number>() {
        forms.push(Json::Number(n));
    }
    if let Ok(b) = text.parse::<bool>() {
        forms.push(Json::Bool(b));
    }
    forms
}

/// Checks every chunk of `set` before anything is sent: text (not blank,
/// bounded, no NUL) and metadata (no reserved key, bounded depth and size,
/// no NUL), naming the resume, the chunk and the key.
fn validate_chunks(set: &ResumeChunks<'_>, models: &ModelScope) -> Result<()> {
    for (i, chunk) in set.chunks.iter().enumerate() {
        let at = || format!("chunk {i} of resume {}", set.resume_id);
        CHUNK_TEXT.check(&chunk.text).map_err(|e| match e {
            Error::Validation { field, reason } => invalid(field, format!("{}: {reason}", at())),
            other => other,
        })?;
        for key in [METADATA_USER_ID, METADATA_RESUME_ID, MODEL_KEY] {
            if chunk.extra_metadata.contains_key(key) {
                return Err(invalid(
                    "metadata",
                    format!(
                        "{}: `{key}` is set by the library (from the resume, or the \
                         embedding's model); remove it",
                        at()
                    ),
                ));
            }
        }
        models.check(&chunk.embedding)?;
        check_metadata_map(&chunk.extra_metadata)
            .map_err(|why| invalid("metadata", format!("{}: {why}", at())))?;
    }
    Ok(())
}

/// Depth, NUL and size of a metadata map (chunk metadata or a filter).
fn check_metadata_map(map: &Map<String, Json>) -> std::result::Result<(), String> {
    use crate::validate::printable_key;
    for (key, value) in map {
        if key.contains('\0') {
            return Err(format!(
                "key `{}` contains NUL, which jsonb cannot store",
                printable_key(key)
            ));
        }
        match check_json(value, 1, MAX_METADATA_DEPTH) {
            None => {}
            Some(JsonProblem::TooDeep { path }) => {
                return Err(format!(
                    "`{}{path}` is nested more than {MAX_METADATA_DEPTH} levels deep (the \
                     metadata object counts as one); flatten it",
                    printable_key(key)
                ));
            }
            Some(JsonProblem::Nul { path }) => {
                return Err(format!(
                    "`{}{path}` contains NUL, which jsonb cannot store",
                    printable_key(key)
                ));
            }
        }
    }
    // Bounded depth: serializing cannot exhaust the stack.
    let size = serde_json::to_vec(map).map_or(usize::MAX, |v| v.len());
    if size > MAX_METADATA_BYTES {
        return Err(format!(
            "{size} bytes as JSON, over the {MAX_METADATA_BYTES}-byte limit; keep large data \
             elsewhere and reference it"
        ));
    }
    Ok(())
}

/// Decodes metadata read as text (`metadata::text`) without ever failing:
/// see [`METADATA_READ_DEPTH`].
fn decode_metadata(raw: Option<String>, chunk: Uuid) -> Option<Json> {
    let raw = raw?;
    if json_text_depth(&raw) <= METADATA_READ_DEPTH
        && let Ok(value) = serde_json::from_str(&raw)
    {
        return Some(value);
    }
    tracing::warn!(
        %chunk,
        "chunk metadata nested deeper than {METADATA_READ_DEPTH} levels: too-deep values are \
         returned as JSON text"
    );
    // Skipping a value (RawValue) does not recurse, whatever its depth.
    let top: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        match serde_json::from_str(&raw) {
            Ok(top) => top,
            Err(_) => return Some(Json::String(raw)),
        };
    let map = top
        .into_iter()
        .map(|(key, value)| {
            let text = value.get();
            let decoded = (json_text_depth(text) < METADATA_READ_DEPTH)
                .then(|| serde_json::from_str(text).ok())
                .flatten()
                .unwrap_or_else(|| Json::String(text.to_owned()));
            (key, decoded)
        })
        .collect();
    Some(Json::Object(map))
}

/// The header of PostgreSQL's binary `COPY` format.
/// Appends one `(id, text, metadata, embedding)` row.
fn encode_row(
    enc: &mut Encoder,
    user_id: Uuid,
    resume_id: Uuid,
    chunk: &NewChunk,
    id: Uuid,
) -> Result<()> {
    let mut metadata = chunk.extra_metadata.clone();
    metadata.insert(METADATA_USER_ID.into(), Json::String(user_id.to_string()));
    metadata.insert(
        METADATA_RESUME_ID.into(),
        Json::String(resume_id.to_string()),
    );
    metadata.insert(MODEL_KEY.into(), chunk.embedding.model().stamp());
    let metadata = serde_json::to_vec(&metadata).map_err(|e| Error::Validation {
        field: "metadata",
        reason: e.to_string(),
    })?;
    enc.row(4)
        .uuid(&id)
        .text(Some(&chunk.text))
        .jsonb(&metadata)
        .vector(chunk.embedding.as_slice());
    Ok(())
}

fn sqlx_err(e: sqlx::Error) -> Error {
    Error::from(DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(e))))
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    use super::*;

    #[test]
    fn text_forms_cover_every_json_value_with_that_text() {
        use serde_json::json;
        assert_eq!(text_forms("skills"), [json!("skills")]);
        assert_eq!(text_forms("3"), [json!("3"), json!(3)]);
        assert_eq!(text_forms("-2.5"), [json!("-2.5"), json!(-2.5)]);
        assert_eq!(text_forms("true"), [json!("true"), json!(true)]);
        assert_eq!(text_forms("03"), [json!("03")]);
    }

    /// The indexer of staged chunks and the replacements must take the same
    /// advisory lock per resume: the key computed in SQL is the Rust one,
    /// also for ids whose first byte makes it negative.
    #[tokio::test]
    async fn the_sql_resume_lock_key_is_the_rust_one() {
        let db = test_db::TestDatabase::new().await;
        for id in [
            Uuid::nil(),
            Uuid::max(),
            Uuid::from_u128(0x0123_4567_89ab_cdef_0000_0000_0000_0001),
            Uuid::from_u128(0xfedc_ba98_7654_3210_ffff_ffff_ffff_fffe),
            Uuid::new_v4(),
        ] {
            let row = db
                .conn()
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    format!(
                        "SELECT {RESUME_LOCK_KEY_SQL} AS k FROM (SELECT $1::uuid AS resume_id) r"
                    ),
                    [id.into()],
                ))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                row.try_get::<i64>("", "k").unwrap(),
                resume_lock_key(id),
                "{id}"
            );
        }
    }

    /// A whole-table search that sets its `hnsw.*` settings in its own
    /// statement must set them before pgvector begins the index scan: with
    /// `ef_search` 1 and no iterative scan, pgvector returns one candidate.
    #[tokio::test]
    async fn hnsw_settings_set_inside_the_statement_reach_the_index_scan() {
        let db = test_db::TestDatabase::new().await;
        db.conn()
            .execute_unprepared(
                "INSERT INTO resume_chunks (id, text, metadata, embedding) \
                 SELECT gen_random_uuid(), 'chunk ' || i, '{}'::jsonb, \
                        (SELECT array_agg(sin(i * 7.0 + d))::vector(768) \
                         FROM generate_series(1, 768) d) \
                 FROM generate_series(1, 200) i",
            )
            .await
            .unwrap();
        let model = crate::EmbeddingModel::gemini_embedding_001_768();
        let embedding =
            Embedding::new(&model, (1..=768).map(|d| (d as f32 * 0.01).sin()).collect()).unwrap();
        let query = SearchQuery::new(embedding, 10, SearchScope::All);
        let models = ModelScope {
            model,
            registry: false,
        };
        let settings = |statement: Vec<(String, String)>, ef: u32| Settings {
            statement,
            hnsw: vec![("hnsw.ef_search".into(), ef.to_string())],
            ef_auto: false,
            call_timeout: None,
            bulk_call_timeout: None,
        };
        // As `Route::hnsw_search` decides.
        let plan = |s: &Settings, k: u32| {
            if s.has_statement_settings() {
                (Op::HnswSearch { k }, None)
            } else {
                (Op::Plain, Some(s.search_guard(k)))
            }
        };
        for (ef, rows) in [(1, 1), (40, 10)] {
            let s = settings(Vec::new(), ef);
            let (op, statement) = search_statement(&query, &models, |k| plan(&s, k)).unwrap();
            assert_eq!(op, Op::Plain, "one statement, no transaction of its own");
            let tx = db.conn().begin().await.unwrap();
            // 200 rows: without this the planner would sort them exactly.
            tx.execute_unprepared("SET LOCAL enable_seqscan = off")
                .await
                .unwrap();
            let found = tx.query_all_raw(statement).await.unwrap();
            assert_eq!(found.len(), rows, "ef_search {ef}");
            tx.rollback().await.unwrap();
        }
        // With a setting that must precede the statement, the search runs in
        // a transaction after a settings statement instead.
        let s = settings(vec![("search_path".into(), "public".into())], 40);
        let (op, statement) = search_statement(&query, &models, |k| plan(&s, k)).unwrap();
        assert_eq!(op, Op::HnswSearch { k: 10 });
        assert!(!statement.sql.contains("set_config"), "{}", statement.sql);
    }
}
