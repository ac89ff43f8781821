//! `user_profiles`: one row per Firebase user.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A user profile, created from Firebase auth data.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "user_profiles")]
pub struct Model {
    /// Database-generated id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Firebase user id (unique, 1 to 128 characters).
    #[sea_orm(unique)]
    pub firebase_uid: String,
    /// E-mail address, if the Firebase account has one.
    pub email: Option<String>,
    /// Display name from the Firebase account.
    pub display_name: Option<String>,
    /// Profile picture URL from the Firebase account.
    pub photo_url: Option<String>,
    /// When the row was inserted.
    pub created_at: DateTimeWithTimeZone,
    /// When the row was last updated (maintained by a trigger).
    pub updated_at: DateTimeWithTimeZone,
}

/// Relations of a profile.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user's preferences (at most one row).
    #[sea_orm(has_one = "super::user_preferences::Entity")]
    UserPreferences,
    /// The user's resumes.
    #[sea_orm(has_many = "super::resumes::Entity")]
    Resumes,
}

impl Related<super::user_preferences::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserPreferences.def()
    }
}

impl Related<super::resumes::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Resumes.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
