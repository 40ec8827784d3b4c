//! Mail out: the worker that takes queued scheduling messages from the store and hands
//! them to the transport. The embedded transport writes `.eml` files to a spool folder.

use crate::gateway::Gateway;
use crate::mime::{self, OutboundMail};
use crate::store::OutboundMessage;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Delivers the queue until shutdown; also wakes up periodically to resume after errors.
pub async fn run(gateway: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = drain(&gateway).await {
            tracing::warn!(error = %e, "outbound queue: will retry");
        }
        tokio::select! {
            _ = gateway.outbox_ready.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn drain(gateway: &Gateway) -> Result<(), String> {
    let queue = gateway.store.outbox().map_err(|e| e.to_string())?;
    if queue.is_empty() {
        return Ok(());
    }
    let spool = gateway.config.outbound.spool_dir.clone();
    for (id, message) in queue {
        let raw = render(gateway, id, &message);
        let dir = spool.clone();
        tokio::task::spawn_blocking(move || write_spool(&dir, id, &raw))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", spool.display()))?;
        // The file is durable before the entry goes: a crash in between writes the same
        // file again, under the same name.
        gateway.store.outbox_remove(id).map_err(|e| e.to_string())?;
        tracing::info!(trace = message.trace.as_str(), id, to = ?message.to, method = message.method.as_str(), "spooled");
    }
    gateway.durable().await.map_err(|e| e.to_string())
}

/// The mail for a queued message.
pub fn render(gateway: &Gateway, id: u64, message: &OutboundMessage) -> Vec<u8> {
    let title = message
        .summary
        .iter()
        .find_map(|l| {
            l.strip_prefix("summary.summary: Text(\"")
                .and_then(|t| t.strip_suffix("\")"))
        })
        .unwrap_or("(no title)")
        .to_string();
    let kind = message
        .summary
        .first()
        .and_then(|l| l.strip_prefix("summary: "))
        .unwrap_or("");
    let subject = match kind.split_whitespace().next() {
        Some("invite") => format!("Invitation: {title}"),
        Some("update") => format!("Updated invitation: {title}"),
        Some("cancel") => format!("Cancelled: {title}"),
        Some("rsvp") => format!(
            "{} {}: {title}",
            message.from,
            kind.trim_start_matches("rsvp ").to_lowercase()
        ),
        _ => title.clone(),
    };
    let message_id = format!(
        "{id:016x}.{}@{}",
        message.queued_at, gateway.config.server.hostname
    );
    mime::render(&OutboundMail {
        message_id: &message_id,
        from: &message.from,
        to: &message.to,
        subject: &subject,
        text: &format!("{subject}\n"),
        method: &message.method,
        calendar: &message.calendar,
        date: message.queued_at,
    })
}

fn write_spool(dir: &Path, id: u64, raw: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!("{id:016x}.eml");
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(raw)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(&name))?;
    std::fs::File::open(dir)?.sync_all()
}
