//! `TCP_NODELAY` (and keepalive, the user timeout) on the pool's
//! connections, at run time, and a warning when that is impossible.
//!
//! sqlx 0.9.0 no longer sets `TCP_NODELAY` (launchbadge/sqlx#4335, fixed
//! upstream by PR #4336, not released yet). Nagle's algorithm then holds the
//! last segment of every message that spans several TCP segments until the
//! server's delayed ACK, about 40 ms on Linux: a per-resume chunk upload
//! (`COPY`) took 4× longer and searches stalled now and then (BENCHMARKS.md).
//! A `[patch.crates-io]` only applies inside this workspace, so the library
//! fixes the sockets itself: after sqlx opens a pooled connection, a pool
//! `after_connect` hook finds the process's TCP sockets to the server and
//! sets `TCP_NODELAY` where it is off ([`pgconn::socket`], Linux 5.6+). The
//! same hook enables TCP keepalive and `TCP_USER_TIMEOUT`
//! ([`crate::DbConfig::tcp_keepalive`], [`crate::DbConfig::tcp_user_timeout`]),
//! which sqlx does not expose either.
//!
//! When it can neither find the option set (a patched or fixed sqlx) nor
//! set it, the library logs one `tracing` warning per process with what the
//! application can add instead. Set [`SOCKET_TUNING_ENV`] to `off` to keep
//! the hook from changing sockets (it still checks and warns): for measuring
//! the difference, not for production.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pgconn::DbUrl;
use pgconn::socket::{self, SocketError, SocketTuning, TuneReport};
use sea_orm::sqlx::pool::PoolOptions;
use sea_orm::sqlx::postgres::{PgConnection, Postgres};

/// Environment variable: `off` (or `0`, `false`) leaves sockets as sqlx
/// opened them; the library still checks them and warns.
pub const SOCKET_TUNING_ENV: &str = "MOCKINTERVIEW_DB_SOCKET_TUNING";

/// What the application can add to get `TCP_NODELAY` from sqlx itself
/// (which also covers the TLS and authentication handshake, before this
/// library's hook runs).
pub const NODELAY_ADVICE: &str = "add to the application's Cargo.toml \
    `[patch.crates-io] sqlx-core = { path = \"<mockinterview-db checkout>/vendor/sqlx-core\" }` \
    (or a git source pointing at the mockinterview-db repository, which contains it), \
    then `cargo update -p sqlx-core`; see the README, \"Using the library\"";

static WARNED: AtomicBool = AtomicBool::new(false);

/// The pool's server and what the hook found last, shared by its connections.
struct Server {
    host: String,
    port: u16,
    target: String,
    tuning: SocketTuning,
    addrs: Mutex<Vec<SocketAddr>>,
}

/// Adds the `after_connect` hook to the pool options of `url` (nothing for
/// a Unix-domain socket: no Nagle there).
pub(crate) fn with_socket_tuning(
    pool: PoolOptions<Postgres>,
    url: &DbUrl,
    tuning: SocketTuning,
) -> PoolOptions<Postgres> {
    if url.connect_options().get_socket().is_some() {
        return pool;
    }
    let server = Arc::new(Server {
        host: url.connect_options().get_host().to_owned(),
        port: url.port(),
        target: url.target(),
        tuning,
        addrs: Mutex::new(Vec::new()),
    });
    pool.after_connect(move |conn, _meta| {
        let server = server.clone();
        Box::pin(async move {
            let own = own_address(conn).await;
            tune_new_connection(&server, own).await;
            Ok(())
        })
    })
}

/// The new connection's local address as the server saw it: which socket
/// gets this pool's keepalive and user timeout. Behind a pooler it is the
/// pooler's address and matches none of ours ([`socket::tune_connections_to`]
/// then only configures sockets nobody has configured). One simple-protocol
/// query, so it works through any pooler; `None` if it fails.
async fn own_address(conn: &mut PgConnection) -> Option<SocketAddr> {
    use sea_orm::sqlx::{Executor as _, Row as _};
    let row = conn
        .fetch_optional(sea_orm::sqlx::raw_sql(
            "SELECT host(inet_client_addr()), inet_client_port()",
        ))
        .await
        .ok()??;
    let ip: String = row.try_get(0).ok()?;
    let port: i32 = row.try_get(1).ok()?;
    Some(SocketAddr::new(ip.parse().ok()?, u16::try_from(port).ok()?))
}

/// Whether [`SOCKET_TUNING_ENV`] allows changing sockets.
fn tuning_enabled() -> bool {
    enabled_by(std::env::var(SOCKET_TUNING_ENV).ok().as_deref())
}

fn enabled_by(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("off" | "0" | "false" | "no")
    )
}

/// Runs after sqlx opened a connection: `TCP_NODELAY` on every socket to the
/// server, keepalive and the user timeout on the new one (`own`); warns once
/// if `TCP_NODELAY` is not on.
async fn tune_new_connection(server: &Server, own: Option<SocketAddr>) {
    let enabled = tuning_enabled();
    let mut outcome = tune_or_check(server, enabled, own).await;
    if matches!(&outcome, Ok(r) if r.sockets == 0) {
        // Not found under the addresses resolved before: resolve again
        // (DNS changed, or the first connection of the pool).
        resolve(server, true).await;
        outcome = tune_or_check(server, enabled, own).await;
    }
    match outcome {
        Ok(report) if report.all_nodelay() => {
            tracing::debug!(target = %server.target, %report, "connection sockets checked");
        }
        Ok(report) => warn_once(
            &server.target,
            &if enabled {
                format!("found no TCP socket to it to check ({report})")
            } else {
                format!("{SOCKET_TUNING_ENV}=off and the driver left it off ({report})")
            },
        ),
        Err(e) => warn_once(&server.target, &error_chain(&e)),
    }
}

async fn tune_or_check(
    server: &Server,
    enabled: bool,
    own: Option<SocketAddr>,
) -> Result<TuneReport, SocketError> {
    let addrs = resolve(server, false).await;
    if enabled {
        return socket::tune_connections_to(&addrs, &server.tuning, own);
    }
    let states = socket::connections_to(&addrs)?;
    let on = states.iter().filter(|s| s.nodelay).count();
    Ok(TuneReport {
        sockets: states.len(),
        nodelay_already: on,
        ..TuneReport::default()
    })
}

/// The server's addresses as sqlx resolves the host (cached per pool).
async fn resolve(server: &Server, fresh: bool) -> Vec<SocketAddr> {
    if !fresh {
        let cached = server.addrs.lock().map(|a| a.clone()).unwrap_or_default();
        if !cached.is_empty() {
            return cached;
        }
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .map(Iterator::collect)
        .unwrap_or_default();
    if let Ok(mut cached) = server.addrs.lock() {
        cached.clone_from(&addrs);
    }
    addrs
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn warn_once(target: &str, why: &str) {
    if WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    tracing::warn!(
        target: "mockinterview_db::net",
        "TCP_NODELAY is not set on the connections to {target} and the library could not set it: \
         {why}. With sqlx 0.9.0 as released, statements that span several TCP segments \
         (COPY of resume chunks, large queries over TLS) stall about 40 ms each on Nagle's \
         algorithm, which makes chunk uploads up to 4x slower. To fix it, {NODELAY_ADVICE}."
    );
}

/// True once this process has logged the `TCP_NODELAY` warning.
pub fn nodelay_warning_logged() -> bool {
    WARNED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_switch_accepts_the_usual_spellings() {
        for off in ["off", "0", "false", "no", " OFF "] {
            assert!(!enabled_by(Some(off)), "{off}");
        }
        for on in [None, Some("on"), Some("1"), Some("")] {
            assert!(enabled_by(on), "{on:?}");
        }
    }

    #[test]
    fn error_chain_lists_every_cause() {
        let e = SocketError::Proc {
            path: "/proc/self/fd".into(),
            source: std::io::Error::other("no procfs"),
        };
        assert_eq!(
            error_chain(&e),
            "cannot list this process's descriptors in /proc/self/fd: no procfs"
        );
    }
}
