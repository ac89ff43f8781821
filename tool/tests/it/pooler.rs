//! Migrating through PgBouncer (scripts/pooler-up): transaction mode with
//! prepared statements (>= 1.21, port 6432), session mode (6433), Debian's
//! 1.18 in transaction mode (6434, no prepared statements), and a PgBouncer
//! with its default `ignore_startup_parameters` started by the test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use migration::lock;
use migration_tool::doctor::{self, FailureKind, Pooling};
use pgconn::DbUrl;
use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use test_db::TestDatabase;

#[tokio::test]
async fn eight_binaries_through_the_transaction_pooler_migrate_once() {
    let db = TestDatabase::empty().await;
    let url = through_tx_pooler(db.db_url());
    const PROCESSES: usize = 8;
    // The lock is held until all of them queue (through the pooler), so
    // that they race for it at the same moment however slowly they start.
    let held = hold_migration_lock(db.conn()).await;
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            bin()
                .arg("up")
                .env("DATABASE_URL", url.as_str())
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
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.contains("waiting for another migrator (pid "))
            .count(),
        PROCESSES,
        "every one waited:\n{all}"
    );
    for m in ALL.iter() {
        assert_eq!(
            all.matches(&format!("Migration '{m}' has been applied"))
                .count(),
            1,
            "{m} must be applied exactly once:\n{all}"
        );
    }
    // (One locked transaction per migration: the processes may share the
    // work, each finding what is pending again under the lock.)
    assert_eq!(applied(db.conn()).await, *ALL);
    let reference = TestDatabase::new().await;
    assert_same_schema(
        &schema_dump(db.url()),
        &schema_dump(reference.url()),
        "migrated by 8 binaries through PgBouncer",
    );
    ok(url.as_str(), &["verify"]);
}

#[tokio::test]
async fn eight_up_locked_through_the_transaction_pooler_migrate_once() {
    let db = TestDatabase::empty().await;
    let url = through_tx_pooler(db.db_url());
    // Eight "instances", each with its own pool, migrating at start-up.
    let mut instances = Vec::new();
    for _ in 0..8 {
        instances.push(Database::connect(url.as_str()).await.unwrap());
    }
    let held = hold_migration_lock(db.conn()).await;
    let tasks: Vec<_> = instances
        .iter()
        .cloned()
        .map(|conn| tokio::spawn(async move { lock::up_locked(&conn, None).await }))
        .collect();
    wait_for_lock_waiters(db.conn(), 8).await;
    held.commit().await.unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(applied(db.conn()).await, *ALL);
    assert!(
        lock::lock_holder(db.conn()).await.unwrap().is_none(),
        "released"
    );
    let reference = TestDatabase::new().await;
    assert_same_schema(
        &schema_dump(db.url()),
        &schema_dump(reference.url()),
        "migrated by 8 up_locked through PgBouncer",
    );
    for conn in instances {
        conn.close().await.unwrap();
    }
}

#[tokio::test]
async fn lock_timeout_holds_inside_migrations_through_the_pooler() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    let all_but_m001 = (ALL.len() - 1).to_string();
    ok(db.url(), &["down", "-n", &all_but_m001]); // back to m001: m002 alters resumes next
    let blocker = conn.begin().await.unwrap();
    let blocker_pid = strings(&blocker, "SELECT pg_backend_pid()::text").await[0].clone();
    blocker
        .execute_unprepared("LOCK TABLE resumes IN ACCESS SHARE MODE")
        .await
        .unwrap();

    let url = through_tx_pooler(db.db_url());
    let started = Instant::now();
    let err = fails_with(
        url.as_str(),
        &["up", "-n", "1"],
        &[("MIGRATION_LOCK_TIMEOUT", "1s")],
    );
    let took = started.elapsed();
    blocker.rollback().await.unwrap();

    // Cancelled by the server's lock_timeout (55P03) at about 1 s: the
    // SET LOCAL inside the migration's transaction reached the server
    // session through the pooler (a startup option would be refused or
    // dropped there, and the migration would wait forever).
    assert!(took >= Duration::from_millis(900), "took {took:?}:\n{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{err}");
    for part in [
        "migration 'm002_add_pdf_storage' waited longer than lock_timeout = 1s",
        &format!("pid {blocker_pid} "),
        "locks resumes",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert_eq!(applied(conn).await, ALL[..1]);
    ok(url.as_str(), &["up"]);
    assert_eq!(applied(conn).await, *ALL);
}

#[tokio::test]
async fn pooler_detection_tells_transaction_pooling_and_refuses_pgbouncer_1_18() {
    let db = TestDatabase::new().await;
    let pool_of = |conn: &sea_orm::DatabaseConnection| conn.get_postgres_connection_pool().clone();
    for (url, expected) in [
        (db.db_url().clone(), Pooling::Direct),
        (through_session_pooler(db.db_url()), Pooling::Direct),
        (through_tx_pooler(db.db_url()), Pooling::Transaction),
    ] {
        let conn = Database::connect(url.as_str()).await.unwrap();
        let found = doctor::detect_pooler(&url, &pool_of(&conn))
            .await
            .unwrap_or_else(|f| panic!("{url}: {f}"));
        assert_eq!(found, expected, "{url}");
        // The probe leaves no connection state behind.
        assert_eq!(
            strings(
                &conn,
                "SELECT coalesce(current_setting('mockinterview.pooler_probe', true), '')"
            )
            .await,
            [""]
        );
        conn.close().await.unwrap();
    }

    let legacy = through_legacy_pooler(db.db_url());
    let mut refused = 0;
    for _ in 0..3 {
        let conn = Database::connect(legacy.as_str()).await.unwrap();
        match doctor::detect_pooler(&legacy, &pool_of(&conn)).await {
            Err(f) => {
                assert_eq!(
                    f.kind(),
                    &FailureKind::PoolerWithoutPreparedStatements,
                    "{f}"
                );
                refused += 1;
            }
            Ok(p) => panic!("PgBouncer 1.18 in transaction mode passed as {p:?}"),
        }
        conn.close().await.ok();
    }
    assert_eq!(refused, 3);
}

#[tokio::test]
async fn the_binary_refuses_pgbouncer_1_18_in_transaction_mode_before_anything_runs() {
    let db = TestDatabase::empty().await;
    let legacy = through_legacy_pooler(db.db_url());
    for cmd in [&["status"][..], &["up"], &["verify"]] {
        let err = fails(legacy.as_str(), cmd);
        for part in [
            "transaction-mode pooler without prepared-statement support",
            "PgBouncer >= 1.21",
            "max_prepared_statements",
            "pool_mode = session",
        ] {
            assert!(err.contains(part), "{cmd:?}: {part:?} missing from:\n{err}");
        }
        assert!(!err.contains("scripts/db-up"), "{err}");
    }
    assert!(applied(db.conn()).await.is_empty());
    assert!(tables(db.conn()).await.is_empty());
}

#[tokio::test]
async fn pgbouncer_with_its_default_startup_parameters_accepts_the_binary() {
    let db = TestDatabase::new().await;
    let strict = StrictPooler::start(db.db_url());
    let url = db.db_url().with_port(strict.port);

    // The binary sends no startup parameter besides application_name.
    let status = ok(url.as_str(), &["status"]);
    assert_eq!(status.matches("Applied").count(), ALL.len(), "{status}");
    let with_options = format!("{}?options=-c%20search_path%3Dpublic", url.as_str());
    ok(&with_options, &["verify"]);

    // A client that sends extra_float_digits (sqlx's default) is refused,
    // and told what to change in pgbouncer.ini.
    let err = Database::connect(url.as_str()).await.unwrap_err();
    let f = doctor::classify_db_err(&url, &err);
    assert_eq!(
        f.kind(),
        &FailureKind::StartupParameterRejected {
            parameter: "extra_float_digits".into()
        },
        "{f}"
    );
    assert!(
        f.message()
            .contains("ignore_startup_parameters = extra_float_digits"),
        "{f}"
    );
    drop(strict);

    // PgBouncer of pooler-up ignores extra_float_digits but refuses
    // options: the URL's search_path must be applied per transaction.
    let pooled = through_tx_pooler(db.db_url());
    let with_options = DbUrl::parse(&format!(
        "{}?options=-c%20search_path%3Dpublic",
        pooled.as_str()
    ))
    .unwrap();
    let f = doctor::connect_one(
        &with_options,
        &with_options.connect_options(),
        Duration::from_secs(5),
    )
    .await
    .expect_err("PgBouncer refuses options");
    assert_eq!(
        f.kind(),
        &FailureKind::StartupParameterRejected {
            parameter: "search_path (in options)".into()
        },
        "{f}"
    );
    assert!(f.message().contains("Remove it from DATABASE_URL"), "{f}");
    let verify = ok(with_options.as_str(), &["verify"]);
    assert!(verify.contains("(schema public)"), "{verify}");
}

/// A PgBouncer of the test's own, in transaction mode with prepared
/// statements but Pgbouncer's default (empty) `ignore_startup_parameters`,
/// on a free port from 6435 on. Stopped when dropped.
struct StrictPooler {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl StrictPooler {
    fn start(server: &DbUrl) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let binary = std::env::var("MOCKINTERVIEW_PGBOUNCER")
            .unwrap_or_else(|_| "/usr/local/bin/pgbouncer".into());
        assert!(
            std::path::Path::new(&binary).is_file(),
            "{binary} is missing: run `scripts/pooler-up` (it installs PgBouncer >= 1.21)"
        );
        let dir = std::env::temp_dir().join(format!("mi-strict-pgbouncer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // PgBouncer runs as the postgres user when the tests run as root.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let userlist = dir.join("userlist.txt");
        let password = server
            .as_str()
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default();
        std::fs::write(&userlist, format!("\"{}\" \"{password}\"\n", server.user())).unwrap();
        std::fs::set_permissions(&userlist, std::fs::Permissions::from_mode(0o644)).unwrap();

        for port in 6435..6535 {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let ini = dir.join("pgbouncer.ini");
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n* = host=127.0.0.1 port={}\n\n[pgbouncer]\n\
                     listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                     logfile = {}\nauth_type = trust\nauth_file = {}\n\
                     pool_mode = transaction\nmax_prepared_statements = 100\n",
                    server.port(),
                    dir.join("pgbouncer.log").display(),
                    userlist.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut cmd = if running_as_root() {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    &binary,
                ]);
                c
            } else {
                Command::new(&binary)
            };
            let mut child = cmd
                .arg(&ini)
                .current_dir("/")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start pgbouncer");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port, dir };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try the next one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            child.kill().ok();
            child.wait().ok();
        }
        panic!(
            "could not start {binary} on a port from 6435 on; see {}",
            dir.join("pgbouncer.log").display()
        );
    }
}

impl Drop for StrictPooler {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
