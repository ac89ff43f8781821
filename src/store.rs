//! Where a library call runs: the [`Store`] trait, and the routing,
//! settings, deadline and error mapping every data function goes through.
//!
//! Every data function takes `&impl Store`, one of the handle's forms:
//! - a [`Db`](crate::Db) (from [`crate::DbConfig::connect`]): reads may go
//!   to a replica, writes go to the primary;
//! - a [`Session`](crate::Session) (from `Db::session`): like `Db`, and
//!   reads see the session's own earlier writes;
//! - a [`Primary`](crate::Primary) (from `Db::primary`): everything on the
//!   primary, for one call;
//! - a [`Transaction`](crate::Transaction) (from `db.begin()`): everything
//!   runs inside it.
//!
//! All of them run with the same settings ([`crate::settings`]): the ones
//! the handle was configured with.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait,
};

use crate::config::DbConfig;
use crate::embedding::ModelScope;
use crate::error::{Error, Result};
use crate::replica::{Lsn, Replicas};
use crate::settings::{Op, Settings};

pub(crate) mod sealed {
    /// Implemented by the handle's forms only.
    pub trait Sealed {}
    impl<T: Sealed + ?Sized> Sealed for &T {}
}

/// Something the library's data functions can run on: [`Db`](crate::Db),
/// [`Session`](crate::Session), [`Primary`](crate::Primary) or
/// [`Transaction`](crate::Transaction), all with the handle's settings.
///
/// Sealed: the routing lives in this crate.
pub trait Store: sealed::Sealed + Sync {
    /// Where this store sends reads and writes (an implementation detail of
    /// the data functions).
    #[doc(hidden)]
    fn route(&self) -> Route<'_>;
}

impl<T: Store + ?Sized> Store for &T {
    fn route(&self) -> Route<'_> {
        (**self).route()
    }
}

/// What a handle and all its forms share: the pools, the settings, the
/// configuration.
pub(crate) struct Backend {
    pub primary: DatabaseConnection,
    pub replicas: Replicas,
    pub settings: Settings,
    pub models: ModelScope,
    pub config: DbConfig,
    pub target: String,
    pub primary_reads: AtomicU64,
}

impl Backend {
    /// The primary's current WAL insert position.
    async fn primary_lsn(&self) -> Result<Lsn> {
        crate::replica::current_lsn(&self.primary).await
    }
}

/// Where a store sends a call; see [`Store`].
#[doc(hidden)]
pub struct Route<'a> {
    kind: RouteKind<'a>,
}

#[derive(Clone, Copy)]
enum RouteKind<'a> {
    Db {
        backend: &'a Backend,
        /// A read-your-writes session's last write.
        session: Option<&'a AtomicU64>,
        primary_only: bool,
    },
    /// A transaction begun through the handle: its settings are in effect.
    Transaction {
        backend: &'a Backend,
        txn: &'a DatabaseTransaction,
    },
}

impl<'a> Route<'a> {
    /// Calls through the handle: on replicas for reads (unless
    /// `primary_only`), waiting for `session`'s last write if given.
    pub(crate) fn db(
        backend: &'a Backend,
        session: Option<&'a AtomicU64>,
        primary_only: bool,
    ) -> Self {
        Self {
            kind: RouteKind::Db {
                backend,
                session,
                primary_only,
            },
        }
    }

    /// Calls inside `txn`, a transaction begun through the handle.
    pub(crate) fn transaction(backend: &'a Backend, txn: &'a DatabaseTransaction) -> Self {
        Self {
            kind: RouteKind::Transaction { backend, txn },
        }
    }

    fn backend(&self) -> &'a Backend {
        match self.kind {
            RouteKind::Db { backend, .. } | RouteKind::Transaction { backend, .. } => backend,
        }
    }

    /// The settings of this store.
    pub(crate) fn settings(&self) -> &'a Settings {
        &self.backend().settings
    }

    /// The chunks this store's searches compare, by embedding model.
    pub(crate) fn models(&self) -> &'a ModelScope {
        &self.backend().models
    }

    /// `host:port/database` for messages.
    pub(crate) fn target(&self) -> String {
        self.backend().target.clone()
    }

    /// How a whole-table search of the top `k` runs: the [`Op`], and the
    /// condition that sets its `hnsw.*` settings inside the statement when
    /// the statement settings are already in effect
    /// ([`Settings::search_guard`]).
    pub(crate) fn hnsw_search(&self, k: u32) -> (Op, Option<String>) {
        let settings = self.settings();
        match self.kind {
            RouteKind::Db { .. } if settings.has_statement_settings() => {
                (Op::HnswSearch { k }, None)
            }
            _ => (Op::Plain, Some(settings.search_guard(k))),
        }
    }

    /// The connection writes go to: the primary, or the caller's
    /// transaction.
    fn primary(&self) -> Base<'a> {
        match self.kind {
            RouteKind::Db { backend, .. } => Base::Pool(Cow::Borrowed(&backend.primary)),
            RouteKind::Transaction { txn, .. } => Base::Transaction(txn),
        }
    }

    /// Runs a read: on a replica when the store has one that is fresh
    /// enough, else on the primary. A replica that fails at the connection
    /// level is taken out of rotation and the read runs on the primary.
    pub(crate) async fn read<T, F, Fut>(&self, op: Op, mut f: F) -> Result<T>
    where
        F: FnMut(Conn<'a>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.bounded(async {
            if let RouteKind::Db {
                backend,
                session,
                primary_only: false,
            } = self.kind
                && let Some(replica) = backend
                    .replicas
                    .pick(
                        session
                            .map(|l| Lsn(l.load(Ordering::Acquire)))
                            .filter(|l| l.0 != 0),
                        &backend.config,
                    )
                    .await
            {
                let base = Base::Pool(Cow::Owned(replica.conn().clone()));
                match run(base, self.settings(), op, &mut f).await {
                    Err(Error::Unavailable { .. }) => {
                        replica.mark_down();
                        tracing::warn!(
                            replica = %replica.target(),
                            "replica unavailable; read retried on the primary"
                        );
                    }
                    Err(e) if e.is_recovery_conflict() => {
                        tracing::debug!(
                            replica = %replica.target(),
                            "read cancelled by a recovery conflict on the replica; retried on \
                             the primary"
                        );
                    }
                    other => {
                        replica.count_read();
                        return other;
                    }
                }
            }
            if let RouteKind::Db { backend, .. } = self.kind {
                backend.primary_reads.fetch_add(1, Ordering::Relaxed);
            }
            run(self.primary(), self.settings(), op, &mut f).await
        })
        .await
    }

    /// Runs a write on the primary (or the caller's connection or
    /// transaction). Through a [`Session`], the write's position in the
    /// primary's WAL is recorded so that later reads wait for replicas to
    /// replay it.
    pub(crate) async fn write<T, F, Fut>(&self, op: Op, f: F) -> Result<T>
    where
        F: FnOnce(Conn<'a>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.bounded(async {
            let out = self.run_on_primary(op, f).await?;
            self.after_write().await?;
            Ok(out)
        })
        .await
    }

    /// Runs a read that must see the primary itself (server checks).
    pub(crate) async fn primary_read<T, F, Fut>(&self, op: Op, f: F) -> Result<T>
    where
        F: FnOnce(Conn<'a>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.bounded(self.run_on_primary(op, f)).await
    }

    async fn run_on_primary<T, F, Fut>(&self, op: Op, f: F) -> Result<T>
    where
        F: FnOnce(Conn<'a>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut f = Some(f);
        run(self.primary(), self.settings(), op, &mut |c| {
            (f.take().expect("runs once"))(c)
        })
        .await
    }

    /// The pool for work that needs a raw connection (binary `COPY`):
    /// the primary's. `None` inside a caller's transaction.
    pub(crate) fn primary_pool(&self) -> Option<&'a DatabaseConnection> {
        match self.kind {
            RouteKind::Db { backend, .. } => Some(&backend.primary),
            RouteKind::Transaction { .. } => None,
        }
    }

    /// A sqlx transaction on the primary pool with this store's settings
    /// applied: for `COPY` and other statements SeaORM cannot send.
    /// `what` names the caller in the error for a caller's transaction.
    ///
    /// # Errors
    /// [`Error::Config`] inside a caller's transaction (`COPY` needs a
    /// connection of its own); connection failures.
    pub(crate) async fn begin_sqlx(
        &self,
        what: &str,
    ) -> Result<sea_orm::sqlx::Transaction<'static, sea_orm::sqlx::Postgres>> {
        use sea_orm::{RuntimeErr, sqlx};
        let pool = self.primary_pool().ok_or_else(|| {
            Error::Config(format!(
                "{what} uses a transaction of its own on the pool (binary COPY), so it cannot \
                 run inside a caller's transaction: pass the Db"
            ))
        })?;
        let sqlx_err = |e: sqlx::Error| match e {
            // As SeaORM classifies a failure to get a connection.
            sqlx::Error::PoolTimedOut => {
                Error::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout))
            }
            e => Error::from(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e)))),
        };
        let mut tx = pool
            .get_postgres_connection_pool()
            .begin()
            .await
            .map_err(sqlx_err)?;
        let (values, computed) = self.settings().for_op(Op::Transaction);
        if let Some((sql, params)) = crate::settings::apply_sql(&values, computed.as_deref()) {
            // The library's own statement: `set_config` calls with bound values.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in params {
                query = query.bind(p);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::from(DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))))?;
        }
        Ok(tx)
    }

    /// Bounds `fut` by the call timeout and gives connection-level failures
    /// this store's target.
    pub(crate) async fn bounded<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = self.settings().call_timeout;
        self.bounded_by(limit, "DbConfig::call_timeout", fut).await
    }

    /// [`Route::bounded`] for the chunk-replacing calls, whose work grows
    /// with the number of chunks: bounded by the bulk timeout instead.
    pub(crate) async fn bounded_bulk<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = self.settings().bulk_call_timeout;
        self.bounded_by(limit, "DbConfig::bulk_call_timeout", fut)
            .await
    }

    async fn bounded_by<T>(
        &self,
        limit: Option<std::time::Duration>,
        setting: &str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let out = match limit {
            Some(limit) => match tokio::time::timeout(limit, fut).await {
                Ok(out) => out,
                Err(_) => Err(Error::Unavailable {
                    target: String::new(),
                    reason: format!(
                        "no answer within {limit:?} ({setting}): the server may be \
                         overloaded, frozen or unreachable; the call was abandoned"
                    ),
                    source: DbErr::Custom("call timeout elapsed".into()),
                }),
            },
            None => fut.await,
        };
        out.map_err(|e| e.with_target(&self.target()))
    }

    /// Records the primary's WAL position after a write through a session.
    pub(crate) async fn after_write(&self) -> Result<()> {
        if let RouteKind::Db {
            backend,
            session: Some(session),
            ..
        } = self.kind
            && !backend.replicas.all().is_empty()
        {
            // Without replicas every read sees every write.
            let lsn = backend.primary_lsn().await?;
            session.fetch_max(lsn.0, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// The connection a call starts from.
enum Base<'a> {
    Pool(Cow<'a, DatabaseConnection>),
    Transaction(&'a DatabaseTransaction),
}

/// Runs `f` on `base` with the settings `op` needs. On a pool: directly
/// when there are none and `op` needs no transaction of its own, else in a
/// transaction that starts by applying them. In a caller's transaction
/// (begun through the handle, so its settings are in effect): directly, or
/// in a savepoint when `op` must commit as a unit.
async fn run<'a, T, F, Fut>(base: Base<'a>, settings: &Settings, op: Op, f: &mut F) -> Result<T>
where
    F: FnMut(Conn<'a>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let txn = match base {
        Base::Pool(c) => {
            let (values, computed) = settings.for_op(op);
            if values.is_empty() && computed.is_none() && op == Op::Plain {
                return f(Conn::Pool(c)).await;
            }
            let txn = c.begin().await?;
            crate::settings::apply(&txn, settings, op).await?;
            txn
        }
        Base::Transaction(t) if op != Op::Transaction => return f(Conn::Transaction(t)).await,
        Base::Transaction(t) => t.begin().await?,
    };
    let txn = Arc::new(txn);
    let out = f(Conn::Owned(txn.clone())).await;
    let txn = Arc::into_inner(txn).expect("the call's connection handle is dropped when it ends");
    match out {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(e) => {
            // The error is what matters; a failed rollback closes the
            // connection anyway.
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

/// The connection a data function's closure gets: the pool, the caller's
/// transaction, or the call's own transaction. Owned, so that closures need
/// no higher-ranked lifetimes and their futures stay `Send`.
pub(crate) enum Conn<'a> {
    Pool(Cow<'a, DatabaseConnection>),
    Transaction(&'a DatabaseTransaction),
    Owned(Arc<DatabaseTransaction>),
}

#[async_trait::async_trait]
impl ConnectionTrait for Conn<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Conn::Pool(c) => c.execute_raw(stmt).await,
            Conn::Transaction(t) => t.execute_raw(stmt).await,
            Conn::Owned(t) => t.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Conn::Pool(c) => c.execute_unprepared(sql).await,
            Conn::Transaction(t) => t.execute_unprepared(sql).await,
            Conn::Owned(t) => t.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Conn::Pool(c) => c.query_one_raw(stmt).await,
            Conn::Transaction(t) => t.query_one_raw(stmt).await,
            Conn::Owned(t) => t.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Conn::Pool(c) => c.query_all_raw(stmt).await,
            Conn::Transaction(t) => t.query_all_raw(stmt).await,
            Conn::Owned(t) => t.query_all_raw(stmt).await,
        }
    }
}
