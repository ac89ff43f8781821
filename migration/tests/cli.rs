//! The migration binary (what `sea-orm-cli migrate` and
//! `cargo run -p migration --` run) against a real database.

use std::process::{Command, Output};

use mockinterview_db::testing::TestDatabase;

fn migrate(db: &TestDatabase, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_migration"))
        .args(args)
        .env("DATABASE_URL", db.url())
        .output()
        .expect("run the migration binary");
    assert!(
        out.status.success(),
        "migration {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn every_standard_subcommand_works() {
    let db = TestDatabase::empty().await;

    let status = stdout(&migrate(&db, &["status"]));
    assert_eq!(status.matches("Pending").count(), 4, "{status}");

    let up = stdout(&migrate(&db, &["up"]));
    assert!(
        up.contains("Migration 'm004_delete_orphan_chunks' has been applied"),
        "{up}"
    );
    let status = stdout(&migrate(&db, &["status"]));
    assert_eq!(status.matches("Applied").count(), 4, "{status}");

    let again = stdout(&migrate(&db, &["up"]));
    assert!(again.contains("No pending migrations"), "{again}");

    let down = stdout(&migrate(&db, &["down", "-n", "2"]));
    assert!(
        down.contains("Migration 'm004_delete_orphan_chunks' has been rolled back"),
        "{down}"
    );
    assert!(
        down.contains("Migration 'm003_create_vector_store' has been rolled back"),
        "{down}"
    );
    let status = stdout(&migrate(&db, &["status"]));
    assert_eq!(status.matches("Applied").count(), 2, "{status}");

    migrate(&db, &["up", "-n", "1"]);
    let status = stdout(&migrate(&db, &["status"]));
    assert_eq!(status.matches("Applied").count(), 3, "{status}");

    for cmd in ["fresh", "refresh"] {
        migrate(&db, &[cmd]);
        let status = stdout(&migrate(&db, &["status"]));
        assert_eq!(status.matches("Applied").count(), 4, "{cmd}: {status}");
    }

    migrate(&db, &["reset"]);
    let status = stdout(&migrate(&db, &["status"]));
    assert_eq!(status.matches("Pending").count(), 4, "{status}");
}
