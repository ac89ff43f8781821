//! `user_preferences`: interview preferences, at most one row per user.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Interview difficulty (`CHECK (difficulty IN ('easy', 'medium', 'hard'))`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    /// Easy questions.
    #[sea_orm(string_value = "easy")]
    Easy,
    /// The default.
    #[default]
    #[sea_orm(string_value = "medium")]
    Medium,
    /// Hard questions.
    #[sea_orm(string_value = "hard")]
    Hard,
}

/// UI theme (`CHECK (theme IN ('light', 'dark', 'system'))`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Light theme.
    #[sea_orm(string_value = "light")]
    Light,
    /// Dark theme.
    #[sea_orm(string_value = "dark")]
    Dark,
    /// Follow the operating system (the default).
    #[default]
    #[sea_orm(string_value = "system")]
    System,
}

/// A user's interview preferences.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "user_preferences")]
pub struct Model {
    /// Database-generated id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner (`user_profiles.id`, unique: one row per user).
    #[sea_orm(unique)]
    pub user_id: Uuid,
    /// Interview difficulty.
    pub difficulty: Difficulty,
    /// Interview length in minutes (1 to 240).
    pub duration: i32,
    /// Languages the user wants to be interviewed in or on.
    pub languages: Vec<String>,
    /// UI theme.
    pub theme: Theme,
    /// When the row was inserted.
    pub created_at: DateTimeWithTimeZone,
    /// When the row was last updated (maintained by a trigger).
    pub updated_at: DateTimeWithTimeZone,
}

/// Relations of a preferences row.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The profile the preferences belong to.
    #[sea_orm(
        belongs_to = "super::user_profiles::Entity",
        from = "Column::UserId",
        to = "super::user_profiles::Column::Id",
        on_delete = "Cascade"
    )]
    UserProfile,
}

impl Related<super::user_profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserProfile.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
