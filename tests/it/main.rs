//! Integration tests of the library against a real PostgreSQL with
//! pgvector (the migrations and the migration tool are tested in
//! `tool/tests`).
//!
//! Each test gets its own database from `test-db`, so the
//! tests run in parallel. Start the local server with `scripts/db-up`, or run
//! everything with `scripts/test`.

mod chunks;
mod config;
mod entities;
mod faults;
mod fixture;
#[cfg(feature = "gemini")]
mod gemini;
mod handles;
mod hardening;
mod models;
mod pooler;
mod preferences;
mod profiles;
mod properties;
mod reembed;
mod replicas;
mod resumes;
mod send;
mod staged;
mod support;
