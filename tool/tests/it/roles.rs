//! The owner / application role split of `migration roles`: the owner
//! migrates, the application role reads and writes rows (with the
//! library), checks the schema version without writing, and may not change
//! the schema; tables later migrations create are usable by it.

use crate::common::*;
use migration::lock;
use mockinterview_db::chunks::{self, SearchQuery, SearchScope};
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::resumes::{self, NewResume, PdfUpload};
use mockinterview_db::staged;
use mockinterview_db::{Embedding, NewChunk};
use pgconn::DbUrl;
use sea_orm::{ConnectionTrait, Database};
use test_db::TestDatabase;

/// Drops the test's roles (and what they own in the test database) when
/// the test ends, also when it panics.
struct Roles {
    admin: DbUrl,
    names: Vec<String>,
}

impl Drop for Roles {
    fn drop(&mut self) {
        let (admin, names) = (self.admin.clone(), self.names.clone());
        // Drop cannot await; the test's runtime is busy unwinding.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let conn = Database::connect(admin.as_str()).await?;
                // One role at a time, the application first: PostgreSQL 15's
                // `DROP OWNED BY owner, app` fails on the owner's default
                // privileges granted to app ("could not find tuple for
                // default ACL").
                for n in names.iter().rev() {
                    conn.execute_unprepared(&format!("DROP OWNED BY \"{n}\""))
                        .await?;
                }
                for n in &names {
                    conn.execute_unprepared(&format!("DROP ROLE IF EXISTS \"{n}\""))
                        .await?;
                }
                conn.close().await
            })
        })
        .join()
        .expect("role clean-up thread")
        .unwrap_or_else(|e| eprintln!("could not drop roles {:?}: {e}", self.names));
    }
}

fn sqlstate(err: &sea_orm::DbErr) -> String {
    pgconn::sqlstate(err).unwrap_or_default()
}

#[tokio::test]
async fn the_owner_migrates_and_the_application_role_works_without_ddl() {
    let db = TestDatabase::empty().await;
    let (owner, app) = (format!("{}_owner", db.name()), format!("{}_app", db.name()));
    let _roles = Roles {
        admin: db.db_url().clone(),
        names: vec![owner.clone(), app.clone()],
    };

    // The SQL, printed and applied (as the superuser of DATABASE_URL).
    let sql = ok(db.url(), &["roles", "--owner", &owner, "--app", &app]);
    for part in [
        "CREATE EXTENSION IF NOT EXISTS vector",
        "ALTER DEFAULT PRIVILEGES FOR ROLE",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO",
    ] {
        assert!(sql.contains(part), "{part:?} missing from:\n{sql}");
    }
    ok(
        db.url(),
        &["roles", "--owner", &owner, "--app", &app, "--apply"],
    );
    ok(
        db.url(),
        &["roles", "--owner", &owner, "--app", &app, "--apply"],
    ); // idempotent
    db.conn()
        .execute_unprepared(&format!(
            "ALTER ROLE \"{owner}\" PASSWORD 'owner-pw'; ALTER ROLE \"{app}\" PASSWORD 'app-pw'"
        ))
        .await
        .unwrap();
    let owner_url = db.db_url().with_credentials(&owner, "owner-pw");
    let app_url = db.db_url().with_credentials(&app, "app-pw");

    // The owner migrates: MIGRATION_DATABASE_URL wins over DATABASE_URL
    // (which names the application role, and would fail).
    let up = ok_with(
        app_url.as_str(),
        &["up"],
        &[("MIGRATION_DATABASE_URL", owner_url.as_str())],
    );
    let last = ALL[ALL.len() - 1];
    assert!(
        up.contains(&format!("Migration '{last}' has been applied")),
        "{up}"
    );
    assert_eq!(applied(db.conn()).await, *ALL);
    assert_eq!(
        strings(
            db.conn(),
            "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        std::slice::from_ref(&owner)
    );

    // The application role: status and verify (directly and through the
    // pooler), the start-up check, up_locked with nothing pending.
    for url in [app_url.clone(), through_tx_pooler(&app_url)] {
        let status = ok(url.as_str(), &["status"]);
        assert_eq!(
            status.matches("Applied").count(),
            ALL.len(),
            "{url}: {status}"
        );
        let report = ok(url.as_str(), &["verify"]);
        assert!(
            report.contains("OK: the database matches"),
            "{url}: {report}"
        );
        let conn = Database::connect(url.as_str()).await.unwrap();
        migration::ensure_schema_current(&conn).await.unwrap();
        lock::up_locked(&conn, None).await.unwrap();
        conn.close().await.unwrap();
    }

    // The library's DML as the application role.
    let conn = mockinterview_db::DbConfig::new(app_url.as_str())
        .connect()
        .await
        .unwrap();
    library_round_trip(&conn).await;
    conn.close().await.unwrap();
    let conn = Database::connect(app_url.as_str()).await.unwrap();

    // No DDL, and the bookkeeping is read-only for it.
    let err = conn
        .execute_unprepared("CREATE TABLE app_made (i int)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");
    let err = conn
        .execute_unprepared("INSERT INTO seaql_migrations VALUES ('m999_fake', 0)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");
    let err = conn
        .execute_unprepared("DROP TABLE resume_chunks")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");

    // A table created later by the owner (a later migration) is usable.
    let owner_conn = Database::connect(owner_url.as_str()).await.unwrap();
    owner_conn
        .execute_unprepared("CREATE TABLE later_table (id bigserial PRIMARY KEY, note text)")
        .await
        .unwrap();
    conn.execute_unprepared(
        "INSERT INTO later_table (note) VALUES ('x'); UPDATE later_table SET note = 'y'",
    )
    .await
    .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM later_table").await, 1);
    conn.execute_unprepared("DELETE FROM later_table")
        .await
        .unwrap();
    owner_conn
        .execute_unprepared("DROP TABLE later_table")
        .await
        .unwrap();

    // A pending migration: the application role's check says what to run,
    // and its up_locked explains why it may not apply it.
    ok(owner_url.as_str(), &["down"]);
    let err = migration::ensure_schema_current(&conn)
        .await
        .unwrap_err()
        .to_string();
    for part in [ALL[ALL.len() - 1], "migration up", "MIGRATION_DATABASE_URL"] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    let err = lock::up_locked(&conn, None).await.unwrap_err().to_string();
    for part in [
        format!("role \"{app}\""),
        "may not change the schema".into(),
        "MIGRATION_DATABASE_URL".into(),
    ] {
        assert!(err.contains(&part), "{part:?} missing from: {err}");
    }
    assert_eq!(applied(db.conn()).await, ALL[..ALL.len() - 1]);
    ok(owner_url.as_str(), &["up"]);
    migration::ensure_schema_current(&conn).await.unwrap();
    conn.close().await.unwrap();
    owner_conn.close().await.unwrap();
}

/// Profiles, resumes and chunks (COPY) with the library.
async fn library_round_trip(conn: &mockinterview_db::Db) {
    let user = profiles::upsert_profile(
        conn,
        &FirebaseUser {
            uid: "role-test-user".into(),
            email: Some("app@example.com".into()),
            display_name: None,
            photo_url: None,
        },
    )
    .await
    .unwrap();
    let resume = resumes::create_resume(
        conn,
        NewResume {
            user_id: user.id,
            title: "CV".into(),
            file_name: "cv.pdf".into(),
            pdf: PdfUpload::inline(b"%PDF-1.4 tiny".to_vec()).unwrap(),
            content: Some("text".into()),
        },
    )
    .await
    .unwrap();
    let vector = |x: f32| {
        let mut v = vec![0.0_f32; 768];
        v[0] = x;
        v[1] = 1.0;
        Embedding::new(
            &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
            v,
        )
        .unwrap()
    };
    let new = [
        NewChunk::new("first", vector(1.0)),
        NewChunk::new("second", vector(-1.0)),
    ];
    let set = |chunks| chunks::ResumeChunks {
        user_id: user.id,
        resume_id: resume.id,
        chunks,
    };
    let ids = chunks::replace_chunks(conn, &[set(&new)], chunks::Indexing::Now)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(ids.len(), 2);
    let hits = chunks::search_chunks(
        conn,
        &SearchQuery::new(vector(1.0), 1, SearchScope::User(user.id)),
    )
    .await
    .unwrap();
    assert_eq!(hits.len(), 1);
    // Staged uploads (m009's table) and their move into the index work for
    // the application role, also a whole-table search over both tables.
    let staged_ids = chunks::replace_chunks(conn, &[set(&new[..1])], chunks::Indexing::Deferred)
        .await
        .unwrap()
        .remove(0);
    let all = chunks::search_chunks(conn, &SearchQuery::new(vector(1.0), 5, SearchScope::All))
        .await
        .unwrap();
    assert_eq!(all.iter().map(|h| h.id).collect::<Vec<_>>(), staged_ids);
    assert_eq!(
        staged::index_staged_chunks(conn, 1).await.unwrap().chunks,
        1
    );
    // Deleting the profile cascades (m004's triggers run as this role).
    chunks::replace_chunks(conn, &[set(&new)], chunks::Indexing::Deferred)
        .await
        .unwrap();
    conn.execute_unprepared("DELETE FROM user_profiles")
        .await
        .unwrap();
    assert_eq!(count(conn, "SELECT count(*) FROM resume_chunks").await, 0);
    assert_eq!(
        count(conn, "SELECT count(*) FROM resume_chunks_staged").await,
        0
    );
}
