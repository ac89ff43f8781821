//! [`DbUrl`]: a PostgreSQL connection URL, parsed once.

use std::str::FromStr;

use sea_orm::sqlx::postgres::PgConnectOptions;
use url::Url;

/// The environment variable every part of the project reads.
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// `DATABASE_URL` is not set (neither in the environment nor in `.env`).
    #[error(
        "DATABASE_URL is not set: put `DATABASE_URL=postgres://user:password@host:5432/db` in \
         the environment or in a .env file (the project's .env points at the local database \
         that scripts/db-up provisions)"
    )]
    Missing,
    /// Not a `postgres://` or `postgresql://` URL.
    #[error(
        "DATABASE_URL must be a PostgreSQL URL (postgres://user:password@host:5432/database), \
         got a `{scheme}:` URL"
    )]
    NotPostgres {
        /// The scheme found.
        scheme: String,
    },
    /// A `postgres://` URL that does not parse.
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {reason}")]
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
}

/// A `postgres://` connection URL that parsed, with the connection options
/// it describes.
///
/// Its `Display` and `Debug` never show the password: use [`DbUrl::target`]
/// in messages and [`DbUrl::as_str`] only to connect.
///
/// ```
/// use pgconn::DbUrl;
///
/// let url: DbUrl = "postgres://app:secret@db.internal:6432/prod?sslmode=require".parse().unwrap();
/// assert_eq!(url.target(), "db.internal:6432/prod");
/// assert_eq!(url.to_string(), "postgres://app@db.internal:6432/prod");
/// assert!(!url.is_local());
/// let test = url.with_database("mi_test_1");
/// assert_eq!(test.database(), "mi_test_1");
/// assert!(test.as_str().ends_with("/mi_test_1?sslmode=require"));
/// ```
#[derive(Clone)]
pub struct DbUrl {
    url: Url,
    options: PgConnectOptions,
}

impl DbUrl {
    /// Parses `url`.
    ///
    /// # Errors
    /// [`UrlError::NotPostgres`] for another scheme, [`UrlError::Invalid`]
    /// when it does not parse.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        let parsed = Url::parse(url).map_err(|e| match url.split_once(':') {
            Some((scheme, _)) if !is_postgres_scheme(scheme) => UrlError::NotPostgres {
                scheme: scheme.to_owned(),
            },
            _ => UrlError::Invalid {
                reason: e.to_string(),
            },
        })?;
        if !is_postgres_scheme(parsed.scheme()) {
            return Err(UrlError::NotPostgres {
                scheme: parsed.scheme().to_owned(),
            });
        }
        Self::from_url(parsed)
    }

    /// `DATABASE_URL` from the environment, after loading a `.env` file from
    /// the working directory (or a parent) if there is one.
    ///
    /// # Errors
    /// [`UrlError::Missing`] when it is unset or empty, else as
    /// [`DbUrl::parse`].
    pub fn from_env() -> Result<Self, UrlError> {
        let _ = dotenvy::dotenv();
        match std::env::var(DATABASE_URL_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v),
            _ => Err(UrlError::Missing),
        }
    }

    fn from_url(url: Url) -> Result<Self, UrlError> {
        let options = PgConnectOptions::from_str(url.as_str()).map_err(|e| UrlError::Invalid {
            reason: e.to_string(),
        })?;
        Ok(Self { url, options })
    }

    /// The whole URL, password included: for connecting, never for messages.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The connection options the URL describes.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// Host name or address, or the socket directory for a Unix socket.
    pub fn host(&self) -> String {
        self.options.get_socket().map_or_else(
            || self.options.get_host().to_owned(),
            |s| s.display().to_string(),
        )
    }

    /// Port.
    pub fn port(&self) -> u16 {
        self.options.get_port()
    }

    /// Database name (the role's name when the URL has none, as libpq does).
    pub fn database(&self) -> &str {
        self.options
            .get_database()
            .unwrap_or_else(|| self.options.get_username())
    }

    /// Role.
    pub fn user(&self) -> &str {
        self.options.get_username()
    }

    /// `host:port/database`, without credentials: what messages show.
    pub fn target(&self) -> String {
        format!("{}:{}/{}", self.host(), self.port(), self.database())
    }

    /// True when the server is on this machine (loopback or a Unix socket),
    /// where `scripts/db-up` can start it and process ids are ours.
    pub fn is_local(&self) -> bool {
        self.options.get_socket().is_some()
            || matches!(
                self.options.get_host(),
                "localhost" | "127.0.0.1" | "::1" | "[::1]"
            )
    }

    /// The same URL (query parameters included) for another database.
    pub fn with_database(&self, database: &str) -> Self {
        let mut url = self.url.clone();
        url.set_path(&format!("/{database}"));
        self.edited(url)
    }

    /// The same URL with another role and password.
    pub fn with_credentials(&self, user: &str, password: &str) -> Self {
        let mut url = self.url.clone();
        // Both only fail for URLs without a host, which `parse` refused.
        let _ = url.set_username(user);
        let _ = url.set_password(Some(password));
        self.edited(url)
    }

    /// The same URL with another port (a pooler or a replica on this host).
    pub fn with_port(&self, port: u16) -> Self {
        let mut url = self.url.clone();
        let _ = url.set_port(Some(port));
        self.edited(url)
    }

    fn edited(&self, url: Url) -> Self {
        // Editing the path, credentials or port of a URL that parsed keeps it
        // parseable.
        Self::from_url(url).expect("an edited PostgreSQL URL still parses")
    }
}

impl FromStr for DbUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for DbUrl {
    /// `postgres://user@host:port/database`: no password, no query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres://{}@{}", self.user(), self.target())
    }
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DbUrl").field(&self.to_string()).finish()
    }
}

impl PartialEq for DbUrl {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for DbUrl {}

fn is_postgres_scheme(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_target_never_show_the_password() {
        let u = DbUrl::parse("postgres://u:secret@db.example:6543/app?sslmode=disable").unwrap();
        assert_eq!(u.target(), "db.example:6543/app");
        assert_eq!((u.user(), u.port(), u.database()), ("u", 6543, "app"));
        assert!(!u.is_local());
        assert!(!format!("{u} {u:?}").contains("secret"));
        let u = DbUrl::parse("postgresql://u@127.0.0.1/app").unwrap();
        assert_eq!(u.port(), 5432);
        assert!(u.is_local());
        assert!(
            DbUrl::parse("postgres://u@[::1]:5432/db")
                .unwrap()
                .is_local()
        );
        assert!(
            DbUrl::parse("postgres://u@localhost/db")
                .unwrap()
                .is_local()
        );
        assert!(!DbUrl::parse("postgres://u@10.0.0.5/db").unwrap().is_local());
    }

    #[test]
    fn foreign_and_malformed_urls_are_refused() {
        assert_eq!(
            DbUrl::parse("mysql://x@y/z").unwrap_err(),
            UrlError::NotPostgres {
                scheme: "mysql".into()
            }
        );
        assert!(matches!(
            DbUrl::parse("postgres://u@h:notaport/db"),
            Err(UrlError::Invalid { .. })
        ));
        assert!(matches!(
            DbUrl::parse("no url at all"),
            Err(UrlError::Invalid { .. } | UrlError::NotPostgres { .. })
        ));
    }

    #[test]
    fn copies_change_one_part_and_keep_the_rest() {
        let u = DbUrl::parse("postgres://u:p%40ss@h:5432/app?sslmode=disable").unwrap();
        assert_eq!(
            u.with_database("t1").as_str(),
            "postgres://u:p%40ss@h:5432/t1?sslmode=disable"
        );
        let other = u.with_credentials("app role", "s3cr@t");
        assert_eq!(other.user(), "app role");
        assert_eq!(other.database(), "app");
        assert_eq!(u.with_port(6432).target(), "h:6432/app");
        assert_eq!(
            DbUrl::parse("postgres://h")
                .unwrap()
                .with_database("t2")
                .as_str(),
            "postgres://h/t2"
        );
    }
}
