//! What an import did, row by row: [`ImportReport`]. Printed for humans
//! (`Display`) and written as JSON (`--report FILE`, `serde`).
//!
//! The JSON document's top-level `tables` object is keyed by legacy table
//! name; each entry has the integers `read`, `imported` and `excluded`, and
//! `read == imported + excluded` always holds ([`ImportReport::check_totals`]).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use migration::detect::LegacyVersion;

/// Rows of one legacy table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    /// Rows read from the source.
    pub read: u64,
    /// Rows written to the target (normalized or not).
    pub imported: u64,
    /// Rows left out, each listed in [`ImportReport::exclusions`].
    pub excluded: u64,
}

/// A value the import changed so that the row fits this schema.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Normalization {
    /// Legacy table.
    pub table: String,
    /// The row's id in the source (a number, or a uuid for v0/v1 chunks).
    pub legacy_id: Json,
    /// The column (target name).
    pub column: String,
    /// The value in the source.
    pub before: Json,
    /// The value written.
    pub after: Json,
    /// Which rule (README, "Coming from the TypeScript app").
    pub rule: String,
}

/// A row left out, with everything it held.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exclusion {
    /// Legacy table.
    pub table: String,
    /// The row's id in the source.
    pub legacy_id: Json,
    /// Why it cannot be imported.
    pub reason: String,
    /// The full original row (`to_jsonb` of the source row: bytea as
    /// `\x...` hex, vectors as text).
    pub row: Json,
}

/// A row the import created that the source did not have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Created {
    /// Target table.
    pub table: String,
    /// Its id.
    pub id: String,
    /// Why.
    pub reason: String,
    /// The row as written.
    pub row: Json,
}

/// Something imported as it was that deserves a look.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Warning {
    /// Legacy table, if the warning is about rows.
    pub table: Option<String>,
    /// The row's id in the source, if about one row.
    pub legacy_id: Option<Json>,
    /// What and what to do.
    pub message: String,
}

/// A table of the source outside this data layer: left where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnownedTable {
    /// Table name.
    pub table: String,
    /// Its row count.
    pub rows: i64,
}

/// A checksum of the data that must arrive unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checksum {
    /// What is hashed.
    pub covers: String,
    /// Rows hashed.
    pub rows: i64,
    /// Computed on the source snapshot, over the imported rows.
    pub source: String,
    /// Computed on the target inside the import's transaction, before
    /// commit (absent in a dry run).
    pub target: Option<String>,
}

/// How the source's naive timestamps were read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceTimeZone {
    /// The zone the app's `CURRENT_TIMESTAMP` values are interpreted in.
    pub zone: String,
    /// Where it came from.
    pub determined_by: String,
}

/// Everything an import (or a dry run) did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImportReport {
    /// The source (`postgres://user@host:port/db`, no password).
    pub source: String,
    /// The target.
    pub target: String,
    /// A dry run writes nothing.
    pub dry_run: bool,
    /// The target transaction was committed.
    pub committed: bool,
    /// The detected schema version.
    pub version: LegacyVersion,
    /// Why that version.
    pub version_evidence: Vec<String>,
    /// The embedding model every imported chunk is stamped with
    /// (`metadata.embedding_model`).
    pub embedding_model: String,
    /// Interpretation of `timestamp without time zone` values.
    pub source_timezone: SourceTimeZone,
    /// The time written where the source had no timestamp (RFC 3339).
    pub import_time: String,
    /// Migrations applied to the target before the import.
    pub migrations_applied: Vec<String>,
    /// Per legacy table: read, imported, excluded.
    pub tables: BTreeMap<String, TableCounts>,
    /// Every value changed to fit the schema.
    pub normalizations: Vec<Normalization>,
    /// Every row left out, with the full original row.
    pub exclusions: Vec<Exclusion>,
    /// Rows created that the source did not have (v0's profiles).
    pub created: Vec<Created>,
    /// Rows imported as they were that need attention.
    pub warnings: Vec<Warning>,
    /// Tables of the source this data layer does not have (left there).
    pub unowned_tables: Vec<UnownedTable>,
    /// Views of the source (left there).
    pub unowned_views: Vec<String>,
    /// Checksums of what must arrive unchanged, by legacy table.
    pub checksums: BTreeMap<String, Checksum>,
    /// How the chunks' HNSW index was handled.
    pub chunk_index: String,
    /// Seconds per phase.
    pub timings: BTreeMap<String, f64>,
}

impl ImportReport {
    /// Asserts the numbers add up: per table, `read == imported + excluded`,
    /// and the exclusions listed per table equal `excluded`.
    ///
    /// # Errors
    /// A description of the first table that does not add up.
    pub fn check_totals(&self) -> Result<(), String> {
        for (table, c) in &self.tables {
            if c.read != c.imported + c.excluded {
                return Err(format!(
                    "{table}: read {} != imported {} + excluded {}",
                    c.read, c.imported, c.excluded
                ));
            }
            let listed = self.exclusions.iter().filter(|e| &e.table == table).count() as u64;
            if listed != c.excluded {
                return Err(format!(
                    "{table}: {} exclusions listed, {} counted",
                    listed, c.excluded
                ));
            }
        }
        Ok(())
    }
}

fn compact(v: &Json) -> String {
    match v {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {} -> {}",
            if self.dry_run {
                "Dry run of the import"
            } else {
                "Import"
            },
            self.source,
            self.target
        )?;
        writeln!(
            f,
            "Source: TypeScript app database, version {}",
            self.version
        )?;
        for e in &self.version_evidence {
            writeln!(f, "  because {e}")?;
        }
        writeln!(
            f,
            "Chunks stamped with embedding model {}",
            self.embedding_model
        )?;
        writeln!(
            f,
            "Timestamps without time zone read as {} ({}); missing ones set to {}",
            self.source_timezone.zone, self.source_timezone.determined_by, self.import_time
        )?;
        if !self.migrations_applied.is_empty() {
            writeln!(
                f,
                "Target migrated first: {}",
                self.migrations_applied.join(", ")
            )?;
        }
        writeln!(f, "\nTables (read = imported + excluded):")?;
        let width = self.tables.keys().map(String::len).max().unwrap_or(0);
        for (table, c) in &self.tables {
            writeln!(
                f,
                "  {table:<width$}  read {:>7}  imported {:>7}  excluded {:>7}",
                c.read, c.imported, c.excluded
            )?;
        }
        writeln!(f, "\nNormalizations ({}):", self.normalizations.len())?;
        for n in &self.normalizations {
            writeln!(
                f,
                "  {} {} {}: {} -> {} ({})",
                n.table,
                compact(&n.legacy_id),
                n.column,
                compact(&n.before),
                compact(&n.after),
                n.rule
            )?;
        }
        writeln!(
            f,
            "\nExclusions ({}), each with its full original row:",
            self.exclusions.len()
        )?;
        for e in &self.exclusions {
            writeln!(f, "  {} {}: {}", e.table, compact(&e.legacy_id), e.reason)?;
            writeln!(f, "    row: {}", e.row)?;
        }
        if !self.created.is_empty() {
            writeln!(f, "\nCreated ({}):", self.created.len())?;
            for c in &self.created {
                writeln!(f, "  {} {}: {}", c.table, c.id, c.reason)?;
            }
        }
        if !self.warnings.is_empty() {
            writeln!(f, "\nWarnings ({}):", self.warnings.len())?;
            for w in &self.warnings {
                match (&w.table, &w.legacy_id) {
                    (Some(t), Some(id)) => writeln!(f, "  {t} {}: {}", compact(id), w.message)?,
                    (Some(t), None) => writeln!(f, "  {t}: {}", w.message)?,
                    _ => writeln!(f, "  {}", w.message)?,
                }
            }
        }
        if !self.unowned_tables.is_empty() || !self.unowned_views.is_empty() {
            writeln!(
                f,
                "\nLeft in the source (outside this data layer, not copied):"
            )?;
            for t in &self.unowned_tables {
                writeln!(f, "  table {} ({} rows)", t.table, t.rows)?;
            }
            for v in &self.unowned_views {
                writeln!(f, "  view {v}")?;
            }
        }
        writeln!(f, "\nChecksums:")?;
        for (table, c) in &self.checksums {
            match &c.target {
                Some(t) => writeln!(
                    f,
                    "  {table}: {} rows, {}: source {} target {} ({})",
                    c.rows,
                    c.covers,
                    c.source,
                    t,
                    if *t == c.source { "equal" } else { "DIFFERENT" }
                )?,
                None => writeln!(
                    f,
                    "  {table}: {} rows, {}: source {}",
                    c.rows, c.covers, c.source
                )?,
            }
        }
        writeln!(f, "Chunk index: {}", self.chunk_index)?;
        if self.dry_run {
            write!(
                f,
                "\nDry run: nothing was written to the target. Run again without --dry-run to import."
            )
        } else if self.committed {
            write!(
                f,
                "\nCommitted. Next: `migration verify`, then point DATABASE_URL of the application \
                 at the target."
            )
        } else {
            write!(f, "\nNot committed: the target is unchanged.")
        }
    }
}
