//! Tests of the migrations and of their tooling, against a real PostgreSQL
//! with pgvector: running them (library and binary), the schema they
//! produce, and the production guard rails.
//!
//! Each test gets its own database from `test-db`, so the tests run in
//! parallel. Start the local server with `scripts/db-up`, or run everything
//! with `scripts/test`, which also starts what the production set-up tests
//! need: PgBouncer (`scripts/pooler-up --with-legacy`), the hot standby
//! (`scripts/replica-up`) and the TLS-only cluster
//! (`scripts/secure-cluster-up`).

mod after_import;
mod cli;
mod common;
mod connect_errors;
mod import;
mod migrations;
mod pooler;
mod production;
mod roles;
mod schema;
mod schema_search_path;
mod settings;
