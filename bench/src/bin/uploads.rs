//! `mockinterview-bench-uploads`: chunk uploads and scoped searches through
//! the library, as an application runs them. The same file is built twice
//! by `bench/outside-crate.sh`: here, inside the workspace, and as the
//! `main.rs` of a crate outside the workspace that depends on the library
//! by path (its own `Cargo.lock`, crates.io's sqlx), so that one run shows
//! whether an application gets the workspace's speed. It therefore uses
//! only the library, `migration`, `sea-orm` and `tokio`.
//!
//! `mockinterview-bench-uploads <label> <database> [resumes]` creates
//! `<database>` on the `DATABASE_URL` server, migrates it, drops the HNSW
//! index (so the figures measure the client and the connection, not graph
//! insertion), uploads `resumes` resumes of 50 chunks (one
//! `replace_chunks` call each, `Indexing::Now`), runs 500 scoped searches
//! and prints one tab-separated line: label, chunks/s, upload p50 ms per
//! resume, search p50 ms. It drops the database at the end.

use std::time::{Duration, Instant};

use migration::MigratorTrait;
use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks, search_chunks};
use mockinterview_db::profiles::{FirebaseUser, upsert_profile};
use mockinterview_db::resumes::{NewResume, PdfUpload, create_resume};
use mockinterview_db::{DbConfig, Embedding, NewChunk, SearchQuery, SearchScope};
use sea_orm::ConnectionTrait;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CHUNKS_PER_RESUME: usize = 50;
const SEARCHES: usize = 500;

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base.rfind('/').map_or(base.len(), |i| i + 1);
    let mut out = format!("{}{database}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A deterministic vector (xorshift), never zero.
fn vector(seed: u64) -> Result<Embedding, BoxError> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values = (0..768)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Ok(Embedding::new(
        &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
        values,
    )?)
}

fn p50(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(label), Some(database)) = (args.next(), args.next()) else {
        return Err("usage: mockinterview-bench-uploads <label> <database> [resumes]".into());
    };
    let resumes: usize = args.next().map_or(Ok(300), |n| n.parse())?;
    let admin_url = std::env::var("DATABASE_URL")?;
    let url = with_database(&admin_url, &database);

    let admin = sea_orm::Database::connect(admin_url.as_str()).await?;
    admin
        .execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{database}\""))
        .await?;
    let owner = sea_orm::Database::connect(url.as_str()).await?;
    migration::Migrator::up(&owner, None).await?;
    owner
        .execute_unprepared("DROP INDEX idx_resume_chunks_embedding")
        .await?;
    owner.close().await?;

    let db = DbConfig::new(url.as_str()).connect().await?;
    let mut owners = Vec::with_capacity(resumes);
    for i in 0..resumes {
        let user = upsert_profile(
            &db,
            &FirebaseUser {
                uid: format!("uploads-{i}"),
                ..Default::default()
            },
        )
        .await?;
        let resume = create_resume(
            &db,
            NewResume {
                user_id: user.id,
                title: format!("CV {i}"),
                file_name: "cv.pdf".into(),
                pdf: PdfUpload::path(format!("/uploads/{i}.pdf"), 1)?,
                content: None,
            },
        )
        .await?;
        owners.push((user.id, resume.id));
    }

    let mut uploads = Vec::with_capacity(resumes);
    let started = Instant::now();
    for (i, (user_id, resume_id)) in owners.iter().enumerate() {
        let chunks = (0..CHUNKS_PER_RESUME)
            .map(|j| {
                let seed = (i * CHUNKS_PER_RESUME + j) as u64;
                Ok(NewChunk::new(format!("chunk {i}/{j}"), vector(seed)?))
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        let set = ResumeChunks {
            user_id: *user_id,
            resume_id: *resume_id,
            chunks: &chunks,
        };
        let t = Instant::now();
        replace_chunks(&db, &[set], Indexing::Now).await?;
        uploads.push(t.elapsed());
    }
    let upload_secs = started.elapsed().as_secs_f64();

    let mut searches = Vec::with_capacity(SEARCHES);
    for i in 0..SEARCHES {
        let (user_id, _) = owners[i % owners.len()];
        let query = SearchQuery::new(vector(1_000_000 + i as u64)?, 5, SearchScope::User(user_id));
        let t = Instant::now();
        search_chunks(&db, &query).await?;
        searches.push(t.elapsed());
    }
    db.close().await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
        .await?;

    println!(
        "{label}\t{:.0}\t{:.2}\t{:.3}",
        (resumes * CHUNKS_PER_RESUME) as f64 / upload_secs,
        p50(uploads),
        p50(searches)
    );
    Ok(())
}
