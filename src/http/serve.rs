//! The HTTP listener: hyper HTTP/1 connections around the router, each with two deadlines and
//! a cap on how many are open. A request must arrive whole (head and body) within
//! `http.request_timeout` of its first byte; a kept-alive connection may wait
//! `http.idle_timeout` for its next request. Over `limits.max_connections` a client is answered
//! 503 and closed. Bodies are read here, under a memory budget, so that handlers see them whole.

use crate::budget::Budget;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// The peer of a request, for the handlers (authentication failures are counted per peer).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// How the listener treats its clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `http.request_timeout`.
    pub request_timeout: Duration,
    /// `http.idle_timeout`.
    pub idle_timeout: Duration,
    /// `limits.max_connections`.
    pub max_connections: usize,
    /// The largest body taken.
    pub max_body: usize,
    /// `http.trusted_proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The certificate in force for the next connection (a reload may change it), if any.
pub type TlsSource = Arc<dyn Fn() -> Option<crate::config::Tls> + Send + Sync>;

/// Serves connections until `stop`; then open connections finish their requests and close.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: TlsSource,
    mut stop: watch::Receiver<bool>,
) {
    let limits = Arc::new(limits);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    // Bodies held at once: every connection may not hold the largest at the same time.
    let budget = Arc::new(Budget::new(64 * 1024 * 1024, limits.max_body));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "http: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match open.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let connection = Connection {
                            router: router.clone(),
                            limits: limits.clone(),
                            budget: budget.clone(),
                            peer,
                        };
                        let stop = stop.clone();
                        let tls = tls();
                        connections.spawn(async move {
                            connection.serve_maybe_tls(stream, tls, stop).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        connections.spawn(turn_away(stream, peer));
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Over the cap: a 503 and the door closed.
async fn turn_away(mut stream: TcpStream, peer: SocketAddr) {
    tracing::warn!(%peer, "http: limits.max_connections reached; turned away");
    let body = "too many connections (limits.max_connections), try again later\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// One client connection.
struct Connection {
    router: Router,
    limits: Arc<Limits>,
    budget: Arc<Budget>,
    peer: SocketAddr,
}

impl Connection {
    /// With `tls`, the connection starts with a TLS handshake, within `http.request_timeout`.
    async fn serve_maybe_tls(
        self,
        stream: TcpStream,
        tls: Option<crate::config::Tls>,
        stop: watch::Receiver<bool>,
    ) {
        let Some(tls) = tls else {
            return self.serve(stream, stop).await;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.0);
        let handshake = acceptor.accept(stream);
        match tokio::time::timeout(self.limits.request_timeout, handshake).await {
            Ok(Ok(secured)) => self.serve(secured, stop).await,
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "http: TLS handshake failed")
            }
            Err(_) => tracing::info!(peer = %self.peer, "http: TLS handshake too slow; closing"),
        }
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self,
        stream: S,
        mut stop: watch::Receiver<bool>,
    ) {
        let peer = self.peer;
        let clock = Arc::new(Clock::new(&self.limits));
        let io = TokioIo::new(Watched {
            inner: stream,
            clock: clock.clone(),
        });
        let handler = Arc::new(self);
        let service_clock = clock.clone();
        let service = hyper::service::service_fn(move |request| {
            let handler = handler.clone();
            let clock = service_clock.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(request, &clock).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The clock below bounds the head too; hyper's own timer is only needed as a tool.
        builder.timer(TokioTimer::new()).header_read_timeout(None);
        let mut connection = std::pin::pin!(builder.serve_connection(io, service));
        let mut stopping = false;
        loop {
            let deadline = clock.deadline();
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = clock.changed.notified() => {}
                _ = sleep_until(deadline) => {
                    if clock.deadline().is_some_and(|d| d <= Instant::now()) {
                        let phase = clock.phase().describe();
                        tracing::info!(%peer, phase, "http: request too slow or connection idle too long; closing");
                        return;
                    }
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }

    /// Reads the body within the request's deadline and budget, then runs the router.
    async fn handle(&self, request: Request<Incoming>, clock: &Clock) -> Response<Body> {
        let deadline = clock.reading_body();
        let (mut parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large");
        }
        // Without a length or a chunked body there is none.
        let expected = declared
            .or_else(|| {
                parts
                    .headers
                    .contains_key(header::TRANSFER_ENCODING)
                    .then_some(self.limits.max_body)
            })
            .unwrap_or(0);
        let _room = self.budget.reserve(expected).await;
        let read = axum::body::to_bytes(Body::new(body), self.limits.max_body);
        let bytes = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"),
            Err(_) => {
                let mut response = plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request did not arrive within http.request_timeout",
                );
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                return response;
            }
        };
        clock.handling();
        let client = client_address(self.peer, &parts.headers, &self.limits.trusted_proxies);
        parts.extensions.insert(Peer(client));
        let response = self
            .router
            .clone()
            .oneshot(Request::from_parts(parts, Body::from(bytes)))
            .await
            .unwrap_or_else(|never| match never {});
        clock.idle();
        response
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(format!("{text}\n")))
        .expect("a valid response")
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where a connection stands, and so which deadline applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request since then.
    Idle(Instant),
    /// A request started arriving then.
    Receiving(Instant),
    /// Its head is in; the handler reads the body by this deadline (and answers 408 past it).
    Body,
    /// The request is whole; the server is answering it.
    Handling,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Idle(_) => "idle",
            Phase::Receiving(_) => "receiving the request head",
            Phase::Body => "receiving the body",
            Phase::Handling => "answering",
        }
    }
}

/// A connection's phase, shared by its reader, its service and its watchdog.
struct Clock {
    phase: Mutex<Phase>,
    request_timeout: Duration,
    idle_timeout: Duration,
    changed: Notify,
}

impl Clock {
    fn new(limits: &Limits) -> Self {
        Clock {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            request_timeout: limits.request_timeout,
            idle_timeout: limits.idle_timeout,
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
        self.changed.notify_one();
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: when waiting, a request has started.
    fn arrived(&self) {
        if let Phase::Idle(_) = self.phase() {
            self.set(Phase::Receiving(Instant::now()));
        }
    }

    fn handling(&self) {
        self.set(Phase::Handling);
    }

    fn idle(&self) {
        self.set(Phase::Idle(Instant::now()));
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase() {
            Phase::Idle(since) => Some(since + self.idle_timeout),
            Phase::Receiving(since) => Some(since + self.request_timeout),
            Phase::Body | Phase::Handling => None,
        }
    }

    /// The head is in: returns when the body must have arrived whole.
    fn reading_body(&self) -> Instant {
        let deadline = match self.phase() {
            Phase::Receiving(since) => since + self.request_timeout,
            // Pipelined: its bytes came while the previous one was answered.
            _ => Instant::now() + self.request_timeout,
        };
        self.set(Phase::Body);
        deadline
    }
}

/// The client: the peer, or behind a trusted reverse proxy the last address `X-Forwarded-For`
/// names that is not a trusted proxy itself (what the proxies appended; whatever the client
/// wrote in front of that is not believed). Password back-off counts by this address.
fn client_address(
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> SocketAddr {
    if !trusted.contains(&peer.ip()) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|hop| !trusted.contains(hop))
        .map(|ip| SocketAddr::new(ip, 0))
        .unwrap_or(peer)
}

/// A socket that tells its clock when bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_a_trusted_proxy() {
        let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let trusted = ["127.0.0.1".parse().unwrap()];
        let mut headers = axum::http::HeaderMap::new();
        // The client claims to be 10.0.0.1; nginx appended what it saw.
        headers.insert("x-forwarded-for", "10.0.0.1, 198.51.100.7".parse().unwrap());
        assert_eq!(
            client_address(proxy, &headers, &trusted).ip().to_string(),
            "198.51.100.7"
        );
        // From anyone else the header is not believed.
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        assert_eq!(client_address(proxy, &headers, &[]), proxy);
        assert_eq!(
            client_address(proxy, &axum::http::HeaderMap::new(), &trusted),
            proxy
        );
    }
}
