//! `legacy_ids`: the TypeScript app's integer ids and the uuids their rows
//! got when `migration import` copied them (migration 005).
//!
//! Rows are written by the import only. A row outlives the entity it names,
//! so an old id of a deleted account resolves to "not found" rather than to
//! another row.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// `table_name` of imported profiles.
pub const USER_PROFILES: &str = "user_profiles";
/// `table_name` of imported preferences.
pub const USER_PREFERENCES: &str = "user_preferences";
/// `table_name` of imported resumes.
pub const RESUMES: &str = "resumes";

/// One imported row's old and new id.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "legacy_ids")]
pub struct Model {
    /// The table of both databases the row belongs to: [`USER_PROFILES`],
    /// [`USER_PREFERENCES`] or [`RESUMES`].
    #[sea_orm(primary_key, auto_increment = false)]
    pub table_name: String,
    /// The row's `serial` id in the TypeScript app's database.
    #[sea_orm(primary_key, auto_increment = false)]
    pub legacy_id: i64,
    /// The row's id here.
    pub id: Uuid,
    /// When the import wrote it.
    pub imported_at: DateTimeWithTimeZone,
}

/// `legacy_ids` has no foreign keys (it names rows of three tables).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
