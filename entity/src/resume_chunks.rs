//! `resume_chunks`: resume text chunks with embeddings for semantic search.
//!
//! The layout is LangChain `PGVectorStore`'s default (`id`, `text`,
//! `metadata`, `embedding`), shared with other services, so the table has no
//! foreign key: the owning user and resume are in `metadata` as the string
//! keys [`METADATA_USER_ID`] and [`METADATA_RESUME_ID`].

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Metadata key holding the owner's `user_profiles.id`, as a string.
pub const METADATA_USER_ID: &str = "user_id";
/// Metadata key holding the `resumes.id` the chunk came from, as a string.
pub const METADATA_RESUME_ID: &str = "resume_id";

/// A chunk of resume text with its embedding.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "resume_chunks")]
pub struct Model {
    /// Chunk id (database-generated when not supplied).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The chunk's text.
    pub text: Option<String>,
    /// JSON metadata: `user_id`, `resume_id` and caller-defined keys.
    pub metadata: Option<Json>,
    /// `vector(768)` embedding (cosine distance, HNSW-indexed).
    pub embedding: Option<PgVector>,
}

/// `resume_chunks` has no foreign keys (fixed LangChain layout).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
