//! Connecting the migration binary: one session, fail fast, say what to do.
//!
//! sea-orm's default pool retries a refused connection until its 30 s
//! acquire timeout and then reports only `PoolTimedOut`. The binary instead
//! probes the server's TCP port first (bounded by [`CONNECT_TIMEOUT`]), so a
//! server that is down is reported at once with the host and port and how to
//! start it; a wrong password or a missing database comes back from the
//! login, also explained. It then uses a pool of exactly one connection:
//! every statement, and the migration lock, run on that session.

use std::time::Duration;

use pgconn::DbUrl;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sqlx;
use sea_orm_migration::sea_orm::{ConnectOptions, Database, DatabaseConnection, RuntimeErr};

/// How long connecting (and acquiring the pooled connection) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `application_name` of the migration binary's session.
pub const APPLICATION_NAME: &str = "mockinterview-migration";

/// Opens the binary's connection: a pool of exactly one connection that is
/// never recycled (the migration lock lives on it), `search_path` set to
/// `schema`, and `lock_timeout` (session default) set to `lock_timeout`.
/// With `log_statements`, every statement is logged (`tracing`, target
/// `sqlx::query`), as sea-orm-migration's `-v` does.
///
/// # Errors
/// [`DbErr::Conn`] with a message naming the host, port and fix.
pub async fn connect(
    url: &str,
    schema: &str,
    lock_timeout: &str,
    log_statements: bool,
) -> Result<DatabaseConnection, DbErr> {
    let fail = |m: String| DbErr::Conn(RuntimeErr::Internal(m));
    let target = DbUrl::parse(url).map_err(|e| fail(format!("{e} (DATABASE_URL or -u)")))?;
    let options = target.connect_options();

    // Probe the TCP port first: the pool retries a refused connection until
    // its timeout and then reports only `PoolTimedOut`.
    if options.get_socket().is_none() {
        let address = (target.host(), target.port());
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(fail(explain(&target, &sqlx::Error::Io(e)))),
            Err(_) => {
                return Err(fail(format!(
                    "no answer from PostgreSQL at {} within {}s. {}",
                    target.target(),
                    CONNECT_TIMEOUT.as_secs(),
                    start_hint(&target)
                )));
            }
        }
    }

    let lock_timeout = lock_timeout.to_owned();
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1)
        .min_connections(1)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .set_application_name(APPLICATION_NAME)
        .set_schema_search_path(schema.to_owned())
        .sqlx_logging(log_statements)
        .map_sqlx_postgres_opts(move |o| o.options([("lock_timeout", lock_timeout.as_str())]));
    Database::connect(opts).await.map_err(|e| {
        fail(match &e {
            DbErr::Conn(RuntimeErr::SqlxError(inner)) => explain(&target, inner),
            other => format!(
                "could not connect to PostgreSQL at {}: {other}. {}",
                target.target(),
                start_hint(&target)
            ),
        })
    })
}

fn explain(target: &DbUrl, error: &sqlx::Error) -> String {
    let code = error
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    // The server's own words, without sqlx's "error returned from database".
    let err = error
        .as_database_error()
        .map_or_else(|| error.to_string(), |d| d.message().to_owned());
    match (code.as_deref(), error) {
        (Some("28P01" | "28000"), _) => format!(
            "PostgreSQL at {}:{} rejected the login of role \"{}\" ({err}). Check the user and \
             password in DATABASE_URL (or -u); for the local database `scripts/db-up` creates the \
             role and password that .env names.",
            target.host(),
            target.port(),
            target.user()
        ),
        (Some("3D000"), _) => format!(
            "database \"{}\" does not exist on PostgreSQL at {}:{} ({err}). Create it (`createdb`), \
             or for the local database run `scripts/db-up`, which creates the database that \
             DATABASE_URL names.",
            target.database(),
            target.host(),
            target.port()
        ),
        (Some("57P03"), _) => format!(
            "PostgreSQL at {}:{} is starting up or shutting down ({err}); try again in a moment.",
            target.host(),
            target.port()
        ),
        (_, sqlx::Error::Io(io)) => format!(
            "cannot connect to PostgreSQL at {}:{} (database {}): {io}. {}",
            target.host(),
            target.port(),
            target.database(),
            start_hint(target)
        ),
        _ => format!(
            "cannot connect to PostgreSQL at {}: {err}. {}",
            target.target(),
            start_hint(target)
        ),
    }
}

fn start_hint(target: &DbUrl) -> String {
    let local = "For the local database run `scripts/db-up` from the repository root: it \
                 installs and starts the PostgreSQL cluster on the URL's port \
                 (`pg_ctlcluster <major> main start` underneath; `pg_lsclusters` shows its state).";
    if target.is_local() {
        format!("Is the server running on port {}? {local}", target.port())
    } else {
        format!(
            "Check that the server is running and reachable from here, and the host and port \
             in DATABASE_URL (or -u). {local}"
        )
    }
}
