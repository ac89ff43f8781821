//! The migration binary (what `sea-orm-cli migrate` and
//! `cargo run -p migration --` run) against a real database: every
//! standard sea-orm-migration subcommand and flag keeps working.

use std::path::PathBuf;

use crate::common::*;
use sea_orm::ConnectionTrait;
use test_db::TestDatabase;

fn migrate(db: &TestDatabase, args: &[&str]) -> String {
    ok(db.url(), args)
}

#[tokio::test]
async fn every_standard_subcommand_works() {
    let db = TestDatabase::empty().await;
    let all = ALL.len();
    let (last, second_last) = (ALL[all - 1], ALL[all - 2]);

    let status = migrate(&db, &["status"]);
    assert_eq!(status.matches("Pending").count(), all, "{status}");

    let up = migrate(&db, &["up"]);
    assert!(
        up.contains(&format!("Migration '{last}' has been applied")),
        "{up}"
    );
    let status = migrate(&db, &["status"]);
    assert_eq!(status.matches("Applied").count(), all, "{status}");

    let again = migrate(&db, &["up"]);
    assert!(again.contains("No pending migrations"), "{again}");

    let down = migrate(&db, &["down", "-n", "2"]);
    for m in [last, second_last] {
        assert!(
            down.contains(&format!("Migration '{m}' has been rolled back")),
            "{down}"
        );
    }
    let status = migrate(&db, &["status"]);
    assert_eq!(status.matches("Applied").count(), all - 2, "{status}");

    migrate(&db, &["up", "-n", "1"]);
    let status = migrate(&db, &["status"]);
    assert_eq!(status.matches("Applied").count(), all - 1, "{status}");

    // `down` without -n rolls back one.
    migrate(&db, &["down"]);
    let status = migrate(&db, &["status"]);
    assert_eq!(status.matches("Applied").count(), all - 2, "{status}");

    // No subcommand means `up`.
    migrate(&db, &[]);
    let status = migrate(&db, &["status"]);
    assert_eq!(status.matches("Applied").count(), all, "{status}");

    for cmd in ["fresh", "refresh"] {
        migrate(&db, &[cmd]);
        let status = migrate(&db, &["status"]);
        assert_eq!(status.matches("Applied").count(), all, "{cmd}: {status}");
    }

    migrate(&db, &["reset"]);
    let status = migrate(&db, &["status"]);
    assert_eq!(status.matches("Pending").count(), all, "{status}");
}

#[tokio::test]
async fn database_url_flag_wins_over_the_environment() {
    let db = TestDatabase::empty().await;
    // DATABASE_URL points at a closed port: only -u / --database-url works.
    for flag in ["-u", "--database-url"] {
        let out = bin()
            .args([flag, db.url(), "status"])
            .env("DATABASE_URL", "postgres://nobody:x@127.0.0.1:1/none")
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {}", text(&out));
        assert_eq!(text(&out).matches("Pending").count(), ALL.len());
    }
    let out = bin()
        .args(["up", "-u", db.url()]) // global flag after the subcommand
        .env("DATABASE_URL", "postgres://nobody:x@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(applied(db.conn()).await.len(), ALL.len());
}

#[tokio::test]
async fn database_schema_flag_and_variable_select_the_schema() {
    let db = TestDatabase::empty().await;
    db.conn()
        .execute_unprepared("CREATE SCHEMA app; CREATE SCHEMA other")
        .await
        .unwrap();

    migrate(&db, &["-s", "app", "up"]);
    let in_app = strings(
        db.conn(),
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'app' ORDER BY 1",
    )
    .await;
    assert_eq!(
        in_app,
        [
            "embedding_models",
            "legacy_ids",
            "reembed_jobs",
            "reembed_queue",
            "resume_chunks",
            "resume_chunks_staged",
            "resumes",
            "seaql_migrations",
            "user_preferences",
            "user_profiles"
        ]
    );
    assert!(tables(db.conn()).await.is_empty(), "nothing in public");
    let verify = migrate(&db, &["--database-schema", "app", "verify"]);
    assert!(verify.contains("(schema app)"), "{verify}");
    assert!(verify.contains("OK: the database matches"), "{verify}");
    // The public schema has none of it.
    let public = fails(db.url(), &["verify"]);
    assert!(
        public.contains(&format!("{} pending", ALL.len())),
        "{public}"
    );

    // DATABASE_SCHEMA, as sea-orm-cli passes -s on.
    let status = ok_with(db.url(), &["status"], &[("DATABASE_SCHEMA", "app")]);
    assert_eq!(status.matches("Applied").count(), ALL.len(), "{status}");
    ok_with(
        db.url(),
        &["down", "-n", &ALL.len().to_string()],
        &[("DATABASE_SCHEMA", "app")],
    );
    assert_eq!(
        count(
            db.conn(),
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'app' AND tablename <> 'seaql_migrations'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn verbose_flag_shows_levels_targets_and_statements() {
    let db = TestDatabase::new().await;
    let quiet = migrate(&db, &["status"]);
    assert!(quiet.starts_with("Checking migration status"), "{quiet}");
    assert!(!quiet.contains("sqlx::query"), "{quiet}");
    for verbose in [
        migrate(&db, &["-v", "status"]),
        migrate(&db, &["status", "--verbose"]),
    ] {
        assert!(
            verbose.contains("INFO sea_orm_migration::migrator: Checking migration status"),
            "{verbose}"
        );
        assert!(
            verbose.contains("sqlx::query"),
            "statements are logged: {verbose}"
        );
        assert!(verbose.contains("Applied"), "{verbose}");
    }
}

#[test]
fn init_and_generate_write_migration_files() {
    let dir = scratch_dir("init");
    let run_in = |args: &[&str]| {
        let out = bin().args(args).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    run_in(&["init"]);
    assert!(dir.join("src/lib.rs").exists(), "init writes src/lib.rs");
    run_in(&["generate", "add_interview_history"]);
    let generated: Vec<String> = std::fs::read_dir(dir.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("_add_interview_history.rs"))
        .collect();
    assert_eq!(generated.len(), 1, "{generated:?}");
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("add_interview_history"), "{lib}");
    run_in(&["generate", "add_settings", "--local-time"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_lists_the_standard_and_the_added_subcommands() {
    let out = bin().arg("--help").output().unwrap();
    let help = text(&out);
    for cmd in [
        "init", "generate", "fresh", "refresh", "reset", "status", "up", "down", "verify",
    ] {
        assert!(help.contains(cmd), "{cmd} missing from:\n{help}");
    }
    let up = text(&bin().args(["up", "--help"]).output().unwrap());
    assert!(up.contains("--dry-run") && up.contains("--num"), "{up}");
    let down = text(&bin().args(["down", "--help"]).output().unwrap());
    assert!(down.contains("--force") && down.contains("--num"), "{down}");
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "migration-cli-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `doctor` on a migrated database: every check passes, except the known
/// bugs of the server's pgvector, which it names with the fix (none when
/// the server runs a release without them).
#[tokio::test]
async fn doctor_names_the_known_bugs_of_the_servers_pgvector() {
    let db = TestDatabase::new().await;
    let version = strings(
        db.conn(),
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
    )
    .await
    .remove(0);
    let bugs = mockinterview_db::health::pgvector_known_bugs(&version);
    let out = run(db.url(), &["doctor"]);
    let text = text(&out);
    assert!(text.contains("connected to"), "{text}");
    assert!(text.contains("none pending"), "{text}");
    for bug in &bugs {
        assert!(text.contains(bug.summary), "{bug:?} missing from:\n{text}");
    }
    if bugs.is_empty() {
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains(&format!("pgvector {version} installed")),
            "{text}"
        );
    } else {
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("REINDEX INDEX CONCURRENTLY"), "{text}");
    }
}
