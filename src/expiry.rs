//! Forgetting what the store keeps only for a while: the records of delivered messages
//! (`inbound.duplicate_window`), of messages the relay took (`outbound.bounce_window`), and
//! the rate tallies per outside address. Without it they grow with every message, for ever.

use crate::gateway::Gateway;
use crate::store::{Expired, Expiry, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the daemon forgets what expired.
const EVERY: Duration = Duration::from_secs(3600);

/// How long a windowed tally stays after its window began.
const TALLY_WINDOW: Duration = Duration::from_secs(86_400);

/// Records removed per store call: a database transaction stays short, and sled's memory too.
const BATCH: usize = 1000;

/// The instants before which records are forgotten, at `now` (seconds since the epoch).
pub fn expiry(gateway: &Gateway, now: i64) -> Expiry {
    let config = gateway.config();
    let ago = |window: Duration| now.saturating_sub(window.as_secs() as i64);
    Expiry {
        seen_before: ago(config.inbound.duplicate_window),
        sent_before: ago(config.outbound.bounce_window),
        // The longest window a tally counts in is an hour (`limits.max_new_per_sender`) or
        // `outbound.notify_delay`: a day later it says nothing.
        tallies_before: ago(TALLY_WINDOW.max(config.outbound.notify_delay)),
    }
}

/// Forgets everything expired by the gateway's clock, a batch at a time; what it forgot.
/// Blocking: the daemon runs it on the blocking pool.
pub fn sweep(gateway: &Gateway) -> Result<Expired, StoreError> {
    let expiry = expiry(gateway, gateway.now());
    let mut total = Expired::default();
    loop {
        let gone = gateway.store.expire(expiry, BATCH)?;
        total.seen += gone.seen;
        total.sent += gone.sent;
        total.tallies += gone.tallies;
        gateway.metrics.expired(gone);
        if gone.seen < BATCH && gone.sent < BATCH && gone.tallies < BATCH {
            return Ok(total);
        }
    }
}

/// Sweeps once a minute after the start, then every hour, until shutdown.
pub async fn run(gateway: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = EVERY;
        let swept = {
            let gateway = gateway.clone();
            tokio::task::spawn_blocking(move || sweep(&gateway)).await
        };
        match swept.unwrap_or_else(|e| Err(StoreError::Unavailable(format!("expiry task: {e}")))) {
            Ok(gone) if gone != Expired::default() => tracing::info!(
                delivered = gone.seen,
                sent = gone.sent,
                tallies = gone.tallies,
                "expired records forgotten"
            ),
            Ok(_) => {}
            // Nothing is lost by waiting: the next sweep forgets it.
            Err(e) => tracing::warn!(error = %e, "could not forget expired records; will retry"),
        }
    }
}
