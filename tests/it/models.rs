//! Model identity: every chunk records the embedding model of its vector,
//! searches compare only the handle's model, unstamped (LangChain-written)
//! chunks follow the database's declaration, and a release serves a
//! database one migration behind.

use migration::{Migrator, MigratorTrait};
use mockinterview_db::chunks::{resume_chunks, search_chunks};
use mockinterview_db::{
    DbConfig, Embedding, EmbeddingModel, Error, NewChunk, SearchQuery, SearchScope,
};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::support::{TestDb, ada_with_chunks, embedding, replace, strings};

fn gemini() -> EmbeddingModel {
    EmbeddingModel::gemini_embedding_001_768()
}

fn old() -> EmbeddingModel {
    EmbeddingModel::text_embedding_004()
}

/// `values` as a pgvector literal.
fn literal(e: &Embedding) -> String {
    let values: Vec<String> = e.as_slice().iter().map(ToString::to_string).collect();
    format!("'[{}]'", values.join(","))
}

/// Inserts a chunk of `user`/`resume` with plain SQL, as LangChain JS
/// `PGVectorStore` does (no stamp), or with `stamp` (as an import does).
async fn insert_raw(
    db: &impl ConnectionTrait,
    user: Uuid,
    resume: Uuid,
    text: &str,
    e: &Embedding,
    stamp: Option<&EmbeddingModel>,
) {
    let mut metadata =
        serde_json::json!({"user_id": user.to_string(), "resume_id": resume.to_string()});
    if let Some(m) = stamp {
        metadata["embedding_model"] = m.stamp();
    }
    db.execute_unprepared(&format!(
        "INSERT INTO resume_chunks (text, metadata, embedding) VALUES ('{text}', '{metadata}', {})",
        literal(e)
    ))
    .await
    .unwrap();
}

/// The texts a search finds, sorted.
async fn found(db: &mockinterview_db::Db, query: &Embedding, scope: SearchScope) -> Vec<String> {
    let mut texts: Vec<String> = search_chunks(db, &SearchQuery::new(query.clone(), 50, scope))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text.unwrap())
        .collect();
    texts.sort();
    texts
}

#[tokio::test]
async fn searches_compare_only_chunks_of_the_handles_model() {
    let t = TestDb::new().await;
    let db = t.conn();
    let (u, r) = ada_with_chunks(db, 0).await;
    // The library stamps what it writes.
    let q = embedding(7);
    replace(db, u.id, r.id, &[NewChunk::new("library", q.clone())])
        .await
        .unwrap();
    let stored = resume_chunks(db, u.id, r.id).await.unwrap();
    assert_eq!(
        stored[0].metadata.as_ref().unwrap()["embedding_model"],
        gemini().stamp()
    );
    // LangChain's row (no stamp) and an import's text-embedding-004 row,
    // both with the very same vector as the query.
    insert_raw(t.raw(), u.id, r.id, "langchain", &q, None).await;
    let same_values = Embedding::new(&old(), q.as_slice().to_vec()).unwrap();
    insert_raw(t.raw(), u.id, r.id, "old model", &same_values, Some(&old())).await;

    let scopes = [
        SearchScope::User(u.id),
        SearchScope::Resume {
            user_id: u.id,
            resume_id: r.id,
        },
        SearchScope::All,
    ];
    for scope in scopes {
        // m010 declared gemini-embedding-001 for unstamped chunks.
        assert_eq!(
            found(db, &q, scope).await,
            ["langchain", "library"],
            "{scope:?}"
        );
        // A metadata filter does not bring the other model back.
        let hits = search_chunks(
            db,
            &SearchQuery::new(q.clone(), 50, scope).filter("resume_id", r.id.to_string()),
        )
        .await
        .unwrap();
        assert_eq!(hits.len(), 2, "{scope:?}");
        // A query of another model is refused, before any statement.
        let err = search_chunks(db, &SearchQuery::new(same_values.clone(), 5, scope))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
    }

    // A handle of the old model, which the database does not serve, is
    // told so (it would compare its queries with the serving model's
    // vectors).
    let mut config = DbConfig::new(t.url());
    config.embedding_model = old();
    let old_db = config.connect().await.unwrap();
    for scope in scopes {
        let err = search_chunks(&old_db, &SearchQuery::new(same_values.clone(), 5, scope))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotServing { .. }), "{scope:?}: {err}");
    }
    // Writing a chunk of another model is refused, and writes nothing.
    let err = replace(
        db,
        u.id,
        r.id,
        &[NewChunk::new("wrong", same_values.clone())],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
    assert_eq!(
        strings(t.raw(), "SELECT count(*)::text FROM resume_chunks").await,
        ["3"]
    );
    // The stamp is the library's: a chunk cannot set it.
    let err = replace(
        db,
        u.id,
        r.id,
        &[NewChunk::new("forged", q.clone()).with_metadata("embedding_model", "x")],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("embedding_model"), "{err}");
}

/// Unstamped chunks are the serving model's; a handle of another model
/// gets `NotServing` when it finds nothing of its own.
#[tokio::test]
async fn unstamped_chunks_are_the_serving_models() {
    let t = TestDb::new().await;
    let (u, r) = ada_with_chunks(t.conn(), 0).await;
    let q = embedding(11);
    insert_raw(t.raw(), u.id, r.id, "langchain", &q, None).await;
    let old_q = Embedding::new(&old(), q.as_slice().to_vec()).unwrap();
    let connect = |model: EmbeddingModel| {
        let mut config = DbConfig::new(t.url());
        config.embedding_model = model;
        async move { config.connect().await.unwrap() }
    };
    let scope = SearchScope::User(u.id);
    let not_serving = async |db: &mockinterview_db::Db, q: &Embedding| {
        let err = search_chunks(db, &SearchQuery::new(q.clone(), 5, scope))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotServing { .. }), "{err}");
    };
    assert_eq!(
        found(&connect(gemini()).await, &q, scope).await,
        ["langchain"]
    );
    not_serving(&connect(old()).await, &old_q).await;
    // None declared: no handle compares them.
    t.raw()
        .execute_unprepared("DELETE FROM embedding_models")
        .await
        .unwrap();
    not_serving(&connect(gemini()).await, &q).await;
    // The old model serving: only its handles compare them.
    t.raw()
        .execute_unprepared(
            "INSERT INTO embedding_models (name, dimensions, serving) \
             VALUES ('text-embedding-004', 768, true)",
        )
        .await
        .unwrap();
    not_serving(&connect(gemini()).await, &q).await;
    assert_eq!(
        found(&connect(old()).await, &old_q, scope).await,
        ["langchain"]
    );
}

#[tokio::test]
async fn a_model_this_release_cannot_store_is_refused_at_connect() {
    let t = TestDb::new().await;
    let mut config = DbConfig::new(t.url());
    config.embedding_model = EmbeddingModel::new("gemini-embedding-001", 3072).unwrap();
    let err = config.connect().await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("768"), "{err}");
}

/// New code on the old schema: a database one migration behind is served
/// (as the previous release served it), two behind is refused at connect
/// with the pending migrations named. Old code on the new schema: the
/// newest migration only adds (a table), so every statement of the
/// previous release still runs; here, its search statement.
#[tokio::test]
async fn a_release_serves_a_database_one_migration_behind_and_refuses_two() {
    let t = TestDb::new().await;
    let (u, r) = ada_with_chunks(t.conn(), 0).await;
    let q = embedding(3);
    insert_raw(t.raw(), u.id, r.id, "langchain", &q, None).await;
    Migrator::down(t.raw(), Some(1)).await.unwrap();

    let db = DbConfig::new(t.url()).connect().await.unwrap();
    replace(&db, u.id, r.id, &[NewChunk::new("new", q.clone())])
        .await
        .unwrap();
    insert_raw(t.raw(), u.id, r.id, "langchain", &q, None).await;
    for scope in [SearchScope::User(u.id), SearchScope::All] {
        assert_eq!(
            found(&db, &q, scope).await,
            ["langchain", "new"],
            "{scope:?}"
        );
    }

    // The previous release's search (no model condition) on the new schema.
    Migrator::up(t.raw(), None).await.unwrap();
    let previous = format!(
        "SELECT text FROM resume_chunks WHERE metadata->>'user_id' = '{}' \
         UNION ALL SELECT text FROM resume_chunks_staged WHERE metadata->>'user_id' = '{}' \
         ORDER BY 1",
        u.id, u.id
    );
    assert_eq!(strings(t.raw(), &previous).await, ["langchain", "new"]);

    Migrator::down(t.raw(), Some(2)).await.unwrap();
    let err = DbConfig::new(t.url()).connect().await.unwrap_err();
    let Error::SchemaBehind { pending } = &err else {
        panic!("{err}")
    };
    assert_eq!(pending, &["m009_staged_chunks", "m010_embedding_models"]);
    assert!(err.to_string().contains("migration up"), "{err}");
}

#[tokio::test]
async fn an_unmigrated_database_is_refused_at_connect() {
    let database = test_db::TestDatabase::empty().await;
    let err = DbConfig::new(database.url()).connect().await.unwrap_err();
    let Error::SchemaBehind { pending } = &err else {
        panic!("{err}")
    };
    assert_eq!(pending.len(), mockinterview_db::schema::MIGRATIONS.len());
}
