//! The mock-interview data layer on SeaORM and PostgreSQL + pgvector.
//!
//! Applications import this crate (and the [`entity`] crate it re-exports)
//! to connect, read and write profiles, preferences, resumes and resume
//! chunks. The schema is created by the `migration` crate.

pub mod config;
pub mod error;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{DbConfig, Readiness, connect_from_env, readiness, require_pgvector};
pub use entity;
pub use error::{Error, Result};
pub use migration::{Migrator, MigratorTrait};
