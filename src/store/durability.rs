//! Group commit: every waiter of one round shares a single flush and fdatasync.

use super::{Durable, Store, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Waiter = (u64, oneshot::Sender<Result<(), String>>);

/// Passes of the scheduler a round of syncing waits through while they bring more waiters.
const GATHERING_PASSES: usize = 4;

/// Hands out "durable now" waits; one background task syncs for all of them.
#[derive(Clone)]
pub struct Durability {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl Durability {
    /// Starts the flusher for a store.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut waiters = vec![first];
                // Sessions running now may be about to commit: the round waits for them while
                // each pass of the scheduler brings more (a few passes at most), so that one
                // flush and fdatasync serves them all. It went out at once with two or three
                // waiters; each round costs a dozen thread wake-ups.
                for _ in 0..GATHERING_PASSES {
                    let before = waiters.len();
                    tokio::task::yield_now().await;
                    while let Ok(more) = rx.try_recv() {
                        waiters.push(more);
                    }
                    if waiters.len() == before {
                        break;
                    }
                }
                let store = store.clone();
                let result = tokio::task::spawn_blocking(move || sync(store.as_ref()))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                for (generation, waiter) in waiters {
                    let answer = match &result {
                        Ok(synced) if *synced == generation => Ok(()),
                        Ok(_) => {
                            Err("the store was reopened after a failure: commit not durable".into())
                        }
                        Err(e) => Err(e.clone()),
                    };
                    let _ = waiter.send(answer);
                }
            }
        });
        Durability { tx }
    }

    /// Returns once everything committed before the call is on disk; `generation` is the
    /// store's generation read before those commits, so that a reopening in between (which
    /// drops what was not yet synced) fails the wait instead of acknowledging a lost commit.
    pub async fn wait(&self, generation: u64) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((generation, tx))
            .map_err(|_| StoreError::Unavailable("flusher stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("flusher stopped".into()))?
            .map_err(StoreError::Unavailable)
    }
}

/// A sync of a store whose commits become durable by one.
fn sync(store: &dyn Store) -> Result<u64, StoreError> {
    match store.durable() {
        Durable::BySync(store) => store.sync(),
        // Nothing waits for a store whose commits are durable when they return.
        Durable::OnCommit => Ok(0),
    }
}
