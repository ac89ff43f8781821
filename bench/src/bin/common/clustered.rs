//! What the churn soak, the filtered-search, layouts and re-embedding
//! benchmarks share: clustered
//! vectors (near one of 300 topic centres) and a corpus loaded the fast way
//! (HNSW index built after the load). Included by both binaries with
//! `#[path]`.

use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks};
use mockinterview_db::profiles::{FirebaseUser, upsert_profile};
use mockinterview_db::resumes::{NewResume, PdfUpload, create_resume};
use mockinterview_db::{Db, Embedding, NewChunk};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Chunks per resume.
pub const PER_RESUME: usize = 50;
const TOPICS: u64 = 300;

/// A unit vector of `dims` values near one of [`TOPICS`] topic centres
/// (deterministic).
pub fn unit_vector(seed: u64, dims: usize) -> Vec<f32> {
    let rng = |mut x: u64| {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }
    };
    let mut centre = rng((seed % TOPICS).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut noise = rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let v: Vec<f32> = (0..dims).map(|_| centre() + 0.6 * noise()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// [`unit_vector`] of 768 values as an embedding of the serving model.
pub fn vector(seed: u64) -> Embedding {
    Embedding::new(
        &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
        unit_vector(seed, 768),
    )
    .expect("a unit vector")
}

/// Loads `chunks` chunks, [`PER_RESUME`] per resume of users `<prefix>-<n>`
/// (`chunk(n)` makes chunk `n`), the HNSW index dropped during the load and
/// built after it at `ef_construction` 200. Returns each resume's owner
/// and id.
pub async fn load(
    db: &Db,
    raw: &DatabaseConnection,
    chunks: usize,
    prefix: &str,
    chunk: impl Fn(usize) -> NewChunk,
) -> Result<Vec<(Uuid, Uuid)>, BoxError> {
    raw.execute_unprepared("DROP INDEX idx_resume_chunks_embedding")
        .await?;
    let mut owners = Vec::new();
    for r in 0..chunks.div_ceil(PER_RESUME) {
        let user = upsert_profile(
            db,
            &FirebaseUser {
                uid: format!("{prefix}-{r}"),
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
                pdf: PdfUpload::path(format!("/uploads/{r}.pdf"), 1)?,
                content: None,
            },
        )
        .await?;
        owners.push((user.id, resume.id));
    }
    for (b, batch) in owners.chunks(200).enumerate() {
        let sets: Vec<Vec<NewChunk>> = (0..batch.len())
            .map(|i| {
                let resume = b * 200 + i;
                (0..PER_RESUME)
                    .map(|j| chunk(resume * PER_RESUME + j))
                    .collect()
            })
            .collect();
        let sets: Vec<ResumeChunks<'_>> = batch
            .iter()
            .zip(&sets)
            .map(|((user_id, resume_id), chunks)| ResumeChunks {
                user_id: *user_id,
                resume_id: *resume_id,
                chunks,
            })
            .collect();
        replace_chunks(db, &sets, Indexing::Now).await?;
    }
    raw.execute_unprepared(
        "SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 1; \
         CREATE INDEX idx_resume_chunks_embedding ON resume_chunks \
         USING hnsw (embedding vector_cosine_ops) WITH (ef_construction = 200); \
         RESET maintenance_work_mem; RESET max_parallel_maintenance_workers; \
         ANALYZE resume_chunks",
    )
    .await?;
    Ok(owners)
}
