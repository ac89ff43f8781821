//! Profiles: upsert, lookup, conflict, delete with everything the user owns.

use crate::support::TestDb;
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::{Error, chunks, preferences, resumes};
use uuid::Uuid;

use crate::support::*;

#[tokio::test]
async fn upsert_creates_then_updates_by_firebase_uid() {
    let db = TestDb::new().await;
    let mut fb = FirebaseUser {
        uid: "uid-1".into(),
        email: Some("a@example.com".into()),
        display_name: Some("Ada".into()),
        photo_url: None,
    };
    let created = profiles::upsert_profile(db.conn(), &fb).await.unwrap();
    fb.email = Some("ada@example.com".into());
    fb.photo_url = Some("https://example.com/a.png".into());
    let updated = profiles::upsert_profile(db.conn(), &fb).await.unwrap();
    assert_eq!(updated.id, created.id, "same row");
    assert_eq!(updated.email.as_deref(), Some("ada@example.com"));
    assert_eq!(
        updated.photo_url.as_deref(),
        Some("https://example.com/a.png")
    );
    assert_eq!(updated.created_at, created.created_at);

    assert_eq!(
        profiles::profile_by_uid(db.conn(), "uid-1").await.unwrap(),
        updated
    );
    assert_eq!(
        profiles::profile_by_id(db.conn(), created.id)
            .await
            .unwrap(),
        updated
    );
}

#[tokio::test]
async fn create_profile_twice_is_a_conflict() {
    let db = TestDb::new().await;
    let fb = FirebaseUser {
        uid: "dup".into(),
        ..Default::default()
    };
    profiles::create_profile(db.conn(), &fb).await.unwrap();
    let err = profiles::create_profile(db.conn(), &fb).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("upsert_profile"), "{err}");
}

#[tokio::test]
async fn invalid_firebase_data_is_rejected_before_writing() {
    let db = TestDb::new().await;
    for (fb, field) in [
        (FirebaseUser::default(), "firebase_uid"),
        (
            FirebaseUser {
                uid: "x".repeat(129),
                ..Default::default()
            },
            "firebase_uid",
        ),
        (
            FirebaseUser {
                uid: "ok".into(),
                email: Some("not-an-email".into()),
                ..Default::default()
            },
            "email",
        ),
    ] {
        match profiles::upsert_profile(db.conn(), &fb).await {
            Err(Error::Validation { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected validation error on {field}, got {other:?}"),
        }
    }
    assert!(matches!(
        profiles::profile_by_uid(db.conn(), "ok").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn missing_profiles_are_not_found() {
    let db = TestDb::new().await;
    let id = Uuid::new_v4();
    for err in [
        profiles::profile_by_id(db.conn(), id).await.unwrap_err(),
        profiles::profile_by_uid(db.conn(), "nobody")
            .await
            .unwrap_err(),
        profiles::delete_profile(db.conn(), id).await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::NotFound {
                    entity: "profile",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn delete_profile_removes_preferences_resumes_and_chunks() {
    let db = TestDb::new().await;
    let (ada, bob) = (user(db.conn(), "ada").await, user(db.conn(), "bob").await);
    for u in [&ada, &bob] {
        preferences::update_preferences(
            db.conn(),
            u.id,
            preferences::PreferencesUpdate {
                duration_minutes: Some(45),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let r = resume(db.conn(), u.id, "cv").await;
        crate::support::replace(db.conn(), u.id, r.id, &chunks(1, 5))
            .await
            .unwrap();
    }

    profiles::delete_profile(db.conn(), ada.id).await.unwrap();

    assert!(matches!(
        profiles::profile_by_id(db.conn(), ada.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        resumes::list_resumes(db.conn(), ada.id)
            .await
            .unwrap()
            .is_empty()
    );
    let q = mockinterview_db::SearchQuery::new(
        embedding(7),
        10,
        mockinterview_db::SearchScope::User(ada.id),
    );
    assert!(
        chunks::search_chunks(db.conn(), &q)
            .await
            .unwrap()
            .is_empty()
    );
    let count = crate::support::strings(
        db.conn(),
        "SELECT (SELECT count(*) FROM user_preferences)::text || ' ' || (SELECT count(*) FROM resume_chunks)::text",
    )
    .await;
    assert_eq!(count, ["1 5"], "bob's preferences and chunks stay");
}
