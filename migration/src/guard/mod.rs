//! Running migrations safely against a live database.
//!
//! - [`lock`]: a PostgreSQL advisory lock, so that one migrator runs at a
//!   time (application instances starting together, deploy jobs);
//! - [`safety`]: `lock_timeout` in every migration and the refusal of
//!   rollbacks (and `fresh`) that would destroy stored data; applied to
//!   every migration by [`crate::Migrator`];
//! - [`foreign_schema`]: `up` refuses to adopt existing objects of another
//!   shape (a database of the TypeScript app) instead of recording the
//!   migrations as applied without converting anything;
//! - [`pgvector_check`]: creating the `vector` extension with errors that
//!   say how to install it or who may create it;
//! - [`search_path`]: the schema a run works in, set per transaction, and
//!   pgvector's types found in whatever schema the extension lives.

pub mod foreign_schema;
pub mod lock;
pub mod pgvector_check;
pub mod safety;
pub mod search_path;
