//! The released migrations. **Frozen code**: a file in this folder never
//! changes once it has been applied anywhere; a schema change is a new
//! migration at the end of [`migrations!`]'s list.
//!
//! The numbering and names follow the original SQL migrations
//! (`001_user_profiles.sql`, `002_add_pdf_storage.sql`,
//! `003_create_vector_store.sql`); migration 004 is this project's first own
//! migration.
//!
//! From m010 on, a migration keeps its SQL in `sql/<name>.up.sql` and
//! `sql/<name>.down.sql` (listed in [`SQL_SOURCES`]), which CI lints with
//! squawk (`scripts/lint-migrations`, rules in `.squawk.toml`).
//!
//! Rules for the files here (README, "Adding a migration"):
//! - never import the `entity` crate: an applied migration must not change
//!   when a model changes later;
//! - every `up` has a `down` that leaves the database exactly as before;
//! - no guard-rail calls: [`crate::Migrator`] wraps every migration listed
//!   here with the lock timeout and the data-loss guard.

use sea_orm_migration::MigrationTrait;

/// Declares the migration modules, in order, once: the list, their sources
/// (for [`fingerprint`]) and nothing else to keep in sync.
macro_rules! migrations {
    ($($name:ident),+ $(,)?) => {
        $(mod $name;)+

        /// Every migration, in the order they are applied, unwrapped.
        pub(crate) fn all() -> Vec<Box<dyn MigrationTrait>> {
            vec![$(Box::new($name::Migration)),+]
        }

        /// The source of every migration module, in order.
        const SOURCES: &[&str] = &[$(include_str!(concat!(stringify!($name), ".rs"))),+];
    };
}

migrations!(
    m001_user_profiles,
    m002_add_pdf_storage,
    m003_create_vector_store,
    m004_delete_orphan_chunks,
    m005_legacy_import,
    m007_lowercase_chunk_ids,
    m008_hnsw_ef_construction,
    m009_staged_chunks,
    m010_embedding_models,
);

/// The SQL files of the migrations (`sql/`), part of their sources.
const SQL_SOURCES: &[(&str, &str)] = &[
    ("m010_embedding_models.up.sql", m010_embedding_models::UP),
    (
        "m010_embedding_models.down.sql",
        m010_embedding_models::DOWN,
    ),
];

/// A stable 64-bit fingerprint (FNV-1a) of the migration names and sources.
///
/// Changes whenever a migration is added or edited; test fixtures use it to
/// name the pre-migrated template database, so a stale template is never
/// reused.
pub fn fingerprint() -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let names: Vec<String> = all().iter().map(|m| m.name().to_owned()).collect();
    names
        .iter()
        .map(String::as_str)
        .chain(SOURCES.iter().copied())
        .chain(SQL_SOURCES.iter().map(|(_, sql)| *sql))
        .flat_map(|s| s.bytes().chain(std::iter::once(0)))
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sql_file_is_a_source() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/migrations/sql");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let mut listed: Vec<String> = SQL_SOURCES.iter().map(|(n, _)| (*n).to_owned()).collect();
        listed.sort();
        assert_eq!(
            files,
            listed,
            "list every file of {} in SQL_SOURCES",
            dir.display()
        );
    }
}
