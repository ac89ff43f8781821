//! Helpers for the library tests: users, resumes and embeddings.

use migration::MigratorTrait;
use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks};
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
        replace(db, u.id, r.id, &chunks(1, n)).await.unwrap();
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
    Embedding::new(
        &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
        values,
    )
    .unwrap()
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
pub async fn strings(db: &impl ConnectionTrait, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text column"))
        .collect()
}

/// A migrated database of its own (`test-db`) and a handle to it with the
/// default configuration: what the library's functions run on.
pub struct TestDb {
    db: mockinterview_db::Db,
    database: test_db::TestDatabase,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::with(test_db::TestDatabase::new().await, |_| {}).await
    }

    /// A handle to `database`, configured by `tune`.
    pub async fn with(
        database: test_db::TestDatabase,
        tune: impl FnOnce(&mut mockinterview_db::DbConfig),
    ) -> Self {
        let mut config = mockinterview_db::DbConfig::new(database.url());
        tune(&mut config);
        let db = config
            .connect()
            .await
            .expect("connect to the test database");
        Self { db, database }
    }

    /// The handle.
    pub fn conn(&self) -> &mockinterview_db::Db {
        &self.db
    }

    /// A bare SeaORM connection, for set-up SQL outside the library.
    pub fn raw(&self) -> &DatabaseConnection {
        self.database.conn()
    }
}

impl std::ops::Deref for TestDb {
    type Target = test_db::TestDatabase;
    fn deref(&self) -> &test_db::TestDatabase {
        &self.database
    }
}

/// Replaces the chunks of one resume, indexed now.
pub async fn replace<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
    chunks: &[NewChunk],
) -> mockinterview_db::Result<Vec<Uuid>> {
    write(db, user_id, resume_id, chunks, Indexing::Now).await
}

/// Replaces the chunks of one resume, staged for the indexer.
pub async fn stage<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
    chunks: &[NewChunk],
) -> mockinterview_db::Result<Vec<Uuid>> {
    write(db, user_id, resume_id, chunks, Indexing::Deferred).await
}

async fn write<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    resume_id: Uuid,
    chunks: &[NewChunk],
    indexing: Indexing,
) -> mockinterview_db::Result<Vec<Uuid>> {
    let set = ResumeChunks {
        user_id,
        resume_id,
        chunks,
    };
    Ok(replace_chunks(db, &[set], indexing).await?.remove(0))
}

/// PgBouncer >= 1.21, transaction mode.
pub const POOLER_PORT: u16 = 6432;

/// The test database's URL through the transaction-mode pooler. Fails
/// (never skips) when the pooler is not running.
pub async fn pooled(db: &test_db::TestDatabase) -> String {
    if tokio::net::TcpStream::connect(("127.0.0.1", POOLER_PORT))
        .await
        .is_err()
    {
        panic!(
            "no PgBouncer listens on 127.0.0.1:{POOLER_PORT}: start it with \
             `scripts/pooler-up` (or run everything with `scripts/test`)"
        );
    }
    db.db_url().with_port(POOLER_PORT).as_str().to_owned()
}

/// PgBouncer >= 1.21, session mode.
pub const SESSION_POOLER_PORT: u16 = 6433;

/// The test database's URL through the session-mode pooler. Fails (never
/// skips) when the pooler is not running.
pub async fn session_pooled(db: &test_db::TestDatabase) -> String {
    if tokio::net::TcpStream::connect(("127.0.0.1", SESSION_POOLER_PORT))
        .await
        .is_err()
    {
        panic!(
            "no PgBouncer listens on 127.0.0.1:{SESSION_POOLER_PORT}: start it with \
             `scripts/pooler-up` (or run everything with `scripts/test`)"
        );
    }
    db.db_url()
        .with_port(SESSION_POOLER_PORT)
        .as_str()
        .to_owned()
}

/// A database whose tables live in schema `app`, with pgvector installed in
/// `public` beforehand (as a superuser would on a managed server).
pub async fn app_schema_database() -> test_db::TestDatabase {
    let db = test_db::TestDatabase::empty().await;
    db.conn()
        .execute_unprepared("CREATE EXTENSION vector SCHEMA public; CREATE SCHEMA app")
        .await
        .unwrap();
    let mut options = sea_orm::ConnectOptions::new(db.url());
    options.set_schema_search_path("app,public");
    let migrator = sea_orm::Database::connect(options).await.unwrap();
    migration::Migrator::up(&migrator, None).await.unwrap();
    migrator.close().await.unwrap();
    let public_tables = strings(
        db.conn(),
        "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(public_tables, ["0"], "every table is in app");
    db
}
