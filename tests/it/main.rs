//! Integration tests against a real PostgreSQL with pgvector.
//!
//! Each test gets its own database from `mockinterview_db::testing`, so the
//! tests run in parallel. Start the local server with `scripts/db-up`, or run
//! everything with `scripts/test`.

mod catalog;
mod chunks;
mod config;
mod entities;
mod migrations;
mod preferences;
mod profiles;
mod resumes;
mod schema;
mod support;
