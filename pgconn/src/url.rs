//! [`DbUrl`]: a PostgreSQL connection URL, parsed once.

use std::str::FromStr;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};
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
         the environment or in a .env file"
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

    /// The last value of query parameter `name` (`sslmode`, `sslrootcert`,
    /// ...), decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .last()
    }

    /// The TLS mode in effect (`sslmode` of the URL, else `PGSSLMODE`, else
    /// `prefer`), spelled as libpq does.
    pub fn ssl_mode(&self) -> &'static str {
        match self.options.get_ssl_mode() {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }

    /// The server settings the URL passes as the startup parameter
    /// `options` (`?options=-c%20search_path%3Dapp`, libpq's way, or sqlx's
    /// `?options[search_path]=app`), in order.
    ///
    /// Connection poolers refuse (PgBouncer: `unsupported startup
    /// parameter`) or drop such startup parameters, so the project's
    /// binaries connect with [`DbUrl::without_startup_options`] and apply
    /// these settings inside their transactions instead.
    ///
    /// ```
    /// let url = pgconn::DbUrl::parse(
    ///     "postgres://u@h/db?options=-c%20search_path%3Dapp,public%20-c%20lock_timeout%3D2s",
    /// )
    /// .unwrap();
    /// assert_eq!(
    ///     url.startup_settings().unwrap(),
    ///     [("search_path".to_owned(), "app,public".to_owned()),
    ///      ("lock_timeout".to_owned(), "2s".to_owned())]
    /// );
    /// ```
    ///
    /// # Errors
    /// [`UrlError::Invalid`] when `options` holds something other than
    /// `-c name=value` / `--name=value` settings.
    pub fn startup_settings(&self) -> Result<Vec<(String, String)>, UrlError> {
        let mut settings = Vec::new();
        for (key, value) in self.url.query_pairs() {
            if key == "options" {
                settings.extend(parse_options(&value)?);
            } else if let Some(name) = key
                .strip_prefix("options[")
                .and_then(|k| k.strip_suffix(']'))
            {
                settings.push((name.to_owned(), value.into_owned()));
            }
        }
        Ok(settings)
    }

    /// The same URL without its `options` query parameters (see
    /// [`DbUrl::startup_settings`]): nothing but the role, database,
    /// `application_name` and TLS settings is sent at connection start.
    pub fn without_startup_options(&self) -> Self {
        let kept: Vec<(String, String)> = self
            .url
            .query_pairs()
            .filter(|(k, _)| k != "options" && !k.starts_with("options["))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut url = self.url.clone();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        self.edited(url)
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

/// Parses libpq's `options` value: `-c name=value`, `-cname=value` or
/// `--name=value` items separated by spaces, `\` escaping a space or a
/// backslash. Dashes in `--` names become underscores, as the server does.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, UrlError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let invalid = |what: &str| UrlError::Invalid {
        reason: format!(
            "the `options` parameter {options:?} has {what}; only `-c name=value` settings are \
             supported"
        ),
    };
    let mut settings = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let item = if w == "-c" {
            words
                .next()
                .ok_or_else(|| invalid("a `-c` without a setting"))?
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("--") {
            match rest.split_once('=') {
                Some((name, value)) => format!("{}={value}", name.replace('-', "_")),
                None => return Err(invalid(&format!("`{w}` without a value"))),
            }
        } else {
            return Err(invalid(&format!("`{w}`")));
        };
        match item.split_once('=') {
            Some((name, value)) if !name.is_empty() => {
                settings.push((name.to_owned(), value.to_owned()));
            }
            _ => return Err(invalid(&format!("`{item}` without a value"))),
        }
    }
    Ok(settings)
}

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
    fn startup_settings_parse_libpq_and_sqlx_forms() {
        let u = DbUrl::parse(
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3D%22My%5C%20App%22,public%20-cstatement_timeout%3D5s%20--lock-timeout%3D1s&options[application_name]=x",
        )
        .unwrap();
        assert_eq!(
            u.startup_settings().unwrap(),
            [
                ("search_path".to_owned(), "\"My App\",public".to_owned()),
                ("statement_timeout".to_owned(), "5s".to_owned()),
                ("lock_timeout".to_owned(), "1s".to_owned()),
                ("application_name".to_owned(), "x".to_owned()),
            ]
        );
        let stripped = u.without_startup_options();
        assert_eq!(stripped.as_str(), "postgres://u@h/db?sslmode=disable");
        assert!(stripped.startup_settings().unwrap().is_empty());
        assert_eq!(
            DbUrl::parse("postgres://u@h/db?options=-c%20x%3D1")
                .unwrap()
                .without_startup_options()
                .as_str(),
            "postgres://u@h/db"
        );
        for bad in ["-c", "-c%20x", "geqo", "--x"] {
            let u = DbUrl::parse(&format!("postgres://u@h/db?options={bad}")).unwrap();
            assert!(u.startup_settings().is_err(), "{bad}");
        }
        assert_eq!(u.ssl_mode(), "disable");
        assert_eq!(u.param("sslmode").as_deref(), Some("disable"));
        assert_eq!(u.param("nope"), None);
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
