//! `imipd serve`: opens the store, binds every listener, runs until SIGTERM, then drains.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::inbound::session::{self, Protocol};
use crate::listener::{Connection, Listener, SocketAccess};
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is not valid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened.
    #[error("{place}: {source}")]
    Store {
        /// The data folder or database.
        place: String,
        /// What went wrong.
        source: StoreError,
    },
    /// A listener could not be bound.
    #[error("{key} = {address}: {source}")]
    Bind {
        /// The config key.
        key: &'static str,
        /// The address or socket.
        address: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Sets the log level from `log.level`'s syntax; an error says why it could not.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How SIGHUP reloads the configuration: the file it was read from (with the same
/// `IMIPD_` overrides), and how the log level is changed.
#[derive(Default)]
pub struct Reload {
    /// The configuration file (`None`: defaults and the environment alone).
    pub path: Option<std::path::PathBuf>,
    /// Sets the log level.
    pub log_level: Option<SetLogLevel>,
}

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the configuration.
pub async fn serve(config: Config, reload: Reload) -> Result<(), DaemonError> {
    // Taken over before anything listens: a SIGTERM as soon as a client can connect must
    // drain, and a SIGHUP reload, not kill (their default).
    let stopping = stop_signals();
    let hangups = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).expect("SIGHUP handler")
    };
    raise_open_files(&config);
    let store = crate::gateway::open_store(&config).map_err(|source| DaemonError::Store {
        place: crate::gateway::store_place(&config),
        source,
    })?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = crate::gateway::store_place(&config),
        "store open"
    );
    let gateway = Arc::new(Gateway::new(config, store));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    listen_for_mail(&gateway, &mut tasks, &stopped).await?;
    listen_for_http(&gateway, &mut tasks, &stopped).await?;
    tasks.spawn(crate::outbound::run(gateway.clone(), stopped.clone()));
    tasks.spawn(crate::expiry::run(gateway.clone(), stopped.clone()));
    tasks.spawn(gather_correspondents(gateway.clone()));
    let reloading = tokio::spawn(reload_on_hangup(
        gateway.clone(),
        reload,
        hangups,
        stopped.clone(),
    ));
    if let Some(target) = &gateway.config().inbound.forward
        && let Err(why) = crate::inbound::pipe::probe(target).await
    {
        tracing::warn!(%target, %why, "inbound.forward does not answer: mail for its recipients is deferred (451 4.4.1) until it does");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %gateway.config().server.data_dir.display(),
        "ready"
    );
    notify_systemd("READY=1");

    stopping.await;
    tracing::info!("stopping: finishing open sessions");
    notify_systemd("STOPPING=1");
    let _ = stop.send(true);
    let _ = reloading.await;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("sessions still open after 30 s; stopping anyway");
    }
    if let Err(e) = gateway.flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Binds the LMTP and SMTP listeners the configuration names and accepts on each.
async fn listen_for_mail(
    gateway: &Arc<Gateway>,
    tasks: &mut JoinSet<()>,
    stopped: &watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let intake = Arc::new(crate::inbound::Intake::new(gateway.clone()));
    let config = gateway.config();
    for (key, endpoint, access, protocol) in [
        (
            "lmtp.listen",
            &config.lmtp.listen,
            access(&config.lmtp.socket_mode, &config.lmtp.socket_group),
            Protocol::Lmtp,
        ),
        (
            "smtp.listen",
            &config.smtp.listen,
            access(&config.smtp.socket_mode, &config.smtp.socket_group),
            Protocol::Smtp,
        ),
    ] {
        let Some(endpoint) = endpoint else { continue };
        let listener =
            Listener::bind(endpoint, &access)
                .await
                .map_err(|source| DaemonError::Bind {
                    key,
                    address: endpoint.to_string(),
                    source,
                })?;
        tracing::info!(address = %endpoint, protocol = protocol.name(), "listening");
        tasks.spawn(accept(intake.clone(), listener, protocol, stopped.clone()));
    }
    Ok(())
}

/// Binds the HTTP listener, when the configuration names one, and serves the API and CalDAV.
async fn listen_for_http(
    gateway: &Arc<Gateway>,
    tasks: &mut JoinSet<()>,
    stopped: &watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let Some(address) = gateway.config().http.listen else {
        return Ok(());
    };
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| DaemonError::Bind {
            key: "http.listen",
            address: address.to_string(),
            source,
        })?;
    let scheme = match gateway.config().http.tls {
        Some(_) => "https",
        None => "http",
    };
    tracing::info!(%address, protocol = scheme, "listening");
    let api = Arc::new(crate::http::Api::new(gateway.clone()));
    let config = gateway.config();
    let limits = crate::http::serve::Limits {
        request_timeout: config.http.request_timeout,
        idle_timeout: config.http.idle_timeout,
        max_connections: config.limits.max_connections,
        max_body: api.max_body(),
        trusted_proxies: config.http.trusted_proxies.clone(),
    };
    let router = crate::http::router(api);
    let current = gateway.clone();
    let tls: crate::http::serve::TlsSource = Arc::new(move || current.config().http.tls.clone());
    tasks.spawn(crate::http::serve::run(
        listener,
        router,
        limits,
        tls,
        stopped.clone(),
    ));
    Ok(())
}

fn access(mode: &u32, group: &str) -> SocketAccess {
    SocketAccess {
        mode: *mode,
        group: group.to_string(),
    }
}

/// Accepts LMTP/SMTP clients up to `limits.max_connections`; past it, a client is told
/// `421 4.7.0` and closed, so that it retries later instead of waiting for a greeting.
async fn accept(
    intake: Arc<crate::inbound::Intake>,
    listener: Listener,
    protocol: Protocol,
    mut stopped: watch::Receiver<bool>,
) {
    let open = Arc::new(Semaphore::new(
        intake.gateway.config().limits.max_connections,
    ));
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = open.clone().try_acquire_owned() else {
                        let host = intake.gateway.config().server.hostname.clone();
                        sessions.spawn(turn_away(stream, peer, host));
                        continue;
                    };
                    // Read per connection: a reload's new certificate serves the next one.
                    let tls = match protocol {
                        Protocol::Smtp => intake.gateway.config().smtp.tls.clone(),
                        Protocol::Lmtp => None,
                    };
                    let session = session::serve(intake.clone(), stream, peer, protocol, tls, stopped.clone());
                    sessions.spawn(async move {
                        session.await;
                        drop(slot);
                    });
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

/// Over the cap: `421 4.7.0` (RFC 5321 3.8) and the door closed.
async fn turn_away(mut stream: Connection, peer: String, host: String) {
    tracing::warn!(%peer, "limits.max_connections reached; turned away");
    let reply = format!("421 4.7.0 {host} too many connections, try again later\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Raises the soft limit of open files to the hard one, and says so when the connection caps
/// could still not all be met: with no descriptor left, a new client gets no greeting at all.
fn raise_open_files(config: &Config) {
    let on = |listen: bool| u64::from(listen);
    // An LMTP/SMTP session with a large message under way also holds its spill file.
    let per_cap = 2 * (on(config.lmtp.listen.is_some()) + on(config.smtp.listen.is_some()))
        + on(config.http.listen.is_some());
    let needed = per_cap * config.limits.max_connections as u64 + 256;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            "the open-files limit is below what limits.max_connections allows; raise LimitNOFILE"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
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

/// Installs the SIGTERM and SIGINT handlers now; the future ends at the first of them.
/// Re-reads the configuration at every SIGHUP until the daemon stops. Listeners and open
/// sessions go on; a file that does not load is refused with its reason, and the configuration
/// in force stays.
async fn reload_on_hangup(
    gateway: Arc<Gateway>,
    how: Reload,
    mut hangups: tokio::signal::unix::Signal,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = hangups.recv() => reload_now(&gateway, &how),
            _ = stopped.changed() => return,
        }
    }
}

fn reload_now(gateway: &Gateway, how: &Reload) {
    notify_systemd("RELOADING=1");
    let file = how
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the environment".into());
    match Config::load(how.path.as_deref()) {
        Err(e) => tracing::error!(
            file,
            error = %e,
            "reload refused: the configuration in force stays"
        ),
        Ok(new) => {
            if let Some(set) = &how.log_level
                && let Err(e) = set(&new.log.level)
            {
                tracing::error!(error = %e, "log.level not changed");
            }
            let accounts = new.accounts.len();
            let waiting = gateway.reload(new);
            if !waiting.is_empty() {
                tracing::warn!(keys = %waiting.join(", "), "changed in the file; only a restart applies them");
            }
            tracing::info!(file, accounts, "configuration reloaded");
        }
    }
    notify_systemd("READY=1");
}

fn stop_signals() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Gathers the accounts' correspondents from what the store held before it recorded them
/// (once per store), off the async threads.
async fn gather_correspondents(gateway: Arc<Gateway>) {
    let gathered =
        tokio::task::spawn_blocking(move || crate::correspondents::gather(&gateway)).await;
    match gathered {
        Ok(Ok(0)) => {}
        Ok(Ok(recorded)) => {
            tracing::info!(recorded, "correspondents gathered from the objects held")
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "correspondents not gathered; retried at the next start")
        }
        Err(error) => {
            tracing::warn!(%error, "correspondents not gathered; retried at the next start")
        }
    }
}
