//! Schema migrations for the mock-interview database.
//!
//! | module | what | changes? |
//! |---|---|---|
//! | `migrations` (private) | the released migrations, m001 to m005, m007 to m009 (006 was never released) | **frozen**: never edited once applied; new ones are appended |
//! | [`Migrator`] | the list, each migration wrapped with the guard rails | when a migration is added |
//! | [`guard`] | running safely: [`lock`] (one migrator at a time, one transaction per run, through poolers too), [`safety`] (lock timeout, data-loss guard), [`foreign_schema`] (`up` never adopts another schema), [`pgvector_check`], [`search_path`] (schema per transaction), [`roles`] (owner / application role split) | living tooling |
//! | [`schema`] | describing and checking the schema: [`expected`] (what the migrations produce), [`catalog`] (snapshots and their diff), [`verify`], [`dry_run`], [`status`] (read-only status, [`ensure_schema_current`]) | living tooling |
//! | [`import`] | `migration import`: copying a database of the TypeScript app into this schema | living tooling |
//! | `cli` (feature `cli`) | the `migration` binary's command line | living tooling |
//!
//! Run it with `cargo run -p migration -- <command>` or
//! `sea-orm-cli migrate <command>`; from an application, call
//! [`lock::up_locked`] at start-up (as the schema's owner), or
//! [`ensure_schema_current`] (as an application role that may not change
//! the schema). Applications that only run [`Migrator`]
//! depend on this crate with `default-features = false`, which leaves out
//! the command line's dependencies (clap, sea-orm-cli, tracing-subscriber).

pub use sea_orm_migration::prelude::*;

pub mod guard;
pub mod import;
mod migrations;
mod migrator;
pub mod schema;

#[cfg(feature = "cli")]
pub mod cli;

pub use guard::{foreign_schema, lock, pgvector_check, roles, safety, search_path};
pub use migrator::Migrator;
pub use schema::status::ensure_schema_current;
pub use schema::{catalog, dry_run, expected, status, verify};

/// A stable 64-bit fingerprint of the migration names and sources.
///
/// Changes whenever a migration is added or edited; test fixtures use it to
/// name the pre-migrated template database, so a stale template is never
/// reused.
pub fn schema_fingerprint() -> u64 {
    migrations::fingerprint()
}
