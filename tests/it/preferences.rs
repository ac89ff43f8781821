//! Preferences: defaults, partial updates, validation.

use crate::support::TestDb;
use mockinterview_db::Error;
use mockinterview_db::preferences::{
    self, Difficulty, Preferences, PreferencesUpdate, Theme, parse_difficulty, parse_theme,
};
use uuid::Uuid;

use crate::support::user;

#[tokio::test]
async fn defaults_until_saved_then_partial_updates_keep_other_fields() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "prefs").await;
    assert_eq!(
        preferences::preferences(db.conn(), u.id).await.unwrap(),
        Preferences::default()
    );

    let p = preferences::update_preferences(
        db.conn(),
        u.id,
        PreferencesUpdate {
            difficulty: Some(Difficulty::Hard),
            languages: Some(vec![" Rust ".into(), "SQL".into(), "rust".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(p.difficulty, Difficulty::Hard);
    assert_eq!(p.languages, ["Rust", "SQL"], "trimmed, duplicates removed");
    assert_eq!(p.duration_minutes, 30, "default kept");
    assert!(p.stored);

    let p = preferences::update_preferences(
        db.conn(),
        u.id,
        PreferencesUpdate {
            theme: Some(Theme::Dark),
            duration_minutes: Some(90),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (p.difficulty, p.theme, p.duration_minutes, p.languages.len()),
        (Difficulty::Hard, Theme::Dark, 90, 2),
        "earlier fields kept"
    );
    assert_eq!(preferences::preferences(db.conn(), u.id).await.unwrap(), p);
}

#[tokio::test]
async fn out_of_range_values_are_rejected_and_nothing_is_written() {
    let db = TestDb::new().await;
    let u = user(db.conn(), "prefs").await;
    for (update, field) in [
        (
            PreferencesUpdate {
                duration_minutes: Some(0),
                ..Default::default()
            },
            "duration_minutes",
        ),
        (
            PreferencesUpdate {
                duration_minutes: Some(241),
                ..Default::default()
            },
            "duration_minutes",
        ),
        (
            PreferencesUpdate {
                languages: Some(vec!["".into()]),
                ..Default::default()
            },
            "languages",
        ),
        (
            PreferencesUpdate {
                languages: Some((0..21).map(|i| format!("lang{i}")).collect()),
                ..Default::default()
            },
            "languages",
        ),
    ] {
        match preferences::update_preferences(db.conn(), u.id, update).await {
            Err(Error::Validation { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected validation error on {field}, got {other:?}"),
        }
    }
    assert!(
        !preferences::preferences(db.conn(), u.id)
            .await
            .unwrap()
            .stored
    );
    assert!(matches!(
        parse_difficulty("extreme"),
        Err(Error::Validation {
            field: "difficulty",
            ..
        })
    ));
    assert!(matches!(
        parse_theme("neon"),
        Err(Error::Validation { field: "theme", .. })
    ));
    assert_eq!(parse_difficulty("easy").unwrap(), Difficulty::Easy);
    assert_eq!(parse_theme("light").unwrap(), Theme::Light);
}

#[tokio::test]
async fn unknown_user_is_not_found() {
    let db = TestDb::new().await;
    let id = Uuid::new_v4();
    assert!(matches!(
        preferences::preferences(db.conn(), id).await,
        Err(Error::NotFound {
            entity: "profile",
            ..
        })
    ));
    let update = PreferencesUpdate {
        theme: Some(Theme::Dark),
        ..Default::default()
    };
    assert!(matches!(
        preferences::update_preferences(db.conn(), id, update).await,
        Err(Error::NotFound {
            entity: "profile",
            ..
        })
    ));
}
