//! The least-privilege role split: an **owner** role that owns the schema
//! and its tables and runs the migrations, and an **application** role that
//! reads and writes rows but cannot change the schema.
//!
//! [`RoleSplit::sql`] writes the SQL (what `migration roles` prints, or
//! runs with `--apply`). It is idempotent and runs in one transaction, as a
//! superuser (pgvector is not a trusted extension: only a superuser can
//! create it, once, before the migrations run). It:
//! - creates both roles (`LOGIN`, no password: set them afterwards);
//! - creates pgvector (in `public`, unless it exists already somewhere);
//! - lets both connect; makes the owner own the schema (`CREATE SCHEMA ...
//!   AUTHORIZATION`, or `CREATE` on `public`) and the project's existing
//!   tables and functions (a database migrated before the split);
//! - creates sea-orm's bookkeeping table `seaql_migrations` as the owner's,
//!   readable (not writable) by the application;
//! - grants the application `USAGE` on the schema (and on pgvector's),
//!   `SELECT, INSERT, UPDATE, DELETE` on the tables, `USAGE, SELECT` on
//!   sequences and `EXECUTE` on functions, for what exists now **and**, with
//!   `ALTER DEFAULT PRIVILEGES FOR ROLE <owner>`, for what later migrations
//!   create.
//!
//! The application role can then run `migration status`, `migration
//! verify`, [`migration::ensure_schema_current`] and [`migration::lock::up_locked`]
//! (nothing pending), all without writing.

use migration::expected;

/// Names of the split: who owns, who uses, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSplit {
    /// Owner / migrator role.
    pub owner: String,
    /// Application role (DML only).
    pub app: String,
    /// The schema the migrations run in (`public` by default).
    pub schema: String,
    /// The database.
    pub database: String,
}

impl RoleSplit {
    /// The split for `database`, in schema `public`.
    pub fn new(
        owner: impl Into<String>,
        app: impl Into<String>,
        database: impl Into<String>,
    ) -> Self {
        Self {
            owner: owner.into(),
            app: app.into(),
            schema: "public".into(),
            database: database.into(),
        }
    }

    /// The same in another schema.
    pub fn in_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The SQL script (idempotent, one transaction, for a superuser).
    ///
    /// ```
    /// let sql = migration_tool::roles::RoleSplit::new("mi_owner", "mi_app", "mockinterview")
    ///     .in_schema("app")
    ///     .sql()
    ///     .unwrap();
    /// assert!(sql.contains("CREATE SCHEMA IF NOT EXISTS \"app\" AUTHORIZATION \"mi_owner\""));
    /// assert!(sql.contains(
    ///     "ALTER DEFAULT PRIVILEGES FOR ROLE \"mi_owner\" IN SCHEMA \"app\" \
    ///      GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \"mi_app\""
    /// ));
    /// ```
    ///
    /// # Errors
    /// A message when a name is empty, too long or has characters the
    /// script cannot carry (`$`, control characters), or when the owner and
    /// the application role are the same.
    pub fn sql(&self) -> Result<String, String> {
        for (what, name) in [
            ("owner role", &self.owner),
            ("application role", &self.app),
            ("schema", &self.schema),
            ("database", &self.database),
        ] {
            if name.is_empty() || name.len() > 63 {
                return Err(format!(
                    "the {what} name must have 1 to 63 bytes, got {name:?}"
                ));
            }
            if name.contains('$') || name.chars().any(char::is_control) {
                return Err(format!(
                    "the {what} name {name:?} has `$` or control characters, which this script \
                     does not support"
                ));
            }
        }
        if self.owner == self.app {
            return Err(format!(
                "the owner and the application role must differ (both {:?})",
                self.owner
            ));
        }
        let (o, a, s, d) = (
            ident(&self.owner),
            ident(&self.app),
            ident(&self.schema),
            ident(&self.database),
        );
        let (ol, al, sl) = (
            literal(&self.owner),
            literal(&self.app),
            literal(&self.schema),
        );
        let catalog = expected::catalog();
        let tables = catalog
            .tables
            .keys()
            .map(|t| literal(t))
            .chain(std::iter::once(literal(
                migration::catalog::MIGRATION_TABLE,
            )))
            .collect::<Vec<_>>()
            .join(", ");
        let functions = catalog
            .functions
            .iter()
            .map(|f| literal(f))
            .collect::<Vec<_>>()
            .join(", ");
        let schema_ownership = if self.schema == "public" {
            format!(
                "-- public belongs to pg_database_owner: the owner role gets CREATE on it.\n\
                 GRANT USAGE, CREATE ON SCHEMA {s} TO {o};"
            )
        } else {
            format!(
                "CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {o};\n\
                 ALTER SCHEMA {s} OWNER TO {o};"
            )
        };
        let table = migration::catalog::MIGRATION_TABLE;
        let pgvector = expected::PGVECTOR;
        Ok(format!(
            "-- Role split for the mock-interview database {d}, schema {s}\n\
-- (generated by `migration roles`; see the README, \"Roles\"):\n\
--   {o}  owns the schema and its tables, runs the migrations\n\
--        (the migration binary's MIGRATION_DATABASE_URL);\n\
--   {a}  the application: reads and writes rows (DATABASE_URL), cannot\n\
--        change the schema; `migration status` / `verify` work as it.\n\
-- Run once as a superuser: psql -v ON_ERROR_STOP=1 \"<superuser URL of {d}>\" -f roles.sql\n\
-- It is idempotent. Set the passwords afterwards (psql: \\password {o}), e.g.\n\
--   ALTER ROLE {o} PASSWORD '...'; ALTER ROLE {a} PASSWORD '...';\n\
BEGIN;\n\
\n\
DO $roles$\n\
BEGIN\n\
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {ol}) THEN\n\
        CREATE ROLE {o} LOGIN;\n\
    END IF;\n\
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {al}) THEN\n\
        CREATE ROLE {a} LOGIN;\n\
    END IF;\n\
END\n\
$roles$;\n\
GRANT CONNECT ON DATABASE {d} TO {o}, {a};\n\
\n\
-- pgvector is not a trusted extension: a superuser creates it once (in\n\
-- public unless it exists already); migration m003 then leaves it alone.\n\
CREATE EXTENSION IF NOT EXISTS {pgvector} SCHEMA public;\n\
\n\
-- The schema belongs to the owner; nobody else creates objects in it.\n\
{schema_ownership}\n\
REVOKE CREATE ON SCHEMA {s} FROM PUBLIC;\n\
GRANT USAGE ON SCHEMA {s} TO {a};\n\
DO $usage$\n\
BEGIN\n\
    -- pgvector's types and operators, wherever the extension lives.\n\
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I',\n\
        (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace\n\
         WHERE e.extname = '{pgvector}'), {al});\n\
END\n\
$usage$;\n\
\n\
-- A database migrated before the split: the owner takes over the project's\n\
-- tables and functions (later migrations alter them).\n\
DO $own$\n\
DECLARE\n\
    t text;\n\
BEGIN\n\
    FOREACH t IN ARRAY ARRAY[{tables}]::text[] LOOP\n\
        IF to_regclass(format('%I.%I', {sl}, t)) IS NOT NULL THEN\n\
            EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', {sl}, t, {ol});\n\
        END IF;\n\
    END LOOP;\n\
    FOREACH t IN ARRAY ARRAY[{functions}]::text[] LOOP\n\
        IF to_regprocedure(format('%I.%s', {sl}, t)) IS NOT NULL THEN\n\
            EXECUTE format('ALTER FUNCTION %I.%s OWNER TO %I', {sl}, t, {ol});\n\
        END IF;\n\
    END LOOP;\n\
END\n\
$own$;\n\
\n\
-- sea-orm-migration's bookkeeping table (as sea-orm creates it), owned by\n\
-- the owner: the application reads it (status checks) but cannot change it.\n\
CREATE TABLE IF NOT EXISTS {s}.{table} (\n\
    version varchar NOT NULL PRIMARY KEY,\n\
    applied_at bigint NOT NULL\n\
);\n\
ALTER TABLE {s}.{table} OWNER TO {o};\n\
\n\
-- What exists now...\n\
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {a};\n\
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {a};\n\
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {a};\n\
-- ...and what later migrations create (as the owner).\n\
ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {a};\n\
ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {a};\n\
ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT EXECUTE ON FUNCTIONS TO {a};\n\
-- The bookkeeping stays read-only for the application.\n\
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {s}.{table} FROM {a};\n\
GRANT SELECT ON {s}.{table} TO {a};\n\
\n\
COMMIT;\n"
        ))
    }
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted SQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_checked() {
        let sql = RoleSplit::new("o\"x", "it's", "db").sql().unwrap();
        assert!(sql.contains("CREATE ROLE \"o\"\"x\" LOGIN"), "{sql}");
        assert!(sql.contains("rolname = 'it''s'"), "{sql}");
        assert!(sql.contains("GRANT USAGE, CREATE ON SCHEMA \"public\" TO \"o\"\"x\""));
        assert!(!sql.contains("CREATE SCHEMA IF NOT EXISTS"));
        assert!(RoleSplit::new("a", "a", "db").sql().is_err());
        assert!(RoleSplit::new("a$", "b", "db").sql().is_err());
        assert!(RoleSplit::new("", "b", "db").sql().is_err());
        assert!(RoleSplit::new("a", "b", "x".repeat(64)).sql().is_err());
    }

    #[test]
    fn every_project_table_and_function_is_taken_over() {
        let sql = RoleSplit::new("o", "a", "db").sql().unwrap();
        for t in expected::catalog().tables.keys() {
            assert!(sql.contains(&format!("'{t}'")), "{t}");
        }
        for f in expected::catalog().functions {
            assert!(sql.contains(&format!("'{f}'")), "{f}");
        }
    }
}
