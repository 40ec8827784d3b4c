//! Memory budgets: how many bytes of requests and messages are held at once. A large one
//! waits for its share, so that many clients sending large bodies together cannot exhaust the
//! daemon's memory.

use tokio::sync::{Semaphore, SemaphorePermit};

/// The bytes of messages being processed at once, in KiB: a message waits for its share.
pub struct Budget {
    kib: Semaphore,
    total_kib: usize,
}

impl Budget {
    /// A budget of `bytes`, never less than one message of `max_message` bytes.
    pub fn new(bytes: usize, max_message: usize) -> Self {
        let total_kib = bytes.max(max_message).div_ceil(1024).max(1);
        Budget {
            kib: Semaphore::new(total_kib),
            total_kib,
        }
    }

    /// Waits until `bytes` fit in the budget; they are given back when the permit is dropped.
    pub async fn reserve(&self, bytes: usize) -> SemaphorePermit<'_> {
        let kib = bytes.div_ceil(1024).clamp(1, self.total_kib);
        let kib = u32::try_from(kib).unwrap_or(u32::MAX);
        self.kib
            .acquire_many(kib)
            .await
            .expect("the budget's semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room that should be there at once, awaited at most a few seconds: a regression fails
    /// the test instead of hanging the suite.
    async fn soon(budget: &Budget, bytes: usize) -> SemaphorePermit<'_> {
        tokio::time::timeout(std::time::Duration::from_secs(5), budget.reserve(bytes))
            .await
            .expect("room within 5 s")
    }

    #[tokio::test]
    async fn the_budget_lets_a_message_wait_for_room() {
        let budget = Budget::new(100 * 1024, 10 * 1024);
        let first = soon(&budget, 80 * 1024).await;
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            budget.reserve(30 * 1024),
        )
        .await;
        assert!(waiting.is_err(), "no room while the first is held");
        drop(first);
        let second = soon(&budget, 30 * 1024).await;
        // A message larger than the whole budget still gets in, alone.
        drop(second);
        let _huge = soon(&budget, 10 * 1024 * 1024).await;
    }
}
