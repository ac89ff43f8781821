//! `up` never adopts a foreign schema silently.
//!
//! The migrations create their objects with `IF NOT EXISTS` (a port of the
//! original SQL files), so on a database that already has tables of the same
//! names, e.g. one created by the TypeScript app, `up` would record every
//! migration as applied and convert nothing. [`check_pending`] runs before
//! `up` applies anything: for each migration about to be applied, it finds
//! the objects that migration creates and compares those that already exist
//! here with what the migration would make. Identical objects are adopted;
//! any difference refuses the whole `up`, before any change, naming every
//! difference.
//!
//! Which objects a migration creates is not a second hand-written list:
//! - when no migration is recorded yet (a foreign schema, or lost
//!   bookkeeping), every object the migrations make comes from a pending
//!   one, and they are all in [`crate::expected::catalog`], the one
//!   description of the schema (tested against the migrations);
//! - when some are recorded, the migrations themselves are applied, in
//!   order, inside a transaction that is rolled back, into an empty scratch
//!   schema put first on the `search_path` (the schemas already on the path
//!   stay behind it, so extension types such as `vector` resolve as usual).
//!   A [`Catalog`] snapshot after each one gives exactly what it adds. This
//!   needs `CREATE` on the database; a role without it (the schema owner of
//!   an owner / application role split) upgrades without the check, which
//!   only matters for objects someone created by hand under the names of
//!   migrations not yet applied.
//!
//! A schema without tables and functions has nothing to collide with and is
//! not checked at all.

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, DbBackend, Statement, TransactionTrait};

use crate::catalog::{Catalog, ChangeAction, ObjectKind};
use crate::detect;
use crate::migrations;

/// One object that a pending migration creates and that exists here with
/// another shape (or one that exists on a table such a migration creates,
/// and that the migrations do not make).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The pending migration that creates the object (or its table), when
    /// known (not when nothing is recorded: then all of them are pending).
    pub migration: Option<String>,
    /// Object kind.
    pub kind: ObjectKind,
    /// Object name (`table.column` for columns, constraints and triggers).
    pub name: String,
    /// What exists in this database.
    pub found: String,
    /// What the migrations make (`None`: they do not make this object).
    pub expected: Option<String>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |d: &str| {
            if d.is_empty() {
                "(exists)".to_owned()
            } else {
                d.to_owned()
            }
        };
        let by = self
            .migration
            .as_ref()
            .map_or_else(String::new, |m| format!(" ({m})"));
        match &self.expected {
            Some(expected) => write!(
                f,
                "{} {}{by}: found {}, the migration creates {}",
                self.kind,
                self.name,
                show(&self.found),
                show(expected)
            ),
            None => write!(
                f,
                "{} {}{by}: found {} on a table the migrations create, which they do not make",
                self.kind,
                self.name,
                show(&self.found)
            ),
        }
    }
}

/// Refuses, before anything is applied, when an object that one of
/// `pending` (migration names, in order) creates already exists in the
/// current schema with another shape.
///
/// # Errors
/// [`DbErr::Migration`] listing every difference (and, when the schema is
/// one of the TypeScript app's, its version and the import command);
/// database errors of the snapshots.
pub async fn check_pending<C>(db: &C, pending: &[String]) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>,
{
    if pending.is_empty() {
        return Ok(());
    }
    let here = Catalog::snapshot(db).await?;
    if here.tables.is_empty() && here.functions.is_empty() {
        return Ok(());
    }
    let conflicts = if crate::status::recorded(db).await?.is_empty() {
        against_final(&here)
    } else if may_create_schemas(db).await? {
        let steps = scratch_snapshots(db).await?;
        conflicts(&here, &steps, pending)
    } else {
        tracing::debug!(
            "this role may not create a scratch schema: pending migrations are not checked \
             against existing objects"
        );
        Vec::new()
    };
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(DbErr::Migration(refusal(
        &conflicts,
        pending,
        detect::detect(&here).ok().map(|d| d.version),
    )))
}

/// Whether the role may create schemas in this database.
async fn may_create_schemas<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    db.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT has_database_privilege(current_database(), 'CREATE') AS ok",
    ))
    .await?
    .map(|r| r.try_get::<bool>("", "ok"))
    .transpose()
    .map(|ok| ok.unwrap_or(false))
}

/// Nothing recorded, so every migration is pending: every object of the
/// final schema ([`crate::expected::catalog`]) is one they create.
fn against_final(here: &Catalog) -> Vec<Conflict> {
    let made = crate::expected::catalog().objects();
    let here_objects = here.objects();
    let mut out = Vec::new();
    for ((kind, name), object) in &made {
        if *kind == ObjectKind::Extension {
            continue;
        }
        let Some(found) = here_objects.get(&(*kind, name.clone())) else {
            continue;
        };
        if found.definition != object.definition {
            out.push(Conflict {
                migration: None,
                kind: *kind,
                name: name.clone(),
                found: found.definition.clone(),
                expected: Some(object.definition.clone()),
            });
        }
        if *kind == ObjectKind::Table {
            out.extend(extra_objects(&here_objects, &made, None, name));
        }
    }
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}

/// The catalog of an empty scratch schema before any migration and after
/// each one (`(name, snapshot)`, the first named `""`), built in a
/// transaction that is rolled back.
async fn scratch_snapshots<C>(db: &C) -> Result<Vec<(String, Catalog)>, DbErr>
where
    C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>,
{
    let txn = db.begin().await?;
    let outcome = async {
        let row = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT 'mi_scratch_' || pg_backend_pid() || '_' || txid_current() AS scratch, \
                        coalesce(array_to_string(array(SELECT quote_ident(s) \
                          FROM unnest(current_schemas(false)) AS s), ', '), '') AS path",
            ))
            .await?
            .ok_or_else(|| DbErr::Migration("no row from the scratch-schema query".into()))?;
        let scratch: String = row.try_get("", "scratch")?;
        let path: String = row.try_get("", "path")?;
        let search_path = if path.is_empty() {
            format!("\"{scratch}\"")
        } else {
            format!("\"{scratch}\", {path}")
        };
        txn.execute_unprepared(&format!("CREATE SCHEMA \"{scratch}\""))
            .await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('search_path', $1, true)",
            [search_path.into()],
        ))
        .await?;
        let mut steps = vec![(String::new(), Catalog::snapshot(&txn).await?)];
        for migration in migrations::all() {
            let manager = SchemaManager::new(&txn);
            migration.up(&manager).await.map_err(|e| {
                DbErr::Migration(format!(
                    "checking what {} creates (in a rolled-back scratch schema) failed: {e}",
                    migration.name()
                ))
            })?;
            steps.push((migration.name().to_owned(), Catalog::snapshot(&txn).await?));
        }
        Ok::<_, DbErr>(steps)
    }
    .await;
    txn.rollback().await?;
    outcome
}

/// Compares the objects each pending migration adds (between consecutive
/// scratch snapshots) with the same-named objects of `here`. Objects are
/// compared with their final shape (after every migration). For a table a
/// pending migration creates, objects of that table here that the
/// migrations never make are conflicts too.
fn conflicts(here: &Catalog, steps: &[(String, Catalog)], pending: &[String]) -> Vec<Conflict> {
    let here_objects = here.objects();
    let Some((_, last)) = steps.last() else {
        return Vec::new();
    };
    let final_objects = last.objects();
    let mut out = Vec::new();
    for pair in steps.windows(2) {
        let ((_, before), (name, after)) = (&pair[0], &pair[1]);
        if !pending.contains(name) {
            continue;
        }
        let start = out.len();
        for change in before.diff(after) {
            if change.action != ChangeAction::Added || change.kind == ObjectKind::Extension {
                continue;
            }
            let key = (change.kind, change.name.clone());
            let Some(found) = here_objects.get(&key) else {
                continue;
            };
            let expected = final_objects.get(&key).map_or_else(
                || change.after.clone().unwrap_or_default(),
                |o| o.definition.clone(),
            );
            if found.definition != expected {
                out.push(Conflict {
                    migration: Some(name.clone()),
                    kind: change.kind,
                    name: change.name.clone(),
                    found: found.definition.clone(),
                    expected: Some(expected),
                });
            }
            if change.kind == ObjectKind::Table {
                out.extend(extra_objects(
                    &here_objects,
                    &final_objects,
                    Some(name),
                    &change.name,
                ));
            }
        }
        // In migration order; within one, by kind (tables, columns,
        // constraints, indexes, triggers, functions) and name.
        out[start..].sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    }
    out
}

/// Objects of `table` here that the migrations do not make.
fn extra_objects(
    here: &BTreeMap<(ObjectKind, String), crate::catalog::Object>,
    made: &BTreeMap<(ObjectKind, String), crate::catalog::Object>,
    migration: Option<&String>,
    table: &str,
) -> Vec<Conflict> {
    here.iter()
        .filter(|((kind, _), o)| *kind != ObjectKind::Table && o.table.as_deref() == Some(table))
        .filter(|(key, _)| !made.contains_key(key))
        .map(|((kind, name), o)| Conflict {
            migration: migration.cloned(),
            kind: *kind,
            name: name.clone(),
            found: o.definition.clone(),
            expected: None,
        })
        .collect()
}

/// Conflicts listed beyond this are summarized.
const SHOWN: usize = 80;

fn refusal(
    conflicts: &[Conflict],
    pending: &[String],
    legacy: Option<detect::LegacyVersion>,
) -> String {
    let mut msg = format!(
        "refusing to apply {}: {} object(s) that these migrations create already exist in this \
         schema with another shape, and `up` does not adopt them:\n",
        pending.join(", "),
        conflicts.len()
    );
    for c in conflicts.iter().take(SHOWN) {
        msg.push_str(&format!("  - {c}\n"));
    }
    if conflicts.len() > SHOWN {
        msg.push_str(&format!(
            "  ... and {} more (`verify` lists everything)\n",
            conflicts.len() - SHOWN
        ));
    }
    msg.push_str("Nothing was changed. ");
    match legacy {
        Some(version) => msg.push_str(&format!(
            "This looks like a database of the TypeScript app (version {version}): its data \
             cannot be converted in place. Create a new, empty database and copy this one into \
             it with `migration import --from <URL of this database>` (DATABASE_URL naming the \
             new one); see the README, \"Coming from the TypeScript app\"."
        )),
        None => msg.push_str(
            "These objects belong to something else: migrate into another database or schema \
             (-s / DATABASE_SCHEMA), or rename or drop the conflicting objects first.",
        ),
    }
    msg
}
