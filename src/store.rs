//! Where a library call runs: the [`Store`] trait and the routing,
//! settings, deadline and error mapping every data function goes through.
//!
//! Every data function takes `&impl Store`:
//! - a [`Db`] (from [`crate::DbConfig::connect`]): reads may go to a replica,
//!   writes go to the primary, the configured settings apply;
//! - a [`Session`] (from [`Db::session`]): like `Db`, and reads see the
//!   session's own earlier writes;
//! - a [`Primary`](crate::Primary) (from [`Db::primary`]): everything on the primary, for
//!   one call;
//! - a plain [`DatabaseConnection`] or a caller's [`DatabaseTransaction`]:
//!   everything runs there, with the default settings.
//!
//! Settings that would otherwise be session state (`search_path` for a
//! configured schema, `statement_timeout`, `hnsw.ef_search`,
//! `hnsw.iterative_scan`) are applied with `set_config(..., true)` inside the
//! call's own transaction, never as startup parameters or session `SET`s, so
//! they hold through a transaction-mode pooler such as PgBouncer.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, TransactionTrait, Value,
};

use crate::db::{Db, Session};
use crate::error::{Error, Result};

mod sealed {
    pub trait Sealed {}
    impl Sealed for sea_orm::DatabaseConnection {}
    impl Sealed for sea_orm::DatabaseTransaction {}
    impl Sealed for crate::db::Db {}
    impl Sealed for crate::db::Session {}
    impl Sealed for crate::db::Primary<'_> {}
    impl<T: Sealed + ?Sized> Sealed for &T {}
}

/// Something the library's data functions can run on: [`Db`], [`Session`],
/// [`Primary`](crate::Primary), a [`DatabaseConnection`] or a [`DatabaseTransaction`].
///
/// Sealed: the routing lives in this crate.
pub trait Store: sealed::Sealed + Sync {
    /// Where this store sends reads and writes (an implementation detail of
    /// the data functions).
    #[doc(hidden)]
    fn route(&self) -> Route<'_>;
}

impl Store for DatabaseConnection {
    fn route(&self) -> Route<'_> {
        Route {
            kind: RouteKind::Pool(self),
        }
    }
}

impl Store for DatabaseTransaction {
    fn route(&self) -> Route<'_> {
        Route {
            kind: RouteKind::Transaction(self),
        }
    }
}

impl<T: Store + ?Sized> Store for &T {
    fn route(&self) -> Route<'_> {
        (**self).route()
    }
}

/// The settings a data function runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `search_path` to set, when a schema is configured.
    pub search_path: Option<String>,
    /// `statement_timeout` in milliseconds, when configured.
    pub statement_timeout_ms: Option<u128>,
    /// `hnsw.ef_search` of whole-table searches.
    pub ef_search: EfSearch,
    /// Whether to set `hnsw.iterative_scan = strict_order` (pgvector 0.8+).
    pub iterative_scan: bool,
    /// Client-side bound of every call.
    pub call_timeout: Option<std::time::Duration>,
    /// Client-side bound of the chunk-replacing calls.
    pub bulk_call_timeout: Option<std::time::Duration>,
    /// Other settings, from the URL's `options` (`-c name=value`).
    pub extra: Vec<(String, String)>,
}

/// How whole-table searches get `hnsw.ef_search`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EfSearch {
    /// From the table's size ([`crate::tuning::ef_search_for`]), computed
    /// by the server in the call's `set_config` statement
    /// ([`crate::tuning::ef_search_sql`]): no extra round trip.
    Auto,
    /// This value, set with the other settings.
    Fixed(u32),
}

impl Settings {
    /// The SQL expression that sets `hnsw.ef_search` from the table's size,
    /// for a whole-table search with the `Auto` policy.
    pub(crate) fn auto_ef_search_sql(&self, op: Op) -> Option<String> {
        match (op, self.ef_search) {
            (Op::HnswSearch { k }, EfSearch::Auto) => Some(format!(
                "set_config('hnsw.ef_search', {}, true)",
                crate::tuning::ef_search_sql(k)
            )),
            _ => None,
        }
    }

    /// How a whole-table search of the top `k` applies its `hnsw.*`
    /// settings: the [`Op`] to run it with, and the condition to add to its
    /// statement.
    ///
    /// When the call needs no other setting, the statement sets them itself:
    /// `(SELECT set_config(..., true) || ...) IS NOT NULL` in its `WHERE`
    /// has no column, so PostgreSQL evaluates it once (a one-time filter)
    /// before it starts the index scan, whose `hnsw.*` settings pgvector
    /// reads when the scan begins; `true` makes them local to the
    /// statement's own implicit transaction. One round trip instead of four
    /// (`BEGIN`, the settings, the search, `COMMIT`), also through a
    /// transaction-mode pooler. `search_path`, `statement_timeout` and URL
    /// options act before the statement runs (parsing, the timer), so with
    /// any of them the search runs as [`Op::HnswSearch`], in a transaction
    /// after a settings statement, and the condition is `None`.
    pub(crate) fn hnsw_search(&self, k: u32) -> (Op, Option<String>) {
        let op = Op::HnswSearch { k };
        if !self.for_op(Op::Plain).is_empty() {
            return (op, None);
        }
        // Names and values are the library's own (digits, `strict_order`);
        // `ef_search` is always there, fixed or computed.
        let items: Vec<String> = self
            .for_op(op)
            .iter()
            .map(|(name, value)| format!("set_config('{name}', '{value}', true)"))
            .chain(self.auto_ef_search_sql(op))
            .collect();
        (
            Op::Plain,
            Some(format!("(SELECT {}) IS NOT NULL", items.join(" || "))),
        )
    }

    /// What a plain connection or transaction gets: the library's defaults.
    pub(crate) fn defaults() -> &'static Settings {
        static DEFAULTS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
        DEFAULTS.get_or_init(|| Settings {
            search_path: None,
            statement_timeout_ms: None,
            ef_search: EfSearch::Auto,
            iterative_scan: true,
            call_timeout: Some(crate::config::DEFAULT_CALL_TIMEOUT),
            bulk_call_timeout: Some(crate::config::DEFAULT_BULK_CALL_TIMEOUT),
            extra: Vec::new(),
        })
    }

    /// `(name, value)` of every setting `op` needs, in order.
    pub(crate) fn for_op(&self, op: Op) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.extra.clone();
        if let Some(path) = &self.search_path {
            out.push(("search_path".into(), path.clone()));
        }
        if let Some(ms) = self.statement_timeout_ms {
            out.push(("statement_timeout".into(), ms.to_string()));
        }
        if let Op::HnswSearch { .. } = op {
            // `Auto` is computed by the server: `auto_ef_search_sql`.
            if let EfSearch::Fixed(ef) = self.ef_search {
                out.push(("hnsw.ef_search".into(), ef.to_string()));
            }
            if self.iterative_scan {
                out.push(("hnsw.iterative_scan".into(), "strict_order".to_owned()));
            }
        }
        out
    }
}

/// What kind of call runs, which decides the settings and whether it needs a
/// transaction of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// One or more statements; a transaction only if settings need one.
    Plain,
    /// Statements that must commit together: always a transaction.
    Transaction,
    /// A search of the top `k` through the HNSW index: `hnsw.*` settings,
    /// so always a transaction.
    HnswSearch {
        /// Results asked for.
        k: u32,
    },
}

/// Where a store sends a call; see [`Store`].
#[doc(hidden)]
pub struct Route<'a> {
    kind: RouteKind<'a>,
}

#[derive(Clone, Copy)]
enum RouteKind<'a> {
    Pool(&'a DatabaseConnection),
    Transaction(&'a DatabaseTransaction),
    Db {
        db: &'a Db,
        session: Option<&'a Session>,
        primary_only: bool,
    },
}

impl<'a> Route<'a> {
    pub(crate) fn db(db: &'a Db, session: Option<&'a Session>, primary_only: bool) -> Self {
        Self {
            kind: RouteKind::Db {
                db,
                session,
                primary_only,
            },
        }
    }

    /// The settings of this store.
    pub(crate) fn settings(&self) -> &'a Settings {
        match self.kind {
            RouteKind::Db { db, .. } => db.settings(),
            _ => Settings::defaults(),
        }
    }

    /// `host:port/database` for messages, when known.
    pub(crate) fn target(&self) -> String {
        match self.kind {
            RouteKind::Db { db, .. } => db.target().to_owned(),
            _ => "the database".to_owned(),
        }
    }

    /// The connection writes go to: the primary, or the caller's
    /// connection or transaction.
    fn primary(&self) -> Base<'a> {
        match self.kind {
            RouteKind::Pool(c) => Base::Pool(Cow::Borrowed(c)),
            RouteKind::Transaction(t) => Base::Transaction(t),
            RouteKind::Db { db, .. } => Base::Pool(Cow::Borrowed(db.primary_conn())),
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
                db,
                session,
                primary_only: false,
            } = self.kind
                && let Some(replica) = db.pick_replica(session.and_then(Session::token)).await
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
            if let RouteKind::Db { db, .. } = self.kind {
                db.count_primary_read();
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
            RouteKind::Pool(c) => Some(c),
            RouteKind::Transaction(_) => None,
            RouteKind::Db { db, .. } => Some(db.primary_conn()),
        }
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
            db,
            session: Some(session),
            ..
        } = self.kind
        {
            session.wrote(db).await?;
        }
        Ok(())
    }
}

/// The connection a call starts from.
enum Base<'a> {
    Pool(Cow<'a, DatabaseConnection>),
    Transaction(&'a DatabaseTransaction),
}

/// Runs `f` on `base` with the settings `op` needs: directly when there are
/// none and `op` needs no transaction, else in a transaction (a savepoint
/// inside a caller's transaction) that starts with one `set_config` call.
async fn run<'a, T, F, Fut>(base: Base<'a>, settings: &Settings, op: Op, f: &mut F) -> Result<T>
where
    F: FnMut(Conn<'a>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let values = settings.for_op(op);
    let computed = settings.auto_ef_search_sql(op);
    if values.is_empty() && computed.is_none() && op == Op::Plain {
        return f(match base {
            Base::Pool(c) => Conn::Pool(c),
            Base::Transaction(t) => Conn::Transaction(t),
        })
        .await;
    }
    let txn = match base {
        Base::Pool(c) => c.begin().await?,
        Base::Transaction(t) => t.begin().await?,
    };
    apply_settings(&txn, &values, computed.as_deref()).await?;
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

/// `SELECT set_config(name, value, true), ..., computed` in one round trip:
/// each setting holds until the end of the transaction. `computed` is a
/// further `set_config(...)` expression the server evaluates
/// ([`Settings::auto_ef_search_sql`]); it comes last, so that it sees the
/// `search_path` set before it (PostgreSQL evaluates a select list in
/// order).
pub(crate) async fn apply_settings<C: ConnectionTrait>(
    db: &C,
    values: &[(String, String)],
    computed: Option<&str>,
) -> Result<()> {
    if values.is_empty() && computed.is_none() {
        return Ok(());
    }
    let mut items: Vec<String> = Vec::with_capacity(values.len() + 1);
    let mut params: Vec<Value> = Vec::with_capacity(values.len() * 2);
    for (name, value) in values {
        params.push(name.clone().into());
        params.push(value.clone().into());
        items.push(format!(
            "set_config(${}, ${}, true)",
            params.len() - 1,
            params.len()
        ));
    }
    items.extend(computed.map(str::to_owned));
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("SELECT {}", items.join(", ")),
        params,
    ))
    .await?;
    Ok(())
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
