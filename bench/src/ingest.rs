//! Item 1: ingest. (a) bulk import into a table without its HNSW index,
//! (b) steady-state per-resume uploads into the full table with all indexes.

use std::time::{Duration, Instant};

use mockinterview_db::chunks::{ResumeChunks, replace_chunks_bulk, replace_resume_chunks};
use mockinterview_db::profiles::{FirebaseUser, upsert_profile};
use mockinterview_db::resumes::{NewResume, PdfUpload, create_resume};
use mockinterview_db::{Embedding, NewChunk};
use uuid::Uuid;

use crate::corpus::{DIMS, ExtraUser, Rng, User};
use crate::raw::{self, BoxError, RawRow};
use crate::report::{Samples, fmt_int, fmt_ms, verdict};
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
            Ok(
                NewChunk::new(c.texts[i].clone(), Embedding::new(c.vector(i).to_vec())?)
                    .with_metadata("section", c.extras[i].0)
                    .with_metadata("page", c.extras[i].1),
            )
        })
        .collect()
}

/// Resumes per `replace_chunks_bulk` call in the bulk import (its docs
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

    // Binary COPY, one stream (the practical limit).
    checkpoint(ctx).await?;
    let mut ticker = Ticker::new("binary COPY (tokio-postgres)", rows);
    let t = Instant::now();
    let it = raw_rows(ctx, &users[..cut]).inspect(|_| ticker.add(1));
    raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, it).await?;
    let copy_s = t.elapsed().as_secs_f64();
    ctx.sql("TRUNCATE resume_chunks").await?;

    // LangChain PGVectorStore: 500-row INSERTs, text vectors.
    checkpoint(ctx).await?;
    let t = Instant::now();
    let all: Vec<RawRow<'_>> = raw_rows(ctx, &users[..cut]).collect();
    let mut ticker = Ticker::new("500-row INSERT, text vectors", rows);
    for batch in all.chunks(5_000) {
        raw::insert_rows(&ctx.raw, "resume_chunks", batch.iter().cloned(), 500).await?;
        ticker.add(batch.len());
    }
    let insert_s = t.elapsed().as_secs_f64();
    drop(all);
    ctx.sql("TRUNCATE resume_chunks").await?;

    // The library, one resume per call (`replace_resume_chunks`, what an
    // upload does).
    checkpoint(ctx).await?;
    let mut ticker = Ticker::new("library replace_resume_chunks, one resume per call", rows);
    let t = Instant::now();
    for u in &users[..cut] {
        let chunks = library_chunks(ctx, u)?;
        replace_resume_chunks(&ctx.db, u.id, u.resume_id, &chunks).await?;
        ticker.add(u.len);
    }
    let single_s = t.elapsed().as_secs_f64();
    ctx.sql("TRUNCATE resume_chunks").await?;

    // The library's bulk path: `replace_chunks_bulk`, batches of resumes.
    checkpoint(ctx).await?;
    let mut ticker = Ticker::new("library replace_chunks_bulk", rows);
    let t = Instant::now();
    let mut prep = Duration::ZERO;
    for batch in users[..cut].chunks(BULK_BATCH_RESUMES) {
        let p = Instant::now();
        let chunks: Vec<Vec<NewChunk>> = batch
            .iter()
            .map(|u| library_chunks(ctx, u))
            .collect::<Result<_, _>>()?;
        prep += p.elapsed();
        let sets: Vec<ResumeChunks<'_>> = batch
            .iter()
            .zip(&chunks)
            .map(|(u, c)| ResumeChunks {
                user_id: u.id,
                resume_id: u.resume_id,
                chunks: c,
            })
            .collect();
        let ids = replace_chunks_bulk(&ctx.db, &sets).await?;
        for (u, ids) in batch.iter().zip(ids) {
            ctx.record_ids(u.start, &ids);
        }
        ticker.add(batch.iter().map(|u| u.len).sum());
    }
    let lib_s = t.elapsed().as_secs_f64();

    let rate = |s: f64| rows as f64 / s;
    let (lib, copy, ins, single) = (rate(lib_s), rate(copy_s), rate(insert_s), rate(single_s));
    let subset = if cut < users.len() {
        format!(
            "first {} of {} rows",
            fmt_int(rows as f64),
            fmt_int(ctx.corpus.len() as f64)
        )
    } else {
        format!("{} rows", fmt_int(rows as f64))
    };
    let what = format!("bulk import ({subset}, {cut} resumes, HNSW built afterwards), chunks/s");
    let bulk = format!("library `replace_chunks_bulk` ({BULK_BATCH_RESUMES} resumes per call)");
    ctx.report.row(
        "ingest",
        "1a",
        format!("{what}: {bulk} vs binary COPY"),
        format!(
            "{} ({:.1} s, of which {:.2} s building the `NewChunk`s)",
            fmt_int(lib),
            lib_s,
            prep.as_secs_f64()
        ),
        format!("{} ({:.1} s, one COPY stream)", fmt_int(copy), copy_s),
        format!("{:.2}×", lib / copy),
        "≥ 0.8×",
        verdict(lib / copy >= 0.8),
    );
    ctx.report.row(
        "ingest",
        "1a",
        format!("{what}: {bulk} vs 500-row INSERT"),
        format!("{} ({:.1} s)", fmt_int(lib), lib_s),
        format!("{} ({:.1} s, INSERT)", fmt_int(ins), insert_s),
        format!("{:.2}×", lib / ins),
        "≥ 3×",
        verdict(lib / ins >= 3.0),
    );
    ctx.report.info(
        "ingest",
        "1a",
        format!("{what}: library `replace_resume_chunks`, one resume per call (transaction each), vs binary COPY / vs INSERT"),
        format!("{} ({:.1} s)", fmt_int(single), single_s),
        format!("{:.2}× COPY, {:.2}× INSERT", single / copy, single / ins),
    );

    if cut < users.len() {
        // The rest of the corpus, the fastest way (setup, not measured).
        let rest: usize = users[cut..].iter().map(|u| u.len).sum();
        let mut ticker = Ticker::new(
            "loading the remaining rows (binary COPY, not measured)",
            rest,
        );
        let it = raw_rows(ctx, &users[cut..]).inspect(|_| ticker.add(1));
        raw::copy_rows(&ctx.raw, "resume_chunks", &ctx.vector_ty, it).await?;
        let start = users[cut].start;
        let ids = ctx.corpus.ids[start..].to_vec();
        ctx.record_ids(start, &ids);
    }
    Ok(())
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

/// Returns (total, COPY/INSERT statement only).
async fn upload(ctx: &Ctx, path: Path, u: &Upload) -> Result<(Duration, Duration), BoxError> {
    let t = Instant::now();
    let stmt;
    match path {
        Path::Library => {
            let chunks = u
                .data
                .chunks
                .iter()
                .enumerate()
                .map(|(j, (text, section, page))| {
                    Ok(NewChunk::new(
                        text.clone(),
                        Embedding::new(u.data.vectors[j * DIMS..(j + 1) * DIMS].to_vec())?,
                    )
                    .with_metadata("section", *section)
                    .with_metadata("page", *page))
                })
                .collect::<Result<Vec<_>, BoxError>>()?;
            replace_resume_chunks(&ctx.db, u.user_id, u.resume_id, &chunks).await?;
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
    for (p, _) in PATHS.iter().enumerate() {
        let mut list = Vec::new();
        // Every path gets its own vectors (pgvector's HNSW stores an
        // identical vector once, so re-uploading the same ones would be
        // cheaper) with the same chunk counts.
        for data in ctx.corpus.new_users(&lens, p as u64) {
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
        uploads.push(list);
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
    ctx.report.row(
        "steady",
        "1b",
        format!(
            "steady state: one resume (20–80 chunks, mean {:.0}) into {} rows, all indexes, p50 latency",
            chunks as f64 / (r - WARMUP) as f64,
            fmt_int(ctx.corpus.len() as f64)
        ),
        format!("{} ms (p95 {})", fmt_ms(lib.p50()), fmt_ms(lib.pct_ms(95.0))),
        format!(
            "{} ms (p95 {}, binary COPY)",
            fmt_ms(copy.p50()),
            fmt_ms(copy.pct_ms(95.0))
        ),
        format!("{:.2}×", lib.p50() / copy.p50()),
        "≤ 1.1×",
        verdict(lib.p50() / copy.p50() <= 1.1),
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
        "library `replace_resume_chunks` (lock, delete, binary COPY, commit)",
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
    Ok(())
}
