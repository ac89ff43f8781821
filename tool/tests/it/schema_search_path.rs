//! A schema other than `public`, with pgvector living in `public` (created
//! beforehand by a superuser, as the README's role split does): migrations,
//! `verify`, `status` and the library's migrator, directly and through the
//! transaction-mode pooler; a `search_path` given in the URL.

use crate::common::*;
use migration::lock::{self, RunOptions};
use migration::{Migrator, MigratorTrait};
use migration_tool::verify;
use pgconn::DbUrl;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use test_db::TestDatabase;

/// An empty database with pgvector in `public` and an empty schema `app`.
async fn with_pgvector_in_public() -> TestDatabase {
    let db = TestDatabase::empty().await;
    db.conn()
        .execute_unprepared("CREATE EXTENSION vector SCHEMA public; CREATE SCHEMA app")
        .await
        .unwrap();
    db
}

async fn tables_in<C: ConnectionTrait>(db: &C, schema: &str) -> Vec<String> {
    strings(
        db,
        &format!(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = '{schema}' \
             AND tablename <> 'seaql_migrations' ORDER BY 1"
        ),
    )
    .await
}

const TABLES: [&str; 9] = [
    "embedding_models",
    "legacy_ids",
    "reembed_jobs",
    "reembed_queue",
    "resume_chunks",
    "resume_chunks_staged",
    "resumes",
    "user_preferences",
    "user_profiles",
];

async fn binary_end_to_end(route: impl Fn(&DbUrl) -> DbUrl) {
    let db = with_pgvector_in_public().await;
    let url = route(db.db_url());
    let up = ok(url.as_str(), &["-s", "app", "up"]);
    assert!(
        up.contains("Migration 'm003_create_vector_store' has been applied"),
        "{up}"
    );
    assert_eq!(tables_in(db.conn(), "app").await, TABLES);
    assert!(tables_in(db.conn(), "public").await.is_empty());
    assert_eq!(
        strings(
            db.conn(),
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n \
             ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        )
        .await,
        ["public"]
    );
    assert_eq!(
        strings(
            db.conn(),
            "SELECT n.nspname || '.' || format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE a.attrelid = 'app.resume_chunks'::regclass AND a.attname = 'embedding'"
        )
        .await,
        ["public.vector(768)"],
        "the column uses public's type"
    );
    for schema in ["app", "app,public"] {
        let report = ok(url.as_str(), &["-s", schema, "verify"]);
        assert!(report.contains("(schema app)"), "{schema}: {report}");
        assert!(
            report.contains("OK: the database matches the migrations"),
            "{schema}: {report}"
        );
        // No warning about the schema (the server's pgvector may have
        // known bugs: those warnings are the server's, not the schema's).
        assert!(
            report
                .lines()
                .filter(|l| l.contains("warning"))
                .all(|l| l.contains("pgvector 0.")),
            "{schema}: {report}"
        );
    }
    let status = ok(url.as_str(), &["-s", "app", "status"]);
    assert_eq!(status.matches("Applied").count(), ALL.len(), "{status}");
    // Down and up again in the same schema.
    ok(url.as_str(), &["-s", "app", "down", "-n", "2"]);
    ok(url.as_str(), &["-s", "app", "up"]);
    ok(url.as_str(), &["-s", "app", "verify"]);
}

#[tokio::test]
async fn a_non_public_schema_with_pgvector_in_public_works_directly() {
    binary_end_to_end(DbUrl::clone).await;
}

#[tokio::test]
async fn a_non_public_schema_with_pgvector_in_public_works_through_the_pooler() {
    binary_end_to_end(through_tx_pooler).await;
}

#[tokio::test]
async fn a_search_path_in_the_url_is_honoured_and_s_wins_over_it() {
    let db = with_pgvector_in_public().await;
    for url in [db.db_url().clone(), through_tx_pooler(db.db_url())] {
        let in_app = format!("{}?options=-c%20search_path%3Dapp", url.as_str());
        ok(&in_app, &["up"]);
        assert_eq!(tables_in(db.conn(), "app").await, TABLES, "{url}");
        assert!(tables_in(db.conn(), "public").await.is_empty(), "{url}");
        let report = ok(&in_app, &["verify"]);
        assert!(report.contains("(schema app)"), "{report}");
        // -s wins over the URL's search_path.
        let elsewhere = format!("{}?options=-c%20search_path%3Dnowhere", url.as_str());
        let status = ok(&elsewhere, &["-s", "app", "status"]);
        assert_eq!(status.matches("Applied").count(), ALL.len(), "{status}");
        ok(&in_app, &["reset"]);
    }
}

#[tokio::test]
async fn the_library_migrates_into_a_non_public_schema_directly_and_through_the_pooler() {
    let db = with_pgvector_in_public().await;
    // Directly: a pool whose sessions have search_path = app (sea-orm runs
    // `SET search_path` on each new connection).
    let mut options = ConnectOptions::new(db.url().to_owned());
    options.set_schema_search_path("app".to_owned());
    let direct = Database::connect(options).await.unwrap();
    Migrator::up(&direct, None).await.unwrap();
    assert_eq!(tables_in(db.conn(), "app").await, TABLES);
    let report = verify::verify(&direct).await.unwrap();
    assert!(report.ok, "{report}");
    migration::ensure_schema_current(&direct).await.unwrap();
    direct.close().await.unwrap();

    // Through the pooler, session settings do not hold: RunOptions sets
    // the schema inside the run's transaction.
    db.conn()
        .execute_unprepared("CREATE SCHEMA app2")
        .await
        .unwrap();
    let pooled = Database::connect(through_tx_pooler(db.db_url()).as_str())
        .await
        .unwrap();
    let app2 = RunOptions::in_schema("app2");
    lock::up_locked_with(&pooled, &app2, None).await.unwrap();
    assert_eq!(tables_in(db.conn(), "app2").await, TABLES);
    let txn = app2.begin_read_only(&pooled).await.unwrap();
    let report = verify::verify(&txn).await.unwrap();
    assert!(report.ok, "{report}");
    migration::ensure_schema_current(&txn).await.unwrap();
    txn.commit().await.unwrap();
    // Nothing pending: no write, nothing locked.
    lock::up_locked_with(&pooled, &app2, None).await.unwrap();
    pooled.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_schema_is_named() {
    let db = TestDatabase::empty().await;
    let err = fails(db.url(), &["-s", "nowhere", "up"]);
    assert!(
        err.contains("schema \"nowhere\" does not exist") && err.contains("CREATE SCHEMA"),
        "{err}"
    );
    assert!(applied(db.conn()).await.is_empty());
}
