//! The read-only HTTP endpoints of every plane: `/metrics` (Prometheus text format),
//! `/health/live` (the process is up) and `/health/ready` (broker reachable and the plane doing its
//! work), and the server that runs them (and a plane's own routes) with limits on what one client
//! can hold: the time to send a request's header, the number of open connections, and how long
//! shutdown waits for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What `/health/ready` reports. Set by the plane's shell.
#[derive(Debug, Default)]
pub struct Health {
    broker: AtomicBool,
    working: AtomicBool,
}

impl Health {
    /// A fresh, not-ready health state.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records whether the broker answered the last check.
    pub fn set_broker_reachable(&self, ok: bool) {
        self.broker.store(ok, Ordering::Relaxed);
    }

    /// Records whether the plane is consuming or producing as it should.
    pub fn set_working(&self, ok: bool) {
        self.working.store(ok, Ordering::Relaxed);
    }

    /// Broker reachable and plane working.
    pub fn is_ready(&self) -> bool {
        self.broker.load(Ordering::Relaxed) && self.working.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    health: Arc<Health>,
}

/// A plane's metrics registry, holding from the start the process's own metrics (`process_*`:
/// CPU seconds, resident and virtual memory, open and maximum file descriptors, threads, start
/// time) where the platform reports them (Linux). Every plane builds its registry here, so
/// every `/metrics` carries the same process series.
///
/// # Errors
/// A metric could not be registered (a bug).
pub fn registry() -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
    Ok(registry)
}

/// The router; exposed for in-process tests.
pub fn router(registry: Registry, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .with_state(AppState { registry, health })
}

/// Serves the endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(registry, health), shutdown).await
}

/// Serves `app` (the common endpoints merged with a plane's own) until `shutdown` is cancelled,
/// then gives open connections 5 s to finish and drops the rest. A client has 10 s to send a
/// request's header, and at most 128 connections are open at once.
pub async fn serve_router(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    serve_limited(listener, app, shutdown, Limits::PRODUCTION).await
}

/// What one client can hold of a plane's HTTP server.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Time to send a request's header, from the connection's start or the previous response;
    /// an idle keep-alive connection is closed after it too.
    header_read_timeout: Duration,
    /// Open connections at most; a connection beyond is closed as soon as it is accepted.
    max_connections: usize,
    /// After shutdown, how long open connections may finish their request before they are dropped.
    grace: Duration,
}

impl Limits {
    /// A scrape, a probe or an admin call sends its header in one packet, so 10 s is generous
    /// even on a slow link, yet a client trickling bytes cannot hold a connection for long.
    /// Prometheus, the health check and an operator need a handful of connections; 128 leaves
    /// room while keeping file descriptors for librdkafka. 5 s of grace fits, with the plane's own
    /// drain, within the orchestrator's stop timeout (compose: 20 s).
    const PRODUCTION: Self =
        Self { header_read_timeout: Duration::from_secs(10), max_connections: 128, grace: Duration::from_secs(5) };
}

/// After a failed accept (out of file descriptors, say), how long to wait before the next one:
/// retrying at once would spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

async fn serve_limited(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Held so that connections still open after the grace period can be dropped.
    let mut connections = JoinSet::new();
    loop {
        // A finished connection stays in the set until joined; reaping here bounds the set by
        // the open connections.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot accept an HTTP connection; retrying.");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                    }
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, max = limits.max_connections, "HTTP connection closed: too many open.");
            drop(stream);
            continue;
        };
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error.");
            }
            drop(slot);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown()).await.is_err() {
        tracing::debug!(open = connections.len(), "HTTP connections still open after the grace period; dropped.");
    }
    connections.shutdown().await;
    Ok(())
}

/// Checks every 5 s that the broker answers, and records it in `health`.
pub fn spawn_broker_check(
    producer: Arc<crate::kafka::TrackedProducer>,
    health: Arc<Health>,
) -> tokio::task::JoinHandle<()> {
    use rdkafka::producer::Producer;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            let p = Arc::clone(&producer);
            let ok = tokio::task::spawn_blocking(move || {
                crate::kafka::broker_reachable(p.client(), std::time::Duration::from_secs(3))
            })
            .await
            .unwrap_or(false);
            if !ok {
                tracing::warn!("Kafka broker unreachable; not ready.");
            }
            health.set_broker_reachable(ok);
        }
    })
}

/// What `/metrics` serves for `registry`: the Prometheus text format.
///
/// # Errors
/// A metric could not be encoded.
pub fn render(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut body = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut body)?;
    Ok(body)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match render(&state.registry) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    use super::{Health, Limits, registry, render, router, serve_limited};

    /// Every wait in these tests ends by this at the latest.
    const BOUND: Duration = Duration::from_secs(5);
    /// A request whose header is never finished.
    const PARTIAL: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: test\r\n";

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken, JoinHandle<std::io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let app = router(prometheus::Registry::new(), Health::new());
        (addr, stop.clone(), tokio::spawn(serve_limited(listener, app, stop, limits)))
    }

    fn status(response: &[u8]) -> Option<u16> {
        std::str::from_utf8(response).ok()?.split_whitespace().nth(1)?.parse().ok()
    }

    /// What the server sent before it closed the connection (an end of file or a reset), or
    /// `None` when it still holds the connection open after [`BOUND`].
    async fn closed_by_server(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut received = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut received)).await.ok().map(|_| received)
    }

    /// `GET /health/live` on a new connection: the status, or `None` when the server closed the
    /// connection without answering.
    async fn get_live(addr: SocketAddr) -> Option<u16> {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut response = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut response)).await.ok()?.ok()?;
        status(&response)
    }

    /// `GET /health/live` on an open connection, which stays open.
    async fn get_live_on(stream: &mut TcpStream) -> Option<u16> {
        stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n").await.ok()?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 1024];
        while !response.ends_with(b"live\n") {
            let n = tokio::time::timeout(BOUND, stream.read(&mut chunk)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
            response.extend_from_slice(&chunk[..n]);
        }
        status(&response)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_planes_registry_exports_the_process_metrics() {
        let body = String::from_utf8(render(&registry().unwrap()).unwrap()).unwrap();
        for name in
            ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_threads"]
        {
            let value = body
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {name} sample in:\n{body}"));
            assert!(value.parse::<f64>().is_ok(), "{name} {value}");
        }
        let rss: f64 = body
            .lines()
            .find_map(|line| line.strip_prefix("process_resident_memory_bytes ")?.parse().ok())
            .unwrap_or_default();
        assert!(rss > 0.0, "a running test uses memory: {rss}");
    }

    #[tokio::test]
    async fn a_client_that_stalls_in_its_header_is_disconnected() {
        let limits = Limits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 8,
            grace: Duration::from_secs(1),
        };
        let (addr, stop, server) = start(limits).await;
        assert_eq!(get_live(addr).await, Some(200), "a whole request is served");

        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(PARTIAL).await.unwrap();
        let answer = closed_by_server(&mut slow).await.expect("the server drops a header that does not arrive");
        assert_ne!(status(&answer), Some(200), "the half-sent request is not served");

        stop.cancel();
        tokio::time::timeout(BOUND, server).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once() {
        let limits =
            Limits { header_read_timeout: Duration::from_secs(30), max_connections: 4, grace: Duration::from_secs(1) };
        let (addr, stop, server) = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // The server accepts in the order clients connected: this one is the fifth.
        let mut fifth = TcpStream::connect(addr).await.unwrap();
        assert!(closed_by_server(&mut fifth).await.is_some(), "the fifth connection is closed while four are open");
        for stream in &mut held {
            assert_eq!(get_live_on(stream).await, Some(200), "the four open connections are served");
        }

        drop(held.pop());
        // The server frees the slot once it reads the close: poll for it.
        let deadline = Instant::now() + BOUND;
        while get_live(addr).await != Some(200) {
            assert!(Instant::now() < deadline, "a new connection is served once one of the four closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        stop.cancel();
        tokio::time::timeout(BOUND, server).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_ends_within_the_grace_period_while_a_request_is_half_sent() {
        let grace = Duration::from_millis(300);
        let limits = Limits { header_read_timeout: Duration::from_secs(30), max_connections: 8, grace };
        let (addr, stop, server) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(PARTIAL).await.unwrap();
        // Accepted after the slow connection, so once this is answered the server holds that one.
        assert_eq!(get_live(addr).await, Some(200));

        stop.cancel();
        let ended = tokio::time::timeout(grace + Duration::from_secs(2), server).await;
        ended.expect("serve returns soon after the grace period").unwrap().unwrap();
        assert!(closed_by_server(&mut slow).await.is_some(), "the half-sent request's connection is dropped");
    }
}
