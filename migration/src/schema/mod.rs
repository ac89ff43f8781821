//! Describing and checking the schema, with one mechanism: a typed
//! [`catalog::Catalog`] snapshot read from PostgreSQL's catalogs, and its
//! [`catalog::Catalog::diff`].
//!
//! - [`expected`]: the schema the migrations produce, as a `Catalog`;
//! - [`status`]: applied, pending and unknown migrations, read without
//!   writing, and the application's start-up check;
//! - [`detect`]: which version of the TypeScript app's schema a database
//!   has (the guard rails refuse to adopt it; the migration tool imports
//!   it).
//!
//! The migration tool's `verify` and `up --dry-run`, and the tests, compare
//! a database with [`expected`] the same way.

pub mod catalog;
pub mod detect;
pub mod expected;
pub mod status;
