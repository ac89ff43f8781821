//! The handle: [`Db`] (primary pool, replica pools, settings),
//! [`Session`] for read-your-writes, [`Primary`] to force the primary for
//! one call, and [`Transaction`], a transaction begun through the handle.
//! All of them run with the handle's settings ([`crate::settings`]), both
//! for the library's data functions and as SeaORM connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, IsolationLevel,
    QueryResult, Statement, TransactionError, TransactionOptions, TransactionSession,
    TransactionTrait,
};

use crate::config::DbConfig;
use crate::error::Result;
use crate::replica::{Lsn, Replica};
use crate::settings::{HANDLE_K, Op};
use crate::store::{Backend, Route, Store, sealed::Sealed};

/// The database handle: a pool to the primary, a pool per replica, and the
/// settings every data function applies. Cheap to clone (shared inside).
///
/// Get one with [`DbConfig::connect`]. Pass `&db` to the data functions:
/// reads (lookups, listings, searches) go to a replica that is fresh enough
/// when replicas are configured, writes go to the primary. For anything
/// else it is a SeaORM connection to the primary: it implements
/// [`ConnectionTrait`] and [`TransactionTrait`]. Statements run that way
/// get the same settings as the data functions (schema, statement timeout,
/// `hnsw.*`, call timeout); a lone statement then costs a transaction of
/// its own (`BEGIN`, the settings, the statement, `COMMIT`) unless the
/// role holds every setting ([`crate::settings`]). `db.begin()` returns a
/// [`Transaction`] on the primary with the settings applied; data
/// functions given it run inside it.
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
    inner: Arc<Backend>,
}

impl Db {
    pub(crate) fn new(backend: Backend) -> Self {
        Self {
            inner: Arc::new(backend),
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

    /// The embedding model of this handle
    /// ([`DbConfig::embedding_model`]): query embeddings and written
    /// chunks must be of it, and searches compare only its chunks.
    pub fn embedding_model(&self) -> &crate::EmbeddingModel {
        &self.inner.models.model
    }

    /// Names of the settings this handle applies in each transaction: those
    /// it is configured with that the role does not already hold
    /// (`ALTER ROLE ... IN DATABASE ... SET`, checked at connect; see
    /// [`crate::settings`]), and `hnsw.ef_search` unless it is fixed
    /// ([`DbConfig::hnsw_ef_search`]: by default the server computes it
    /// from the table's size in each transaction). Empty when there is
    /// nothing to apply: statements through the handle then run without a
    /// transaction of their own.
    pub fn settings_applied_per_transaction(&self) -> Vec<String> {
        self.inner.settings.per_transaction()
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

impl Sealed for Db {}
impl Store for Db {
    fn route(&self) -> Route<'_> {
        Route::db(&self.inner, None, false)
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
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("db", &self.db)
            .field("token", &self.token())
            .finish()
    }
}

impl Sealed for Session {}
impl Store for Session {
    fn route(&self) -> Route<'_> {
        Route::db(&self.db.inner, Some(&self.lsn), false)
    }
}

/// Runs every call given it on the primary; see [`Db::primary`].
#[derive(Clone, Copy, Debug)]
pub struct Primary<'a> {
    db: &'a Db,
}

impl Sealed for Primary<'_> {}
impl Store for Primary<'_> {
    fn route(&self) -> Route<'_> {
        Route::db(&self.db.inner, None, true)
    }
}

// The handle as a SeaORM connection for the application's own queries: the
// same settings and call timeout as the data functions.

/// `fut`, abandoned after the handle's call timeout.
async fn bounded<T>(db: &Db, fut: impl Future<Output = Result<T, DbErr>>) -> Result<T, DbErr> {
    match db.inner.settings.call_timeout {
        Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(DbErr::Custom(format!(
                "no answer within {limit:?} (DbConfig::call_timeout): the server may be \
                 overloaded, frozen or unreachable; the statement was abandoned"
            )))
        }),
        None => fut.await,
    }
}

/// A library error as SeaORM's, for the [`ConnectionTrait`] methods.
fn db_err(e: crate::Error) -> DbErr {
    match e {
        crate::Error::Database(e) => e,
        other => DbErr::Custom(other.to_string()),
    }
}

impl Db {
    /// Whether a statement of the application's own needs a transaction to
    /// carry the settings (none are held by the role).
    fn statements_need_settings(&self) -> bool {
        self.inner.settings.any_per_transaction()
    }

    /// Begins a transaction on the primary and applies the settings.
    async fn begin_applied(&self, options: TransactionOptions) -> Result<Transaction, DbErr> {
        let txn = self.inner.primary.begin_with_options(options).await?;
        crate::settings::apply(&txn, &self.inner.settings, Op::HnswSearch { k: HANDLE_K })
            .await
            .map_err(db_err)?;
        Ok(Transaction {
            txn,
            db: self.clone(),
        })
    }

    /// The transaction a statement of the application's own runs in to
    /// carry the settings, or `None` when it needs none.
    async fn statement_txn(&self) -> Result<Option<Transaction>, DbErr> {
        if self.statements_need_settings() {
            self.begin_applied(TransactionOptions::default())
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Ends `txn` after a statement or callback returned `out`: commits on
/// success, rolls back (and keeps the error) on failure.
async fn finish<T, E>(txn: Transaction, out: Result<T, E>) -> Result<T, E>
where
    E: From<DbErr>,
{
    match out {
        Ok(v) => {
            txn.commit().await?;
            Ok(v)
        }
        Err(e) => {
            // The error is what matters; a failed rollback closes the
            // connection anyway.
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

/// One of the [`ConnectionTrait`] methods on `&Db`: the statement directly
/// on the primary, or in a transaction that applies the settings first,
/// bounded by the call timeout.
macro_rules! own_statement {
    ($db:expr, |$c:ident| $call:expr) => {
        bounded($db, async {
            match $db.statement_txn().await? {
                None => {
                    let $c = &$db.inner.primary;
                    $call.await
                }
                Some(txn) => {
                    let out = {
                        let $c = &txn.txn;
                        $call.await
                    };
                    finish(txn, out).await
                }
            }
        })
        .await
    };
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        own_statement!(self, |c| c.execute_raw(stmt))
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        own_statement!(self, |c| c.execute_unprepared(sql))
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        own_statement!(self, |c| c.query_one_raw(stmt))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        own_statement!(self, |c| c.query_all_raw(stmt))
    }
}

/// Runs `callback` in `txn`, then commits, or rolls back on error.
async fn run_in<T, E, F>(txn: Transaction, callback: F) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(&'c Transaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let out = callback(&txn).await.map_err(TransactionError::Transaction);
    finish(txn, out).await
}

/// `TransactionTrait` for a form of the handle, from its
/// `begin_with_options` (`|this, options| body`): every other method begins
/// through it, and the callback methods commit, or roll back on error.
macro_rules! transaction_trait {
    ($ty:ty, |$this:ident, $options:ident| $begin:expr) => {
        #[async_trait::async_trait]
        impl TransactionTrait for $ty {
            type Transaction = Transaction;

            async fn begin(&self) -> Result<Transaction, DbErr> {
                self.begin_with_options(TransactionOptions::default()).await
            }

            async fn begin_with_config(
                &self,
                isolation_level: Option<IsolationLevel>,
                access_mode: Option<AccessMode>,
            ) -> Result<Transaction, DbErr> {
                self.begin_with_options(TransactionOptions {
                    isolation_level,
                    access_mode,
                    ..Default::default()
                })
                .await
            }

            async fn begin_with_options(
                &self,
                $options: TransactionOptions,
            ) -> Result<Transaction, DbErr> {
                let $this = self;
                $begin
            }

            async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c Transaction,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                let txn = self.begin().await.map_err(TransactionError::Connection)?;
                run_in(txn, callback).await
            }

            async fn transaction_with_config<F, T, E>(
                &self,
                callback: F,
                isolation_level: Option<IsolationLevel>,
                access_mode: Option<AccessMode>,
            ) -> Result<T, TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c Transaction,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                let txn = self
                    .begin_with_config(isolation_level, access_mode)
                    .await
                    .map_err(TransactionError::Connection)?;
                run_in(txn, callback).await
            }
        }
    };
}

// On the primary, with the settings applied.
transaction_trait!(Db, |db, options| bounded(db, db.begin_applied(options))
    .await);

// A savepoint: the settings of the enclosing transaction hold.
transaction_trait!(Transaction, |t, options| Ok(Transaction {
    txn: bounded(&t.db, t.txn.begin_with_options(options)).await?,
    db: t.db.clone(),
}));

/// A transaction on the primary, begun through the handle (`db.begin()`,
/// `db.transaction(...)`): the handle's settings hold for every statement
/// in it, and data functions given `&txn` run inside it. Nested `begin`
/// makes a savepoint. Dropped without [`Transaction::commit`], it rolls
/// back.
///
/// ```no_run
/// # async fn f(db: &mockinterview_db::Db) -> mockinterview_db::Result<()> {
/// use mockinterview_db::profiles::{self, FirebaseUser};
/// use sea_orm::TransactionTrait;
/// let txn = db.begin().await?;
/// let user = profiles::upsert_profile(&txn, &FirebaseUser {
///     uid: "firebase-uid".into(), ..Default::default()
/// }).await?;
/// txn.commit().await?;
/// # Ok(()) }
/// ```
pub struct Transaction {
    txn: DatabaseTransaction,
    db: Db,
}

impl Transaction {
    /// Commits.
    ///
    /// # Errors
    /// When the server fails the commit (the transaction is then rolled
    /// back).
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    /// Rolls back.
    ///
    /// # Errors
    /// When the connection fails (the server then rolls back by itself).
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Sealed for Transaction {}
impl Store for Transaction {
    fn route(&self) -> Route<'_> {
        Route::transaction(&self.db.inner, &self.txn)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Transaction {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        bounded(&self.db, self.txn.execute_raw(stmt)).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        bounded(&self.db, self.txn.execute_unprepared(sql)).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        bounded(&self.db, self.txn.query_one_raw(stmt)).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        bounded(&self.db, self.txn.query_all_raw(stmt)).await
    }
}

#[async_trait::async_trait]
impl TransactionSession for Transaction {
    async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}
