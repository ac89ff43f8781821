//! Resume chunks: atomic bulk replacement and semantic search.
//!
//! `resume_chunks` has LangChain `PGVectorStore`'s layout (`id`, `text`,
//! `metadata`, `embedding`) because other services share it. Every chunk
//! written here carries `user_id` and `resume_id` in `metadata` as strings,
//! the way those services read it, plus any extra keys the caller supplies.

use entity::resume_chunks::{METADATA_RESUME_ID, METADATA_USER_ID};
use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, RuntimeErr, Statement, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::store::{Op, Store};

/// Largest `k` a search accepts.
pub const MAX_TOP_K: u32 = 1000;

/// A chunk to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChunk {
    /// The chunk's text (non-empty).
    pub text: String,
    /// Its validated embedding.
    pub embedding: Embedding,
    /// Extra metadata keys (`page`, `section`, ...). `user_id` and
    /// `resume_id` are set by the library and may not appear here.
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
    /// Only chunks whose metadata has these keys with these values
    /// (JSON containment, `metadata @> filter`: equality for scalars).
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

    /// Adds an equality filter on a metadata key.
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

/// One resume's new chunk set, for [`replace_chunks_bulk`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResumeChunks<'a> {
    /// Owner of the resume.
    pub user_id: Uuid,
    /// The resume whose chunks are replaced.
    pub resume_id: Uuid,
    /// Its new chunks (may be empty: the resume then has none).
    pub chunks: &'a [NewChunk],
}

/// Replaces all chunks of a resume with `chunks`, atomically: in one
/// transaction the resume row is locked (concurrent replacements of the same
/// resume queue up), its old chunks are deleted and the new ones are loaded
/// with a binary `COPY` (one round trip for the whole batch, whatever its
/// size). Readers see either the old or the new set, never a mix.
///
/// Takes the pool rather than any connection because `COPY` needs a raw
/// connection; it runs its own transaction. For many resumes at once (first
/// load, re-embedding everything) use [`replace_chunks_bulk`].
///
/// Returns the new chunk ids, in input order.
///
/// # Errors
/// [`Error::Validation`] for an empty text or a reserved metadata key
/// (nothing is written), [`Error::NotFound`] when the user has no such resume.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid, resume_id: uuid::Uuid,
/// #            vectors: Vec<Vec<f32>>) -> mockinterview_db::Result<()> {
/// use mockinterview_db::{chunks::replace_resume_chunks, Embedding, NewChunk};
/// let new: Vec<NewChunk> = vectors
///     .into_iter()
///     .enumerate()
///     .map(|(i, v)| Ok(NewChunk::new(format!("chunk {i}"), Embedding::new(v)?).with_metadata("page", 1)))
///     .collect::<mockinterview_db::Result<_>>()?;
/// let ids = replace_resume_chunks(db, user_id, resume_id, &new).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, chunks), fields(chunks = chunks.len()))]
pub async fn replace_resume_chunks<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
    chunks: &[NewChunk],
) -> Result<Vec<Uuid>> {
    let set = ResumeChunks {
        user_id,
        resume_id,
        chunks,
    };
    Ok(replace_chunks_bulk(db, &[set]).await?.remove(0))
}

/// Replaces the chunks of many resumes in one transaction: every resume row
/// is locked (in id order, so concurrent calls cannot deadlock), all their
/// old chunks are deleted with one statement, and all new chunks are loaded
/// with one binary `COPY` stream. Use it for first loads and re-embedding;
/// batches of a few thousand resumes keep the transaction reasonably short.
///
/// Returns the new chunk ids per resume, in input order.
///
/// # Errors
/// [`Error::Validation`] for an empty text, a reserved metadata key or a
/// resume listed twice (nothing is written); [`Error::NotFound`] when a
/// resume does not exist or belongs to another user (nothing is written).
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid,
/// #            a: uuid::Uuid, b: uuid::Uuid, ca: Vec<mockinterview_db::NewChunk>,
/// #            cb: Vec<mockinterview_db::NewChunk>) -> mockinterview_db::Result<()> {
/// use mockinterview_db::chunks::{replace_chunks_bulk, ResumeChunks};
/// let ids = replace_chunks_bulk(db, &[
///     ResumeChunks { user_id, resume_id: a, chunks: &ca },
///     ResumeChunks { user_id, resume_id: b, chunks: &cb },
/// ]).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, sets), fields(resumes = sets.len()))]
pub async fn replace_chunks_bulk<S: Store + ?Sized>(
    db: &S,
    sets: &[ResumeChunks<'_>],
) -> Result<Vec<Vec<Uuid>>> {
    // Validate everything before touching the database.
    let mut seen = std::collections::HashSet::with_capacity(sets.len());
    for set in sets {
        if !seen.insert(set.resume_id) {
            return Err(Error::Validation {
                field: "resume_id",
                reason: format!("resume {} is listed twice", set.resume_id),
            });
        }
        validate_chunks(set.chunks)?;
    }
    let ids: Vec<Vec<Uuid>> = sets
        .iter()
        .map(|s| s.chunks.iter().map(|_| Uuid::new_v4()).collect())
        .collect();
    let resume_ids: Vec<Uuid> = sets.iter().map(|s| s.resume_id).collect();

    let route = db.route();
    let pool = route.primary_pool().ok_or_else(|| {
        Error::Config(
            "replace_resume_chunks / replace_chunks_bulk load with binary COPY in a transaction \
             of their own, so they cannot run inside a caller's transaction: pass the Db (or \
             the pool)"
                .into(),
        )
    })?;
    let settings = route.settings().for_op(Op::Transaction);
    route
        .bounded(async {
            let mut tx =
                pool.get_postgres_connection_pool()
                    .begin()
                    .await
                    .map_err(|e| match e {
                        // As SeaORM classifies a failure to get a connection.
                        sqlx::Error::PoolTimedOut => {
                            Error::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout))
                        }
                        e => {
                            Error::from(DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(e))))
                        }
                    })?;
            apply_settings_sqlx(&mut tx, &settings).await?;
            copy_sets(&mut tx, sets, &resume_ids, &ids).await?;
            tx.commit().await.map_err(sqlx_err)?;
            route.after_write().await
        })
        .await?;
    Ok(ids)
}

/// Inside `tx`: locks the resumes, deletes their chunks and loads the new
/// ones with one binary `COPY` stream.
async fn copy_sets(
    tx: &mut sqlx::PgConnection,
    sets: &[ResumeChunks<'_>],
    resume_ids: &[Uuid],
    ids: &[Vec<Uuid>],
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
    if sets.iter().all(|s| s.chunks.is_empty()) {
        return Ok(());
    }
    let mut copy = tx
        .copy_in_raw(
            "COPY resume_chunks (id, text, metadata, embedding) FROM STDIN (FORMAT binary)",
        )
        .await
        .map_err(sqlx_err)?;
    // Stream in pieces of about 1 MiB: bounded memory, and the server
    // starts inserting while the rest is encoded.
    let mut buf = copy_header();
    for (set, set_ids) in sets.iter().zip(ids) {
        for (chunk, id) in set.chunks.iter().zip(set_ids) {
            encode_row(&mut buf, set.user_id, set.resume_id, chunk, *id)?;
            if buf.len() >= COPY_SEND_BYTES {
                copy.send(std::mem::take(&mut buf))
                    .await
                    .map_err(sqlx_err)?;
            }
        }
    }
    buf.extend_from_slice(&(-1_i16).to_be_bytes()); // trailer
    copy.send(buf).await.map_err(sqlx_err)?;
    copy.finish().await.map_err(sqlx_err)?;
    Ok(())
}

/// The advisory-lock key serializing replacements of one resume: its first
/// 8 bytes (a collision only makes two replacements take turns).
fn resume_lock_key(resume_id: Uuid) -> i64 {
    let b = resume_id.as_bytes();
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// `set_config(name, value, true)` for each setting, on a raw connection.
async fn apply_settings_sqlx(
    tx: &mut sqlx::PgConnection,
    values: &[(String, String)],
) -> Result<()> {
    for (name, value) in values {
        sqlx::query("SELECT set_config($1, $2, true)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err)?;
    }
    Ok(())
}

/// Size of the pieces a `COPY` is sent in.
const COPY_SEND_BYTES: usize = 1 << 20;

/// The resume's chunks, as stored, in no particular order.
///
/// # Errors
/// Database failures only.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// let stored = mockinterview_db::chunks::resume_chunks(db, user_id, resume_id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn resume_chunks<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
) -> Result<Vec<entity::resume_chunks::Model>> {
    use entity::resume_chunks::Entity;
    use sea_orm::{EntityTrait, QueryFilter, sea_query::Expr};
    db.route()
        .read(Op::Plain, |c| async move {
            Ok(Entity::find()
                .filter(Expr::cust_with_values(
                    "metadata->>'user_id' = $1 AND metadata->>'resume_id' = $2",
                    [user_id.to_string(), resume_id.to_string()],
                ))
                .all(&c)
                .await?)
        })
        .await
}

/// Finds the `k` chunks most similar (cosine) to the query embedding.
///
/// Scoped searches ([`SearchScope::User`], [`SearchScope::Resume`]) compare
/// every chunk of the scope and return the exact top `k`, however large the
/// table is. [`SearchScope::All`] uses the HNSW index (approximate; tune
/// recall with `hnsw.ef_search`, see [`crate::DbConfig::hnsw_ef_search`]).
/// All values, metadata keys included, are bound as parameters.
///
/// # Errors
/// [`Error::Validation`] for `k` out of range.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid, query: Vec<f32>) -> mockinterview_db::Result<()> {
/// use mockinterview_db::{chunks::search_chunks, Embedding, SearchQuery, SearchScope};
/// let q = SearchQuery::new(Embedding::new(query)?, 5, SearchScope::User(user_id))
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
    if query.k == 0 || query.k > MAX_TOP_K {
        return Err(Error::Validation {
            field: "k",
            reason: format!(
                "{} is out of range; ask for 1 to {MAX_TOP_K} results",
                query.k
            ),
        });
    }
    let mut values: Vec<Value> = vec![query.embedding.to_vector().into()];
    let mut conditions: Vec<String> = Vec::new();
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
    if !query.metadata_filter.is_empty() {
        let p = bind(
            Json::Object(query.metadata_filter.clone()).into(),
            &mut values,
        );
        conditions.push(format!("metadata @> {p}::jsonb"));
    }
    let k = bind(i64::from(query.k).into(), &mut values);
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = match query.scope {
        // Materializing the scope keeps the planner from answering with the
        // HNSW index and filtering afterwards, which can miss results: scoped
        // searches are exact (the scope is a few dozen rows via the B-tree
        // expression indexes).
        SearchScope::User(_) | SearchScope::Resume { .. } => format!(
            "WITH scoped AS MATERIALIZED ( \
               SELECT id, text, metadata, embedding <=> $1 AS distance \
               FROM resume_chunks {filter}) \
             SELECT id, text, metadata, 1 - distance AS score FROM scoped \
             ORDER BY distance LIMIT {k}"
        ),
        SearchScope::All => format!(
            "SELECT id, text, metadata, 1 - (embedding <=> $1) AS score \
             FROM resume_chunks {filter} ORDER BY embedding <=> $1 LIMIT {k}"
        ),
    };
    let op = match query.scope {
        SearchScope::All => Op::HnswSearch,
        _ => Op::Plain,
    };
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    db.route()
        .read(op, |c| {
            let statement = statement.clone();
            async move {
                c.query_all_raw(statement)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(ChunkMatch {
                            id: r.try_get("", "id")?,
                            text: r.try_get("", "text")?,
                            metadata: r.try_get("", "metadata")?,
                            score: r.try_get("", "score")?,
                        })
                    })
                    .collect()
            }
        })
        .await
}

/// Checks what the database would not: non-empty text, no reserved keys.
fn validate_chunks(chunks: &[NewChunk]) -> Result<()> {
    for (i, chunk) in chunks.iter().enumerate() {
        if chunk.text.trim().is_empty() {
            return Err(Error::Validation {
                field: "text",
                reason: format!("chunk {i} has no text"),
            });
        }
        for key in [METADATA_USER_ID, METADATA_RESUME_ID] {
            if chunk.extra_metadata.contains_key(key) {
                return Err(Error::Validation {
                    field: "metadata",
                    reason: format!(
                        "chunk {i}: `{key}` is set by the library from the resume; remove it"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The header of PostgreSQL's binary `COPY` format.
fn copy_header() -> Vec<u8> {
    let mut buf = Vec::with_capacity(COPY_SEND_BYTES + 8192);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0_i32.to_be_bytes()); // flags
    buf.extend_from_slice(&0_i32.to_be_bytes()); // header extension length
    buf
}

/// Appends one `(id, text, metadata, embedding)` row in binary `COPY` format.
fn encode_row(
    buf: &mut Vec<u8>,
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
    let metadata = serde_json::to_vec(&metadata).map_err(|e| Error::Validation {
        field: "metadata",
        reason: e.to_string(),
    })?;
    buf.extend_from_slice(&4_i16.to_be_bytes()); // field count
    field(buf, id.as_bytes());
    field(buf, chunk.text.as_bytes());
    // jsonb binary format: version byte 1, then the JSON text.
    buf.extend_from_slice(&len_i32(metadata.len() + 1).to_be_bytes());
    buf.push(1);
    buf.extend_from_slice(&metadata);
    // vector binary format: int16 dimensions, int16 unused, float4 values.
    let values = chunk.embedding.as_slice();
    buf.extend_from_slice(&len_i32(4 + values.len() * 4).to_be_bytes());
    buf.extend_from_slice(&(values.len() as i16).to_be_bytes()); // 768, validated
    buf.extend_from_slice(&0_i16.to_be_bytes());
    for v in values {
        buf.extend_from_slice(&v.to_be_bytes());
    }
    Ok(())
}

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn field(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&len_i32(bytes.len()).to_be_bytes());
    buf.extend_from_slice(bytes);
}

fn sqlx_err(e: sqlx::Error) -> Error {
    Error::from(DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(e))))
}
