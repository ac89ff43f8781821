//! `mockinterview-bench-layouts`: how to store embeddings of 768, 1,536
//! and 3,072 dimensions so that each is searchable through an HNSW index
//! (issue 18, item 2).
//!
//! ```bash
//! cargo build --release -p mockinterview-bench
//! target/release/mockinterview-bench-layouts --chunks 100000 --queries 200 --rounds 3
//! ```
//!
//! For each dimension count it loads `--chunks` clustered unit vectors
//! (300 topics) into two layouts, in scratch tables of `DATABASE_URL`'s
//! database (dropped at the end):
//! - **typed**: a table of the model's own, `vector(d)` (`halfvec(d)` above
//!   2,000 dimensions, HNSW's `vector` limit), HNSW on the column;
//! - **untyped + partial**: one `vector` column without dimensions shared
//!   by models (plus `--others` rows of another, 768-dimension model), a
//!   partial expression index per model, `((embedding::vector(d)))` or
//!   `((embedding::halfvec(d)))` `WHERE model = 1`.
//!
//! Both indexes use `m` 16 and `ef_construction` 200 (migration m008); the
//! searches use the library's `ef_search` for the table's size
//! (`tuning::ef_search_for`). Per round, the two layouts alternate per
//! query and the first layout alternates per round. Recall@10 is against an
//! exact top 10 computed in Rust. It prints a markdown table: build time,
//! index size, recall@10 and p50 (median and min–max of the rounds' p50s).

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::pin_mut;
use mockinterview_db::tuning::ef_search_for;
use pgvector::{HalfVector, Vector};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use clustered::BoxError;

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// Vectors per layout and dimension count.
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Rows of another model (768 dimensions) in the shared table.
    #[arg(long, default_value_t = 20_000)]
    others: usize,
    /// Queries per round.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Rounds (the first layout alternates).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Dimension counts.
    #[arg(long, value_delimiter = ',', default_values_t = [768_usize, 1536, 3072])]
    dims: Vec<usize>,
}

#[path = "common/clustered.rs"]
#[allow(dead_code)]
mod clustered;
use clustered::unit_vector as vector;

/// A layout under test.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Typed,
    Partial,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Typed => "typed column, table per model",
            Layout::Partial => "untyped column + partial index per model",
        }
    }
    fn table(self) -> &'static str {
        match self {
            Layout::Typed => "bench_layout_typed",
            Layout::Partial => "bench_layout_shared",
        }
    }
}

/// `vector(d)`, or `halfvec(d)` above HNSW's 2,000-dimension `vector` limit.
fn sql_type(dims: usize) -> String {
    if dims > 2000 {
        format!("halfvec({dims})")
    } else {
        format!("vector({dims})")
    }
}

fn ops(dims: usize) -> &'static str {
    if dims > 2000 {
        "halfvec_cosine_ops"
    } else {
        "vector_cosine_ops"
    }
}

async fn connect(url: &str) -> Result<Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection ended: {e}");
        }
    });
    Ok(client)
}

async fn param_type(client: &Client, sql_type: &str) -> Result<Type, BoxError> {
    let stmt = client.prepare(&format!("SELECT $1::{sql_type}")).await?;
    Ok(stmt.params()[0].clone())
}

/// Creates and loads the layout's table; returns the index build time and
/// the index size in bytes.
async fn load(
    client: &Client,
    layout: Layout,
    dims: usize,
    data: &[Vec<f32>],
    others: usize,
) -> Result<(Duration, i64), BoxError> {
    let table = layout.table();
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    match layout {
        Layout::Typed => {
            client
                .batch_execute(&format!(
                    "CREATE TABLE {table} (id int PRIMARY KEY, embedding {} NOT NULL)",
                    sql_type(dims)
                ))
                .await?;
            let half = dims > 2000;
            let ty = param_type(client, if half { "halfvec" } else { "vector" }).await?;
            let sink = client
                .copy_in(&format!(
                    "COPY {table} (id, embedding) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, ty]);
            pin_mut!(writer);
            for (i, v) in data.iter().enumerate() {
                let id = i as i32;
                if half {
                    let h = HalfVector::from_f32_slice(v);
                    writer
                        .as_mut()
                        .write(&[&id as &(dyn ToSql + Sync), &h])
                        .await?;
                } else {
                    let x = Vector::from(v.clone());
                    writer
                        .as_mut()
                        .write(&[&id as &(dyn ToSql + Sync), &x])
                        .await?;
                }
            }
            writer.finish().await?;
        }
        Layout::Partial => {
            client
                .batch_execute(&format!(
                    "CREATE TABLE {table} (id int PRIMARY KEY, model smallint NOT NULL, \
                     embedding vector NOT NULL)"
                ))
                .await?;
            let ty = param_type(client, "vector").await?;
            let sink = client
                .copy_in(&format!(
                    "COPY {table} (id, model, embedding) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::INT2, ty]);
            pin_mut!(writer);
            for (i, v) in data.iter().enumerate() {
                let x = Vector::from(v.clone());
                writer
                    .as_mut()
                    .write(&[&(i as i32) as &(dyn ToSql + Sync), &1_i16, &x])
                    .await?;
            }
            for j in 0..others {
                let x = Vector::from(vector(9_000_000 + j as u64, 768));
                writer
                    .as_mut()
                    .write(&[
                        &((data.len() + j) as i32) as &(dyn ToSql + Sync),
                        &2_i16,
                        &x,
                    ])
                    .await?;
            }
            writer.finish().await?;
        }
    }
    client
        .batch_execute(&format!("VACUUM ANALYZE {table}"))
        .await?;
    let index = format!(
        "CREATE INDEX {table}_hnsw ON {table} USING hnsw ({}) WITH (m = 16, ef_construction = 200){}",
        match layout {
            Layout::Typed => format!("embedding {}", ops(dims)),
            Layout::Partial => format!("(embedding::{}) {}", sql_type(dims), ops(dims)),
        },
        match layout {
            Layout::Typed => "",
            Layout::Partial => " WHERE model = 1",
        }
    );
    let started = Instant::now();
    client.batch_execute(&index).await?;
    let built = started.elapsed();
    let size: i64 = client
        .query_one(&format!("SELECT pg_relation_size('{table}_hnsw')"), &[])
        .await?
        .get(0);
    Ok((built, size))
}

/// The statement of one top-10 search.
fn search_sql(layout: Layout, dims: usize) -> String {
    let t = sql_type(dims);
    match layout {
        Layout::Typed => format!(
            "SELECT id FROM {} ORDER BY embedding <=> $1::{t} LIMIT 10",
            layout.table()
        ),
        Layout::Partial => format!(
            "SELECT id FROM {} WHERE model = 1 ORDER BY embedding::{t} <=> $1::{t} LIMIT 10",
            layout.table()
        ),
    }
}

/// The exact top 10 (cosine = dot product of unit vectors).
fn exact(data: &[Vec<f32>], q: &[f32]) -> Vec<i32> {
    let mut scored: Vec<(f32, i32)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i as i32))
        .collect();
    scored.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
    let mut top: Vec<(f32, i32)> = scored[..10].to_vec();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    top.into_iter().map(|(_, i)| i).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    dotenvy::dotenv().ok();
    let url = std::env::var("DATABASE_URL")?;
    let client = connect(&url).await?;
    client
        .batch_execute("SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = 1")
        .await?;
    let ef = ef_search_for(args.chunks as u64, 10);
    client
        .batch_execute(&format!("SET hnsw.ef_search = {ef}"))
        .await?;
    println!(
        "| dims | layout | index build | index size | recall@10 | p50 ms (median, min–max of {} rounds) |",
        args.rounds
    );
    println!("|---|---|---|---|---|---|");
    for &dims in &args.dims {
        let data: Vec<Vec<f32>> = (0..args.chunks as u64).map(|i| vector(i, dims)).collect();
        let queries: Vec<Vec<f32>> = (0..args.queries as u64)
            .map(|i| vector(5_000_000 + i * 7, dims))
            .collect();
        let truth: Vec<Vec<i32>> = queries.iter().map(|q| exact(&data, q)).collect();
        let mut built = Vec::new();
        for layout in [Layout::Typed, Layout::Partial] {
            built.push(load(&client, layout, dims, &data, args.others).await?);
        }
        let stmts = [
            client.prepare(&search_sql(Layout::Typed, dims)).await?,
            client.prepare(&search_sql(Layout::Partial, dims)).await?,
        ];
        let param = |q: &[f32]| -> Box<dyn ToSql + Sync + Send> {
            if dims > 2000 {
                Box::new(HalfVector::from_f32_slice(q))
            } else {
                Box::new(Vector::from(q.to_vec()))
            }
        };
        // Warm-up: both indexes into the buffer cache.
        for q in queries.iter().take(20) {
            for s in &stmts {
                client.query(s, &[param(q).as_ref()]).await?;
            }
        }
        let mut p50s = [Vec::new(), Vec::new()];
        let mut hits = [0_usize, 0];
        for round in 0..args.rounds {
            let mut times = [Vec::new(), Vec::new()];
            for (qi, q) in queries.iter().enumerate() {
                let order = if (round + qi) % 2 == 0 {
                    [0, 1]
                } else {
                    [1, 0]
                };
                for li in order {
                    let p = param(q);
                    let started = Instant::now();
                    let rows = client.query(&stmts[li], &[p.as_ref()]).await?;
                    times[li].push(started.elapsed().as_secs_f64() * 1000.0);
                    if round == 0 {
                        hits[li] += rows
                            .iter()
                            .filter(|r| truth[qi].contains(&r.get::<_, i32>(0)))
                            .count();
                    }
                }
            }
            for li in 0..2 {
                p50s[li].push(median(times[li].clone()));
            }
        }
        for (li, layout) in [Layout::Typed, Layout::Partial].into_iter().enumerate() {
            let (build, size) = built[li];
            let p = &p50s[li];
            println!(
                "| {dims} ({}) | {} | {:.1} s | {} MB | {:.3} | {:.3} ({:.3}–{:.3}) |",
                sql_type(dims),
                layout.name(),
                build.as_secs_f64(),
                size / (1024 * 1024),
                hits[li] as f64 / (10 * args.queries) as f64,
                median(p.clone()),
                p.iter().copied().fold(f64::INFINITY, f64::min),
                p.iter().copied().fold(0.0, f64::max),
            );
        }
    }
    for layout in [Layout::Typed, Layout::Partial] {
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", layout.table()))
            .await?;
    }
    Ok(())
}
