//! `resumes`: resume metadata, extracted text and optionally the PDF itself.
//!
//! The PDF is stored either inline in [`Model::file_data`] (small files, kept
//! transactionally with the row) or outside the database at
//! [`Model::file_path`].

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A resume.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "resumes")]
pub struct Model {
    /// Database-generated id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner (`user_profiles.id`).
    pub user_id: Uuid,
    /// Title shown to the user (non-empty).
    pub title: String,
    /// Original file name of the PDF (non-empty).
    pub file_name: String,
    /// Where the PDF is stored outside the database, if it is.
    pub file_path: Option<String>,
    /// Size of the PDF in bytes (non-negative; equals `file_data`'s length
    /// when the PDF is stored inline).
    pub file_size: i64,
    /// Text extracted from the PDF, once extraction has run.
    pub content: Option<String>,
    /// When the row was inserted.
    pub created_at: DateTimeWithTimeZone,
    /// When the row was last updated (maintained by a trigger).
    pub updated_at: DateTimeWithTimeZone,
    /// The PDF bytes, when stored in the database (migration 002).
    #[serde(skip)]
    pub file_data: Option<Vec<u8>>,
    /// The user's primary resume (at most one per user; migration 005).
    pub is_primary: bool,
}

/// Relations of a resume.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The profile the resume belongs to.
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
