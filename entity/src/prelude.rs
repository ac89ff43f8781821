//! Re-exports of every entity under a short name: `use entity::prelude::*;`.

pub use crate::legacy_ids::Entity as LegacyIds;
pub use crate::resume_chunks::Entity as ResumeChunks;
pub use crate::resumes::Entity as Resumes;
pub use crate::user_preferences::Entity as UserPreferences;
pub use crate::user_profiles::Entity as UserProfiles;
