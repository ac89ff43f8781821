//! Faults: the server going away (before a call and in the middle of a
//! COPY), a server that accepts but never answers, a frozen backend, and the
//! locking of a long chunk replace against edits, deletes and other
//! replaces.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::TestDb;
use mockinterview_db::chunks::{self, ResumeChunks};
use mockinterview_db::health::readiness;
use mockinterview_db::preferences::{self, PreferencesUpdate};
use mockinterview_db::profiles::{self, FirebaseUser, ProfileField};
use mockinterview_db::resumes::{self, NewResume, PdfUpload};
use mockinterview_db::{Db, DbConfig, Error, SearchQuery, SearchScope};
use sea_orm::ConnectionTrait;

use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use crate::support::*;

/// A TCP proxy to the database server that the test can shut: the port
/// then refuses connections and every proxied connection is cut.
struct Proxy {
    port: u16,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { break };
                        conns.spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                }
            }
            // Dropping the listener and every connection: refused and cut.
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        });
        Self { port, stop, task }
    }

    async fn shut(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

fn upstream(db: &TestDb) -> SocketAddr {
    let url = db.db_url();
    let host = if url.host() == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        url.host()
    };
    format!("{host}:{}", url.port()).parse().unwrap()
}

/// A handle on `db` with a unique `application_name`, to find its backends.
async fn handle(db: &TestDb, tune: impl FnOnce(&mut DbConfig)) -> (Db, String) {
    let app = format!("mi-faults-{}", Uuid::new_v4().simple());
    let mut config = DbConfig::new(db.url());
    config.application_name = app.clone();
    tune(&mut config);
    (config.connect().await.unwrap(), app)
}

/// Waits until a backend of `app` runs a statement starting with `prefix`;
/// returns its pid.
async fn backend_running(admin: &impl ConnectionTrait, app: &str, prefix: &str) -> i32 {
    let started = Instant::now();
    loop {
        let pids = strings(
            admin,
            &format!(
                "SELECT pid::text FROM pg_stat_activity WHERE application_name = '{app}' \
                 AND state = 'active' AND query LIKE '{prefix}%'"
            ),
        )
        .await;
        if let Some(pid) = pids.first() {
            return pid.parse().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no backend of {app} ran {prefix}…"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[track_caller]
fn assert_unavailable<T: std::fmt::Debug>(what: &str, r: mockinterview_db::Result<T>) {
    assert!(
        matches!(r, Err(Error::Unavailable { .. })),
        "{what}: expected Unavailable, got {r:?}"
    );
}

#[tokio::test]
async fn every_call_is_unavailable_when_the_server_goes_away() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 3).await;
    let proxy = Proxy::start(upstream(&db)).await;
    let proxied = db.db_url().with_port(proxy.port);
    let target = proxied.target();
    let mut config = DbConfig::new(proxied.as_str());
    config.acquire_timeout = Duration::from_millis(500);
    config.call_timeout = Some(Duration::from_secs(10));
    let h = config.connect().await.unwrap();
    // Works through the proxy...
    assert_eq!(resumes::list_resumes(&h, u.id).await.unwrap().len(), 1);
    // ...until the server is gone: refused for new connections, cut for
    // the pooled ones.
    proxy.shut().await;

    let fb = FirebaseUser {
        uid: "ada".into(),
        ..Default::default()
    };
    let new = || NewResume {
        user_id: u.id,
        title: "CV".into(),
        file_name: "cv.pdf".into(),
        pdf: PdfUpload::inline(pdf(1)).unwrap(),
        content: None,
    };
    let set = chunks(9, 2);
    let q = |scope| SearchQuery::new(embedding(1), 3, scope);
    assert_unavailable("upsert_profile", profiles::upsert_profile(&h, &fb).await);
    assert_unavailable("create_profile", profiles::create_profile(&h, &fb).await);
    assert_unavailable("profile_by_uid", profiles::profile_by_uid(&h, "ada").await);
    assert_unavailable("profile_by_id", profiles::profile_by_id(&h, u.id).await);
    assert_unavailable(
        "clear_profile_fields",
        profiles::clear_profile_fields(&h, u.id, &[ProfileField::Email]).await,
    );
    assert_unavailable("delete_profile", profiles::delete_profile(&h, u.id).await);
    assert_unavailable("preferences", preferences::preferences(&h, u.id).await);
    assert_unavailable(
        "update_preferences",
        preferences::update_preferences(
            &h,
            u.id,
            PreferencesUpdate {
                duration_minutes: Some(45),
                ..Default::default()
            },
        )
        .await,
    );
    assert_unavailable("create_resume", resumes::create_resume(&h, new()).await);
    assert_unavailable("list_resumes", resumes::list_resumes(&h, u.id).await);
    assert_unavailable("resume", resumes::resume(&h, u.id, r.id).await);
    assert_unavailable("resume_pdf", resumes::resume_pdf(&h, u.id, r.id).await);
    assert_unavailable(
        "update_resume_content",
        resumes::update_resume_content(&h, u.id, r.id, "text").await,
    );
    assert_unavailable(
        "delete_resume",
        resumes::delete_resume(&h, u.id, r.id).await,
    );
    assert_unavailable(
        "replace_resume_chunks",
        crate::support::replace(&h, u.id, r.id, &set).await,
    );
    assert_unavailable(
        "replace_chunks_bulk",
        mockinterview_db::chunks::replace_chunks(
            &h,
            &[ResumeChunks {
                user_id: u.id,
                resume_id: r.id,
                chunks: &set,
            }],
            mockinterview_db::chunks::Indexing::Now,
        )
        .await,
    );
    assert_unavailable("resume_chunks", chunks::resume_chunks(&h, u.id, r.id).await);
    for scope in [
        SearchScope::User(u.id),
        SearchScope::Resume {
            user_id: u.id,
            resume_id: r.id,
        },
        SearchScope::All,
    ] {
        assert_unavailable("search_chunks", chunks::search_chunks(&h, &q(scope)).await);
    }
    assert_unavailable("readiness", readiness(&h).await);
    // The message names the proxied target, never the password.
    let err = resumes::list_resumes(&h, u.id)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&target), "{target} not in {err}");
    // Nothing was written meanwhile.
    assert_eq!(
        chunks::resume_chunks(db.conn(), u.id, r.id)
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn a_connection_lost_in_the_middle_of_a_copy_is_unavailable_and_writes_nothing() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 3).await;
    let (h, app) = handle(&db, |_| {}).await;
    let big = chunks(5, 20_000);
    let replace = tokio::spawn(async move { crate::support::replace(&h, u.id, r.id, &big).await });
    let pid = backend_running(db.conn(), &app, "COPY resume_chunks").await;
    db.conn()
        .execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    let out = replace.await.unwrap();
    assert_unavailable("replace cut mid-COPY", out);
    // The old set is intact.
    let stored = chunks::resume_chunks(db.conn(), u.id, r.id).await.unwrap();
    assert_eq!(stored.len(), 3);
}

#[tokio::test]
async fn connect_gives_up_after_connect_timeout_on_a_server_that_never_answers() {
    // Accepts the TCP connection (the kernel does, from the backlog) and
    // never says anything.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut config = DbConfig::new(format!("postgres://u:secret@127.0.0.1:{port}/db"));
    config.connect_timeout = Duration::from_secs(1);
    config.acquire_timeout = Duration::from_secs(30);
    let started = Instant::now();
    let err = config.connect().await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("connect_timeout"), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    // A correctness bound (the timeout works), not a performance target.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(silent);
}

/// Sends SIGCONT to a stopped backend when dropped, so a failing test never
/// leaves one frozen.
struct Stopped(i32);

impl Stopped {
    fn stop(pid: i32) -> Self {
        let status = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -STOP {pid} (tests run as root)");
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[tokio::test]
async fn a_call_to_a_frozen_backend_returns_unavailable_after_call_timeout() {
    let db = TestDb::new().await;
    let (u, _) = ada_with_chunks(db.conn(), 0).await;
    let (h, app) = handle(&db, |c| {
        c.max_connections = 1;
        c.call_timeout = Some(Duration::from_secs(1));
    })
    .await;
    profiles::profile_by_id(&h, u.id).await.unwrap();
    let pid: i32 = strings(
        db.conn(),
        &format!("SELECT pid::text FROM pg_stat_activity WHERE application_name = '{app}'"),
    )
    .await[0]
        .parse()
        .unwrap();
    let frozen = Stopped::stop(pid);
    let started = Instant::now();
    let out = profiles::profile_by_id(&h, u.id).await;
    let took = started.elapsed();
    drop(frozen);
    db.conn()
        .execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    match &out {
        Err(e @ Error::Unavailable { .. }) => {
            assert!(e.to_string().contains("call_timeout"), "{e}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "took {took:?}"
    );
}

#[tokio::test]
async fn a_long_replace_does_not_block_edits_of_the_resume() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;
    let (h, app) = handle(&db, |c| c.call_timeout = Some(Duration::from_secs(600))).await;
    let big = chunks(6, 6000);
    let replace = tokio::spawn(async move { crate::support::replace(&h, u.id, r.id, &big).await });
    backend_running(db.conn(), &app, "COPY resume_chunks").await;
    resumes::update_resume_content(db.conn(), u.id, r.id, "edited during the replace")
        .await
        .unwrap();
    assert!(
        !replace.is_finished(),
        "the edit returned while the replace was still loading"
    );
    assert_eq!(replace.await.unwrap().unwrap().len(), 6000);
    let detail = resumes::resume(db.conn(), u.id, r.id).await.unwrap();
    assert_eq!(detail.content.as_deref(), Some("edited during the replace"));
}

#[tokio::test]
async fn a_delete_during_a_replace_leaves_no_orphans() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;
    let second = resume(db.conn(), u.id, "second").await;
    // The delete waits for the replace: neither may hit the call timeout on
    // a loaded machine.
    let (deleter, _) = handle(&db, |c| c.call_timeout = Some(Duration::from_secs(600))).await;
    for (victim, delete_profile) in [(r.id, false), (second.id, true)] {
        let (h, app) = handle(&db, |c| c.call_timeout = Some(Duration::from_secs(600))).await;
        let big = chunks(7, 3000);
        let replace =
            tokio::spawn(async move { crate::support::replace(&h, u.id, victim, &big).await });
        backend_running(db.conn(), &app, "COPY resume_chunks").await;
        if delete_profile {
            profiles::delete_profile(&deleter, u.id).await.unwrap();
        } else {
            resumes::delete_resume(&deleter, u.id, victim)
                .await
                .unwrap();
        }
        // The delete waited for the replace to commit, then removed its
        // chunks too.
        replace.await.unwrap().unwrap();
        assert_eq!(
            strings(
                db.conn(),
                &format!(
                    "SELECT count(*)::text FROM resume_chunks \
                     WHERE metadata->>'resume_id' = '{victim}'"
                )
            )
            .await,
            ["0"]
        );
    }
    assert_eq!(
        strings(db.conn(), "SELECT count(*)::text FROM resume_chunks").await,
        ["0"]
    );
}

#[tokio::test]
async fn concurrent_replaces_of_one_resume_never_mix_sets() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;
    let sizes = [7_usize, 11, 13, 17];
    let mut writers = Vec::new();
    for (seed, n) in sizes.iter().enumerate() {
        let conn = db.conn().clone();
        let n = *n;
        writers.push(tokio::spawn(async move {
            let set = chunks(100 + seed as u64, n);
            for _ in 0..5 {
                crate::support::replace(&conn, u.id, r.id, &set)
                    .await
                    .unwrap();
            }
        }));
    }
    let reader_conn = db.conn().clone();
    let reader = tokio::spawn(async move {
        let mut checks = 0;
        for _ in 0..200 {
            let stored = chunks::resume_chunks(&reader_conn, u.id, r.id)
                .await
                .unwrap();
            if stored.is_empty() {
                continue;
            }
            // All from one writer: "chunk {seed}/{i}" with one seed, complete.
            let seeds: std::collections::HashSet<String> = stored
                .iter()
                .map(|c| {
                    c.text
                        .clone()
                        .unwrap()
                        .split('/')
                        .next()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            assert_eq!(seeds.len(), 1, "mixed sets: {seeds:?}");
            let seed: usize = seeds.iter().next().unwrap()[6..].parse().unwrap();
            assert_eq!(stored.len(), sizes[seed - 100], "partial set");
            checks += 1;
        }
        checks
    });
    for w in writers {
        w.await.unwrap();
    }
    assert!(reader.await.unwrap() > 0);
    let stored = chunks::resume_chunks(db.conn(), u.id, r.id).await.unwrap();
    assert!(sizes.contains(&stored.len()));
}
