//! Small catalog queries shared by the schema and migration tests.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

/// Runs `sql` with `values` and returns the first column of every row as text.
pub async fn strings(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> Vec<String> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .iter()
    .map(|r| r.try_get_by_index::<String>(0).expect("text column"))
    .collect()
}

/// Tables in the public schema, sorted, without sea-orm's bookkeeping table.
pub async fn tables(db: &DatabaseConnection) -> Vec<String> {
    strings(
        db,
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> 'seaql_migrations' ORDER BY 1",
        vec![],
    )
    .await
}

/// `name type` of every column of `table`, in column order.
pub async fn columns(db: &DatabaseConnection, table: &str) -> Vec<String> {
    strings(
        db,
        "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END \
         FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 \
           AND NOT a.attisdropped ORDER BY a.attnum",
        vec![table.into()],
    )
    .await
}

/// Index names of the public schema, sorted.
pub async fn indexes(db: &DatabaseConnection) -> Vec<String> {
    strings(
        db,
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
           AND tablename <> 'seaql_migrations' ORDER BY 1",
        vec![],
    )
    .await
}

/// Applied migration names, in order.
pub async fn applied(db: &DatabaseConnection) -> Vec<String> {
    strings(
        db,
        "SELECT version FROM seaql_migrations ORDER BY version",
        vec![],
    )
    .await
}

/// Whether the `vector` extension is installed in the database.
pub async fn has_vector_extension(db: &DatabaseConnection) -> bool {
    !strings(
        db,
        "SELECT extname::text FROM pg_extension WHERE extname = 'vector'",
        vec![],
    )
    .await
    .is_empty()
}

/// Functions defined in the public schema (not by extensions), sorted.
pub async fn functions(db: &DatabaseConnection) -> Vec<String> {
    strings(
        db,
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' AND NOT EXISTS ( \
           SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') ORDER BY 1",
        vec![],
    )
    .await
}

pub use mockinterview_db::testing::schema_dump;

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
