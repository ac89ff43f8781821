//! Ingests a resume (PDF stored in the database + text chunks with
//! embeddings) and runs semantic searches over it, then uploads the chunks
//! again as a staged upload moved into the index by a background indexer.
//!
//! ```bash
//! scripts/db-up                                  # local PostgreSQL + pgvector
//! cargo run --example ingest_and_search          # built-in sample resume
//! cargo run --example ingest_and_search -- path/to/resume.pdf "query text"
//! ```
//!
//! A real application gets embeddings from a model (text-embedding-004, 768
//! dimensions). To run offline, this example uses a feature-hashing
//! "embedder": every word adds weight to a few of the 768 dimensions, so
//! chunks sharing words with the query score higher.

use mockinterview_db::chunks::{self, Indexing, ResumeChunks, SearchQuery, SearchScope};
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::resumes::{self, NewResume, PdfUpload};
use mockinterview_db::staged;
use mockinterview_db::{DbConfig, Embedding, NewChunk};

const SAMPLE_RESUME: &str = "\
Ada Lovelace, backend engineer.
Experience: built a Rust data layer on PostgreSQL and pgvector for semantic search.
Designed SeaORM migrations with reversible up and down steps.
Ran axum services on tokio in production with tracing and metrics.
Skills: Rust, SQL, PostgreSQL, vector search, HNSW indexes, Kubernetes.
Education: mathematics, analytical engines.";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let pdf_path = args.next();
    let query_text = args
        .next()
        .unwrap_or_else(|| "Rust PostgreSQL vector search".into());

    let config = DbConfig::from_env()?;
    // At start-up, as the template of SeaORM's `migration` crate does:
    // serialized with other instances (also through a transaction-mode
    // pooler), in the configured schema; with nothing pending it only
    // reads, so it also works as an application role that may not change
    // the schema.
    let owner = sea_orm::Database::connect(config.url.as_str()).await?;
    let run = migration::lock::RunOptions {
        schema: config.schema.clone(),
        settings: Vec::new(),
    };
    migration::lock::up_locked_with(&owner, &run, None).await?;
    owner.close().await?;
    let db = config.connect().await?;
    let ready = mockinterview_db::health::require_pgvector(&db).await?;
    println!(
        "connected: PostgreSQL {}, pgvector {}",
        ready.server_version,
        ready.pgvector_version.as_deref().unwrap_or("?")
    );

    let user = profiles::upsert_profile(
        &db,
        &FirebaseUser {
            uid: format!("example-{}", uuid::Uuid::new_v4()),
            email: Some("ada@example.com".into()),
            display_name: Some("Ada Lovelace".into()),
            photo_url: None,
        },
    )
    .await?;

    let (pdf, text) = match &pdf_path {
        Some(path) => (std::fs::read(path)?, SAMPLE_RESUME.to_owned()),
        None => (minimal_pdf(SAMPLE_RESUME), SAMPLE_RESUME.to_owned()),
    };
    let resume = resumes::create_resume(
        &db,
        NewResume {
            user_id: user.id,
            title: "Backend engineer".into(),
            file_name: "resume.pdf".into(),
            pdf: PdfUpload::inline(pdf)?,
            content: Some(text.clone()),
        },
    )
    .await?;
    println!(
        "stored resume {} ({} bytes in the database)",
        resume.id, resume.file_size
    );

    let new_chunks = text
        .lines()
        .enumerate()
        .map(|(i, line)| Ok(NewChunk::new(line, embed(line)?).with_metadata("line", i as i64)))
        .collect::<mockinterview_db::Result<Vec<_>>>()?;
    let set = ResumeChunks {
        user_id: user.id,
        resume_id: resume.id,
        chunks: &new_chunks,
    };
    let ids = chunks::replace_chunks(&db, &[set], Indexing::Now)
        .await?
        .remove(0);
    println!("stored {} chunks", ids.len());

    let query = SearchQuery::new(embed(&query_text)?, 3, SearchScope::User(user.id));
    println!("\ntop 3 for {query_text:?}:");
    for hit in chunks::search_chunks(&db, &query).await? {
        println!("  {:.3}  {}", hit.score, hit.text.unwrap_or_default());
    }

    // The same upload with deferred indexing: at a million chunks HNSW
    // insertion dominates an upload (BENCHMARKS.md); `Indexing::Deferred`
    // answers after the COPY, the chunks are searchable at once, and a
    // background `StagedIndexer` moves them into the HNSW index.
    let indexer = staged::StagedIndexer::spawn(db.clone(), staged::IndexerOptions::default());
    let staged_ids = chunks::replace_chunks(&db, &[set], Indexing::Deferred)
        .await?
        .remove(0);
    let hits = chunks::search_chunks(&db, &query).await?;
    println!(
        "\nstaged {} chunks (replacing the {} above); searchable at once: {} hits",
        staged_ids.len(),
        ids.len(),
        hits.len()
    );
    for _ in 0..200 {
        if staged::staged_backlog(&db).await?.chunks == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("indexed in the background: {:?}", indexer.stats());
    indexer.shutdown().await;

    // Remove everything the example created (profile, resume, chunks).
    profiles::delete_profile(&db, user.id).await?;
    Ok(())
}

/// Feature-hashing embedder: deterministic, offline, 768 dimensions.
fn embed(text: &str) -> mockinterview_db::Result<Embedding> {
    let mut v = vec![0.0_f32; entity::EMBEDDING_DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let word = word.to_lowercase();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for k in 0..4 {
            let idx = ((h >> (k * 16)) as usize) % v.len();
            v[idx] += if (h >> (k + 60)) & 1 == 0 { 1.0 } else { -1.0 };
        }
    }
    if v.iter().all(|x| *x == 0.0) {
        v[0] = 1.0; // no usable words: any non-zero vector
    }
    Embedding::new(
        &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
        v,
    )
}

/// A tiny valid PDF whose only page says `text`'s first line.
fn minimal_pdf(text: &str) -> Vec<u8> {
    let line = text.lines().next().unwrap_or("");
    format!(
        "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n\
         2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n\
         3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R>>endobj\n\
         4 0 obj<</Length {}>>stream\nBT /F1 12 Tf 72 720 Td ({line}) Tj ET\nendstream endobj\n\
         trailer<</Root 1 0 R>>\n%%EOF\n",
        line.len() + 30
    )
    .into_bytes()
}
