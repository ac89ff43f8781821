//! Describing and checking the schema, with one mechanism: a typed
//! [`catalog::Catalog`] snapshot read from PostgreSQL's catalogs, and its
//! [`catalog::Catalog::diff`].
//!
//! - [`expected`]: the schema the migrations produce, as a `Catalog`;
//! - [`verify`]: the live database diffed against [`expected`];
//! - [`dry_run`]: the snapshots before and after applying the pending
//!   migrations in a rolled-back transaction, diffed;
//! - [`status`]: applied, pending and unknown migrations, read without
//!   writing, and the application's start-up check;
//! - the tests compare a migrated database with [`expected`] the same way.

pub mod catalog;
pub mod dry_run;
pub mod expected;
pub mod status;
pub mod verify;
