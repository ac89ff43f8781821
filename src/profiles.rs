//! User profiles: upsert from Firebase auth data, lookup, deletion.

use entity::user_profiles::{self, Column, Entity};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::settings::Op;
use crate::store::Store;
use crate::validate::{Chars, TextRule, invalid, nfc};

/// Longest Firebase uid, in characters (Firebase's own limit).
pub const MAX_UID_CHARS: usize = 128;
/// Longest e-mail address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// Longest photo URL, in bytes.
pub const MAX_PHOTO_URL_BYTES: usize = 2048;

const UID: TextRule = TextRule {
    chars: Chars::Visible,
    ..TextRule::line("firebase_uid", MAX_UID_CHARS)
};
const EMAIL: TextRule = TextRule {
    chars: Chars::Visible,
    max_chars: MAX_EMAIL_BYTES,
    max_bytes: MAX_EMAIL_BYTES,
    ..TextRule::line("email", MAX_EMAIL_BYTES)
};
const DISPLAY_NAME: TextRule = TextRule::line("display_name", MAX_DISPLAY_NAME_CHARS);
const PHOTO_URL: TextRule = TextRule {
    chars: Chars::Visible,
    max_chars: MAX_PHOTO_URL_BYTES,
    max_bytes: MAX_PHOTO_URL_BYTES,
    ..TextRule::line("photo_url", MAX_PHOTO_URL_BYTES)
};

/// The canonical form of a Firebase uid, as the library stores and looks
/// it up: checked, then in Unicode Normalization Form C.
///
/// A uid is 1 to [`MAX_UID_CHARS`] characters (counted after
/// normalization), without leading or trailing whitespace, and without
/// control characters (NUL, line breaks, tabs), line separators or
/// invisible format characters (zero-width space, bidi overrides): two uids
/// that look the same are the same uid. Canonically equivalent spellings
/// (NFC and NFD) are one uid. Uids Firebase generates (28 ASCII letters and
/// digits) always pass unchanged; the rules matter for custom-token uids.
///
/// # Errors
/// [`Error::Validation`] (field `firebase_uid`) naming the rule broken.
///
/// ```
/// use mockinterview_db::profiles::canonical_uid;
/// assert_eq!(canonical_uid("Jose\u{301}").unwrap(), "Jos\u{e9}");
/// assert!(canonical_uid("\u{200B}").is_err());
/// assert!(canonical_uid(" uid").is_err());
/// ```
pub fn canonical_uid(uid: &str) -> Result<String> {
    // NUL and length in bytes first, so a huge value is not normalized.
    crate::validate::no_nul("firebase_uid", uid)?;
    if uid.len() > MAX_UID_CHARS * 4 * 3 {
        return Err(invalid(
            "firebase_uid",
            format!(
                "is {} bytes long; the limit is {MAX_UID_CHARS} characters",
                uid.len()
            ),
        ));
    }
    let uid = nfc(uid);
    UID.check(&uid)?;
    Ok(uid)
}

/// Checks an e-mail address: at most [`MAX_EMAIL_BYTES`] bytes, one `@`
/// between a non-empty local part (at most 64 bytes, no whitespace, control
/// or invisible characters, none of `<>()[]\,;:"`, no leading, trailing or
/// doubled dot) and a domain of at least two dot-separated labels of
/// letters, digits and hyphens (Unicode letters allowed; a label is 1 to 63
/// characters and does not start or end with a hyphen). Quoted local parts
/// and IP-literal domains are not accepted. The address is stored as given
/// (not lower-cased: the local part is case-sensitive in principle).
///
/// # Errors
/// [`Error::Validation`] (field `email`) saying what is wrong.
///
/// ```
/// use mockinterview_db::profiles::validate_email;
/// assert!(validate_email("ada@example.com").is_ok());
/// for bad in ["@", "x@y@z.com", "a@b.com\n", "ada@localhost", "ada@exa mple.com"] {
///     assert!(validate_email(bad).is_err(), "{bad:?}");
/// }
/// ```
pub fn validate_email(email: &str) -> Result<()> {
    EMAIL.check(email)?;
    let bad = |why: &str| {
        invalid(
            "email",
            format!("`{email}` is not an e-mail address: {why}"),
        )
    };
    let (local, domain) = match email.split_once('@') {
        Some((l, d)) if !d.contains('@') => (l, d),
        _ => return Err(bad("it must contain exactly one `@`")),
    };
    if local.is_empty() || local.len() > 64 {
        return Err(bad("the part before `@` must be 1 to 64 bytes"));
    }
    if local
        .chars()
        .any(|c| c.is_whitespace() || "<>()[]\\,;:\"".contains(c))
    {
        return Err(bad(
            "the part before `@` contains whitespace or one of <>()[]\\,;:\"",
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad(
            "the part before `@` has a leading, trailing or doubled dot",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("the domain must have a dot (e.g. example.com)"));
    }
    for label in labels {
        let ok = (1..=63).contains(&label.chars().count())
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(
                "each part of the domain is 1 to 63 letters, digits or inner hyphens",
            ));
        }
    }
    Ok(())
}

/// Checks a profile photo URL: an absolute `http://` or `https://` URL with
/// a host, at most [`MAX_PHOTO_URL_BYTES`] bytes, without whitespace,
/// control or invisible characters (other schemes such as `javascript:` or
/// `data:` are refused: the URL ends up in `<img src>`).
///
/// # Errors
/// [`Error::Validation`] (field `photo_url`).
pub fn validate_photo_url(url: &str) -> Result<()> {
    PHOTO_URL.check(url)?;
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(invalid(
            "photo_url",
            "must be an absolute http:// or https:// URL with a host, without spaces".into(),
        )),
    }
}

/// A profile row.
pub type Profile = user_profiles::Model;

/// The user data Firebase auth hands the application after sign-in.
///
/// Rules (checked by every function taking one; nothing is written when one
/// fails): `uid` as [`canonical_uid`] (stored in NFC); `email` as
/// [`validate_email`] (Firebase phone-number users have none: `None`, not an
/// empty string); `display_name` 1 to [`MAX_DISPLAY_NAME_CHARS`] characters
/// on one line, not blank, not padded; `photo_url` as [`validate_photo_url`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FirebaseUser {
    /// Firebase uid (1 to 128 characters, see [`canonical_uid`]).
    pub uid: String,
    /// E-mail address, if the account has one.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Profile picture URL.
    pub photo_url: Option<String>,
}

impl FirebaseUser {
    /// Checks every field; returns the canonical uid.
    fn validate(&self) -> Result<String> {
        let uid = canonical_uid(&self.uid)?;
        if let Some(email) = &self.email {
            validate_email(email)?;
        }
        if let Some(name) = &self.display_name {
            DISPLAY_NAME.check(name)?;
        }
        if let Some(url) = &self.photo_url {
            validate_photo_url(url)?;
        }
        Ok(uid)
    }

    fn active_model(&self, uid: String) -> user_profiles::ActiveModel {
        user_profiles::ActiveModel {
            firebase_uid: Set(uid),
            email: Set(self.email.clone()),
            display_name: Set(self.display_name.clone()),
            photo_url: Set(self.photo_url.clone()),
            ..Default::default()
        }
    }
}

/// A profile field [`clear_profile_fields`] can erase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileField {
    /// `email`.
    Email,
    /// `display_name`.
    DisplayName,
    /// `photo_url`.
    PhotoUrl,
}

impl ProfileField {
    fn column(self) -> Column {
        match self {
            Self::Email => Column::Email,
            Self::DisplayName => Column::DisplayName,
            Self::PhotoUrl => Column::PhotoUrl,
        }
    }
}

/// Creates the profile for `user`, or updates its email, display name and
/// photo URL if one with the same uid exists, in one round trip
/// (`INSERT ... ON CONFLICT (firebase_uid) DO UPDATE ... RETURNING *`).
///
/// A field that is `None` keeps its stored value: an auth payload without a
/// claim (a token that lacks `picture`, a phone user without an e-mail) says
/// nothing about it, and erasing data on a sign-in would lose it silently.
/// To erase a field on purpose, use [`clear_profile_fields`].
///
/// # Errors
/// [`Error::Validation`] for a malformed field (see [`FirebaseUser`];
/// nothing is written),
/// [`Error::Database`] / [`Error::Unavailable`] for database failures.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// use mockinterview_db::profiles::{upsert_profile, FirebaseUser};
/// let profile = upsert_profile(db, &FirebaseUser {
///     uid: "firebase-uid".into(),
///     email: Some("ada@example.com".into()),
///     display_name: Some("Ada".into()),
///     photo_url: None,
/// }).await?;
/// println!("profile {}", profile.id);
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, user), fields(uid = %user.uid))]
pub async fn upsert_profile<S: Store + ?Sized>(db: &S, user: &FirebaseUser) -> Result<Profile> {
    let uid = user.validate()?;
    let row = user.active_model(uid);
    db.route()
        .write(Op::Plain, |c| async move {
            let keep =
                |col: &str| Expr::cust(format!("COALESCE(EXCLUDED.{col}, user_profiles.{col})"));
            Ok(Entity::insert(row)
                .on_conflict(
                    OnConflict::column(Column::FirebaseUid)
                        .value(Column::Email, keep("email"))
                        .value(Column::DisplayName, keep("display_name"))
                        .value(Column::PhotoUrl, keep("photo_url"))
                        .to_owned(),
                )
                .exec_with_returning(&c)
                .await?)
        })
        .await
}

/// Creates a profile, failing if the uid is taken.
///
/// # Errors
/// [`Error::Conflict`] when a profile with this uid exists,
/// [`Error::Validation`] for malformed input.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// use mockinterview_db::{profiles::{create_profile, FirebaseUser}, Error};
/// let user = FirebaseUser { uid: "uid-1".into(), ..Default::default() };
/// match create_profile(db, &user).await {
///     Err(Error::Conflict { .. }) => println!("already registered"),
///     other => { other?; }
/// }
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db, user), fields(uid = %user.uid))]
pub async fn create_profile<S: Store + ?Sized>(db: &S, user: &FirebaseUser) -> Result<Profile> {
    let uid = user.validate()?;
    let row = user.active_model(uid.clone());
    db.route()
        .write(Op::Plain, |c| async move {
            Entity::insert(row)
                .exec_with_returning(&c)
                .await
                .map_err(|e| match Error::from(e) {
                    Error::Conflict { .. } => Error::Conflict {
                        message: format!(
                            "a profile with firebase_uid `{}` already exists; use \
                             upsert_profile to update it",
                            uid
                        ),
                    },
                    other => other,
                })
        })
        .await
}

/// The profile with this Firebase uid (compared in its canonical form, see
/// [`canonical_uid`]: the NFC and NFD spellings find the same profile).
///
/// # Errors
/// [`Error::NotFound`] when there is none; [`Error::Validation`] for a uid
/// the library would never store (see [`canonical_uid`]).
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// let profile = mockinterview_db::profiles::profile_by_uid(db, "firebase-uid").await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn profile_by_uid<S: Store + ?Sized>(db: &S, uid: &str) -> Result<Profile> {
    let uid = &canonical_uid(uid)?;
    db.route()
        .read(Op::Plain, |c| async move {
            Entity::find()
                .filter(Column::FirebaseUid.eq(uid.as_str()))
                .one(&c)
                .await?
                .ok_or_else(|| Error::NotFound {
                    entity: "profile",
                    key: format!("firebase_uid {uid}"),
                })
        })
        .await
}

/// The profile with this id.
///
/// # Errors
/// [`Error::NotFound`] when there is none.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// let profile = mockinterview_db::profiles::profile_by_id(db, user_id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn profile_by_id<S: Store + ?Sized>(db: &S, id: Uuid) -> Result<Profile> {
    db.route()
        .read(Op::Plain, |c| async move { find_by_id(&c, id).await })
        .await
}

/// The profile with this id, on `c`.
pub(crate) async fn find_by_id<C: ConnectionTrait>(c: &C, id: Uuid) -> Result<Profile> {
    Entity::find_by_id(id)
        .one(c)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Erases `fields` of the profile (sets them to NULL) and returns it:
/// the explicit counterpart of [`upsert_profile`], which keeps fields it is
/// not given.
///
/// # Errors
/// [`Error::NotFound`] when there is no such profile.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// use mockinterview_db::profiles::{clear_profile_fields, ProfileField};
/// let p = clear_profile_fields(db, user_id, &[ProfileField::PhotoUrl]).await?;
/// assert!(p.photo_url.is_none());
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn clear_profile_fields<S: Store + ?Sized>(
    db: &S,
    id: Uuid,
    fields: &[ProfileField],
) -> Result<Profile> {
    if fields.is_empty() {
        return db
            .route()
            .primary_read(Op::Plain, |c| async move { find_by_id(&c, id).await })
            .await;
    }
    db.route()
        .write(Op::Plain, |c| async move {
            let mut update = Entity::update_many().filter(Column::Id.eq(id));
            for field in fields {
                update = update.col_expr(field.column(), Expr::value(Option::<String>::None));
            }
            update
                .exec_with_returning(&c)
                .await?
                .pop()
                .ok_or_else(|| not_found(id))
        })
        .await
}

/// Deletes a profile and everything that belongs to the user: preferences and
/// resumes (foreign-key cascade) and their resume chunks (migration 004's
/// triggers), in one statement.
///
/// # Errors
/// [`Error::NotFound`] when there is no such profile.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// mockinterview_db::profiles::delete_profile(db, user_id).await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn delete_profile<S: Store + ?Sized>(db: &S, id: Uuid) -> Result<()> {
    db.route()
        .write(Op::Plain, |c| async move {
            let res = Entity::delete_by_id(id).exec(&c).await?;
            if res.rows_affected == 0 {
                return Err(not_found(id));
            }
            Ok(())
        })
        .await
}

pub(crate) fn not_found(id: Uuid) -> Error {
    Error::NotFound {
        entity: "profile",
        key: id.to_string(),
    }
}
