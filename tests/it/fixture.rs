//! The test fixture's reuse of databases (`test-db`, "Reuse"): nothing a
//! test wrote or set reaches the next test, and a database changed beyond
//! its rows is dropped, not reused. Tests run in parallel and share the
//! process's pool, so each checks the database it released by name and by
//! markers of its own.

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use test_db::TestDatabase;

async fn exists(name: &str) -> bool {
    let admin = Database::connect(pgconn::DbUrl::from_env().unwrap().as_str())
        .await
        .unwrap();
    let found = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS one FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .unwrap()
        .is_some();
    admin.close().await.unwrap();
    found
}

async fn count(url: &str, sql: &str) -> i64 {
    let conn = Database::connect(url).await.unwrap();
    let n = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    conn.close().await.unwrap();
    n
}

fn marker() -> String {
    format!("fixture-marker-{}", uuid::Uuid::new_v4())
}

/// Rows are gone when the database is handed out again; the migrations'
/// record stays.
#[tokio::test]
async fn a_reused_database_has_no_rows_of_the_previous_test() {
    let uid = marker();
    let db = TestDatabase::new().await;
    let (name, url) = (db.name().to_owned(), db.url().to_owned());
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO user_profiles (id, firebase_uid, email) \
             VALUES (gen_random_uuid(), '{uid}', 'a@example.com')"
        ))
        .await
        .unwrap();
    drop(db);
    assert!(exists(&name).await, "only rows changed: kept for reuse");
    assert_eq!(
        count(
            &url,
            &format!("SELECT count(*) FROM user_profiles WHERE firebase_uid = '{uid}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(&url, "SELECT count(*) FROM seaql_migrations").await,
        migration::migration_names().len() as i64
    );
}

/// A role setting for the database, a new table, or planner statistics
/// make the database unfit for reuse: it is dropped.
#[tokio::test]
async fn a_database_changed_beyond_its_rows_is_dropped() {
    for change in [
        "ALTER ROLE CURRENT_USER IN DATABASE \"{db}\" SET statement_timeout = '1234ms'",
        "ALTER DATABASE \"{db}\" SET work_mem = '7MB'",
        "CREATE TABLE fixture_extra (id int)",
        "CREATE SCHEMA fixture_extra",
        "ANALYZE resume_chunks",
        "ALTER INDEX idx_resume_chunks_embedding SET (ef_construction = 64)",
        "GRANT SELECT ON user_profiles TO PUBLIC",
        "ALTER TABLE user_profiles ENABLE ROW LEVEL SECURITY",
        "CREATE INDEX fixture_extra ON user_profiles (email)",
    ] {
        let db = TestDatabase::new().await;
        let name = db.name().to_owned();
        if change.starts_with("ANALYZE") {
            db.conn()
                .execute_unprepared(
                    "INSERT INTO resume_chunks (id, text, metadata) \
                     SELECT gen_random_uuid(), 'x', '{}'::jsonb FROM generate_series(1, 10)",
                )
                .await
                .unwrap();
        }
        db.conn()
            .execute_unprepared(&change.replace("{db}", &name))
            .await
            .unwrap();
        drop(db);
        assert!(!exists(&name).await, "{change}: dropped, not reused");
    }
}

/// The guard also releases the database when the test panics.
#[tokio::test]
async fn the_guard_releases_the_database_after_a_panic() {
    let uid = marker();
    let (name, url) = {
        let (tx, rx) = std::sync::mpsc::channel();
        let uid = uid.clone();
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let db = TestDatabase::new().await;
                    tx.send((db.name().to_owned(), db.url().to_owned()))
                        .unwrap();
                    db.conn()
                        .execute_unprepared(&format!(
                            "INSERT INTO user_profiles (id, firebase_uid, email) \
                             VALUES (gen_random_uuid(), '{uid}', 'a@example.com')"
                        ))
                        .await
                        .unwrap();
                    panic!("the test fails while holding its database");
                })
        })
        .join();
        assert!(outcome.is_err(), "the thread panicked");
        rx.recv().unwrap()
    };
    if exists(&name).await {
        assert_eq!(
            count(
                &url,
                &format!("SELECT count(*) FROM user_profiles WHERE firebase_uid = '{uid}'")
            )
            .await,
            0,
            "emptied for reuse"
        );
    }
}

/// `TestDatabase::fresh` never hands out a database another test used.
#[tokio::test]
async fn fresh_gives_a_database_nobody_used() {
    let used = TestDatabase::new().await;
    let name = used.name().to_owned();
    drop(used);
    let fresh = TestDatabase::fresh().await;
    assert_ne!(fresh.name(), name);
    assert_eq!(
        count(fresh.url(), "SELECT count(*) FROM user_profiles").await,
        0
    );
}
