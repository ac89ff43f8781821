//! Why connecting to (or working through) PostgreSQL failed, in words that
//! say what to do.
//!
//! - [`ConnectFailure`]: a failed connection (or a statement that failed
//!   because of *where* it was connected: a hot standby, a pooler) classified
//!   into a [`FailureKind`], with an actionable [`ConnectFailure::message`]
//!   naming the target (`host:port/database`, never the password). Build it
//!   with [`classify`] (an `sqlx::Error`), [`classify_db_err`] (a `DbErr`
//!   from a connect) or [`statement_failure`] (a `DbErr` from a statement).
//! - [`check_cert_files`]: the certificate and key files the URL (or
//!   `PGSSLROOTCERT`, ...) names exist, checked before connecting.
//! - [`connect_one`]: one connection, with the checks above and a timeout,
//!   every failure classified (sqlx's pool would retry a refused connection
//!   until its acquire timeout and report only `PoolTimedOut`).
//! - [`detect_pooler`] / [`detect_pooler_on`]: whether the connections go
//!   through a transaction-mode pooler (connection state does not survive a
//!   transaction), and refusal of one that cannot carry named prepared
//!   statements (PgBouncer < 1.21, or `max_prepared_statements = 0`).
//!
//! ```no_run
//! # async fn f() -> Result<(), migration_tool::doctor::ConnectFailure> {
//! use migration_tool::doctor as diagnose;
//! use pgconn::DbUrl;
//! let url = DbUrl::parse("postgres://app:secret@127.0.0.1:6432/app").unwrap();
//! let mut conn = diagnose::connect_one(&url, &url.connect_options(), std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sea_orm::sqlx::{self, Connection};
use sea_orm::{DbErr, RuntimeErr};

use pgconn::DbUrl;

/// What went wrong, as far as the error tells.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Nothing listens on the host and port (connection refused).
    Refused,
    /// No answer within the connect timeout.
    Timeout,
    /// The host name does not resolve.
    Dns,
    /// The TLS handshake failed: certificate not trusted or not for this
    /// host, or the server does not do TLS while the URL requires it.
    Tls,
    /// A certificate or key file named by the URL (or `PGSSLROOTCERT`,
    /// `PGSSLCERT`, `PGSSLKEY`) does not exist or cannot be read.
    MissingCertFile {
        /// The URL parameter (or environment variable) naming it.
        parameter: String,
        /// The path.
        path: PathBuf,
    },
    /// The server's `pg_hba.conf` has no rule allowing this
    /// host/role/database/encryption combination (SQLSTATE 28000): not a
    /// password problem.
    PgHbaRejected,
    /// Password authentication failed (SQLSTATE 28P01). PostgreSQL does not
    /// say whether the role exists.
    BadPassword,
    /// The database does not exist (SQLSTATE 3D000).
    NoSuchDatabase,
    /// The role does not exist (said by servers that do not use password
    /// authentication, and by PgBouncer).
    NoSuchRole,
    /// No connection slot left (SQLSTATE 53300, or PgBouncer's
    /// `max_client_conn`).
    TooManyConnections,
    /// The server is starting up, shutting down or not yet accepting
    /// connections (SQLSTATE 57P03).
    ServerStarting,
    /// A connection pooler refused a startup parameter (PgBouncer:
    /// `unsupported startup parameter: extra_float_digits`).
    StartupParameterRejected {
        /// The parameter, e.g. `extra_float_digits`, or
        /// `search_path (in options)`.
        parameter: String,
    },
    /// A write on a read-only hot standby (SQLSTATE 25006 on a server in
    /// recovery).
    ReadOnlyStandby,
    /// A write in a read-only transaction (SQLSTATE 25006) where it is not
    /// known whether the server is a standby (`default_transaction_read_only`
    /// on the role or database, a read-only endpoint, or a standby).
    ReadOnly,
    /// Named prepared statements do not survive between transactions: a
    /// transaction-mode pooler without prepared-statement support
    /// (PgBouncer < 1.21, or `max_prepared_statements = 0`).
    PoolerWithoutPreparedStatements,
    /// Anything else: the underlying error is in
    /// [`ConnectFailure::detail`].
    Other,
}

/// A classified connection failure; its `Display` is
/// [`ConnectFailure::message`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct ConnectFailure(Box<Failure>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Failure {
    kind: FailureKind,
    host: String,
    port: u16,
    database: String,
    user: String,
    local: bool,
    ssl_mode: &'static str,
    detail: String,
    sqlstate: Option<String>,
    url_name: String,
}

impl ConnectFailure {
    /// A failure of `kind` for `url`, with the underlying error's text.
    pub fn new(url: &DbUrl, kind: FailureKind, detail: impl Into<String>) -> Self {
        Self(Box::new(Failure {
            kind,
            host: url.host(),
            port: url.port(),
            database: url.database().to_owned(),
            user: url.user().to_owned(),
            local: url.is_local(),
            ssl_mode: url.ssl_mode(),
            detail: detail.into(),
            sqlstate: None,
            url_name: pgconn::DATABASE_URL_ENV.to_owned(),
        }))
    }

    /// Names the setting the URL came from in the advice (default
    /// `DATABASE_URL`; the migrator says `MIGRATION_DATABASE_URL` or `-u`).
    pub fn with_url_name(mut self, name: impl Into<String>) -> Self {
        self.0.url_name = name.into();
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &FailureKind {
        &self.0.kind
    }

    /// `host:port/database` (never credentials).
    pub fn target(&self) -> String {
        format!("{}:{}/{}", self.0.host, self.0.port, self.0.database)
    }

    /// The underlying error's own text (the server's words when it sent
    /// an error).
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The SQLSTATE, when the server (or pooler) sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        self.0.sqlstate.as_deref()
    }

    /// True when a local server refused the connection: the only case
    /// where "start the local server" is the advice.
    pub fn is_local_server_down(&self) -> bool {
        self.0.kind == FailureKind::Refused && self.0.local
    }

    /// What happened, why, and what to do, in one paragraph.
    pub fn message(&self) -> String {
        let this = &self.0;
        let at = format!("{}:{}", this.host, this.port);
        let target = self.target();
        let url = &this.url_name;
        let detail = &this.detail;
        match &this.kind {
            FailureKind::Refused => {
                let mut m = format!(
                    "cannot connect to PostgreSQL at {at} (database {}): {detail}: nothing \
                     accepts connections on that host and port.",
                    this.database
                );
                if this.local {
                    m.push_str(&format!(
                        " Is the server running on port {}? For the local database run \
                         `scripts/db-up` from the repository root: it installs and starts the \
                         PostgreSQL cluster on the URL's port (`pg_ctlcluster <major> main \
                         start` underneath; `pg_lsclusters` shows its state).",
                        this.port
                    ));
                } else {
                    m.push_str(&format!(
                        " Check the host and port in {url}, and that the server (or pooler) \
                         is running and reachable from here."
                    ));
                }
                m
            }
            FailureKind::Timeout => format!(
                "no answer from PostgreSQL at {at} (database {}) in time ({detail}): a firewall \
                 dropping packets, a wrong host or port in {url}, an overloaded server, or a \
                 pooler waiting for a server connection (PgBouncer waits server_login_retry \
                 after a failed server login, e.g. to a database that does not exist: see its \
                 log).",
                this.database
            ),
            FailureKind::Dns => format!(
                "cannot resolve the host name \"{}\" ({detail}): check the host in {url} and \
                 this machine's DNS.",
                this.host
            ),
            FailureKind::Tls => {
                let mut m = format!(
                    "TLS with PostgreSQL at {at} failed (sslmode={}): {detail}.",
                    this.ssl_mode
                );
                let lower = detail.to_ascii_lowercase();
                if lower.contains("does not support tls") || lower.contains("does not support ssl")
                {
                    m.push_str(&format!(
                        " The server (or pooler) at {at} does not accept TLS, but sslmode={} \
                         requires it: enable TLS there (PostgreSQL: ssl = on; PgBouncer: \
                         client_tls_sslmode and client_tls_key_file/cert_file), or, only if \
                         unencrypted connections are acceptable on this network, use \
                         sslmode=prefer or sslmode=disable in {url}.",
                        this.ssl_mode
                    ));
                } else if lower.contains("name") && lower.contains("valid") {
                    m.push_str(&format!(
                        " The server's certificate is not issued for the host \"{}\": connect \
                         with the host name the certificate names, or use sslmode=verify-ca \
                         (checks the CA, not the name).",
                        this.host
                    ));
                } else if lower.contains("certificate") || lower.contains("issuer") {
                    m.push_str(&format!(
                        " The server's certificate is not trusted: with sslmode=verify-ca or \
                         verify-full, sslrootcert in {url} must name the certificate of the CA \
                         that signed it (your provider publishes it; without sslrootcert the \
                         system's root certificates are used); also check that it has not \
                         expired."
                    ));
                } else {
                    m.push_str(&format!(
                        " Check sslmode, sslrootcert, sslcert and sslkey in {url} and the \
                         server's TLS settings."
                    ));
                }
                m
            }
            FailureKind::MissingCertFile { parameter, path } => format!(
                "the file {} named by {parameter} (for PostgreSQL at {at}) cannot be read: \
                 {detail}. Put the certificate (or key) there, or fix the path in {url}.",
                path.display()
            ),
            FailureKind::PgHbaRejected => {
                let mut m = format!(
                    "PostgreSQL at {at} refused the connection in its pg_hba.conf: {detail}. \
                     This is the server's access configuration, not a wrong password: no \
                     pg_hba.conf line allows this client address, role \"{}\", database \"{}\" \
                     and encryption.",
                    this.user, this.database
                );
                if detail.contains("no encryption") {
                    m.push_str(&format!(
                        " The server may accept this role only over TLS (`hostssl` lines): \
                         add sslmode=require (better: verify-full with sslrootcert) to {url}."
                    ));
                }
                m.push_str(
                    " Otherwise ask the server's administrator to add a matching line to \
                     pg_hba.conf and reload (on a managed service: its allowed networks or IP \
                     allow-list).",
                );
                m
            }
            FailureKind::BadPassword => {
                let mut m = format!(
                    "PostgreSQL at {at} rejected the login of role \"{}\" ({detail}): wrong \
                     password, or no such role (the server does not say which). Check the user \
                     and password in {url}.",
                    this.user
                );
                if this.local {
                    m.push_str(
                        " For the local database, `scripts/db-up` creates the role and password \
                         that .env names.",
                    );
                }
                m
            }
            FailureKind::NoSuchRole => format!(
                "the role \"{}\" does not exist on PostgreSQL at {at} ({detail}). Check the user \
                 in {url}, or create the role (see `migration roles` for the project's owner \
                 and application roles).",
                this.user
            ),
            FailureKind::NoSuchDatabase => {
                let mut m = format!(
                    "database \"{}\" does not exist on PostgreSQL at {at} ({detail}). Check the \
                     database name in {url}, or create it (`createdb`).",
                    this.database
                );
                if this.local {
                    m.push_str(
                        " For the local database `scripts/db-up` creates the database that \
                         DATABASE_URL names.",
                    );
                }
                m
            }
            FailureKind::TooManyConnections => format!(
                "PostgreSQL at {at} has no free connection slot ({detail}): every instance's \
                 pool takes up to its max_connections; lower the pool sizes, raise the \
                 server's max_connections (or the pooler's max_client_conn), or put a \
                 transaction-mode pooler (PgBouncer >= 1.21) in front."
            ),
            FailureKind::ServerStarting => format!(
                "PostgreSQL at {at} is starting up, shutting down or not yet accepting \
                 connections ({detail}); try again in a moment."
            ),
            FailureKind::StartupParameterRejected { parameter } => {
                let mut m = format!(
                    "the server at {at} refused the connection's startup parameter {parameter} \
                     ({detail}): it is a connection pooler (PgBouncer), which only accepts the \
                     startup parameters it knows."
                );
                if parameter == "extra_float_digits" {
                    m.push_str(
                        " sqlx clients send extra_float_digits by default: add \
                         `ignore_startup_parameters = extra_float_digits` to the [pgbouncer] \
                         section of pgbouncer.ini and reload it. This project's library and \
                         migrator send no startup parameter besides application_name (their \
                         settings are applied inside each transaction).",
                    );
                } else {
                    m.push_str(&format!(
                        " Remove it from {url} (`options=...`): poolers do not carry such \
                         session settings across transactions. Choose the schema with the \
                         schema setting (DATABASE_SCHEMA / -s) or `ALTER ROLE ... SET \
                         search_path`; other settings with `ALTER ROLE ... SET`."
                    ));
                }
                m
            }
            FailureKind::ReadOnlyStandby => format!(
                "PostgreSQL at {target} is a read-only hot standby (in recovery): {detail}. \
                 Migrations and writes need the primary: point {url} at the primary (with a \
                 managed service or a pooler: its read-write endpoint)."
            ),
            FailureKind::ReadOnly => format!(
                "PostgreSQL at {target} refused a write in a read-only transaction ({detail}): \
                 the server is a hot standby, or the role or database has \
                 default_transaction_read_only = on (a read-only endpoint). Migrations and \
                 writes need the primary's read-write endpoint in {url}."
            ),
            FailureKind::PoolerWithoutPreparedStatements => format!(
                "the connection to {at} goes through a transaction-mode pooler without \
                 prepared-statement support (PgBouncer < 1.21, or max_prepared_statements = 0): \
                 the named prepared statements of the PostgreSQL driver land on other \
                 clients' server connections ({detail}). Upgrade to PgBouncer >= 1.21 and set \
                 max_prepared_statements (e.g. 200) in pgbouncer.ini, use pool_mode = session, \
                 or connect directly to PostgreSQL (for migrations: MIGRATION_DATABASE_URL)."
            ),
            FailureKind::Other => format!("cannot use PostgreSQL at {target}: {detail}"),
        }
    }
}

/// Classifies a failed connection attempt (or a statement error that is
/// about the connection: a standby, a pooler).
pub fn classify(url: &DbUrl, err: &sqlx::Error) -> ConnectFailure {
    let (kind, detail, sqlstate) = match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned());
            let message = db.message().to_owned();
            (
                kind_of_server_error(code.as_deref(), &message),
                message,
                code,
            )
        }
        sqlx::Error::Io(io) => (kind_of_io_error(url, io), io.to_string(), None),
        sqlx::Error::Tls(e) => (FailureKind::Tls, e.to_string(), None),
        sqlx::Error::PoolTimedOut => (
            FailureKind::Timeout,
            "timed out waiting for a connection from the pool (the server refused, did not \
             answer, or every connection was busy)"
                .to_owned(),
            None,
        ),
        other => (FailureKind::Other, other.to_string(), None),
    };
    if matches!(err, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound) {
        // Reading a missing certificate file fails like any other I/O.
        if let Err(missing) = check_cert_files(url) {
            return missing;
        }
    }
    let mut failure = ConnectFailure::new(url, kind, detail);
    failure.0.sqlstate = sqlstate;
    failure
}

/// [`classify`] for a SeaORM error (from `Database::connect` or a
/// statement). Errors that carry no driver error become
/// [`FailureKind::Other`] (or [`FailureKind::Timeout`] for an acquire
/// timeout).
pub fn classify_db_err(url: &DbUrl, err: &DbErr) -> ConnectFailure {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => classify(url, e),
        DbErr::ConnectionAcquire(e) => {
            ConnectFailure::new(url, FailureKind::Timeout, e.to_string())
        }
        DbErr::Conn(RuntimeErr::Internal(m)) => ConnectFailure::new(url, FailureKind::Other, m),
        other => ConnectFailure::new(url, FailureKind::Other, other.to_string()),
    }
}

/// When a statement failed because of where the connection goes (a
/// read-only server, a pooler that loses prepared statements), the
/// explanation; `None` for every other error (a constraint, a lock
/// timeout, ...), which the caller reports as it is.
pub fn statement_failure(url: &DbUrl, err: &DbErr) -> Option<ConnectFailure> {
    let failure = classify_db_err(url, err);
    matches!(
        failure.0.kind,
        FailureKind::ReadOnly
            | FailureKind::ReadOnlyStandby
            | FailureKind::PoolerWithoutPreparedStatements
    )
    .then_some(failure)
}

impl ConnectFailure {
    /// Turns [`FailureKind::ReadOnly`] into [`FailureKind::ReadOnlyStandby`]
    /// once the caller has found out that the server is in recovery
    /// (`SELECT pg_is_in_recovery()`).
    pub fn on_standby(mut self) -> Self {
        if self.0.kind == FailureKind::ReadOnly {
            self.0.kind = FailureKind::ReadOnlyStandby;
        }
        self
    }
}

/// The kind of an error the server (or a pooler) sent, from its SQLSTATE
/// and message. Poolers send their own messages, mostly with SQLSTATE
/// 08P01, so the message decides first.
pub fn kind_of_server_error(code: Option<&str>, message: &str) -> FailureKind {
    let lower = message.to_ascii_lowercase();
    if let Some(parameter) = rejected_startup_parameter(message) {
        return FailureKind::StartupParameterRejected { parameter };
    }
    if lower.contains("pg_hba.conf") {
        return FailureKind::PgHbaRejected;
    }
    if lower.contains("prepared statement \"sqlx_s_")
        || lower.contains("unnamed prepared statement does not exist")
        || (lower.contains("bind message supplies") && lower.contains("prepared statement"))
    {
        return FailureKind::PoolerWithoutPreparedStatements;
    }
    if lower.contains("no such user")
        || (lower.contains("role \"") && lower.contains("does not exist"))
    {
        return FailureKind::NoSuchRole;
    }
    if lower.contains("no such database")
        || (lower.starts_with("database \"") && lower.contains("does not exist"))
    {
        return FailureKind::NoSuchDatabase;
    }
    if lower.contains("password authentication failed")
        || lower.contains("sasl authentication failed")
    {
        return FailureKind::BadPassword;
    }
    if lower.contains("too many clients")
        || lower.contains("no more connections allowed")
        || lower.contains("too many connections")
    {
        return FailureKind::TooManyConnections;
    }
    match code {
        Some("28P01") => FailureKind::BadPassword,
        Some("3D000") => FailureKind::NoSuchDatabase,
        Some("53300") => FailureKind::TooManyConnections,
        Some("57P03") => FailureKind::ServerStarting,
        Some("25006") => FailureKind::ReadOnly,
        _ if lower.contains("the database system is starting up")
            || lower.contains("the database system is shutting down")
            || lower.contains("not yet accepting connections") =>
        {
            FailureKind::ServerStarting
        }
        _ => FailureKind::Other,
    }
}

/// `extra_float_digits` from PgBouncer's `unsupported startup parameter:
/// extra_float_digits` (1.18 may add `=value`), `search_path (in options)`
/// from `unsupported startup parameter in options: search_path`.
fn rejected_startup_parameter(message: &str) -> Option<String> {
    const PHRASE: &str = "unsupported startup parameter";
    let start = message.to_ascii_lowercase().find(PHRASE)? + PHRASE.len();
    let rest = &message[start..];
    let (in_options, rest) = match rest.strip_prefix(" in options") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let name: String = rest
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '=')
        .collect();
    let name = if name.is_empty() {
        "?".to_owned()
    } else {
        name
    };
    Some(if in_options {
        format!("{name} (in options)")
    } else {
        name
    })
}

fn kind_of_io_error(url: &DbUrl, io: &std::io::Error) -> FailureKind {
    use std::io::ErrorKind;
    let text = io.to_string().to_ascii_lowercase();
    match io.kind() {
        ErrorKind::ConnectionRefused => FailureKind::Refused,
        ErrorKind::TimedOut => FailureKind::Timeout,
        ErrorKind::NotFound if url.connect_options().get_socket().is_some() => FailureKind::Refused,
        // rustls' handshake errors come back as I/O errors.
        _ if text.contains("certificate")
            || text.contains("handshake")
            || text.contains("tls")
            || text.contains("ssl") =>
        {
            FailureKind::Tls
        }
        _ if text.contains("lookup address")
            || text.contains("name or service not known")
            || text.contains("nodename nor servname")
            || text.contains("no address associated")
            || text.contains("temporary failure in name resolution") =>
        {
            FailureKind::Dns
        }
        _ => FailureKind::Other,
    }
}

/// The certificate and key files the connection will read: the URL's
/// `sslrootcert`, `sslcert`, `sslkey` (and their sqlx spellings), else the
/// `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` environment variables. Inline
/// PEM values are not files and are left out.
pub fn cert_files(url: &DbUrl) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for (params, env) in [
        (
            &["sslrootcert", "ssl-root-cert", "ssl-ca"][..],
            "PGSSLROOTCERT",
        ),
        (&["sslcert", "ssl-cert"][..], "PGSSLCERT"),
        (&["sslkey", "ssl-key"][..], "PGSSLKEY"),
    ] {
        let from_url = params
            .iter()
            .find_map(|p| url.param(p).map(|v| (format!("{p} in the URL"), v)));
        let named = from_url.or_else(|| {
            std::env::var(env)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (format!("the environment variable {env}"), v))
        });
        if let Some((parameter, value)) = named
            && !value.trim_start().starts_with("-----BEGIN")
        {
            files.push((parameter, PathBuf::from(value)));
        }
    }
    files
}

/// Fails with [`FailureKind::MissingCertFile`] when a file of
/// [`cert_files`] does not exist or cannot be read, naming it.
///
/// # Errors
/// The first unreadable file.
pub fn check_cert_files(url: &DbUrl) -> Result<(), ConnectFailure> {
    for (parameter, path) in cert_files(url) {
        if let Err(e) = readable_file(&path) {
            return Err(ConnectFailure::new(
                url,
                FailureKind::MissingCertFile {
                    parameter,
                    path: path.clone(),
                },
                e,
            ));
        }
    }
    Ok(())
}

fn readable_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err("it is a directory".into()),
        Ok(_) => std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no such file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Opens one connection with `options` (the caller's settings; `url` names
/// the target in messages): certificate files checked first, the attempt
/// bounded by `timeout`, and every failure classified.
///
/// # Errors
/// The classified failure.
pub async fn connect_one(
    url: &DbUrl,
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, ConnectFailure> {
    check_cert_files(url)?;
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(url, &e)),
        Err(_) => Err(ConnectFailure::new(
            url,
            FailureKind::Timeout,
            format!("no answer within {} s", timeout.as_secs_f32()),
        )),
    }
}

/// Where the connections go, as far as [`detect_pooler`] can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Each client connection keeps its own server connection: a direct
    /// connection, or a session-mode pooler. `SET`, session-level advisory
    /// locks and prepared statements persist.
    Direct,
    /// A transaction-mode pooler that carries prepared statements
    /// (PgBouncer >= 1.21 with `max_prepared_statements`): a client's
    /// consecutive transactions may run on different server connections, so
    /// session settings and session advisory locks do not persist; settings
    /// must be made per transaction (`SET LOCAL`), locks must be
    /// transaction locks.
    Transaction,
}

impl Pooling {
    /// True for [`Pooling::Transaction`].
    pub fn is_transaction_pooler(self) -> bool {
        self == Self::Transaction
    }
}

/// One statement for every step, so its prepared form is reused: the
/// session's value of the custom setting `mockinterview.pooler_probe`
/// before, and the new one set (session-wide; a placeholder setting,
/// harmless, and reset before the probe ends).
const PROBE_SQL: &str = "SELECT pg_backend_pid() AS pid, \
    coalesce(current_setting('mockinterview.pooler_probe', true), '') AS before, \
    set_config('mockinterview.pooler_probe', $1, false) AS after";

/// Finds out, with two connections of `pool`, whether they go through a
/// transaction-mode pooler, and refuses one that loses named prepared
/// statements.
///
/// Takes two connections from the pool (or one and a fresh one when the
/// pool has a single connection); costs about five round trips and no
/// extra login when the pool opens two connections anyway. See
/// [`detect_pooler_on`] for the method. On a failure, the connections used
/// are closed rather than returned to the pool (their statement caches
/// would no longer match the server).
///
/// # Errors
/// [`FailureKind::PoolerWithoutPreparedStatements`] for PgBouncer < 1.21
/// (or `max_prepared_statements = 0`) in transaction mode; other
/// classified failures when a connection or statement fails.
pub async fn detect_pooler(url: &DbUrl, pool: &PgPool) -> Result<Pooling, ConnectFailure> {
    let fail = |e: sqlx::Error| classify(url, &e);
    let mut a = pool.acquire().await.map_err(fail)?;
    if pool.options().get_max_connections() >= 2 {
        let mut b = pool.acquire().await.map_err(fail)?;
        let outcome = detect_pooler_on(url, &mut a, &mut b).await;
        if outcome.is_err() {
            let (_a, _b) = (a.detach(), b.detach());
        }
        outcome
    } else {
        let mut b = PgConnection::connect_with(&*pool.connect_options())
            .await
            .map_err(fail)?;
        let outcome = detect_pooler_on(url, &mut a, &mut b).await;
        if outcome.is_err() {
            let _a = a.detach();
        }
        b.close().await.ok();
        outcome
    }
}

/// The probe behind [`detect_pooler`], on two open connections `a` and
/// `b` to the same target:
///
/// 1. `a` sets a session setting to a fresh token (a prepared statement,
///    outside any transaction);
/// 2. `b` opens a transaction and reads that setting with the same
///    statement. A transaction-mode pooler hands `b` the server connection `a`
///    just released (PgBouncer reuses the most recent one), so `b` sees
///    `a`'s token: connection state leaks between clients. PgBouncer < 1.21
///    fails here already when both connections named their statement alike
///    (`prepared statement "sqlx_s_1" already exists`);
/// 3. while `b`'s transaction pins that server connection, `a` runs its
///    prepared statement again: a transaction pooler runs it on another
///    server connection, where `a`'s token is missing (and where PgBouncer <
///    1.21 does not have the statement: `prepared statement "sqlx_s_1"
///    does not exist`);
/// 4. the setting is reset and `b`'s transaction ends.
///
/// A direct connection (or a session-mode pooler) shows neither effect:
/// [`Pooling::Direct`]. Under heavy concurrent use of a pooler the probe
/// may not land on the same server connection and also answer
/// [`Pooling::Direct`]; errors from later statements are then still
/// classified by [`statement_failure`].
///
/// # Errors
/// As [`detect_pooler`].
pub async fn detect_pooler_on(
    url: &DbUrl,
    a: &mut PgConnection,
    b: &mut PgConnection,
) -> Result<Pooling, ConnectFailure> {
    let fail = |e: sqlx::Error| {
        let failure = classify(url, &e);
        if failure.0.kind == FailureKind::Other && is_statement_mode_refusal(&failure.0.detail) {
            return ConnectFailure::new(
                url,
                FailureKind::Other,
                format!(
                    "{}: the pooler runs in statement mode, which allows no transactions; \
                     use pool_mode = transaction (PgBouncer >= 1.21 with \
                     max_prepared_statements) or session",
                    failure.0.detail
                ),
            );
        }
        failure
    };
    let token = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let probe =
        |value: &str| sqlx::query_as::<_, (i32, String, String)>(PROBE_SQL).bind(value.to_owned());

    let (a_pid, _, _) = probe(&token).fetch_one(&mut *a).await.map_err(fail)?;
    let mut txn = b.begin().await.map_err(fail)?;
    // Reads the token where `b` landed and resets the setting there.
    let (_, b_saw, _) = probe("").fetch_one(&mut *txn).await.map_err(fail)?;
    let (a_pid_again, a_saw, _) = probe("").fetch_one(&mut *a).await.map_err(fail)?;
    txn.commit().await.map_err(fail)?;

    let pooled = b_saw == token || a_pid_again != a_pid || a_saw != token;
    Ok(if pooled {
        Pooling::Transaction
    } else {
        Pooling::Direct
    })
}

fn is_statement_mode_refusal(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    lower.contains("statement pooling") || lower.contains("transaction blocks not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DbUrl {
        DbUrl::parse(s).unwrap()
    }

    #[test]
    fn server_messages_are_classified() {
        let k = |code: Option<&str>, m: &str| kind_of_server_error(code, m);
        assert_eq!(
            k(
                Some("08P01"),
                "unsupported startup parameter: extra_float_digits"
            ),
            FailureKind::StartupParameterRejected {
                parameter: "extra_float_digits".into()
            }
        );
        assert_eq!(
            k(
                Some("08P01"),
                "unsupported startup parameter: extra_float_digits=2"
            ),
            FailureKind::StartupParameterRejected {
                parameter: "extra_float_digits".into()
            }
        );
        assert_eq!(
            k(
                None,
                "unsupported startup parameter in options: search_path"
            ),
            FailureKind::StartupParameterRejected {
                parameter: "search_path (in options)".into()
            }
        );
        assert_eq!(
            k(
                Some("28000"),
                "no pg_hba.conf entry for host \"10.0.0.7\", user \"app\", database \"db\", no encryption"
            ),
            FailureKind::PgHbaRejected
        );
        assert_eq!(
            k(
                Some("28000"),
                "pg_hba.conf rejects connection for host \"10.0.0.7\", user \"app\", database \"db\", SSL encryption"
            ),
            FailureKind::PgHbaRejected
        );
        assert_eq!(
            k(
                Some("28P01"),
                "password authentication failed for user \"app\""
            ),
            FailureKind::BadPassword
        );
        assert_eq!(
            k(Some("08P01"), "SASL authentication failed"),
            FailureKind::BadPassword
        );
        assert_eq!(k(Some("08P01"), "no such user"), FailureKind::NoSuchRole);
        assert_eq!(
            k(Some("28000"), "role \"ghost\" does not exist"),
            FailureKind::NoSuchRole
        );
        assert_eq!(
            k(Some("3D000"), "database \"nope\" does not exist"),
            FailureKind::NoSuchDatabase
        );
        assert_eq!(
            k(Some("08P01"), "no such database: nope"),
            FailureKind::NoSuchDatabase
        );
        assert_eq!(
            k(Some("53300"), "sorry, too many clients already"),
            FailureKind::TooManyConnections
        );
        assert_eq!(
            k(
                Some("08P01"),
                "no more connections allowed (max_client_conn)"
            ),
            FailureKind::TooManyConnections
        );
        assert_eq!(
            k(Some("57P03"), "the database system is starting up"),
            FailureKind::ServerStarting
        );
        assert_eq!(
            k(
                Some("25006"),
                "cannot execute CREATE TABLE in a read-only transaction"
            ),
            FailureKind::ReadOnly
        );
        for m in [
            "prepared statement \"sqlx_s_1\" already exists",
            "prepared statement \"sqlx_s_3\" does not exist",
            "bind message supplies 4 parameters, but prepared statement \"sqlx_s_3\" requires 5",
            "unnamed prepared statement does not exist",
        ] {
            assert_eq!(
                k(Some("42P05"), m),
                FailureKind::PoolerWithoutPreparedStatements,
                "{m}"
            );
        }
        assert_eq!(
            k(Some("42P01"), "relation \"x\" does not exist"),
            FailureKind::Other
        );
        assert_eq!(
            k(Some("42704"), "role \"ghost\" does not exist"),
            FailureKind::NoSuchRole,
            "also from GRANT and friends; statement_failure() does not report it"
        );
    }

    #[test]
    fn io_errors_are_classified() {
        use std::io::{Error, ErrorKind};
        let u = url("postgres://u:p@db.example:5432/app");
        let c = |e: Error| classify(&u, &sqlx::Error::Io(e)).kind().clone();
        assert_eq!(
            c(Error::from(ErrorKind::ConnectionRefused)),
            FailureKind::Refused
        );
        assert_eq!(c(Error::from(ErrorKind::TimedOut)), FailureKind::Timeout);
        assert_eq!(
            c(Error::other(
                "failed to lookup address information: Name or service not known"
            )),
            FailureKind::Dns
        );
        assert_eq!(
            c(Error::from(ErrorKind::ConnectionReset)),
            FailureKind::Other
        );
        assert_eq!(
            c(Error::new(
                ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer"
            )),
            FailureKind::Tls
        );
        assert_eq!(
            classify(&u, &sqlx::Error::Tls("server does not support TLS".into()))
                .kind()
                .clone(),
            FailureKind::Tls
        );
        assert_eq!(
            classify(&u, &sqlx::Error::PoolTimedOut).kind().clone(),
            FailureKind::Timeout
        );
    }

    #[test]
    fn the_start_hint_is_only_for_a_refused_local_server() {
        let refused = |s: &str| {
            classify(
                &url(s),
                &sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
            )
        };
        let local = refused("postgres://u:secret@127.0.0.1:5999/app");
        assert!(local.is_local_server_down());
        assert!(
            local.message().contains("scripts/db-up"),
            "{}",
            local.message()
        );
        assert!(local.message().contains("127.0.0.1:5999"));
        assert!(!local.message().contains("secret"));
        let remote = refused("postgres://u:secret@db.example:5432/app");
        assert!(
            !remote.message().contains("scripts/db-up"),
            "{}",
            remote.message()
        );
        assert!(remote.message().contains("db.example:5432"));

        let u = url("postgres://u@127.0.0.1:5432/app");
        for kind in [
            FailureKind::Tls,
            FailureKind::PgHbaRejected,
            FailureKind::Timeout,
            FailureKind::StartupParameterRejected {
                parameter: "extra_float_digits".into(),
            },
            FailureKind::ReadOnlyStandby,
            FailureKind::PoolerWithoutPreparedStatements,
        ] {
            let m = ConnectFailure::new(&u, kind.clone(), "x").message();
            assert!(!m.contains("db-up"), "{kind:?}: {m}");
            assert!(!m.contains("Is the server running"), "{kind:?}: {m}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let u = url("postgres://app:pw@10.1.2.3:6432/prod?sslmode=verify-full");
        let m = |kind: FailureKind, detail: &str| ConnectFailure::new(&u, kind, detail).message();
        let hba = m(
            FailureKind::PgHbaRejected,
            "no pg_hba.conf entry for host \"10.9.9.9\", user \"app\", database \"prod\", no encryption",
        );
        for part in [
            "pg_hba.conf",
            "not a wrong password",
            "sslmode=require",
            "role \"app\"",
        ] {
            assert!(hba.contains(part), "{part}: {hba}");
        }
        let startup = m(
            FailureKind::StartupParameterRejected {
                parameter: "extra_float_digits".into(),
            },
            "unsupported startup parameter: extra_float_digits",
        );
        assert!(
            startup.contains("ignore_startup_parameters = extra_float_digits"),
            "{startup}"
        );
        assert!(
            startup.contains("no startup parameter besides application_name"),
            "{startup}"
        );
        let pooler = m(FailureKind::PoolerWithoutPreparedStatements, "x");
        for part in [
            "PgBouncer >= 1.21",
            "max_prepared_statements",
            "session",
            "directly",
        ] {
            assert!(pooler.contains(part), "{part}: {pooler}");
        }
        let standby = m(
            FailureKind::ReadOnlyStandby,
            "cannot execute CREATE TABLE in a read-only transaction",
        );
        assert!(
            standby.contains("hot standby") && standby.contains("primary"),
            "{standby}"
        );
        let tls = m(FailureKind::Tls, "invalid peer certificate: UnknownIssuer");
        assert!(
            tls.contains("sslrootcert") && tls.contains("sslmode=verify-full"),
            "{tls}"
        );
        let no_tls = m(FailureKind::Tls, "server does not support TLS");
        assert!(no_tls.contains("does not accept TLS"), "{no_tls}");
        let named = ConnectFailure::new(&u, FailureKind::BadPassword, "x")
            .with_url_name("MIGRATION_DATABASE_URL")
            .message();
        assert!(named.contains("in MIGRATION_DATABASE_URL"), "{named}");
        assert!(!named.contains("pw"), "never the password: {named}");
    }

    #[test]
    fn missing_certificate_files_are_named() {
        let u = url(
            "postgres://u@db.example/app?sslmode=verify-full&sslrootcert=/nonexistent/mi-ca.pem",
        );
        let err = check_cert_files(&u).unwrap_err();
        assert_eq!(
            err.kind(),
            &FailureKind::MissingCertFile {
                parameter: "sslrootcert in the URL".into(),
                path: "/nonexistent/mi-ca.pem".into()
            }
        );
        assert!(
            err.message().contains("/nonexistent/mi-ca.pem"),
            "{}",
            err.message()
        );
        // The same file surfacing as an I/O error during the handshake.
        let io = classify(&u, &sqlx::Error::Io(std::io::ErrorKind::NotFound.into()));
        assert!(matches!(io.kind(), FailureKind::MissingCertFile { .. }));
        assert!(check_cert_files(&url("postgres://u@h/app?sslmode=require")).is_ok());
    }
}
