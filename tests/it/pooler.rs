//! The library behind PgBouncer in transaction mode (`scripts/pooler-up`:
//! PgBouncer >= 1.21 with `max_prepared_statements` on 6432, configured
//! with `ignore_startup_parameters = extra_float_digits` only), and in a
//! schema other than `public`, directly and through the pooler.

use std::time::Duration;

use mockinterview_db::chunks::{self, search_chunks};
use mockinterview_db::health::effective_settings;
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::{DbConfig, SearchQuery, SearchScope};

use crate::support::TestDb;

use crate::support::*;

#[tokio::test]
async fn search_settings_hold_through_a_transaction_mode_pooler() {
    let db = TestDb::new().await;
    let mut config = DbConfig::new(pooled(&db).await);
    config.hnsw_ef_search = Some(123);
    config.statement_timeout = Some(Duration::from_secs(7));
    // Few pooled server connections for many client connections: the
    // settings must hold whichever server connection a call lands on.
    config.max_connections = 8;
    // Correctness, not latency: the machine may be busy.
    config.acquire_timeout = Duration::from_secs(60);
    let handle = config.connect().await.expect("connect through PgBouncer");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let s = effective_settings(&handle).await.unwrap();
                assert_eq!(s.hnsw_ef_search.as_deref(), Some("123"));
                assert_eq!(s.hnsw_iterative_scan.as_deref(), Some("strict_order"));
                assert_eq!(s.statement_timeout, "7s");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    handle.close().await.unwrap();
}

#[tokio::test]
async fn the_whole_api_works_through_the_pooler_under_concurrency() {
    let db = TestDb::new().await;
    let mut config = DbConfig::new(pooled(&db).await);
    config.max_connections = 6;
    config.acquire_timeout = Duration::from_secs(60);
    let handle = config.connect().await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..6_u64 {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let user = profiles::upsert_profile(
                &handle,
                &FirebaseUser {
                    uid: format!("pooled-{n}"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let r = resume(&handle, user.id, "cv").await;
            for round in 0..5 {
                crate::support::replace(&handle, user.id, r.id, &chunks(n * 10 + round, 30))
                    .await
                    .unwrap();
                let hits = search_chunks(
                    &handle,
                    &SearchQuery::new(embedding(1), 5, SearchScope::User(user.id)),
                )
                .await
                .unwrap();
                assert_eq!(hits.len(), 5);
                let all = search_chunks(
                    &handle,
                    &SearchQuery::new(embedding(2), 5, SearchScope::All),
                )
                .await
                .unwrap();
                assert_eq!(all.len(), 5);
            }
            assert_eq!(
                chunks::resume_chunks(&handle, user.id, r.id)
                    .await
                    .unwrap()
                    .len(),
                30
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    handle.close().await.unwrap();
}

#[tokio::test]
async fn a_schema_setting_works_directly_and_through_the_pooler() {
    let db = app_schema_database().await;
    for url in [db.url().to_owned(), pooled(&db).await] {
        // Without the setting the migrations are not found: connect says
        // so, instead of every call failing later...
        let err = DbConfig::new(url.as_str()).connect().await.unwrap_err();
        assert!(
            matches!(err, mockinterview_db::Error::SchemaBehind { .. }),
            "{err:?}"
        );

        // ... with it, everything works, vectors included.
        let mut config = DbConfig::new(url.as_str());
        config.schema = Some("app".into());
        let handle = config.connect().await.unwrap();
        assert_eq!(
            effective_settings(&handle).await.unwrap().search_path,
            r#""app", "public""#
        );
        let user = profiles::upsert_profile(
            &handle,
            &FirebaseUser {
                uid: format!("app-schema-{}", url.contains(":6432")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let r = resume(&handle, user.id, "cv").await;
        crate::support::replace(&handle, user.id, r.id, &chunks(3, 12))
            .await
            .unwrap();
        for scope in [SearchScope::User(user.id), SearchScope::All] {
            let hits = search_chunks(&handle, &SearchQuery::new(embedding(3000), 3, scope))
                .await
                .unwrap();
            assert_eq!(hits.len(), 3, "{scope:?} through {url}");
        }
        profiles::delete_profile(&handle, user.id).await.unwrap();
        handle.close().await.unwrap();
    }
}

/// Debian 12's PgBouncer 1.18 in transaction mode (`scripts/pooler-up
/// --with-legacy`), which cannot keep prepared statements.
const LEGACY_POOLER_PORT: u16 = 6434;

/// The library does not probe the pooler (the migration tool's `doctor`
/// does): a pooler that loses prepared statements shows as typed,
/// actionable errors from the calls that meet it (SQLSTATE 26000 or
/// 42P05), never as wrong answers.
#[tokio::test]
async fn a_pooler_that_loses_prepared_statements_fails_with_a_typed_hint() {
    let db = TestDb::new().await;
    if tokio::net::TcpStream::connect(("127.0.0.1", LEGACY_POOLER_PORT))
        .await
        .is_err()
    {
        panic!(
            "no PgBouncer 1.18 listens on 127.0.0.1:{LEGACY_POOLER_PORT}: start it with \
             `scripts/pooler-up --with-legacy` (or run everything with `scripts/test`)"
        );
    }
    let user = user(db.conn(), "legacy-pooler").await;
    let url = db.db_url().with_port(LEGACY_POOLER_PORT);
    let mut config = DbConfig::new(url.as_str());
    config.max_connections = 4;
    let mut failures = Vec::new();
    match config.connect().await {
        Err(e) => failures.push(e),
        Ok(handle) => {
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let handle = handle.clone();
                tasks.push(tokio::spawn(async move {
                    let mut errors = Vec::new();
                    for _ in 0..50 {
                        match profiles::profile_by_id(&handle, user.id).await {
                            Ok(p) => assert_eq!(p.id, user.id, "never a wrong answer"),
                            Err(e) => errors.push(e),
                        }
                    }
                    errors
                }));
            }
            for t in tasks {
                failures.extend(t.await.unwrap());
            }
        }
    }
    assert!(
        !failures.is_empty(),
        "PgBouncer 1.18 in transaction mode loses statements"
    );
    for err in failures {
        assert!(
            matches!(err, mockinterview_db::Error::Unavailable { .. }),
            "{err:?}"
        );
        assert!(
            matches!(err.sqlstate().as_deref(), Some("26000" | "42P05")),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("max_prepared_statements") && msg.contains("1.21"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn startup_options_in_the_url_become_per_call_settings() {
    let db = TestDb::new().await;
    // PgBouncer refuses startup parameters it does not know; the library
    // sends none and applies the URL's `options` inside each call.
    let url = format!("{}?options=-c%20statement_timeout%3D3s", pooled(&db).await);
    let handle = DbConfig::new(url).connect().await.unwrap();
    assert_eq!(
        effective_settings(&handle).await.unwrap().statement_timeout,
        "3s"
    );
    handle.close().await.unwrap();
}
