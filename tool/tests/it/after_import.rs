//! The library on data imported from the TypeScript app (the v3 legacy
//! fixture, imported in-process with `migration_tool::import`): lookups by
//! Firebase uid and by legacy id, resume lists, PDF downloads, chunk search
//! in every scope, a LangChain-style metadata filter, the primary resume.

use std::path::Path;
use std::process::Command;

use entity::resume_chunks;
use migration_tool::import::{ImportOptions, import};
use mockinterview_db::chunks::search_chunks;
use mockinterview_db::legacy::{self, LegacyTable};
use mockinterview_db::resumes::{self, StoredPdf};
use mockinterview_db::{Embedding, EmbeddingModel, Error, SearchQuery, SearchScope, profiles};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, sea_query::Expr};
use test_db::TestDatabase;

/// An empty migrated database and the library's handle to it.
struct TestDb {
    database: TestDatabase,
    db: mockinterview_db::Db,
}

impl TestDb {
    async fn new() -> Self {
        let database = TestDatabase::new().await;
        let db = mockinterview_db::DbConfig::new(database.url())
            .connect()
            .await
            .unwrap();
        Self { database, db }
    }

    fn conn(&self) -> &mockinterview_db::Db {
        &self.db
    }

    fn raw(&self) -> &sea_orm::DatabaseConnection {
        self.database.conn()
    }
}

/// A database loaded with the legacy fixture `vN.sql`.
async fn legacy_source(version: &str) -> TestDatabase {
    let db = TestDatabase::empty().await;
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(format!("{version}.sql"));
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .arg(db.url())
        .output()
        .expect("psql must be installed (package postgresql-client)");
    assert!(
        out.status.success(),
        "loading {file:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

async fn text<C: ConnectionTrait>(db: &C, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

const ALICE: &str = "mXq7Lr2VbN9sT4kW1yZc8Hd3PfE6";
const BOB: &str = "Bq4nZ8wK2sLx7VrT5mYp1Dh9GcJ3";
const DANA: &str = "Ud3kP7wQ1sLm9XzV5bTr2Yc8JhN6";

#[tokio::test]
async fn imported_users_work_with_the_library() {
    let source = legacy_source("v3").await;
    let target = TestDb::new().await;
    let report = import(target.raw(), &ImportOptions::new(source.db_url().clone()))
        .await
        .unwrap();
    assert!(report.committed);
    report.check_totals().unwrap();
    let db = target.conn();

    // Profiles: by Firebase uid and by the app's integer id.
    let alice = profiles::profile_by_uid(db, ALICE).await.unwrap();
    assert_eq!(alice.email.as_deref(), Some("alice.johnson@gmail.com"));
    assert_eq!(legacy::profile_by_legacy_id(db, 1).await.unwrap(), alice);
    assert_eq!(
        legacy::legacy_id_of(db, LegacyTable::Profiles, alice.id)
            .await
            .unwrap(),
        Some(1)
    );
    // Excluded (NFC twin), deleted before the import, never existed.
    for id in [16, 15, 999] {
        assert!(
            matches!(
                legacy::profile_by_legacy_id(db, id).await,
                Err(Error::NotFound {
                    entity: "profile",
                    ..
                })
            ),
            "{id}"
        );
    }
    // The NFD uid was stored in NFC.
    let renee = profiles::profile_by_uid(db, "ren\u{e9}e.dupont")
        .await
        .unwrap();
    assert_eq!(legacy::profile_by_legacy_id(db, 7).await.unwrap(), renee);

    // Resumes: listed, looked up by legacy id (scoped to their owner), PDFs
    // from file_data byte for byte, paths for the others.
    let list = resumes::list_resumes(db, alice.id).await.unwrap();
    assert_eq!(list.len(), 2);
    let first = legacy::resume_by_legacy_id(db, alice.id, 1).await.unwrap();
    assert_eq!(first.summary.title, "Alice_Johnson_Resume_2025");
    assert!(first.content.unwrap().contains("Senior Backend Engineer"));
    let bob = profiles::profile_by_uid(db, BOB).await.unwrap();
    assert!(matches!(
        legacy::resume_by_legacy_id(db, bob.id, 1).await,
        Err(Error::NotFound {
            entity: "resume",
            ..
        })
    ));
    let source_pdf = text(
        source.conn(),
        "SELECT encode(file_data, 'hex') FROM resumes WHERE id = 1",
    )
    .await;
    match resumes::resume_pdf(db, alice.id, first.summary.id)
        .await
        .unwrap()
    {
        StoredPdf::Inline(bytes) => {
            assert!(bytes.starts_with(b"%PDF-"));
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, source_pdf[0]);
        }
        other => panic!("resume 1 is stored in the database: {other:?}"),
    }
    let second = legacy::resume_by_legacy_id(db, alice.id, 2).await.unwrap();
    assert_eq!(
        resumes::resume_pdf(db, alice.id, second.summary.id)
            .await
            .unwrap(),
        StoredPdf::Path("/app/uploads/1760952107905-73810254-Alice_Johnson_Backend.pdf".into())
    );

    // Chunk search finds the imported chunks in User and Resume scope.
    let chunk = resume_chunks::Entity::find()
        .filter(Expr::cust("(metadata ->> 'legacy_id')::int = 2"))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let query = Embedding::new(
        &EmbeddingModel::gemini_embedding_001_768(),
        chunk.embedding.clone().unwrap().to_vec(),
    )
    .unwrap();
    let hits = search_chunks(
        db,
        &SearchQuery::new(query.clone(), 20, SearchScope::User(alice.id)),
    )
    .await
    .unwrap();
    assert_eq!(hits[0].id, chunk.id);
    assert!(hits[0].score > 0.999, "{}", hits[0].score);
    // Her 4 + 3 chunks of resumes 1 and 2, and 3 from the /new route.
    assert_eq!(hits.len(), 10);
    let in_resume = search_chunks(
        db,
        &SearchQuery::new(
            query.clone(),
            20,
            SearchScope::Resume {
                user_id: alice.id,
                resume_id: first.summary.id,
            },
        ),
    )
    .await
    .unwrap();
    assert_eq!(in_resume.len(), 4);
    assert_eq!(in_resume[0].id, chunk.id);
    let everywhere = search_chunks(db, &SearchQuery::new(query.clone(), 3, SearchScope::All))
        .await
        .unwrap();
    assert_eq!(everywhere[0].id, chunk.id);
    // Bob's resume 17 keeps its chunk without embedding; searches skip it.
    let bob_hits = search_chunks(db, &SearchQuery::new(query, 10, SearchScope::User(bob.id)))
        .await
        .unwrap();
    assert_eq!(bob_hits.len(), 2);

    // What a LangChain PGVectorStore filter {user_id: <uuid>} runs.
    let filtered = text(
        db,
        &format!(
            "SELECT count(*)::text FROM resume_chunks \
             WHERE metadata @> '{{\"user_id\": \"{}\"}}'",
            alice.id
        ),
    )
    .await;
    assert_eq!(filtered, ["10"]);

    // The primary resume: carried over, moved, cleared.
    assert_eq!(
        legacy::primary_resume(db, alice.id).await.unwrap(),
        Some(first.summary.id)
    );
    let dana = profiles::profile_by_uid(db, DANA).await.unwrap();
    let dana_11 = legacy::resume_by_legacy_id(db, dana.id, 11).await.unwrap();
    assert_eq!(
        legacy::primary_resume(db, dana.id).await.unwrap(),
        Some(dana_11.summary.id),
        "the most recently updated of her two primaries"
    );
    legacy::set_primary_resume(db, alice.id, second.summary.id)
        .await
        .unwrap();
    assert_eq!(
        legacy::primary_resume(db, alice.id).await.unwrap(),
        Some(second.summary.id)
    );
    assert!(matches!(
        legacy::set_primary_resume(db, bob.id, first.summary.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        legacy::primary_resume(db, alice.id).await.unwrap(),
        Some(second.summary.id),
        "a refused call changes nothing"
    );
    legacy::clear_primary_resume(db, alice.id).await.unwrap();
    assert_eq!(legacy::primary_resume(db, alice.id).await.unwrap(), None);

    // The schema allows one primary per user.
    let err = db
        .execute_unprepared(&format!(
            "UPDATE resumes SET is_primary = true WHERE user_id = '{}'",
            alice.id
        ))
        .await
        .unwrap_err();
    assert_eq!(pgconn::sqlstate(&err).as_deref(), Some("23P01"), "{err}");

    // Deleting an imported user takes their chunks (m004) and leaves the
    // old id resolving to "not found".
    profiles::delete_profile(db, alice.id).await.unwrap();
    assert!(legacy::profile_by_legacy_id(db, 1).await.is_err());
    assert_eq!(
        text(
            db,
            &format!(
                "SELECT count(*)::text FROM resume_chunks WHERE metadata ->> 'user_id' = '{}'",
                alice.id
            )
        )
        .await,
        ["0"]
    );
}

#[tokio::test]
async fn v0_chunks_belong_to_profiles_created_for_their_uids() {
    let source = legacy_source("v0").await;
    let target = TestDb::new().await;
    let report = import(target.raw(), &ImportOptions::new(source.db_url().clone()))
        .await
        .unwrap();
    assert_eq!(report.created.len(), 3);
    let db = target.conn();
    let alice = profiles::profile_by_uid(db, ALICE).await.unwrap();
    assert_eq!(alice.email, None);
    let chunks = text(
        db,
        &format!(
            "SELECT text FROM resume_chunks WHERE metadata ->> 'user_id' = '{}' ORDER BY text",
            alice.id
        ),
    )
    .await;
    assert_eq!(chunks.len(), 3);
    // v0 chunks are text-embedding-004's, which the imported database now
    // serves: the default handle (the app's later model) refuses that
    // model's queries and is told the database serves another model; a
    // handle of that model finds them (until `migration reembed`).
    let stored = resume_chunks::Entity::find()
        .filter(Expr::cust(format!(
            "metadata ->> 'user_id' = '{}' AND embedding IS NOT NULL",
            alice.id
        )))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let values = stored.embedding.clone().unwrap().to_vec();
    let old = EmbeddingModel::text_embedding_004();
    let scope = SearchScope::User(alice.id);
    let err = search_chunks(
        db,
        &SearchQuery::new(Embedding::new(&old, values.clone()).unwrap(), 5, scope),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
    let gemini = EmbeddingModel::gemini_embedding_001_768();
    let query = Embedding::new(&gemini, values.clone()).unwrap();
    for scope in [scope, SearchScope::All] {
        let err = search_chunks(db, &SearchQuery::new(query.clone(), 50, scope))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotServing { .. }), "{scope:?}: {err}");
    }
    let mut config = mockinterview_db::DbConfig::new(target.database.url());
    config.embedding_model = old.clone();
    let old_db = config.connect().await.unwrap();
    let hits = search_chunks(
        &old_db,
        &SearchQuery::new(Embedding::new(&old, values).unwrap(), 5, scope),
    )
    .await
    .unwrap();
    assert_eq!(hits[0].id, stored.id);
    assert!(hits.len() == 3, "{hits:?}");
    // The user's next sign-in fills in the profile.
    let signed_in = profiles::upsert_profile(
        db,
        &profiles::FirebaseUser {
            uid: ALICE.into(),
            email: Some("alice.johnson@gmail.com".into()),
            display_name: Some("Alice Johnson".into()),
            photo_url: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(signed_in.id, alice.id);
    let jurgen = profiles::profile_by_uid(db, "jürgen-müller-東京-🚀")
        .await
        .unwrap();
    assert_eq!(
        text(
            db,
            &format!(
                "SELECT count(*)::text FROM resume_chunks WHERE metadata ->> 'user_id' = '{}'",
                jurgen.id
            )
        )
        .await,
        ["2"]
    );
}
