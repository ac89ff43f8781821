//! `migration import --from <legacy-url>`: copies a database of the
//! TypeScript app into this project's schema, accounting for every row.
//!
//! | module | responsibility |
//! |---|---|
//! | [`detect`] | which legacy version the source has (catalog, and data for v0) |
//! | `source` | the source: one `REPEATABLE READ, READ ONLY` snapshot, rows and `COPY ... TO STDOUT` streams |
//! | `plan` | the rules: each row imported, normalized (recorded) or excluded (recorded with the full row) |
//! | [`copy`] | the binary `COPY` format, both directions |
//! | `target` | the target: one transaction, binary `COPY` in, checksums before commit |
//! | [`report`] | [`ImportReport`]: human-readable and JSON |
//!
//! The steps of [`import`]:
//! 1. open the source snapshot; detect the version; refuse an unknown shape,
//!    and tables outside this data layer unless acknowledged
//!    ([`ImportOptions::leave_unowned_tables`]);
//! 2. refuse a target with application rows;
//! 3. read profiles, preferences and resumes (without PDFs) and decide
//!    every row;
//! 4. take the migration lock, migrate the target (`Migrator::up`, guarded);
//! 5. in one transaction: lock the tables, `COPY` profiles, preferences,
//!    resumes (PDF bytes streamed from the source), the legacy-id map and
//!    the chunks (streamed and rewritten row by row; the HNSW index dropped
//!    first and rebuilt after), compare row counts and checksums with the
//!    source, and commit. Any failure rolls everything back.
//!
//! A dry run ([`ImportOptions::dry_run`]) reads and decides everything,
//! computes the source checksums, and writes nothing: it does not even
//! migrate the target.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use futures_util::TryStreamExt;
use pgconn::DbUrl;
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::sqlx::postgres::{PgConnection, PgCopyIn};
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value as Json, json};
use uuid::Uuid;

use migration::Migrator;
use migration::lock::{self, MIGRATION_LOCK_KEY, RunOptions};
use migration::search_path;

pub mod copy;
mod plan;
pub mod report;
mod source;
mod target;

use migration::detect::{self, ChunkLayout, LegacyVersion, ShapeMismatch};
use mockinterview_db::EmbeddingModel;
use plan::{ChunkRules, Ledger, LegacyChunk, ProfileRow, ResumeRow};
pub use report::ImportReport;
use report::{Checksum, Created, UnownedTable, Warning};
use source::Source;

/// What to import and how.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The legacy database.
    pub from: DbUrl,
    /// Read and decide everything, write nothing.
    pub dry_run: bool,
    /// Acknowledge that tables outside this data layer stay in the source.
    pub leave_unowned_tables: bool,
    /// The zone the source's naive timestamps are in; `None` asks the
    /// source server (see the report's `source_timezone`).
    pub source_timezone: Option<String>,
    /// Keep the chunks' HNSW index while loading (every row is inserted
    /// into the graph) instead of dropping it and building it once after
    /// the load. Slower; for measurements.
    pub keep_chunk_index: bool,
    /// `maintenance_work_mem` for rebuilding the HNSW index; `None`: 1 GB,
    /// or about 5 KB per chunk when that is more (at most 8 GB).
    pub maintenance_work_mem: Option<String>,
    /// The target's schema and settings (`-s`, the URL's `options`), applied
    /// inside every transaction on the target, as the migrator does.
    pub run: RunOptions,
    /// The model that made the source's embeddings (`--embedding-model`,
    /// `--embedding-dimensions`). `None`: the one the detected version
    /// used, and a refusal where the version cannot tell (see
    /// [`ImportError::EmbeddingModelUnknown`]).
    pub embedding_model: Option<EmbeddingModel>,
}

impl ImportOptions {
    /// Defaults: a real import that refuses unowned tables.
    pub fn new(from: DbUrl) -> Self {
        Self {
            from,
            dry_run: false,
            leave_unowned_tables: false,
            source_timezone: None,
            keep_chunk_index: false,
            maintenance_work_mem: None,
            run: RunOptions::default(),
            embedding_model: None,
        }
    }
}

/// Why an import did not happen. Every variant leaves the target without
/// application rows (and the source untouched).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The source could not be reached or read.
    #[error("cannot read the source database ({what}): {message}")]
    Source {
        /// What was being done.
        what: String,
        /// The error.
        message: String,
    },
    /// The time zone for the source's timestamps is not known to PostgreSQL.
    #[error(
        "the time zone {zone:?} for the source's timestamps is not valid ({message}); pass \
         --source-timezone with a zone PostgreSQL knows, e.g. UTC or Europe/Berlin"
    )]
    TimeZone {
        /// The zone tried.
        zone: String,
        /// PostgreSQL's answer.
        message: String,
    },
    /// The source is not a database of any known version of the app.
    #[error(
        "refusing to import: {0}Nothing was written. The import knows the schemas v0 to v5 of \
         the TypeScript app (see the README, \"Coming from the TypeScript app\"); bring the \
         source to one of them, or copy its data by hand"
    )]
    UnknownShape(ShapeMismatch),
    /// The source has tables this data layer does not have, and the user did
    /// not acknowledge that they stay behind.
    #[error("{}", unowned_message(.tables, .views))]
    UnownedTables {
        /// The tables with their row counts.
        tables: Vec<UnownedTable>,
        /// The views.
        views: Vec<String>,
    },
    /// The source's version does not tell which embedding model made its
    /// vectors, and the operator did not say.
    #[error(
        "cannot tell which embedding model made the source's vectors: {reason}. The TypeScript \
         app embedded with text-embedding-004 until its commit 86f8fc7 and with \
         gemini-embedding-001 at 768 dimensions from then on; say which with \
         --embedding-model NAME --embedding-dimensions 768 (the import stamps every chunk \
         with it, and searches compare only chunks of one model)"
    )]
    EmbeddingModelUnknown {
        /// Why the version cannot tell.
        reason: String,
    },
    /// The target has application rows.
    #[error("{}", not_empty_message(.0))]
    TargetNotEmpty(Vec<(String, i64)>),
    /// `--from` names the target itself.
    #[error(
        "the source and the target are the same database ({0}): import into a new, empty \
         database (DATABASE_URL) from the legacy one (--from)"
    )]
    SameDatabase(String),
    /// Migrating the target failed (or was refused).
    #[error("migrating the target failed, nothing was imported: {0}")]
    Migrate(String),
    /// Writing the target failed; its transaction was rolled back.
    #[error(
        "writing the target failed while {what}: {message}. The import's transaction was rolled \
         back: the target holds no application rows"
    )]
    Target {
        /// What was being done.
        what: String,
        /// The error.
        message: String,
    },
    /// What arrived differs from what was read.
    #[error(
        "{table}: {what} differs between the source ({source_value}) and the target \
         ({target_value}); the import's transaction was rolled back: the target holds no \
         application rows. This is a bug: please report it with the --dry-run report"
    )]
    Mismatch {
        /// Legacy table.
        table: String,
        /// Row count or checksum.
        what: String,
        /// On the source.
        source_value: String,
        /// On the target.
        target_value: String,
    },
}

impl ImportError {
    pub(crate) fn source(what: &str, e: sea_orm_migration::sea_orm::sqlx::Error) -> Self {
        Self::Source {
            what: what.to_owned(),
            message: e
                .as_database_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
        }
    }
}

fn unowned_message(tables: &[UnownedTable], views: &[String]) -> String {
    let mut msg = String::from(
        "refusing to import: the source has tables outside this data layer, which the import \
         does not copy; they stay in the source:\n",
    );
    for t in tables {
        msg.push_str(&format!("  - table {} ({} rows)\n", t.table, t.rows));
    }
    for v in views {
        msg.push_str(&format!("  - view {v}\n"));
    }
    msg.push_str(
        "Nothing was written. Keep the source database for them (or export them with pg_dump \
         -t), then run again with --leave-unowned-tables to acknowledge that they are not \
         imported.",
    );
    msg
}

fn not_empty_message(tables: &[(String, i64)]) -> String {
    let list: Vec<String> = tables
        .iter()
        .map(|(t, n)| {
            if *n > 100_000 {
                format!("{t} (over 100000 rows)")
            } else {
                format!("{t} ({n} rows)")
            }
        })
        .collect();
    format!(
        "refusing to import: the target already holds application rows: {}. Nothing was \
         written. Import into a new, empty database (createdb, then point DATABASE_URL at it); \
         the import never merges into existing data",
        list.join(", ")
    )
}

/// Imports the legacy database `options.from` into `target` (a dry run
/// writes nothing), and reports what became of every row.
///
/// # Errors
/// [`ImportError`]: every variant leaves the target without application
/// rows; the source is only ever read.
pub async fn import(
    target: &DatabaseConnection,
    options: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let source = Source::open(&options.from, options.source_timezone.as_deref()).await?;
    let outcome = run(target, &source, options).await;
    source.close().await;
    outcome
}

/// Phase timer.
struct Timer {
    start: Instant,
    timings: BTreeMap<String, f64>,
}

impl Timer {
    fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.timings
            .insert(name.to_owned(), (now - self.start).as_secs_f64());
        self.start = now;
    }
}

async fn run(
    target: &DatabaseConnection,
    source: &Source,
    options: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut timer = Timer {
        start: Instant::now(),
        timings: BTreeMap::new(),
    };
    same_database_check(target, source).await?;

    // 1. What the source is.
    let catalog = source.catalog().await?;
    let detected = detect::detect(&catalog).map_err(ImportError::UnknownShape)?;
    let version = detected.version;
    let mut evidence = detected.evidence.clone();
    let mut v0_post_switch = 0;
    if version == LegacyVersion::V0 {
        let (total, with_resume, with_user, with_index) = source.v0_metadata_counts().await?;
        v0_post_switch = with_index;
        if with_resume > 0 {
            return Err(ImportError::UnknownShape(ShapeMismatch {
                closest: Some(LegacyVersion::V0),
                differences: vec![format!(
                    "{with_resume} of {total} chunks name a resume (metadata.resume_id), which \
                     the v0 app never wrote: the chunks come from a later app without its \
                     user_profiles, user_preferences and resumes tables"
                )],
            }));
        }
        evidence.push(Source::v0_evidence(total, with_user));
    }
    let embedding_model = embedding_model(version, v0_post_switch, options)?;
    let unowned = source.counts(&detected.unowned_tables).await?;
    let views = source.views().await?;
    if (!unowned.is_empty() || !views.is_empty()) && !options.leave_unowned_tables {
        return Err(ImportError::UnownedTables {
            tables: unowned,
            views,
        });
    }
    let mut ledger = Ledger::default();
    if source.has_seaql_migrations().await? {
        ledger.warnings.push(Warning {
            table: None,
            legacy_id: None,
            message: "the source has a seaql_migrations table: this project's `migration up` ran \
                      on it before it refused foreign schemas, recorded its migrations and \
                      converted nothing (it may have added set_updated_at() and trg_* triggers \
                      to the app's tables). Nothing of it is imported."
                .into(),
        });
    }

    // 2. The target must be empty; what `up` will apply to it.
    let (not_empty, pending) = {
        let txn = options
            .run
            .begin_read_only(target)
            .await
            .map_err(|e| ImportError::Target {
                what: "checking that the target is empty".into(),
                message: e.to_string(),
            })?;
        let rows = target::application_rows(&txn).await;
        let pending = Migrator::get_pending_migrations_read_only(&txn).await;
        txn.rollback().await.ok();
        let pending: Vec<String> = pending
            .map_err(|e| ImportError::Migrate(e.to_string()))?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        (rows?, pending)
    };
    if !not_empty.is_empty() {
        return Err(ImportError::TargetNotEmpty(not_empty));
    }
    timer.lap("detect");

    // 3. Decide every profile, preference and resume.
    let import_time = Utc::now().trunc_subsecs(6);
    let (profiles_src, prefs_src, resumes_src) = if version == LegacyVersion::V0 {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        (
            source.profiles().await?,
            source.preferences().await?,
            source.resumes().await?,
        )
    };
    let (profiles, profile_outcome) = plan::plan_profiles(&mut ledger, &profiles_src, import_time);
    let preferences =
        plan::plan_preferences(&mut ledger, &prefs_src, &profile_outcome, import_time);
    let uid_to_profile: HashMap<String, i32> =
        profiles_src.iter().map(|p| (p.uid.clone(), p.id)).collect();
    let (resumes, resume_outcome) = plan::plan_resumes(
        &mut ledger,
        &resumes_src,
        &profile_outcome,
        &uid_to_profile,
        import_time,
    );
    let excluded_resumes: Vec<i32> = {
        let mut ids: Vec<i32> = plan::excluded_ids(&resume_outcome).into_iter().collect();
        ids.sort_unstable();
        ids
    };
    if !excluded_resumes.is_empty() {
        // The full rows of excluded resumes, PDF bytes included.
        let full: HashMap<String, Json> = source
            .originals_by_int("resumes", &excluded_resumes)
            .await?
            .into_iter()
            .map(|(id, row)| (id.to_string(), row))
            .collect();
        for e in ledger
            .exclusions
            .iter_mut()
            .filter(|e| e.table == "resumes")
        {
            if let Some(row) = full.get(&e.legacy_id.to_string()) {
                e.row = row.clone();
            }
        }
    }
    let chunk_rules = ChunkRules::new(
        version,
        &embedding_model,
        plan::outcome_by_uid(&profiles_src, &profile_outcome),
        resume_outcome,
    );
    let mut legacy_ids: Vec<(&'static str, i64, Uuid)> = Vec::new();
    legacy_ids.extend(
        profiles
            .iter()
            .filter_map(|p| p.legacy_id.map(|l| ("user_profiles", i64::from(l), p.id))),
    );
    legacy_ids.extend(
        preferences
            .iter()
            .map(|p| ("user_preferences", i64::from(p.legacy_id), p.id)),
    );
    legacy_ids.extend(
        resumes
            .iter()
            .map(|r| ("resumes", i64::from(r.legacy_id), r.id)),
    );
    timer.lap("plan");

    let mut report = ImportReport {
        source: source.url.to_string(),
        target: target::describe(target),
        dry_run: options.dry_run,
        committed: false,
        version,
        version_evidence: evidence,
        embedding_model: embedding_model.to_string(),
        source_timezone: source.zone.clone(),
        import_time: plan::show_time(&import_time),
        migrations_applied: Vec::new(),
        tables: BTreeMap::new(),
        normalizations: Vec::new(),
        exclusions: Vec::new(),
        created: Vec::new(),
        warnings: Vec::new(),
        unowned_tables: unowned,
        unowned_views: views,
        checksums: BTreeMap::new(),
        chunk_index: String::new(),
        timings: BTreeMap::new(),
    };

    let load = Load {
        version,
        layout: detected.chunk_layout,
        profiles,
        preferences,
        resumes,
        legacy_ids,
        import_time,
        embedding_model: embedding_model.clone(),
    };
    if options.dry_run {
        report.migrations_applied = pending
            .iter()
            .map(|m| format!("{m} (would be applied)"))
            .collect();
        let mut state = Streamed::new(chunk_rules);
        stream_resumes(source, &load, None, &mut state).await?;
        timer.lap("resumes");
        stream_chunks(source, &load, None, &mut state).await?;
        timer.lap("chunks");
        report.chunk_index = "dry run: not touched".into();
        finish_report(source, &load, &mut ledger, &mut state, &mut report, None).await?;
        timer.lap("checksums");
    } else {
        // Migrations: the migrator's own locked run (one transaction).
        if !pending.is_empty() {
            lock::up_locked_with(target, &options.run, None)
                .await
                .map_err(|e| {
                    ImportError::Migrate(match e {
                        sea_orm_migration::DbErr::Migration(m)
                        | sea_orm_migration::DbErr::Custom(m) => m,
                        other => other.to_string(),
                    })
                })?;
        }
        report.migrations_applied = pending;
        timer.lap("migrate");
        write(
            target,
            source,
            options,
            &load,
            chunk_rules,
            &mut ledger,
            &mut report,
            &mut timer,
        )
        .await?;
    }
    report.tables = ledger.tables;
    report.normalizations = ledger.normalizations;
    report.exclusions = ledger.exclusions;
    report.warnings.extend(ledger.warnings);
    report.timings = timer.timings;
    Ok(report)
}

/// Refuses when `--from` is the target itself.
async fn same_database_check(
    target: &DatabaseConnection,
    source: &Source,
) -> Result<(), ImportError> {
    const WHO: &str =
        "SELECT current_database()::text || '@' || pg_postmaster_start_time()::text AS who";
    let here = target
        .query_one_raw(Statement::from_string(DbBackend::Postgres, WHO))
        .await
        .map_err(|e| ImportError::Target {
            what: "connecting".into(),
            message: e.to_string(),
        })?
        .and_then(|r| r.try_get::<String>("", "who").ok());
    let there = source.identity().await?;
    if here.as_deref() == Some(there.as_str()) {
        return Err(ImportError::SameDatabase(source.url.target()));
    }
    Ok(())
}

/// Everything decided before the streams start.
struct Load {
    version: LegacyVersion,
    layout: ChunkLayout,
    profiles: Vec<ProfileRow>,
    preferences: Vec<plan::PreferencesRow>,
    resumes: Vec<ResumeRow>,
    legacy_ids: Vec<(&'static str, i64, Uuid)>,
    import_time: DateTime<Utc>,
    /// The model the chunks are stamped with, which resume_chunks serves
    /// after the import.
    embedding_model: EmbeddingModel,
}

/// What the streams found.
struct Streamed {
    rules: ChunkRules,
    chunk_rows: Vec<(Json, String)>,
    excluded_int: Vec<i32>,
    excluded_uuid: Vec<Uuid>,
    chunks_read: u64,
    chunks_imported: u64,
    pdf_rows: u64,
    /// Imported chunks without an embedding (legacy ids).
    without_embedding: Vec<Json>,
}

impl Streamed {
    fn new(rules: ChunkRules) -> Self {
        Self {
            rules,
            chunk_rows: Vec::new(),
            excluded_int: Vec::new(),
            excluded_uuid: Vec::new(),
            chunks_read: 0,
            chunks_imported: 0,
            pdf_rows: 0,
            without_embedding: Vec::new(),
        }
    }
}

fn decode_failed(e: copy::DecodeError) -> ImportError {
    ImportError::Source {
        what: "reading a COPY stream".into(),
        message: e.to_string(),
    }
}

/// Streams `(id, file_data)` of every resume from the source and, when
/// `tx` is given, `COPY`s the imported ones into the target.
async fn stream_resumes(
    source: &Source,
    load: &Load,
    tx: Option<&mut PgConnection>,
    state: &mut Streamed,
) -> Result<(), ImportError> {
    if load.version == LegacyVersion::V0 {
        return Ok(());
    }
    let by_legacy: HashMap<i32, &ResumeRow> =
        load.resumes.iter().map(|r| (r.legacy_id, r)).collect();
    let mut copy: Option<PgCopyIn<&mut PgConnection>> = match tx {
        Some(tx) => Some(target::copy_in(tx, "resumes", target::RESUME_COLUMNS).await?),
        None => None,
    };
    let mut stream = source.copy_pdfs().await?;
    let mut dec = copy::Decoder::new();
    let mut enc = copy::Encoder::new();
    while let Some(piece) = stream
        .try_next()
        .await
        .map_err(|e| ImportError::source("streaming resumes", e))?
    {
        dec.push(&piece);
        while let Some(row) = dec.next_row().map_err(decode_failed)? {
            let id = dec.field(&row[0]).and_then(copy::int4);
            let Some(resume) = id.and_then(|id| by_legacy.get(&id)) else {
                continue;
            };
            state.pdf_rows += 1;
            if copy.is_some() {
                target::encode_resume(&mut enc, resume, dec.field(&row[1]));
            }
            if let Some(c) = copy.as_mut()
                && enc.is_full()
            {
                target::send(c, &mut enc).await?;
            }
        }
    }
    if let Some(c) = copy {
        target::finish(c, enc).await?;
    }
    Ok(())
}

/// Streams every chunk from the source, applies the chunk rules row by row
/// and, when `tx` is given, `COPY`s the imported ones into the target.
async fn stream_chunks(
    source: &Source,
    load: &Load,
    tx: Option<&mut PgConnection>,
    state: &mut Streamed,
) -> Result<(), ImportError> {
    let mut copy: Option<PgCopyIn<&mut PgConnection>> = match tx {
        Some(tx) => {
            Some(target::copy_in(tx, "resume_chunks", "id, text, metadata, embedding").await?)
        }
        None => None,
    };
    let serial = load.layout == ChunkLayout::Serial;
    let mut stream = source.copy_chunks(load.layout).await?;
    let mut dec = copy::Decoder::new();
    let mut enc = copy::Encoder::new();
    while let Some(piece) = stream
        .try_next()
        .await
        .map_err(|e| ImportError::source("streaming chunks", e))?
    {
        dec.push(&piece);
        while let Some(row) = dec.next_row().map_err(decode_failed)? {
            state.chunks_read += 1;
            let id_bytes = dec.field(&row[0]).unwrap_or_default();
            let (legacy_id, uuid, int_id) = if serial {
                let id = copy::int4(id_bytes).unwrap_or_default();
                (json!(id), None, Some(id))
            } else {
                let id = copy::uuid(id_bytes).unwrap_or_default();
                (json!(id.to_string()), Some(id), None)
            };
            let chunk = LegacyChunk {
                legacy_id: legacy_id.clone(),
                uuid,
                metadata: dec.field(&row[2]).and_then(copy::jsonb),
                dims: dec
                    .field(&row[4])
                    .and_then(copy::int4)
                    .and_then(|d| usize::try_from(d).ok()),
                resume_id_column: if serial {
                    dec.field(&row[6]).and_then(copy::int4)
                } else {
                    None
                },
                chunk_index_column: if serial {
                    dec.field(&row[7]).and_then(copy::int4)
                } else {
                    None
                },
                created_at_column: if serial {
                    dec.field(&row[8]).and_then(copy::timestamptz)
                } else {
                    None
                },
            };
            let nfc = dec.field(&row[5]).and_then(|b| std::str::from_utf8(b).ok());
            match state.rules.map(&chunk, nfc) {
                Ok(mapped) => {
                    state.chunks_imported += 1;
                    if chunk.dims.is_none() {
                        state.without_embedding.push(legacy_id.clone());
                    }
                    if let Some(c) = copy.as_mut() {
                        enc.row(4)
                            .uuid(&mapped.id)
                            .raw(dec.field(&row[1]))
                            .jsonb(&mapped.metadata)
                            .raw(dec.field(&row[3]));
                        if enc.is_full() {
                            target::send(c, &mut enc).await?;
                        }
                    }
                }
                Err(reason) => {
                    match (int_id, uuid) {
                        (Some(i), _) => state.excluded_int.push(i),
                        (None, Some(u)) => state.excluded_uuid.push(u),
                        _ => {}
                    }
                    state.chunk_rows.push((legacy_id, reason));
                }
            }
        }
    }
    if let Some(c) = copy {
        target::finish(c, enc).await?;
    }
    Ok(())
}

/// Counts, exclusions with full rows, created profiles and the source
/// checksums; with `tx`, the target checksums too (and their comparison).
async fn finish_report(
    source: &Source,
    load: &Load,
    ledger: &mut Ledger,
    state: &mut Streamed,
    report: &mut ImportReport,
    mut tx: Option<&mut PgConnection>,
) -> Result<(), ImportError> {
    // Chunk exclusions, with the full original rows.
    let originals: HashMap<String, Json> = match load.layout {
        ChunkLayout::Serial => {
            source
                .originals_by_int("resume_chunks", &state.excluded_int)
                .await?
        }
        ChunkLayout::LangChain => source.chunk_originals_by_uuid(&state.excluded_uuid).await?,
    }
    .into_iter()
    .map(|(id, row)| (id.to_string(), row))
    .collect();
    ledger.add("resume_chunks", state.chunks_read, state.chunks_imported);
    for (id, reason) in std::mem::take(&mut state.chunk_rows) {
        let row = originals
            .get(&id.to_string())
            .cloned()
            .unwrap_or(Json::Null);
        ledger.exclude("resume_chunks", id, reason, row);
    }
    for table in ["user_profiles", "user_preferences", "resumes"] {
        if load.version != LegacyVersion::V0 {
            ledger.tables.entry(table.into()).or_default();
        }
    }
    for id in std::mem::take(&mut state.without_embedding) {
        report.warnings.push(Warning {
            table: Some("resume_chunks".into()),
            legacy_id: Some(id),
            message: "no embedding (NULL): imported as it is; searches skip it until it is \
                      re-embedded (its text is kept)"
                .into(),
        });
    }
    // Profiles created for v0 chunks.
    for (uid, id, nfc) in state.rules.created_profiles() {
        report.created.push(Created {
            table: "user_profiles".into(),
            id: id.to_string(),
            reason: format!(
                "v0 has no profile table; its chunks name the Firebase uid {uid:?}: a profile \
                 with only that uid (the application fills e-mail and name at the user's next \
                 sign-in)"
            ),
            row: json!({
                "id": id.to_string(),
                "firebase_uid": nfc,
                "created_at": plan::show_time(&load.import_time),
            }),
        });
    }
    if load.version == LegacyVersion::V0 && state.chunks_imported > 0 {
        report.warnings.push(Warning {
            table: Some("resume_chunks".into()),
            legacy_id: None,
            message: "v0 embeddings come from text-embedding-004; the app used \
                      gemini-embedding-001 from commit 86f8fc7 on. If the application embeds \
                      queries with another model than these chunks, re-embed them (their text is \
                      kept)"
                .into(),
        });
    }
    // Checksums: the source's and the target's computed at the same time
    // (two servers, or two sessions of one).
    let with_resumes = load.version != LegacyVersion::V0;
    let resume_ids: Vec<i32> = load.resumes.iter().map(|r| r.legacy_id).collect();
    let on_source = async {
        let chunks = source
            .chunk_checksum(load.layout, &state.excluded_int, &state.excluded_uuid)
            .await?;
        let resumes = if with_resumes {
            Some(source.resume_checksum(&resume_ids).await?)
        } else {
            None
        };
        Ok::<_, ImportError>((chunks, resumes))
    };
    let on_target = async {
        let Some(tx) = tx.as_deref_mut() else {
            return Ok::<_, ImportError>(None);
        };
        let chunks = target::checksum(
            tx,
            &format!(
                "SELECT count(*) AS n, {} AS sum FROM (SELECT {} AS h FROM resume_chunks c) s",
                target::AGGREGATE,
                target::chunk_hash("coalesce(c.metadata ->> 'legacy_id', c.id::text)")
            ),
        )
        .await?;
        let resumes = if with_resumes {
            Some(
                target::checksum(
                    tx,
                    &format!(
                        "SELECT count(*) AS n, {} AS sum FROM (SELECT {} AS h FROM resumes r \
                         JOIN legacy_ids l ON l.table_name = 'resumes' AND l.id = r.id) s",
                        target::AGGREGATE,
                        target::resume_hash("l.legacy_id::text")
                    ),
                )
                .await?,
            )
        } else {
            None
        };
        Ok(Some((chunks, resumes)))
    };
    let (((n, sum), source_resumes), on_target) = tokio::try_join!(on_source, on_target)?;
    let mut chunk_sum = Checksum {
        covers: "legacy id, text and embedding of every imported chunk".into(),
        rows: n,
        source: sum,
        target: None,
    };
    let mut resume_sum = source_resumes.map(|(n, sum)| Checksum {
        covers: "legacy id, content and PDF bytes (file_data) of every imported resume".into(),
        rows: n,
        source: sum,
        target: None,
    });
    if let Some(((n, sum), target_resumes)) = on_target {
        compare(
            "resume_chunks",
            "row count",
            &chunk_sum.rows.to_string(),
            &n.to_string(),
        )?;
        compare("resume_chunks", "checksum", &chunk_sum.source, &sum)?;
        chunk_sum.target = Some(sum);
        if let (Some(r), Some((n, sum))) = (resume_sum.as_mut(), target_resumes) {
            compare("resumes", "row count", &r.rows.to_string(), &n.to_string())?;
            compare("resumes", "checksum", &r.source, &sum)?;
            r.target = Some(sum);
        }
    }
    report.checksums.insert("resume_chunks".into(), chunk_sum);
    if let Some(r) = resume_sum {
        report.checksums.insert("resumes".into(), r);
    }
    Ok(())
}

fn compare(table: &str, what: &str, source: &str, target: &str) -> Result<(), ImportError> {
    if source == target {
        Ok(())
    } else {
        Err(ImportError::Mismatch {
            table: table.into(),
            what: what.into(),
            source_value: source.into(),
            target_value: target.into(),
        })
    }
}

/// Migrates the target, then writes everything in one transaction.
#[allow(clippy::too_many_arguments)]
async fn write(
    target: &DatabaseConnection,
    source: &Source,
    options: &ImportOptions,
    load: &Load,
    rules: ChunkRules,
    ledger: &mut Ledger,
    report: &mut ImportReport,
    timer: &mut Timer,
) -> Result<(), ImportError> {
    let session = WriteSession::open(target, &options.run).await?;
    let outcome = match session.conn().await {
        Ok(conn) => write_in(conn, source, options, load, rules, ledger, report, timer).await,
        Err(e) => Err(e),
    };
    // Rolled back on any failure: the target holds no application rows.
    session.close(outcome.is_ok()).await?;
    outcome?;
    report.committed = true;
    timer.lap("commit");
    Ok(())
}

/// The import's own transaction on the target: a dedicated one-connection
/// pool, opened with the target's connection options, so that sqlx (binary
/// `COPY`) and sea-orm (the migrator's `search_path` helpers) statements run
/// on the same session, inside one `BEGIN` ... `COMMIT`. One transaction
/// also keeps its server connection through a transaction-mode pooler.
struct WriteSession {
    pool: sea_orm_migration::sea_orm::sqlx::PgPool,
}

impl WriteSession {
    async fn open(target: &DatabaseConnection, run: &RunOptions) -> Result<Self, ImportError> {
        use sea_orm_migration::sea_orm::sqlx;
        let options = (*target.get_postgres_connection_pool().connect_options()).clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(target::failed("connecting for the import's transaction"))?;
        let session = Self { pool };
        sqlx::raw_sql("BEGIN")
            .execute(&session.pool)
            .await
            .map_err(target::failed("starting the transaction"))?;
        // The run's schema and settings, as the migrator applies them.
        let orm = sea_orm_migration::sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(
            session.pool.clone(),
        );
        let settings = async {
            for (name, value) in &run.settings {
                orm.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT set_config($1, $2, true)",
                    [name.clone().into(), value.clone().into()],
                ))
                .await?;
            }
            if let Some(schema) = &run.schema {
                search_path::set_local_schema(&orm, schema).await?;
            }
            search_path::include_extension_schemas(&orm).await
        }
        .await;
        if let Err(e) = settings {
            session.close(false).await.ok();
            return Err(ImportError::Target {
                what: "setting the schema".into(),
                message: e.to_string(),
            });
        }
        Ok(session)
    }

    /// The session's connection, for the rest of the transaction.
    async fn conn(
        &self,
    ) -> Result<
        sea_orm_migration::sea_orm::sqlx::pool::PoolConnection<
            sea_orm_migration::sea_orm::sqlx::Postgres,
        >,
        ImportError,
    > {
        self.pool
            .acquire()
            .await
            .map_err(target::failed("acquiring the import's connection"))
    }

    /// Commits (when `commit`) or rolls back, and closes the session.
    async fn close(self, commit: bool) -> Result<(), ImportError> {
        use sea_orm_migration::sea_orm::sqlx;
        let end = if commit { "COMMIT" } else { "ROLLBACK" };
        let outcome = sqlx::raw_sql(end).execute(&self.pool).await;
        // Closing the connection ends the transaction in any case.
        self.pool.close().await;
        if commit {
            outcome.map_err(target::failed("committing"))?;
        }
        Ok(())
    }
}

/// Writes everything in the import's transaction (`conn`, inside `BEGIN`).
#[allow(clippy::too_many_arguments)]
async fn write_in(
    mut conn: sea_orm_migration::sea_orm::sqlx::pool::PoolConnection<
        sea_orm_migration::sea_orm::sqlx::Postgres,
    >,
    source: &Source,
    options: &ImportOptions,
    load: &Load,
    rules: ChunkRules,
    ledger: &mut Ledger,
    report: &mut ImportReport,
    timer: &mut Timer,
) -> Result<(), ImportError> {
    let tx: &mut PgConnection = &mut conn;
    // Other migrators wait until the import has committed.
    target::exec(
        tx,
        &format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"),
        "taking the migration lock",
    )
    .await?;
    target::exec(
        tx,
        &format!(
            "SET LOCAL lock_timeout = '10s'; LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            target::APPLICATION_TABLES.join(", ")
        ),
        "locking the target's tables",
    )
    .await?;
    // Checked again under the lock: nothing was written in between.
    let mut rows = Vec::new();
    for table in target::APPLICATION_TABLES {
        let n = target::count(tx, table).await?;
        if n > 0 {
            rows.push((table.to_owned(), n));
        }
    }
    if !rows.is_empty() {
        return Err(ImportError::TargetNotEmpty(rows));
    }

    target::write_profiles(tx, &load.profiles).await?;
    target::write_preferences(tx, &load.preferences).await?;
    timer.lap("profiles_preferences");
    let mut state = Streamed::new(rules);
    stream_resumes(source, load, Some(&mut *tx), &mut state).await?;
    target::write_legacy_ids(tx, &load.legacy_ids, &load.import_time).await?;
    timer.lap("resumes");

    let dropped = if options.keep_chunk_index {
        Vec::new()
    } else {
        let indexes = target::hnsw_indexes(tx).await?;
        for (name, _) in &indexes {
            target::exec(tx, &format!("DROP INDEX {name}"), "dropping the HNSW index").await?;
        }
        indexes
    };
    stream_chunks(source, load, Some(&mut *tx), &mut state).await?;
    timer.lap("chunks");
    // The chunks' model is the one resume_chunks now serves.
    let model = &load.embedding_model;
    target::exec(
        tx,
        &format!(
            "UPDATE embedding_models SET serving = false WHERE serving; \
             INSERT INTO embedding_models (name, dimensions, serving) VALUES ('{}', {}, true) \
             ON CONFLICT (name, dimensions) DO UPDATE SET serving = true",
            model.name(),
            model.dimensions()
        ),
        "recording the serving embedding model",
    )
    .await?;
    if !dropped.is_empty() {
        let mem = options.maintenance_work_mem.clone().unwrap_or_else(|| {
            let kb = (state.chunks_imported * 5).clamp(1 << 20, 8 << 20);
            format!("{kb}kB")
        });
        target::exec(
            tx,
            &format!(
                "SET LOCAL maintenance_work_mem = '{}'",
                mem.replace('\'', "")
            ),
            "setting maintenance_work_mem",
        )
        .await?;
        for (_, definition) in &dropped {
            target::exec(tx, definition, "rebuilding the HNSW index").await?;
        }
        report.chunk_index = format!(
            "dropped before the load and rebuilt after it in the same transaction \
             (maintenance_work_mem = {mem}): {}",
            dropped
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        report.chunk_index = "kept: every chunk was inserted into the live index".into();
    }
    timer.lap("index");

    // Profiles created for v0 chunks.
    let created: Vec<ProfileRow> = state
        .rules
        .created_profiles()
        .map(|(_, id, nfc)| ProfileRow {
            id: *id,
            legacy_id: None,
            firebase_uid: nfc.clone(),
            email: None,
            display_name: None,
            photo_url: None,
            created_at: load.import_time,
            updated_at: load.import_time,
        })
        .collect();
    if !created.is_empty() {
        target::write_profiles(tx, &created).await?;
    }

    finish_report(source, load, ledger, &mut state, report, Some(&mut *tx)).await?;
    // Every table adds up, and the target holds exactly what was counted.
    let imported = |t: &str| ledger.tables.get(t).map_or(0, |c| c.imported);
    for (table, expected) in [
        (
            "user_profiles",
            imported("user_profiles") + created.len() as u64,
        ),
        ("user_preferences", imported("user_preferences")),
        ("resumes", imported("resumes")),
        ("resume_chunks", imported("resume_chunks")),
        ("legacy_ids", load.legacy_ids.len() as u64),
    ] {
        let n = target::count(tx, table).await?;
        compare(table, "row count", &expected.to_string(), &n.to_string())?;
    }
    let totals = ImportReport {
        tables: ledger.tables.clone(),
        exclusions: ledger.exclusions.clone(),
        ..report.clone()
    };
    totals.check_totals().map_err(|m| ImportError::Mismatch {
        table: "report".into(),
        what: "totals".into(),
        source_value: m,
        target_value: "-".into(),
    })?;
    timer.lap("checksums");
    Ok(())
}

/// The model to stamp the imported chunks with: the operator's, else the
/// one the detected version's app used, where that is certain.
/// `v0_post_switch`: v0 chunks written by the app from commit 86f8fc7 on
/// (they have `metadata.chunk_index`).
fn embedding_model(
    version: LegacyVersion,
    v0_post_switch: i64,
    options: &ImportOptions,
) -> Result<EmbeddingModel, ImportError> {
    if let Some(model) = &options.embedding_model {
        return Ok(model.clone());
    }
    let unknown = |reason: String| Err(ImportError::EmbeddingModelUnknown { reason });
    match version {
        LegacyVersion::V0 if v0_post_switch > 0 => unknown(format!(
            "the source is a v0 database (the app's text-embedding-004 era), but \
             {v0_post_switch} of its chunks have metadata.chunk_index, which the app wrote only \
             from commit 86f8fc7 on: the table outlived the switch and may hold both models"
        )),
        LegacyVersion::V0 => Ok(EmbeddingModel::text_embedding_004()),
        LegacyVersion::V1 | LegacyVersion::V2 => unknown(format!(
            "the source is a {} database, made around the app's switch of model",
            serde_json::to_value(version)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )),
        LegacyVersion::V3 | LegacyVersion::V4 | LegacyVersion::V5 => {
            Ok(EmbeddingModel::gemini_embedding_001_768())
        }
    }
}
