//! Streaming replicas: a pool per replica, a monitor that tracks how far
//! each one has replayed the primary's write-ahead log, and the choice of a
//! replica for a read.
//!
//! - **Staleness.** Every [`DbConfig::replica_check_interval`] the monitor
//!   reads the primary's WAL insert position and each replica's replay
//!   position. A replica's staleness is the age of the oldest primary
//!   position it has not replayed yet (zero when it has replayed the latest
//!   one). Replicas staler than [`DbConfig::max_replica_lag`] get no reads
//!   until they catch up.
//! - **Read-your-writes.** A read that must see a position (a
//!   [`crate::Session`]'s last write) goes to a replica that has replayed it;
//!   one that has not is polled for up to
//!   [`DbConfig::read_your_writes_wait`], then skipped; with none left the
//!   read goes to the primary.
//! - **Failures.** A replica that fails at the connection level, in a read
//!   or in the monitor, is out of rotation for
//!   [`DbConfig::replica_retry_after`]; the monitor then tries it again.
//!   Reads never fail because of a replica: they run on the primary.
//!
//! [`DbConfig::replica_check_interval`]: crate::DbConfig::replica_check_interval
//! [`DbConfig::max_replica_lag`]: crate::DbConfig::max_replica_lag
//! [`DbConfig::read_your_writes_wait`]: crate::DbConfig::read_your_writes_wait
//! [`DbConfig::replica_retry_after`]: crate::DbConfig::replica_retry_after

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::config::DbConfig;
use crate::error::{Error, Result};

/// A position in the write-ahead log (`pg_lsn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub(crate) u64);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` form (two hexadecimal halves).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (hi, lo) = s.trim().split_once('/')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some(Self(hi << 32 | lo))
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Reads one `pg_lsn` value with `sql`.
async fn read_lsn<C: ConnectionTrait>(db: &C, sql: &str) -> Result<Option<Lsn>> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?;
    let text: Option<String> = match row {
        Some(r) => r.try_get_by_index(0)?,
        None => None,
    };
    Ok(text.as_deref().and_then(Lsn::parse))
}

/// The primary's current WAL insert position (after a commit it is at or
/// past the commit record).
pub(crate) async fn current_lsn<C: ConnectionTrait>(primary: &C) -> Result<Lsn> {
    read_lsn(primary, "SELECT pg_current_wal_insert_lsn()::text")
        .await?
        .ok_or_else(|| Error::Config("the primary returned no WAL position".into()))
}

/// How far a standby has replayed; `None` when it is not in recovery (not a
/// standby, or promoted).
async fn replay_lsn<C: ConnectionTrait>(replica: &C) -> Result<Option<Lsn>> {
    read_lsn(
        replica,
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END",
    )
    .await
}

/// One replica: its pool and what the monitor last saw.
pub struct Replica {
    conn: DatabaseConnection,
    target: String,
    served: AtomicU64,
    replayed: AtomicU64,
    staleness_ms: AtomicU64,
    checked: AtomicBool,
    down_until: Mutex<Option<Instant>>,
    retry_after: Duration,
}

impl Replica {
    pub(crate) fn new(conn: DatabaseConnection, target: String, retry_after: Duration) -> Self {
        Self {
            conn,
            target,
            served: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            staleness_ms: AtomicU64::new(u64::MAX),
            checked: AtomicBool::new(false),
            down_until: Mutex::new(None),
            retry_after,
        }
    }

    /// The replica's pool.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// `host:port/database`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How many reads it has answered.
    pub fn reads_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub(crate) fn count_read(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether it is in rotation (reachable at the last check, not marked
    /// down since).
    pub fn is_up(&self) -> bool {
        self.checked.load(Ordering::Acquire)
            && self
                .down_until
                .lock()
                .expect("not poisoned")
                .is_none_or(|t| Instant::now() >= t)
    }

    /// How far behind the primary it was at the last check.
    pub fn staleness(&self) -> Option<Duration> {
        match self.staleness_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Takes it out of rotation for the retry interval (after a
    /// connection-level failure).
    pub(crate) fn mark_down(&self) {
        *self.down_until.lock().expect("not poisoned") = Some(Instant::now() + self.retry_after);
        self.checked.store(false, Ordering::Release);
    }

    fn due_for_check(&self) -> bool {
        self.down_until
            .lock()
            .expect("not poisoned")
            .is_none_or(|t| Instant::now() >= t)
    }

    fn record(&self, replayed: Lsn, staleness: Duration) {
        self.replayed.fetch_max(replayed.0, Ordering::AcqRel);
        self.staleness_ms.store(
            u64::try_from(staleness.as_millis()).unwrap_or(u64::MAX - 1),
            Ordering::Release,
        );
        *self.down_until.lock().expect("not poisoned") = None;
        self.checked.store(true, Ordering::Release);
    }

    /// Waits (polling its replay position) until it has replayed `lsn`, at
    /// most `wait`. True when it has.
    async fn caught_up(&self, lsn: Lsn, wait: Duration) -> bool {
        if self.replayed.load(Ordering::Acquire) >= lsn.0 {
            return true;
        }
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_micros(500);
        loop {
            match replay_lsn(&self.conn).await {
                Ok(Some(replayed)) => {
                    self.replayed.fetch_max(replayed.0, Ordering::AcqRel);
                    if replayed >= lsn {
                        return true;
                    }
                }
                Ok(None) => return false,
                Err(_) => {
                    self.mark_down();
                    return false;
                }
            }
            if Instant::now() + pause > deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(4));
        }
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("target", &self.target)
            .field("up", &self.is_up())
            .field("staleness", &self.staleness())
            .finish()
    }
}

/// The replicas of a [`crate::Db`], with their monitor.
#[derive(Default)]
pub(crate) struct Replicas {
    list: Vec<Arc<Replica>>,
    next: AtomicUsize,
    monitor: Option<tokio::task::AbortHandle>,
}

impl Replicas {
    /// Starts monitoring `list` against `primary`.
    pub(crate) fn start(
        list: Vec<Arc<Replica>>,
        primary: DatabaseConnection,
        config: &DbConfig,
    ) -> Self {
        if list.is_empty() {
            return Self::default();
        }
        let weak: Vec<Weak<Replica>> = list.iter().map(Arc::downgrade).collect();
        let interval = config.replica_check_interval;
        let window = config.max_replica_lag + interval * 4;
        let monitor = tokio::spawn(monitor(weak, primary, interval, window)).abort_handle();
        Self {
            list,
            next: AtomicUsize::new(0),
            monitor: Some(monitor),
        }
    }

    pub(crate) fn all(&self) -> &[Arc<Replica>] {
        &self.list
    }

    pub(crate) fn stop(&self) {
        if let Some(m) = &self.monitor {
            m.abort();
        }
    }

    /// A replica for a read, round robin among those in rotation and fresh
    /// enough; with `after`, only one that has replayed it (waiting up to the
    /// configured time on the first candidate).
    pub(crate) async fn pick(&self, after: Option<Lsn>, config: &DbConfig) -> Option<Arc<Replica>> {
        if self.list.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..self.list.len())
            .map(|i| &self.list[(start + i) % self.list.len()])
            .filter(|r| r.is_up() && r.staleness().is_some_and(|s| s <= config.max_replica_lag));
        let mut waited = false;
        for replica in candidates {
            let Some(lsn) = after else {
                return Some(replica.clone());
            };
            // Wait on the first candidate only; the others get a single look.
            let wait = if waited {
                Duration::ZERO
            } else {
                config.read_your_writes_wait
            };
            waited = true;
            if replica.caught_up(lsn, wait).await {
                return Some(replica.clone());
            }
        }
        None
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The monitor: every `interval`, the primary's position and each
/// replica's replay position, until the replicas are gone.
async fn monitor(
    replicas: Vec<Weak<Replica>>,
    primary: DatabaseConnection,
    interval: Duration,
    window: Duration,
) {
    // The primary's positions over the last `window` (plus one older).
    let mut history: VecDeque<(Instant, Lsn)> = VecDeque::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        if let Ok(lsn) = current_lsn(&primary).await {
            if history.back().is_none_or(|(_, last)| *last != lsn) {
                history.push_back((now, lsn));
            }
            // Keep one position older than the window: a replica that has
            // not replayed it is at least that stale (dropping it would make
            // the replica look fresher than it is).
            while history.len() > 2 && history.get(1).is_some_and(|(t, _)| now - *t > window) {
                history.pop_front();
            }
        }
        let mut alive = false;
        for replica in &replicas {
            let Some(replica) = replica.upgrade() else {
                continue;
            };
            alive = true;
            if !replica.due_for_check() {
                continue;
            }
            let check = tokio::time::timeout(interval.max(Duration::from_secs(1)), async {
                replay_lsn(&replica.conn).await
            })
            .await;
            match check {
                Ok(Ok(Some(replayed))) => {
                    replica.record(replayed, staleness(&history, replayed, now));
                }
                Ok(Ok(None)) => {
                    tracing::warn!(replica = %replica.target, "not a standby (not in recovery): no reads go there");
                    replica.mark_down();
                }
                Ok(Err(e)) => {
                    tracing::warn!(replica = %replica.target, error = %e, "replica unreachable: out of rotation");
                    replica.mark_down();
                }
                Err(_) => {
                    tracing::warn!(replica = %replica.target, "replica did not answer: out of rotation");
                    replica.mark_down();
                }
            }
        }
        if !alive {
            return;
        }
    }
}

/// How old the oldest primary position not yet replayed is (zero when
/// `replayed` is at or past the newest known one).
fn staleness(history: &VecDeque<(Instant, Lsn)>, replayed: Lsn, now: Instant) -> Duration {
    history
        .iter()
        .find(|(_, lsn)| *lsn > replayed)
        .map_or(Duration::ZERO, |(t, _)| now.saturating_duration_since(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_print_like_postgres() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert!(Lsn::parse("0/0").unwrap() < lsn);
        for bad in ["", "16", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn staleness_is_the_age_of_the_oldest_unreplayed_position() {
        let t0 = Instant::now();
        let history: VecDeque<(Instant, Lsn)> = [
            (t0, Lsn(100)),
            (t0 + Duration::from_millis(100), Lsn(200)),
            (t0 + Duration::from_millis(200), Lsn(300)),
        ]
        .into();
        let now = t0 + Duration::from_millis(250);
        assert_eq!(staleness(&history, Lsn(300), now), Duration::ZERO);
        assert_eq!(staleness(&history, Lsn(350), now), Duration::ZERO);
        assert_eq!(
            staleness(&history, Lsn(200), now),
            Duration::from_millis(50)
        );
        assert_eq!(
            staleness(&history, Lsn(150), now),
            Duration::from_millis(150)
        );
        assert_eq!(
            staleness(&history, Lsn(10), now),
            Duration::from_millis(250)
        );
    }
}
