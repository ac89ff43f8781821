//! Connection diagnostics against real servers (`migration_tool::doctor`, and the
//! binary's messages built on it): refused connections (with the start hint
//! only for a local server), TLS and certificate failures, `pg_hba.conf`
//! rejections, passwords, timeouts, DNS, and writes on a hot standby.
//!
//! Needs the TLS-only cluster (`scripts/secure-cluster-up`), the standby
//! (`scripts/replica-up`) and PgBouncer (`scripts/pooler-up`); scripts/test
//! starts them. A test fails, naming the script, when one is missing.

use std::time::{Duration, Instant};

use crate::common::*;
use migration::MigratorTrait;
use migration_tool::doctor::{self, ConnectFailure, FailureKind};
use pgconn::DbUrl;
use sea_orm::{ConnectionTrait, Database};
use test_db::TestDatabase;

/// The classified failure of one connection attempt to `url`.
async fn failure(url: &str) -> ConnectFailure {
    let url = DbUrl::parse(url).unwrap();
    doctor::connect_one(&url, &url.connect_options(), Duration::from_secs(5))
        .await
        .err()
        .unwrap_or_else(|| panic!("connecting to {url} should fail"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_refused_connection_hints_at_starting_the_server_only_when_it_is_local() {
    let port = free_port();
    let local = failure(&format!("postgres://u:secret@127.0.0.1:{port}/db")).await;
    assert_eq!(local.kind(), &FailureKind::Refused);
    assert!(local.is_local_server_down());
    let m = local.message();
    assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
    assert!(
        m.contains("Is the server running") && m.contains("scripts/db-up"),
        "{m}"
    );
    assert!(!m.contains("secret"), "{m}");

    // 127.0.0.2 is loopback too, but not "this machine's server" for the
    // hint: it stands for any remote host that refuses.
    let remote_url = format!("postgres://u:secret@127.0.0.2:{port}/db");
    let remote = failure(&remote_url).await;
    assert_eq!(remote.kind(), &FailureKind::Refused);
    let m = remote.message();
    assert!(
        !m.contains("scripts/db-up") && !m.contains("Is the server running"),
        "{m}"
    );
    assert!(m.contains("Check the host and port in DATABASE_URL"), "{m}");
    let err = fails(&remote_url, &["status"]);
    assert!(!err.contains("scripts/db-up"), "{err}");
    assert!(err.contains(&format!("127.0.0.2:{port}")), "{err}");
}

#[tokio::test]
async fn tls_certificate_and_pg_hba_failures_are_named_as_such() {
    let (base, dir) = secure_cluster();
    let ca = dir.join("ca.pem");
    let other_ca = dir.join("other-ca.pem");

    // Without TLS, pg_hba.conf (hostssl only) refuses: not a password issue.
    let plain = format!("{base}?sslmode=disable");
    let f = failure(&plain).await;
    assert_eq!(f.kind(), &FailureKind::PgHbaRejected, "{f}");
    assert_eq!(f.sqlstate(), Some("28000"));
    let err = fails(&plain, &["status"]);
    for part in [
        "refused the connection in its pg_hba.conf",
        "no pg_hba.conf entry for host \"127.0.0.1\"",
        "no encryption",
        "not a wrong password",
        "sslmode=require",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert!(
        !err.contains("scripts/db-up") && !err.contains("rejected the login"),
        "{err}"
    );

    // A certificate from an unrelated CA: a TLS problem, named as one.
    let wrong_ca = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    );
    let f = failure(&wrong_ca).await;
    assert_eq!(f.kind(), &FailureKind::Tls, "{f}");
    let err = fails(&wrong_ca, &["status"]);
    for part in [
        "TLS with PostgreSQL at 127.0.0.1:",
        "not trusted",
        "sslrootcert",
    ] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert!(!err.contains("scripts/db-up"), "{err}");

    // A missing certificate file is named, before any connection.
    let missing = format!("{base}?sslmode=verify-full&sslrootcert=/nonexistent/mi-ca.pem");
    let f = failure(&missing).await;
    assert_eq!(
        f.kind(),
        &FailureKind::MissingCertFile {
            parameter: "sslrootcert in the URL".into(),
            path: "/nonexistent/mi-ca.pem".into()
        }
    );
    let err = fails(&missing, &["status"]);
    assert!(
        err.contains("/nonexistent/mi-ca.pem") && err.contains("sslrootcert"),
        "{err}"
    );
    assert!(!err.contains("scripts/db-up"), "{err}");

    // The right CA: verified TLS works, and then a wrong password is a
    // password problem.
    let good = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let url = DbUrl::parse(&good).unwrap();
    let conn = doctor::connect_one(&url, &url.connect_options(), Duration::from_secs(5))
        .await
        .unwrap_or_else(|f| panic!("verified TLS login: {f}"));
    sea_orm::sqlx::Connection::close(conn).await.unwrap();
    let status = ok(&good, &["status"]);
    assert!(status.contains("Checking migration status"), "{status}");
    let f = failure(url.with_credentials(url.user(), "wrong-password").as_str()).await;
    assert_eq!(f.kind(), &FailureKind::BadPassword, "{f}");
    assert!(f.message().contains("rejected the login of role"), "{f}");
}

#[tokio::test]
async fn tls_required_from_a_server_without_it_says_so() {
    // PgBouncer of scripts/pooler-up has no client-side TLS.
    let admin = DbUrl::from_env().unwrap();
    let pooler = through_tx_pooler(&admin);
    let url = format!("{}?sslmode=require", pooler.as_str());
    let f = failure(&url).await;
    assert_eq!(f.kind(), &FailureKind::Tls, "{f}");
    let err = fails(&url, &["status"]);
    assert!(
        err.contains("does not accept TLS, but sslmode=require requires it"),
        "{err}"
    );
    assert!(!err.contains("scripts/db-up"), "{err}");
}

#[tokio::test]
async fn logins_refused_by_the_pooler_are_explained() {
    let db = TestDatabase::new().await;
    let pooler = through_tx_pooler(db.db_url());
    let wrong = pooler.with_credentials(db.db_url().user(), "wrong-password");
    let f = failure(wrong.as_str()).await;
    assert_eq!(f.kind(), &FailureKind::BadPassword, "{f}");
    let missing_db = pooler.with_database(&format!("{}_missing", db.name()));
    let f = failure(missing_db.as_str()).await;
    assert_eq!(f.kind(), &FailureKind::NoSuchDatabase, "{f}");
    assert!(
        f.message().contains(&format!(
            "database \"{}_missing\" does not exist",
            db.name()
        )),
        "{f}"
    );
    // (Trying again at once would wait: PgBouncer delays new logins to a
    // database whose server login failed by server_login_retry.)
}

#[tokio::test]
async fn a_silent_server_times_out_and_an_unknown_host_is_a_dns_error() {
    // Accepts TCP connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = DbUrl::parse(&format!("postgres://u:p@127.0.0.1:{port}/db")).unwrap();
    let started = Instant::now();
    let f = doctor::connect_one(&url, &url.connect_options(), Duration::from_millis(500))
        .await
        .expect_err("no answer");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(f.kind(), &FailureKind::Timeout, "{f}");
    assert!(f.message().contains("no answer"), "{f}");
    drop(listener);

    let f = failure("postgres://u:p@mi-no-such-host.invalid:5432/db").await;
    assert_eq!(f.kind(), &FailureKind::Dns, "{f}");
    assert!(
        f.message()
            .contains("cannot resolve the host name \"mi-no-such-host.invalid\""),
        "{f}"
    );
}

#[tokio::test]
async fn writes_on_the_hot_standby_are_explained_and_reads_work() {
    let db = TestDatabase::new().await;
    let standby = on_standby(db.db_url());
    wait_for(standby.as_str(), "SELECT count(*) FROM seaql_migrations").await;

    // Reading works there: status and verify are read-only.
    let status = ok(standby.as_str(), &["status"]);
    assert_eq!(status.matches("Applied").count(), ALL.len(), "{status}");
    let verify = ok(standby.as_str(), &["verify"]);
    assert!(verify.contains("OK: the database matches"), "{verify}");
    // The library's start-up call with nothing pending does not write.
    let conn = Database::connect(standby.as_str()).await.unwrap();
    migration::lock::up_locked(&conn, None).await.unwrap();
    migration::ensure_schema_current(&conn).await.unwrap();

    // `up` with nothing pending writes nothing (it checks read-only first),
    // as the library's start-up call; writes say "standby", not just
    // "read-only transaction".
    assert!(ok(standby.as_str(), &["up"]).contains("No pending migrations"));
    let err = fails(standby.as_str(), &["down"]);
    for part in ["read-only hot standby", "need the primary", "5433"] {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    let write = conn
        .execute_unprepared("INSERT INTO user_profiles (firebase_uid) VALUES ('x')")
        .await
        .unwrap_err();
    let f = doctor::statement_failure(&standby, &write).expect("about the server");
    assert_eq!(f.kind(), &FailureKind::ReadOnly);
    let f = f.on_standby();
    assert_eq!(f.kind(), &FailureKind::ReadOnlyStandby);
    assert!(f.message().contains("read-only hot standby"), "{f}");
    assert!(doctor::statement_failure(&standby, &sea_orm::DbErr::Custom("x".into())).is_none());

    // With a migration pending, the library's start-up call refuses too.
    ok(db.url(), &["down"]);
    wait_for(
        standby.as_str(),
        &format!(
            "SELECT count(*) FROM seaql_migrations HAVING count(*) = {}",
            ALL.len() - 1
        ),
    )
    .await;
    let err = migration::lock::up_locked(&conn, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("read-only hot standby"), "{err}");
    assert_eq!(
        migration::Migrator::get_pending_migrations_read_only(&conn)
            .await
            .unwrap()
            .len(),
        1
    );
    conn.close().await.unwrap();
}
