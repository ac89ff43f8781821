//! Production guard rails of the migration binary and library, against a
//! real server.

mod common;

use common::*;
use migration::lock;
use mockinterview_db::testing::TestDatabase;
use sea_orm::Database;

const ALL: [&str; 4] = [
    "m001_user_profiles",
    "m002_add_pdf_storage",
    "m003_create_vector_store",
    "m004_delete_orphan_chunks",
];

// ---------------------------------------------------------------- lock --

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
    assert_eq!(applied(db.conn()).await, ALL);
    assert!(
        lock::lock_holder(db.conn()).await.unwrap().is_none(),
        "released"
    );
    for conn in instances {
        conn.close().await.unwrap();
    }
}
