//! Staged uploads (migration 009): chunks searchable at once, moved into the
//! HNSW index later, with the same replacement semantics as
//! `replace_chunks` with `Indexing::Now`.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::TestDb;
use mockinterview_db::chunks::{self, search_chunks};
use mockinterview_db::staged::{
    self, IndexedBatch, IndexerOptions, StagedIndexer, index_staged_chunks, staged_backlog,
};
use mockinterview_db::{DbConfig, Error, NewChunk, SearchQuery, SearchScope, resumes};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::support::*;

async fn count(db: &impl ConnectionTrait, sql: &str) -> i64 {
    strings(db, &format!("SELECT count(*)::text FROM ({sql}) q"))
        .await
        .remove(0)
        .parse()
        .unwrap()
}

async fn indexed(db: &impl ConnectionTrait) -> i64 {
    count(db, "SELECT 1 FROM resume_chunks").await
}

async fn staged_rows(db: &impl ConnectionTrait) -> i64 {
    count(db, "SELECT 1 FROM resume_chunks_staged").await
}

/// The ids `resume_chunks` returns for the resume (indexed and staged).
async fn stored_ids<S: mockinterview_db::Store>(db: &S, user: Uuid, resume: Uuid) -> HashSet<Uuid> {
    chunks::resume_chunks(db, user, resume)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect()
}

fn ids(hits: &[mockinterview_db::ChunkMatch]) -> Vec<Uuid> {
    hits.iter().map(|h| h.id).collect()
}

#[tokio::test]
async fn staged_chunks_replace_the_old_ones_for_every_library_read_at_once() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 3).await;
    let new = chunks(7, 5);
    let new_ids = crate::support::stage(db.conn(), u.id, r.id, &new)
        .await
        .unwrap();
    assert_eq!(new_ids.len(), 5);
    // The old indexed chunks are gone, the new ones wait unindexed.
    assert_eq!(indexed(db.conn()).await, 0);
    assert_eq!(staged_rows(db.conn()).await, 5);

    // Reading the resume's chunks: the staged set, with ids, metadata and
    // embeddings as `replace_chunks` would store them.
    let stored = chunks::resume_chunks(db.conn(), u.id, r.id).await.unwrap();
    assert_eq!(
        stored_ids(db.conn(), u.id, r.id).await,
        new_ids.iter().copied().collect()
    );
    let first = stored.iter().find(|c| c.id == new_ids[0]).unwrap();
    assert_eq!(
        first.embedding.clone().unwrap().to_vec(),
        new[0].embedding.as_slice()
    );
    assert_eq!(
        first.metadata.as_ref().unwrap()["resume_id"],
        r.id.to_string()
    );

    // Every scope finds them, ranked exactly, the query's own vector first.
    for scope in [
        SearchScope::User(u.id),
        SearchScope::Resume {
            user_id: u.id,
            resume_id: r.id,
        },
        SearchScope::All,
    ] {
        let hits = search_chunks(
            db.conn(),
            &SearchQuery::new(new[2].embedding.clone(), 10, scope),
        )
        .await
        .unwrap();
        assert_eq!(hits.len(), 5, "{scope:?}");
        assert_eq!(hits[0].id, new_ids[2], "{scope:?}");
        assert!((hits[0].score - 1.0).abs() < 1e-5, "{scope:?}");
        let mut expected: Vec<(Uuid, f64)> = new_ids
            .iter()
            .zip(&new)
            .map(|(id, c)| (*id, cosine(&new[2].embedding, &c.embedding)))
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(
            ids(&hits),
            expected.iter().map(|e| e.0).collect::<Vec<_>>(),
            "{scope:?}"
        );
    }
    // Filters apply to staged chunks too.
    let skills = search_chunks(
        db.conn(),
        &SearchQuery::new(new[0].embedding.clone(), 10, SearchScope::All)
            .filter("section", "skills"),
    )
    .await
    .unwrap();
    assert_eq!(skills.len(), 2);
    assert!(
        skills
            .iter()
            .all(|h| h.metadata.as_ref().unwrap()["section"] == "skills")
    );
}

#[tokio::test]
async fn indexing_moves_each_resume_whole_and_searches_give_the_same_answer() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let r1 = resume(db.conn(), u.id, "one").await;
    let r2 = resume(db.conn(), u.id, "two").await;
    let ids1 = crate::support::stage(db.conn(), u.id, r1.id, &chunks(1, 4))
        .await
        .unwrap();
    let ids2 = crate::support::stage(db.conn(), u.id, r2.id, &chunks(2, 6))
        .await
        .unwrap();
    let backlog = staged_backlog(db.conn()).await.unwrap();
    assert_eq!((backlog.chunks, backlog.resumes), (10, 2));
    assert!(backlog.oldest.is_some());

    let query = SearchQuery::new(embedding(2003), 10, SearchScope::All);
    let before = search_chunks(db.conn(), &query).await.unwrap();

    // Oldest upload first, one whole resume per call.
    assert_eq!(
        index_staged_chunks(db.conn(), 1).await.unwrap(),
        IndexedBatch {
            resumes: 1,
            chunks: 4
        }
    );
    assert_eq!(
        strings(db.conn(), "SELECT id::text FROM resume_chunks ORDER BY id")
            .await
            .into_iter()
            .collect::<HashSet<_>>(),
        ids1.iter().map(Uuid::to_string).collect()
    );
    assert_eq!(
        index_staged_chunks(db.conn(), 5).await.unwrap(),
        IndexedBatch {
            resumes: 1,
            chunks: 6
        }
    );
    assert_eq!(
        index_staged_chunks(db.conn(), 5).await.unwrap(),
        IndexedBatch::default()
    );
    assert_eq!(
        (indexed(db.conn()).await, staged_rows(db.conn()).await),
        (10, 0)
    );
    let backlog = staged_backlog(db.conn()).await.unwrap();
    assert_eq!(
        (backlog.chunks, backlog.resumes, backlog.oldest),
        (0, 0, None)
    );

    // Same ids, same answer, now through the HNSW index.
    let after = search_chunks(db.conn(), &query).await.unwrap();
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(after[0].id, ids2[3]);
    assert!(
        strings(
            db.conn(),
            "SELECT embedding::text FROM resume_chunks LIMIT 1"
        )
        .await
        .len()
            == 1
    );
    match index_staged_chunks(db.conn(), 0).await {
        Err(Error::Validation { field, .. }) => assert_eq!(field, "max_resumes"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_busy_resume_is_skipped_and_the_next_one_moved() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let oldest = resume(db.conn(), u.id, "oldest").await;
    let next = resume(db.conn(), u.id, "next").await;
    crate::support::stage(db.conn(), u.id, oldest.id, &chunks(1, 2))
        .await
        .unwrap();
    let next_ids = crate::support::stage(db.conn(), u.id, next.id, &chunks(2, 3))
        .await
        .unwrap();
    // Another session holds the oldest resume (as a replacement or another
    // indexer would): the call moves the next one instead of nothing.
    let holder = db.conn().begin().await.unwrap();
    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock(('x' || left(replace('{}', '-', ''), 16))::bit(64)::bigint)",
            oldest.id
        ))
        .await
        .unwrap();
    assert_eq!(
        index_staged_chunks(db.conn(), 1).await.unwrap(),
        IndexedBatch {
            resumes: 1,
            chunks: 3
        }
    );
    assert_eq!(
        strings(db.conn(), "SELECT id::text FROM resume_chunks")
            .await
            .into_iter()
            .collect::<HashSet<_>>(),
        next_ids.iter().map(Uuid::to_string).collect()
    );
    // Only the busy one is left, and nothing moves until it is released.
    assert_eq!(
        index_staged_chunks(db.conn(), 1).await.unwrap(),
        IndexedBatch::default()
    );
    holder.rollback().await.unwrap();
    assert_eq!(index_staged_chunks(db.conn(), 1).await.unwrap().chunks, 2);
}

#[tokio::test]
async fn a_later_replacement_wins_over_staged_chunks_in_both_directions() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;

    // Staged, then replaced directly: the staged set must never come back.
    crate::support::stage(db.conn(), u.id, r.id, &chunks(1, 3))
        .await
        .unwrap();
    let direct = crate::support::replace(db.conn(), u.id, r.id, &chunks(2, 2))
        .await
        .unwrap();
    assert_eq!(staged_rows(db.conn()).await, 0);
    assert_eq!(
        index_staged_chunks(db.conn(), 10).await.unwrap(),
        IndexedBatch::default()
    );
    assert_eq!(
        stored_ids(db.conn(), u.id, r.id).await,
        direct.iter().copied().collect()
    );

    // Indexed, then staged twice: only the last staged set remains.
    crate::support::stage(db.conn(), u.id, r.id, &chunks(3, 4))
        .await
        .unwrap();
    let last = crate::support::stage(db.conn(), u.id, r.id, &chunks(4, 1))
        .await
        .unwrap();
    assert_eq!(
        (indexed(db.conn()).await, staged_rows(db.conn()).await),
        (0, 1)
    );
    index_staged_chunks(db.conn(), 10).await.unwrap();
    assert_eq!(
        stored_ids(db.conn(), u.id, r.id).await,
        last.into_iter().collect()
    );

    // Staging an empty set empties the resume.
    crate::support::stage(db.conn(), u.id, r.id, &[])
        .await
        .unwrap();
    assert!(
        chunks::resume_chunks(db.conn(), u.id, r.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_input_and_foreign_resumes_write_nothing() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;
    let eve = user(db.conn(), "eve").await;
    let staged_before = crate::support::stage(db.conn(), u.id, r.id, &chunks(1, 2))
        .await
        .unwrap();

    let blank = vec![NewChunk::new(" ", embedding(1))];
    match crate::support::stage(db.conn(), u.id, r.id, &blank).await {
        Err(Error::Validation { field, .. }) => assert_eq!(field, "text"),
        other => panic!("{other:?}"),
    }
    match crate::support::stage(db.conn(), eve.id, r.id, &chunks(2, 2)).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{other:?}"),
    }
    match crate::support::stage(db.conn(), u.id, Uuid::new_v4(), &chunks(2, 2)).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stored_ids(db.conn(), u.id, r.id).await,
        staged_before.into_iter().collect()
    );
    // Inside a caller's transaction COPY is impossible: a clear error.
    let tx = sea_orm::TransactionTrait::begin(db.conn()).await.unwrap();
    match crate::support::stage(&tx, u.id, r.id, &chunks(3, 1)).await {
        Err(Error::Config(why)) => assert!(why.contains("pass the Db"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn deleting_a_resume_or_its_owner_deletes_its_staged_chunks() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;
    let other = resume(db.conn(), u.id, "other").await;
    crate::support::stage(db.conn(), u.id, r.id, &chunks(1, 3))
        .await
        .unwrap();
    crate::support::stage(db.conn(), u.id, other.id, &chunks(2, 2))
        .await
        .unwrap();
    resumes::delete_resume(db.conn(), u.id, r.id).await.unwrap();
    assert_eq!(staged_rows(db.conn()).await, 2);
    mockinterview_db::profiles::delete_profile(db.conn(), u.id)
        .await
        .unwrap();
    assert_eq!(staged_rows(db.conn()).await, 0);
}

/// Uploads (staged and direct) of the same resumes race a running indexer:
/// at the end each resume holds exactly its last upload, nothing staged is
/// left behind, no chunk exists twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_and_indexers_keep_exactly_the_last_set() {
    let db = TestDb::new().await;
    let handle = DbConfig::new(db.url()).connect().await.unwrap();
    let u = user(&handle, "ada").await;
    let mut resumes_ = Vec::new();
    for i in 0..4 {
        resumes_.push(resume(&handle, u.id, &format!("cv{i}")).await.id);
    }
    let fast = IndexerOptions {
        idle_poll: Duration::from_millis(5),
        ..IndexerOptions::default()
    };
    let indexers = [
        StagedIndexer::spawn(handle.clone(), fast.clone()),
        StagedIndexer::spawn(handle.clone(), fast),
    ];
    let mut writers = Vec::new();
    for (w, resume_id) in resumes_.iter().copied().enumerate() {
        let handle = handle.clone();
        let user_id = u.id;
        writers.push(tokio::spawn(async move {
            let mut last = Vec::new();
            for round in 0..12_u64 {
                let set = chunks(100 * w as u64 + round, 1 + (round as usize % 5));
                last = if round % 3 == 2 {
                    crate::support::replace(&handle, user_id, resume_id, &set)
                        .await
                        .unwrap()
                } else {
                    crate::support::stage(&handle, user_id, resume_id, &set)
                        .await
                        .unwrap()
                };
                // Every library read sees exactly the set just written.
                assert_eq!(
                    stored_ids(&handle, user_id, resume_id).await,
                    last.iter().copied().collect(),
                    "round {round}"
                );
            }
            (resume_id, last)
        }));
    }
    let mut expected = Vec::new();
    for w in writers {
        expected.push(w.await.unwrap());
    }
    // Let the indexers drain, then stop them.
    for _ in 0..200 {
        if staged_rows(db.conn()).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut moved = 0;
    for indexer in indexers {
        let stats = indexer.stats();
        assert_eq!(stats.errors, 0);
        moved += stats.chunks;
        indexer.shutdown().await;
    }
    assert_eq!(
        staged_rows(db.conn()).await,
        0,
        "the indexers drained the table"
    );
    assert!(moved > 0);
    for (resume_id, last) in expected {
        let rows = strings(
            db.conn(),
            &format!(
                "SELECT id::text FROM resume_chunks WHERE metadata->>'resume_id' = '{resume_id}'"
            ),
        )
        .await;
        let unique: HashSet<&String> = rows.iter().collect();
        assert_eq!(unique.len(), rows.len(), "no chunk twice");
        assert_eq!(
            rows.into_iter().collect::<HashSet<_>>(),
            last.iter().map(Uuid::to_string).collect(),
            "resume {resume_id}"
        );
    }
    handle.close().await.unwrap();
}

#[tokio::test]
async fn a_dropped_indexer_stops_and_loses_nothing() {
    let db = TestDb::new().await;
    let handle = DbConfig::new(db.url()).connect().await.unwrap();
    let (u, r) = ada_with_chunks(&handle, 0).await;
    let indexer = StagedIndexer::spawn(
        handle.clone(),
        IndexerOptions {
            idle_poll: Duration::from_millis(10),
            ..IndexerOptions::default()
        },
    );
    let ids = crate::support::stage(&handle, u.id, r.id, &chunks(1, 3))
        .await
        .unwrap();
    for _ in 0..200 {
        if indexer.stats().chunks == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(indexer.stats().chunks, 3, "{indexer:?}");
    drop(indexer);
    // Stopped: a new upload stays staged, and is still found.
    crate::support::stage(&handle, u.id, r.id, &chunks(2, 2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(staged_rows(db.conn()).await, 2);
    assert_eq!(indexed(db.conn()).await, 0, "{ids:?} were replaced");
    assert_eq!(staged::staged_backlog(&handle).await.unwrap().chunks, 2);
    handle.close().await.unwrap();
}

#[tokio::test]
async fn a_failing_batch_is_counted_retried_and_loses_nothing() {
    use sea_orm::ConnectionTrait;
    let db = TestDb::new().await;
    let handle = DbConfig::new(db.url()).connect().await.unwrap();
    let (u, r) = ada_with_chunks(&handle, 0).await;
    let ids = crate::support::stage(&handle, u.id, r.id, &chunks(1, 2))
        .await
        .unwrap();
    // While the indexed table is missing, every batch fails.
    db.conn()
        .execute_unprepared("ALTER TABLE resume_chunks RENAME TO resume_chunks_away")
        .await
        .unwrap();
    let indexer = StagedIndexer::spawn(
        handle.clone(),
        IndexerOptions {
            idle_poll: Duration::from_millis(10),
            retry_after: Duration::from_millis(50),
            ..IndexerOptions::default()
        },
    );
    for _ in 0..200 {
        if indexer.stats().errors >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = indexer.stats();
    assert!(stats.errors >= 2, "retried after a failure: {stats:?}");
    assert_eq!(stats.chunks, 0);
    assert_eq!(
        staged_rows(db.conn()).await,
        2,
        "a failed batch moves nothing"
    );
    // Once the table is back, the next attempt moves the chunks.
    db.conn()
        .execute_unprepared("ALTER TABLE resume_chunks_away RENAME TO resume_chunks")
        .await
        .unwrap();
    for _ in 0..200 {
        if indexer.stats().chunks == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(indexer.stats().chunks, 2, "{indexer:?}");
    indexer.shutdown().await;
    assert_eq!(
        stored_ids(db.conn(), u.id, r.id).await,
        ids.into_iter().collect()
    );
    assert_eq!(indexed(db.conn()).await, 2);
    handle.close().await.unwrap();
}
