//! Resumes: inline and path PDFs, listing without bytes, ownership, deletion.

use crate::support::TestDb;
use mockinterview_db::resumes::{
    self, DEFAULT_MAX_INLINE_PDF_BYTES, NewResume, PdfUpload, StoredPdf,
};
use mockinterview_db::{Error, SearchQuery, SearchScope, chunks};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn inline_pdf_round_trips_and_lists_without_bytes() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let bytes = pdf(DEFAULT_MAX_INLINE_PDF_BYTES - 100);
    let created = resumes::create_resume(
        db.conn(),
        NewResume {
            user_id: u.id,
            title: "Backend CV".into(),
            file_name: "cv.pdf".into(),
            pdf: PdfUpload::inline(bytes.clone()).unwrap(),
            content: None,
        },
    )
    .await
    .unwrap();
    assert!(created.stored_inline);
    assert!(!created.has_content);
    assert_eq!(created.file_size, bytes.len() as i64);
    assert_eq!(created.file_path, None);

    let listed = resumes::list_resumes(db.conn(), u.id).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&created));
    assert_eq!(
        resumes::resume_pdf(db.conn(), u.id, created.id)
            .await
            .unwrap(),
        StoredPdf::Inline(bytes)
    );

    resumes::update_resume_content(db.conn(), u.id, created.id, "Rust, SQL")
        .await
        .unwrap();
    let detail = resumes::resume(db.conn(), u.id, created.id).await.unwrap();
    assert_eq!(detail.content.as_deref(), Some("Rust, SQL"));
    assert!(detail.summary.has_content);
    assert!(detail.summary.updated_at > created.updated_at);
}

#[tokio::test]
async fn path_storage_records_the_path_and_size() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let created = resumes::create_resume(
        db.conn(),
        NewResume {
            user_id: u.id,
            title: "Big CV".into(),
            file_name: "big.pdf".into(),
            pdf: PdfUpload::path("s3://bucket/big.pdf", 5_000_000).unwrap(),
            content: Some("text".into()),
        },
    )
    .await
    .unwrap();
    assert!(!created.stored_inline);
    assert_eq!(created.file_size, 5_000_000);
    assert_eq!(
        resumes::resume_pdf(db.conn(), u.id, created.id)
            .await
            .unwrap(),
        StoredPdf::Path("s3://bucket/big.pdf".into())
    );
}

#[test]
fn inline_pdfs_are_checked_for_signature_and_size() {
    let err = PdfUpload::inline(b"GIF89a...".to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Validation {
                field: "file_data",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("%PDF-"), "{err}");

    let err = PdfUpload::inline(pdf(DEFAULT_MAX_INLINE_PDF_BYTES)).unwrap_err();
    assert!(
        err.to_string().contains("PdfUpload::path"),
        "suggests path storage: {err}"
    );
    // A configurable limit.
    assert!(PdfUpload::inline_with_limit(pdf(100), 64).is_err());
    assert!(PdfUpload::inline_with_limit(pdf(DEFAULT_MAX_INLINE_PDF_BYTES), 4 << 20).is_ok());
    assert!(PdfUpload::path(" ", 1).is_err());
}

#[tokio::test]
async fn bad_input_and_unknown_owner_write_nothing() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let new = |user_id, title: &str| NewResume {
        user_id,
        title: title.into(),
        file_name: "cv.pdf".into(),
        pdf: PdfUpload::inline(pdf(1)).unwrap(),
        content: None,
    };
    assert!(matches!(
        resumes::create_resume(db.conn(), new(u.id, " ")).await,
        Err(Error::Validation { field: "title", .. })
    ));
    assert!(matches!(
        resumes::create_resume(db.conn(), new(Uuid::new_v4(), "CV")).await,
        Err(Error::NotFound {
            entity: "profile",
            ..
        })
    ));
    assert!(
        resumes::list_resumes(db.conn(), u.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn another_users_resume_is_not_found_for_every_operation() {
    let db = TestDb::new().await;
    let (ada, eve) = (user(db.conn(), "ada").await, user(db.conn(), "eve").await);
    let r = resume(db.conn(), ada.id, "cv").await;
    let c = db.conn();
    let errors = [
        resumes::resume(c, eve.id, r.id).await.err(),
        resumes::resume_pdf(c, eve.id, r.id).await.err(),
        resumes::update_resume_content(c, eve.id, r.id, "x")
            .await
            .err(),
        resumes::delete_resume(c, eve.id, r.id).await.err(),
        crate::support::replace(c, eve.id, r.id, &chunks(1, 2))
            .await
            .err(),
    ];
    for err in errors {
        assert!(
            matches!(
                err,
                Some(Error::NotFound {
                    entity: "resume",
                    ..
                })
            ),
            "{err:?}"
        );
    }
    assert!(resumes::list_resumes(c, eve.id).await.unwrap().is_empty());
    assert_eq!(
        resumes::resume(c, ada.id, r.id)
            .await
            .unwrap()
            .content
            .as_deref(),
        Some("cv text")
    );
}

#[tokio::test]
async fn delete_resume_deletes_its_chunks_only() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "ada").await;
    let (a, b) = (
        resume(db.conn(), u.id, "a").await,
        resume(db.conn(), u.id, "b").await,
    );
    crate::support::replace(db.conn(), u.id, a.id, &chunks(1, 4))
        .await
        .unwrap();
    crate::support::replace(db.conn(), u.id, b.id, &chunks(2, 3))
        .await
        .unwrap();

    resumes::delete_resume(db.conn(), u.id, a.id).await.unwrap();

    assert!(
        chunks::resume_chunks(db.conn(), u.id, a.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        chunks::resume_chunks(db.conn(), u.id, b.id)
            .await
            .unwrap()
            .len(),
        3
    );
    let all = chunks::search_chunks(
        db.conn(),
        &SearchQuery::new(embedding(1), 100, SearchScope::User(u.id)),
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        resumes::list_resumes(db.conn(), u.id).await.unwrap().len(),
        1
    );
}
