//! User profiles: upsert from Firebase auth data, lookup, deletion.

use entity::user_profiles::{self, Column, Entity};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::store::{Op, Store};

/// A profile row.
pub type Profile = user_profiles::Model;

/// The user data Firebase auth hands the application after sign-in.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FirebaseUser {
    /// Firebase uid (1 to 128 characters).
    pub uid: String,
    /// E-mail address, if the account has one.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Profile picture URL.
    pub photo_url: Option<String>,
}

impl FirebaseUser {
    fn validate(&self) -> Result<()> {
        let len = self.uid.chars().count();
        if len == 0 || len > 128 || self.uid.trim() != self.uid {
            return Err(Error::Validation {
                field: "firebase_uid",
                reason: format!(
                    "must be 1 to 128 characters without surrounding spaces, got {len} characters"
                ),
            });
        }
        if let Some(email) = &self.email
            && !email.contains('@')
        {
            return Err(Error::Validation {
                field: "email",
                reason: format!("`{email}` is not an e-mail address"),
            });
        }
        Ok(())
    }

    fn active_model(&self) -> user_profiles::ActiveModel {
        user_profiles::ActiveModel {
            firebase_uid: Set(self.uid.clone()),
            email: Set(self.email.clone()),
            display_name: Set(self.display_name.clone()),
            photo_url: Set(self.photo_url.clone()),
            ..Default::default()
        }
    }
}

/// Creates the profile for `user`, or updates its email, display name and
/// photo URL if one with the same uid exists, in one round trip
/// (`INSERT ... ON CONFLICT (firebase_uid) DO UPDATE ... RETURNING *`).
///
/// # Errors
/// [`Error::Validation`] for a malformed uid or e-mail (nothing is written),
/// [`Error::Database`] / [`Error::Unavailable`] for database failures.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection) -> mockinterview_db::Result<()> {
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
    user.validate()?;
    db.route()
        .write(Op::Plain, |c| async move {
            Ok(Entity::insert(user.active_model())
                .on_conflict(
                    OnConflict::column(Column::FirebaseUid)
                        .update_columns([Column::Email, Column::DisplayName, Column::PhotoUrl])
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
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
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
    user.validate()?;
    db.route()
        .write(Op::Plain, |c| async move {
            Entity::insert(user.active_model())
                .exec_with_returning(&c)
                .await
                .map_err(|e| match Error::from(e) {
                    Error::Conflict { .. } => Error::Conflict {
                        message: format!(
                            "a profile with firebase_uid `{}` already exists; use \
                             upsert_profile to update it",
                            user.uid
                        ),
                    },
                    other => other,
                })
        })
        .await
}

/// The profile with this Firebase uid.
///
/// # Errors
/// [`Error::NotFound`] when there is none.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
/// let profile = mockinterview_db::profiles::profile_by_uid(db, "firebase-uid").await?;
/// # Ok(()) }
/// ```
#[tracing::instrument(skip(db))]
pub async fn profile_by_uid<S: Store + ?Sized>(db: &S, uid: &str) -> Result<Profile> {
    db.route()
        .read(Op::Plain, |c| async move {
            Entity::find()
                .filter(Column::FirebaseUid.eq(uid))
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
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
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

/// Deletes a profile and everything that belongs to the user: preferences and
/// resumes (foreign-key cascade) and their resume chunks (migration 004's
/// triggers), in one statement.
///
/// # Errors
/// [`Error::NotFound`] when there is no such profile.
///
/// ```no_run
/// # async fn f(db: &sea_orm::DatabaseConnection, user_id: uuid::Uuid, resume_id: uuid::Uuid) -> mockinterview_db::Result<()> {
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
