//! `migration settings`: the library's settings as role settings, after
//! which a handle configured the same way sends none of them.

use std::time::Duration;

use mockinterview_db::DbConfig;
use mockinterview_db::health::effective_settings;
use test_db::TestDatabase;

use crate::common::ok;

#[tokio::test]
async fn role_settings_make_the_library_send_none() {
    let db = TestDatabase::new().await;
    let me = db.db_url().user().to_owned();
    let configured = |timeout_ms: u64| {
        let mut config = DbConfig::new(db.url());
        config.statement_timeout = Some(Duration::from_millis(timeout_ms));
        config.hnsw_ef_search = Some(1);
        config
    };
    let before = configured(4321).connect().await.unwrap();
    assert_eq!(
        before.settings_applied_per_transaction(),
        ["statement_timeout", "hnsw.ef_search", "hnsw.iterative_scan"]
    );
    before.close().await.unwrap();

    let args = [
        "settings",
        "--role",
        &me,
        "--statement-timeout-ms",
        "4321",
        "--hnsw-ef-search",
        "1",
    ];
    let printed = ok(db.url(), &args);
    assert_eq!(printed.matches("ALTER ROLE").count(), 3, "{printed}");
    assert!(
        printed.contains("SET statement_timeout = '4321ms'"),
        "{printed}"
    );
    let mut apply = args.to_vec();
    apply.push("--apply");
    ok(db.url(), &apply);

    let after = configured(4321).connect().await.unwrap();
    assert!(
        after.settings_applied_per_transaction().is_empty(),
        "{:?}",
        after.settings_applied_per_transaction()
    );
    let s = effective_settings(&after).await.unwrap();
    assert_eq!(s.statement_timeout, "4321ms");
    assert_eq!(s.hnsw_ef_search.as_deref(), Some("1"));
    after.close().await.unwrap();

    // A handle configured otherwise applies the difference itself.
    let other = configured(5000).connect().await.unwrap();
    assert_eq!(
        other.settings_applied_per_transaction(),
        ["statement_timeout"]
    );
    assert_eq!(
        effective_settings(&other).await.unwrap().statement_timeout,
        "5s"
    );
    other.close().await.unwrap();
}
