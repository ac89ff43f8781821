//! Re-embedding a live corpus: backfill, uploads during the job caught up,
//! an atomic switch that handles of the old model notice, undo, finish,
//! resuming after an interruption without embedding a stored chunk twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks, search_chunks};
use mockinterview_db::embedder::{Embedder, HashingEmbedder, Purpose};
use mockinterview_db::reembed::{self, JobState, RunOptions};
use mockinterview_db::{
    Db, DbConfig, Embedding, EmbeddingModel, Error, NewChunk, SearchQuery, SearchScope,
};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::support::{TestDb, resume, strings, user};

fn old() -> EmbeddingModel {
    EmbeddingModel::gemini_embedding_001_768()
}

fn new() -> EmbeddingModel {
    EmbeddingModel::new("hashing-next", 768).unwrap()
}

/// An embedder that counts how often it embedded each text, and can be
/// told to fail after some calls (an interrupted job).
struct Counting {
    inner: HashingEmbedder,
    calls: AtomicUsize,
    fail_after: Option<usize>,
    per_text: Mutex<HashMap<String, usize>>,
}

impl Counting {
    fn new(model: EmbeddingModel, fail_after: Option<usize>) -> Self {
        Self {
            inner: HashingEmbedder::new(model),
            calls: AtomicUsize::new(0),
            fail_after,
            per_text: Mutex::new(HashMap::new()),
        }
    }

    fn embedded(&self) -> usize {
        self.per_text.lock().unwrap().values().sum()
    }
}

impl Embedder for Counting {
    fn model(&self) -> &EmbeddingModel {
        self.inner.model()
    }

    fn max_batch(&self) -> usize {
        10
    }

    async fn embed(
        &self,
        texts: &[String],
        purpose: Purpose,
    ) -> mockinterview_db::Result<Vec<Embedding>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|max| n >= max) {
            return Err(Error::Embedder {
                model: self.model().to_string(),
                reason: "interrupted".into(),
                retryable: true,
            });
        }
        let out = self.inner.embed(texts, purpose).await?;
        let mut seen = self.per_text.lock().unwrap();
        for t in texts {
            *seen.entry(t.clone()).or_default() += 1;
        }
        Ok(out)
    }
}

async fn handle(url: &str, model: EmbeddingModel) -> Db {
    let mut config = DbConfig::new(url);
    config.embedding_model = model;
    config.connect().await.unwrap()
}

/// Uploads `n` chunks with texts `<prefix> <i>` embedded by `model`'s
/// hashing embedder.
async fn upload(db: &Db, user_id: Uuid, resume_id: Uuid, prefix: &str, n: usize) {
    let e = HashingEmbedder::new(db.embedding_model().clone());
    let chunks: Vec<NewChunk> = (0..n)
        .map(|i| {
            let text = format!("{prefix} chunk {i} kubernetes rust");
            let v = e.vector(&text);
            NewChunk::new(text, Embedding::new(e.model(), v).unwrap())
        })
        .collect();
    replace_chunks(
        db,
        &[ResumeChunks {
            user_id,
            resume_id,
            chunks: &chunks,
        }],
        Indexing::Now,
    )
    .await
    .unwrap();
}

/// The top hit's text and score for `text` embedded with `db`'s model.
async fn top(db: &Db, text: &str, scope: SearchScope) -> mockinterview_db::Result<(String, f64)> {
    let e = HashingEmbedder::new(db.embedding_model().clone());
    let q = Embedding::new(e.model(), e.vector(text)).unwrap();
    let hits = search_chunks(db, &SearchQuery::new(q, 1, scope)).await?;
    Ok(hits
        .first()
        .map(|h| (h.text.clone().unwrap(), h.score))
        .unwrap_or_default())
}

#[tokio::test]
async fn a_corpus_moves_to_a_new_model_while_uploads_go_on_and_the_switch_can_be_undone() {
    let t = TestDb::new().await;
    let a = handle(t.url(), old()).await;
    let u = user(&a, "ada").await;
    let r1 = resume(&a, u.id, "one").await;
    let r2 = resume(&a, u.id, "two").await;
    upload(&a, u.id, r1.id, "first", 25).await;
    upload(&a, u.id, r2.id, "second", 17).await;
    // A LangChain-written chunk: no stamp, the serving model's.
    let e_old = HashingEmbedder::new(old());
    let lc = e_old.vector("langchain row");
    t.raw()
        .execute_unprepared(&format!(
            "INSERT INTO resume_chunks (text, metadata, embedding) VALUES ('langchain row', \
             '{{\"user_id\": \"{}\", \"resume_id\": \"{}\"}}', '{:?}')",
            u.id, r2.id, lc
        ))
        .await
        .unwrap();
    let scope = SearchScope::User(u.id);
    let indexes_before = strings(
        t.raw(),
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'resume_chunks' ORDER BY 1",
    )
    .await;

    let job = reembed::start(&a, &new()).await.unwrap();
    assert_eq!(job.state, JobState::Backfill);
    // A second job cannot start.
    assert!(matches!(
        reembed::start(&a, &new()).await,
        Err(Error::Conflict { .. })
    ));
    // The new model is not served yet.
    let b = handle(t.url(), new()).await;
    assert!(matches!(
        top(&b, "first chunk 3", scope).await,
        Err(Error::NotServing { .. })
    ));
    // An embedder of the wrong model is refused.
    assert!(matches!(
        reembed::run(
            &a,
            &Counting::new(old(), None),
            RunOptions::default(),
            |_| {}
        )
        .await,
        Err(Error::ModelMismatch { .. })
    ));

    let emb = Counting::new(new(), None);
    let summary = reembed::run(
        &a,
        &emb,
        RunOptions {
            in_flight: 3,
            batch: 10,
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(summary.embedded, 43);
    // Uploads go on with the old model: a replaced resume, a new one, and
    // a deleted resume, all queued for the shadow table.
    upload(&a, u.id, r1.id, "replaced", 5).await;
    let r3 = resume(&a, u.id, "three").await;
    upload(&a, u.id, r3.id, "third", 4).await;
    mockinterview_db::resumes::delete_resume(&a, u.id, r2.id)
        .await
        .unwrap();
    let status = reembed::status(&a).await.unwrap();
    assert!(status.queued > 0, "{status:?}");
    assert_eq!(
        top(&a, "replaced chunk 2 kubernetes rust", scope)
            .await
            .unwrap()
            .0,
        "replaced chunk 2 kubernetes rust"
    );

    let job = reembed::switch(&a, &emb).await.unwrap();
    assert_eq!(job.state, JobState::Switched);
    // Handles of the old model notice at once, and write nothing.
    assert!(matches!(
        top(&a, "replaced chunk 2", scope).await,
        Err(Error::NotServing { .. })
    ));
    let before = strings(t.raw(), "SELECT count(*)::text FROM resume_chunks").await;
    let e = HashingEmbedder::new(old());
    let err = replace_chunks(
        &a,
        &[ResumeChunks {
            user_id: u.id,
            resume_id: r3.id,
            chunks: &[NewChunk::new(
                "late",
                Embedding::new(&old(), e.vector("late")).unwrap(),
            )],
        }],
        Indexing::Now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NotServing { .. }), "{err}");
    assert_eq!(
        strings(t.raw(), "SELECT count(*)::text FROM resume_chunks").await,
        before
    );
    // The new model's handle finds everything, the uploads made during
    // the job included, and nothing of the deleted resume.
    for text in [
        "replaced chunk 4 kubernetes rust",
        "third chunk 1 kubernetes rust",
    ] {
        let (found, score) = top(&b, text, scope).await.unwrap();
        assert_eq!(found, text);
        assert!(score > 0.999, "{score}");
    }
    assert_eq!(
        strings(
            t.raw(),
            &format!(
                "SELECT count(*)::text FROM resume_chunks WHERE metadata->>'resume_id' = '{}'",
                r2.id
            )
        )
        .await,
        ["0"]
    );
    // Every chunk carries the new stamp; the LangChain row is gone with
    // its resume, the others are all there.
    assert_eq!(
        strings(
            t.raw(),
            "SELECT count(*)::text FROM resume_chunks \
             WHERE metadata->'embedding_model' = '{\"name\": \"hashing-next\", \"dimensions\": 768}'"
        )
        .await,
        ["9"]
    );
    // Each text was embedded once by the new model.
    assert!(
        emb.per_text.lock().unwrap().values().all(|&n| n == 1),
        "{:?}",
        emb.per_text.lock().unwrap()
    );

    // An upload with the new model, then undo: the old model catches up
    // with it and serves again.
    upload(&b, u.id, r3.id, "after switch", 3).await;
    let old_emb = Counting::new(old(), None);
    let job = reembed::undo(&a, &old_emb).await.unwrap();
    assert_eq!(job.state, JobState::Backfill);
    assert_eq!(old_emb.embedded(), 3);
    let (found, _) = top(&a, "after switch chunk 1 kubernetes rust", scope)
        .await
        .unwrap();
    assert_eq!(found, "after switch chunk 1 kubernetes rust");
    assert!(matches!(
        top(&b, "third chunk 1", scope).await,
        Err(Error::NotServing { .. })
    ));

    // Switch again and finish: the old model's table is dropped, the
    // names are the migrations' again.
    reembed::run(&a, &emb, RunOptions::default(), |_| {})
        .await
        .unwrap();
    reembed::switch(&a, &emb).await.unwrap();
    let job = reembed::finish(&a).await.unwrap();
    assert_eq!(job.state, JobState::Finished);
    assert_eq!(
        strings(
            t.raw(),
            "SELECT coalesce(to_regclass('resume_chunks_shadow')::text, 'gone')"
        )
        .await,
        ["gone"]
    );
    assert_eq!(
        strings(
            t.raw(),
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'resume_chunks' ORDER BY 1"
        )
        .await,
        indexes_before
    );
    let (found, _) = top(&b, "after switch chunk 2 kubernetes rust", scope)
        .await
        .unwrap();
    assert_eq!(found, "after switch chunk 2 kubernetes rust");
    let status = reembed::status(&b).await.unwrap();
    assert_eq!(status.serving, Some(new()));
    assert_eq!(status.queued, 0);
}

#[tokio::test]
async fn an_interrupted_run_resumes_without_embedding_a_stored_chunk_twice() {
    let t = TestDb::new().await;
    let a = handle(t.url(), old()).await;
    let u = user(&a, "ada").await;
    for i in 0..4 {
        let r = resume(&a, u.id, &format!("cv{i}")).await;
        upload(&a, u.id, r.id, &format!("resume {i}"), 30).await;
    }
    reembed::start(&a, &new()).await.unwrap();
    // Nothing to switch to or finish yet.
    let err = reembed::switch(&a, &Counting::new(new(), None))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("backfill is not complete"),
        "{err}"
    );
    let err = reembed::finish(&a).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    // Fails on its 5th call: 4 batches of 10 stored (maybe fewer, with
    // calls in flight), the rest lost.
    let failing = Counting::new(new(), Some(4));
    let err = reembed::run(
        &a,
        &failing,
        RunOptions {
            in_flight: 2,
            batch: 10,
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Embedder { .. }), "{err}");
    let stored: usize = strings(t.raw(), "SELECT count(*)::text FROM resume_chunks_shadow").await
        [0]
    .parse()
    .unwrap();
    assert!(stored > 0 && stored <= 40, "{stored}");
    // The lease was released: a new run starts at once and embeds only
    // what was not stored.
    let resumed = Counting::new(new(), None);
    let summary = reembed::run(&a, &resumed, RunOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(summary.embedded as usize, 120 - stored);
    assert_eq!(resumed.embedded(), 120 - stored);
    let stored_texts: Vec<String> = strings(t.raw(), "SELECT text FROM resume_chunks_shadow").await;
    let mut unique = stored_texts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 120);
    assert_eq!(stored_texts.len(), 120);
    let job = reembed::cancel(&a).await.unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    // The old model serves on.
    let (found, _) = top(
        &a,
        "resume 2 chunk 7 kubernetes rust",
        SearchScope::User(u.id),
    )
    .await
    .unwrap();
    assert_eq!(found, "resume 2 chunk 7 kubernetes rust");
}
