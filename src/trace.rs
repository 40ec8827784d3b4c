//! One id per received message or client write, carried in every log line about it from the
//! socket to the disk (and in the queue entries it causes).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ids of one process: a prefix of its own and a counter.
struct Ids {
    prefix: String,
    next: AtomicU64,
}

impl Ids {
    /// The prefix is the start second and 32 random bits: hosts sharing one PostgreSQL store
    /// write ids side by side, and two started in the same second must not give the same ones.
    fn new(started: u64, nonce: u32) -> Self {
        Ids {
            prefix: format!("{started:x}{nonce:08x}"),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

/// A new id, unique across processes and hosts: the process's prefix and a counter, in hex.
pub fn new_id() -> String {
    static IDS: OnceLock<Ids> = OnceLock::new();
    IDS.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut nonce = [0u8; 4];
        // Without the system's randomness the process id still tells processes apart.
        let nonce = match getrandom::fill(&mut nonce) {
            Ok(()) => u32::from_le_bytes(nonce),
            Err(_) => std::process::id(),
        };
        Ids::new(started, nonce)
    })
    .next()
}

/// An instant (seconds since the epoch) as log lines and operators' listings show it:
/// RFC 3339, UTC.
pub fn instant(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ids_are_distinct() {
        assert_ne!(new_id(), new_id());
    }

    /// Two hosts started in the same second (the clock is all the ids had before) give ids
    /// that never meet.
    #[test]
    fn hosts_started_in_the_same_second_give_different_ids() {
        let (a, b) = (Ids::new(1_700_000_000, 1), Ids::new(1_700_000_000, 2));
        let from_a: BTreeSet<String> = (0..1000).map(|_| a.next()).collect();
        let from_b: BTreeSet<String> = (0..1000).map(|_| b.next()).collect();
        assert_eq!(from_a.len(), 1000);
        assert!(from_a.is_disjoint(&from_b));
    }
}
