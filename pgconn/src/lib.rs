//! PostgreSQL plumbing that the `mockinterview-db` library, the `migration`
//! crate, the migration tool and the test fixture share:
//!
//! - [`DbUrl`]: a `postgres://` URL (`DATABASE_URL`) parsed once, with the
//!   parts every caller needs (target without credentials, locality) and
//!   copies with another database, role or port;
//! - [`sqlstate`]: the SQLSTATE of a database error, for the conditions
//!   SeaORM's `DbErr::sql_err()` does not classify;
//! - [`quote_search_path`]: a schema list (`DATABASE_SCHEMA=app,public`)
//!   as a `search_path` value, the same for every crate;
//! - [`copy`]: the binary `COPY` encoder.

pub mod copy;
mod search_path;
mod sqlstate;
mod url;

pub use crate::search_path::{quote_search_path, split_schemas};
pub use crate::sqlstate::sqlstate;
pub use crate::url::{DATABASE_URL_ENV, DbUrl, UrlError};
