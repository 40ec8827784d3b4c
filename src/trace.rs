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

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct() {
        assert_ne!(super::new_id(), super::new_id());
    }
}
