//! A typed snapshot of the schema objects of one schema, and the diff of two
//! snapshots: the one mechanism behind `verify` (expected vs live), `up
//! --dry-run` (before vs after) and the schema tests.
//!
//! [`Catalog::snapshot`] reads PostgreSQL's catalogs with the queries in
//! `schema/sql/`. Definitions come from `pg_get_indexdef`,
//! `pg_get_constraintdef` and `pg_get_triggerdef`, with the schema qualifier
//! removed, so they read the same whichever schema (`-s`) the migrations ran
//! in; [`crate::expected::catalog`] writes them the same way.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, FromQueryResult, Statement};
use serde::Serialize;

/// sea-orm's bookkeeping table, left out of every snapshot.
pub const MIGRATION_TABLE: &str = "seaql_migrations";

/// One column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// `format_type()`, e.g. `vector(768)`, `timestamp with time zone`.
    pub sql_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The default expression, if any (`pg_get_expr`).
    pub default: Option<String>,
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sql_type)?;
        if self.not_null {
            f.write_str(" NOT NULL")?;
        }
        if let Some(d) = &self.default {
            write!(f, " DEFAULT {d}")?;
        }
        Ok(())
    }
}

/// An index, constraint or trigger: the table it belongs to and its
/// definition as PostgreSQL prints it (schema qualifier removed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Definition {
    /// The table it belongs to.
    pub table: String,
    /// `pg_get_indexdef` / `pg_get_constraintdef` / `pg_get_triggerdef`.
    pub definition: String,
}

/// The schema objects of one schema (without sea-orm's bookkeeping table
/// and without objects that belong to extensions).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// The schema that was read (`current_schema()`); empty for a
    /// description that applies to any schema.
    pub schema: String,
    /// Installed extensions of the database → version.
    pub extensions: BTreeMap<String, String>,
    /// Table → its columns in physical order.
    pub tables: BTreeMap<String, Vec<Column>>,
    /// Index name → table and definition (index names are unique per schema).
    pub indexes: BTreeMap<String, Definition>,
    /// `(table, constraint)` → table and definition.
    pub constraints: BTreeMap<(String, String), Definition>,
    /// `(table, trigger)` → table and definition.
    pub triggers: BTreeMap<(String, String), Definition>,
    /// Function signatures, e.g. `set_updated_at()`.
    pub functions: BTreeSet<String>,
}

#[derive(FromQueryResult)]
struct ExtensionRow {
    name: String,
    version: String,
}

#[derive(FromQueryResult)]
struct TableRow {
    name: String,
}

#[derive(FromQueryResult)]
struct ColumnRow {
    table_name: String,
    column_name: String,
    sql_type: String,
    not_null: bool,
    default_expr: Option<String>,
}

#[derive(FromQueryResult)]
struct DefinitionRow {
    name: String,
    table_name: String,
    definition: String,
}

#[derive(FromQueryResult)]
struct FunctionRow {
    signature: String,
}

#[derive(FromQueryResult)]
struct SchemaRow {
    schema: Option<String>,
}

impl Catalog {
    /// Reads the catalogs of the current schema through `db` (a connection
    /// or a transaction).
    ///
    /// # Errors
    /// Database errors.
    pub async fn snapshot<C: ConnectionTrait>(db: &C) -> Result<Self, DbErr> {
        let schema = fetch::<SchemaRow, _>(db, "SELECT current_schema()::text AS schema")
            .await?
            .pop()
            .and_then(|r| r.schema)
            .unwrap_or_default();
        // Extensions' objects print schema-qualified when their schema is not
        // on the search_path (`public.vector(768)` while checking `app`):
        // they read the same whichever schema pgvector lives in.
        let extension_schemas: Vec<String> = fetch::<SchemaRow, _>(
            db,
            "SELECT DISTINCT n.nspname::text AS schema FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname <> 'pg_catalog'",
        )
        .await?
        .into_iter()
        .filter_map(|r| r.schema)
        .filter(|s| *s != schema)
        .collect();
        let strip = |def: &str| {
            extension_schemas
                .iter()
                .fold(strip_schema(def, &schema), |d, ext| strip_schema(&d, ext))
        };
        let definition = |r: &DefinitionRow| Definition {
            table: r.table_name.clone(),
            definition: strip(&r.definition),
        };

        let mut tables: BTreeMap<String, Vec<Column>> = fetch::<TableRow, _>(db, TABLES_SQL)
            .await?
            .into_iter()
            .map(|r| (r.name, Vec::new()))
            .collect();
        for r in fetch::<ColumnRow, _>(db, COLUMNS_SQL).await? {
            tables.entry(r.table_name).or_default().push(Column {
                name: r.column_name,
                sql_type: strip(&r.sql_type),
                not_null: r.not_null,
                default: r.default_expr.as_deref().map(strip),
            });
        }
        Ok(Self {
            extensions: fetch::<ExtensionRow, _>(db, EXTENSIONS_SQL)
                .await?
                .into_iter()
                .map(|r| (r.name, r.version))
                .collect(),
            tables,
            indexes: fetch::<DefinitionRow, _>(db, INDEXES_SQL)
                .await?
                .iter()
                .map(|r| (r.name.clone(), definition(r)))
                .collect(),
            constraints: fetch::<DefinitionRow, _>(db, CONSTRAINTS_SQL)
                .await?
                .iter()
                .map(|r| ((r.table_name.clone(), r.name.clone()), definition(r)))
                .collect(),
            triggers: fetch::<DefinitionRow, _>(db, TRIGGERS_SQL)
                .await?
                .iter()
                .map(|r| ((r.table_name.clone(), r.name.clone()), definition(r)))
                .collect(),
            functions: fetch::<FunctionRow, _>(db, FUNCTIONS_SQL)
                .await?
                .iter()
                .map(|r| strip(&r.signature))
                .collect(),
            schema,
        })
    }

    /// Every object as `(kind, name)` → [`Object`], for diffing. Names are
    /// `table.column`, `table.constraint` and `table.trigger` for objects
    /// that belong to a table (index names are unique on their own).
    pub fn objects(&self) -> BTreeMap<(ObjectKind, String), Object> {
        let mut out = BTreeMap::new();
        let mut add = |kind, name: String, table: Option<&str>, definition: String| {
            out.insert(
                (kind, name),
                Object {
                    table: table.map(str::to_owned),
                    definition,
                },
            );
        };
        for (name, version) in &self.extensions {
            add(ObjectKind::Extension, name.clone(), None, version.clone());
        }
        for (table, columns) in &self.tables {
            // A table's definition is its column list: an extra, missing or
            // reordered column makes it different.
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            add(
                ObjectKind::Table,
                table.clone(),
                Some(table),
                names.join(", "),
            );
            for c in columns {
                add(
                    ObjectKind::Column,
                    format!("{table}.{}", c.name),
                    Some(table),
                    c.to_string(),
                );
            }
        }
        for ((table, name), d) in &self.constraints {
            add(
                ObjectKind::Constraint,
                format!("{table}.{name}"),
                Some(table),
                d.definition.clone(),
            );
        }
        for (name, d) in &self.indexes {
            add(
                ObjectKind::Index,
                name.clone(),
                Some(&d.table),
                d.definition.clone(),
            );
        }
        for ((table, name), d) in &self.triggers {
            add(
                ObjectKind::Trigger,
                format!("{table}.{name}"),
                Some(table),
                d.definition.clone(),
            );
        }
        for f in &self.functions {
            add(ObjectKind::Function, f.clone(), None, String::new());
        }
        out
    }

    /// What changed from `self` to `after`, in kind order.
    pub fn diff(&self, after: &Catalog) -> Vec<Change> {
        let (before, after) = (self.objects(), after.objects());
        let mut changes = Vec::new();
        for (key, new) in &after {
            match before.get(key) {
                None => changes.push(Change::new(ChangeAction::Added, key, None, Some(new))),
                Some(old) if old.definition != new.definition => {
                    changes.push(Change::new(
                        ChangeAction::Changed,
                        key,
                        Some(old),
                        Some(new),
                    ));
                }
                Some(_) => {}
            }
        }
        for (key, old) in &before {
            if !after.contains_key(key) {
                changes.push(Change::new(ChangeAction::Removed, key, Some(old), None));
            }
        }
        changes.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        changes
    }
}

/// One object of a snapshot, as [`Catalog::objects`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The table it is or belongs to, if any.
    pub table: Option<String>,
    /// Its definition (empty for functions).
    pub definition: String,
}

/// Kinds of schema objects, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// `CREATE EXTENSION`.
    Extension,
    /// A table.
    Table,
    /// A column of a table.
    Column,
    /// Primary key, foreign key, CHECK or UNIQUE constraint.
    Constraint,
    /// An index.
    Index,
    /// A trigger.
    Trigger,
    /// A function.
    Function,
}

impl ObjectKind {
    /// `tables`, `indexes`, ...
    pub fn plural(self) -> &'static str {
        match self {
            Self::Extension => "extensions",
            Self::Table => "tables",
            Self::Column => "columns",
            Self::Constraint => "constraints",
            Self::Index => "indexes",
            Self::Trigger => "triggers",
            Self::Function => "functions",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Extension => "extension",
            Self::Table => "table",
            Self::Column => "column",
            Self::Constraint => "constraint",
            Self::Index => "index",
            Self::Trigger => "trigger",
            Self::Function => "function",
        })
    }
}

/// Added, removed or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    /// Exists only after.
    Added,
    /// Exists only before.
    Removed,
    /// Exists on both sides with different definitions.
    Changed,
}

/// One difference between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Added, removed or changed.
    pub action: ChangeAction,
    /// Object kind.
    pub kind: ObjectKind,
    /// Object name (`table.column` for columns, constraints, triggers).
    pub name: String,
    /// The table it is or belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Definition before, if it existed.
    pub before: Option<String>,
    /// Definition after, if it exists.
    pub after: Option<String>,
}

impl Change {
    fn new(
        action: ChangeAction,
        (kind, name): &(ObjectKind, String),
        before: Option<&Object>,
        after: Option<&Object>,
    ) -> Self {
        Self {
            action,
            kind: *kind,
            name: name.clone(),
            table: after.or(before).and_then(|o| o.table.clone()),
            before: before.map(|o| o.definition.clone()),
            after: after.map(|o| o.definition.clone()),
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let def = |d: &Option<String>| match d.as_deref() {
            Some("") | None => String::new(),
            Some(d) => format!(": {d}"),
        };
        match self.action {
            ChangeAction::Added => write!(f, "+ {} {}{}", self.kind, self.name, def(&self.after)),
            ChangeAction::Removed => {
                write!(f, "- {} {}{}", self.kind, self.name, def(&self.before))
            }
            ChangeAction::Changed => write!(
                f,
                "~ {} {}: {} -> {}",
                self.kind,
                self.name,
                self.before.as_deref().unwrap_or(""),
                self.after.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Removes `schema.` / `"schema".` qualifiers from a catalog definition
/// (only where they start a name, not inside a longer identifier).
pub fn strip_schema(def: &str, schema: &str) -> String {
    if schema.is_empty() {
        return def.to_owned();
    }
    let mut out = def.to_owned();
    for qualifier in [format!("\"{schema}\"."), format!("{schema}.")] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&qualifier) {
            let starts_name = result
                .chars()
                .chain(rest[..i].chars())
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '"' || c == '.'));
            result.push_str(&rest[..i]);
            if !starts_name {
                result.push_str(&qualifier);
            }
            rest = &rest[i + qualifier.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

const EXTENSIONS_SQL: &str = include_str!("sql/extensions.sql");
const TABLES_SQL: &str = include_str!("sql/tables.sql");
const COLUMNS_SQL: &str = include_str!("sql/columns.sql");
const INDEXES_SQL: &str = include_str!("sql/indexes.sql");
const CONSTRAINTS_SQL: &str = include_str!("sql/constraints.sql");
const TRIGGERS_SQL: &str = include_str!("sql/triggers.sql");
const FUNCTIONS_SQL: &str = include_str!("sql/functions.sql");

/// Runs `sql` and reads every row into `T`.
async fn fetch<T: FromQueryResult, C: ConnectionTrait>(db: &C, sql: &str) -> Result<Vec<T>, DbErr> {
    T::find_by_statement(Statement::from_string(DbBackend::Postgres, sql))
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_schema_qualifiers() {
        assert_eq!(
            strip_schema("CREATE INDEX i ON public.t USING btree (x)", "public"),
            "CREATE INDEX i ON t USING btree (x)"
        );
        assert_eq!(
            strip_schema("REFERENCES \"My App\".users(id)", "My App"),
            "REFERENCES users(id)"
        );
        assert_eq!(
            strip_schema("ON app.t (myapp.x, (app.y))", "app"),
            "ON t (myapp.x, (y))"
        );
    }

    #[test]
    fn diff_lists_added_removed_and_changed() {
        let mut a = Catalog::default();
        a.tables.insert("gone".into(), Vec::new());
        a.functions.insert("f()".into());
        a.extensions.insert("vector".into(), "0.7.0".into());
        let mut b = Catalog::default();
        b.tables.insert("new".into(), Vec::new());
        b.functions.insert("f()".into());
        b.extensions.insert("vector".into(), "0.8.0".into());
        let lines: Vec<String> = a.diff(&b).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ extension vector: 0.7.0 -> 0.8.0",
                "- table gone",
                "+ table new"
            ]
        );
    }

    #[test]
    fn a_column_change_is_reported_on_the_column_and_its_table() {
        let column = |name: &str, ty: &str| Column {
            name: name.into(),
            sql_type: ty.into(),
            not_null: false,
            default: None,
        };
        let mut a = Catalog::default();
        a.tables.insert(
            "t".into(),
            vec![column("id", "uuid"), column("v", "vector")],
        );
        let mut b = a.clone();
        b.tables.get_mut("t").unwrap()[1] = column("v", "vector(768)");
        b.tables.get_mut("t").unwrap().push(column("extra", "text"));
        let lines: Vec<String> = a.diff(&b).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ table t: id, v -> id, v, extra",
                "+ column t.extra: text",
                "~ column t.v: vector -> vector(768)",
            ]
        );
    }
}
