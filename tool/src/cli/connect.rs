//! Connecting the migration binary: fail fast, say what went wrong and what
//! to do, and work through connection poolers.
//!
//! - The URL's certificate files are checked, then one connection is opened
//!   directly (bounded by [`CONNECT_TIMEOUT`]): sqlx's pool would retry a
//!   refused connection until its acquire timeout and report only
//!   `PoolTimedOut`. Every failure is classified by
//!   [`crate::doctor`]: refused (with the start hint only for a local
//!   server), TLS, missing certificate file, `pg_hba.conf`, password,
//!   database, pooler refusing a startup parameter, ...
//! - Nothing is sent at connection start besides the role, database,
//!   `application_name` and TLS settings: no `extra_float_digits` (sqlx's
//!   default; PostgreSQL >= 12 prints floats exactly without it) and no
//!   `options` (a `search_path` or other `-c` settings of the URL are
//!   applied inside the command's transaction instead), so PgBouncer's
//!   default configuration accepts the connection and nothing is silently
//!   dropped.
//! - The binary then uses a pool of exactly one connection; each command
//!   runs in one transaction on it ([`migration::lock`]).
//! - With that first connection and the pool's, [`diagnose::detect_pooler_on`]
//!   finds out whether they go through a transaction-mode pooler and
//!   refuses one that loses prepared statements (PgBouncer < 1.21).

use std::time::Duration;

use crate::doctor::{self as diagnose, ConnectFailure, Pooling};
use pgconn::DbUrl;
use sea_orm_migration::sea_orm::sqlx::ConnectOptions as _;
use sea_orm_migration::sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm_migration::sea_orm::{DatabaseConnection, SqlxPostgresConnector, sqlx};

/// How long connecting (and acquiring the pooled connection) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `application_name` of the migration binary's session.
pub const APPLICATION_NAME: &str = "mockinterview-migration";

/// The binary's connection.
pub struct Connected {
    /// A pool of exactly one connection, never recycled.
    pub db: DatabaseConnection,
    /// Whether it goes through a transaction-mode pooler.
    pub pooling: Pooling,
}

/// The connect options the binary uses for `url`: no startup parameters
/// besides `application_name`; statements logged (`tracing`, target
/// `sqlx::query`, level `debug`, which `-v` shows) with `log_statements`.
pub fn connect_options(url: &DbUrl, log_statements: bool) -> PgConnectOptions {
    let options = url
        .without_startup_options()
        .connect_options()
        .application_name(APPLICATION_NAME)
        .extra_float_digits(None);
    if log_statements {
        options
    } else {
        options.disable_statement_logging()
    }
}

/// Connects to `url` (`url_name` says where it came from, for messages):
/// see the module documentation.
///
/// # Errors
/// The classified failure, its message naming the host, port, database and
/// what to do.
pub async fn connect(
    url: &DbUrl,
    url_name: &str,
    log_statements: bool,
) -> Result<Connected, ConnectFailure> {
    let named = |f: ConnectFailure| f.with_url_name(url_name);
    let options = connect_options(url, log_statements);
    let mut first = diagnose::connect_one(url, &options, CONNECT_TIMEOUT)
        .await
        .map_err(named)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(|e| named(diagnose::classify(url, &e)))?;
    let pooling = {
        let mut second = pool
            .acquire()
            .await
            .map_err(|e| named(diagnose::classify(url, &e)))?;
        let outcome = diagnose::detect_pooler_on(url, &mut first, &mut second).await;
        if outcome.is_err() {
            // Its statement cache no longer matches the server's.
            drop(second.detach());
        }
        outcome.map_err(named)?
    };
    sqlx::Connection::close(first).await.ok();
    tracing::debug!(?pooling, "connected to {}", url.target());
    Ok(Connected {
        db: SqlxPostgresConnector::from_sqlx_postgres_pool(pool),
        pooling,
    })
}
