//! An imipd inside the test process: the configuration loaded as the daemon loads it, the
//! gateway on a clock the test moves, LMTP sessions over in-memory streams, the HTTP router
//! called directly, the outbound worker, and the node's own log. No sockets of its own and no
//! fixed sleeps: what waits for time moves the clock.

use imipd::config::Config;
use imipd::gateway::{Clock, Gateway};
use imipd::inbound::Intake;
use imipd::inbound::session::{self, Protocol};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tower::ServiceExt;

/// A clock that stands still until the test moves it.
pub struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The node's log, as its daemon would have written it.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One imipd in the test process.
pub struct Node {
    name: String,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub clock: Arc<ManualClock>,
    log: Log,
    parts: Option<Parts>,
}

/// What a start builds and a restart drops.
struct Parts {
    runtime: tokio::runtime::Runtime,
    dispatch: tracing::Dispatch,
    gateway: Arc<Gateway>,
    intake: Arc<Intake>,
    router: axum::Router,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl Node {
    /// A node with these accounts and extra sections, and extra keys of `[outbound]`.
    pub fn start(name: &str, extra: &str, outbound: &str) -> Node {
        let dir = std::env::temp_dir().join(format!("imipd-node-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("imipd.toml");
        std::fs::write(
            &config_path,
            format!(
                "[server]\ndata_dir = \"{data}\"\nhostname = \"mx.example.com\"\n\
[lmtp]\nlisten = \"\"\n[http]\nlisten = \"\"\nadmin_token = \"{token}\"\n\
{extra}\n{store}[outbound]\nspool_dir = \"{spool}\"\n{outbound}",
                data = dir.join("data").display(),
                spool = dir.join("spool").display(),
                token = super::ADMIN_TOKEN,
                store = super::store_section(&format!("node-{name}")),
            ),
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut node = Node {
            name: format!("node-{name}"),
            dir,
            config_path,
            clock: Arc::new(ManualClock(AtomicI64::new(now))),
            log: Log::default(),
            parts: None,
        };
        node.launch();
        node
    }

    /// Starts (again) on the same data folder and clock.
    pub fn launch(&mut self) {
        let config = Config::load(Some(&self.config_path)).expect("a valid test configuration");
        let log = self.log.clone();
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer(move || log.clone())
                .with_ansi(false)
                .with_env_filter("info")
                .finish(),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            // Every thread of this node logs to its log, for as long as the thread lives.
            .on_thread_start({
                let dispatch = dispatch.clone();
                move || std::mem::forget(tracing::dispatcher::set_default(&dispatch))
            })
            .build()
            .unwrap();
        let clock = self.clock.clone();
        let parts = tracing::dispatcher::with_default(&dispatch, || {
            runtime.block_on(async move {
                let store = imipd::gateway::open_store(&config).expect("store");
                let gateway = Arc::new(Gateway::with_clock(config, store, clock));
                let intake = Arc::new(Intake::new(gateway.clone()));
                let router = imipd::http::router(Arc::new(imipd::http::Api::new(gateway.clone())));
                let (stop, stopped) = watch::channel(false);
                let worker = tokio::spawn(imipd::outbound::run(gateway.clone(), stopped));
                (gateway, intake, router, stop, worker)
            })
        });
        let (gateway, intake, router, stop, worker) = parts;
        self.parts = Some(Parts {
            runtime,
            dispatch,
            gateway,
            intake,
            router,
            stop,
            worker,
        });
    }

    /// Stops as a crash would: nothing is finished, whatever was durable stays.
    /// The node's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }

    /// Reads the configuration file again and puts it in force, as SIGHUP does.
    pub fn reload(&self) {
        let config = Config::load(Some(&self.config_path)).expect("a valid configuration");
        let waiting = self.parts().gateway.reload(config);
        assert!(waiting.is_empty(), "{waiting:?}");
    }

    pub fn kill(&mut self) {
        if let Some(parts) = self.parts.take() {
            parts.worker.abort();
            drop((parts.gateway, parts.intake, parts.router));
            parts.runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Forgets what expired by the node's clock, as the daemon's hourly sweep does.
    #[allow(dead_code)]
    pub fn expire(&self) -> imipd::store::Expired {
        let gateway = self.parts().gateway.clone();
        self.run(async move { imipd::expiry::sweep(&gateway) })
            .expect("the store forgets")
    }

    fn parts(&self) -> &Parts {
        self.parts.as_ref().expect("the node runs")
    }

    /// Runs a future to its end on the node's runtime, logging to the node's log.
    fn run<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        let parts = self.parts();
        tracing::dispatcher::with_default(&parts.dispatch, || parts.runtime.block_on(future))
    }

    /// The gateway, for looking into the store.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.parts().gateway.clone()
    }

    /// Moves the clock on and wakes the outbound worker.
    pub fn advance(&self, seconds: i64) {
        self.clock.0.fetch_add(seconds, Ordering::SeqCst);
        self.parts().gateway.outbox_ready.notify_one();
    }

    /// Waits until `check` holds, moving the clock five seconds at a time meanwhile (20 s of
    /// real time at most).
    pub fn eventually(&self, mut check: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if check() {
                return true;
            }
            self.advance(5);
            std::thread::sleep(Duration::from_millis(20));
        }
        check()
    }

    /// True when nothing is queued and no notice waits. The notices are read first: a notice
    /// becomes a queued message in one commit, so an empty outbox read before it could miss
    /// the message it made.
    pub fn drained(&self) -> bool {
        let store = &self.parts().gateway.store;
        store.notices().unwrap().is_empty() && store.outbox().unwrap().is_empty()
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.0.lock().unwrap()).into_owned()
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// One LMTP transaction over an in-memory stream; as `Daemon::lmtp`.
    pub fn lmtp(&self, from: &str, to: &[&str], message: &str) -> Vec<String> {
        let parts = self.parts();
        let intake = parts.intake.clone();
        let stopped = parts.stop.subscribe();
        self.run(async move {
            let (client, server) = tokio::io::duplex(1 << 20);
            tokio::spawn(session::serve(
                intake,
                server,
                "test".into(),
                Protocol::Lmtp,
                None,
                stopped,
            ));
            let (read, mut write) = tokio::io::split(client);
            let mut read = BufReader::new(read);
            assert!(reply(&mut read).await.starts_with("220"));
            send(&mut write, "LHLO test\r\n").await;
            assert!(reply(&mut read).await.starts_with("250"));
            send(&mut write, &format!("MAIL FROM:<{from}>\r\n")).await;
            assert!(reply(&mut read).await.starts_with("250"));
            let mut results = vec![String::new(); to.len()];
            let mut accepted = Vec::new();
            for (i, rcpt) in to.iter().enumerate() {
                send(&mut write, &format!("RCPT TO:<{rcpt}>\r\n")).await;
                let line = reply(&mut read).await;
                if line.starts_with("250") {
                    accepted.push(i);
                } else {
                    results[i] = line;
                }
            }
            if !accepted.is_empty() {
                send(&mut write, "DATA\r\n").await;
                assert!(reply(&mut read).await.starts_with("354"));
                send(&mut write, &format!("{}\r\n.\r\n", stuffed(message))).await;
                for i in accepted {
                    results[i] = reply(&mut read).await;
                }
            }
            send(&mut write, "QUIT\r\n").await;
            results
        })
    }

    /// One HTTP request as `user` (password "secret"), through the router; as `Daemon::http`.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        user: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path.replace(' ', "%20"))
            .header("Authorization", format!("Basic {auth}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let router = self.parts().router.clone();
        self.run(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let head: String = response
                .headers()
                .iter()
                .map(|(k, v)| format!("{k}: {}\r\n", v.to_str().unwrap_or("")))
                .collect::<String>()
                .to_lowercase();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, head, String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    /// Several HTTP requests at once (method, path, user, body; users' password "secret"), as
    /// concurrent clients would send them: their statuses and bodies by the request's index, in
    /// the order the answers came.
    #[allow(dead_code)]
    pub fn http_at_once(&self, requests: &[(&str, &str, &str, &str)]) -> Vec<(usize, u16, String)> {
        use base64::Engine;
        let router = self.parts().router.clone();
        let built: Vec<_> = requests
            .iter()
            .map(|(method, path, user, body)| {
                let auth =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
                axum::http::Request::builder()
                    .method(*method)
                    .uri(path.replace(' ', "%20"))
                    .header("Authorization", format!("Basic {auth}"))
                    .header("Depth", "1")
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap()
            })
            .collect();
        self.run(async move {
            let (done, mut answers) = tokio::sync::mpsc::unbounded_channel();
            for (index, request) in built.into_iter().enumerate() {
                let (router, done) = (router.clone(), done.clone());
                tokio::spawn(async move {
                    let response = router.oneshot(request).await.unwrap();
                    let status = response.status().as_u16();
                    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    let _ =
                        done.send((index, status, String::from_utf8_lossy(&bytes).into_owned()));
                });
            }
            drop(done);
            let mut out = Vec::new();
            while let Some(answer) = answers.recv().await {
                out.push(answer);
            }
            out
        })
    }

    /// An account's stored copy: status and text.
    pub fn get(&self, account: &str, uid: &str) -> (u16, String) {
        let (status, _, body) = self.http(
            "GET",
            &format!("/calendars/{account}/{uid}"),
            account,
            &[],
            "",
        );
        (status, body)
    }

    /// A request with the admin token: status and body.
    #[allow(dead_code)]
    /// A request from a browser at `client` (no credentials), as the listener hands it on.
    pub fn browse(&self, method: &str, path: &str, body: &str, client: &str) -> (u16, String) {
        let peer: std::net::SocketAddr = format!("{client}:40000").parse().unwrap();
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        request
            .extensions_mut()
            .insert(imipd::http::serve::Peer(peer));
        self.answer(request)
    }

    /// A request through the router: its status and body.
    fn answer(&self, request: axum::http::Request<axum::body::Body>) -> (u16, String) {
        let router = self.parts().router.clone();
        self.run(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    pub fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {}", super::ADMIN_TOKEN))
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        self.answer(request)
    }

    /// The outbound queue as `GET /queue` shows it (admin token).
    pub fn queue(&self) -> Vec<imipd::http::QueueEntry> {
        let request = axum::http::Request::get("/queue")
            .header("Authorization", format!("Bearer {}", super::ADMIN_TOKEN))
            .body(axum::body::Body::empty())
            .unwrap();
        let router = self.parts().router.clone();
        self.run(async move {
            let response = router.oneshot(request).await.unwrap();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            let _ = parts.stop.send(true);
            parts.runtime.shutdown_timeout(Duration::from_secs(5));
        }
        super::drop_database(&self.name);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(write: &mut W, line: &str) {
    write.write_all(line.as_bytes()).await.unwrap();
}

/// The last line of the next (possibly multi-line) reply.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> String {
    loop {
        let mut line = String::new();
        read.read_line(&mut line).await.unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_string();
        }
    }
}

/// CRLF lines, leading dots doubled, no final line end.
fn stuffed(message: &str) -> String {
    message
        .split('\n')
        .map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}
