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
/// and the model declared for unstamped chunks, read in one statement.
const STATE_SQL: &str = "\
    SELECT coalesce((SELECT array_agg(version::text) FROM seaql_migrations), '{}') AS applied, \
           (SELECT (name, dimensions)::text FROM embedding_models WHERE unstamped) AS unstamped";
const NO_MODELS_SQL: &str = "\
    SELECT coalesce((SELECT array_agg(version::text) FROM seaql_migrations), '{}') AS applied, \
           NULL::text AS unstamped";

/// What [`crate::DbConfig::connect`] learnt about the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SchemaState {
    /// The newest migration is pending: the handle runs without it.
    pub one_behind: Option<&'static str>,
    /// The model of the chunks written without a stamp, as the database
    /// declares it (`None`: not declared, or `embedding_models` missing).
    pub unstamped: Option<EmbeddingModel>,
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
        let (applied, unstamped): (Vec<String>, Option<String>) = if migrated {
            let row = txn
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    if models { STATE_SQL } else { NO_MODELS_SQL },
                ))
                .await?
                .ok_or_else(|| Error::Config("the schema check returned no row".into()))?;
            (row.try_get("", "applied")?, row.try_get("", "unstamped")?)
        } else {
            (Vec::new(), None)
        };
        txn.rollback().await?;
        let state = Self::judge(&applied, unstamped.as_deref())?;
        Ok(state)
    }

    /// The decision, from the applied migrations and the registry's
    /// `(name,dimensions)` row text for unstamped chunks.
    fn judge(applied: &[String], unstamped: Option<&str>) -> Result<Self> {
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
        let unstamped = unstamped.and_then(parse_row);
        Ok(Self {
            one_behind,
            unstamped,
        })
    }

    /// The chunks a handle of `model` searches.
    pub fn scope(&self, model: &EmbeddingModel) -> ModelScope {
        // Until m010 is applied no chunk has a stamp and the database
        // declares nothing: the chunks are the handle's model, as for the
        // previous release.
        let includes_unstamped = if self.one_behind == Some(EMBEDDING_MODELS) {
            true
        } else {
            self.unstamped.as_ref() == Some(model)
        };
        ModelScope {
            model: model.clone(),
            includes_unstamped,
        }
    }
}

/// Parses a row value `(name,dimensions)` as PostgreSQL prints it.
fn parse_row(text: &str) -> Option<EmbeddingModel> {
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
    fn unstamped_chunks_belong_to_the_declared_model_only() {
        let gemini = EmbeddingModel::gemini_embedding_001_768();
        let old = EmbeddingModel::text_embedding_004();
        let state = SchemaState::judge(
            &applied(MIGRATIONS.len()),
            Some("(gemini-embedding-001,768)"),
        )
        .unwrap();
        assert!(state.scope(&gemini).includes_unstamped);
        assert!(!state.scope(&old).includes_unstamped);
        let undeclared = SchemaState::judge(&applied(MIGRATIONS.len()), None).unwrap();
        assert!(!undeclared.scope(&gemini).includes_unstamped);
        let before_m010 = SchemaState::judge(&applied(MIGRATIONS.len() - 1), None).unwrap();
        assert!(before_m010.scope(&old).includes_unstamped);
        assert_eq!(parse_row("(\"a,b\",768)"), None);
        assert_eq!(
            parse_row("(models/x@1,1536)"),
            EmbeddingModel::new("models/x@1", 1536).ok()
        );
    }
}
