//! The schema migrations run in, and finding pgvector's types wherever the
//! extension lives.
//!
//! Everything here sets `search_path` for the current transaction only
//! (`set_config(..., true)`, i.e. `SET LOCAL`): a session-level setting (a
//! startup `options`, or a `SET` after connecting) is refused or lost by a
//! transaction-mode connection pooler, while a transaction keeps its server
//! session until it ends.
//!
//! pgvector may live in another schema than the one migrated (typically
//! `public`, created once by a superuser, while the application's tables go
//! to `app`). Its type `vector` and operator classes must then resolve
//! although that schema is not on the path: [`include_extension_schemas`]
//! appends the extension's schema, after the schema that receives new
//! objects. Every migration does this at its start (see
//! [`crate::Migrator`]), so `vector(768)` resolves whoever runs it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use pgconn::{quote_search_path, split_schemas};

use crate::schema::expected;

/// Sets `search_path` to `schema` (see [`quote_search_path`]) for the
/// current transaction, and fails when none of its schemas exists (there
/// would be nowhere to create tables, and every check would read nothing).
///
/// # Errors
/// [`DbErr::Migration`] naming the schema and how to create it; database
/// errors.
pub async fn set_local_schema<C: ConnectionTrait>(db: &C, schema: &str) -> Result<(), DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('search_path', $1, true) AS path, \
                    current_schema()::text AS schema, current_user::text AS role",
            [quote_search_path(schema).into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("no row from set_config".into()))?;
    let current: Option<String> = row.try_get("", "schema")?;
    if current.is_none() {
        let role: String = row.try_get("", "role")?;
        return Err(DbErr::Migration(format!(
            "schema {schema:?} does not exist in this database (or role \"{role}\" may not use \
             it): create it first, e.g. `CREATE SCHEMA {first} AUTHORIZATION <owner role>` (the \
             SQL of `migration roles --owner <role> --app <role> -s {schema}` does), or fix the \
             schema setting (-s / DATABASE_SCHEMA / search_path in the URL)",
            first = split_schemas(schema)
                .first()
                .map_or_else(|| "\"\"".to_owned(), |s| quote_search_path(s))
        )));
    }
    Ok(())
}

/// Appends to the current transaction's `search_path` the schema of every
/// extension the migrations use (pgvector) that is installed in a schema
/// not on the path, so its types and operator classes resolve while new
/// objects still go to the first schema. Does nothing when the extension is
/// missing or visible already.
///
/// # Errors
/// Database errors.
pub async fn include_extension_schemas<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('search_path', \
                CASE WHEN current_setting('search_path') = '' THEN '' \
                     ELSE current_setting('search_path') || ', ' END \
                || string_agg(DISTINCT quote_ident(n.nspname), ', '), true) \
         FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = $1 AND n.nspname <> ALL (current_schemas(false)) \
         HAVING count(*) > 0",
        [expected::PGVECTOR.into()],
    ))
    .await?;
    Ok(())
}
