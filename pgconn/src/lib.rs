//! Connecting to PostgreSQL: what the `mockinterview-db` library, its
//! `migration` crate and its test fixture share.
//!
//! - [`DbUrl`]: a `postgres://` URL (`DATABASE_URL`) parsed once, with the
//!   parts every caller needs (target without credentials, locality) and
//!   copies with another database, role or port;
//! - [`sqlstate`]: the SQLSTATE of a database error, for the conditions
//!   SeaORM's `DbErr::sql_err()` does not classify;
//! - [`diagnose`]: why a connection failed (TLS, `pg_hba.conf`, a standby,
//!   a pooler, ...) with actionable messages, and whether the connections
//!   go through a transaction-mode pooler.
//! - [`socket`]: TCP options (`TCP_NODELAY`, keepalive, user timeout) set at
//!   run time on this process's connections to a server, which sqlx does not
//!   expose.

pub mod diagnose;
mod sqlstate;
mod url;

pub use crate::sqlstate::sqlstate;
pub use crate::url::{DATABASE_URL_ENV, DbUrl, UrlError};
