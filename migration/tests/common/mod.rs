//! Helpers shared by the migration binary's tests.

#![allow(dead_code)] // each test binary uses a different subset

use std::process::{Command, Output};

use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// The migration binary, with the environment variables that change its
/// behaviour removed, so the tests do not depend on the caller's shell.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migration"));
    for var in [
        "DATABASE_URL",
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

/// Project tables in the public schema, sorted.
pub async fn tables<C: ConnectionTrait>(db: &C) -> Vec<String> {
    strings(
        db,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' \
         AND tablename <> 'seaql_migrations' ORDER BY 1",
    )
    .await
}

/// `SELECT count(*)` as a number.
pub async fn count<C: ConnectionTrait>(db: &C, sql: &str) -> i64 {
    strings(db, &format!("SELECT ({sql})::text")).await[0]
        .parse()
        .expect("a count")
}

#[allow(unused_imports)] // not every test binary compares schemas
pub use mockinterview_db::testing::schema_dump;

/// `url` with user `user` and password `password`.
pub fn with_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host_part}")
}
