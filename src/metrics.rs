//! Counters for operators, served as Prometheus text by `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

/// What the daemon counts.
#[derive(Default)]
pub struct Metrics {
    messages: Mutex<BTreeMap<(String, String), u64>>,
    replies: Mutex<BTreeMap<(&'static str, String), u64>>,
    forwards: Mutex<BTreeMap<&'static str, u64>>,
    outbound: Mutex<BTreeMap<String, u64>>,
    commit_buckets: [AtomicU64; BUCKETS.len()],
    commit_count: AtomicU64,
    commit_micros: AtomicU64,
    conflicts: AtomicU64,
    expired_seen: AtomicU64,
    expired_sent: AtomicU64,
    expired_tallies: AtomicU64,
}

/// Values read from the store at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreFigures {
    /// Messages waiting in the outbound queue.
    pub queue_depth: u64,
    /// Age of the oldest queued message, seconds.
    pub queue_oldest_seconds: u64,
    /// Bytes of the store on disk.
    pub store_bytes: u64,
    /// A database store's connections.
    pub connections: Option<crate::store::Connections>,
}

impl StoreFigures {
    /// The figures of a store at `now` (seconds since the epoch); what cannot be read is 0.
    pub fn read(store: &dyn crate::store::Store, now: i64) -> Self {
        let queue = store.outbox().unwrap_or_default();
        let oldest = queue.iter().map(|(_, m)| m.queued_at).min();
        StoreFigures {
            queue_depth: queue.len() as u64,
            queue_oldest_seconds: oldest.map(|t| (now - t).max(0) as u64).unwrap_or(0),
            store_bytes: store.size_on_disk().unwrap_or(0),
            connections: store.connections(),
        }
    }
}

impl Metrics {
    /// A received message's calendar part, by METHOD and result (`accepted`, `rejected`, ...).
    pub fn message(&self, method: &str, result: &str) {
        let mut map = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((method.to_string(), result.to_string()))
            .or_default() += 1;
    }

    /// The reply one recipient of a received message got: its class (`accepted`, `refused`,
    /// `deferred`) and enhanced status code.
    pub fn reply(&self, class: &'static str, status: String) {
        let mut map = self.replies.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((class, status)).or_default() += 1;
    }

    /// What the mailbox store did with one recipient in pass-through mode: `forwarded`,
    /// `refused`, `deferred`, or `unreachable`.
    pub fn forward(&self, result: &'static str) {
        let mut map = self.forwards.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(result).or_default() += 1;
    }

    /// An outbound attempt's outcome, by SCHEDULE-STATUS or `retry`.
    pub fn outbound(&self, status: &str) {
        let mut map = self.outbound.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(status.to_string()).or_default() += 1;
    }

    /// A decision made again because another writer (a session, or another host sharing the
    /// store) changed what it read before it committed.
    pub fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Decisions made again so far.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Records the store forgot because they expired.
    pub fn expired(&self, gone: crate::store::Expired) {
        self.expired_seen
            .fetch_add(gone.seen as u64, Ordering::Relaxed);
        self.expired_sent
            .fetch_add(gone.sent as u64, Ordering::Relaxed);
        self.expired_tallies
            .fetch_add(gone.tallies as u64, Ordering::Relaxed);
    }

    /// How long an acknowledgement waited for its commit, until durable.
    pub fn commit(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.commit_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, store: StoreFigures) -> String {
        let mut out = String::new();
        let messages = locked(&self.messages);
        let rows = messages
            .iter()
            .map(|((method, result), n)| (format!("method=\"{method}\",result=\"{result}\""), *n));
        counters(
            &mut out,
            "imipd_messages_total",
            "Calendar parts of received messages, by METHOD and result.",
            rows,
        );
        drop(messages);
        out.push_str(
            "# HELP imipd_build_info The version of this imipd.\n# TYPE imipd_build_info gauge\n",
        );
        let _ = writeln!(
            out,
            "imipd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.render_deliveries(&mut out);
        self.render_commits(&mut out);
        self.render_expired(&mut out);
        render_store(&mut out, &store);
        if let Some(pool) = store.connections {
            render_connections(&mut out, pool);
        }
        out
    }

    /// What the MTA was answered, what went to the mailbox store, what went out.
    fn render_deliveries(&self, out: &mut String) {
        let replies = locked(&self.replies);
        let rows = replies
            .iter()
            .map(|((class, status), n)| (format!("class=\"{class}\",status=\"{status}\""), *n));
        counters(
            out,
            "imipd_replies_total",
            "Replies to the recipients of received messages, as the MTA got them (after \
             pass-through), by class and enhanced status code.",
            rows,
        );
        drop(replies);
        let forwards = locked(&self.forwards);
        let rows = forwards
            .iter()
            .map(|(result, n)| (format!("result=\"{result}\""), *n));
        counters(
            out,
            "imipd_forward_total",
            "Recipients handed to the mailbox store (inbound.forward), by what it did.",
            rows,
        );
        drop(forwards);
        let outbound = locked(&self.outbound);
        let rows = outbound
            .iter()
            .map(|(status, n)| (format!("status=\"{status}\""), *n));
        counters(
            out,
            "imipd_outbound_total",
            "Outbound delivery attempts, by resulting SCHEDULE-STATUS (or retry).",
            rows,
        );
    }

    /// How long acknowledgements waited for their commits, and how often decisions were made
    /// again.
    fn render_commits(&self, out: &mut String) {
        out.push_str("# HELP imipd_commit_seconds Time an acknowledgement waited for its commit, until durable.\n");
        out.push_str("# TYPE imipd_commit_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(
                out,
                "imipd_commit_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "imipd_commit_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "imipd_commit_seconds_sum {}",
            self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "imipd_commit_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP imipd_commit_conflicts_total Decisions made again because another writer \
             changed what they read.\n# TYPE imipd_commit_conflicts_total counter\n\
             imipd_commit_conflicts_total {}",
            self.conflicts()
        );
    }

    fn render_expired(&self, out: &mut String) {
        let rows = [
            ("delivered", &self.expired_seen),
            ("sent", &self.expired_sent),
            ("tallies", &self.expired_tallies),
        ]
        .map(|(record, counter)| {
            (
                format!("record=\"{record}\""),
                counter.load(Ordering::Relaxed),
            )
        });
        counters(
            out,
            "imipd_expired_total",
            "Records forgotten after their window: delivered messages \
             (inbound.duplicate_window), messages the relay took (outbound.bounce_window).",
            rows,
        );
    }
}

/// A map of counters, poisoned or not: a panic elsewhere does not stop the figures.
fn locked<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

/// A counter family: its help, its type, one line per label set.
fn counters(
    out: &mut String,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, n) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {n}");
    }
}

/// The store's gauges: the queue, the store's size.
fn render_store(out: &mut String, store: &StoreFigures) {
    for (name, help, value) in [
        (
            "imipd_queue_depth",
            "Messages waiting in the outbound queue.",
            store.queue_depth,
        ),
        (
            "imipd_queue_oldest_seconds",
            "Age of the oldest queued message.",
            store.queue_oldest_seconds,
        ),
        (
            "imipd_store_bytes",
            "Size of the store on disk.",
            store.store_bytes,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}

/// The database pool's gauges: a pool always at its size with requests waiting is too small
/// (`store.pool_size`), or the database too slow.
fn render_connections(out: &mut String, pool: crate::store::Connections) {
    out.push_str(
        "# HELP imipd_database_connections Connections to the database, by state.\n\
         # TYPE imipd_database_connections gauge\n",
    );
    for (state, n) in [("busy", pool.busy), ("idle", pool.idle)] {
        let _ = writeln!(out, "imipd_database_connections{{state=\"{state}\"}} {n}");
    }
    for (name, help, value) in [
        (
            "imipd_database_connections_max",
            "Connections the pool may open (store.pool_size).",
            pool.max,
        ),
        (
            "imipd_database_waiting",
            "Requests waiting for a database connection.",
            pool.waiting,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.message("REQUEST", "accepted");
        m.message("REQUEST", "accepted");
        m.outbound("1.1");
        m.commit(Duration::from_micros(800));
        m.conflict();
        let text = m.render(StoreFigures {
            queue_depth: 3,
            queue_oldest_seconds: 7,
            store_bytes: 1024,
            connections: Some(crate::store::Connections {
                busy: 2,
                idle: 1,
                waiting: 0,
                max: 16,
            }),
        });
        assert!(
            text.contains("imipd_messages_total{method=\"REQUEST\",result=\"accepted\"} 2"),
            "{text}"
        );
        assert!(text.contains("imipd_outbound_total{status=\"1.1\"} 1"));
        assert!(text.contains("imipd_commit_seconds_bucket{le=\"0.0005\"} 0"));
        assert!(text.contains("imipd_commit_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("imipd_commit_seconds_count 1"));
        assert!(text.contains("imipd_commit_conflicts_total 1"), "{text}");
        assert!(text.contains("imipd_queue_depth 3"));
        assert!(text.contains("imipd_database_connections{state=\"busy\"} 2"));
        assert!(text.contains("imipd_database_connections_max 16"), "{text}");
    }
}
