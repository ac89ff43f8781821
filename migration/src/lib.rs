//! Schema migrations for the mock-interview database, in the shape of
//! SeaORM's `migration` template: the migrations and the [`Migrator`],
//! with the guard rails every run goes through.
//!
//! | module | what | changes? |
//! |---|---|---|
//! | `migrations` (private) | the released migrations, m001 to m005, m007 to m009 (006 was never released) | **frozen**: never edited once applied; new ones are appended |
//! | [`Migrator`] | the list, each migration wrapped with the guard rails | when a migration is added |
//! | [`guard`] | running safely: [`lock`] (one migrator at a time, one transaction per run, through poolers too), [`safety`] (lock timeout, data-loss guard), [`foreign_schema`] (`up` never adopts another schema), [`pgvector_check`], [`search_path`] (schema per transaction) | living code |
//! | [`schema`] | what the migrations produce and what a database has: [`expected`], [`catalog`] (snapshots and their diff), [`status`] ([`ensure_schema_current`]), [`detect`] (the TypeScript app's schema versions) | living code |
//!
//! The command line (`migration up`, `verify`, `import`, `doctor`, ...) is
//! the `migration-tool` crate. From an application, call
//! [`lock::up_locked`] at start-up (as the schema's owner), or
//! [`ensure_schema_current`] (as an application role that may not change
//! the schema).

pub use sea_orm_migration::prelude::*;

pub mod guard;
mod migrations;
mod migrator;
pub mod schema;

pub use guard::{foreign_schema, lock, pgvector_check, safety, search_path};
pub use migrator::Migrator;
pub use schema::status::ensure_schema_current;
pub use schema::{catalog, detect, expected, status};

/// A stable 64-bit fingerprint of the migration names and sources.
///
/// Changes whenever a migration is added or edited; test fixtures use it to
/// name the pre-migrated template database, so a stale template is never
/// reused.
pub fn schema_fingerprint() -> u64 {
    migrations::fingerprint()
}

/// The names of the released migrations, in order (`m001_user_profiles`,
/// ...): the list tests and documentation are generated from.
pub fn migration_names() -> Vec<String> {
    use sea_orm_migration::MigratorTrait as _;
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}
