//! [`Db`]: the handle applications share (primary pool, replica pools,
//! settings), [`Session`] for read-your-writes, [`Primary`] to force the
//! primary for one call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, IsolationLevel, QueryResult, Statement, TransactionError, TransactionOptions,
    TransactionTrait,
};

use crate::config::DbConfig;
use crate::error::Result;
use crate::replica::{Lsn, Replica, Replicas};
use crate::store::{Route, Settings, Store};

/// The database handle: a pool to the primary, a pool per replica, and the
/// settings every data function applies. Cheap to clone (shared inside).
///
/// Get one with [`DbConfig::connect`]. Pass `&db` to the data functions:
/// reads (lookups, listings, searches) go to a replica that is fresh enough
/// when replicas are configured, writes go to the primary. For anything
/// else it is a SeaORM connection to the primary: it implements
/// [`ConnectionTrait`] and [`TransactionTrait`] (a transaction from
/// `db.begin()` runs on the primary, and data functions given that
/// transaction run inside it).
///
/// ```no_run
/// # async fn f() -> mockinterview_db::Result<()> {
/// use mockinterview_db::{profiles, DbConfig};
/// let db = DbConfig::from_env()?.connect().await?;
/// let session = db.session(); // e.g. one per request
/// let user = profiles::upsert_profile(&session, &profiles::FirebaseUser {
///     uid: "firebase-uid".into(), ..Default::default()
/// }).await?;
/// // Sees the upsert even if it reads from a replica.
/// let same = profiles::profile_by_uid(&session, "firebase-uid").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    primary: DatabaseConnection,
    primary_reads: AtomicU64,
    replicas: Replicas,
    settings: Settings,
    config: DbConfig,
    target: String,
}

impl Db {
    pub(crate) fn new(
        primary: DatabaseConnection,
        replicas: Replicas,
        settings: Settings,
        config: DbConfig,
        target: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                primary,
                primary_reads: AtomicU64::new(0),
                replicas,
                settings,
                config,
                target,
            }),
        }
    }

    /// A session: the same database, and reads through it never return data
    /// older than the writes made through it (read-your-writes), even when
    /// they go to a replica. Make one per request or per user interaction;
    /// carry [`Session::token`] across requests with [`Db::session_after`].
    pub fn session(&self) -> Session {
        Session {
            db: self.clone(),
            lsn: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A session whose reads see at least everything committed when `token`
    /// was taken (from [`Session::token`], e.g. kept in a cookie).
    pub fn session_after(&self, token: ReadToken) -> Session {
        Session {
            db: self.clone(),
            lsn: Arc::new(AtomicU64::new(token.0.0)),
        }
    }

    /// Everything on the primary, for the calls given this handle: e.g.
    /// `profiles::profile_by_id(&db.primary(), id)` right after a write made
    /// elsewhere.
    pub fn primary(&self) -> Primary<'_> {
        Primary { db: self }
    }

    /// The primary's pool.
    pub fn primary_conn(&self) -> &DatabaseConnection {
        &self.inner.primary
    }

    /// The configuration this handle was made from.
    pub fn config(&self) -> &DbConfig {
        &self.inner.config
    }

    /// `host:port/database` of the primary.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The replicas and their current state.
    pub fn replicas(&self) -> &[Arc<Replica>] {
        self.inner.replicas.all()
    }

    /// How many reads of the data functions the primary has answered
    /// (with replicas configured: those no replica could take).
    pub fn primary_reads(&self) -> u64 {
        self.inner.primary_reads.load(Ordering::Relaxed)
    }

    pub(crate) fn count_primary_read(&self) {
        self.inner.primary_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// A replica for a read that must see `after` (a session's last write),
    /// or `None` for the primary.
    pub(crate) async fn pick_replica(&self, after: Option<ReadToken>) -> Option<Arc<Replica>> {
        self.inner
            .replicas
            .pick(after.map(|t| t.0), &self.inner.config)
            .await
    }

    /// The primary's current WAL insert position.
    pub(crate) async fn primary_lsn(&self) -> Result<Lsn> {
        crate::replica::current_lsn(&self.inner.primary).await
    }

    /// Closes every pool (and stops the replica monitor).
    ///
    /// # Errors
    /// When a pool fails to close.
    pub async fn close(self) -> Result<()> {
        self.inner.replicas.stop();
        for replica in self.inner.replicas.all() {
            replica.conn().clone().close().await?;
        }
        self.inner.primary.clone().close().await?;
        Ok(())
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("primary", &self.inner.target)
            .field("replicas", &self.inner.replicas.all().len())
            .finish()
    }
}

impl std::ops::Deref for Db {
    type Target = DatabaseConnection;

    /// The primary's pool, for APIs that take `&DatabaseConnection` (e.g.
    /// `migration::lock::up_locked(&db, None)`).
    fn deref(&self) -> &DatabaseConnection {
        &self.inner.primary
    }
}

impl Store for Db {
    fn route(&self) -> Route<'_> {
        Route::db(self, None, false)
    }
}

/// A position in the primary's write-ahead log: what a read must have seen.
/// From [`Session::token`]; give it back with [`Db::session_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReadToken(Lsn);

impl ReadToken {
    /// The PostgreSQL form, e.g. `0/16B3748`.
    pub fn as_pg_lsn(&self) -> String {
        self.0.to_string()
    }

    /// Parses the PostgreSQL form (`X/Y`, hexadecimal).
    ///
    /// # Errors
    /// [`crate::Error::Validation`] (field `read_token`) for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        Lsn::parse(s)
            .map(Self)
            .ok_or_else(|| crate::Error::Validation {
                field: "read_token",
                reason: format!("`{s}` is not a WAL position such as 0/16B3748"),
            })
    }
}

impl std::fmt::Display for ReadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A [`Db`] that remembers its own writes: reads through it go to a replica
/// only once that replica has replayed them (waiting a bounded time, see
/// [`DbConfig::read_your_writes_wait`]), else to the primary.
///
/// Cheap to clone; clones share the position.
#[derive(Clone)]
pub struct Session {
    db: Db,
    lsn: Arc<AtomicU64>,
}

impl Session {
    /// What reads through this session must have seen: its last write
    /// (`None` before any write), to carry across requests.
    pub fn token(&self) -> Option<ReadToken> {
        match self.lsn.load(Ordering::Acquire) {
            0 => None,
            n => Some(ReadToken(Lsn(n))),
        }
    }

    /// The database behind the session.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records the primary's WAL position after a write (only when replicas
    /// are configured: without them every read sees every write).
    pub(crate) async fn wrote(&self, db: &Db) -> Result<()> {
        if db.replicas().is_empty() {
            return Ok(());
        }
        let lsn = db.primary_lsn().await?;
        self.lsn.fetch_max(lsn.0, Ordering::AcqRel);
        Ok(())
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("db", &self.db)
            .field("token", &self.token())
            .finish()
    }
}

impl Store for Session {
    fn route(&self) -> Route<'_> {
        Route::db(&self.db, Some(self), false)
    }
}

/// Runs every call given it on the primary; see [`Db::primary`].
#[derive(Clone, Copy, Debug)]
pub struct Primary<'a> {
    db: &'a Db,
}

impl Store for Primary<'_> {
    fn route(&self) -> Route<'_> {
        Route::db(self.db, None, true)
    }
}

// `Db` is a SeaORM connection to the primary for the application's own
// queries.

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.inner.primary.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.primary.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.inner.primary.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.inner.primary.query_all_raw(stmt).await
    }
}

#[async_trait::async_trait]
impl TransactionTrait for Db {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.inner.primary.begin().await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.inner
            .primary
            .begin_with_config(isolation_level, access_mode)
            .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.inner.primary.begin_with_options(options).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'c>,
            > + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.inner.primary.transaction(callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, E>> + Send + 'c>,
            > + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.inner
            .primary
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}

/// `Migrator::up(&db, None)` and other sea-orm-migration calls run on the
/// primary.
impl<'c> sea_orm::IntoDatabaseExecutor<'c> for &'c Db {
    fn into_database_executor(self) -> sea_orm::DatabaseExecutor<'c> {
        sea_orm::DatabaseExecutor::Connection(&self.inner.primary)
    }
}
