//! The error type returned by every fallible function of this crate.

use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, SqlErr};

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
        "the pgvector extension is not installed in this database ({detail}): apply the \
         migrations, which create it, or install pgvector on the server"
    )]
    PgvectorMissing {
        /// What exactly is missing.
        detail: String,
    },

    /// An embedding of another model than the handle's: its vectors live in
    /// another space, so it can neither be searched with nor stored beside
    /// the handle's model (see [`crate::embedding`]). Nothing was written.
    #[error(
        "embedding of {given} given to a handle of {handle}: vectors of two models cannot be \
         compared; embed with {handle}, or connect with DbConfig::embedding_model = {given} \
         once the database holds that model's vectors"
    )]
    ModelMismatch {
        /// The handle's model ([`crate::DbConfig::embedding_model`]).
        handle: crate::EmbeddingModel,
        /// The model of the embedding given.
        given: crate::EmbeddingModel,
    },

    /// The database serves another embedding model than the handle's (a
    /// re-embedding job switched it, or the handle is configured with the
    /// next model too early): the stored vectors are another space.
    /// Nothing was written.
    #[error(
        "this handle's embedding model is {handle}, but the database serves {}: embed with the \
         served model (connect with DbConfig::embedding_model set to it), or switch the \
         database (`migration reembed`)",
        serving.as_ref().map_or_else(|| "no declared model".to_owned(), ToString::to_string)
    )]
    NotServing {
        /// The handle's model.
        handle: crate::EmbeddingModel,
        /// The model the database serves, if one is declared.
        serving: Option<crate::EmbeddingModel>,
    },

    /// An [`crate::embedder::Embedder`] failed: the provider refused or
    /// failed the request (after the retries it makes), or answered
    /// something that is not one embedding per text.
    #[error("embedding with {model} failed: {reason}")]
    Embedder {
        /// The embedder's model.
        model: String,
        /// What happened and what to do.
        reason: String,
        /// Whether trying again later may succeed (rate limit, server or
        /// network error) rather than needing a fix (key, request).
        retryable: bool,
    },

    /// The database lacks migrations this release needs: more than the
    /// newest one is pending (a release also serves a database one
    /// migration behind, for deploys that start the code before
    /// `migration up`), or the database was never migrated.
    #[error(
        "the database schema is behind this release: pending migrations {}; run `migration up` \
         (or the Migrator at start-up) before starting this release",
        pending.join(", ")
    )]
    SchemaBehind {
        /// The migrations this release knows that the database lacks, in
        /// order.
        pending: Vec<String>,
    },

    /// The configuration (environment, `DATABASE_URL`) is missing or invalid.
    #[error("configuration error: {0}")]
    Config(String),

    /// Any other database error; the server's message is in the source.
    #[error("database statement failed")]
    Database(#[source] DbErr),
}

impl Error {
    /// Gives a connection-level failure the target it concerns, when it
    /// does not name one yet.
    pub(crate) fn with_target(self, target: &str) -> Self {
        match self {
            Error::Unavailable {
                target: t,
                reason,
                source,
            } if t.is_empty() => Error::Unavailable {
                target: target.to_owned(),
                reason,
                source,
            },
            other => other,
        }
    }

    /// A standby cancelled the statement because it conflicted with the
    /// replay of the primary's changes (the same read can run on the
    /// primary).
    pub(crate) fn is_recovery_conflict(&self) -> bool {
        matches!(self, Error::Database(e)
            if matches!(pgconn::sqlstate(e).as_deref(), Some("40001" | "57P04")))
    }

    /// The server's SQLSTATE (e.g. `57014` for a cancelled statement,
    /// `28P01` for a wrong password), when the server sent one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Error::Unavailable { source, .. } | Error::Database(source) => pgconn::sqlstate(source),
            _ => None,
        }
    }

    /// True for [`Error::Unavailable`]: the call may succeed later or
    /// elsewhere (another replica, after the server is back).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(message)) = err.sql_err() {
            return Error::Conflict { message };
        }
        match connection_failure(&err) {
            Some(reason) => Error::Unavailable {
                target: String::new(),
                reason,
                source: err,
            },
            None => Error::Database(err),
        }
    }
}

/// What to check after a connection-level failure.
const CHECK: &str = "Check that the server is running and reachable and that DATABASE_URL is \
    right (the migration tool's `doctor` command tells why a connection fails)";

/// Why `err` is a connection-level failure (the server is down, unreachable,
/// restarting, refusing connections, or a read-only standby), or `None` for
/// an error of the statement itself.
fn connection_failure(err: &DbErr) -> Option<String> {
    let sqlx = match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => {
            return Some(format!(
                "no pooled connection became available within the acquire timeout: the server \
                 is down or unreachable, or every connection of the pool is busy. {CHECK}"
            ));
        }
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
            return Some(format!("the connection was closed. {CHECK}"));
        }
        // Opening a connection failed: always connection-level, whatever
        // the server said (wrong password, missing database, ...).
        DbErr::Conn(RuntimeErr::SqlxError(e)) => {
            return Some(sqlx_failure(e).unwrap_or_else(|| {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .unwrap_or_default();
                match code.as_ref() {
                    "28P01" => "the server rejected the password: check the role and password \
                                in DATABASE_URL"
                        .to_owned(),
                    "28000" => "the server refused this login (its pg_hba.conf has no entry \
                                for this host, role, database and SSL setting, or the role may \
                                not log in)"
                        .to_owned(),
                    "3D000" => "the database does not exist on this server: check the name \
                                in DATABASE_URL"
                        .to_owned(),
                    code => format!("the server refused the connection (SQLSTATE {code})"),
                }
            }));
        }
        DbErr::Conn(_) => return Some(format!("could not connect. {CHECK}")),
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            e.as_ref()
        }
        _ => return None,
    };
    sqlx_failure(sqlx)
}

/// The connection-level reading of a sqlx error, if it is one.
fn sqlx_failure(sqlx: &sea_orm::sqlx::Error) -> Option<String> {
    use sea_orm::sqlx::Error as Sqlx;
    match sqlx {
        Sqlx::Io(e) => Some(format!(
            "the connection failed or was lost ({}). {CHECK}",
            e.kind()
        )),
        Sqlx::Tls(_) => Some(
            "the TLS handshake with the server failed: check sslmode, sslrootcert and the \
             server's certificate"
                .to_owned(),
        ),
        Sqlx::PoolTimedOut => Some(format!(
            "no pooled connection became available within the acquire timeout: the server is \
             down or unreachable, or every connection of the pool is busy. {CHECK}"
        )),
        Sqlx::PoolClosed => Some("the connection pool was closed".to_owned()),
        Sqlx::WorkerCrashed => Some("the connection's background worker crashed".to_owned()),
        Sqlx::Protocol(p) => Some(format!(
            "the server broke the protocol ({p}); a pooler between the application and \
             PostgreSQL may not support it"
        )),
        Sqlx::Database(db) => {
            let code = db.code().unwrap_or_default();
            // A named prepared statement missing, or there twice, on the
            // server connection: a transaction-mode pooler that does not track
            // them handed this connection another client's session.
            if matches!(code.as_ref(), "26000" | "42P05") {
                return Some(
                    "a connection pooler in transaction mode lost this connection's prepared \
                     statements (PgBouncer before 1.21, or max_prepared_statements = 0): \
                     upgrade to PgBouncer 1.21 or newer and set max_prepared_statements, use \
                     session mode, or connect to PostgreSQL directly"
                        .to_owned(),
                );
            }
            match code.as_ref() {
                "57P01" | "57P02" => Some(
                    "the server terminated the connection (it is shutting down, restarting or \
                     recovering from a crash); try again in a moment"
                        .to_owned(),
                ),
                "57P03" => Some("the server is starting up; try again in a moment".to_owned()),
                "53300" => Some(
                    "the server has no connection slot left (max_connections); lower the pool \
                     size or use a pooler"
                        .to_owned(),
                ),
                "25006" => Some(
                    "the server is a read-only hot standby: writes need the primary (check \
                     DATABASE_URL points at the primary, not a replica)"
                        .to_owned(),
                ),
                c if c.starts_with("08") => {
                    Some(format!("the connection failed (SQLSTATE {c}). {CHECK}"))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// True for a foreign-key violation (the referenced row does not exist).
pub(crate) fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}
