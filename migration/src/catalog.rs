//! A snapshot of the schema objects in the current schema, read from the
//! PostgreSQL catalogs. `verify` compares one with [`crate::expected`];
//! `up --dry-run` diffs the snapshots taken before and after applying the
//! pending migrations.
//!
//! Definitions come from `pg_get_indexdef`, `pg_get_constraintdef` and
//! `pg_get_triggerdef`, with the schema qualifier removed, so they read the
//! same whichever schema (`-s`) the migrations ran in.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};
use serde::Serialize;

/// sea-orm's bookkeeping table, left out of every listing.
pub const MIGRATION_TABLE: &str = "seaql_migrations";

/// One column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    /// `format_type()`, e.g. `vector(768)`, `timestamp with time zone`.
    pub sql_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The default expression, if any.
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

/// The schema objects of the current schema (without the bookkeeping table
/// and without objects that belong to extensions).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Catalog {
    /// The schema that was read (`current_schema()`).
    pub schema: String,
    /// Installed extensions of the database and their versions.
    pub extensions: BTreeMap<String, String>,
    /// Table names.
    pub tables: BTreeSet<String>,
    /// `(table, column)` → column, in no particular order.
    pub columns: BTreeMap<(String, String), Column>,
    /// Columns of each table in their physical order.
    pub column_order: BTreeMap<String, Vec<String>>,
    /// Index name → `(table, definition)`.
    pub indexes: BTreeMap<String, (String, String)>,
    /// `(table, constraint)` → definition.
    pub constraints: BTreeMap<(String, String), String>,
    /// `(table, trigger)` → definition.
    pub triggers: BTreeMap<(String, String), String>,
    /// Function signatures, e.g. `set_updated_at()`.
    pub functions: BTreeSet<String>,
}

const SCHEMA_OID: &str = "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())";

impl Catalog {
    /// Reads the catalogs through `db` (a connection or a transaction).
    ///
    /// # Errors
    /// Database errors.
    pub async fn snapshot<C: ConnectionTrait>(db: &C) -> Result<Self, DbErr> {
        let schema = rows(db, "SELECT coalesce(current_schema()::text, '') AS a")
            .await?
            .pop()
            .map(|mut r| r.remove(0))
            .unwrap_or_default();
        let strip = |def: String| strip_schema(&def, &schema);
        let mut catalog = Self {
            schema: schema.clone(),
            ..Self::default()
        };

        for r in rows(
            db,
            "SELECT extname::text AS a, extversion AS b FROM pg_extension",
        )
        .await?
        {
            catalog.extensions.insert(r[0].clone(), r[1].clone());
        }
        let not_extension_member = "NOT EXISTS (SELECT 1 FROM pg_depend d \
             WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype = 'e')";
        for r in rows(
            db,
            &format!(
                "SELECT c.relname::text AS a FROM pg_class c \
                 WHERE c.relnamespace = {SCHEMA_OID} AND c.relkind IN ('r', 'p') \
                   AND c.relname <> '{MIGRATION_TABLE}' AND {not_extension_member}"
            ),
        )
        .await?
        {
            catalog.tables.insert(r[0].clone());
        }
        for r in rows(
            db,
            &format!(
                "SELECT c.relname::text AS a, a.attname::text AS b, \
                        format_type(a.atttypid, a.atttypmod) AS c, \
                        CASE WHEN a.attnotnull THEN 't' ELSE 'f' END AS d, \
                        coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') AS e \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
                 WHERE c.relnamespace = {SCHEMA_OID} AND c.relkind IN ('r', 'p') \
                   AND c.relname <> '{MIGRATION_TABLE}' AND a.attnum > 0 AND NOT a.attisdropped \
                   AND {not_extension_member} \
                 ORDER BY c.relname, a.attnum"
            ),
        )
        .await?
        {
            let [table, column, sql_type, not_null, default] = <[String; 5]>::try_from(r)
                .map_err(|_| DbErr::Custom("unexpected column row".into()))?;
            catalog
                .column_order
                .entry(table.clone())
                .or_default()
                .push(column.clone());
            catalog.columns.insert(
                (table, column),
                Column {
                    sql_type: strip(sql_type),
                    not_null: not_null == "t",
                    default: (!default.is_empty()).then(|| strip(default)),
                },
            );
        }
        for r in rows(
            db,
            &format!(
                "SELECT i.relname::text AS a, c.relname::text AS b, pg_get_indexdef(i.oid) AS c \
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                 JOIN pg_class c ON c.oid = x.indrelid \
                 WHERE c.relnamespace = {SCHEMA_OID} AND c.relname <> '{MIGRATION_TABLE}' \
                   AND {not_extension_member}"
            ),
        )
        .await?
        {
            catalog
                .indexes
                .insert(r[0].clone(), (r[1].clone(), strip(r[2].clone())));
        }
        for r in rows(
            db,
            &format!(
                "SELECT c.relname::text AS a, con.conname::text AS b, \
                        pg_get_constraintdef(con.oid) AS c \
                 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
                 WHERE c.relnamespace = {SCHEMA_OID} AND c.relname <> '{MIGRATION_TABLE}' \
                   AND {not_extension_member}"
            ),
        )
        .await?
        {
            catalog
                .constraints
                .insert((r[0].clone(), r[1].clone()), strip(r[2].clone()));
        }
        for r in rows(
            db,
            &format!(
                "SELECT c.relname::text AS a, t.tgname::text AS b, pg_get_triggerdef(t.oid) AS c \
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 WHERE NOT t.tgisinternal AND c.relnamespace = {SCHEMA_OID}"
            ),
        )
        .await?
        {
            catalog
                .triggers
                .insert((r[0].clone(), r[1].clone()), strip(r[2].clone()));
        }
        for r in rows(
            db,
            &format!(
                "SELECT p.oid::regprocedure::text AS a FROM pg_proc p \
                 WHERE p.pronamespace = {SCHEMA_OID} AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                   WHERE d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e')"
            ),
        )
        .await?
        {
            catalog.functions.insert(strip(r[0].clone()));
        }
        Ok(catalog)
    }

    /// Every object as `(kind, name)` → definition, for diffing.
    pub fn objects(&self) -> BTreeMap<(ObjectKind, String), String> {
        let mut out = BTreeMap::new();
        for (name, version) in &self.extensions {
            out.insert((ObjectKind::Extension, name.clone()), version.clone());
        }
        for table in &self.tables {
            out.insert((ObjectKind::Table, table.clone()), String::new());
        }
        for ((table, column), c) in &self.columns {
            out.insert(
                (ObjectKind::Column, format!("{table}.{column}")),
                c.to_string(),
            );
        }
        for ((table, name), def) in &self.constraints {
            out.insert(
                (ObjectKind::Constraint, format!("{table}.{name}")),
                def.clone(),
            );
        }
        for (name, (_, def)) in &self.indexes {
            out.insert((ObjectKind::Index, name.clone()), def.clone());
        }
        for ((table, name), def) in &self.triggers {
            out.insert(
                (ObjectKind::Trigger, format!("{table}.{name}")),
                def.clone(),
            );
        }
        for f in &self.functions {
            out.insert((ObjectKind::Function, f.clone()), String::new());
        }
        out
    }

    /// What changed from `self` to `after`, in kind order.
    pub fn diff(&self, after: &Catalog) -> Vec<Change> {
        let (before, after) = (self.objects(), after.objects());
        let mut changes = Vec::new();
        for (key, def) in &after {
            match before.get(key) {
                None => changes.push(Change::new(ChangeAction::Added, key, None, Some(def))),
                Some(old) if old != def => {
                    changes.push(Change::new(
                        ChangeAction::Changed,
                        key,
                        Some(old),
                        Some(def),
                    ));
                }
                Some(_) => {}
            }
        }
        for (key, def) in &before {
            if !after.contains_key(key) {
                changes.push(Change::new(ChangeAction::Removed, key, Some(def), None));
            }
        }
        changes.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        changes
    }
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
    /// Definition before, if it existed.
    pub before: Option<String>,
    /// Definition after, if it exists.
    pub after: Option<String>,
}

impl Change {
    fn new(
        action: ChangeAction,
        (kind, name): &(ObjectKind, String),
        before: Option<&String>,
        after: Option<&String>,
    ) -> Self {
        Self {
            action,
            kind: *kind,
            name: name.clone(),
            before: before.cloned(),
            after: after.cloned(),
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

/// Runs `sql` and returns every row's columns as text, in order `a`, `b`, ...
async fn rows<C: ConnectionTrait>(db: &C, sql: &str) -> Result<Vec<Vec<String>>, DbErr> {
    let result = db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?;
    result
        .iter()
        .map(|row| {
            let mut values = Vec::new();
            for col in ["a", "b", "c", "d", "e"] {
                match row.try_get::<String>("", col) {
                    Ok(v) => values.push(v),
                    Err(_) => break,
                }
            }
            Ok(values)
        })
        .collect()
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
        a.tables.insert("gone".into());
        a.functions.insert("f()".into());
        a.extensions.insert("vector".into(), "0.7.0".into());
        let mut b = Catalog::default();
        b.tables.insert("new".into());
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
}
