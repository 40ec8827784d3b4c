//! `imipd serve`: opens the store, binds every listener, runs until SIGTERM, then drains.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::inbound::session::{self, Protocol};
use crate::store::{SledStore, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is not valid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened.
    #[error("{}: {source}", dir.display())]
    Store {
        /// The data folder.
        dir: std::path::PathBuf,
        /// What went wrong.
        source: StoreError,
    },
    /// A listener could not be bound.
    #[error("{key} = {address}: {source}")]
    Bind {
        /// The config key.
        key: &'static str,
        /// The address.
        address: SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), DaemonError> {
    let listeners = config.listeners()?;
    let store = SledStore::open(&config.server.data_dir).map_err(|source| DaemonError::Store {
        dir: config.server.data_dir.clone(),
        source,
    })?;
    let gateway = Arc::new(Gateway::new(config, Arc::new(store)));
    let intake = Arc::new(crate::inbound::Intake::new(gateway.clone()));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();

    for (key, address, protocol) in [
        ("lmtp.listen", listeners.lmtp, Protocol::Lmtp),
        ("smtp.listen", listeners.smtp, Protocol::Smtp),
    ] {
        let Some(address) = address else { continue };
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| DaemonError::Bind {
                key,
                address,
                source,
            })?;
        tracing::info!(%address, ?protocol, "listening");
        tasks.spawn(accept(intake.clone(), listener, protocol, stopped.clone()));
    }
    if let Some(address) = listeners.http {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| DaemonError::Bind {
                key: "http.listen",
                address,
                source,
            })?;
        tracing::info!(%address, "listening (http)");
        let mut shutdown = stopped.clone();
        let router = crate::http::router(gateway.clone());
        tasks.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.changed().await;
                })
                .await;
        });
    }
    tasks.spawn(crate::outbound::run(gateway.clone(), stopped.clone()));
    tracing::info!(data_dir = %gateway.config.server.data_dir.display(), "ready");
    notify_systemd("READY=1");

    wait_for_signal().await;
    tracing::info!("stopping: finishing open sessions");
    notify_systemd("STOPPING=1");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("sessions still open after 30 s; stopping anyway");
    }
    if let Err(e) = gateway.durable(gateway.store.generation()).await {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn accept(
    intake: Arc<crate::inbound::Intake>,
    listener: TcpListener,
    protocol: Protocol,
    mut stopped: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let peer = stream.peer_addr().map(|p| p.to_string()).unwrap_or_default();
                    sessions.spawn(session::serve(intake.clone(), stream, peer, protocol, stopped.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

/// Tells systemd (Type=notify) about readiness, when it is listening: a datagram to
/// `$NOTIFY_SOCKET`, a path or an abstract socket (`@name`).
fn notify_systemd(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let sent = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|address| socket.send_to_addr(state.as_bytes(), &address))
        }
        None => socket.send_to(state.as_bytes(), &target),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, target, "could not notify systemd");
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
