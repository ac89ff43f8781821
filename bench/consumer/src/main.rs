//! `consumer-bench`: the library measured from a crate outside its
//! workspace, as an application builds it (sqlx-core from crates.io, no
//! workspace patch). Issue 12, item 1.
//!
//! ```bash
//! cd bench/consumer
//! T=../../target/consumer
//! cargo build --release --target-dir $T && cp $T/release/consumer-bench $T/consumer-bench-released
//! # optional: the same crate with the vendored sqlx-core (TCP_NODELAY set by sqlx itself)
//! cargo build --release --target-dir $T \
//!   --config "patch.crates-io.sqlx-core.path=\"$PWD/../../vendor/sqlx-core\"" \
//!   && cp $T/release/consumer-bench $T/consumer-bench-patched && git checkout Cargo.lock
//! $T/consumer-bench-released --patched-bin $T/consumer-bench-patched   # DATABASE_URL or --url
//! ```
//!
//! The parent process creates `mi_perf_consumer` (migrated, HNSW index
//! dropped so uploads measure the client and the network, not graph
//! insertion), then runs every configuration as a child process, in rotated
//! order, `--rounds` times, and prints the median and min–max of each.
//! Configurations: sqlx as released with the library's run-time fix off
//! (`MOCKINTERVIEW_DB_SOCKET_TUNING=off`) and on, and (with
//! `--patched-bin`) the vendored sqlx-core that sets `TCP_NODELAY` itself,
//! each over TLS (`sslmode=require`) and without (`sslmode=disable`).

use std::process::Command;
use std::time::{Duration, Instant};

use mockinterview_db::chunks::{SearchQuery, SearchScope, replace_resume_chunks, search_chunks};
use mockinterview_db::profiles::{FirebaseUser, upsert_profile};
use mockinterview_db::resumes::{NewResume, PdfUpload, create_resume};
use mockinterview_db::{DbConfig, Embedding, Migrator, MigratorTrait, NewChunk};
use sea_orm::ConnectionTrait;
use serde_json::json;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const DB_NAME: &str = "mi_perf_consumer";
const CHUNKS_PER_RESUME: usize = 50;

#[derive(Clone, Debug)]
struct Opts {
    url: Option<String>,
    chunks: usize,
    searches: usize,
    connects: usize,
    rounds: usize,
    patched_bin: Option<String>,
    child: bool,
}

fn parse_args() -> Result<Opts, BoxError> {
    let mut o = Opts {
        url: None,
        chunks: 30_000,
        searches: 500,
        connects: 10,
        rounds: 3,
        patched_bin: None,
        child: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--url" => o.url = Some(val()?),
            "--chunks" => o.chunks = val()?.parse()?,
            "--searches" => o.searches = val()?.parse()?,
            "--connects" => o.connects = val()?.parse()?,
            "--rounds" => o.rounds = val()?.parse()?,
            "--patched-bin" => o.patched_bin = Some(val()?),
            "--child" => o.child = true,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .init();
    let result = match parse_args() {
        Ok(o) if o.child => child(o).await,
        Ok(o) => parent(o).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("consumer-bench failed: {e}");
        std::process::exit(1);
    }
}

/// Small deterministic generator (no `rand` dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    fn embedding(&mut self) -> Result<Embedding, BoxError> {
        let mut v: Vec<f32> = (0..768).map(|_| self.unit()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        Ok(Embedding::new(v)?)
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One measurement in a fresh process: connections, uploads, searches.
async fn child(o: Opts) -> Result<(), BoxError> {
    let url = o.url.clone().ok_or("--url is required with --child")?;
    let db_url = pgconn::DbUrl::parse(&url)?;
    let server: Vec<std::net::SocketAddr> = tokio::net::lookup_host((db_url.host(), db_url.port()))
        .await?
        .collect();

    // Connection set-up: a one-connection pool, connect (TLS, SCRAM, ping,
    // the library's hook), close.
    let mut connects = Vec::new();
    for _ in 0..o.connects {
        let mut c = DbConfig::new(url.clone());
        c.max_connections = 1;
        let t = Instant::now();
        let db = c.connect().await?;
        connects.push(ms(t.elapsed()));
        db.close().await?;
    }

    let mut config = DbConfig::new(url.clone());
    config.max_connections = 2;
    let db = config.connect().await?;

    // Users and resumes (setup), chunks prepared outside the timing.
    let resumes = o.chunks.div_ceil(CHUNKS_PER_RESUME);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    let mut owners = Vec::with_capacity(resumes);
    for i in 0..resumes {
        let uid = format!("consumer-{}-{i}", Uuid::new_v4());
        let user = upsert_profile(
            &db,
            &FirebaseUser {
                uid: uid.clone(),
                email: Some(format!("{uid}@example.com")),
                ..Default::default()
            },
        )
        .await?;
        let resume = create_resume(
            &db,
            NewResume {
                user_id: user.id,
                title: "Resume".into(),
                file_name: "resume.pdf".into(),
                pdf: PdfUpload::path(format!("consumer/{uid}.pdf"), 100_000)?,
                content: None,
            },
        )
        .await?;
        owners.push((user.id, resume.id));
    }
    let mut uploads = Vec::new();
    let t = Instant::now();
    let mut per_call = Vec::with_capacity(resumes);
    for (i, (user_id, resume_id)) in owners.iter().enumerate() {
        let n = CHUNKS_PER_RESUME.min(o.chunks - i * CHUNKS_PER_RESUME);
        let chunks: Vec<NewChunk> = (0..n)
            .map(|j| {
                Ok(NewChunk::new(
                    format!("Chunk {j} of resume {i}: built a data layer on PostgreSQL."),
                    rng.embedding()?,
                )
                .with_metadata("section", "experience"))
            })
            .collect::<Result<_, BoxError>>()?;
        uploads.push((*user_id, *resume_id, chunks));
    }
    let prep = t.elapsed();
    let t = Instant::now();
    for (user_id, resume_id, chunks) in &uploads {
        let s = Instant::now();
        replace_resume_chunks(&db, *user_id, *resume_id, chunks).await?;
        per_call.push(ms(s.elapsed()));
    }
    let upload_s = t.elapsed().as_secs_f64();

    // Scoped searches (exact, one user's 50 chunks), top 5.
    let mut searches = Vec::with_capacity(o.searches);
    for i in 0..o.searches + 20 {
        let (user_id, _) = owners[(rng.next() as usize) % owners.len()];
        let q = SearchQuery::new(rng.embedding()?, 5, SearchScope::User(user_id));
        let s = Instant::now();
        search_chunks(&db, &q).await?;
        if i >= 20 {
            searches.push(ms(s.elapsed()));
        }
    }

    // The sockets as the kernel has them, and the hook's cost (one pass
    // over this process's descriptors, with the pool's sockets open).
    let states = pgconn::socket::connections_to(&server)?;
    let nodelay_on = states.iter().filter(|s| s.nodelay).count();
    let mut hook = Vec::new();
    for _ in 0..200 {
        let s = Instant::now();
        let _ = pgconn::socket::connections_to(&server)?;
        hook.push(s.elapsed().as_secs_f64() * 1e6);
    }
    db.execute_unprepared("SELECT 1").await?;
    db.close().await?;

    let stalls = searches.iter().filter(|&&x| x > 30.0).count();
    let out = json!({
        "connect_p50_ms": pct(&mut connects.clone(), 50.0),
        "connect_max_ms": pct(&mut connects, 100.0),
        "upload_s": upload_s,
        "prep_s": prep.as_secs_f64(),
        "chunks_per_s": o.chunks as f64 / upload_s,
        "upload_p50_ms": pct(&mut per_call.clone(), 50.0),
        "upload_p99_ms": pct(&mut per_call, 99.0),
        "search_p50_ms": pct(&mut searches.clone(), 50.0),
        "search_p99_ms": pct(&mut searches.clone(), 99.0),
        "search_max_ms": pct(&mut searches, 100.0),
        "search_over_30ms": stalls,
        "sockets": states.len(),
        "sockets_nodelay": nodelay_on,
        "inspect_p50_us": pct(&mut hook, 50.0),
        "warned": mockinterview_db::net::nodelay_warning_logged(),
    });
    println!("RESULT {out}");
    Ok(())
}

/// One configuration of the comparison.
struct Config {
    label: &'static str,
    patched: bool,
    tuning: bool,
    tls: bool,
}

const CONFIGS: [Config; 6] = [
    Config {
        label: "sqlx 0.9.0 as released, run-time fix off",
        patched: false,
        tuning: false,
        tls: true,
    },
    Config {
        label: "sqlx 0.9.0 as released + library's run-time fix",
        patched: false,
        tuning: true,
        tls: true,
    },
    Config {
        label: "vendored sqlx-core (sets TCP_NODELAY), run-time fix off",
        patched: true,
        tuning: false,
        tls: true,
    },
    Config {
        label: "sqlx 0.9.0 as released, run-time fix off",
        patched: false,
        tuning: false,
        tls: false,
    },
    Config {
        label: "sqlx 0.9.0 as released + library's run-time fix",
        patched: false,
        tuning: true,
        tls: false,
    },
    Config {
        label: "vendored sqlx-core (sets TCP_NODELAY), run-time fix off",
        patched: true,
        tuning: false,
        tls: false,
    },
];

fn with_sslmode(url: &str, mode: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode={mode}")
}

async fn parent(o: Opts) -> Result<(), BoxError> {
    let admin_url = match &o.url {
        Some(u) => u.clone(),
        None => DbConfig::from_env()?.url,
    };
    let admin = DbConfig::new(admin_url.clone()).connect().await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {DB_NAME}"))
        .await?;
    let url = pgconn::DbUrl::parse(&admin_url)?
        .with_database(DB_NAME)
        .as_str()
        .to_owned();
    let db = DbConfig::new(url.clone()).connect().await?;
    Migrator::up(&db, None).await?;
    db.execute_unprepared("DROP INDEX idx_resume_chunks_embedding")
        .await?;

    let me = std::env::current_exe()?;
    let configs: Vec<&Config> = CONFIGS
        .iter()
        .filter(|c| !c.patched || o.patched_bin.is_some())
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "consumer-bench: {} chunks per run, {} rounds × {} configurations; load before: {}",
        o.chunks,
        o.rounds,
        configs.len(),
        load.trim()
    );
    let mut results: Vec<Vec<serde_json::Value>> = vec![Vec::new(); configs.len()];
    for round in 0..o.rounds {
        for k in 0..configs.len() {
            let i = (round + k) % configs.len();
            let c = configs[i];
            db.execute_unprepared("TRUNCATE user_profiles CASCADE; CHECKPOINT")
                .await?;
            let bin = if c.patched {
                std::path::PathBuf::from(o.patched_bin.as_deref().unwrap_or_default())
            } else {
                me.clone()
            };
            let child_url = with_sslmode(&url, if c.tls { "require" } else { "disable" });
            let out = Command::new(&bin)
                .args(["--child", "--url", &child_url])
                .args(["--chunks", &o.chunks.to_string()])
                .args(["--searches", &o.searches.to_string()])
                .args(["--connects", &o.connects.to_string()])
                .env(
                    "MOCKINTERVIEW_DB_SOCKET_TUNING",
                    if c.tuning { "on" } else { "off" },
                )
                .output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                return Err(format!("child {} failed: {stderr}", c.label).into());
            }
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("RESULT "))
                .ok_or("child printed no RESULT")?;
            let v: serde_json::Value = serde_json::from_str(line)?;
            eprintln!(
                "round {} {} ({}): {}{}",
                round + 1,
                c.label,
                if c.tls { "TLS" } else { "plain" },
                line,
                if stderr.contains("TCP_NODELAY is not set") {
                    " [warned]"
                } else {
                    ""
                }
            );
            results[i].push(v);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load after: {}", load.trim());

    let stat = |rs: &[serde_json::Value], key: &str| -> String {
        let mut v: Vec<f64> = rs.iter().filter_map(|r| r[key].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        let med = v[v.len() / 2];
        let f = |x: f64| {
            if x >= 100.0 {
                format!("{x:.0}")
            } else if x >= 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        };
        format!("{} ({}–{})", f(med), f(v[0]), f(v[v.len() - 1]))
    };
    println!(
        "\n{} chunks ({} per resume, one `replace_resume_chunks` call each, no HNSW index), \
         {} scoped searches, {} connects per run; median (min–max) of {} rounds\n",
        o.chunks, CHUNKS_PER_RESUME, o.searches, o.connects, o.rounds
    );
    println!(
        "| client build | transport | upload 30k chunks, s | chunks/s | upload p50 / p99 ms per resume | search p50 / p99 / max ms | searches > 30 ms | connect p50 ms | sockets with TCP_NODELAY | warned |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, c) in configs.iter().enumerate() {
        let rs = &results[i];
        println!(
            "| {} | {} | {} | {} | {} / {} | {} / {} / {} | {} | {} | {}/{} | {} |",
            c.label,
            if c.tls { "TLS" } else { "plain" },
            stat(rs, "upload_s"),
            stat(rs, "chunks_per_s"),
            stat(rs, "upload_p50_ms"),
            stat(rs, "upload_p99_ms"),
            stat(rs, "search_p50_ms"),
            stat(rs, "search_p99_ms"),
            stat(rs, "search_max_ms"),
            stat(rs, "search_over_30ms"),
            stat(rs, "connect_p50_ms"),
            rs.iter()
                .map(|r| r["sockets_nodelay"].as_u64().unwrap_or(0))
                .min()
                .unwrap_or(0),
            rs.iter()
                .map(|r| r["sockets"].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0),
            if rs.iter().any(|r| r["warned"].as_bool() == Some(true)) {
                "yes"
            } else {
                "no"
            },
        );
    }
    let mut inspect: Vec<f64> = results
        .iter()
        .flatten()
        .filter_map(|r| r["inspect_p50_us"].as_f64())
        .collect();
    println!(
        "\nCost of one pass over the process's descriptors (`pgconn::socket::connections_to`, \
         what the hook does per new connection), median of the runs' p50: {:.0} µs",
        pct(&mut inspect, 50.0)
    );
    db.close().await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        .await?;
    Ok(())
}
