//! Schema migrations for the mock-interview database.
//!
//! One module per migration, applied in the order listed in [`Migrator`]. The
//! numbering and names follow the original SQL migrations
//! (`001_user_profiles.sql`, `002_add_pdf_storage.sql`,
//! `003_create_vector_store.sql`) so that a database created by either project
//! can be followed by the other. Migration 004 is this project's first own
//! migration (triggers that delete orphaned resume chunks).
//!
//! Rules for this crate (see the README, "Adding a migration"):
//! - never edit a migration that has been applied anywhere; add a new one;
//! - never import the `entity` crate: an applied migration must not change
//!   when a model changes later;
//! - every `up` has a `down` that leaves the database exactly as before.
//!
//! Run it with `cargo run -p migration -- <command>` or
//! `sea-orm-cli migrate <command>`.

pub use sea_orm_migration::prelude::*;

mod m001_user_profiles;
mod m002_add_pdf_storage;
mod m003_create_vector_store;
mod m004_delete_orphan_chunks;
pub mod pgvector_check;

/// The ordered list of this project's migrations.
///
/// Use it from application code with
/// `Migrator::up(&db, None).await` (from [`MigratorTrait`]).
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m001_user_profiles::Migration),
            Box::new(m002_add_pdf_storage::Migration),
            Box::new(m003_create_vector_store::Migration),
            Box::new(m004_delete_orphan_chunks::Migration),
        ]
    }
}

/// Sources of every migration module, in order. Feeds [`schema_fingerprint`].
const MIGRATION_SOURCES: &[&str] = &[
    include_str!("m001_user_profiles.rs"),
    include_str!("m002_add_pdf_storage.rs"),
    include_str!("m003_create_vector_store.rs"),
    include_str!("m004_delete_orphan_chunks.rs"),
];

/// A stable 64-bit fingerprint (FNV-1a) of the migration names and sources.
///
/// Changes whenever a migration is added or edited; test fixtures use it to
/// name the pre-migrated template database, so a stale template is never
/// reused.
pub fn schema_fingerprint() -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let names = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect::<Vec<_>>();
    names
        .iter()
        .map(String::as_str)
        .chain(MIGRATION_SOURCES.iter().copied())
        .flat_map(|s| s.bytes().chain(std::iter::once(0)))
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}
