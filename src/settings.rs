//! The server settings every call runs with, and the one place that
//! applies them.
//!
//! A [`crate::DbConfig`] names a schema (`search_path`), a
//! `statement_timeout`, `hnsw.ef_search` and, from the URL's
//! `options=-c name=value`, any other setting. None of them is sent as a
//! startup parameter or kept as connection state, which a transaction-mode
//! pooler would drop or leak to other clients. Each is either
//!
//! - **held by the role**: the server already gives every new connection that
//!   value (`ALTER ROLE ... IN DATABASE ... SET`, which survives any
//!   pooler); [`DbConfig::connect`](crate::DbConfig::connect) checks this
//!   once and then sends nothing for it; or
//! - **applied per transaction**: `SELECT set_config(name, value, true)`
//!   right after `BEGIN`, in every transaction the handle opens, so that it
//!   holds through any pooler and ends with the transaction.
//!
//! `hnsw.iterative_scan` (pgvector 0.8+) and, unless fixed,
//! `hnsw.ef_search` are the library's own search policy
//! ([`crate::tuning`]): the latter is computed by the server from the
//! table's size in the same statement that sets it.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::error::Result;

/// What kind of call runs: which settings it needs, and whether it needs
/// a transaction of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// One or more statements; a transaction only if settings need one.
    Plain,
    /// Statements that must commit together: always a transaction.
    Transaction,
    /// A search of the top `k` through the HNSW index: the `hnsw.*`
    /// settings too.
    HnswSearch {
        /// Results asked for.
        k: u32,
    },
}

/// `k` of the `hnsw.*` settings applied to transactions and statements the
/// application runs itself through the handle: those of a top-10 search.
pub(crate) const HANDLE_K: u32 = 10;

/// The settings of one handle: what is applied per transaction (what the
/// role does not hold already) and the client-side call bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Settings that act on every statement (URL options, `search_path`,
    /// `statement_timeout`), in the order they are applied.
    pub statement: Vec<(String, String)>,
    /// Fixed `hnsw.*` settings (`hnsw.ef_search` when fixed,
    /// `hnsw.iterative_scan`).
    pub hnsw: Vec<(String, String)>,
    /// Whether `hnsw.ef_search` is computed from the table's size.
    pub ef_auto: bool,
    /// Client-side bound of every call.
    pub call_timeout: Option<std::time::Duration>,
    /// Client-side bound of the chunk-writing calls.
    pub bulk_call_timeout: Option<std::time::Duration>,
}

impl Settings {
    /// Every setting the configuration asks for, in application order, on
    /// a server whose `vector` extension lives in `vector_schema` at
    /// `pgvector_version` (both `None` without the extension).
    pub(crate) fn new(
        config: &crate::DbConfig,
        url_settings: Vec<(String, String)>,
        vector_schema: Option<&str>,
        pgvector_version: Option<&str>,
    ) -> Self {
        let search_path = config
            .schema
            .as_deref()
            .map(|s| search_path(s, vector_schema));
        // `hnsw.iterative_scan` exists from pgvector 0.8 on.
        let iterative_scan =
            pgvector_version.is_none_or(|v| parse_version(v).is_some_and(|v| v >= (0, 8, 0)));
        let mut statement: Vec<(String, String)> = url_settings
            .into_iter()
            .filter(|(name, _)| {
                !(name == "search_path" && search_path.is_some()
                    || name == "statement_timeout" && config.statement_timeout.is_some())
            })
            .collect();
        if let Some(path) = search_path {
            statement.push(("search_path".into(), path));
        }
        if let Some(t) = config.statement_timeout {
            statement.push(("statement_timeout".into(), format!("{}ms", t.as_millis())));
        }
        let mut hnsw = Vec::new();
        if let Some(ef) = config.hnsw_ef_search {
            hnsw.push(("hnsw.ef_search".into(), ef.to_string()));
        }
        if iterative_scan {
            hnsw.push(("hnsw.iterative_scan".into(), "strict_order".into()));
        }
        Self {
            statement,
            hnsw,
            ef_auto: config.hnsw_ef_search.is_none(),
            call_timeout: config.call_timeout,
            bulk_call_timeout: config.bulk_call_timeout,
        }
    }

    /// Drops the settings the server already gives every new connection of
    /// this role (`ALTER ROLE ... SET`, `ALTER DATABASE ... SET`,
    /// `postgresql.conf`): `conn` is a fresh pooled connection. Each value
    /// is compared in the server's own form (`set_config` returns it), in a
    /// transaction that is rolled back. Returns the names of those held.
    pub(crate) async fn drop_held(
        &mut self,
        conn: &sea_orm::DatabaseConnection,
    ) -> Result<Vec<String>> {
        use sea_orm::TransactionTrait as _;
        let all: Vec<(String, String)> = self.statement.iter().chain(&self.hnsw).cloned().collect();
        if all.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, params) = compare_sql(&all);
        let txn = conn.begin().await?;
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                params.into_iter().map(Value::from),
            ))
            .await;
        txn.rollback().await?;
        let row =
            row?.ok_or_else(|| crate::Error::Config("the settings check returned no row".into()))?;
        let mut held = Vec::new();
        for (i, (name, _)) in all.iter().enumerate() {
            let before: Option<String> = row.try_get_by_index(2 * i)?;
            let after: Option<String> = row.try_get_by_index(2 * i + 1)?;
            if before.is_some() && before == after {
                held.push(name.clone());
            }
        }
        self.statement.retain(|(n, _)| !held.contains(n));
        self.hnsw.retain(|(n, _)| !held.contains(n));
        Ok(held)
    }

    /// Names of the settings applied per transaction (those the role does
    /// not hold, and an automatic `hnsw.ef_search`, which the server
    /// computes in each transaction), in order.
    pub(crate) fn per_transaction(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .statement
            .iter()
            .chain(&self.hnsw)
            .map(|(name, _)| name.clone())
            .collect();
        if self.ef_auto {
            names.push("hnsw.ef_search (from the table's size)".to_owned());
        }
        names
    }

    /// Whether anything is applied per transaction (what
    /// [`Settings::per_transaction`] lists, without building the list).
    pub(crate) fn any_per_transaction(&self) -> bool {
        !self.statement.is_empty() || !self.hnsw.is_empty() || self.ef_auto
    }

    /// Whether statements need settings before they run (so a search
    /// cannot set its `hnsw.*` settings inside its own statement).
    pub(crate) fn has_statement_settings(&self) -> bool {
        !self.statement.is_empty()
    }

    /// `(name, value)` of every setting `op` needs and the computed
    /// `set_config(...)` expression of an automatic `hnsw.ef_search`, if
    /// any.
    pub(crate) fn for_op(&self, op: Op) -> (Vec<(String, String)>, Option<String>) {
        let mut values = self.statement.clone();
        let mut computed = None;
        if let Op::HnswSearch { k } = op {
            values.extend(self.hnsw.iter().cloned());
            if self.ef_auto {
                computed = Some(format!(
                    "set_config('hnsw.ef_search', {}, true)",
                    crate::tuning::ef_search_sql(k)
                ));
            }
        }
        (values, computed)
    }

    /// The condition a whole-table search of the top `k` adds to its
    /// `WHERE` to set its own `hnsw.*` settings: `(SELECT set_config(...,
    /// true) || ...) IS NOT NULL` has no column, so PostgreSQL evaluates it
    /// once (a one-time filter) before the index scan starts, which is when
    /// pgvector reads them. One round trip instead of four (`BEGIN`, the
    /// settings, the search, `COMMIT`), through any pooler. Only for calls
    /// whose statement settings are already in effect (none, held by the
    /// role, or applied at the start of the caller's transaction):
    /// `search_path` and `statement_timeout` act before a statement runs.
    pub(crate) fn search_guard(&self, k: u32) -> String {
        // Names and values are the library's own (digits, `strict_order`);
        // `ef_search` is always there, fixed or computed.
        let (_, computed) = self.for_op(Op::HnswSearch { k });
        let items: Vec<String> = self
            .hnsw
            .iter()
            .map(|(name, value)| format!("set_config('{name}', '{value}', true)"))
            .chain(computed)
            .collect();
        if items.is_empty() {
            return "true".to_owned();
        }
        format!("(SELECT {}) IS NOT NULL", items.join(" || "))
    }
}

/// The settings a handle configured by `config` applies (the URL's
/// `options` aside), as `(name, value)` in the form the server is given:
/// what `migration settings` makes role settings (`ALTER ROLE ... IN
/// DATABASE ... SET name = 'value'`), after which such a handle sends none
/// of them. `vector_schema` and `pgvector_version` describe the server's
/// `vector` extension (`None` without it), as
/// [`crate::health::readiness`] reports them.
pub fn role_settings(
    config: &crate::DbConfig,
    vector_schema: Option<&str>,
    pgvector_version: Option<&str>,
) -> Vec<(String, String)> {
    let s = Settings::new(config, Vec::new(), vector_schema, pgvector_version);
    s.statement.into_iter().chain(s.hnsw).collect()
}

/// The `search_path` value for a schema list: the list quoted as the
/// migration tool quotes it, then the `vector` extension's schema when the
/// list does not name it.
pub(crate) fn search_path(schema: &str, vector_schema: Option<&str>) -> String {
    let path = pgconn::quote_search_path(schema);
    match vector_schema {
        Some(v) => {
            let quoted = pgconn::quote_search_path(v);
            if path.split(", ").any(|p| p == quoted) {
                path
            } else {
                format!("{path}, {quoted}")
            }
        }
        None => path,
    }
}

/// A pgvector version (`pg_extension.extversion`, e.g. `0.8.0`) as
/// `(major, minor, patch)`, a missing part 0; `None` for anything else.
pub(crate) fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// `SELECT set_config($1, $2, true), ..., computed` and its parameters: the
/// one statement that applies settings, on a SeaORM connection
/// ([`apply`]) or a raw sqlx connection (the `COPY` path). `computed`
/// comes last so that it sees the `search_path` set before it (a select
/// list is evaluated in order). `None` when there is nothing to apply.
pub(crate) fn apply_sql(
    values: &[(String, String)],
    computed: Option<&str>,
) -> Option<(String, Vec<String>)> {
    if values.is_empty() && computed.is_none() {
        return None;
    }
    let mut items = Vec::with_capacity(values.len() + 1);
    let mut params = Vec::with_capacity(values.len() * 2);
    for (name, value) in values {
        params.push(name.clone());
        params.push(value.clone());
        items.push(format!(
            "set_config(${}, ${}, true)",
            params.len() - 1,
            params.len()
        ));
    }
    items.extend(computed.map(str::to_owned));
    Some((format!("SELECT {}", items.join(", ")), params))
}

/// Applies `op`'s settings on `conn`, which must be inside a transaction.
pub(crate) async fn apply<C: ConnectionTrait>(conn: &C, settings: &Settings, op: Op) -> Result<()> {
    let (values, computed) = settings.for_op(op);
    if let Some((sql, params)) = apply_sql(&values, computed.as_deref()) {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            params.into_iter().map(Value::from),
        ))
        .await?;
    }
    Ok(())
}

/// `SELECT current_setting($1, true), set_config($1, $2, true), ...`: each
/// setting's value before and after setting it.
fn compare_sql(values: &[(String, String)]) -> (String, Vec<String>) {
    let mut items = Vec::with_capacity(values.len() * 2);
    let mut params = Vec::with_capacity(values.len() * 2);
    for (name, value) in values {
        params.push(name.clone());
        params.push(value.clone());
        let (n, v) = (params.len() - 1, params.len());
        items.push(format!("current_setting(${n}, true)"));
        items.push(format!("set_config(${n}, ${v}, true)"));
    }
    (format!("SELECT {}", items.join(", ")), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_quotes_the_list_and_adds_the_extension_schema() {
        assert_eq!(search_path("app", Some("public")), r#""app", "public""#);
        assert_eq!(
            search_path("app,public", Some("public")),
            r#""app", "public""#
        );
        assert_eq!(search_path("app", Some("app")), r#""app""#);
        assert_eq!(search_path(r#"we"ird"#, None), r#""we""ird""#);
    }

    #[test]
    fn pgvector_versions_parse_and_compare() {
        assert!(parse_version("0.8.0") >= Some((0, 8, 0)));
        assert!(parse_version("0.10.1") >= Some((0, 8, 0)));
        assert!(parse_version("0.7.4") < Some((0, 8, 0)));
        assert_eq!(parse_version("0.9"), Some((0, 9, 0)));
        assert_eq!(parse_version("0.8.0beta"), None);
    }

    /// `drop_held` keeps what the role does not hold and drops what it
    /// does, comparing values in the server's own form (`4321ms` set as
    /// `4321ms`, `strict_order`).
    #[tokio::test]
    async fn settings_the_role_holds_are_dropped() {
        let db = test_db::TestDatabase::new().await;
        let mut config = crate::DbConfig::new(db.url());
        config.statement_timeout = Some(std::time::Duration::from_millis(4321));
        config.hnsw_ef_search = Some(1);
        let fresh = || Settings::new(&config, Vec::new(), None, None);
        let pool = || async { sea_orm::Database::connect(db.url()).await.unwrap() };

        let mut s = fresh();
        assert!(s.drop_held(&pool().await).await.unwrap().is_empty());
        assert_eq!((s.statement.len(), s.hnsw.len()), (1, 2));

        let name = db.name();
        db.conn()
            .execute_unprepared(&format!(
                "ALTER ROLE CURRENT_USER IN DATABASE \"{name}\" SET statement_timeout = '4321ms'; \
                 ALTER ROLE CURRENT_USER IN DATABASE \"{name}\" SET hnsw.ef_search = 1"
            ))
            .await
            .unwrap();
        let mut s = fresh();
        let held = s.drop_held(&pool().await).await.unwrap();
        assert_eq!(held, ["statement_timeout", "hnsw.ef_search"]);
        assert!(s.statement.is_empty());
        assert_eq!(
            s.hnsw,
            [("hnsw.iterative_scan".to_owned(), "strict_order".to_owned())]
        );
    }

    fn settings(statement: &[(&str, &str)], ef: Option<u32>) -> Settings {
        let own = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let mut hnsw: Vec<(String, String)> = Vec::new();
        if let Some(ef) = ef {
            hnsw.push(("hnsw.ef_search".into(), ef.to_string()));
        }
        hnsw.push(("hnsw.iterative_scan".into(), "strict_order".into()));
        Settings {
            statement: own(statement),
            hnsw,
            ef_auto: ef.is_none(),
            call_timeout: None,
            bulk_call_timeout: None,
        }
    }

    #[test]
    fn plain_calls_get_only_statement_settings() {
        let s = settings(&[("statement_timeout", "5000ms")], Some(40));
        let (values, computed) = s.for_op(Op::Plain);
        assert_eq!(
            values,
            vec![("statement_timeout".to_owned(), "5000ms".to_owned())]
        );
        assert!(computed.is_none());
        let (values, computed) = s.for_op(Op::HnswSearch { k: 10 });
        assert_eq!(values.len(), 3);
        assert!(computed.is_none());
    }

    #[test]
    fn automatic_ef_search_is_computed_last() {
        let s = settings(&[("search_path", "\"app\"")], None);
        let (values, computed) = s.for_op(Op::HnswSearch { k: 10 });
        let (sql, params) = apply_sql(&values, computed.as_deref()).unwrap();
        assert!(sql.ends_with("::int::text, true)"), "{sql}");
        assert!(sql.starts_with("SELECT set_config($1, $2, true), set_config($3, $4, true), "));
        assert_eq!(params[0], "search_path");
    }

    #[test]
    fn any_per_transaction_agrees_with_the_list() {
        let mut none = settings(&[], Some(40));
        none.hnsw.clear();
        for s in [
            settings(&[], None),
            settings(&[("statement_timeout", "1s")], Some(40)),
            none,
        ] {
            assert_eq!(
                s.any_per_transaction(),
                !s.per_transaction().is_empty(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn nothing_to_apply_sends_nothing() {
        assert!(apply_sql(&[], None).is_none());
        let mut s = settings(&[], Some(40));
        s.hnsw.clear();
        assert_eq!(s.search_guard(10), "true");
    }

    #[test]
    fn the_search_guard_sets_hnsw_settings_in_the_statement() {
        let guard = settings(&[], Some(1)).search_guard(10);
        assert_eq!(
            guard,
            "(SELECT set_config('hnsw.ef_search', '1', true) || \
             set_config('hnsw.iterative_scan', 'strict_order', true)) IS NOT NULL"
        );
    }
}
