//! The SeaORM entities round-trip a row of every table.

use crate::support::TestDb;
use entity::{resume_chunks, resumes, user_preferences, user_profiles};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ModelTrait, QueryOrder};
use serde_json::json;

async fn insert_profile(db: &impl ConnectionTrait, uid: &str) -> user_profiles::Model {
    user_profiles::ActiveModel {
        firebase_uid: Set(uid.to_owned()),
        email: Set(Some(format!("{uid}@example.com"))),
        display_name: Set(Some("Ada Lovelace".into())),
        photo_url: Set(Some("https://example.com/ada.png".into())),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn profile_preferences_and_resume_round_trip_with_relations() {
    let db = TestDb::new().await;
    let conn = db.conn();
    let profile = insert_profile(conn, "firebase-uid-1").await;
    assert_eq!(
        user_profiles::Entity::find_by_id(profile.id)
            .one(conn)
            .await
            .unwrap(),
        Some(profile.clone())
    );

    let prefs = user_preferences::ActiveModel {
        user_id: Set(profile.id),
        difficulty: Set(user_preferences::Difficulty::Hard),
        duration: Set(45),
        languages: Set(vec!["rust".into(), "sql".into()]),
        theme: Set(user_preferences::Theme::Dark),
        ..Default::default()
    }
    .insert(conn)
    .await
    .unwrap();
    let found = profile
        .find_related(user_preferences::Entity)
        .one(conn)
        .await
        .unwrap();
    assert_eq!(found, Some(prefs));

    let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n".to_vec();
    let resume = resumes::ActiveModel {
        user_id: Set(profile.id),
        title: Set("Backend CV".into()),
        file_name: Set("cv.pdf".into()),
        file_path: Set(None),
        file_size: Set(pdf.len() as i64),
        content: Set(Some("Rust, PostgreSQL".into())),
        file_data: Set(Some(pdf.clone())),
        ..Default::default()
    }
    .insert(conn)
    .await
    .unwrap();
    let listed = profile
        .find_related(resumes::Entity)
        .order_by_asc(resumes::Column::CreatedAt)
        .all(conn)
        .await
        .unwrap();
    assert_eq!(listed, std::slice::from_ref(&resume));
    assert_eq!(listed[0].file_data.as_deref(), Some(pdf.as_slice()));
}

#[tokio::test]
async fn preferences_defaults_come_from_the_database() {
    let db = TestDb::new().await;
    let profile = insert_profile(db.conn(), "uid-defaults").await;
    let prefs = user_preferences::ActiveModel {
        user_id: Set(profile.id),
        ..Default::default()
    }
    .insert(db.conn())
    .await
    .unwrap();
    assert_eq!(prefs.difficulty, user_preferences::Difficulty::Medium);
    assert_eq!(prefs.theme, user_preferences::Theme::System);
    assert_eq!(prefs.duration, 30);
    assert!(prefs.languages.is_empty());
}

#[tokio::test]
async fn chunk_round_trips_a_768_dimension_embedding() {
    let db = TestDb::new().await;
    let embedding: Vec<f32> = (0..768).map(|i| (i as f32 * 0.37).sin()).collect();
    let metadata = json!({"user_id": Uuid::new_v4().to_string(), "resume_id": Uuid::new_v4().to_string(), "page": 1});
    let chunk = resume_chunks::ActiveModel {
        id: Set(Uuid::new_v4()),
        text: Set(Some("Built a Rust data layer".into())),
        metadata: Set(Some(metadata.clone())),
        embedding: Set(Some(PgVector::from(embedding.clone()))),
    }
    .insert(db.conn())
    .await
    .unwrap();
    let found = resume_chunks::Entity::find_by_id(chunk.id)
        .one(db.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, chunk);
    assert_eq!(found.embedding.unwrap().to_vec(), embedding);
    assert_eq!(found.metadata, Some(metadata));
}

#[tokio::test]
async fn wrong_dimension_embedding_is_rejected_by_the_database() {
    let db = TestDb::new().await;
    let err = resume_chunks::ActiveModel {
        id: Set(Uuid::new_v4()),
        text: Set(Some("short".into())),
        metadata: Set(None),
        embedding: Set(Some(PgVector::from(vec![0.1_f32; 3]))),
    }
    .insert(db.conn())
    .await
    .unwrap_err();
    assert!(err.to_string().contains("expected 768 dimensions"), "{err}");
    assert_eq!(
        resume_chunks::Entity::find()
            .count(db.conn())
            .await
            .unwrap(),
        0
    );
}
