//! Reads on streaming replicas, against real hot standbys of the local
//! cluster (`scripts/replica-up`: 15/replica on 5433, 15/replica2 on 5434).
//! The tests that pause or stop a standby hold [`STANDBYS`], so that the
//! others in this binary never see it paused or down by surprise.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::TestDb;
use mockinterview_db::chunks::search_chunks;
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::resumes;
use mockinterview_db::{Db, DbConfig, SearchQuery, SearchScope};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use test_db::TestDatabase;

use crate::support::*;

/// The standby every routing test reads from.
const REPLICA_PORT: u16 = 5433;
/// The standby the failure test stops and starts.
const REPLICA2_PORT: u16 = 5434;
const REPLICA2_CLUSTER: &str = "replica2";

/// Serializes the tests that pause, stop or count reads on the standbys.
static STANDBYS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The test database's URL on the standby at `port`, once the standby has
/// replayed its creation. Fails (never skips) when the standby is missing.
async fn replica_url(db: &TestDatabase, port: u16) -> String {
    let url = db.db_url().with_port(port);
    if tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        panic!(
            "no standby listens on 127.0.0.1:{port}: start the local standbys with \
             `scripts/replica-up` (5433) and `MOCKINTERVIEW_REPLICA_CLUSTER=replica2 \
             MOCKINTERVIEW_REPLICA_PORT=5434 MOCKINTERVIEW_REPLICA_SLOT=mockinterview_replica2 \
             scripts/replica-up` (5434), or run everything with `scripts/test`"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sea_orm::Database::connect(url.as_str()).await {
            Ok(conn) => {
                let recovering = conn
                    .query_one_raw(Statement::from_string(
                        DbBackend::Postgres,
                        "SELECT pg_is_in_recovery() AS r",
                    ))
                    .await
                    .unwrap()
                    .unwrap()
                    .try_get::<bool>("", "r")
                    .unwrap();
                conn.close().await.ok();
                assert!(recovering, "127.0.0.1:{port} is not a standby");
                return url.as_str().to_owned();
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("standby not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the standby on {port} never had the test database: {e}"),
        }
    }
}

/// A `Db` on the test database with the given standbys, fast checks.
async fn connect(db: &TestDatabase, replicas: Vec<String>) -> Db {
    let mut config = DbConfig::new(db.url());
    config.replica_urls = replicas;
    config.max_replica_lag = Duration::from_millis(500);
    config.replica_check_interval = Duration::from_millis(50);
    config.replica_retry_after = Duration::from_millis(300);
    config.read_your_writes_wait = Duration::from_millis(200);
    let handle = config.connect().await.unwrap();
    wait_until(
        || handle.replicas().iter().all(|r| r.is_up()),
        "replicas up",
    )
    .await;
    handle
}

async fn wait_until(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn uid(n: usize) -> FirebaseUser {
    FirebaseUser {
        uid: format!("replica-user-{n}"),
        ..Default::default()
    }
}

#[tokio::test]
async fn reads_go_to_the_replica_writes_and_transactions_to_the_primary() {
    let _standbys = STANDBYS.lock().await;
    let db = TestDb::new().await;
    let replica = replica_url(&db, REPLICA_PORT).await;
    let handle = connect(&db, vec![replica]).await;
    let standby = &handle.replicas()[0];

    // A write through the handle lands on the primary (a standby refuses
    // writes), and a read of it soon comes from the standby.
    let ada = profiles::upsert_profile(&handle, &uid(1)).await.unwrap();
    let before = standby.reads_served();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match profiles::profile_by_id(&handle, ada.id).await {
            Ok(found) => {
                assert_eq!(found, ada);
                break;
            }
            // Not replayed yet: bounded staleness allows it for reads
            // outside a session.
            Err(mockinterview_db::Error::NotFound { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(standby.reads_served() > before, "the standby answered");

    // Inside a caller's transaction everything runs on the primary.
    let primary_before = handle.primary_reads();
    let served_before = standby.reads_served();
    let txn = handle.begin().await.unwrap();
    let bob = profiles::upsert_profile(&txn, &uid(2)).await.unwrap();
    assert_eq!(profiles::profile_by_id(&txn, bob.id).await.unwrap(), bob);
    txn.commit().await.unwrap();
    // Forcing the primary for one call.
    assert_eq!(
        profiles::profile_by_id(&handle.primary(), bob.id)
            .await
            .unwrap(),
        bob
    );
    assert_eq!(standby.reads_served(), served_before);
    assert_eq!(handle.primary_reads(), primary_before + 1);
    handle.close().await.unwrap();
}

#[tokio::test]
async fn a_session_reads_its_own_writes_in_1000_rounds() {
    let _standbys = STANDBYS.lock().await;
    let db = TestDb::new().await;
    let replica = replica_url(&db, REPLICA_PORT).await;
    let handle = connect(&db, vec![replica]).await;
    let session = handle.session();
    let user = profiles::upsert_profile(&session, &uid(1)).await.unwrap();
    let resume = resume(&handle.primary(), user.id, "cv").await;
    let standby = &handle.replicas()[0];
    let (served_before, primary_before) = (standby.reads_served(), handle.primary_reads());

    const ROUNDS: usize = 1000;
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        // Write, then search immediately through the same session.
        let text = format!("round {round}");
        let chunk = mockinterview_db::NewChunk::new(&text, embedding(round as u64));
        crate::support::replace(&session, user.id, resume.id, &[chunk])
            .await
            .unwrap();
        let hits = search_chunks(
            &session,
            &SearchQuery::new(embedding(round as u64), 1, SearchScope::User(user.id)),
        )
        .await
        .unwrap();
        if hits.first().and_then(|h| h.text.as_deref()) != Some(text.as_str()) {
            stale.push((round, hits));
        }
    }
    assert!(
        stale.is_empty(),
        "{} of {ROUNDS} reads missed the session's own write: {:?}",
        stale.len(),
        &stale[..stale.len().min(3)]
    );
    let on_standby = standby.reads_served() - served_before;
    let on_primary = handle.primary_reads() - primary_before;
    eprintln!(
        "read-your-writes: {on_standby} of {ROUNDS} searches answered by the standby, \
         {on_primary} by the primary"
    );
    assert_eq!(on_standby + on_primary, ROUNDS as u64);
    assert!(
        on_standby > 0,
        "the standby answered none: the test would pass on the primary alone"
    );

    // The token carries the position across requests.
    let token = session.token().expect("the session wrote");
    let later = handle.session_after(token);
    let hits = search_chunks(
        &later,
        &SearchQuery::new(embedding(999), 1, SearchScope::User(user.id)),
    )
    .await
    .unwrap();
    assert_eq!(hits[0].text.as_deref(), Some("round 999"));
    handle.close().await.unwrap();
}

#[tokio::test]
async fn a_replica_lagging_past_the_bound_gets_no_reads_until_it_catches_up() {
    let _standbys = STANDBYS.lock().await;
    let db = TestDb::new().await;
    let replica = replica_url(&db, REPLICA_PORT).await;
    let handle = connect(&db, vec![replica.clone()]).await;
    let standby_admin = sea_orm::Database::connect(replica.as_str()).await.unwrap();
    let standby = handle.replicas()[0].clone();

    // Stop replay on the standby: it keeps answering, with older and older
    // data.
    standby_admin
        .execute_unprepared("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let paused = ReplayGuard(replica.clone());
    let user = profiles::upsert_profile(&handle, &uid(7)).await.unwrap();
    wait_until(
        || {
            standby
                .staleness()
                .is_some_and(|s| s > Duration::from_millis(500))
        },
        "the standby to fall behind the bound",
    )
    .await;
    let (served, primary) = (standby.reads_served(), handle.primary_reads());
    eprintln!("staleness {:?} up {}", standby.staleness(), standby.is_up());
    for _ in 0..20 {
        // Fresh data: the lagging standby would not have the profile.
        profiles::profile_by_id(&handle, user.id).await.unwrap();
    }
    assert_eq!(
        standby.reads_served(),
        served,
        "no read went to the stale standby"
    );
    assert_eq!(handle.primary_reads(), primary + 20);

    drop(paused); // resumes replay
    wait_until(
        || {
            standby
                .staleness()
                .is_some_and(|s| s < Duration::from_millis(500))
        },
        "the standby to catch up",
    )
    .await;
    profiles::profile_by_id(&handle, user.id).await.unwrap();
    assert_eq!(standby.reads_served(), served + 1, "back in rotation");
    handle.close().await.unwrap();
}

/// Resumes WAL replay on the standby at this URL when dropped, also when a
/// test fails (on a runtime of its own: the test's may be gone).
struct ReplayGuard(String);

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        let url = self.0.clone();
        let resumed = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("a runtime")
                .block_on(async {
                    let conn = sea_orm::Database::connect(url.as_str()).await?;
                    conn.execute_unprepared("SELECT pg_wal_replay_resume()")
                        .await?;
                    conn.close().await
                })
        })
        .join();
        if !matches!(resumed, Ok(Ok(()))) {
            eprintln!(
                "could not resume WAL replay on {}: run `SELECT pg_wal_replay_resume()` there",
                self.0
            );
        }
    }
}

/// `pg_ctlcluster <major> replica2 <action>`.
fn standby2(action: &str) {
    let major = std::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .expect("pg_lsclusters (postgresql-common) must be installed");
    let major = String::from_utf8_lossy(&major.stdout)
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&REPLICA2_CLUSTER)).then(|| f[0].to_owned())
        })
        .expect("cluster replica2 exists (scripts/replica-up with MOCKINTERVIEW_REPLICA_CLUSTER=replica2)");
    let status = std::process::Command::new("pg_ctlcluster")
        .args([major.as_str(), REPLICA2_CLUSTER, action, "-m", "fast"])
        .status()
        .expect("run pg_ctlcluster (as root)");
    assert!(
        status.success(),
        "pg_ctlcluster {major} replica2 {action} failed"
    );
}

/// Starts replica2 again when dropped, also when a test fails.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        standby2("start");
    }
}

#[tokio::test]
async fn stopping_a_standby_mid_load_fails_no_call_and_it_rejoins() {
    let _standbys = STANDBYS.lock().await;
    let db = TestDb::new().await;
    let (r1, r2) = (
        replica_url(&db, REPLICA_PORT).await,
        replica_url(&db, REPLICA2_PORT).await,
    );
    let handle = connect(&db, vec![r1, r2]).await;
    let (u, r) = ada_with_chunks(&handle.primary(), 40).await;
    wait_until(
        || {
            handle
                .replicas()
                .iter()
                .all(|r| r.staleness() == Some(Duration::ZERO))
        },
        "both standbys to replay the set-up",
    )
    .await;

    // Four clients search and list in a loop while replica2 is stopped.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..4_u64 {
        let (handle, stop, calls) = (handle.clone(), stop.clone(), calls.clone());
        clients.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let q = SearchQuery::new(embedding(client), 5, SearchScope::User(u.id));
                if let Err(e) = search_chunks(&handle, &q).await {
                    errors.push(format!("search: {e}"));
                }
                if let Err(e) = resumes::list_resumes(&handle, u.id).await {
                    errors.push(format!("list: {e}"));
                }
                calls.fetch_add(2, Ordering::Relaxed);
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = RestartGuard;
    tokio::task::spawn_blocking(|| standby2("stop"))
        .await
        .unwrap();
    let stopped_at = calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !handle.replicas()[1].is_up(),
        "the stopped standby is out of rotation"
    );
    let served_by_2 = handle.replicas()[1].reads_served();
    drop(restart); // starts replica2 again
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for client in clients {
        errors.extend(client.await.unwrap());
    }
    let total = calls.load(Ordering::Relaxed);
    assert!(
        errors.is_empty(),
        "{} of {total} calls failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        total > stopped_at + 20,
        "reads kept going while the standby was down ({stopped_at} → {total})"
    );

    // Retried after replica_retry_after, it rejoins and answers again.
    wait_until(|| handle.replicas()[1].is_up(), "replica2 back in rotation").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.replicas()[1].reads_served() == served_by_2 {
        assert!(Instant::now() < deadline, "replica2 never answered again");
        resumes::resume(&handle, u.id, r.id).await.unwrap();
    }
    handle.close().await.unwrap();
}

#[tokio::test]
async fn a_replica_url_that_is_not_a_standby_gets_no_reads() {
    let db = TestDb::new().await;
    // The primary itself, listed as a replica: not in recovery.
    let mut config = DbConfig::new(db.url());
    config.replica_urls = vec![db.url().to_owned()];
    config.replica_check_interval = Duration::from_millis(50);
    let handle = config.connect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!handle.replicas()[0].is_up());
    let user = profiles::upsert_profile(&handle, &uid(3)).await.unwrap();
    profiles::profile_by_id(&handle, user.id).await.unwrap();
    assert_eq!(handle.replicas()[0].reads_served(), 0);
    assert_eq!(handle.primary_reads(), 1);
    handle.close().await.unwrap();
}
