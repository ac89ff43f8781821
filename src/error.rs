//! The error type returned by every fallible function of this crate.

use sea_orm::{DbErr, SqlErr};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the data layer, in variants callers can
/// match on. Messages say what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The requested row does not exist (or belongs to another user).
    #[error("{entity} not found: {key}")]
    NotFound {
        /// What was looked up, e.g. `"resume"`.
        entity: &'static str,
        /// The key that was looked up.
        key: String,
    },

    /// The write conflicts with existing data (a unique constraint).
    #[error("conflict: {message}")]
    Conflict {
        /// What conflicted and with what.
        message: String,
    },

    /// An input value was rejected before anything was written.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The offending field, e.g. `"embedding"` or `"duration"`.
        field: &'static str,
        /// Why it was rejected and what is accepted.
        reason: String,
    },

    /// The database server could not be reached, or the connection was lost.
    #[error("database unavailable at {target}: {reason}")]
    Unavailable {
        /// `host:port/dbname` that was tried (never the password).
        target: String,
        /// What happened and what to do.
        reason: String,
        /// The underlying connection error.
        #[source]
        source: DbErr,
    },

    /// The pgvector extension is not installed in the database.
    #[error(
        "the pgvector extension is not installed in this database ({detail}); \
         run the migrations (`cargo run -p migration -- up`), which create it, \
         or install pgvector on the server (see the README, Troubleshooting)"
    )]
    PgvectorMissing {
        /// What exactly is missing.
        detail: String,
    },

    /// The configuration (environment, `DATABASE_URL`) is missing or invalid.
    #[error("configuration error: {0}")]
    Config(String),

    /// Any other database error; the server's message is in the source.
    #[error("database statement failed")]
    Database(#[source] DbErr),
}

/// What [`Error::Unavailable`] says when nothing more specific is known.
pub(crate) const UNAVAILABLE_REASON: &str = "could not connect, or the connection was lost. \
    Check that the server is running and DATABASE_URL is right; for the local database run \
    `scripts/db-up`";

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(message)) => Error::Conflict { message },
            _ => match err {
                DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => Error::Unavailable {
                    target: "the configured database".into(),
                    reason: UNAVAILABLE_REASON.into(),
                    source: err,
                },
                other => Error::Database(other),
            },
        }
    }
}

/// True for a foreign-key violation (the referenced row does not exist).
pub(crate) fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}
