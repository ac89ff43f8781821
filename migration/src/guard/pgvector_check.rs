//! Installing a PostgreSQL extension with errors that say what to do.
//!
//! `CREATE EXTENSION vector` fails with terse server errors when the pgvector
//! files are not installed on the server or the role may not create the
//! extension. [`create_extension`] checks first and turns both cases into
//! messages naming the fix (the specification's troubleshooting section).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement, TransactionSession, TransactionTrait};

/// Advice printed when pgvector is not installed on the server.
pub const PGVECTOR_INSTALL_HINT: &str = "install pgvector on the PostgreSQL server: \
on Debian/Ubuntu with PGDG or Ubuntu packages `apt-get install postgresql-<major>-pgvector`, \
elsewhere build it from source (`make && make install`), or run the `pgvector/pgvector:pg16` \
Docker image (on a managed server, enable its pgvector extension); then run the migration again";

/// Fails with the actionable error of [`create_extension`] when
/// `extension` is missing and cannot be created here, without changing
/// anything: it creates the extension inside a transaction (a savepoint when
/// `db` is one) that is rolled back. This lets `up` stop before applying the
/// migrations that precede the one creating the extension, and it gives the
/// server's real answer (managed services let some non-superuser roles
/// create allow-listed extensions).
///
/// # Errors
/// As [`create_extension`].
pub async fn ensure_can_create<C>(db: &C, extension: &str) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let txn = db.begin().await?;
    let outcome = create_extension(&txn, extension).await;
    txn.rollback().await?;
    outcome.map(|_| ())
}

/// Creates `extension` if it is missing (`CREATE EXTENSION IF NOT EXISTS`).
///
/// Returns `true` when this call created it, `false` when it already existed.
///
/// # Errors
/// - [`DbErr::Migration`] naming the missing package when the extension's files
///   are not installed on the server (`pg_available_extensions` lacks it);
/// - [`DbErr::Migration`] naming the role and the fix when the role may not
///   create the extension (pgvector is not a trusted extension: it needs a
///   superuser, or must be created by one beforehand);
/// - any other database error unchanged.
pub async fn create_extension<C>(db: &C, extension: &str) -> Result<bool, DbErr>
where
    C: ConnectionTrait,
{
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT current_user::text AS role, \
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1) AS installed, \
                    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1) AS available",
            [extension.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("extension probe returned no row".into()))?;
    let role: String = row.try_get("", "role")?;
    let installed: bool = row.try_get("", "installed")?;
    let available: bool = row.try_get("", "available")?;
    if installed {
        return Ok(false);
    }
    if !available {
        return Err(missing_error(extension));
    }
    match db
        .execute_unprepared(&format!("CREATE EXTENSION IF NOT EXISTS \"{extension}\""))
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if is_permission_denied(&err) => {
            Err(permission_error(extension, &role, &err.to_string()))
        }
        Err(err) => Err(err),
    }
}

fn missing_error(extension: &str) -> DbErr {
    DbErr::Migration(format!(
        "extension \"{extension}\" is not available on this PostgreSQL server \
         (no {extension}.control in the server's extension directory): {PGVECTOR_INSTALL_HINT}"
    ))
}

fn permission_error(extension: &str, role: &str, server_said: &str) -> DbErr {
    DbErr::Migration(format!(
        "permission denied to create extension \"{extension}\" as role \"{role}\": \
         it is not a trusted extension, so a superuser must create it. Either connect \
         once as a superuser and run `CREATE EXTENSION IF NOT EXISTS {extension};` in this \
         database (the migration then skips the step), or run the migrations as a \
         superuser. Server said: {server_said}"
    ))
}

/// True when `err` is PostgreSQL's `insufficient_privilege` (SQLSTATE 42501).
fn is_permission_denied(err: &DbErr) -> bool {
    pgconn::sqlstate(err).as_deref() == Some("42501")
}
