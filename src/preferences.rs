//! Interview preferences: read with defaults, validated partial updates.

use entity::user_preferences::{self, Column, Entity};
pub use entity::user_preferences::{Difficulty, Theme};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result, is_foreign_key_violation};
use crate::settings::Op;
use crate::store::Store;

/// Shortest allowed interview, in minutes.
pub const MIN_DURATION_MINUTES: u16 = 1;
/// Longest allowed interview, in minutes.
pub const MAX_DURATION_MINUTES: u16 = 240;
/// Most languages a user can list.
pub const MAX_LANGUAGES: usize = 20;
/// Longest language name, in characters (one line: no control characters;
/// trimmed; NUL and invisible-only names are refused).
pub const MAX_LANGUAGE_CHARS: usize = 50;

const LANGUAGE: crate::validate::TextRule =
    crate::validate::TextRule::line("languages", MAX_LANGUAGE_CHARS);

/// A user's effective preferences (stored values, or the defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// Interview difficulty.
    pub difficulty: Difficulty,
    /// Interview length in minutes.
    pub duration_minutes: u16,
    /// Languages, in the user's order.
    pub languages: Vec<String>,
    /// UI theme.
    pub theme: Theme,
    /// False while the user has never saved preferences (these are defaults).
    pub stored: bool,
}

impl Default for Preferences {
    /// The defaults of the `user_preferences` columns: medium, 30 minutes,
    /// no languages, system theme.
    fn default() -> Self {
        Self {
            difficulty: Difficulty::default(),
            duration_minutes: 30,
            languages: Vec::new(),
            theme: Theme::default(),
            stored: false,
        }
    }
}

impl From<user_preferences::Model> for Preferences {
    fn from(m: user_preferences::Model) -> Self {
        Self {
            difficulty: m.difficulty,
            duration_minutes: u16::try_from(m.duration).unwrap_or(MAX_DURATION_MINUTES),
            languages: m.languages,
            theme: m.theme,
            stored: true,
        }
    }
}

/// A partial update: `None` fields keep their current value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencesUpdate {
    /// New difficulty.
    pub difficulty: Option<Difficulty>,
    /// New length in minutes (1 to 240).
    pub duration_minutes: Option<u16>,
    /// New language list (replaces the old one; trimmed, duplicates removed;
    /// each 1 to [`MAX_LANGUAGE_CHARS`] characters on one line).
    pub languages: Option<Vec<String>>,
    /// New theme.
    pub theme: Option<Theme>,
}

impl PreferencesUpdate {
    /// Checks the values, and normalizes the language list.
    fn validated(mut self) -> Result<Self> {
        if let Some(d) = self.duration_minutes
            && !(MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&d)
        {
            return Err(Error::Validation {
                field: "duration_minutes",
                reason: format!(
                    "{d} is out of range; use {MIN_DURATION_MINUTES} to {MAX_DURATION_MINUTES} minutes"
                ),
            });
        }
        if let Some(langs) = self.languages.take() {
            let mut out: Vec<String> = Vec::with_capacity(langs.len());
            for lang in langs {
                let lang = check_language(&lang)?;
                if !out.iter().any(|l| l.eq_ignore_ascii_case(&lang)) {
                    out.push(lang);
                }
            }
            if out.len() > MAX_LANGUAGES {
                return Err(Error::Validation {
                    field: "languages",
                    reason: format!("at most {MAX_LANGUAGES} languages, got {}", out.len()),
                });
            }
            self.languages = Some(out);
        }
        Ok(self)
    }

    fn is_empty(&self) -> bool {
        self.difficulty.is_none()
            && self.duration_minutes.is_none()
            && self.languages.is_none()
            && self.theme.is_none()
    }
}

/// One language entry as stored: trimmed, 1 to [`MAX_LANGUAGE_CHARS`]
/// characters on one line (no control or invisible-only text, no NUL).
/// Lists also drop duplicates ignoring ASCII case (the first spelling
/// wins) and hold at most [`MAX_LANGUAGES`] entries.
///
/// # Errors
/// [`Error::Validation`] (field `languages`) naming the rule broken.
pub fn check_language(lang: &str) -> Result<String> {
    let lang = lang.trim();
    LANGUAGE.check(lang)?;
    if lang.is_empty() || lang.chars().count() > MAX_LANGUAGE_CHARS {
        return Err(Error::Validation {
            field: "languages",
            reason: format!(
                "each language must be 1 to {MAX_LANGUAGE_CHARS} characters, got `{lang}`"
            ),
        });
    }
    Ok(lang.to_owned())
}

/// Parses `easy`, `medium` or `hard` (e.g. from a request body).
///
/// # Errors
/// [`Error::Validation`] (field `difficulty`) for anything else.
pub fn parse_difficulty(s: &str) -> Result<Difficulty> {
    match s {
        "easy" => Ok(Difficulty::Easy),
        "medium" => Ok(Difficulty::Medium),
        "hard" => Ok(Difficulty::Hard),
        other => Err(Error::Validation {
            field: "difficulty",
            reason: format!("`{other}` is not one of easy, medium, hard"),
        }),
    }
}

/// Parses `light`, `dark` or `system`.
///
/// # Errors
/// [`Error::Validation`] (field `theme`) for anything else.
pub fn parse_theme(s: &str) -> Result<Theme> {
    match s {
        "light" => Ok(Theme::Light),
        "dark" => Ok(Theme::Dark),
        "system" => Ok(Theme::System),
        other => Err(Error::Validation {
            field: "theme",
            reason: format!("`{other}` is not one of light, dark, system"),
        }),
    }
}

/// The user's preferences, or the defaults (with `stored: false`) if the
/// user has not saved any.
///
/// # Errors
/// [`Error::NotFound`] when the profile does not exist.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// let prefs = mockinterview_db::preferences::preferences(db, user_id).await?;
/// if !prefs.stored { println!("defaults: {} minutes", prefs.duration_minutes); }
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn preferences<S: Store + ?Sized>(db: &S, user_id: Uuid) -> Result<Preferences> {
    db.route()
        .read(Op::Plain, |c| async move { find(&c, user_id).await })
        .await
}

async fn find<C: ConnectionTrait>(c: &C, user_id: Uuid) -> Result<Preferences> {
    if let Some(row) = Entity::find()
        .filter(Column::UserId.eq(user_id))
        .one(c)
        .await?
    {
        return Ok(row.into());
    }
    // No row: distinguish "no preferences yet" from "no such user".
    crate::profiles::find_by_id(c, user_id).await?;
    Ok(Preferences::default())
}

/// Applies a partial update, creating the row (with defaults for the other
/// fields) if the user has none, in one statement. Returns the result.
///
/// # Errors
/// [`Error::Validation`] for out-of-range values (nothing is written),
/// [`Error::NotFound`] when the profile does not exist.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// use mockinterview_db::preferences::{update_preferences, Difficulty, PreferencesUpdate};
/// let prefs = update_preferences(db, user_id, PreferencesUpdate {
///     difficulty: Some(Difficulty::Hard),
///     duration_minutes: Some(45),
///     ..Default::default()
/// }).await?;
/// assert_eq!(prefs.duration_minutes, 45);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn update_preferences<S: Store + ?Sized>(
    db: &S,
    user_id: Uuid,
    update: PreferencesUpdate,
) -> Result<Preferences> {
    let update = update.validated()?;
    if update.is_empty() {
        // Nothing to write: the current values, from the primary like the
        // answer to a write.
        return db
            .route()
            .primary_read(Op::Plain, |c| async move { find(&c, user_id).await })
            .await;
    }
    let mut row = user_preferences::ActiveModel {
        user_id: Set(user_id),
        ..Default::default()
    };
    let mut changed = Vec::new();
    if let Some(v) = update.difficulty {
        row.difficulty = Set(v);
        changed.push(Column::Difficulty);
    }
    if let Some(v) = update.duration_minutes {
        row.duration = Set(i32::from(v));
        changed.push(Column::Duration);
    }
    if let Some(v) = update.languages {
        row.languages = Set(v);
        changed.push(Column::Languages);
    }
    if let Some(v) = update.theme {
        row.theme = Set(v);
        changed.push(Column::Theme);
    }
    db.route()
        .write(Op::Plain, |c| async move {
            let saved = Entity::insert(row)
                .on_conflict(
                    OnConflict::column(Column::UserId)
                        .update_columns(changed)
                        .to_owned(),
                )
                .exec_with_returning(&c)
                .await
                .map_err(|e| {
                    // The profile does not exist.
                    if is_foreign_key_violation(&e) {
                        crate::profiles::not_found(user_id)
                    } else {
                        Error::from(e)
                    }
                })?;
            Ok(saved.into())
        })
        .await
}
