//! Running the migrations: up, status, down step by step, fresh, refresh,
//! reset (and their refusal to destroy stored data unless forced),
//! idempotence and exact reversibility.

use migration::pgvector_check::create_extension;
use migration::safety::allow_data_loss;
use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use test_db::TestDatabase;

use crate::common::*;

#[tokio::test]
async fn up_from_empty_applies_every_migration_in_order() {
    let db = TestDatabase::empty().await;
    let conn = db.conn();
    assert!(tables(conn).await.is_empty());
    assert_eq!(
        Migrator::get_pending_migrations(conn).await.unwrap().len(),
        ALL.len()
    );

    Migrator::up(conn, None).await.unwrap();

    assert_eq!(applied(conn).await, *ALL);
    assert!(
        Migrator::get_pending_migrations(conn)
            .await
            .unwrap()
            .is_empty()
    );
    Migrator::status(conn).await.unwrap();
    assert_eq!(
        tables(conn).await,
        [
            "embedding_models",
            "legacy_ids",
            "reembed_jobs",
            "reembed_queue",
            "resume_chunks",
            "resume_chunks_staged",
            "resumes",
            "user_preferences",
            "user_profiles"
        ]
    );
    assert!(has_vector_extension(conn).await);
}

#[tokio::test]
async fn second_up_is_a_no_op() {
    let db = TestDatabase::empty().await;
    Migrator::up(db.conn(), None).await.unwrap();
    let before = schema_dump(db.url());
    Migrator::up(db.conn(), None).await.unwrap();
    assert_eq!(applied(db.conn()).await, *ALL);
    assert_same_schema(&schema_dump(db.url()), &before, "after a second up");
}

#[tokio::test]
async fn down_one_step_at_a_time_removes_exactly_each_migration() {
    let db = TestDatabase::empty().await;
    let conn = db.conn();
    let empty = schema_dump(db.url());
    Migrator::up(conn, None).await.unwrap();

    // 010 down: its three tables only.
    let tables_with_010 = tables(conn).await;
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..8]);
    assert_eq!(
        tables(conn).await,
        tables_with_010
            .into_iter()
            .filter(|t| !["embedding_models", "reembed_jobs", "reembed_queue"].contains(&t.as_str()))
            .collect::<Vec<_>>()
    );

    // 009 down: resume_chunks_staged and its indexes only; a staged chunk
    // is moved into resume_chunks, not lost.
    let with_009_indexes = indexes(conn).await;
    conn.execute_unprepared(
        "INSERT INTO user_profiles (id, firebase_uid) \
           VALUES ('11111111-1111-1111-1111-111111111111', 'ada'); \
         INSERT INTO resumes (id, user_id, title, file_name, file_size) \
           VALUES ('22222222-2222-2222-2222-222222222222', \
                   '11111111-1111-1111-1111-111111111111', 'cv', 'cv.pdf', 0); \
         INSERT INTO resume_chunks_staged (id, text, metadata, embedding) \
           VALUES ('33333333-3333-3333-3333-333333333333', 'staged', \
                   '{\"user_id\": \"11111111-1111-1111-1111-111111111111\", \
                     \"resume_id\": \"22222222-2222-2222-2222-222222222222\"}', \
                   array_fill(0.5, ARRAY[768])::vector)",
    )
    .await
    .unwrap();
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..7]);
    assert!(
        !tables(conn)
            .await
            .contains(&"resume_chunks_staged".to_owned())
    );
    assert_eq!(
        indexes(conn).await,
        with_009_indexes
            .into_iter()
            .filter(|i| !i.contains("resume_chunks_staged"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        strings(
            conn,
            "SELECT id::text || ' ' || text || ' ' || (embedding = array_fill(0.5, ARRAY[768])::vector)::text \
             FROM resume_chunks"
        )
        .await,
        ["33333333-3333-3333-3333-333333333333 staged true"]
    );
    conn.execute_unprepared("DELETE FROM user_profiles")
        .await
        .unwrap();

    // 008 down: the HNSW index's ef_construction back to pgvector's
    // default, nothing else.
    let hnsw = "idx_resume_chunks_embedding";
    let with_008 = index_definition(conn, hnsw).await;
    let indexes_with_008 = indexes(conn).await;
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..6]);
    assert!(
        with_008.ends_with("WITH (ef_construction='200')"),
        "{with_008}"
    );
    assert_eq!(
        index_definition(conn, hnsw).await,
        with_008.replace(" WITH (ef_construction='200')", "")
    );
    assert_eq!(indexes(conn).await, indexes_with_008);

    // 007 down: the id-lowercasing trigger and its function only.
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..5]);
    assert_eq!(
        functions(conn).await,
        [
            "delete_chunks_of_deleted_resumes",
            "delete_chunks_of_deleted_users",
            "set_updated_at"
        ]
    );

    // 005 down: legacy_ids, resumes.is_primary and its constraint.
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..4]);
    assert_eq!(tables(conn).await.len(), 4);
    assert!(
        !columns(conn, "resumes")
            .await
            .iter()
            .any(|c| c.starts_with("is_primary")),
        "is_primary must be gone"
    );

    // 004 down: the orphan-chunk triggers and their functions only.
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..3]);
    assert_eq!(functions(conn).await, ["set_updated_at"]);
    assert_eq!(tables(conn).await.len(), 4);

    // 003 down: the chunk table, its indexes and the extension it installed.
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..2]);
    assert_eq!(
        tables(conn).await,
        ["resumes", "user_preferences", "user_profiles"]
    );
    assert!(
        !indexes(conn)
            .await
            .iter()
            .any(|i| i.contains("resume_chunks")),
        "chunk indexes must be gone"
    );
    assert!(
        !has_vector_extension(conn).await,
        "003 installed vector, its down removes it"
    );

    // 002 down: only resumes.file_data (and its CHECK).
    Migrator::down(conn, Some(1)).await.unwrap();
    assert_eq!(applied(conn).await, ALL[..1]);
    assert!(
        !columns(conn, "resumes")
            .await
            .iter()
            .any(|c| c.starts_with("file_data")),
        "file_data must be gone"
    );
    assert_eq!(columns(conn, "resumes").await.len(), 9);

    // 001 down: everything else, trigger function included.
    Migrator::down(conn, Some(1)).await.unwrap();
    assert!(applied(conn).await.is_empty());
    assert!(tables(conn).await.is_empty());
    assert!(
        functions(conn).await.is_empty(),
        "set_updated_at must be gone"
    );

    // Nothing but sea-orm's own bookkeeping table is left.
    conn.execute_unprepared("DROP TABLE seaql_migrations")
        .await
        .unwrap();
    assert_same_schema(&schema_dump(db.url()), &empty, "after down all");
}

#[tokio::test]
async fn up_down_up_gives_an_identical_schema() {
    let db = TestDatabase::empty().await;
    let conn = db.conn();
    Migrator::up(conn, None).await.unwrap();
    let first = schema_dump(db.url());
    Migrator::down(conn, None).await.unwrap();
    Migrator::up(conn, None).await.unwrap();
    assert_same_schema(&schema_dump(db.url()), &first, "up, down, up");
}

#[tokio::test]
async fn down_leaves_a_vector_extension_installed_beforehand() {
    let db = TestDatabase::empty().await;
    let conn = db.conn();
    conn.execute_unprepared("CREATE EXTENSION vector")
        .await
        .unwrap();
    Migrator::up(conn, None).await.unwrap();
    Migrator::down(conn, None).await.unwrap();
    assert!(
        has_vector_extension(conn).await,
        "an administrator's extension stays"
    );
}

#[tokio::test]
async fn fresh_refresh_and_reset() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    let migrated = schema_dump(db.url());
    conn.execute_unprepared("INSERT INTO user_profiles (firebase_uid) VALUES ('uid-1')")
        .await
        .unwrap();

    // fresh: drop every table, then up again. With a profile stored it
    // refuses (it would destroy it) and changes nothing...
    let refused = Migrator::fresh(conn).await.unwrap_err().to_string();
    assert!(refused.contains("refusing to run `fresh`"), "{refused}");
    assert!(refused.contains("1 row(s) of user_profiles"), "{refused}");
    assert!(
        refused.contains("MOCKINTERVIEW_ALLOW_DATA_LOSS=1"),
        "{refused}"
    );
    assert_eq!(profile_count(conn).await, 1);
    // ...unless data loss is allowed (`--force` on the command line). Data
    // gone, schema identical.
    allow_data_loss(Migrator::fresh(conn)).await.unwrap();
    assert_eq!(applied(conn).await, *ALL);
    assert_eq!(profile_count(conn).await, 0);
    assert_same_schema(&schema_dump(db.url()), &migrated, "after fresh");

    // refresh: down all, then up again. m001's down would drop the profile:
    // refused before anything is rolled back, then forced.
    conn.execute_unprepared("INSERT INTO user_profiles (firebase_uid) VALUES ('uid-2')")
        .await
        .unwrap();
    let refused = Migrator::refresh(conn).await.unwrap_err().to_string();
    assert!(
        refused.contains("refusing to roll back m001_user_profiles"),
        "{refused}"
    );
    assert!(refused.contains("Nothing was changed"), "{refused}");
    assert_eq!(applied(conn).await, *ALL);
    assert_eq!(profile_count(conn).await, 1);
    allow_data_loss(Migrator::refresh(conn)).await.unwrap();
    assert_eq!(applied(conn).await, *ALL);
    assert_eq!(profile_count(conn).await, 0);
    assert_same_schema(&schema_dump(db.url()), &migrated, "after refresh");

    // reset: down all, and sea-orm drops its bookkeeping table too.
    Migrator::reset(conn).await.unwrap();
    assert!(tables(conn).await.is_empty());
    assert_eq!(
        strings(
            conn,
            "SELECT coalesce(to_regclass('seaql_migrations')::text, 'absent')"
        )
        .await,
        ["absent"]
    );
    assert_eq!(
        Migrator::get_pending_migrations(conn).await.unwrap().len(),
        ALL.len()
    );
}

#[tokio::test]
async fn missing_extension_error_says_how_to_install_it() {
    let db = TestDatabase::empty().await;
    // No server has this extension: the same code path as pgvector missing.
    let err = create_extension(db.conn(), "vector_not_installed_anywhere")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not available on this PostgreSQL server"),
        "{err}"
    );
    assert!(err.contains("pgvector"), "{err}");
    assert!(err.contains("pgvector/pgvector:pg16"), "{err}");
}

#[tokio::test]
async fn create_extension_without_privilege_names_the_role_and_the_fix() {
    let db = TestDatabase::empty().await;
    let conn = db.conn();
    let role = format!("{}_nopriv", db.name());
    conn.execute_unprepared(&format!(
        "CREATE ROLE \"{role}\" NOLOGIN; GRANT CREATE ON DATABASE \"{}\" TO \"{role}\"",
        db.name()
    ))
    .await
    .unwrap();
    let txn = sea_orm::TransactionTrait::begin(conn).await.unwrap();
    txn.execute_unprepared(&format!("SET LOCAL ROLE \"{role}\""))
        .await
        .unwrap();
    let err = create_extension(&txn, "vector")
        .await
        .unwrap_err()
        .to_string();
    txn.rollback().await.unwrap();
    conn.execute_unprepared(&format!(
        "REVOKE ALL ON DATABASE \"{}\" FROM \"{role}\"; DROP ROLE \"{role}\"",
        db.name()
    ))
    .await
    .unwrap();
    assert!(
        err.contains("permission denied to create extension"),
        "{err}"
    );
    assert!(err.contains(&role), "{err}");
    assert!(err.contains("superuser"), "{err}");
}

async fn profile_count(conn: &sea_orm::DatabaseConnection) -> usize {
    strings(conn, "SELECT count(*)::text FROM user_profiles").await[0]
        .parse()
        .unwrap()
}

/// The documentation's list of released migrations (docs/layout.md) is the
/// `Migrator`'s list: the names are checked against the code, so a new
/// migration cannot be left out of it.
#[test]
fn the_documented_migrations_are_the_migrators() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/layout.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let documented: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            let b = w.as_bytes();
            b.len() > 5 && b[0] == b'm' && b[1..4].iter().all(u8::is_ascii_digit) && b[4] == b'_'
        })
        .collect();
    assert_eq!(documented, *ALL, "{}", path.display());
}

/// The library's list (what it checks at connect, `schema::MIGRATIONS`) is
/// the `Migrator`'s list.
#[test]
fn the_librarys_migrations_are_the_migrators() {
    assert_eq!(mockinterview_db::schema::MIGRATIONS, ALL.as_slice());
}
