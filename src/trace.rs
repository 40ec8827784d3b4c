//! One id per received message or client write, carried in every log line about it from the
//! socket to the disk (and in the queue entries it causes).

use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A new id: the process's start time and a counter, in hex.
pub fn new_id() -> String {
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{started:x}-{n:x}")
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
    #[test]
    fn ids_are_distinct() {
        assert_ne!(super::new_id(), super::new_id());
    }
}
