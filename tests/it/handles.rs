//! Every form of the handle runs with the same settings: the `Db`,
//! `primary()`, a read-your-writes session, a transaction from
//! `db.begin()`, and the `Db` used as a SeaORM connection (raw SQL
//! included), directly and through PgBouncer in transaction and session
//! mode.

use std::time::{Duration, Instant};

use mockinterview_db::health::{EffectiveSettings, effective_settings};
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::{Db, DbConfig, Error};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait};

use crate::support::*;

/// `current_setting` of the four settings, read with raw SQL through `c`.
async fn raw_settings(c: &impl ConnectionTrait) -> EffectiveSettings {
    let row = c
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('search_path') AS search_path, \
                    current_setting('statement_timeout') AS statement_timeout, \
                    current_setting('hnsw.ef_search', true) AS ef_search, \
                    current_setting('hnsw.iterative_scan', true) AS iterative_scan",
        ))
        .await
        .unwrap()
        .unwrap();
    EffectiveSettings {
        search_path: row.try_get("", "search_path").unwrap(),
        statement_timeout: row.try_get("", "statement_timeout").unwrap(),
        hnsw_ef_search: row.try_get("", "ef_search").unwrap(),
        hnsw_iterative_scan: row.try_get("", "iterative_scan").unwrap(),
    }
}

/// The three URLs of `db`: direct, transaction pooler, session pooler.
async fn urls(db: &test_db::TestDatabase) -> [(&'static str, String); 3] {
    [
        ("direct", db.url().to_owned()),
        ("transaction pooler", pooled(db).await),
        ("session pooler", session_pooled(db).await),
    ]
}

fn configured(url: &str) -> DbConfig {
    let mut config = DbConfig::new(url);
    config.schema = Some("app,public".into());
    config.statement_timeout = Some(Duration::from_millis(4321));
    config.hnsw_ef_search = Some(1);
    config
}

fn expected() -> EffectiveSettings {
    EffectiveSettings {
        search_path: r#""app", "public""#.into(),
        statement_timeout: "4321ms".into(),
        hnsw_ef_search: Some("1".into()),
        hnsw_iterative_scan: Some("strict_order".into()),
    }
}

#[tokio::test]
async fn every_handle_reads_the_same_effective_settings() {
    let db = app_schema_database().await;
    for (how, url) in urls(&db).await {
        let handle = configured(&url).connect().await.unwrap();
        let want = expected();
        let check = |what: &str, got: EffectiveSettings| {
            assert_eq!(got, want, "{what}, {how}");
        };
        check("Db", effective_settings(&handle).await.unwrap());
        check(
            "primary()",
            effective_settings(&handle.primary()).await.unwrap(),
        );
        check(
            "session()",
            effective_settings(&handle.session()).await.unwrap(),
        );
        check("&Db, raw SQL", raw_settings(&handle).await);
        let txn = handle.begin().await.unwrap();
        check("db.begin()", effective_settings(&txn).await.unwrap());
        check("db.begin(), raw SQL", raw_settings(&txn).await);
        let nested = txn.begin().await.unwrap();
        check("savepoint, raw SQL", raw_settings(&nested).await);
        nested.commit().await.unwrap();
        txn.commit().await.unwrap();
        let in_callback = handle
            .transaction::<_, _, DbErr>(|t| Box::pin(async move { Ok(raw_settings(t).await) }))
            .await
            .unwrap();
        check("db.transaction(..), raw SQL", in_callback);
        handle.close().await.unwrap();
    }
}

/// The schema list reaches data functions in a caller's transaction, the
/// pattern the README shows (begin, then pass `&txn`).
#[tokio::test]
async fn data_functions_in_a_transaction_find_a_non_public_schema() {
    let db = app_schema_database().await;
    for (how, url) in urls(&db).await {
        let handle = configured(&url).connect().await.unwrap();
        let txn = handle.begin().await.unwrap();
        let user = profiles::upsert_profile(
            &txn,
            &FirebaseUser {
                uid: format!("in-txn-{}", how.replace(' ', "-")),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{how}: {e:?}"));
        let r = resume(&txn, user.id, "cv").await;
        txn.commit().await.unwrap();
        assert_eq!(
            mockinterview_db::resumes::list_resumes(&handle, user.id)
                .await
                .unwrap()[0]
                .id,
            r.id,
            "{how}"
        );
        handle.close().await.unwrap();
    }
}

/// `DATABASE_SCHEMA=app,public` is a list for the library as for the
/// migration tool.
#[tokio::test]
async fn database_schema_from_the_environment_is_a_list() {
    let db = app_schema_database().await;
    let mut config = DbConfig::new(db.url());
    config.schema = Some(" app , public ".into());
    let handle = config.connect().await.unwrap();
    assert_eq!(
        effective_settings(&handle).await.unwrap().search_path,
        r#""app", "public""#
    );
    profiles::upsert_profile(
        &handle,
        &FirebaseUser {
            uid: "listed".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    handle.close().await.unwrap();
}

fn is_cancelled(e: &DbErr) -> bool {
    Error::from(e.clone()).sqlstate().as_deref() == Some("57014")
}

/// The configured `statement_timeout` cancels a slow statement through
/// every handle: data functions, raw SQL on the `Db`, raw SQL in a
/// transaction, directly and through both poolers.
#[tokio::test]
async fn the_statement_timeout_cancels_raw_sql_through_every_handle() {
    let db = TestDb::new().await;
    for (how, url) in urls(&db).await {
        let mut config = DbConfig::new(url);
        config.statement_timeout = Some(Duration::from_millis(300));
        let handle = config.connect().await.unwrap();
        let sleep = || Statement::from_string(DbBackend::Postgres, "SELECT pg_sleep(3)");
        let started = Instant::now();
        let e = handle.execute_raw(sleep()).await.unwrap_err();
        assert!(is_cancelled(&e), "&Db, {how}: {e:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "&Db, {how}");
        let txn = handle.begin().await.unwrap();
        let started = Instant::now();
        let e = txn.query_one_raw(sleep()).await.unwrap_err();
        assert!(is_cancelled(&e), "db.begin(), {how}: {e:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "db.begin(), {how}"
        );
        txn.rollback().await.unwrap();
        // A data function that waits on a lock held elsewhere runs into
        // the statement timeout too, through every store.
        let locker = db.raw().begin().await.unwrap();
        locker
            .execute_unprepared("LOCK TABLE user_profiles IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let waits = |e: Error, what: &str| {
            assert_eq!(
                e.sqlstate().as_deref(),
                Some("57014"),
                "{what}, {how}: {e:?}"
            );
        };
        waits(
            profiles::profile_by_uid(&handle, "nobody")
                .await
                .unwrap_err(),
            "Db",
        );
        waits(
            profiles::profile_by_uid(&handle.primary(), "nobody")
                .await
                .unwrap_err(),
            "primary()",
        );
        waits(
            profiles::profile_by_uid(&handle.session(), "nobody")
                .await
                .unwrap_err(),
            "session()",
        );
        let txn = handle.begin().await.unwrap();
        waits(
            profiles::profile_by_uid(&txn, "nobody").await.unwrap_err(),
            "db.begin()",
        );
        txn.rollback().await.unwrap();
        locker.rollback().await.unwrap();
        handle.close().await.unwrap();
    }
}

/// The call timeout bounds raw SQL on the handle too.
#[tokio::test]
async fn the_call_timeout_bounds_raw_sql() {
    let db = TestDb::new().await;
    let mut config = DbConfig::new(db.url());
    config.call_timeout = Some(Duration::from_millis(300));
    let handle: Db = config.connect().await.unwrap();
    let started = Instant::now();
    let e = handle
        .execute_unprepared("SELECT pg_sleep(3)")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("DbConfig::call_timeout"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    handle.close().await.unwrap();
}

/// Settings the role already holds (`ALTER ROLE ... IN DATABASE ... SET`,
/// which survives any pooler) hold through every handle without being sent
/// (the unit test `settings::tests::settings_the_role_holds_are_dropped`
/// checks that they are not sent).
#[tokio::test]
async fn settings_held_by_the_role_hold_through_every_handle() {
    let db = TestDb::new().await;
    let name = db.name().to_owned();
    db.raw()
        .execute_unprepared(&format!(
            "ALTER ROLE CURRENT_USER IN DATABASE \"{name}\" SET statement_timeout = '4321ms'; \
             ALTER ROLE CURRENT_USER IN DATABASE \"{name}\" SET hnsw.ef_search = 1; \
             ALTER ROLE CURRENT_USER IN DATABASE \"{name}\" SET hnsw.iterative_scan = strict_order"
        ))
        .await
        .unwrap();
    for (how, url) in urls(&db).await {
        let mut config = DbConfig::new(url);
        config.statement_timeout = Some(Duration::from_millis(4321));
        config.hnsw_ef_search = Some(1);
        let handle = config.connect().await.unwrap();
        let s = effective_settings(&handle).await.unwrap();
        assert_eq!(
            (s.statement_timeout.as_str(), s.hnsw_ef_search.as_deref()),
            ("4321ms", Some("1")),
            "{how}"
        );
        let raw = raw_settings(&handle).await;
        assert_eq!(raw.statement_timeout, "4321ms", "{how}");
        assert_eq!(raw.hnsw_ef_search.as_deref(), Some("1"), "{how}");
        handle.close().await.unwrap();
    }
}
