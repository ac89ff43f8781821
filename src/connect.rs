//! Start-up: [`DbConfig::connect`] opens the pools, learns from the primary
//! what the settings need, and makes the handle. It opens no connection
//! other than the pool's own: diagnosing why a connection fails (TLS,
//! `pg_hba.conf`, a pooler's mode) is the migration tool's `doctor`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use pgconn::DbUrl;
use sea_orm::sqlx::ConnectOptions as _;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::{DatabaseConnection, DbErr, SqlxPostgresConnector};

use crate::config::{DbConfig, REPLICA_URLS_ENV, parse_url, validate_schema};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::health::{PGVECTOR_UPGRADE_ADVICE, Readiness};
use crate::replica::{Replica, Replicas};
use crate::schema::SchemaState;
use crate::settings::Settings;
use crate::store::Backend;

impl DbConfig {
    /// Opens the pools and checks that the primary answers, within
    /// [`DbConfig::connect_timeout`]. On that first connection it reads the
    /// pgvector version and schema, and which settings the role already
    /// holds ([`crate::settings`]). Replicas are opened lazily and
    /// monitored: one that is down does not fail `connect` (reads use the
    /// primary until it is back).
    ///
    /// It also checks the schema ([`crate::schema`]): a database more than
    /// one migration behind this release is refused.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed URL or schema list, or an
    /// embedding model whose vectors this release cannot store;
    /// [`Error::SchemaBehind`] naming the pending migrations;
    /// [`Error::Unavailable`] when the primary cannot be reached or refuses
    /// the login (with the server's SQLSTATE, see [`Error::sqlstate`]).
    #[tracing::instrument(skip(self), fields(target = %self.target()))]
    pub async fn connect(&self) -> Result<Db> {
        let url = parse_url(&self.url, "DATABASE_URL")?;
        if let Some(schema) = &self.schema {
            validate_schema(schema)?;
        }
        self.embedding_model.check_storable()?;
        // Settings given in the URL (`?options=-c name=value`) are applied
        // like the others: a pooler drops startup options.
        let url_settings = url
            .startup_settings()
            .map_err(|e| Error::Config(format!("DATABASE_URL: {e}")))?;
        let url = url.without_startup_options();
        let target = url.target();
        let pool = self
            .pool_options(self.acquire_timeout)
            .connect_lazy_with(self.connect_options(&url));
        let primary = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);

        let probe =
            match tokio::time::timeout(self.connect_timeout, Readiness::read(&primary)).await {
                Ok(probe) => probe.map_err(|e| e.with_target(&target))?,
                Err(_) => {
                    return Err(Error::Unavailable {
                        target,
                        reason: format!(
                            "no connection within {:?} (DbConfig::connect_timeout): the server is \
                         down, unreachable or not accepting connections",
                            self.connect_timeout
                        ),
                        source: DbErr::Custom("connect timeout elapsed".into()),
                    });
                }
            };
        let bugs = probe.pgvector_known_bugs();
        if !bugs.is_empty() {
            tracing::warn!(
                target = %target,
                pgvector = probe.pgvector_version.as_deref().unwrap_or_default(),
                known_bugs = %bugs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                "this server's pgvector has known HNSW bugs: {PGVECTOR_UPGRADE_ADVICE}"
            );
        }
        let mut settings = Settings::new(
            self,
            url_settings,
            probe.pgvector_schema.as_deref(),
            probe.pgvector_version.as_deref(),
        );
        let held = settings
            .drop_held(&primary)
            .await
            .map_err(|e| e.with_target(&target))?;
        tracing::info!(
            held_by_role = ?held,
            per_transaction = ?settings.per_transaction(),
            "settings"
        );
        let schema = SchemaState::read(&primary, &settings)
            .await
            .map_err(|e| e.with_target(&target))?;
        if let Some(pending) = schema.one_behind {
            tracing::warn!(
                pending,
                "the database lacks this release's newest migration; serving it as the previous \
                 release did until `migration up` applies it"
            );
        }
        let models = schema.scope(&self.embedding_model);
        if models.registry && schema.serving.as_ref() != Some(&self.embedding_model) {
            tracing::warn!(
                model = %self.embedding_model,
                serving = ?schema.serving.as_ref().map(ToString::to_string),
                "the database serves another embedding model than this handle's: its searches \
                 and uploads fail with Error::NotServing until the model is switched"
            );
        }

        let mut replicas = Vec::with_capacity(self.replica_urls.len());
        for replica_url in &self.replica_urls {
            let replica_url = parse_url(replica_url, REPLICA_URLS_ENV)?.without_startup_options();
            let pool = self.lazy_pool(&replica_url);
            replicas.push(Arc::new(Replica::new(
                pool,
                replica_url.target(),
                self.replica_retry_after,
            )));
        }
        let replicas = Replicas::start(replicas, primary.clone(), self);
        Ok(Db::new(Backend {
            primary,
            replicas,
            settings,
            models,
            config: self.clone(),
            target,
            primary_reads: AtomicU64::new(0),
        }))
    }

    /// What every connection sends at start: the URL's role, database and
    /// TLS settings and `application_name`; not sqlx's default
    /// `extra_float_digits` (PostgreSQL 12+ prints floats exactly without
    /// it, and PgBouncer refuses unknown startup parameters).
    fn connect_options(&self, url: &DbUrl) -> PgConnectOptions {
        let options = url
            .connect_options()
            .extra_float_digits(None)
            .application_name(&self.application_name);
        if self.log_statements {
            options.log_statements(tracing::log::LevelFilter::Debug)
        } else {
            options.disable_statement_logging()
        }
    }

    /// Pool limits.
    fn pool_options(&self, acquire_timeout: Duration) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(acquire_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
    }

    /// A pool to `url` that connects on first use.
    fn lazy_pool(&self, url: &DbUrl) -> DatabaseConnection {
        let pool = self
            .pool_options(self.replica_acquire_timeout)
            .connect_lazy_with(self.connect_options(url));
        SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
    }
}
