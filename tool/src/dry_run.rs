//! `up --dry-run`: applies the pending migrations inside one transaction on
//! the real database, reports what they change and rolls everything back.
//!
//! The migrator opens a transaction per migration; on a
//! `DatabaseTransaction` those become savepoints, so the migrations run
//! exactly as they would (same statements, same checks, same locks, the
//! `seaql_migrations` rows included) and the final `ROLLBACK` undoes all of
//! it. What changed is the difference between two catalog snapshots taken
//! inside the transaction.
//!
//! The locks the migrations take are held until the rollback, as in a real
//! run; `lock_timeout` applies the same way.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, TransactionTrait};
use serde::Serialize;

use migration::Migrator;
use migration::catalog::{Catalog, Change};
use migration::status::recorded;

/// What `up --dry-run` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DryRunReport {
    /// Migrations that would be applied, in order.
    pub would_apply: Vec<String>,
    /// Schema changes they would make.
    pub changes: Vec<Change>,
    /// Always true: the transaction was rolled back.
    pub rolled_back: bool,
}

/// Applies up to `steps` pending migrations (all when `None`) in a
/// transaction, diffs the catalog and rolls back.
///
/// `db` is a connection or a transaction (then the dry run is a savepoint
/// of it, rolled back the same way: the migration binary runs it inside
/// its locked transaction).
///
/// # Errors
/// The error of the failing migration (the transaction is rolled back all
/// the same), or of the snapshots.
pub async fn dry_run_up<C>(db: &C, steps: Option<u32>) -> Result<DryRunReport, DbErr>
where
    C: TransactionTrait<Transaction = DatabaseTransaction>,
{
    let txn = db.begin().await?;
    let outcome = async {
        let before = Catalog::snapshot(&txn).await?;
        let applied_before = recorded(&txn).await?;
        Migrator::up(&txn, steps).await?;
        let after = Catalog::snapshot(&txn).await?;
        let applied_after = recorded(&txn).await?;
        Ok::<_, DbErr>(DryRunReport {
            would_apply: applied_after
                .into_iter()
                .filter(|m| !applied_before.contains(m))
                .collect(),
            changes: before.diff(&after),
            rolled_back: true,
        })
    }
    .await;
    txn.rollback().await?;
    outcome
}

impl std::fmt::Display for DryRunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.would_apply.is_empty() {
            return write!(
                f,
                "Dry run: no pending migrations; nothing would change (rolled back)."
            );
        }
        writeln!(
            f,
            "Dry run: {} migration(s) would be applied:",
            self.would_apply.len()
        )?;
        for m in &self.would_apply {
            writeln!(f, "  {m}")?;
        }
        writeln!(f, "Schema changes ({}):", self.changes.len())?;
        for c in &self.changes {
            writeln!(f, "  {c}")?;
        }
        write!(
            f,
            "Rolled back: nothing was changed. Run `up` without --dry-run to apply."
        )
    }
}
