//! Chunks: atomic replacement, bulk load, exact scoped search, global search,
//! filters, isolation between users.

use std::collections::HashSet;

use crate::support::TestDb;
use mockinterview_db::chunks::{self, search_chunks};
use mockinterview_db::{Embedding, Error, NewChunk, SearchQuery, SearchScope};
use serde_json::json;

use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn replace_swaps_the_whole_set_and_writes_langchain_metadata() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 3).await;
    let ids = crate::support::replace(db.conn(), u.id, r.id, &chunks(2, 2))
        .await
        .unwrap();

    let mut stored = chunks::resume_chunks(db.conn(), u.id, r.id).await.unwrap();
    stored.sort_by_key(|c| c.text.clone());
    assert_eq!(
        stored.iter().map(|c| c.id).collect::<HashSet<_>>(),
        ids.iter().copied().collect()
    );
    assert_eq!(stored[0].text.as_deref(), Some("chunk 2/0"));
    assert_eq!(
        stored[0].metadata,
        Some(json!({
            "user_id": u.id.to_string(),
            "resume_id": r.id.to_string(),
            "page": 0,
            "section": "experience",
            "embedding_model": {"name": "gemini-embedding-001", "dimensions": 768},
        }))
    );
    assert_eq!(
        stored[1].embedding.clone().unwrap().to_vec(),
        embedding(2001).as_slice()
    );
}

#[tokio::test]
async fn invalid_chunks_are_rejected_and_the_old_set_stays() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 3).await;

    let reserved = vec![NewChunk::new("x", embedding(1)).with_metadata("user_id", "someone-else")];
    let empty_text = vec![NewChunk::new("  ", embedding(1))];
    for (bad, field) in [(reserved, "metadata"), (empty_text, "text")] {
        match crate::support::replace(db.conn(), u.id, r.id, &bad).await {
            Err(Error::Validation { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected validation error on {field}, got {other:?}"),
        }
    }
    assert_eq!(
        chunks::resume_chunks(db.conn(), u.id, r.id)
            .await
            .unwrap()
            .len(),
        3
    );
    // Embeddings are validated when constructed: a bad one never reaches a chunk.
    assert!(
        Embedding::new(
            &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
            vec![0.1; 1536]
        )
        .is_err()
    );
}

#[tokio::test]
async fn bulk_replace_of_thousands_of_chunks() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;
    let ids = crate::support::replace(db.conn(), u.id, r.id, &chunks(3, 3000))
        .await
        .unwrap();
    assert_eq!(ids.len(), 3000);
    assert_eq!(
        chunks::resume_chunks(db.conn(), u.id, r.id)
            .await
            .unwrap()
            .len(),
        3000
    );
}

#[tokio::test]
async fn concurrent_readers_see_the_old_or_the_new_set_never_a_mix() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 40).await;

    let reader_conn = db.conn().clone();
    let (user_id, resume_id) = (u.id, r.id);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reader = stop.clone();
    let reader = tokio::spawn(async move {
        let mut seen = HashSet::new();
        while !stop_reader.load(std::sync::atomic::Ordering::Relaxed) {
            let n = chunks::resume_chunks(&reader_conn, user_id, resume_id)
                .await
                .unwrap()
                .len();
            seen.insert(n);
        }
        seen
    });
    for round in 0..20 {
        let n = if round % 2 == 0 { 25 } else { 40 };
        crate::support::replace(db.conn(), u.id, r.id, &chunks(round, n))
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    assert!(
        seen.iter().all(|n| *n == 25 || *n == 40),
        "reader saw partial sets: {seen:?}"
    );
}

/// Loads `others` chunks of other users that are *closer* to `query` than
/// any of the target user's chunks, so an index scan that filters after
/// fetching would miss the target's chunks.
async fn adversarial_corpus(
    db: &TestDb,
    query: &Embedding,
    others: usize,
) -> (Uuid, Uuid, Vec<NewChunk>) {
    let target = user(db.conn(), "target").await;
    let target_resume = resume(db.conn(), target.id, "target-cv").await;
    let mine = chunks(42, 60);
    crate::support::replace(db.conn(), target.id, target_resume.id, &mine)
        .await
        .unwrap();
    for batch in 0..(others / 500).max(1) {
        let other = user(db.conn(), &format!("other-{batch}")).await;
        let other_resume = resume(db.conn(), other.id, "cv").await;
        let near: Vec<NewChunk> = (0..500)
            .map(|i| {
                let noise = embedding(900_000 + (batch * 500 + i) as u64);
                let v = query
                    .as_slice()
                    .iter()
                    .zip(noise.as_slice())
                    .map(|(q, n)| q + 0.05 * n)
                    .collect();
                NewChunk::new(
                    format!("near {i}"),
                    Embedding::new(
                        &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
                        v,
                    )
                    .unwrap(),
                )
            })
            .collect();
        crate::support::replace(db.conn(), other.id, other_resume.id, &near)
            .await
            .unwrap();
    }
    sea_orm::ConnectionTrait::execute_unprepared(db.conn(), "ANALYZE resume_chunks")
        .await
        .unwrap();
    (target.id, target_resume.id, mine)
}

fn exact_top(query: &Embedding, candidates: &[NewChunk], k: usize) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = candidates
        .iter()
        .map(|c| (cosine(query, &c.embedding), c.text.clone()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(k).map(|(_, t)| t).collect()
}

#[tokio::test]
async fn user_scoped_search_is_exact_and_never_returns_other_users() {
    let db = TestDb::new().await;
    let query = embedding(777);
    let (user_id, resume_id, mine) = adversarial_corpus(&db, &query, 2000).await;

    let found = search_chunks(
        db.conn(),
        &SearchQuery::new(query.clone(), 5, SearchScope::User(user_id)),
    )
    .await
    .unwrap();
    let texts: Vec<String> = found.iter().map(|m| m.text.clone().unwrap()).collect();
    assert_eq!(texts, exact_top(&query, &mine, 5), "recall must be 1.0");
    for m in &found {
        assert_eq!(
            m.metadata.as_ref().unwrap()["user_id"],
            json!(user_id.to_string())
        );
    }
    // Scores are cosine similarities, highest first.
    let expected = cosine(
        &query,
        &mine.iter().find(|c| c.text == texts[0]).unwrap().embedding,
    );
    assert!(
        (found[0].score - expected).abs() < 1e-5,
        "{} vs {expected}",
        found[0].score
    );
    assert!(found.windows(2).all(|w| w[0].score >= w[1].score));

    // Even when the planner has nothing but the HNSW index to order by (the
    // user_id index dropped, sequential scans discouraged, no iterative
    // scan), the scoped search stays exact.
    let txn = sea_orm::TransactionTrait::begin(db.conn()).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &txn,
        "DROP INDEX idx_resume_chunks_user_id; SET LOCAL enable_seqscan = off; \
         SET LOCAL enable_bitmapscan = off; SET LOCAL hnsw.iterative_scan = off",
    )
    .await
    .unwrap();
    let found = search_chunks(
        &txn,
        &SearchQuery::new(query.clone(), 5, SearchScope::User(user_id)),
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();
    let hostile: Vec<String> = found.iter().map(|m| m.text.clone().unwrap()).collect();
    assert_eq!(
        hostile,
        exact_top(&query, &mine, 5),
        "exact under a hostile plan"
    );

    // Resume scope with a metadata filter: exact within the filtered set.
    let q = SearchQuery::new(query.clone(), 7, SearchScope::Resume { user_id, resume_id })
        .filter("section", "skills");
    let found = search_chunks(db.conn(), &q).await.unwrap();
    let skills: Vec<NewChunk> = mine
        .iter()
        .filter(|c| c.extra_metadata["section"] == json!("skills"))
        .cloned()
        .collect();
    let texts: Vec<String> = found.iter().map(|m| m.text.clone().unwrap()).collect();
    assert_eq!(texts, exact_top(&query, &skills, 7));
}

#[tokio::test]
async fn whole_table_search_uses_all_users_and_honours_filters() {
    let db = TestDb::new().await;
    let query = embedding(777);
    let (user_id, _, _) = adversarial_corpus(&db, &query, 500).await;

    let found = search_chunks(
        db.conn(),
        &SearchQuery::new(query.clone(), 10, SearchScope::All),
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 10);
    assert!(
        found
            .iter()
            .all(|m| m.text.as_deref().unwrap().starts_with("near"))
    );
    assert!(found.windows(2).all(|w| w[0].score >= w[1].score));

    // A filter that only the target user's chunks pass: the iterative HNSW
    // scan keeps going until it has k rows.
    let q = SearchQuery::new(query, 10, SearchScope::All).filter("section", "experience");
    let found = search_chunks(db.conn(), &q).await.unwrap();
    assert_eq!(found.len(), 10);
    assert!(
        found
            .iter()
            .all(|m| m.metadata.as_ref().unwrap()["user_id"] == json!(user_id.to_string()))
    );
}

/// A filtered whole-table search compares every matching chunk when few
/// match (exact), and uses the HNSW index when many do; both return the
/// filter's rows in score order, the first the exact top k.
#[tokio::test]
async fn filtered_whole_table_search_is_exact_when_few_rows_match() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    let db = TestDb::new().await;
    // 10,200 chunks pass `wide` (more than the library compares exactly),
    // 12 of them also `rare`; vectors are random. The HNSW index is built
    // after the load (faster than 10,200 insertions into the graph).
    db.raw()
        .execute_unprepared(
            "DROP INDEX idx_resume_chunks_embedding; \
             INSERT INTO resume_chunks (id, text, metadata, embedding) \
             SELECT gen_random_uuid(), 'chunk ' || i, \
                    jsonb_build_object('wide', true, 'rare', i % 850 = 0), \
                    (SELECT array_agg(random() - 0.5)::vector(768) \
                     FROM generate_series(1, 768) WHERE i > 0) \
             FROM generate_series(1, 10200) i; \
             CREATE INDEX idx_resume_chunks_embedding ON resume_chunks \
             USING hnsw (embedding vector_cosine_ops); \
             ANALYZE resume_chunks",
        )
        .await
        .unwrap();
    let query = embedding(4242);
    let exact = |filter: &'static str| {
        let raw = db.raw().clone();
        let query = query.clone();
        async move {
            let txn = raw.begin().await.unwrap();
            txn.execute_unprepared("SET LOCAL enable_indexscan = off")
                .await
                .unwrap();
            let rows = txn
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    format!(
                        "SELECT id FROM resume_chunks WHERE metadata @> '{filter}' \
                         ORDER BY embedding <=> $1 LIMIT 10"
                    ),
                    [query.to_vector().into()],
                ))
                .await
                .unwrap();
            txn.commit().await.unwrap();
            rows.iter()
                .map(|r| r.try_get_by_index::<uuid::Uuid>(0).unwrap())
                .collect::<Vec<_>>()
        }
    };

    let rare = search_chunks(
        db.conn(),
        &SearchQuery::new(query.clone(), 10, SearchScope::All).filter("rare", true),
    )
    .await
    .unwrap();
    let ids: Vec<_> = rare.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        exact(r#"{"rare": true}"#).await,
        "few rows: the exact top 10"
    );

    let wide = search_chunks(
        db.conn(),
        &SearchQuery::new(query.clone(), 10, SearchScope::All).filter("wide", "true"),
    )
    .await
    .unwrap();
    assert_eq!(wide.len(), 10);
    assert!(wide.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        wide.iter()
            .all(|m| m.metadata.as_ref().unwrap()["wide"] == json!(true)),
        "the text rule: \"true\" matches the boolean"
    );
    let truth = exact(r#"{"wide": true}"#).await;
    let recall = wide.iter().filter(|m| truth.contains(&m.id)).count();
    assert!(recall >= 8, "many rows: the HNSW index, recall {recall}/10");
}

#[tokio::test]
async fn metadata_filters_are_bound_not_spliced() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 5).await;
    for (key, value) in [
        ("section' OR '1'='1", json!("x")),
        ("section", json!("x' OR '1'='1")),
        ("'; DROP TABLE resume_chunks; --", json!(1)),
    ] {
        let q = SearchQuery::new(embedding(1), 5, SearchScope::User(u.id)).filter(key, value);
        assert!(search_chunks(db.conn(), &q).await.unwrap().is_empty());
    }
    assert_eq!(
        chunks::resume_chunks(db.conn(), u.id, r.id)
            .await
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn k_out_of_range_is_a_validation_error() {
    let db = TestDb::new().await;
    for k in [0, 1001] {
        let q = SearchQuery::new(embedding(1), k, SearchScope::All);
        assert!(matches!(
            search_chunks(db.conn(), &q).await,
            Err(Error::Validation { field: "k", .. })
        ));
    }
}

#[tokio::test]
async fn bulk_replace_covers_many_resumes_in_one_transaction() {
    use mockinterview_db::chunks::ResumeChunks;
    let db = TestDb::new().await;
    let (ada, ada_cv) = ada_with_chunks(db.conn(), 4).await;
    let ada_other = resume(db.conn(), ada.id, "other").await;
    let bob = user(db.conn(), "bob").await;
    let bob_cv = resume(db.conn(), bob.id, "cv").await;
    let (a, b, c) = (chunks(10, 3), chunks(11, 0), chunks(12, 5));
    let set = |user_id, resume_id, chunks| ResumeChunks {
        user_id,
        resume_id,
        chunks,
    };

    let ids = mockinterview_db::chunks::replace_chunks(
        db.conn(),
        &[
            set(ada.id, ada_cv.id, &a),
            set(ada.id, ada_other.id, &b),
            set(bob.id, bob_cv.id, &c),
        ],
        mockinterview_db::chunks::Indexing::Now,
    )
    .await
    .unwrap();
    assert_eq!(ids.iter().map(Vec::len).collect::<Vec<_>>(), [3, 0, 5]);
    assert_eq!(
        chunks::resume_chunks(db.conn(), ada.id, ada_cv.id)
            .await
            .unwrap()
            .len(),
        3
    );
    let stored = chunks::resume_chunks(db.conn(), bob.id, bob_cv.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 5);
    assert!(
        stored
            .iter()
            .all(|c| c.metadata.as_ref().unwrap()["user_id"] == json!(bob.id.to_string()))
    );

    // A resume of another user anywhere in the batch: nothing is written.
    let err = mockinterview_db::chunks::replace_chunks(
        db.conn(),
        &[set(ada.id, ada_cv.id, &c), set(ada.id, bob_cv.id, &a)],
        mockinterview_db::chunks::Indexing::Now,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                entity: "resume",
                ..
            }
        ),
        "{err:?}"
    );
    // The same resume twice: rejected before writing.
    let err = mockinterview_db::chunks::replace_chunks(
        db.conn(),
        &[set(ada.id, ada_cv.id, &a), set(ada.id, ada_cv.id, &c)],
        mockinterview_db::chunks::Indexing::Now,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "resume_id",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        chunks::resume_chunks(db.conn(), ada.id, ada_cv.id)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        chunks::resume_chunks(db.conn(), bob.id, bob_cv.id)
            .await
            .unwrap()
            .len(),
        5
    );
}
