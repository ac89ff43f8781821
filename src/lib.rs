//! The mock-interview data layer on SeaORM and PostgreSQL + pgvector.
//!
//! Applications import this crate (and the [`entity`] crate it re-exports)
//! to connect, read and write profiles, preferences, resumes and resume
//! chunks. The schema is created by the workspace's `migration` crate
//! (its `Migrator`, or the `migration` command of `migration-tool`).
//!
//! Modules, in dependency order (each uses only those above it):
//!
//! | module | what |
//! |---|---|
//! | [`error`] | the [`Error`] type, with the server's SQLSTATE |
//! | [`config`] | [`DbConfig`]: configuration as data, from `DATABASE_URL` or in code |
//! | [`settings`] | the server settings every call runs with, and how they reach the server |
//! | `replica` | replica pools, lag monitor, replica choice |
//! | `store` | the [`Store`] trait: routing, settings, deadline of every call |
//! | [`Db`], [`Session`], [`Primary`], [`Transaction`] | the handle: primary and replica pools, read-your-writes, forcing the primary, transactions |
//! | `connect` | [`DbConfig::connect`]: start-up |
//! | [`health`] | readiness, pgvector check, effective settings |
//! | [`profiles`], [`preferences`], [`resumes`], [`chunks`], [`staged`], [`legacy`] | the data: profiles, preferences, resumes, chunks and search, the background indexer, the TypeScript app's ids |
//! | [`embedding`], [`tuning`] | validated embeddings, search tuning (`ef_search` by table size) |
//! | `testing` | (feature `testing`) an isolated migrated database per test |
//!
//! Data functions take any form of the handle ([`Store`]): the [`Db`]
//! (reads may go to a replica, writes go to the primary), a [`Session`]
//! (read-your-writes), [`Db::primary`], or a [`Transaction`] from
//! `db.begin()` (everything then runs inside it; chunk writes need the
//! pool for `COPY`). All of them, and the handle used as a SeaORM
//! connection, run with the same settings ([`settings`]) and are bounded
//! by [`DbConfig::call_timeout`].
//!
//! ```no_run
//! use mockinterview_db::{profiles, resumes, DbConfig};
//!
//! # async fn run() -> mockinterview_db::Result<()> {
//! let db = DbConfig::from_env()?.connect().await?;
//! let user = profiles::upsert_profile(&db, &profiles::FirebaseUser {
//!     uid: "firebase-uid".into(),
//!     email: Some("ada@example.com".into()),
//!     ..Default::default()
//! }).await?;
//! let list = resumes::list_resumes(&db, user.id).await?;
//! # Ok(()) }
//! ```

pub mod chunks;
pub mod config;
mod connect;
mod db;
pub mod embedder;
pub mod embedding;
pub mod error;
pub mod health;
pub mod legacy;
pub mod preferences;
pub mod profiles;
pub mod reembed;
mod replica;
pub mod resumes;
pub mod schema;
pub mod settings;
pub mod staged;
mod store;
pub mod tuning;
mod validate;
/// Test fixtures (feature `testing`): an isolated, migrated database per
/// test. See the `test-db` crate.
#[cfg(feature = "testing")]
pub use test_db as testing;

pub use chunks::{ChunkMatch, NewChunk, SearchQuery, SearchScope};
pub use config::DbConfig;
pub use db::{Db, Primary, ReadToken, Session, Transaction};
pub use embedding::{Embedding, EmbeddingModel};
pub use entity;
pub use error::{Error, Result};
pub use replica::Replica;
pub use store::Store;
