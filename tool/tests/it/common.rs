//! Helpers shared by every migration test: the list of migrations, the
//! binary, and catalog queries.

use std::process::{Command, Output};

use sea_orm::{ConnectionTrait, DbBackend, Statement};

pub use test_db::schema_dump;

/// Every migration, in order, as the `Migrator` lists them (generated from
/// the code, so the tests and the migrator cannot disagree).
pub static ALL: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    migration::migration_names()
        .into_iter()
        .map(|name| &*name.leak())
        .collect()
});

/// The migration binary, with the environment variables that change its
/// behaviour removed, so the tests do not depend on the caller's shell.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migration"));
    for var in [
        "DATABASE_URL",
        "MIGRATION_DATABASE_URL",
        "DATABASE_SCHEMA",
        "MIGRATION_LOCK_TIMEOUT",
        "MOCKINTERVIEW_ALLOW_DATA_LOSS",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs the binary against `url` (as DATABASE_URL) with `args`.
pub fn run(url: &str, args: &[&str]) -> Output {
    run_with(url, args, &[])
}

/// [`run`] with extra environment variables.
pub fn run_with(url: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    bin()
        .args(args)
        .env("DATABASE_URL", url)
        .envs(envs.iter().copied())
        .output()
        .expect("run the migration binary")
}

/// Runs and asserts success; returns stdout and stderr together.
pub fn ok(url: &str, args: &[&str]) -> String {
    ok_with(url, args, &[])
}

/// [`ok`] with extra environment variables.
pub fn ok_with(url: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = run_with(url, args, envs);
    let text = text(&out);
    assert!(out.status.success(), "migration {args:?} failed:\n{text}");
    text
}

/// Runs and asserts failure (exit status 1); returns stdout and stderr.
pub fn fails(url: &str, args: &[&str]) -> String {
    fails_with(url, args, &[])
}

/// [`fails`] with extra environment variables.
pub fn fails_with(url: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = run_with(url, args, envs);
    let text = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "migration {args:?} should fail with exit 1:\n{text}"
    );
    text
}

/// stdout followed by stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// First column of every row, as text.
pub async fn strings<C: ConnectionTrait>(db: &C, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text column"))
        .collect()
}

/// Applied migrations, in order (empty without `seaql_migrations`).
pub async fn applied<C: ConnectionTrait>(db: &C) -> Vec<String> {
    if strings(
        db,
        "SELECT coalesce(to_regclass('seaql_migrations')::text, '')",
    )
    .await[0]
        .is_empty()
    {
        return Vec::new();
    }
    strings(db, "SELECT version FROM seaql_migrations ORDER BY version").await
}

/// Tables of the current schema, sorted, without sea-orm's bookkeeping
/// table.
pub async fn tables<C: ConnectionTrait>(db: &C) -> Vec<String> {
    strings(
        db,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename <> 'seaql_migrations' ORDER BY 1",
    )
    .await
}

/// `name type [not null]` of every column of `table`, in column order.
pub async fn columns<C: ConnectionTrait>(db: &C, table: &str) -> Vec<String> {
    strings(
        db,
        &format!(
            "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
                    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END \
             FROM pg_attribute a WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 \
               AND NOT a.attisdropped ORDER BY a.attnum"
        ),
    )
    .await
}

/// Index names of the current schema, sorted.
pub async fn indexes<C: ConnectionTrait>(db: &C) -> Vec<String> {
    strings(
        db,
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
           AND tablename <> 'seaql_migrations' ORDER BY 1",
    )
    .await
}

/// `pg_get_indexdef` of the index `name` in the current schema.
pub async fn index_definition<C: ConnectionTrait>(db: &C, name: &str) -> String {
    let found = strings(
        db,
        &format!(
            "SELECT indexdef::text FROM pg_indexes WHERE schemaname = current_schema() \
               AND indexname = '{name}'"
        ),
    )
    .await;
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no index {name}"))
}

/// Functions of the current schema (not those of extensions), sorted.
pub async fn functions<C: ConnectionTrait>(db: &C) -> Vec<String> {
    strings(
        db,
        "SELECT p.proname::text FROM pg_proc p \
         WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') \
         ORDER BY 1",
    )
    .await
}

/// Whether the `vector` extension is installed in the database.
pub async fn has_vector_extension<C: ConnectionTrait>(db: &C) -> bool {
    count(
        db,
        "SELECT count(*) FROM pg_extension WHERE extname = 'vector'",
    )
    .await
        == 1
}

/// Asserts two schema dumps are equal, showing the first differing lines.
pub fn assert_same_schema(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    let (a, e): (Vec<_>, Vec<_>) = (actual.lines().collect(), expected.lines().collect());
    let first = a
        .iter()
        .zip(&e)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(e.len()));
    let show = |v: &[&str]| {
        v.iter()
            .skip(first.saturating_sub(3))
            .take(12)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{what}: schemas differ from line {first}\n--- actual ---\n{}\n--- expected ---\n{}",
        show(&a),
        show(&e)
    );
}

/// `SELECT count(*)` as a number.
pub async fn count<C: ConnectionTrait>(db: &C, sql: &str) -> i64 {
    strings(db, &format!("SELECT ({sql})::text")).await[0]
        .parse()
        .expect("a count")
}

// ------------------------------------------------ test infrastructure --

/// A port of the local test infrastructure: the scripts' default, or the
/// environment variable the script also reads.
fn port(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fails the test (never skips it) when nothing listens on `port`, saying
/// which script starts it.
fn require(port: u16, what: &str, script: &str) {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(e) =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2))
    {
        panic!(
            "{what} is not reachable on 127.0.0.1:{port} ({e}): run `{script}` (scripts/test \
             does), or set the port's environment variable if it runs elsewhere"
        );
    }
}

/// `url` through the PgBouncer >= 1.21 transaction-mode instance (6432).
pub fn through_tx_pooler(url: &pgconn::DbUrl) -> pgconn::DbUrl {
    let p = port("MOCKINTERVIEW_POOLER_TX_PORT", 6432);
    require(
        p,
        "PgBouncer (transaction mode, max_prepared_statements)",
        "scripts/pooler-up --with-legacy",
    );
    url.with_port(p)
}

/// `url` through the PgBouncer session-mode instance (6433).
pub fn through_session_pooler(url: &pgconn::DbUrl) -> pgconn::DbUrl {
    let p = port("MOCKINTERVIEW_POOLER_SESSION_PORT", 6433);
    require(
        p,
        "PgBouncer (session mode)",
        "scripts/pooler-up --with-legacy",
    );
    url.with_port(p)
}

/// `url` through Debian's PgBouncer 1.18 in transaction mode (6434): no
/// prepared-statement support.
pub fn through_legacy_pooler(url: &pgconn::DbUrl) -> pgconn::DbUrl {
    let p = port("MOCKINTERVIEW_POOLER_LEGACY_PORT", 6434);
    require(
        p,
        "PgBouncer 1.18 (transaction mode)",
        "scripts/pooler-up --with-legacy",
    );
    url.with_port(p)
}

/// `url` on the streaming hot standby (5433).
pub fn on_standby(url: &pgconn::DbUrl) -> pgconn::DbUrl {
    let p = port("MOCKINTERVIEW_REPLICA_PORT", 5433);
    require(p, "the hot standby", "scripts/replica-up");
    url.with_port(p)
}

/// The TLS-only cluster of `scripts/secure-cluster-up` (5441): the URL of
/// its database (DATABASE_URL's role, password and database name, no
/// query), and the directory holding `ca.pem` and `other-ca.pem`.
pub fn secure_cluster() -> (String, std::path::PathBuf) {
    let p = port("MOCKINTERVIEW_SECURE_PORT", 5441);
    require(p, "the TLS-only cluster", "scripts/secure-cluster-up");
    let dir = std::path::PathBuf::from(
        std::env::var("MOCKINTERVIEW_SECURE_DIR")
            .unwrap_or_else(|_| "/var/lib/postgresql/mockinterview-secure".into()),
    );
    assert!(
        dir.join("ca.pem").is_file() && dir.join("other-ca.pem").is_file(),
        "{} lacks ca.pem / other-ca.pem: run `scripts/secure-cluster-up`",
        dir.display()
    );
    let base = pgconn::DbUrl::from_env()
        .expect("DATABASE_URL")
        .with_port(p);
    let raw = base.as_str();
    let raw = raw.split('?').next().unwrap_or(raw).to_owned();
    (raw, dir)
}

/// Waits until `sql` (a count) returns at least 1 on `url`: for changes to
/// replicate to the standby.
pub async fn wait_for(url: &str, sql: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(conn) = sea_orm::Database::connect(url).await {
            let n = conn
                .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .ok()
                .flatten()
                .and_then(|r| r.try_get_by_index::<i64>(0).ok())
                .unwrap_or(0);
            conn.close().await.ok();
            if n > 0 {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{sql}` never became true on {url}: is the standby streaming? (scripts/replica-up)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Holds the migration lock in a transaction on `db` (as a migrator in the
/// middle of its run would), so that migrators started meanwhile all queue
/// and then race for it at the same moment when it is committed.
pub async fn hold_migration_lock(db: &sea_orm::DatabaseConnection) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({})",
        migration::lock::MIGRATION_LOCK_KEY
    ))
    .await
    .unwrap();
    txn
}

/// Waits until `n` sessions wait for an advisory lock in `db`'s database.
pub async fn wait_for_lock_waiters(db: &sea_orm::DatabaseConnection, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(
        db,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
        < n
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} migrators never queued on the migration lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
