//! Production guard rails of the migration binary and library, against a
//! real server: the advisory lock under concurrent starts, `verify`,
//! `up --dry-run`, `lock_timeout`, the destructive-rollback guard and the
//! actionable connection and pgvector errors.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use migration::lock;
use migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use test_db::TestDatabase;

// ---------------------------------------------------------------- lock --

#[tokio::test]
async fn concurrent_ups_on_an_empty_database_apply_each_migration_once() {
    let db = TestDatabase::empty().await;
    const PROCESSES: usize = 4;
    // Started back to back, as instances of a deployment starting together;
    // the lock is held until all of them queue, so that they really run
    // into each other however slowly they start.
    let held = hold_migration_lock(db.conn()).await;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            bin()
                .arg("up")
                .env("DATABASE_URL", db.url())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn the migration binary")
        })
        .collect();
    wait_for_lock_waiters(db.conn(), PROCESSES as i64).await;
    held.commit().await.unwrap();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let t = text(&out);
            assert!(out.status.success(), "a concurrent `up` failed:\n{t}");
            t
        })
        .collect();
    let all = outputs.join("\n----\n");

    for m in ALL.iter() {
        assert_eq!(
            all.matches(&format!("Migration '{m}' has been applied"))
                .count(),
            1,
            "{m} must be applied exactly once:\n{all}"
        );
    }
    assert_eq!(applied(db.conn()).await, *ALL);
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("waiting for another migrator (pid ")),
        "at least one process waited:\n{all}"
    );
    // Each migration is its own locked transaction: the processes may share
    // the work, but each one finds what is pending again under the lock.
    // Same schema as a database migrated alone.
    let reference = TestDatabase::new().await;
    assert_eq!(schema_dump(db.url()), schema_dump(reference.url()));
    ok(db.url(), &["verify"]);
}

#[tokio::test]
async fn a_waiting_migrator_names_the_lock_holder_and_proceeds_after_release() {
    let db = TestDatabase::empty().await;
    // The lock, held by "another instance" in the middle of its run.
    let held = db.conn().begin().await.unwrap();
    held.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({})",
        lock::MIGRATION_LOCK_KEY
    ))
    .await
    .unwrap();
    let holder = lock::lock_holder(db.conn())
        .await
        .unwrap()
        .expect("the lock is held by the dedicated session");

    // A statement_timeout (a role default on managed services; here from
    // the URL) shorter than the wait does not cancel the waiting migrator.
    let child = bin()
        .arg("up")
        .env(
            "DATABASE_URL",
            format!("{}?options=-c%20statement_timeout%3D2s", db.url()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the binary queues on the advisory lock.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(
        db.conn(),
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "the binary never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        applied(db.conn()).await.is_empty(),
        "nothing ran while locked"
    );
    held.commit().await.unwrap();

    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("waiting for another migrator (pid {}", holder.pid)),
        "{t}"
    );
    assert_eq!(applied(db.conn()).await, *ALL);
}

#[tokio::test]
async fn up_locked_serializes_application_instances() {
    let db = TestDatabase::empty().await;
    // Three "instances", each with its own pool, migrating at start-up.
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Database::connect(db.url()).await.unwrap());
    }
    let (a, b, c) = tokio::join!(
        lock::up_locked(&instances[0], None),
        lock::up_locked(&instances[1], None),
        lock::up_locked(&instances[2], None),
    );
    for r in [a, b, c] {
        r.unwrap();
    }
    assert_eq!(applied(db.conn()).await, *ALL);
    assert!(
        lock::lock_holder(db.conn()).await.unwrap().is_none(),
        "released"
    );
    for conn in instances {
        conn.close().await.unwrap();
    }
}

// -------------------------------------------------------------- verify --

#[tokio::test]
async fn verify_passes_on_a_migrated_database_and_prints_sizes() {
    let db = TestDatabase::new().await;
    let report = ok(db.url(), &["verify"]);
    for line in [
        "pgvector 0.",
        &format!("migrations: {} applied, 0 pending, 0 unknown", ALL.len()),
        "tables: 9/9 as expected",
        "indexes: 22/22 as expected",
        "triggers: 6/6 as expected",
        "Table sizes:",
        "public.resume_chunks",
        "public.user_profiles",
        "OK: the database matches the migrations",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }

    let out = run(db.url(), &["verify", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["ok"], true);
    assert_eq!(json["problems"], 0);
    assert!(json["pgvector"]["installed_version"].is_string());
    assert_eq!(
        json["migrations"]["applied"].as_array().unwrap().len(),
        ALL.len()
    );
    let sizes = json["table_sizes"].as_array().unwrap();
    assert_eq!(
        sizes.len(),
        10,
        "nine tables and seaql_migrations: {sizes:?}"
    );
    assert!(sizes.iter().all(|s| s["bytes"].as_i64().unwrap() > 0));
    let embedding = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "resume_chunks.embedding")
        .expect("the embedding column is checked");
    assert_eq!(embedding["status"], "ok");
    assert_eq!(embedding["actual"], "vector(768)");
}

#[tokio::test]
async fn verify_reports_every_difference_and_fails() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    // m010, m009, m008, m007, m005 and m004 rolled back: their objects
    // are pending.
    ok(db.url(), &["down", "-n", "6"]);
    for sql in [
        "DROP INDEX idx_resume_chunks_embedding",
        "DROP INDEX idx_resume_chunks_user_id",
        "CREATE INDEX idx_resume_chunks_user_id ON resume_chunks ((metadata->>'resume_id'))",
        "ALTER TABLE resume_chunks ALTER COLUMN embedding TYPE vector(3)",
        "ALTER TABLE resume_chunks ADD COLUMN extra text",
        "ALTER TABLE user_profiles DROP CONSTRAINT user_profiles_firebase_uid_check",
        "DROP TRIGGER trg_resumes_updated_at ON resumes",
        "CREATE TABLE langchain_notes (id int)",
        "INSERT INTO seaql_migrations VALUES ('m099_from_the_future', 0)",
    ] {
        conn.execute_unprepared(sql).await.unwrap();
    }

    let report = fails(db.url(), &["verify"]);
    for line in [
        "pending: m004_delete_orphan_chunks",
        "pending: m005_legacy_import",
        "pending: m008_hnsw_ef_construction",
        "pending: m009_staged_chunks",
        "pending: m010_embedding_models",
        "missing table legacy_ids",
        "missing table resume_chunks_staged",
        "missing table embedding_models",
        "unknown: m099_from_the_future",
        "missing index idx_resume_chunks_embedding",
        "different index idx_resume_chunks_user_id",
        "different column resume_chunks.embedding: expected vector(768), found vector(3)",
        "different table resume_chunks",
        "missing constraint user_profiles.user_profiles_firebase_uid_check",
        "missing trigger resumes.trg_resumes_updated_at",
        "missing trigger resumes.trg_resumes_delete_chunks",
        "missing function delete_chunks_of_deleted_users()",
        "warning: table langchain_notes is not created by the migrations",
        "FAILED:",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }

    let out = run(db.url(), &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["ok"], false);
    let problems: Vec<String> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "missing" || c["status"] == "different")
        .map(|c| format!("{} {} {}", c["status"], c["kind"], c["name"]))
        .collect();
    assert_eq!(
        problems.len() + 7, // plus six pending and one unknown migration
        json["problems"].as_u64().unwrap() as usize,
        "{problems:?}"
    );
    // The extra column makes the table's column list differ.
    assert!(
        problems.contains(&r#""different" "table" "resume_chunks""#.to_owned()),
        "{problems:?}"
    );
    assert_eq!(json["migrations"]["unknown"][0], "m099_from_the_future");
}

#[tokio::test]
async fn verify_says_when_pgvector_is_missing() {
    let db = TestDatabase::empty().await;
    let report = fails(db.url(), &["verify"]);
    assert!(
        report.contains("pgvector is not installed in this database"),
        "{report}"
    );
    assert!(
        report.contains(&format!("migrations: 0 applied, {} pending", ALL.len())),
        "{report}"
    );
    assert!(report.contains("missing table resume_chunks"), "{report}");
    // verify never writes: no bookkeeping table appears.
    assert!(applied(db.conn()).await.is_empty());
    assert_eq!(
        strings(
            db.conn(),
            "SELECT coalesce(to_regclass('seaql_migrations')::text, 'absent')"
        )
        .await,
        ["absent"]
    );
}

// ------------------------------------------------------------- dry run --

#[tokio::test]
async fn dry_run_on_an_empty_database_reports_everything_and_changes_nothing() {
    let db = TestDatabase::empty().await;
    let before = schema_dump(db.url());

    let report = ok(db.url(), &["up", "--dry-run"]);
    for line in [
        &format!("Dry run: {} migration(s) would be applied:", ALL.len()),
        "  m001_user_profiles",
        "  m004_delete_orphan_chunks",
        "  m005_legacy_import",
        "+ table legacy_ids",
        "+ column resumes.is_primary: boolean NOT NULL DEFAULT false",
        "+ extension vector",
        "+ table user_profiles",
        "+ table resume_chunks",
        "+ column resumes.file_data: bytea",
        "+ column resume_chunks.embedding: vector(768)",
        "+ constraint resumes.fk_resumes_user_id: FOREIGN KEY (user_id) REFERENCES user_profiles(id) ON DELETE CASCADE",
        "+ index idx_resume_chunks_embedding: CREATE INDEX idx_resume_chunks_embedding ON resume_chunks USING hnsw (embedding vector_cosine_ops)",
        "+ index idx_user_profiles_firebase_uid",
        "+ trigger resumes.trg_resumes_updated_at",
        "+ trigger user_profiles.trg_user_profiles_delete_chunks",
        "+ function set_updated_at()",
        "Rolled back: nothing was changed.",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
    assert!(
        !report.contains("has been applied"),
        "no misleading progress lines:\n{report}"
    );

    assert_eq!(schema_dump(db.url()), before, "dry run changed the schema");
    assert_eq!(
        strings(
            db.conn(),
            "SELECT coalesce(to_regclass('seaql_migrations')::text, 'absent')"
        )
        .await,
        ["absent"]
    );
    assert!(tables(db.conn()).await.is_empty());
    assert_eq!(
        count(
            db.conn(),
            "SELECT count(*) FROM pg_extension WHERE extname = 'vector'"
        )
        .await,
        0
    );
    // The real run afterwards applies everything.
    ok(db.url(), &["up"]);
    assert_eq!(applied(db.conn()).await, *ALL);
}

#[tokio::test]
async fn dry_run_of_part_of_the_migrations_leaves_bookkeeping_and_data_alone() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    let back_to_m002 = (ALL.len() - 2).to_string();
    ok(db.url(), &["down", "-n", &back_to_m002]); // m003 is next
    conn.execute_unprepared("INSERT INTO user_profiles (firebase_uid) VALUES ('uid-1')")
        .await
        .unwrap();
    let before = schema_dump(db.url());
    let rows_before = strings(
        conn,
        "SELECT version || applied_at FROM seaql_migrations ORDER BY 1",
    )
    .await;

    let out = run(db.url(), &["up", "--dry-run", "-n", "1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(
        json["would_apply"],
        serde_json::json!(["m003_create_vector_store"])
    );
    assert_eq!(json["rolled_back"], true);
    let changes: Vec<String> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["action"], c["kind"], c["name"]))
        .collect();
    assert!(
        changes.contains(&r#""added" "table" "resume_chunks""#.to_owned()),
        "{changes:?}"
    );
    assert!(
        changes.contains(&r#""added" "extension" "vector""#.to_owned()),
        "{changes:?}"
    );
    assert!(
        !changes
            .iter()
            .any(|c| c.contains("trg_resumes_delete_chunks")),
        "-n 1 stops before m004: {changes:?}"
    );

    assert_eq!(schema_dump(db.url()), before);
    assert_eq!(
        strings(
            conn,
            "SELECT version || applied_at FROM seaql_migrations ORDER BY 1"
        )
        .await,
        rows_before
    );
    assert_eq!(count(conn, "SELECT count(*) FROM user_profiles").await, 1);

    // Nothing pending: says so.
    ok(db.url(), &["up"]);
    let none = ok(db.url(), &["up", "--dry-run"]);
    assert!(
        none.contains("no pending migrations; nothing would change"),
        "{none}"
    );
}

// -------------------------------------------------------- lock_timeout --

#[tokio::test]
async fn a_blocked_migration_gives_up_after_lock_timeout_and_says_what_to_do() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    ok(db.url(), &["down", "-n", &(ALL.len() - 1).to_string()]); // back to m001: m002 alters resumes next

    // A long transaction elsewhere holds a lock on resumes (a plain SELECT's
    // lock is enough to block ALTER TABLE).
    let blocker = conn.begin().await.unwrap();
    let blocker_pid = strings(&blocker, "SELECT pg_backend_pid()::text").await[0].clone();
    blocker
        .execute_unprepared("LOCK TABLE resumes IN ACCESS SHARE MODE")
        .await
        .unwrap();

    let started = Instant::now();
    let err = fails_with(
        db.url(),
        &["up", "-n", "1"],
        &[("MIGRATION_LOCK_TIMEOUT", "1s")],
    );
    let took = started.elapsed();
    blocker.rollback().await.unwrap();

    assert!(took < Duration::from_secs(10), "took {took:?}:\n{err}");
    for part in [
        "migration 'm002_add_pdf_storage' waited longer than lock_timeout = 1s",
        "rolled back",
        &format!("pid {blocker_pid} "),
        "locks resumes",
        "LOCK TABLE resumes IN ACCESS SHARE MODE",
        "pg_terminate_backend",
        "MIGRATION_LOCK_TIMEOUT",
        "lock timeout",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert_eq!(applied(conn).await, ALL[..1], "m002 was not recorded");

    // Once the transaction is gone the same command succeeds; --lock-timeout
    // is the flag form of the variable.
    ok(db.url(), &["--lock-timeout", "2s", "up"]);
    assert_eq!(applied(conn).await, *ALL);
}

/// `up` commits each migration on its own: the locks of one end with it,
/// a blocked one is rolled back whole (those before it stay applied), and
/// a lock timeout is retried.
#[tokio::test]
async fn up_commits_each_migration_and_retries_a_lock_timeout() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    ok(db.url(), &["down", "-n", "3"]); // m010, m009, m008
    // An open writer on resumes: m009's foreign key to it must wait.
    let blocker = conn.begin().await.unwrap();
    blocker
        .execute_unprepared("LOCK TABLE resumes IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let err = fails_with(
        db.url(),
        &["up"],
        &[
            ("MIGRATION_LOCK_TIMEOUT", "300ms"),
            ("MIGRATION_LOCK_RETRIES", "0"),
        ],
    );
    assert!(
        err.contains("m008_hnsw_ef_construction of this run is applied"),
        "{err}"
    );
    // m008 committed before m009 waited: its lock on the HNSW index is gone.
    assert_eq!(applied(conn).await, ALL[..7]);
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'idx_resume_chunks_embedding' AND l.pid <> pg_backend_pid()"
        )
        .await,
        0
    );

    // With retries, a blocker that goes away in time is waited out.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        blocker.rollback().await.unwrap();
    });
    let url = db.url().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        ok_with(
            &url,
            &["up"],
            &[
                ("MIGRATION_LOCK_TIMEOUT", "500ms"),
                ("MIGRATION_LOCK_RETRIES", "3"),
            ],
        )
    })
    .await
    .unwrap();
    release.await.unwrap();
    assert!(out.contains("m010_embedding_models"), "{out}");
    assert_eq!(applied(conn).await, *ALL);
}

#[tokio::test]
async fn lock_timeout_also_applies_to_library_migrations() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    // m010, m009, m008 and m007 first (they lock the models table, the
    // chunk tables and the HNSW index only); m005's down is the one blocked.
    Migrator::down(conn, Some(4)).await.unwrap();
    let blocker = conn.begin().await.unwrap();
    // The last migration's down alters resumes.
    blocker
        .execute_unprepared("LOCK TABLE resumes IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let err = migration::safety::with_options(
        migration::safety::SafetyOptions {
            allow_data_loss: false,
            lock_timeout: Some("300ms".into()),
        },
        Migrator::down(conn, Some(1)),
    )
    .await
    .unwrap_err()
    .to_string();
    blocker.rollback().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(
        err.contains("migration 'm005_legacy_import' waited longer than lock_timeout = 300ms"),
        "{err}"
    );
    assert_eq!(applied(conn).await, ALL[..5]);
}

#[test]
fn an_invalid_lock_timeout_is_refused_before_connecting() {
    let out = bin()
        .args(["-u", "postgres://u:p@127.0.0.1:1/x", "up"])
        .env("MIGRATION_LOCK_TIMEOUT", "5 parsecs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("invalid lock timeout \"5 parsecs\""), "{t}");
}

// ------------------------------------------------- destructive rollback --

#[tokio::test]
async fn rollbacks_that_destroy_data_are_refused_unless_forced() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    conn.execute_unprepared(
        "INSERT INTO user_profiles (id, firebase_uid) \
           VALUES ('00000000-0000-0000-0000-000000000001', 'uid-1'); \
         INSERT INTO resumes (user_id, title, file_name, file_size, file_data) \
           VALUES ('00000000-0000-0000-0000-000000000001', 'CV', 'cv.pdf', 4, '\\x25504446'); \
         INSERT INTO resume_chunks (text, metadata) \
           VALUES ('chunk', '{\"user_id\": \"00000000-0000-0000-0000-000000000001\"}')",
    )
    .await
    .unwrap();
    // m005's down (after m010's, m009's, m008's and m007's) would forget
    // which resume is primary.
    conn.execute_unprepared("UPDATE resumes SET is_primary = true")
        .await
        .unwrap();
    let err = fails(db.url(), &["down", "-n", "5"]);
    assert!(
        err.contains("1 row(s) of resumes where is_primary"),
        "{err}"
    );
    conn.execute_unprepared("UPDATE resumes SET is_primary = false")
        .await
        .unwrap();
    let before = schema_dump(db.url());

    // m010's, m009's, m008's, m007's, m005's and m004's downs now destroy
    // nothing; m003's would drop the chunk. Asked for all seven at once,
    // nothing at all happens.
    let err = fails(db.url(), &["down", "-n", "7"]);
    for part in [
        "refusing to roll back m003_create_vector_store",
        "1 row(s) of resume_chunks",
        "re-embedding",
        "Nothing was changed",
        "--force",
        "MOCKINTERVIEW_ALLOW_DATA_LOSS=1",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert_eq!(applied(conn).await, *ALL);
    assert_eq!(schema_dump(db.url()), before);

    ok(db.url(), &["down", "-n", "7", "--force"]);
    assert_eq!(applied(conn).await, ALL[..2]);

    // m002 with a PDF stored.
    let err = fails(db.url(), &["down"]);
    assert!(
        err.contains("1 row(s) of resumes where file_data IS NOT NULL"),
        "{err}"
    );
    assert!(err.contains("PDFs stored in resumes.file_data"), "{err}");
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM resumes WHERE file_data IS NOT NULL"
        )
        .await,
        1
    );
    // Forced by the environment variable.
    ok_with(
        db.url(),
        &["down"],
        &[("MOCKINTERVIEW_ALLOW_DATA_LOSS", "1")],
    );
    assert_eq!(applied(conn).await, ALL[..1]);

    // m001 with a profile and a resume; reset and refresh go through it too.
    for cmd in [&["down"][..], &["reset"], &["refresh"]] {
        let err = fails(db.url(), cmd);
        assert!(
            err.contains("refusing to roll back m001_user_profiles"),
            "{cmd:?}: {err}"
        );
        assert!(err.contains("1 row(s) of user_profiles"), "{cmd:?}: {err}");
        assert!(err.contains("1 row(s) of resumes"), "{cmd:?}: {err}");
    }
    assert_eq!(count(conn, "SELECT count(*) FROM user_profiles").await, 1);
    ok(db.url(), &["refresh", "--force"]);
    assert_eq!(applied(conn).await, *ALL);
    assert_eq!(count(conn, "SELECT count(*) FROM user_profiles").await, 0);

    // Without data nothing is refused.
    ok(db.url(), &["reset"]);
}

#[tokio::test]
async fn fresh_is_refused_while_any_table_has_rows() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    conn.execute_unprepared(
        "CREATE TABLE other_service (id int); INSERT INTO other_service VALUES (1)",
    )
    .await
    .unwrap();
    let err = fails(db.url(), &["fresh"]);
    assert!(err.contains("refusing to run `fresh`"), "{err}");
    assert!(err.contains("1 row(s) of other_service"), "{err}");
    assert_eq!(count(conn, "SELECT count(*) FROM other_service").await, 1);
    ok(db.url(), &["fresh", "--force"]);
    assert_eq!(applied(conn).await, *ALL);
    assert_eq!(
        strings(
            conn,
            "SELECT coalesce(to_regclass('other_service')::text, 'dropped')"
        )
        .await,
        ["dropped"]
    );
}

#[tokio::test]
async fn the_guard_holds_for_library_calls_and_inside_the_migration() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    conn.execute_unprepared("INSERT INTO resume_chunks (text) VALUES ('x')")
        .await
        .unwrap();
    let err = Migrator::down(conn, Some(7)).await.unwrap_err().to_string();
    assert!(
        err.contains("refusing to roll back m003_create_vector_store"),
        "{err}"
    );
    assert_eq!(applied(conn).await, *ALL);

    // The check inside m003's own down (which also runs when the pre-check
    // is bypassed, as sea-orm's own executor would) refuses as well.
    Migrator::down(conn, Some(6)).await.unwrap(); // m010, m009, m008, m007, m005, m004: no data at risk
    let txn = conn.begin().await.unwrap();
    let err =
        migration::safety::prepare_down(&SchemaManager::new(&txn), "m003_create_vector_store")
            .await
            .unwrap_err()
            .to_string();
    txn.rollback().await.unwrap();
    assert!(err.contains("That rollback was cancelled"), "{err}");

    migration::safety::allow_data_loss(Migrator::down(conn, Some(1)))
        .await
        .unwrap();
    assert_eq!(applied(conn).await, ALL[..2]);
}

// ------------------------------------------------ actionable errors --

#[tokio::test]
async fn an_unreachable_database_fails_fast_naming_host_port_and_fix() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://mockinterview:x@127.0.0.1:{port}/mockinterview");
    for cmd in [&["up"][..], &["status"], &["verify"], &["up", "--dry-run"]] {
        let started = Instant::now();
        let err = fails(&url, cmd);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{cmd:?} took {:?}",
            started.elapsed()
        );
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{cmd:?}: {err}");
        assert!(err.contains("scripts/db-up"), "{cmd:?}: {err}");
        assert!(err.contains("Connection refused"), "{cmd:?}: {err}");
        assert!(!err.contains("panicked"), "{cmd:?}: {err}");
    }
}

#[tokio::test]
async fn a_wrong_password_or_database_is_explained() {
    let db = TestDatabase::empty().await;
    let bad_password = db
        .db_url()
        .with_credentials("mockinterview_no_such_role", "nope");
    let err = fails(bad_password.as_str(), &["status"]);
    assert!(
        err.contains("rejected the login of role \"mockinterview_no_such_role\""),
        "{err}"
    );
    let missing_db = db.db_url().with_database(&format!("{}_missing", db.name()));
    let err = fails(missing_db.as_str(), &["status"]);
    assert!(
        err.contains(&format!(
            "database \"{}_missing\" does not exist",
            db.name()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn pgvector_missing_on_the_server_stops_up_before_anything_is_applied() {
    let db = TestDatabase::empty().await;
    // Simulate a server without the pgvector files: the check reads
    // pg_available_extensions, which this schema shadows when it comes
    // before pg_catalog in the search path (-s "public,pg_catalog").
    db.conn()
        .execute_unprepared(
            "CREATE VIEW public.pg_available_extensions AS \
             SELECT * FROM pg_catalog.pg_available_extensions WHERE name <> 'vector'",
        )
        .await
        .unwrap();
    let err = fails(db.url(), &["-s", "public,pg_catalog", "up"]);
    for part in [
        "extension \"vector\" is not available on this PostgreSQL server",
        "postgresql-<major>-pgvector",
        "pgvector/pgvector:pg16",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert!(!err.contains("has been applied"), "{err}");
    assert!(applied(db.conn()).await.is_empty());
    assert!(tables(db.conn()).await.is_empty());
}

#[tokio::test]
async fn permission_denied_to_create_pgvector_names_the_role_and_the_fix() {
    let db = TestDatabase::empty().await;
    let conn = db.conn();
    let role = format!("{}_app", db.name());
    let password = "app-password";
    conn.execute_unprepared(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}' NOSUPERUSER; \
         GRANT CONNECT, CREATE ON DATABASE \"{db}\" TO \"{role}\"; \
         GRANT USAGE, CREATE ON SCHEMA public TO \"{role}\"",
        db = db.name()
    ))
    .await
    .unwrap();
    let out = run(
        db.db_url().with_credentials(&role, password).as_str(),
        &["up"],
    );
    let created = tables(conn).await;
    // Clean up before asserting: roles are cluster-wide.
    conn.execute_unprepared(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""))
        .await
        .unwrap();

    let err = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for part in [
        format!("permission denied to create extension \"vector\" as role \"{role}\""),
        "superuser".into(),
        "CREATE EXTENSION IF NOT EXISTS vector;".into(),
    ] {
        assert!(err.contains(&part), "{part:?} missing from:\n{err}");
    }
    assert!(created.is_empty(), "stopped before m001: {created:?}");
}
