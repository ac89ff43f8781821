//! What this release needs of the database's schema, checked once by
//! [`crate::DbConfig::connect`].
//!
//! **Rolling deploys.** Code is often deployed before `migration up` runs,
//! so a release serves a database that lacks only its newest migration
//! ([`MIGRATIONS`]'s last): its code reads what that migration adds only
//! once it is there, and runs as the previous release did until then. A
//! database further behind is refused at connect with
//! [`Error::SchemaBehind`], naming the pending migrations, instead of
//! failing every call later. The other direction holds by the rule every
//! migration follows (docs/migrations.md): it only adds, so the previous
//! release's code keeps working on the new schema.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::embedding::{EmbeddingModel, ModelScope};
use crate::error::{Error, Result};
use crate::settings::{Op, Settings, apply};

/// The migrations of this release, in order (the `migration` crate's
/// `Migrator`; a test of the tool checks that the two lists agree).
pub const MIGRATIONS: &[&str] = &[
    "m001_user_profiles",
    "m002_add_pdf_storage",
    "m003_create_vector_store",
    "m004_delete_orphan_chunks",
    "m005_legacy_import",
    "m007_lowercase_chunk_ids",
    "m008_hnsw_ef_construction",
    "m009_staged_chunks",
    "m010_embedding_models",
];

/// The migration that adds the `embedding_models` table.
const EMBEDDING_MODELS: &str = "m010_embedding_models";

/// The applied migrations (none when `seaql_migrations` does not exist)
/// and the serving model, read in one statement.
const STATE_SQL: &str = "\
    SELECT coalesce((SELECT array_agg(version::text) FROM seaql_migrations), '{}') AS applied, \
           (SELECT (name, dimensions)::text FROM embedding_models WHERE serving) AS serving";
const NO_MODELS_SQL: &str = "\
    SELECT coalesce((SELECT array_agg(version::text) FROM seaql_migrations), '{}') AS applied, \
           NULL::text AS serving";

/// What [`crate::DbConfig::connect`] learnt about the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SchemaState {
    /// The newest migration is pending: the handle runs without it.
    pub one_behind: Option<&'static str>,
    /// The model the database serves (`None`: not declared, or
    /// `embedding_models` missing).
    pub serving: Option<EmbeddingModel>,
}

impl SchemaState {
    /// Reads the applied migrations and the model registry on `conn`, with
    /// the handle's settings (its schema).
    ///
    /// # Errors
    /// [`Error::SchemaBehind`] when more than the newest migration is
    /// pending; database failures.
    pub async fn read(conn: &DatabaseConnection, settings: &Settings) -> Result<Self> {
        let txn = conn.begin().await?;
        apply(&txn, settings, Op::Plain).await?;
        let found = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT to_regclass('seaql_migrations') IS NOT NULL AS migrated, \
                        to_regclass('embedding_models') IS NOT NULL AS models",
            ))
            .await?
            .ok_or_else(|| Error::Config("the schema check returned no row".into()))?;
        let migrated: bool = found.try_get("", "migrated")?;
        let models: bool = found.try_get("", "models")?;
        let (applied, serving): (Vec<String>, Option<String>) = if migrated {
            let row = txn
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    if models { STATE_SQL } else { NO_MODELS_SQL },
                ))
                .await?
                .ok_or_else(|| Error::Config("the schema check returned no row".into()))?;
            (row.try_get("", "applied")?, row.try_get("", "serving")?)
        } else {
            (Vec::new(), None)
        };
        txn.rollback().await?;
        Self::judge(&applied, serving.as_deref())
    }

    /// The decision, from the applied migrations and the registry's
    /// `(name,dimensions)` row text of the serving model.
    fn judge(applied: &[String], serving: Option<&str>) -> Result<Self> {
        let pending: Vec<&'static str> = MIGRATIONS
            .iter()
            .copied()
            .filter(|m| !applied.iter().any(|a| a == m))
            .collect();
        let one_behind = match pending.as_slice() {
            [] => None,
            [last] if *last == MIGRATIONS[MIGRATIONS.len() - 1] && !applied.is_empty() => {
                Some(*last)
            }
            _ => {
                return Err(Error::SchemaBehind {
                    pending: pending.iter().map(|m| (*m).to_owned()).collect(),
                });
            }
        };
        Ok(Self {
            one_behind,
            serving: serving.and_then(parse_row),
        })
    }

    /// The chunks a handle of `model` searches.
    pub fn scope(&self, model: &EmbeddingModel) -> ModelScope {
        ModelScope {
            model: model.clone(),
            registry: self.one_behind != Some(EMBEDDING_MODELS),
        }
    }
}

/// The model the database serves now (`None` when none is declared).
///
/// # Errors
/// Database failures.
pub(crate) async fn serving_model<C: ConnectionTrait>(conn: &C) -> Result<Option<EmbeddingModel>> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (name, dimensions)::text AS serving FROM embedding_models WHERE serving",
        ))
        .await?;
    Ok(match row {
        Some(r) => parse_row(&r.try_get::<String>("", "serving")?),
        None => None,
    })
}

/// Parses a row value `(name,dimensions)` as PostgreSQL prints it.
pub(crate) fn parse_row(text: &str) -> Option<EmbeddingModel> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    let (name, dimensions) = inner.rsplit_once(',')?;
    let name = name.trim_matches('"');
    EmbeddingModel::new(name, dimensions.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(n: usize) -> Vec<String> {
        MIGRATIONS[..n].iter().map(|m| (*m).to_owned()).collect()
    }

    #[test]
    fn one_migration_behind_is_served_and_more_is_refused() {
        let all = SchemaState::judge(&applied(MIGRATIONS.len()), None).unwrap();
        assert_eq!(all.one_behind, None);
        let behind = SchemaState::judge(&applied(MIGRATIONS.len() - 1), None).unwrap();
        assert_eq!(behind.one_behind, MIGRATIONS.last().copied());
        for n in [0, 1, MIGRATIONS.len() - 2] {
            let err = SchemaState::judge(&applied(n), None).unwrap_err();
            let Error::SchemaBehind { pending } = &err else {
                panic!("{err}")
            };
            assert_eq!(pending.len(), MIGRATIONS.len() - n, "{err}");
            assert!(err.to_string().contains("m010_embedding_models"), "{err}");
        }
        // A gap (an older migration missing) is not "one behind".
        let mut gap = applied(MIGRATIONS.len());
        gap.remove(3);
        assert!(SchemaState::judge(&gap, None).is_err());
        // Migrations of a newer release are fine.
        let mut newer = applied(MIGRATIONS.len());
        newer.push("m011_future".into());
        assert!(SchemaState::judge(&newer, None).is_ok());
    }

    #[test]
    fn the_serving_model_is_read_from_the_registry_once_it_exists() {
        let gemini = EmbeddingModel::gemini_embedding_001_768();
        let state = SchemaState::judge(
            &applied(MIGRATIONS.len()),
            Some("(gemini-embedding-001,768)"),
        )
        .unwrap();
        assert_eq!(state.serving, Some(gemini.clone()));
        assert!(state.scope(&gemini).registry);
        let before_m010 = SchemaState::judge(&applied(MIGRATIONS.len() - 1), None).unwrap();
        assert!(!before_m010.scope(&gemini).registry);
        assert_eq!(parse_row("(\"a,b\",768)"), None);
        assert_eq!(
            parse_row("(models/x@1,1536)"),
            EmbeddingModel::new("models/x@1", 1536).ok()
        );
    }
}
