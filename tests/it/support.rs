//! Helpers for the library tests: users, resumes and embeddings.

use mockinterview_db::profiles::{self, FirebaseUser, Profile};
use mockinterview_db::resumes::{self, NewResume, PdfUpload, ResumeSummary};
use mockinterview_db::{Embedding, NewChunk, Store};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use uuid::Uuid;

/// A small but valid PDF.
pub fn pdf(extra: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n1 0 obj <<>> endobj\n".to_vec();
    bytes.extend(std::iter::repeat_n(b' ', extra));
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

pub async fn user<S: Store + ?Sized>(db: &S, uid: &str) -> Profile {
    profiles::upsert_profile(
        db,
        &FirebaseUser {
            uid: uid.into(),
            email: Some(format!("{uid}@example.com")),
            display_name: Some(format!("User {uid}")),
            photo_url: None,
        },
    )
    .await
    .unwrap()
}

pub async fn resume<S: Store + ?Sized>(db: &S, user_id: Uuid, title: &str) -> ResumeSummary {
    resumes::create_resume(
        db,
        NewResume {
            user_id,
            title: title.into(),
            file_name: format!("{title}.pdf"),
            pdf: PdfUpload::inline(pdf(10)).unwrap(),
            content: Some(format!("{title} text")),
        },
    )
    .await
    .unwrap()
}

/// A user "ada" with one resume "cv" and `n` chunks on it.
pub async fn ada_with_chunks<S: Store + ?Sized>(db: &S, n: usize) -> (Profile, ResumeSummary) {
    let u = user(db, "ada").await;
    let r = resume(db, u.id, "cv").await;
    if n > 0 {
        mockinterview_db::chunks::replace_resume_chunks(db, u.id, r.id, &chunks(1, n))
            .await
            .unwrap();
    }
    (u, r)
}

/// Deterministic pseudo-random unit-ish vector (xorshift), never zero.
pub fn embedding(seed: u64) -> Embedding {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values = (0..768)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Embedding::new(values).unwrap()
}

pub fn chunks(seed: u64, n: usize) -> Vec<NewChunk> {
    (0..n)
        .map(|i| {
            NewChunk::new(
                format!("chunk {seed}/{i}"),
                embedding(seed * 1000 + i as u64),
            )
            .with_metadata("page", (i / 4) as i64)
            .with_metadata("section", if i % 2 == 0 { "experience" } else { "skills" })
        })
        .collect()
}

/// Cosine similarity computed in Rust, as ground truth.
pub fn cosine(a: &Embedding, b: &Embedding) -> f64 {
    let (a, b) = (a.as_slice(), b.as_slice());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Runs `sql` and returns the first column of every row as text.
pub async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text column"))
        .collect()
}
