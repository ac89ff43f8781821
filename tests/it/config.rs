//! Connecting and the readiness check.

use crate::support::TestDb;
use mockinterview_db::health::effective_settings;
use mockinterview_db::health::{readiness, require_pgvector};
use mockinterview_db::{DbConfig, Error};
use sea_orm::ConnectionTrait;
use test_db::TestDatabase;

#[tokio::test]
async fn readiness_reports_server_and_pgvector_versions() {
    let db = TestDb::new().await;
    let r = readiness(db.conn()).await.unwrap();
    assert!(
        r.server_version.starts_with(|c: char| c.is_ascii_digit()),
        "{r:?}"
    );
    assert!(
        r.pgvector_version
            .as_deref()
            .is_some_and(|v| v.starts_with("0.")),
        "{r:?}"
    );
    assert!(r.is_ready());
}

#[tokio::test]
async fn readiness_without_the_extension_says_what_to_do() {
    // An unmigrated database is refused at connect (crate::schema)...
    let empty = TestDatabase::empty().await;
    let err = DbConfig::new(empty.url()).connect().await.unwrap_err();
    assert!(matches!(err, Error::SchemaBehind { .. }), "{err:?}");
    // ...so the extension can only go missing later.
    let db = TestDb::new().await;
    db.raw()
        .execute_unprepared("DROP EXTENSION vector CASCADE")
        .await
        .unwrap();
    let r = readiness(db.conn()).await.unwrap();
    assert_eq!(r.pgvector_version, None);
    assert!(
        r.pgvector_available_version.is_some(),
        "the server has pgvector files"
    );
    let err = require_pgvector(db.conn()).await.unwrap_err();
    assert!(matches!(err, Error::PgvectorMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("apply the migrations"), "{err}");
}

#[tokio::test]
async fn settings_apply_to_data_functions_and_raw_sql_alike() {
    let db = TestDb::new().await;
    let mut config = DbConfig::new(db.url());
    config.hnsw_ef_search = Some(123);
    config.statement_timeout = Some(std::time::Duration::from_millis(4500));
    let handle = config.connect().await.unwrap();
    let inside = effective_settings(&handle).await.unwrap();
    assert_eq!(inside.hnsw_ef_search.as_deref(), Some("123"));
    assert_eq!(inside.hnsw_iterative_scan.as_deref(), Some("strict_order"));
    assert_eq!(inside.statement_timeout, "4500ms");
    // Raw SQL through the handle runs with the same settings.
    let row = handle
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('hnsw.ef_search', true) AS ef, \
                    current_setting('statement_timeout') AS st, \
                    current_setting('application_name') AS app",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<Option<String>>("", "ef").unwrap().as_deref(),
        Some("123")
    );
    assert_eq!(row.try_get::<String>("", "st").unwrap(), "4500ms");
    assert_eq!(
        row.try_get::<String>("", "app").unwrap(),
        "mockinterview-db"
    );
    // A handle without configuration gets the library's defaults.
    let plain = effective_settings(db.conn()).await.unwrap();
    assert_eq!(plain.hnsw_ef_search.as_deref(), Some("100"));
    assert_eq!(plain.statement_timeout, "0");
}

#[tokio::test]
async fn ef_search_follows_the_table_size_unless_fixed() {
    use mockinterview_db::tuning::ef_search_for;
    let db = TestDb::new().await;
    let handle = DbConfig::new(db.url()).connect().await.unwrap();
    // A new table (reltuples -1: never analyzed) gets the base value.
    let small = effective_settings(&handle).await.unwrap();
    assert_eq!(small.hnsw_ef_search.as_deref(), Some("100"));
    // What ANALYZE would record for ten million chunks (the test role is a
    // superuser, as scripts/db-up makes it).
    db.conn()
        .execute_unprepared(
            "UPDATE pg_class SET reltuples = 10000000 WHERE oid = 'resume_chunks'::regclass",
        )
        .await
        .unwrap();
    let large = effective_settings(&handle).await.unwrap();
    let expected = ef_search_for(10_000_000, 10);
    assert!(expected > 100);
    assert_eq!(large.hnsw_ef_search, Some(expected.to_string()));
    // The server's computation (one statement, no extra round trip) agrees
    // with the Rust policy at every size.
    for rows in [
        0_u64,
        99_999,
        100_001,
        300_000,
        1_000_000,
        1_000_001,
        2_500_000,
        10_000_000,
        1_000_000_000_000,
    ] {
        db.conn()
            .execute_unprepared(&format!(
                "UPDATE pg_class SET reltuples = {rows} WHERE oid = 'resume_chunks'::regclass"
            ))
            .await
            .unwrap();
        let s = effective_settings(&handle).await.unwrap();
        assert_eq!(
            s.hnsw_ef_search,
            Some(ef_search_for(rows, 10).to_string()),
            "{rows} rows"
        );
    }
    db.conn()
        .execute_unprepared(
            "UPDATE pg_class SET reltuples = 10000000 WHERE oid = 'resume_chunks'::regclass",
        )
        .await
        .unwrap();
    // The same on a plain connection, and a search runs with it.
    let plain = effective_settings(db.conn()).await.unwrap();
    assert_eq!(plain.hnsw_ef_search, Some(expected.to_string()));
    let q = mockinterview_db::SearchQuery::new(
        mockinterview_db::Embedding::new(
            &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
            vec![0.5; 768],
        )
        .unwrap(),
        10,
        mockinterview_db::SearchScope::All,
    );
    assert!(
        mockinterview_db::chunks::search_chunks(&handle, &q)
            .await
            .unwrap()
            .is_empty()
    );
    // A fixed value wins.
    let mut fixed = DbConfig::new(db.url());
    fixed.hnsw_ef_search = Some(40);
    let fixed = fixed.connect().await.unwrap();
    let s = effective_settings(&fixed).await.unwrap();
    assert_eq!(s.hnsw_ef_search.as_deref(), Some("40"));
}

#[tokio::test]
async fn unreachable_server_fails_fast_with_target_and_hint() {
    let mut config = DbConfig::new("postgres://u:secret@127.0.0.1:1/nowhere");
    config.connect_timeout = std::time::Duration::from_secs(2);
    config.acquire_timeout = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let err = config.connect().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:1/nowhere") && !msg.contains("secret"),
        "{msg}"
    );
    assert!(msg.contains("doctor") && !msg.contains("scripts/"), "{msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn missing_or_foreign_database_url_is_a_config_error() {
    let err = DbConfig::new("mysql://x@y/z");
    // connect() checks the URL first; from_env() checks it too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(matches!(rt.block_on(err.connect()), Err(Error::Config(_))));
}
