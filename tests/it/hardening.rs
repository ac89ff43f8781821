//! Input rules and rows other services wrote: every bad input is a typed
//! `Validation` error naming the field, raised before any statement (checked
//! against a server that does not exist: a round trip would be
//! `Unavailable`), and nothing another writer of `resume_chunks` can store
//! breaks a read.

use crate::support::TestDb;
use mockinterview_db::chunks::{
    self, MAX_CHUNK_TEXT_BYTES, MAX_METADATA_DEPTH, ResumeChunks, search_chunks,
};
use mockinterview_db::preferences::{self, PreferencesUpdate};
use mockinterview_db::profiles::{self, FirebaseUser, ProfileField};
use mockinterview_db::resumes::{self, NewResume, PdfUpload};
use mockinterview_db::{Embedding, Error, NewChunk, SearchQuery, SearchScope};
use sea_orm::ConnectionTrait;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::support::*;

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: mockinterview_db::Result<T>, field: &str) {
    match result {
        Err(Error::Validation { field: f, reason }) => {
            assert_eq!(f, field, "wrong field; reason: {reason}")
        }
        other => panic!("expected a Validation error on {field}, got {other:?}"),
    }
}

fn fb(uid: &str) -> FirebaseUser {
    FirebaseUser {
        uid: uid.into(),
        ..Default::default()
    }
}

/// `'[v, v, ...]'` for a vector literal.
fn vector_literal(e: &Embedding) -> String {
    let values: Vec<String> = e.as_slice().iter().map(|v| v.to_string()).collect();
    format!("'[{}]'", values.join(","))
}

/// Inserts a chunk the way LangChain's PGVectorStore does: plain SQL.
async fn insert_foreign(db: &impl ConnectionTrait, text: &str, metadata: &str, embedding: &str) {
    db.execute_unprepared(&format!(
        "INSERT INTO resume_chunks (text, metadata, embedding) \
         VALUES ('{text}', {metadata}, {embedding})"
    ))
    .await
    .unwrap();
}

async fn count(db: &impl ConnectionTrait, sql: &str) -> i64 {
    strings(db, &format!("SELECT ({sql})::text")).await[0]
        .parse()
        .unwrap()
}

// ------------------------------------------------------------ identity --

#[tokio::test]
async fn uids_and_emails_follow_the_documented_rules_before_any_round_trip() {
    let test_db = TestDb::new().await;
    let db = test_db.conn().clone();
    for uid in [
        "",
        "   ",
        "\u{200B}",
        "a\u{200B}b",
        " uid",
        "uid\n",
        "u\0id",
        "a\u{202E}b",
        &"x".repeat(129),
    ] {
        assert_invalid(
            profiles::upsert_profile(&db, &fb(uid)).await,
            "firebase_uid",
        );
        assert_invalid(
            profiles::create_profile(&db, &fb(uid)).await,
            "firebase_uid",
        );
        assert_invalid(profiles::profile_by_uid(&db, uid).await, "firebase_uid");
    }
    for email in [
        "",
        "@",
        "x@y@z.com",
        "a@b.com\n",
        "a@b\n",
        "ada@localhost",
        "a da@example.com",
        "ada@exa mple.com",
        ".ada@example.com",
        "ada@-example.com",
        "ada\0@example.com",
        "ada@example.com\u{200B}",
        &format!("{}@example.com", "a".repeat(65)),
    ] {
        let user = FirebaseUser {
            email: Some(email.into()),
            ..fb("uid")
        };
        assert_invalid(profiles::upsert_profile(&db, &user).await, "email");
    }
    for (field, user) in [
        (
            "display_name",
            FirebaseUser {
                display_name: Some("Ada\0".into()),
                ..fb("uid")
            },
        ),
        (
            "display_name",
            FirebaseUser {
                display_name: Some("x".repeat(257)),
                ..fb("uid")
            },
        ),
        (
            "photo_url",
            FirebaseUser {
                photo_url: Some("javascript:alert(1)".into()),
                ..fb("uid")
            },
        ),
        (
            "photo_url",
            FirebaseUser {
                photo_url: Some(format!("https://x.com/{}", "a".repeat(2048))),
                ..fb("uid")
            },
        ),
    ] {
        assert_invalid(profiles::upsert_profile(&db, &user).await, field);
    }
    // A 128-character uid of 4-byte characters, after NFC, is fine.
    assert_eq!(
        profiles::canonical_uid(&"😀".repeat(128)).unwrap(),
        "😀".repeat(128)
    );
}

#[tokio::test]
async fn nfc_and_nfd_spellings_of_a_uid_are_one_profile() {
    let db = TestDb::new().await;
    let nfc = profiles::upsert_profile(db.conn(), &fb("jos\u{e9}"))
        .await
        .unwrap();
    let nfd = profiles::upsert_profile(db.conn(), &fb("jose\u{301}"))
        .await
        .unwrap();
    assert_eq!(nfc.id, nfd.id);
    assert_eq!(nfd.firebase_uid, "jos\u{e9}");
    assert!(matches!(
        profiles::create_profile(db.conn(), &fb("jose\u{301}")).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        profiles::profile_by_uid(db.conn(), "jose\u{301}")
            .await
            .unwrap()
            .id,
        nfc.id
    );
    assert_eq!(
        count(db.conn(), "SELECT count(*) FROM user_profiles").await,
        1
    );
}

#[tokio::test]
async fn upsert_without_a_field_keeps_it_and_clearing_is_explicit() {
    let db = TestDb::new().await;
    let full = FirebaseUser {
        uid: "ada".into(),
        email: Some("ada@example.com".into()),
        display_name: Some("Ada".into()),
        photo_url: Some("https://example.com/ada.png".into()),
    };
    let created = profiles::upsert_profile(db.conn(), &full).await.unwrap();
    let again = profiles::upsert_profile(db.conn(), &fb("ada"))
        .await
        .unwrap();
    assert_eq!(again.email, full.email);
    assert_eq!(again.display_name, full.display_name);
    assert_eq!(again.photo_url, full.photo_url);
    // A new value still replaces the old one.
    let renamed = profiles::upsert_profile(
        db.conn(),
        &FirebaseUser {
            display_name: Some("Ada L.".into()),
            ..fb("ada")
        },
    )
    .await
    .unwrap();
    assert_eq!(renamed.display_name.as_deref(), Some("Ada L."));
    assert_eq!(renamed.email, full.email);

    let cleared = profiles::clear_profile_fields(
        db.conn(),
        created.id,
        &[ProfileField::PhotoUrl, ProfileField::Email],
    )
    .await
    .unwrap();
    assert_eq!(cleared.photo_url, None);
    assert_eq!(cleared.email, None);
    assert_eq!(cleared.display_name.as_deref(), Some("Ada L."));
    assert!(matches!(
        profiles::clear_profile_fields(db.conn(), Uuid::new_v4(), &[ProfileField::Email]).await,
        Err(Error::NotFound { .. })
    ));
}

// ------------------------------------------------------------- resumes --

#[tokio::test]
async fn pdf_uploads_are_valid_by_construction() {
    assert_invalid(PdfUpload::inline(Vec::new()), "file_data");
    assert_invalid(PdfUpload::inline(b"GIF89a".to_vec()), "file_data");
    assert_invalid(PdfUpload::inline(pdf(3 << 20)), "file_data");
    // The caller's limit never goes past the hard ceiling.
    assert_invalid(
        PdfUpload::inline_with_limit(pdf(resumes::MAX_INLINE_PDF_BYTES), usize::MAX),
        "file_data",
    );
    for path in ["", "  ", " a.pdf", "a\0.pdf", "a\n.pdf", "a\u{200B}.pdf"] {
        assert_invalid(PdfUpload::path(path, 10), "file_path");
    }
    assert_invalid(PdfUpload::path("x".repeat(1025), 10), "file_path");
    assert_invalid(PdfUpload::path("s3://b/cv.pdf", 0), "file_size");
    assert_invalid(PdfUpload::path("s3://b/cv.pdf", u64::MAX), "file_size");

    let inline = PdfUpload::inline(pdf(10)).unwrap();
    assert!(inline.is_inline());
    assert_eq!(inline.bytes(), Some(&pdf(10)[..]));
    assert_eq!(inline.size_bytes(), pdf(10).len() as u64);
    let path = PdfUpload::path("s3://b/cv.pdf", 4096).unwrap();
    assert_eq!(
        (path.file_path(), path.bytes(), path.size_bytes()),
        (Some("s3://b/cv.pdf"), None, 4096)
    );
}

#[tokio::test]
async fn resume_text_is_bounded_and_checked_before_any_round_trip() {
    let test_db = TestDb::new().await;
    let db = test_db.conn().clone();
    let id = Uuid::new_v4();
    let new = |title: &str, file_name: &str, content: Option<String>| NewResume {
        user_id: id,
        title: title.into(),
        file_name: file_name.into(),
        pdf: PdfUpload::inline(pdf(10)).unwrap(),
        content,
    };
    let ten_mb = "t".repeat(10 << 20);
    for (field, bad) in [
        ("title", new(&ten_mb, "cv.pdf", None)),
        ("title", new(&"t".repeat(201), "cv.pdf", None)),
        ("title", new("a\0b", "cv.pdf", None)),
        ("title", new("line\nbreak", "cv.pdf", None)),
        ("title", new("\u{200B}", "cv.pdf", None)),
        ("file_name", new("CV", &"f".repeat(256), None)),
        ("file_name", new("CV", "cv\0.pdf", None)),
        ("file_name", new("CV", " ", None)),
        ("content", new("CV", "cv.pdf", Some("a\0b".into()))),
        (
            "content",
            new(
                "CV",
                "cv.pdf",
                Some("c".repeat(resumes::MAX_CONTENT_BYTES + 1)),
            ),
        ),
    ] {
        assert_invalid(resumes::create_resume(&db, bad).await, field);
    }
    assert_invalid(
        resumes::update_resume_content(&db, id, id, "a\0b").await,
        "content",
    );
    assert_invalid(
        resumes::update_resume_content(&db, id, id, &"c".repeat(resumes::MAX_CONTENT_BYTES + 1))
            .await,
        "content",
    );
    // The limits themselves are accepted (checked against the database).
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let ok = resumes::create_resume(
        db.conn(),
        NewResume {
            user_id: u.id,
            title: "é".repeat(200),
            file_name: "f".repeat(255),
            pdf: PdfUpload::inline(pdf(10)).unwrap(),
            content: Some("multi\nline\ttext\u{c}".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(ok.title.chars().count(), 200);
}

#[tokio::test]
async fn languages_reject_nul_and_control_characters() {
    let test_db = TestDb::new().await;
    let db = test_db.conn().clone();
    for bad in ["Rust\0", "Go\nC", "\u{200B}"] {
        let update = PreferencesUpdate {
            languages: Some(vec![bad.into()]),
            ..Default::default()
        };
        assert_invalid(
            preferences::update_preferences(&db, Uuid::new_v4(), update).await,
            "languages",
        );
    }
}

#[tokio::test]
async fn another_users_ids_are_not_found_everywhere() {
    let db = TestDb::new().await;
    let (ada, ada_cv) = ada_with_chunks(db.conn(), 3).await;
    let bob = user(db.conn(), "bob").await;
    let c = db.conn();
    let not_found = |r: mockinterview_db::Result<()>| {
        assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    };
    not_found(resumes::resume(c, bob.id, ada_cv.id).await.map(drop));
    not_found(resumes::resume_pdf(c, bob.id, ada_cv.id).await.map(drop));
    not_found(resumes::update_resume_content(c, bob.id, ada_cv.id, "mine").await);
    not_found(resumes::delete_resume(c, bob.id, ada_cv.id).await);
    not_found(
        crate::support::replace(c, bob.id, ada_cv.id, &chunks(5, 2))
            .await
            .map(drop),
    );
    assert!(
        chunks::resume_chunks(c, bob.id, ada_cv.id)
            .await
            .unwrap()
            .is_empty()
    );
    let q = SearchQuery::new(
        embedding(1),
        10,
        SearchScope::Resume {
            user_id: bob.id,
            resume_id: ada_cv.id,
        },
    );
    assert!(search_chunks(c, &q).await.unwrap().is_empty());
    // Ada's data is untouched.
    let detail = resumes::resume(c, ada.id, ada_cv.id).await.unwrap();
    assert_eq!(detail.content.as_deref(), Some("cv text"));
    assert_eq!(
        chunks::resume_chunks(c, ada.id, ada_cv.id)
            .await
            .unwrap()
            .len(),
        3
    );
}

// -------------------------------------------------------------- chunks --

#[tokio::test]
async fn chunk_text_and_metadata_are_checked_before_the_copy_starts() {
    let test_db = TestDb::new().await;
    let db = test_db.conn().clone();
    let (u, r) = (Uuid::new_v4(), Uuid::new_v4());
    let mut deep = json!(1);
    for _ in 0..126 {
        deep = json!([deep]);
    }
    let mut big = chunks(1, 3000);
    big[2999].text.push('\0');
    let cases: Vec<(&str, Vec<NewChunk>, &str)> = vec![
        ("text", big, "chunk 2999"),
        (
            "text",
            vec![NewChunk::new(
                "x".repeat(MAX_CHUNK_TEXT_BYTES + 1),
                embedding(1),
            )],
            "chunk 0",
        ),
        (
            "text",
            vec![NewChunk::new(" \u{200B} ", embedding(1))],
            "chunk 0",
        ),
        (
            "metadata",
            vec![
                NewChunk::new("ok", embedding(1)),
                NewChunk::new("deep", embedding(2)).with_metadata("pdf", deep.clone()),
            ],
            "chunk 1",
        ),
        (
            "metadata",
            vec![NewChunk::new("nul", embedding(1)).with_metadata("k\0", 1)],
            "chunk 0",
        ),
        (
            "metadata",
            vec![NewChunk::new("nul", embedding(1)).with_metadata("k", json!({"a": ["x\u{0}"]}))],
            "k.a[0]",
        ),
        (
            "metadata",
            vec![NewChunk::new("big", embedding(1)).with_metadata("k", "v".repeat(70_000))],
            "65536-byte limit",
        ),
    ];
    for (field, set, mention) in cases {
        match crate::support::replace(&db, u, r, &set).await {
            Err(Error::Validation { field: f, reason }) => {
                assert_eq!(f, field, "{reason}");
                assert!(reason.contains(mention), "{mention:?} not in {reason:?}");
                assert!(
                    reason.contains(&r.to_string()),
                    "names the resume: {reason}"
                );
            }
            other => panic!("expected Validation({field}), got {other:?}"),
        }
        let bulk = [ResumeChunks {
            user_id: u,
            resume_id: r,
            chunks: &set,
        }];
        assert_invalid(
            mockinterview_db::chunks::replace_chunks(
                &db,
                &bulk,
                mockinterview_db::chunks::Indexing::Now,
            )
            .await,
            field,
        );
    }
    // The bounds themselves: 32 levels including the metadata object.
    let mut at_limit = json!(1);
    for _ in 0..MAX_METADATA_DEPTH - 1 {
        at_limit = json!([at_limit]);
    }
    let ok = vec![NewChunk::new("ok", embedding(1)).with_metadata("k", at_limit.clone())];
    let real = TestDb::new().await;
    let (ada, cv) = ada_with_chunks(real.conn(), 0).await;
    crate::support::replace(real.conn(), ada.id, cv.id, &ok)
        .await
        .unwrap();
    let over = vec![NewChunk::new("no", embedding(1)).with_metadata("k", json!([at_limit]))];
    assert_invalid(
        crate::support::replace(real.conn(), ada.id, cv.id, &over).await,
        "metadata",
    );
}

#[tokio::test]
async fn search_filters_are_bounded_and_checked_before_any_round_trip() {
    let test_db = TestDb::new().await;
    let db = test_db.conn().clone();
    let q = |key: &str, value: Json| {
        SearchQuery::new(embedding(1), 5, SearchScope::All).filter(key, value)
    };
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    for bad in [
        q("k\0", json!(1)),
        q("k", json!("v\0")),
        q("k", deep),
        q("k", json!("v".repeat(70_000))),
    ] {
        assert_invalid(search_chunks(&db, &bad).await, "metadata_filter");
    }
    let mut many = SearchQuery::new(embedding(1), 5, SearchScope::All);
    for i in 0..33 {
        many = many.filter(format!("k{i}"), i);
    }
    assert_invalid(search_chunks(&db, &many).await, "metadata_filter");
    assert_invalid(
        search_chunks(&db, &SearchQuery::new(embedding(1), 0, SearchScope::All)).await,
        "k",
    );
}

#[tokio::test]
async fn tiny_embeddings_are_rejected_and_foreign_ones_do_not_score_one() {
    let mut tiny = vec![0.0_f32; 768];
    tiny[0] = 1e-30;
    assert_invalid(
        Embedding::new(
            &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
            tiny,
        ),
        "embedding",
    );

    // A zero vector another service wrote is never ranked, and does not
    // take the place of real results.
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 3).await;
    let zero = format!("'[{}]'", vec!["0"; 768].join(","));
    let tiny = format!("'[1e-30{}]'", ",0".repeat(767));
    let meta = format!(
        "'{{\"user_id\": \"{}\", \"resume_id\": \"{}\"}}'",
        u.id, r.id
    );
    insert_foreign(db.conn(), "zero", &meta, &zero).await;
    insert_foreign(db.conn(), "tiny", &meta, &tiny).await;
    // Each unrankable kind gives pgvector one of the cosine distances the
    // scoped search re-checks: 0 (tiny), 2 (tiny, pointing away), 1 (the
    // sum of squares overflows), NaN (zero).
    let away = format!("'[-1e-30{}]'", ",0".repeat(767));
    let huge = format!("'[3e38,3e38{}]'", ",0".repeat(766));
    insert_foreign(db.conn(), "away", &meta, &away).await;
    insert_foreign(db.conn(), "huge", &meta, &huge).await;
    // A chunk identical to the query has distance 0 too, and is ranked.
    insert_foreign(db.conn(), "same", &meta, &vector_literal(&embedding(1))).await;
    for scope in [
        SearchScope::User(u.id),
        SearchScope::Resume {
            user_id: u.id,
            resume_id: r.id,
        },
        SearchScope::All,
    ] {
        let hits = search_chunks(db.conn(), &SearchQuery::new(embedding(1), 10, scope))
            .await
            .unwrap();
        let texts: Vec<_> = hits.iter().map(|h| h.text.clone().unwrap()).collect();
        assert_eq!(hits.len(), 4, "{scope:?}: {texts:?}");
        assert_eq!(texts[0], "same", "{scope:?}: {texts:?}");
        assert!(hits[0].score > 0.999, "{scope:?}");
        assert!(
            hits[1..]
                .iter()
                .all(|h| h.score < 0.999 && h.score.is_finite()),
            "{scope:?}: {texts:?}"
        );
    }
}

#[tokio::test]
async fn chunks_without_an_embedding_are_skipped_by_every_search() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 3).await;
    let meta = format!(
        "'{{\"user_id\": \"{}\", \"resume_id\": \"{}\"}}'",
        u.id, r.id
    );
    insert_foreign(db.conn(), "no embedding", &meta, "NULL").await;
    for scope in [
        SearchScope::User(u.id),
        SearchScope::Resume {
            user_id: u.id,
            resume_id: r.id,
        },
        SearchScope::All,
    ] {
        let hits = search_chunks(db.conn(), &SearchQuery::new(embedding(1), 10, scope))
            .await
            .unwrap();
        assert_eq!(hits.len(), 3, "{scope:?}");
    }
    let stored = chunks::resume_chunks(db.conn(), u.id, r.id).await.unwrap();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored.iter().filter(|c| c.embedding.is_none()).count(), 1);
}

#[tokio::test]
async fn deeply_nested_metadata_from_other_services_never_breaks_a_read() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 2).await;
    for (text, depth) in [("deep200", 200), ("deep3000", 3000)] {
        let meta = format!(
            "jsonb_build_object('user_id', '{}', 'resume_id', '{}', 'page', 1, \
             'pdf', (repeat('[', {depth}) || '1' || repeat(']', {depth}))::jsonb)",
            u.id, r.id
        );
        insert_foreign(db.conn(), text, &meta, &vector_literal(&embedding(9))).await;
    }
    // A deep value that is the whole metadata (not an object).
    insert_foreign(
        db.conn(),
        "deep-array",
        "(repeat('[', 300) || repeat(']', 300))::jsonb",
        &vector_literal(&embedding(9)),
    )
    .await;

    let stored = chunks::resume_chunks(db.conn(), u.id, r.id).await.unwrap();
    assert_eq!(stored.len(), 4);
    for c in stored
        .iter()
        .filter(|c| c.text.as_deref().unwrap().starts_with("deep"))
    {
        let m = c.metadata.as_ref().unwrap();
        assert_eq!(m["user_id"], json!(u.id.to_string()));
        assert_eq!(m["page"], json!(1));
        // The deep value comes back as its JSON text, unchanged.
        let text = m["pdf"].as_str().expect("deep value as JSON text");
        assert!(
            text.starts_with("[[[[") && text.ends_with("]]]]"),
            "{text:.20}"
        );
        assert_eq!(text.matches('[').count(), text.matches(']').count());
    }
    for scope in [
        SearchScope::User(u.id),
        SearchScope::Resume {
            user_id: u.id,
            resume_id: r.id,
        },
        SearchScope::All,
    ] {
        let hits = search_chunks(db.conn(), &SearchQuery::new(embedding(9), 10, scope))
            .await
            .unwrap();
        let expected = if scope == SearchScope::All { 5 } else { 4 };
        assert_eq!(hits.len(), expected, "{scope:?}");
        assert!(hits.iter().all(|h| h.metadata.is_some()));
        // What the library returns can be serialized and parsed again.
        let text = serde_json::to_string(&hits).unwrap();
        let _: Json = serde_json::from_str(&text).unwrap();
    }
}

// ------------------------------------------ rows other services wrote --

#[tokio::test]
async fn upper_case_uuids_written_by_others_are_found_and_deleted() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 2).await;
    let other = resume(db.conn(), u.id, "other").await;
    let upper = |id: Uuid| id.to_string().to_uppercase();
    // LangChain's PGVectorStore inserts with plain SQL.
    for (text, resume_id) in [("upper-cv", r.id), ("upper-other", other.id)] {
        let meta = format!(
            "'{{\"user_id\": \"{}\", \"resume_id\": \"{}\", \"page\": 1}}'",
            upper(u.id),
            upper(resume_id)
        );
        insert_foreign(db.conn(), text, &meta, &vector_literal(&embedding(7))).await;
    }
    let user_hits = search_chunks(
        db.conn(),
        &SearchQuery::new(embedding(7), 10, SearchScope::User(u.id)),
    )
    .await
    .unwrap();
    assert_eq!(user_hits.len(), 4);
    assert_eq!(
        user_hits[0].metadata.as_ref().unwrap()["user_id"],
        json!(u.id.to_string())
    );
    assert_eq!(
        chunks::resume_chunks(db.conn(), u.id, r.id)
            .await
            .unwrap()
            .len(),
        3
    );
    // Replacing the resume's chunks replaces the foreign one too.
    crate::support::replace(db.conn(), u.id, r.id, &chunks(3, 1))
        .await
        .unwrap();
    assert_eq!(
        count(
            db.conn(),
            "SELECT count(*) FROM resume_chunks WHERE text = 'upper-cv'"
        )
        .await,
        0
    );
    // Deleting the other resume, then the profile, leaves nothing behind.
    resumes::delete_resume(db.conn(), u.id, other.id)
        .await
        .unwrap();
    assert_eq!(
        count(
            db.conn(),
            "SELECT count(*) FROM resume_chunks WHERE text = 'upper-other'"
        )
        .await,
        0
    );
    let meta = format!("'{{\"user_id\": \"{}\"}}'", upper(u.id));
    insert_foreign(db.conn(), "loose", &meta, "NULL").await;
    profiles::delete_profile(db.conn(), u.id).await.unwrap();
    assert_eq!(
        count(db.conn(), "SELECT count(*) FROM resume_chunks").await,
        0
    );
}

#[tokio::test]
async fn metadata_filters_match_langchain_in_both_directions() {
    let db = TestDb::new().await;
    let (u, r) = ada_with_chunks(db.conn(), 0).await;
    // The library writes page as a number...
    let mine = vec![
        NewChunk::new("lib-3", embedding(1))
            .with_metadata("page", 3)
            .with_metadata("tags", json!(["a", "b"]))
            .with_metadata("ok", true),
        NewChunk::new("lib-4", embedding(2)).with_metadata("page", 4),
    ];
    crate::support::replace(db.conn(), u.id, r.id, &mine)
        .await
        .unwrap();
    // ...another service as a string (and a float, and a null).
    let meta = |page: &str| {
        format!(
            "'{{\"user_id\": \"{}\", \"resume_id\": \"{}\", \"page\": {page}}}'",
            u.id, r.id
        )
    };
    insert_foreign(
        db.conn(),
        "lc-3",
        &meta("\"3\""),
        &vector_literal(&embedding(3)),
    )
    .await;
    insert_foreign(
        db.conn(),
        "lc-3.0",
        &meta("3.0"),
        &vector_literal(&embedding(4)),
    )
    .await;
    insert_foreign(
        db.conn(),
        "lc-null",
        &meta("null"),
        &vector_literal(&embedding(5)),
    )
    .await;

    let found = |key: &'static str, value: Json| {
        let conn = db.conn().clone();
        async move {
            let mut texts: Vec<String> = search_chunks(
                &conn,
                &SearchQuery::new(embedding(1), 10, SearchScope::User(u.id)).filter(key, value),
            )
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.text.unwrap())
            .collect();
            texts.sort();
            texts
        }
    };
    assert_eq!(found("page", json!(3)).await, ["lc-3", "lib-3"]);
    assert_eq!(found("page", json!("3")).await, ["lc-3", "lib-3"]);
    assert_eq!(found("page", json!(3.0)).await, ["lc-3.0"]);
    assert_eq!(found("page", json!(null)).await, ["lc-null"]);
    assert_eq!(found("ok", json!(true)).await, ["lib-3"]);
    assert_eq!(found("ok", json!("true")).await, ["lib-3"]);
    assert_eq!(found("tags", json!(["a"])).await, ["lib-3"]);
    assert!(found("tags", json!(["c"])).await.is_empty());

    // LangChain's own SQL for {page: 3} finds the library's chunk.
    assert_eq!(
        strings(
            db.conn(),
            "SELECT text FROM resume_chunks WHERE metadata->>'page' = '3' ORDER BY text"
        )
        .await,
        ["lc-3", "lib-3"]
    );
}

#[tokio::test]
async fn errors_write_nothing_and_preferences_stay() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let before = strings(
        db.conn(),
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM \
         (SELECT row_to_json(p)::text AS t FROM user_profiles p \
          UNION ALL SELECT row_to_json(r)::text FROM resumes r) x",
    )
    .await;
    let _ = profiles::upsert_profile(
        db.conn(),
        &FirebaseUser {
            email: Some("x@y@z".into()),
            ..fb("ada")
        },
    )
    .await
    .unwrap_err();
    let _ = resumes::create_resume(
        db.conn(),
        NewResume {
            user_id: u.id,
            title: "x".repeat(10_000),
            file_name: "cv.pdf".into(),
            pdf: PdfUpload::inline(pdf(1)).unwrap(),
            content: None,
        },
    )
    .await
    .unwrap_err();
    let after = strings(
        db.conn(),
        "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM \
         (SELECT row_to_json(p)::text AS t FROM user_profiles p \
          UNION ALL SELECT row_to_json(r)::text FROM resumes r) x",
    )
    .await;
    assert_eq!(before, after);
}
