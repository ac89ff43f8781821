//! TCP options on this process's connections to a server, set at run time.
//!
//! sqlx 0.9.0 no longer sets `TCP_NODELAY` (launchbadge/sqlx#4335), and a
//! `[patch.crates-io]` in this workspace does not reach applications that
//! depend on the library: Cargo ignores a dependency's patches. Without
//! `TCP_NODELAY`, Nagle's algorithm holds back the last small segment of any
//! message that spans several segments until the server's delayed ACK (about
//! 40 ms on Linux): `COPY`, TLS records of large queries, `CopyDone`.
//!
//! sqlx gives no access to its socket, but socket options belong to the
//! socket, not to the descriptor: [`tune_connections_to`] finds this
//! process's TCP sockets connected to the server (`/proc/self/fd`, then
//! `getpeername` on a duplicate obtained with `pidfd_getfd` on our own
//! process), and sets the options on the duplicate, which changes the
//! original socket. No `unsafe`: the duplicate is an owned descriptor.
//!
//! Linux 5.6 or newer only (`pidfd_getfd`); elsewhere the functions return
//! [`SocketError::Unsupported`], and callers should say so once.
//!
//! Cost: one `pidfd_open`, one directory listing of `/proc/self/fd`, one
//! `readlink` per descriptor and three or four system calls per socket
//! descriptor of the process; tens of microseconds for a typical service
//! (measured in BENCHMARKS.md). It scales with the sockets of this process,
//! not with the machine's.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// TCP keepalive probes: after `idle` without traffic, a probe every
/// `interval`, the connection is dropped after `count` unanswered probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// `TCP_KEEPIDLE`: idle time before the first probe (whole seconds, ≥ 1).
    pub idle: Duration,
    /// `TCP_KEEPINTVL`: time between probes (whole seconds, ≥ 1).
    pub interval: Duration,
    /// `TCP_KEEPCNT`: unanswered probes before the connection is dropped.
    pub count: u32,
}

/// Which options [`tune_connections_to`] sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketTuning {
    /// Set `TCP_NODELAY` (disable Nagle's algorithm) where it is off.
    pub nodelay: bool,
    /// Enable `SO_KEEPALIVE` with these timings.
    pub keepalive: Option<Keepalive>,
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before
    /// the kernel drops the connection (millisecond resolution).
    pub user_timeout: Option<Duration>,
}

impl SocketTuning {
    /// Only `TCP_NODELAY`.
    pub const NODELAY: Self = Self {
        nodelay: true,
        keepalive: None,
        user_timeout: None,
    };
}

impl Default for SocketTuning {
    /// [`SocketTuning::NODELAY`].
    fn default() -> Self {
        Self::NODELAY
    }
}

/// What [`tune_connections_to`] found and changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TuneReport {
    /// TCP sockets of this process connected to the server.
    pub sockets: usize,
    /// Of those, how many already had `TCP_NODELAY` (set by the driver).
    pub nodelay_already: usize,
    /// Of those, how many got `TCP_NODELAY` now.
    pub nodelay_set: usize,
    /// Sockets on which keepalive or the user timeout were set.
    pub options_set: usize,
    /// Descriptors that closed while they were being inspected (skipped).
    pub vanished: usize,
}

impl TuneReport {
    /// True when at least one socket to the server was found and every one
    /// has `TCP_NODELAY` now.
    pub fn all_nodelay(&self) -> bool {
        self.sockets > 0 && self.nodelay_already + self.nodelay_set == self.sockets
    }
}

/// One TCP socket of this process, as [`connections_to`] reads it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketState {
    /// The descriptor number in this process.
    pub fd: i32,
    /// This end's address (the server sees it as the client's).
    pub local: Option<SocketAddr>,
    /// The server's address.
    pub peer: SocketAddr,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
    /// `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT` (meaningful when
    /// `keepalive` is on).
    pub keepalive_timings: Keepalive,
    /// `TCP_USER_TIMEOUT` (zero: the kernel default).
    pub user_timeout: Duration,
}

/// Why sockets could not be inspected or tuned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// This platform or kernel cannot do it (not Linux, Linux before 5.6, or
    /// `pidfd_open`/`pidfd_getfd` blocked, e.g. by a seccomp profile).
    #[error("tuning TCP sockets at run time is not supported here: {reason}")]
    Unsupported {
        /// What is missing.
        reason: String,
    },
    /// `/proc/self/fd` could not be read (no procfs mounted?).
    #[error("cannot list this process's descriptors in {path}")]
    Proc {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Setting an option failed.
    #[error("cannot set {option} on descriptor {fd} (connected to {peer})")]
    SetOption {
        /// The option, e.g. `TCP_NODELAY`.
        option: &'static str,
        /// The descriptor number in this process.
        fd: i32,
        /// The server's address.
        peer: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

/// Sets `tuning` on this process's TCP sockets connected to one of
/// `server`'s addresses (as the driver resolved the host; IPv4-mapped IPv6
/// addresses match their IPv4 form).
///
/// - `TCP_NODELAY` goes on every such socket where it is off: harmless for
///   other clients of the same server in this process, and what they need
///   too.
/// - Keepalive and the user timeout are per-pool settings, so they go only
///   on the caller's own connection: the socket whose local address is
///   `own` (the new connection, as the server saw it). When `own` is `None`
///   or matches none of them (e.g. behind a pooler, which reports its own
///   address), they go on the sockets nobody has configured yet (keepalive
///   off and no user timeout), never over another pool's settings.
///
/// # Errors
/// [`SocketError::Unsupported`] off Linux or when `pidfd_getfd` is
/// unavailable, [`SocketError::Proc`] without `/proc`,
/// [`SocketError::SetOption`] when the kernel refuses a value.
pub fn tune_connections_to(
    server: &[SocketAddr],
    tuning: &SocketTuning,
    own: Option<SocketAddr>,
) -> Result<TuneReport, SocketError> {
    imp::tune(server, tuning, own)
}

/// The TCP sockets of this process connected to `server`, with their
/// options read back from the kernel: for diagnostics and tests.
///
/// # Errors
/// As [`tune_connections_to`].
pub fn connections_to(server: &[SocketAddr]) -> Result<Vec<SocketState>, SocketError> {
    imp::inspect(server)
}

/// The inode of a `/proc/self/fd/N` link target `socket:[12345]`, `None`
/// for anything else (files, pipes, `anon_inode:[eventpoll]`).
pub(crate) fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// True when `peer` is one of `server`'s addresses: same port, same IP once
/// IPv4-mapped IPv6 addresses are reduced to IPv4.
pub(crate) fn same_endpoint(peer: SocketAddr, server: &[SocketAddr]) -> bool {
    let canonical = |ip: IpAddr| ip.to_canonical();
    server
        .iter()
        .any(|s| s.port() == peer.port() && canonical(s.ip()) == canonical(peer.ip()))
}

impl fmt::Display for TuneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} socket(s) to the server: TCP_NODELAY already on {}, set now {}; \
             keepalive/user timeout set on {}",
            self.sockets, self.nodelay_already, self.nodelay_set, self.options_set
        )
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::net::SocketAddr;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketType, ipproto, sockopt};
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

    use super::{
        Keepalive, SocketError, SocketState, SocketTuning, TuneReport, same_endpoint, socket_inode,
    };

    const FD_DIR: &str = "/proc/self/fd";

    /// A duplicate of one of our TCP sockets to the server.
    struct Found {
        fd: i32,
        peer: SocketAddr,
        dup: OwnedFd,
    }

    /// Calls `f` for every TCP socket of this process connected to `server`;
    /// returns how many descriptors vanished while being looked at.
    fn each_connection(
        server: &[SocketAddr],
        mut f: impl FnMut(Found) -> Result<(), SocketError>,
    ) -> Result<usize, SocketError> {
        let unsupported = |what: &str, e: Errno| SocketError::Unsupported {
            reason: format!(
                "{what} failed: {e} (needs Linux 5.6 or newer and no seccomp filter blocking it)"
            ),
        };
        let pidfd =
            pidfd_open(getpid(), PidfdFlags::empty()).map_err(|e| unsupported("pidfd_open", e))?;
        let proc_err = |source| SocketError::Proc {
            path: FD_DIR.into(),
            source,
        };
        // The candidates first: the listing holds a descriptor of its own.
        let mut sockets = Vec::new();
        for entry in std::fs::read_dir(FD_DIR).map_err(proc_err)? {
            let Ok(entry) = entry else { continue };
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            // A descriptor closed in the meantime has no link: skip it.
            let Ok(link) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if link.to_str().and_then(socket_inode).is_some() {
                sockets.push(fd);
            }
        }
        let mut vanished = 0;
        for fd in sockets {
            let dup = match pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) {
                Ok(dup) => dup,
                Err(Errno::BADF) => {
                    vanished += 1;
                    continue;
                }
                Err(e) => return Err(unsupported("pidfd_getfd", e)),
            };
            // The number may have been reused since the listing. Closing a
            // duplicate of a file would release the process's POSIX record
            // locks on it, so a duplicate that is not a socket any more is
            // leaked (one descriptor, in a race that needs a close and a
            // reopen within microseconds) rather than closed.
            match sockopt::socket_type(&dup) {
                Ok(SocketType::STREAM) => {}
                Ok(_) => continue,
                Err(_) => {
                    std::mem::forget(dup);
                    vanished += 1;
                    continue;
                }
            }
            let Ok(Some(addr)) = rustix::net::getpeername(&dup) else {
                continue; // listening or not yet connected
            };
            if !matches!(
                addr.address_family(),
                AddressFamily::INET | AddressFamily::INET6
            ) {
                continue;
            }
            let Ok(peer) = SocketAddr::try_from(addr) else {
                continue;
            };
            if !same_endpoint(peer, server) {
                continue;
            }
            if sockopt::socket_protocol(&dup).ok().flatten() != Some(ipproto::TCP) {
                continue;
            }
            f(Found { fd, peer, dup })?;
        }
        Ok(vanished)
    }

    fn set_err(option: &'static str, found: &Found) -> impl FnOnce(Errno) -> SocketError {
        let (fd, peer) = (found.fd, found.peer);
        move |e| SocketError::SetOption {
            option,
            fd,
            peer,
            source: e.into(),
        }
    }

    pub(super) fn tune(
        server: &[SocketAddr],
        tuning: &SocketTuning,
        own: Option<SocketAddr>,
    ) -> Result<TuneReport, SocketError> {
        let mut found = Vec::new();
        let vanished = each_connection(server, |f| {
            found.push(f);
            Ok(())
        })?;
        let local = |f: &Found| {
            rustix::net::getsockname(&f.dup)
                .ok()
                .and_then(|a| SocketAddr::try_from(a).ok())
        };
        let is_own = |f: &Found| {
            own.zip(local(f))
                .is_some_and(|(own, local)| same_endpoint(local, &[own]))
        };
        let own_found = found.iter().any(is_own);
        let mut report = TuneReport {
            vanished,
            ..TuneReport::default()
        };
        for f in &found {
            report.sockets += 1;
            let s = &f.dup;
            if tuning.nodelay {
                // Reading first keeps a driver's own setting visible in the
                // report (and costs one call less than writing blindly).
                if sockopt::tcp_nodelay(s).unwrap_or(false) {
                    report.nodelay_already += 1;
                } else {
                    sockopt::set_tcp_nodelay(s, true).map_err(set_err("TCP_NODELAY", f))?;
                    report.nodelay_set += 1;
                }
            }
            let mine = if own_found {
                is_own(f)
            } else {
                // Nobody's yet: keepalive off and no user timeout.
                !sockopt::socket_keepalive(s).unwrap_or(true)
                    && sockopt::tcp_user_timeout(s).unwrap_or(1) == 0
            };
            if mine && set_options(f, tuning)? {
                report.options_set += 1;
            }
        }
        Ok(report)
    }

    /// Keepalive and the user timeout of `tuning` on `f`; whether any was set.
    fn set_options(f: &Found, tuning: &SocketTuning) -> Result<bool, SocketError> {
        let s = &f.dup;
        if let Some(k) = tuning.keepalive {
            sockopt::set_tcp_keepidle(s, at_least_a_second(k.idle))
                .map_err(set_err("TCP_KEEPIDLE", f))?;
            sockopt::set_tcp_keepintvl(s, at_least_a_second(k.interval))
                .map_err(set_err("TCP_KEEPINTVL", f))?;
            sockopt::set_tcp_keepcnt(s, k.count.max(1)).map_err(set_err("TCP_KEEPCNT", f))?;
            sockopt::set_socket_keepalive(s, true).map_err(set_err("SO_KEEPALIVE", f))?;
        }
        if let Some(t) = tuning.user_timeout {
            let ms = u32::try_from(t.as_millis()).unwrap_or(u32::MAX);
            sockopt::set_tcp_user_timeout(s, ms).map_err(set_err("TCP_USER_TIMEOUT", f))?;
        }
        Ok(tuning.keepalive.is_some() || tuning.user_timeout.is_some())
    }

    /// The kernel takes whole seconds, at least one.
    fn at_least_a_second(d: Duration) -> Duration {
        Duration::from_secs(d.as_secs().max(1))
    }

    pub(super) fn inspect(server: &[SocketAddr]) -> Result<Vec<SocketState>, SocketError> {
        let mut out = Vec::new();
        each_connection(server, |found| {
            let s = &found.dup;
            out.push(SocketState {
                fd: found.fd,
                local: rustix::net::getsockname(s)
                    .ok()
                    .and_then(|a| SocketAddr::try_from(a).ok()),
                peer: found.peer,
                nodelay: sockopt::tcp_nodelay(s).unwrap_or(false),
                keepalive: sockopt::socket_keepalive(s).unwrap_or(false),
                keepalive_timings: Keepalive {
                    idle: sockopt::tcp_keepidle(s).unwrap_or_default(),
                    interval: sockopt::tcp_keepintvl(s).unwrap_or_default(),
                    count: sockopt::tcp_keepcnt(s).unwrap_or_default(),
                },
                user_timeout: Duration::from_millis(
                    sockopt::tcp_user_timeout(s).map_or(0, u64::from),
                ),
            });
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::net::SocketAddr;

    use super::{SocketError, SocketState, SocketTuning, TuneReport};

    fn unsupported() -> SocketError {
        SocketError::Unsupported {
            reason: format!(
                "only Linux can reach a driver's sockets from outside it (this is {})",
                std::env::consts::OS
            ),
        }
    }

    pub(super) fn tune(
        _server: &[SocketAddr],
        _tuning: &SocketTuning,
        _own: Option<SocketAddr>,
    ) -> Result<TuneReport, SocketError> {
        Err(unsupported())
    }

    pub(super) fn inspect(_server: &[SocketAddr]) -> Result<Vec<SocketState>, SocketError> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socket_links() {
        assert_eq!(socket_inode("socket:[123456]"), Some(123_456));
        assert_eq!(socket_inode("socket:[]"), None);
        assert_eq!(socket_inode("socket:[12x]"), None);
        assert_eq!(socket_inode("anon_inode:[eventpoll]"), None);
        assert_eq!(socket_inode("pipe:[42]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn matches_endpoints_across_address_forms() {
        let v4: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5432".parse().unwrap();
        let v6: SocketAddr = "[::1]:5432".parse().unwrap();
        assert!(same_endpoint(v4, &[v4]));
        assert!(same_endpoint(mapped, &[v4]));
        assert!(same_endpoint(v4, &[mapped]));
        assert!(same_endpoint(v6, &[v4, v6]));
        assert!(!same_endpoint(v6, &[v4]));
        assert!(!same_endpoint("127.0.0.1:5433".parse().unwrap(), &[v4]));
        assert!(!same_endpoint(v4, &[]));
    }

    #[test]
    fn report_needs_a_socket_to_vouch_for_nodelay() {
        assert!(!TuneReport::default().all_nodelay());
        let r = TuneReport {
            sockets: 2,
            nodelay_already: 1,
            nodelay_set: 1,
            ..TuneReport::default()
        };
        assert!(r.all_nodelay());
        assert!(
            !TuneReport {
                nodelay_set: 0,
                ..r
            }
            .all_nodelay()
        );
    }

    #[cfg(target_os = "linux")]
    mod linux {
        use std::net::{TcpListener, TcpStream};
        use std::time::Duration;

        use super::super::*;

        /// A listener, a client connected to it and the accepted end.
        fn pair() -> (TcpListener, TcpStream, TcpStream) {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            (listener, client, accepted)
        }

        #[test]
        fn sets_nodelay_on_the_original_socket() {
            let (listener, client, accepted) = pair();
            let server = [listener.local_addr().unwrap()];
            assert!(!client.nodelay().unwrap(), "std leaves Nagle on");

            let report = tune_connections_to(&server, &SocketTuning::NODELAY, None).unwrap();
            assert_eq!(
                report,
                TuneReport {
                    sockets: 1,
                    nodelay_set: 1,
                    ..TuneReport::default()
                }
            );
            // Read back through the original descriptor, not the duplicate.
            assert!(client.nodelay().unwrap());
            // The accepted end's peer is the client, not the server: untouched.
            assert!(!accepted.nodelay().unwrap());

            // Idempotent: the second pass only finds it set.
            let again = tune_connections_to(&server, &SocketTuning::NODELAY, None).unwrap();
            assert_eq!((again.nodelay_already, again.nodelay_set), (1, 0));
            assert!(again.all_nodelay());
        }

        #[test]
        fn sets_keepalive_and_user_timeout() {
            let (listener, client, _accepted) = pair();
            let server = [listener.local_addr().unwrap()];
            let keepalive = Keepalive {
                idle: Duration::from_secs(7),
                interval: Duration::from_secs(3),
                count: 4,
            };
            let tuning = SocketTuning {
                nodelay: false,
                keepalive: Some(keepalive),
                user_timeout: Some(Duration::from_millis(12_500)),
            };
            let report = tune_connections_to(&server, &tuning, None).unwrap();
            assert_eq!((report.sockets, report.options_set), (1, 1));
            assert_eq!(report.nodelay_set, 0, "nodelay: false leaves it alone");
            assert!(!client.nodelay().unwrap());

            let states = connections_to(&server).unwrap();
            assert_eq!(states.len(), 1, "{states:?}");
            let s = states[0];
            assert_eq!(s.peer, server[0]);
            assert_eq!(s.local, Some(client.local_addr().unwrap()));
            assert!(s.keepalive);
            assert_eq!(s.keepalive_timings, keepalive);
            assert_eq!(s.user_timeout, Duration::from_millis(12_500));
        }

        #[test]
        fn per_connection_options_go_on_the_own_socket_only() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let server = [listener.local_addr().unwrap()];
            let first = TcpStream::connect(server[0]).unwrap();
            let second = TcpStream::connect(server[0]).unwrap();
            let tuning = |secs| SocketTuning {
                nodelay: true,
                keepalive: Some(Keepalive {
                    idle: Duration::from_secs(secs),
                    interval: Duration::from_secs(1),
                    count: 3,
                }),
                user_timeout: None,
            };
            let own = |s: &TcpStream| Some(s.local_addr().unwrap());
            let idle = |s: &TcpStream| {
                connections_to(&server)
                    .unwrap()
                    .into_iter()
                    .find(|st| st.local == own(s))
                    .map(|st| (st.keepalive, st.keepalive_timings.idle))
                    .unwrap()
            };
            // Named: only that socket, TCP_NODELAY on both.
            let report = tune_connections_to(&server, &tuning(7), own(&first)).unwrap();
            assert_eq!((report.sockets, report.options_set), (2, 1));
            assert_eq!(idle(&first), (true, Duration::from_secs(7)));
            assert!(!idle(&second).0);
            assert!(second.nodelay().unwrap());
            // Not found (a pooler's address): only unconfigured sockets, so
            // the first keeps its 7 s.
            let elsewhere = Some("127.0.0.1:1".parse().unwrap());
            let report = tune_connections_to(&server, &tuning(9), elsewhere).unwrap();
            assert_eq!(report.options_set, 1);
            assert_eq!(idle(&first), (true, Duration::from_secs(7)));
            assert_eq!(idle(&second), (true, Duration::from_secs(9)));
        }

        #[test]
        fn leaves_other_peers_alone() {
            let (_listener, client, _accepted) = pair();
            let other = TcpListener::bind("127.0.0.1:0").unwrap();
            let report =
                tune_connections_to(&[other.local_addr().unwrap()], &SocketTuning::NODELAY, None)
                    .unwrap();
            assert_eq!(report.sockets, 0);
            assert!(!report.all_nodelay());
            assert!(!client.nodelay().unwrap());
        }
    }
}
