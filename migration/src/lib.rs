//! Schema migrations for the mock-interview database.
//!
//! | module | what | changes? |
//! |---|---|---|
//! | `migrations` (private) | the released migrations, m001 to m004 and m007 | **frozen**: never edited once applied; new ones are appended |
//! | [`Migrator`] | the list, each migration wrapped with the guard rails | when a migration is added |
//! | [`guard`] | running safely: [`lock`] (one migrator at a time), [`safety`] (lock timeout, data-loss guard), [`pgvector_check`] | living tooling |
//! | [`schema`] | describing and checking the schema: [`expected`] (what the migrations produce), [`catalog`] (snapshots and their diff), [`verify`], [`dry_run`] | living tooling |
//! | `cli` (feature `cli`) | the `migration` binary's command line | living tooling |
//!
//! Run it with `cargo run -p migration -- <command>` or
//! `sea-orm-cli migrate <command>`; from an application, call
//! [`lock::up_locked`] at start-up. Applications that only run [`Migrator`]
//! depend on this crate with `default-features = false`, which leaves out
//! the command line's dependencies (clap, sea-orm-cli, tracing-subscriber).

pub use sea_orm_migration::prelude::*;

pub mod guard;
mod migrations;
mod migrator;
pub mod schema;

#[cfg(feature = "cli")]
pub mod cli;

pub use guard::{lock, pgvector_check, safety};
pub use migrator::Migrator;
pub use schema::{catalog, dry_run, expected, verify};

/// A stable 64-bit fingerprint of the migration names and sources.
///
/// Changes whenever a migration is added or edited; test fixtures use it to
/// name the pre-migrated template database, so a stale template is never
/// reused.
pub fn schema_fingerprint() -> u64 {
    migrations::fingerprint()
}
