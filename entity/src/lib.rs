//! SeaORM entities for the mock-interview schema.
//!
//! One module per table, matching the migrations in the `migration` crate:
//!
//! | module | table | what it holds |
//! |---|---|---|
//! | [`user_profiles`] | `user_profiles` | one row per Firebase user |
//! | [`user_preferences`] | `user_preferences` | interview preferences, at most one row per user |
//! | [`resumes`] | `resumes` | resume metadata, extracted text, optionally the PDF bytes (`file_data`) |
//! | [`resume_chunks`] | `resume_chunks` | resume text chunks with 768-dimension embeddings |
//! | [`legacy_ids`] | `legacy_ids` | integer ids of the TypeScript app's database and the uuids their rows got on import |
//!
//! These are plain data definitions; the queries that applications use live
//! in the root `mockinterview-db` crate.

pub mod legacy_ids;
pub mod prelude;
pub mod resume_chunks;
pub mod resumes;
pub mod user_preferences;
pub mod user_profiles;

/// Number of dimensions of `resume_chunks.embedding` (`vector(768)`, Google
/// text-embedding-004).
pub const EMBEDDING_DIMENSIONS: usize = 768;
