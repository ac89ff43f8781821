//! The mock-interview data layer on SeaORM and PostgreSQL + pgvector.
//!
//! Applications import this crate (and the [`entity`] crate it re-exports)
//! to connect, read and write profiles, preferences, resumes and resume
//! chunks. The schema is created by the `migration` crate ([`Migrator`]).
//!
//! | module | what |
//! |---|---|
//! | [`config`] | [`DbConfig`] (from `DATABASE_URL` or explicit), [`DbConfig::connect`], readiness check |
//! | [`Db`], [`Session`], [`Primary`] | the handle: primary and replica pools, read-your-writes sessions, forcing the primary |
//! | [`Store`] | what data functions run on: `Db`, `Session`, `Primary`, a `DatabaseConnection` or a caller's `DatabaseTransaction` |
//! | [`profiles`] | upsert profiles from Firebase auth data, lookup, delete with everything the user owns |
//! | [`preferences`] | interview preferences with defaults and validated partial updates |
//! | [`resumes`] | resumes with the PDF in the database or as a path, listing without PDF bytes |
//! | [`chunks`] | atomic bulk replacement of a resume's chunks, semantic search |
//! | [`staged`] | staged uploads: chunks searchable at once, HNSW insertion later by a background [`staged::StagedIndexer`] |
//! | [`embedding`] | validated 768-dimension embeddings |
//! | [`legacy`] | data imported from the TypeScript app: lookups by its integer ids, primary resume |
//! | [`tuning`] | search tuning policies (`ef_search` by table size) |
//! | [`error`] | the [`Error`] type |
//! | [`net`] | `TCP_NODELAY` on the pool's sockets at run time (sqlx 0.9.0 stopped setting it) |
//! | `testing` | (feature `testing`) an isolated migrated database per test |
//!
//! Data functions take any [`Store`]: the [`Db`] handle (reads may go to a
//! replica, writes go to the primary, the configured schema and search
//! settings apply inside each call's transaction, so they hold behind a
//! transaction-mode pooler), a [`Session`] (read-your-writes), a plain
//! SeaORM connection, or a caller's transaction (everything then runs
//! inside it; the chunk-replacing functions need a pool for `COPY`). Every
//! call is bounded by [`DbConfig::call_timeout`].
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
mod db;
pub mod embedding;
pub mod error;
pub mod legacy;
pub mod net;
pub mod preferences;
pub mod profiles;
mod replica;
pub mod resumes;
pub mod staged;
mod store;
pub mod tuning;
mod validate;
/// Test fixtures (feature `testing`): an isolated, migrated database per
/// test. See the `test-db` crate.
#[cfg(feature = "testing")]
pub use test_db as testing;

pub use chunks::{ChunkMatch, NewChunk, SearchQuery, SearchScope};
pub use config::{DbConfig, Readiness, connect_from_env, readiness, require_pgvector};
pub use db::{Db, Primary, ReadToken, Session};
pub use embedding::Embedding;
pub use entity;
pub use error::{Error, Result};
pub use migration::{self, Migrator, MigratorTrait};
pub use replica::Replica;
pub use store::Store;
