//! The read-only HTTP endpoints of every plane: `/metrics` (Prometheus text format),
//! `/health/live` (the process is up) and `/health/ready` (broker reachable and the plane doing its
//! work).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
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

/// Serves `app` (the common endpoints merged with a plane's own) until `shutdown` is cancelled.
pub async fn serve_router(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}
