//! The migrated schema: exactly what `expected.rs` describes, and the
//! behaviour of its keys, checks and triggers.

use migration::catalog::Catalog;
use migration::expected;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, TransactionTrait};
use test_db::TestDatabase;

use crate::common::*;

#[tokio::test]
async fn the_migrated_schema_is_exactly_the_expected_description() {
    let db = TestDatabase::new().await;
    let mut live = Catalog::snapshot(db.conn()).await.unwrap();
    assert_eq!(live.schema, "public");
    assert!(live.extensions.contains_key("vector"));
    live.extensions.clear();
    let differences: Vec<String> = expected::catalog()
        .diff(&live)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        differences.is_empty(),
        "the migrations and migration/src/schema/expected.rs disagree:\n{}",
        differences.join("\n")
    );
}

#[tokio::test]
async fn resume_chunk_ids_are_generated_by_the_database() {
    // Other services insert LangChain's columns without an id.
    let db = TestDatabase::new().await;
    let id = strings(
        db.conn(),
        "INSERT INTO resume_chunks (text) VALUES ('x') RETURNING id::text",
    )
    .await;
    assert_eq!(id[0].len(), 36);
}

#[tokio::test]
async fn foreign_keys_cascade_to_user_profiles() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    seed_one_user_with_resume_and_preferences(conn).await;
    conn.execute_unprepared("DELETE FROM user_profiles")
        .await
        .unwrap();
    for table in ["resumes", "user_preferences"] {
        let n = strings(conn, &format!("SELECT count(*)::text FROM {table}")).await;
        assert_eq!(n, ["0"], "{table} rows must go with their profile");
    }
}

#[tokio::test]
async fn check_constraints_reject_out_of_domain_values() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    let uid = strings(
        conn,
        "INSERT INTO user_profiles (firebase_uid) VALUES ('u1') RETURNING id::text",
    )
    .await
    .remove(0);
    for bad in [
        "INSERT INTO user_profiles (firebase_uid) VALUES ('')".to_owned(),
        "INSERT INTO user_profiles (firebase_uid) VALUES ('u1')".to_owned(),
        format!("INSERT INTO user_preferences (user_id, difficulty) VALUES ('{uid}', 'extreme')"),
        format!("INSERT INTO user_preferences (user_id, theme) VALUES ('{uid}', 'neon')"),
        format!("INSERT INTO user_preferences (user_id, duration) VALUES ('{uid}', 0)"),
        format!(
            "INSERT INTO resumes (user_id, title, file_name, file_size) VALUES ('{uid}', 'CV', 'cv.pdf', -1)"
        ),
        format!(
            "INSERT INTO resumes (user_id, title, file_name, file_size) VALUES ('{uid}', '', 'cv.pdf', 1)"
        ),
        format!(
            "INSERT INTO resumes (user_id, title, file_name, file_size, file_data) \
             VALUES ('{uid}', 'CV', 'cv.pdf', 3, '\\x00')"
        ),
        "INSERT INTO resumes (user_id, title, file_name, file_size) \
         VALUES (gen_random_uuid(), 'CV', 'cv.pdf', 1)"
            .to_owned(),
    ] {
        assert!(
            conn.execute_unprepared(&bad).await.is_err(),
            "accepted: {bad}"
        );
    }
    // Two preferences rows for one user are refused too.
    conn.execute_unprepared(&format!(
        "INSERT INTO user_preferences (user_id) VALUES ('{uid}')"
    ))
    .await
    .unwrap();
    assert!(
        conn.execute_unprepared(&format!(
            "INSERT INTO user_preferences (user_id) VALUES ('{uid}')"
        ))
        .await
        .is_err()
    );
}

#[tokio::test]
async fn updated_at_trigger_advances_on_update_in_a_later_transaction() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    seed_one_user_with_resume_and_preferences(conn).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let txn = conn.begin().await.unwrap();
    for update in [
        "UPDATE user_profiles SET email = 'a@b.c'",
        "UPDATE user_preferences SET theme = 'dark'",
        "UPDATE resumes SET title = 'New CV'",
    ] {
        txn.execute_unprepared(update).await.unwrap();
    }
    txn.commit().await.unwrap();
    for table in ["user_profiles", "user_preferences", "resumes"] {
        let moved = strings(
            conn,
            &format!("SELECT (updated_at > created_at)::text FROM {table}"),
        )
        .await;
        assert_eq!(moved, ["true"], "{table}.updated_at must advance");
    }
}

#[tokio::test]
async fn deleting_resumes_or_profiles_by_plain_sql_deletes_their_chunks() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    // Two users; user 1 has two resumes and a chunk without resume_id.
    let ids = strings(
        conn,
        "WITH p AS (INSERT INTO user_profiles (firebase_uid) VALUES ('u1'), ('u2') RETURNING id, firebase_uid), \
              r AS (INSERT INTO resumes (user_id, title, file_name, file_size) \
                    SELECT id, t, t || '.pdf', 0 FROM p, (VALUES ('a'), ('b')) v(t) RETURNING id, user_id) \
         SELECT p.firebase_uid || ' ' || p.id || ' ' || r.id FROM r JOIN p ON p.id = r.user_id ORDER BY 1")
    .await;
    for row in &ids {
        let [_, user, resume] = row.split(' ').collect::<Vec<_>>()[..] else {
            unreachable!()
        };
        conn.execute_unprepared(&format!(
            "INSERT INTO resume_chunks (text, metadata) VALUES \
             ('c1', '{{\"user_id\": \"{user}\", \"resume_id\": \"{resume}\"}}'), \
             ('c2', '{{\"user_id\": \"{user}\", \"resume_id\": \"{resume}\"}}')"
        ))
        .await
        .unwrap();
    }
    let u1 = ids[0].split(' ').nth(1).unwrap().to_owned();
    conn.execute_unprepared(&format!(
        "INSERT INTO resume_chunks (text, metadata) VALUES ('loose', '{{\"user_id\": \"{u1}\"}}')"
    ))
    .await
    .unwrap();
    let count = |sql: &'static str| async move { strings(conn, sql).await.remove(0) };
    assert_eq!(count("SELECT count(*)::text FROM resume_chunks").await, "9");

    // A plain DELETE of one resume removes exactly its two chunks.
    let first_resume = ids[0].split(' ').nth(2).unwrap();
    conn.execute_unprepared(&format!("DELETE FROM resumes WHERE id = '{first_resume}'"))
        .await
        .unwrap();
    assert_eq!(count("SELECT count(*)::text FROM resume_chunks").await, "7");

    // Deleting user 1 cascades to its other resume and removes its chunks,
    // the loose one included; user 2's four chunks stay.
    conn.execute_unprepared("DELETE FROM user_profiles WHERE firebase_uid = 'u1'")
        .await
        .unwrap();
    assert_eq!(count("SELECT count(*)::text FROM resume_chunks").await, "4");
    assert_eq!(
        count("SELECT count(DISTINCT metadata->>'user_id')::text FROM resume_chunks").await,
        "1"
    );
}

/// Inserts profile `u1` with one resume and a preferences row, by plain SQL.
async fn seed_one_user_with_resume_and_preferences(conn: &sea_orm::DatabaseConnection) {
    conn.execute_unprepared(
        "WITH p AS (INSERT INTO user_profiles (firebase_uid) VALUES ('u1') RETURNING id), \
              r AS (INSERT INTO resumes (user_id, title, file_name, file_size) \
                    SELECT id, 'CV', 'cv.pdf', 0 FROM p) \
         INSERT INTO user_preferences (user_id) SELECT id FROM p",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn uuid_strings_in_chunk_metadata_ids_are_stored_in_lower_case() {
    let db = TestDatabase::new().await;
    let conn = db.conn();
    let user = "3F2504E0-4F89-41D3-9A0C-0305E82C3301";
    let resume = "A1B2C3D4-0000-4000-8000-00000000ABCD";
    let row = format!(
        "('upper', '{{\"user_id\": \"{user}\", \"resume_id\": \"{resume}\", \"page\": \"AB\"}}')"
    );
    // Written by someone else: lowercased on insert...
    conn.execute_unprepared(&format!(
        "INSERT INTO resume_chunks (text, metadata) VALUES {row}, \
         ('firebase', '{{\"user_id\": \"AbCdEf123\", \"resume_id\": 42}}'), \
         ('mixed', '{{\"user_id\": \"3f2504e0-4F89-41d3-9a0c-0305e82c3301\"}}')"
    ))
    .await
    .unwrap();
    let metadata = |text: &'static str| async move {
        strings(
            conn,
            &format!("SELECT metadata::text FROM resume_chunks WHERE text = '{text}'"),
        )
        .await
        .remove(0)
    };
    assert_eq!(
        metadata("upper").await,
        format!(
            r#"{{"page": "AB", "user_id": "{}", "resume_id": "{}"}}"#,
            user.to_lowercase(),
            resume.to_lowercase()
        )
    );
    assert_eq!(
        metadata("mixed").await,
        r#"{"user_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301"}"#
    );
    // ...a Firebase uid (case-sensitive) and a number are left alone.
    assert_eq!(
        metadata("firebase").await,
        r#"{"user_id": "AbCdEf123", "resume_id": 42}"#
    );
    // ...and on update.
    conn.execute_unprepared(&format!(
        "UPDATE resume_chunks SET metadata = jsonb_set(metadata, '{{user_id}}', '\"{user}\"') \
         WHERE text = 'firebase'"
    ))
    .await
    .unwrap();
    assert!(metadata("firebase").await.contains(&user.to_lowercase()));

    // Rows written before the migration are lowercased by its `up`; its
    // `down` leaves them lowercased (same ids, canonical spelling). (m008,
    // m009 and m010 come after m007: four steps.)
    Migrator::down(conn, Some(4)).await.unwrap();
    conn.execute_unprepared(&format!(
        "DELETE FROM resume_chunks; INSERT INTO resume_chunks (text, metadata) VALUES {row}"
    ))
    .await
    .unwrap();
    assert!(metadata("upper").await.contains(user));
    Migrator::up(conn, None).await.unwrap();
    assert!(metadata("upper").await.contains(&user.to_lowercase()));
    Migrator::down(conn, Some(4)).await.unwrap();
    assert!(metadata("upper").await.contains(&user.to_lowercase()));
}
