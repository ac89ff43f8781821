//! Item 1: ingest. (a) bulk import into a table without its HNSW index,
//! (b) steady-state per-resume uploads into the full table with all indexes.

use std::time::{Duration, Instant};

use mockinterview_db::chunks::{Indexing, ResumeChunks, replace_chunks};
use mockinterview_db::profiles::{FirebaseUser, upsert_profile};
use mockinterview_db::resumes::{NewResume, PdfUpload, create_resume};
use mockinterview_db::staged::{IndexerOptions, StagedIndexer, staged_backlog};
use mockinterview_db::{Embedding, NewChunk};
use uuid::Uuid;

use crate::corpus::{DIMS, ExtraUser, Rng, User};
use crate::raw::{self, BoxError, RawRow};
use crate::report::{Samples, fmt_int, fmt_ms, median, rounds_of, spread, spread_x, verdict};
use crate::{Ctx, progress};

/// Profiles and resumes of the corpus users, in bulk (setup, not measured).
pub async fn create_users(ctx: &Ctx) -> Result<(), BoxError> {
    let users = &ctx.corpus.users;
    let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let uids: Vec<String> = users.iter().map(|u| u.uid.clone()).collect();
    let resume_ids: Vec<Uuid> = users.iter().map(|u| u.resume_id).collect();
    ctx.raw
        .execute(
            "INSERT INTO user_profiles (id, firebase_uid, email) \
             SELECT id, uid, uid || '@example.com' FROM unnest($1::uuid[], $2::text[]) AS t(id, uid)",
            &[&ids, &uids],
        )
        .await?;
    ctx.raw
        .execute(
            "INSERT INTO resumes (id, user_id, title, file_name, file_path, file_size) \
             SELECT rid, uid, 'Resume', 'resume.pdf', 'bench/' || rid || '.pdf', 120000 \
             FROM unnest($1::uuid[], $2::uuid[]) AS t(rid, uid)",
            &[&resume_ids, &ids],
        )
        .await?;
    progress(&format!("created {} profiles and resumes", users.len()));
    Ok(())
}

fn raw_rows<'a>(ctx: &'a Ctx, users: &'a [User]) -> impl Iterator<Item = RawRow<'a>> + 'a {
    let c = &ctx.corpus;
    users.iter().flat_map(move |u| {
        u.range().map(move |i| RawRow {
            id: c.ids[i],
            text: &c.texts[i],
            user_id: u.id,
            resume_id: u.resume_id,
            section: c.extras[i].0,
            page: c.extras[i].1,
            vector: c.vector(i),
        })
    })
}

fn library_chunks(ctx: &Ctx, u: &User) -> Result<Vec<NewChunk>, BoxError> {
    let c = &ctx.corpus;
    u.range()
        .map(|i| {
            Ok(NewChunk::new(
                c.texts[i].clone(),
                Embedding::new(
                    &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
                    c.vector(i).to_vec(),
                )?,
            )
            .with_metadata("section", c.extras[i].0)
            .with_metadata("page", c.extras[i].1))
        })
        .collect()
}

/// Resumes per `replace_chunks` (bulk) call in the bulk import (its docs
/// suggest batches of a few thousand resumes; 1000 resumes ≈ 50k chunks).
const BULK_BATCH_RESUMES: usize = 1000;

/// Prints progress every 10% of `total` rows.
struct Ticker {
    label: &'static str,
    total: usize,
    done: usize,
    started: Instant,
}

impl Ticker {
    fn new(label: &'static str, total: usize) -> Self {
        Self {
            label,
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    fn add(&mut self, n: usize) {
        let step = (self.total / 10).max(1);
        let before = self.done / step;
        self.done += n;
        if self.done / step != before || self.done == self.total {
            let s = self.started.elapsed().as_secs_f64();
            progress(&format!(
                "  {}: {}/{} rows ({:.0} rows/s)",
                self.label,
                self.done,
                self.total,
                self.done as f64 / s.max(1e-9)
            ));
        }
    }
}

async fn checkpoint(ctx: &Ctx) -> Result<(), BoxError> {
    ctx.sql("CHECKPOINT").await
}

/// Without the bulk-import comparison: binary COPY of everything (fastest).
pub async fn load_fast(ctx: &mut Ctx) -> Result<(), BoxError> {
    ctx.sql("DROP INDEX IF EXISTS idx_resume_chunks_embedding")
        .await?;
    let n = ctx.corpus.len();
    let mut ticker = Ticker::new("loading (binary COPY)", n);
    let rows = raw_rows(ctx, &ctx.corpus.users).inspect(|_| ticker.add(1));
    raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, rows).await?;
    let ids = ctx.corpus.ids.clone();
    ctx.record_ids(0, &ids);
    Ok(())
}

/// 1a: bulk import, the library (bulk API, and one resume per call) vs binary
/// COPY vs 500-row INSERT, on the same rows; the rest of the corpus is then
/// loaded by binary COPY (not measured).
pub async fn bulk(ctx: &mut Ctx) -> Result<(), BoxError> {
    let users = ctx.corpus.users.clone();
    let limit = ctx.args.ingest_rows();
    let cut = users
        .iter()
        .take_while(|u| u.start + u.len <= limit)
        .count()
        .max(1);
    let rows = users[cut - 1].start + users[cut - 1].len;
    progress(&format!(
        "bulk import: {rows} rows ({cut} resumes) per path, HNSW index dropped"
    ));
    ctx.sql("DROP INDEX IF EXISTS idx_resume_chunks_embedding")
        .await?;

    // Every round runs the four paths on the same rows, in an order that
    // changes per round (whatever runs first after the corpus generation
    // and the checkpoint was slower in the first version of this harness).
    let rounds = ctx.args.rounds();
    const BULK_PATHS: [&str; 4] = [
        "binary COPY (tokio-postgres)",
        "500-row INSERT, text vectors",
        "library replace_chunks (Indexing::Now), one resume per call",
        "library replace_chunks (bulk)",
    ];
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); BULK_PATHS.len()];
    let mut prep_s: Vec<f64> = Vec::new();
    let mut orders: Vec<String> = Vec::new();
    for round in 0..rounds {
        let order = round_order(ctx.args.seed, round, BULK_PATHS.len());
        orders.push(
            order
                .iter()
                .map(|&p| ["COPY", "INSERT", "single", "bulk"][p])
                .collect::<Vec<_>>()
                .join(" → "),
        );
        for &p in &order {
            ctx.sql("TRUNCATE resume_chunks").await?;
            checkpoint(ctx).await?;
            let mut ticker = Ticker::new(BULK_PATHS[p], rows);
            let t = Instant::now();
            match p {
                0 => {
                    // Binary COPY, one stream (the practical limit).
                    let it = raw_rows(ctx, &users[..cut]).inspect(|_| ticker.add(1));
                    raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, it).await?;
                }
                1 => {
                    // LangChain PGVectorStore: 500-row INSERTs, text vectors.
                    let all: Vec<RawRow<'_>> = raw_rows(ctx, &users[..cut]).collect();
                    for batch in all.chunks(5_000) {
                        raw::insert_rows(&ctx.raw, "resume_chunks", batch.iter().cloned(), 500)
                            .await?;
                        ticker.add(batch.len());
                    }
                }
                2 => {
                    // One resume per call (`replace_chunks` (`Indexing::Now`), what an
                    // upload does).
                    for u in &users[..cut] {
                        let chunks = library_chunks(ctx, u)?;
                        replace_one(&ctx.db, u.id, u.resume_id, &chunks, Indexing::Now).await?;
                        ticker.add(u.len);
                    }
                }
                _ => {
                    // `replace_chunks` (bulk), batches of resumes.
                    let mut prep = Duration::ZERO;
                    for batch in users[..cut].chunks(BULK_BATCH_RESUMES) {
                        let pt = Instant::now();
                        let chunks: Vec<Vec<NewChunk>> = batch
                            .iter()
                            .map(|u| library_chunks(ctx, u))
                            .collect::<Result<_, _>>()?;
                        prep += pt.elapsed();
                        let sets: Vec<ResumeChunks<'_>> = batch
                            .iter()
                            .zip(&chunks)
                            .map(|(u, c)| ResumeChunks {
                                user_id: u.id,
                                resume_id: u.resume_id,
                                chunks: c,
                            })
                            .collect();
                        replace_chunks(&ctx.db, &sets, Indexing::Now).await?;
                        ticker.add(batch.iter().map(|u| u.len).sum());
                    }
                    prep_s.push(prep.as_secs_f64());
                }
            }
            secs[p].push(t.elapsed().as_secs_f64());
        }
        progress(&format!("  bulk import: round {}/{rounds} done", round + 1));
    }

    let rate = |s: f64| rows as f64 / s;
    let rates: Vec<Vec<f64>> = secs
        .iter()
        .map(|v| v.iter().map(|&s| rate(s)).collect())
        .collect();
    let per_round =
        |a: usize, b: usize| -> Vec<f64> { (0..rounds).map(|r| secs[b][r] / secs[a][r]).collect() };
    let (vs_copy, vs_insert) = (per_round(3, 0), per_round(3, 1));
    let (single_copy, single_insert) = (per_round(2, 0), per_round(2, 1));
    let subset = if cut < users.len() {
        format!(
            "first {} of {} rows",
            fmt_int(rows as f64),
            fmt_int(ctx.corpus.len() as f64)
        )
    } else {
        format!("{} rows", fmt_int(rows as f64))
    };
    let what = format!(
        "bulk import ({subset}, {cut} resumes, HNSW built afterwards), chunks/s, median (min–max) of {rounds} rounds in rotated order"
    );
    let bulk = format!("library `replace_chunks` (bulk) ({BULK_BATCH_RESUMES} resumes per call)");
    let ratio_bulk_copy = median(&vs_copy);
    let ratio_bulk_insert = median(&vs_insert);
    ctx.report.row(
        "ingest",
        "1a",
        format!("{what}: {bulk} vs binary COPY"),
        format!(
            "{} (of which {:.2} s building the `NewChunk`s)",
            spread(&rates[3], fmt_int),
            median(&prep_s)
        ),
        format!("{} (one COPY stream)", spread(&rates[0], fmt_int)),
        spread_x(&vs_copy),
        "≥ 0.8×",
        verdict(ratio_bulk_copy >= 0.8),
    );
    ctx.report.row(
        "ingest",
        "1a",
        format!("{what}: {bulk} vs 500-row INSERT"),
        spread(&rates[3], fmt_int),
        format!("{} (INSERT)", spread(&rates[1], fmt_int)),
        spread_x(&vs_insert),
        "≥ 3×",
        verdict(ratio_bulk_insert >= 3.0),
    );
    ctx.report.info(
        "ingest",
        "1a",
        format!("{what}: library `replace_chunks` (`Indexing::Now`), one resume per call (transaction each), vs binary COPY / vs INSERT"),
        spread(&rates[2], fmt_int),
        format!(
            "{} COPY, {} INSERT",
            spread_x(&single_copy),
            spread_x(&single_insert)
        ),
    );
    let mut d = String::from(
        "| round | order | COPY s | INSERT s | single s | bulk s | bulk/COPY |\n|---|---|---|---|---|---|---|\n",
    );
    for r in 0..rounds {
        d.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}× |\n",
            r + 1,
            orders[r],
            secs[0][r],
            secs[1][r],
            secs[2][r],
            secs[3][r],
            vs_copy[r]
        ));
    }
    ctx.report.detail(
        format!(
            "Bulk import rounds ({} rows per path)",
            fmt_int(rows as f64)
        ),
        d,
    );

    // The whole corpus, the fastest way, with known ids (setup, not measured).
    ctx.sql("TRUNCATE resume_chunks").await?;
    let n = ctx.corpus.len();
    let mut ticker = Ticker::new("loading the corpus (binary COPY, not measured)", n);
    let it = raw_rows(ctx, &users).inspect(|_| ticker.add(1));
    raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, it).await?;
    let ids = ctx.corpus.ids.clone();
    ctx.record_ids(0, &ids);
    Ok(())
}

/// The order of `n` paths in `round`: a rotation that also reverses every
/// other round, so each path runs first, last and after each other path
/// over a few rounds (deterministic per seed).
pub fn round_order(seed: u64, round: usize, n: usize) -> Vec<usize> {
    let shift = (seed as usize + round) % n;
    let mut order: Vec<usize> = (0..n).map(|i| (i + shift) % n).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Upload paths of the steady-state comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Library,
    Copy,
    CopySameTx,
    Insert,
    CopyNoHnsw,
    CopyNoHnswNoGin,
}

const PATHS: [Path; 6] = [
    Path::Library,
    Path::Copy,
    Path::CopySameTx,
    Path::Insert,
    Path::CopyNoHnsw,
    Path::CopyNoHnswNoGin,
];

struct Upload {
    user_id: Uuid,
    resume_id: Uuid,
    data: ExtraUser,
}

fn upload_rows(u: &Upload) -> impl Iterator<Item = RawRow<'_>> + '_ {
    let mut rng = Rng::new(u.resume_id.as_u64_pair().0, 9);
    u.data
        .chunks
        .iter()
        .enumerate()
        .map(move |(j, (text, section, page))| RawRow {
            id: rng.uuid(),
            text,
            user_id: u.user_id,
            resume_id: u.resume_id,
            section,
            page: *page,
            vector: &u.data.vectors[j * DIMS..(j + 1) * DIMS],
        })
}

/// A profile and a resume for each of `lens` (chunk counts), with vectors
/// of their own (`salt`); the setup time of each goes to `create`.
async fn create_uploads(
    ctx: &Ctx,
    lens: &[usize],
    salt: u64,
    create: &mut Samples,
) -> Result<Vec<Upload>, BoxError> {
    let mut list = Vec::new();
    for data in ctx.corpus.new_users(lens, salt) {
        let t = Instant::now();
        let user = upsert_profile(
            &ctx.db,
            &FirebaseUser {
                uid: data.uid.clone(),
                email: Some(format!("{}@example.com", data.uid)),
                ..Default::default()
            },
        )
        .await?;
        let resume = create_resume(
            &ctx.db,
            NewResume {
                user_id: user.id,
                title: "Resume".into(),
                file_name: "resume.pdf".into(),
                pdf: PdfUpload::path(format!("bench/{}.pdf", data.uid), 120_000)?,
                content: None,
            },
        )
        .await?;
        create.push(t.elapsed());
        list.push(Upload {
            user_id: user.id,
            resume_id: resume.id,
            data,
        });
    }
    Ok(list)
}

/// The upload's chunks as the library takes them.
fn upload_chunks(u: &Upload) -> Result<Vec<NewChunk>, BoxError> {
    u.data
        .chunks
        .iter()
        .enumerate()
        .map(|(j, (text, section, page))| {
            Ok(NewChunk::new(
                text.clone(),
                Embedding::new(
                    &mockinterview_db::EmbeddingModel::gemini_embedding_001_768(),
                    u.data.vectors[j * DIMS..(j + 1) * DIMS].to_vec(),
                )?,
            )
            .with_metadata("section", *section)
            .with_metadata("page", *page))
        })
        .collect()
}

/// Returns (total, COPY/INSERT statement only).
async fn upload(ctx: &Ctx, path: Path, u: &Upload) -> Result<(Duration, Duration), BoxError> {
    let t = Instant::now();
    let stmt;
    match path {
        Path::Library => {
            let chunks = upload_chunks(u)?;
            replace_one(&ctx.db, u.user_id, u.resume_id, &chunks, Indexing::Now).await?;
            stmt = t.elapsed();
        }
        Path::Copy => {
            ctx.raw.batch_execute("BEGIN").await?;
            let s = Instant::now();
            raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, upload_rows(u)).await?;
            stmt = s.elapsed();
            ctx.raw.batch_execute("COMMIT").await?;
        }
        Path::CopySameTx => {
            ctx.raw.batch_execute("BEGIN").await?;
            ctx.raw
                .query_opt(
                    "SELECT 1 FROM resumes WHERE id = $1 AND user_id = $2 FOR UPDATE",
                    &[&u.resume_id, &u.user_id],
                )
                .await?
                .ok_or("resume missing")?;
            ctx.raw
                .execute(
                    "DELETE FROM resume_chunks WHERE metadata->>'resume_id' = $1",
                    &[&u.resume_id.to_string()],
                )
                .await?;
            let s = Instant::now();
            raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, upload_rows(u)).await?;
            stmt = s.elapsed();
            ctx.raw.batch_execute("COMMIT").await?;
        }
        Path::Insert => {
            let s = Instant::now();
            raw::insert_rows(&ctx.raw, "resume_chunks", upload_rows(u), 500).await?;
            stmt = s.elapsed();
        }
        Path::CopyNoHnsw | Path::CopyNoHnswNoGin => {
            // Same table, same COPY, with the index dropped inside a
            // transaction that is rolled back (transactional DDL: the index
            // comes back without a rebuild). Only the COPY is comparable.
            let drop = if path == Path::CopyNoHnsw {
                "BEGIN; DROP INDEX idx_resume_chunks_embedding"
            } else {
                "BEGIN; DROP INDEX idx_resume_chunks_embedding; DROP INDEX idx_resume_chunks_metadata"
            };
            ctx.raw.batch_execute(drop).await?;
            let s = Instant::now();
            raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, upload_rows(u)).await?;
            stmt = s.elapsed();
            ctx.raw.batch_execute("ROLLBACK").await?;
            return Ok((stmt, stmt));
        }
    }
    Ok((t.elapsed(), stmt))
}

/// 1b: steady state, one resume of 20–80 chunks into the full table with all
/// indexes, per path; where the time goes (HNSW insertion share).
// Rounds index every path's list (`uploads[p][i]`), in rotated order.
#[allow(clippy::needless_range_loop)]
pub async fn steady(ctx: &mut Ctx) -> Result<(), BoxError> {
    const WARMUP: usize = 2;
    let r = ctx.args.steady_resumes() + WARMUP;
    let mut rng = Rng::new(ctx.args.seed, 77);
    let lens: Vec<usize> = (0..r).map(|_| rng.range(20, 80)).collect();
    let mut create = crate::report::Samples::default();
    let mut uploads: Vec<Vec<Upload>> = Vec::new();
    progress(&format!(
        "steady state: {} resumes per path into {} rows, all indexes present",
        r - WARMUP,
        ctx.corpus.len()
    ));
    for p in 0..PATHS.len() {
        // Every path gets its own vectors (pgvector's HNSW stores an
        // identical vector once, so re-uploading the same ones would be
        // cheaper) with the same chunk counts.
        uploads.push(create_uploads(ctx, &lens, p as u64, &mut create).await?);
    }
    let mut total: Vec<Samples> = vec![Samples::default(); PATHS.len()];
    let mut stmt: Vec<Samples> = vec![Samples::default(); PATHS.len()];
    for i in 0..r {
        // Rotate the order so no path always runs right after another.
        for k in 0..PATHS.len() {
            let p = (i + k) % PATHS.len();
            let (t, s) = upload(ctx, PATHS[p], &uploads[p][i]).await?;
            if i >= WARMUP {
                total[p].push(t);
                stmt[p].push(s);
            }
        }
        if (i + 1) % 10 == 0 {
            progress(&format!("  steady state: {}/{r} rounds", i + 1));
        }
    }
    let chunks: usize = lens[WARMUP..].iter().sum();
    let per_chunk = |s: &Samples| s.total_s() * 1e3 / chunks as f64;
    let (lib, copy, copy_tx, ins) = (&total[0], &total[1], &total[2], &total[3]);
    // Per round (contiguous thirds of the rotated sequence): p50 ratio.
    let rounds = ctx.args.rounds();
    let lib_r = rounds_of(lib, rounds);
    let copy_r = rounds_of(copy, rounds);
    let ratios: Vec<f64> = lib_r
        .iter()
        .zip(&copy_r)
        .map(|(l, c)| l.p50() / c.p50())
        .collect();
    let lib_p50s: Vec<f64> = lib_r.iter().map(Samples::p50).collect();
    let copy_p50s: Vec<f64> = copy_r.iter().map(Samples::p50).collect();
    ctx.report.row(
        "steady",
        "1b",
        format!(
            "steady state: one resume (20–80 chunks, mean {:.0}) into {} rows, all indexes, p50 latency; median (min–max) of {} rounds of {} resumes per path",
            chunks as f64 / (r - WARMUP) as f64,
            fmt_int(ctx.corpus.len() as f64),
            lib_r.len(),
            lib_r.first().map_or(0, |x| x.0.len())
        ),
        format!("{} ms (p95 {} over all)", spread(&lib_p50s, fmt_ms), fmt_ms(lib.pct_ms(95.0))),
        format!(
            "{} ms (p95 {}, binary COPY)",
            spread(&copy_p50s, fmt_ms),
            fmt_ms(copy.pct_ms(95.0))
        ),
        spread_x(&ratios),
        "≤ 1.1×",
        verdict(median(&ratios) <= 1.1),
    );
    ctx.report.row(
        "steady",
        "1b",
        format!(
            "steady state at {} rows: library `replace_chunks` (`Indexing::Now`) p50, absolute",
            fmt_int(ctx.corpus.len() as f64)
        ),
        format!("{} ms", spread(&lib_p50s, fmt_ms)),
        "",
        "",
        "≤ 100 ms at 1M rows",
        if ctx.corpus.len() >= 1_000_000 {
            verdict(median(&lib_p50s) <= 100.0)
        } else {
            crate::report::Verdict::Info
        },
    );
    ctx.report.info(
        "steady",
        "1b",
        "steady state: library vs 500-row INSERT (text vectors), p50",
        format!("{} ms", fmt_ms(lib.p50())),
        format!(
            "{} ms (INSERT); library/INSERT = {:.2}×",
            fmt_ms(ins.p50()),
            lib.p50() / ins.p50()
        ),
    );
    ctx.report.info(
        "steady",
        "1b",
        "steady state: raw COPY with the library's transaction (lock resume, delete old, COPY), p50",
        format!("{} ms", fmt_ms(copy_tx.p50())),
        format!("{} ms (plain COPY)", fmt_ms(copy.p50())),
    );
    let (with, no_hnsw, no_gin) = (&stmt[1], &stmt[4], &stmt[5]);
    let share = 1.0 - no_hnsw.total_s() / with.total_s();
    let gin_share = (no_hnsw.total_s() - no_gin.total_s()) / with.total_s();
    ctx.report.info(
        "steady",
        "1b",
        "where the time goes: COPY statement with all indexes vs HNSW dropped vs HNSW+GIN dropped (ms per chunk)",
        format!(
            "{:.2} / {:.2} / {:.2} ms per chunk",
            per_chunk(with),
            per_chunk(no_hnsw),
            per_chunk(no_gin)
        ),
        format!(
            "HNSW insertion = {:.0}% of the COPY, GIN = {:.0}%",
            share * 100.0,
            gin_share * 100.0
        ),
    );
    ctx.report.info(
        "steady",
        "1b",
        "steady state: library upsert_profile + create_resume (setup of each upload), p50",
        format!("{} ms", fmt_ms(create.p50())),
        "",
    );
    let mut d = String::from(
        "| path | p50 ms | p95 ms | p99 ms | mean ms | statement-only mean ms | ms per chunk |\n|---|---|---|---|---|---|---|\n",
    );
    let names = [
        "library `replace_chunks` (`Indexing::Now`) (lock, delete, binary COPY, commit)",
        "tokio-postgres binary COPY (BEGIN, COPY, COMMIT)",
        "tokio-postgres, library's transaction (lock, delete, COPY, commit)",
        "tokio-postgres multi-row INSERT, text vectors (LangChain)",
        "COPY with the HNSW index dropped (rolled back)",
        "COPY with HNSW and GIN dropped (rolled back)",
    ];
    for (p, name) in names.iter().enumerate() {
        d.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {:.2} |\n",
            fmt_ms(total[p].p50()),
            fmt_ms(total[p].pct_ms(95.0)),
            fmt_ms(total[p].pct_ms(99.0)),
            fmt_ms(total[p].mean_ms()),
            fmt_ms(stmt[p].mean_ms()),
            per_chunk(&total[p])
        ));
    }
    ctx.report.detail(
        format!(
            "Steady-state uploads ({} resumes per path, {} chunks each path)",
            r - WARMUP,
            chunks
        ),
        d,
    );
    staged(ctx, &lens, WARMUP, &lib_p50s).await
}

/// 1b: the same uploads staged (`replace_chunks` (`Indexing::Deferred`), migration 009) while
/// a `StagedIndexer` of the same pool moves them into the HNSW index. The
/// uploads follow each other without pause, so after the first the indexer
/// is always busy on the same 2 cores: the worst case for the upload. Then
/// the time until the indexer has moved everything.
async fn staged(
    ctx: &mut Ctx,
    lens: &[usize],
    warmup: usize,
    lib_p50s: &[f64],
) -> Result<(), BoxError> {
    let mut create = Samples::default();
    let list = create_uploads(ctx, lens, PATHS.len() as u64, &mut create).await?;
    progress(&format!(
        "staged uploads: {} resumes, back to back, with a StagedIndexer running",
        list.len() - warmup
    ));
    let indexer = StagedIndexer::spawn(
        ctx.db.clone(),
        IndexerOptions {
            idle_poll: Duration::from_millis(20),
            ..IndexerOptions::default()
        },
    );
    let start = Instant::now();
    let mut up = Samples::default();
    for (i, u) in list.iter().enumerate() {
        let chunks = upload_chunks(u)?;
        let t = Instant::now();
        replace_one(&ctx.db, u.user_id, u.resume_id, &chunks, Indexing::Deferred).await?;
        if i >= warmup {
            up.push(t.elapsed());
        }
    }
    let uploaded = start.elapsed();
    loop {
        let backlog = staged_backlog(&ctx.db).await?;
        if backlog.chunks == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = start.elapsed();
    let stats = indexer.stats();
    indexer.shutdown().await;
    let moved_chunks: usize = lens.iter().sum();
    let up_r = rounds_of(&up, ctx.args.rounds());
    let up_p50s: Vec<f64> = up_r.iter().map(Samples::p50).collect();
    ctx.report.row(
        "steady",
        "1b",
        format!(
            "steady state at {} rows: staged upload `replace_chunks` (`Indexing::Deferred`) p50 (same resumes, a `StagedIndexer` moving them meanwhile); median (min–max) of {} rounds",
            fmt_int(ctx.corpus.len() as f64),
            up_r.len()
        ),
        format!(
            "{} ms (p95 {} over all)",
            spread(&up_p50s, fmt_ms),
            fmt_ms(up.pct_ms(95.0))
        ),
        format!(
            "{} ms (`replace_chunks` (`Indexing::Now`), above): {:.2}×",
            fmt_ms(median(lib_p50s)),
            median(&up_p50s) / median(lib_p50s)
        ),
        "",
        "≤ 100 ms at 1M rows",
        if ctx.corpus.len() >= 1_000_000 {
            verdict(median(&up_p50s) <= 100.0)
        } else {
            crate::report::Verdict::Info
        },
    );
    ctx.report.info(
        "steady",
        "1b",
        "staged uploads: indexer throughput (all uploads issued, then until nothing is staged)",
        format!(
            "{} resumes, {} chunks moved in {:.2} s ({:.1} ms per chunk); uploads done after {:.2} s",
            stats.resumes,
            stats.chunks,
            drained.as_secs_f64(),
            drained.as_secs_f64() * 1e3 / moved_chunks.max(1) as f64,
            uploaded.as_secs_f64()
        ),
        format!("{} failed batches", stats.errors),
    );
    Ok(())
}

/// One resume's chunks replaced through the library's one chunk writer.
async fn replace_one(
    db: &mockinterview_db::Db,
    user_id: Uuid,
    resume_id: Uuid,
    chunks: &[mockinterview_db::NewChunk],
    indexing: Indexing,
) -> mockinterview_db::Result<Vec<Uuid>> {
    let set = ResumeChunks {
        user_id,
        resume_id,
        chunks,
    };
    Ok(replace_chunks(db, &[set], indexing).await?.remove(0))
}
