//! `POST /admin/kill-switch`: halts or resumes trading. Served only when `admin_enabled`; every
//! call needs `Authorization: Bearer <ADMIN_TOKEN>`. Health and metrics stay read-only.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

/// A kill-switch command from the admin endpoint to the plane's loop.
#[derive(Debug)]
pub struct HaltCommand {
    /// Halt (`true`) or resume (`false`).
    pub halted: bool,
    /// Why; recorded in the published `trading_halt`.
    pub reason: String,
    /// Cancel open orders too (default: the configured `cancel_open_on_halt`).
    pub cancel_open: Option<bool>,
    /// Answered once the change is published.
    pub done: oneshot::Sender<()>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    halted: bool,
    reason: Option<String>,
    cancel_open: Option<bool>,
}

#[derive(Clone)]
struct AdminState {
    token: String,
    commands: mpsc::Sender<HaltCommand>,
}

/// The admin routes, authenticated by `token`.
pub fn router(token: String, commands: mpsc::Sender<HaltCommand>) -> Router {
    Router::new().route("/admin/kill-switch", post(kill_switch)).with_state(AdminState { token, commands })
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn kill_switch(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Option<Json<Body>>,
) -> (StatusCode, &'static str) {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if state.token.is_empty() || !same(presented.as_bytes(), state.token.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
    }
    let Some(Json(body)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            "expected JSON {\"halted\": bool, \"reason\": string, \"cancel_open\": bool}\n",
        );
    };
    let (done, answered) = oneshot::channel();
    // The reason travels in a Kafka record and into logs: keep it short.
    let given: String = body.reason.unwrap_or_else(|| "no reason given".into()).chars().take(256).collect();
    let reason = format!("admin: {given}");
    let command = HaltCommand { halted: body.halted, reason, cancel_open: body.cancel_open, done };
    if state.commands.send(command).await.is_err() || answered.await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "order plane is shutting down\n");
    }
    (StatusCode::OK, if body.halted { "trading halted\n" } else { "trading resumed\n" })
}
