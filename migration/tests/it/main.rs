//! Tests of the migrations and of their tooling, against a real PostgreSQL
//! with pgvector: running them (library and binary), the schema they
//! produce, and the production guard rails.
//!
//! Each test gets its own database from `test-db`, so the tests run in
//! parallel. Start the local server with `scripts/db-up`, or run everything
//! with `scripts/test`.

mod cli;
mod common;
mod import;
mod migrations;
mod production;
mod schema;
