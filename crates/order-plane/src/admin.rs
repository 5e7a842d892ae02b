//! `POST /admin/kill-switch`: halts or resumes trading. Served only when `admin_enabled`; every
//! call needs `Authorization: Bearer <ADMIN_TOKEN>`, checked before the body is read, so a caller
//! without the token learns nothing but 401. Health and metrics stay read-only.
//!
//! The plane's loop applies a command between two messages and then publishes the
//! `trading_halt`; the endpoint waits at most 5 s for each step, whatever the loop or the broker
//! do, and answers 200 once published, 202 when applied but not yet on the broker, 503 when not
//! applied.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
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
    /// Answered once the engine's halt state has changed. Closed when the caller stopped
    /// waiting: the loop then drops the command, since the caller was told it was not applied.
    pub applied: oneshot::Sender<()>,
    /// Answered once the `trading_halt` records are on the broker.
    pub published: oneshot::Sender<()>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    halted: bool,
    reason: Option<String>,
    cancel_open: Option<bool>,
}

/// Largest body read: a command is a few dozen bytes, and a caller with the token has no reason
/// to send more.
const MAX_BODY: usize = 4 * 1024;

/// The same answer whatever an unauthenticated caller sent.
const UNAUTHORIZED: &str = "missing or wrong bearer token\n";

/// How long the endpoint waits for each step of a command.
#[derive(Debug, Clone, Copy)]
struct Waits {
    /// For the loop to take the command and change the halt state.
    applied: Duration,
    /// Then for the `trading_halt` to be on the broker.
    published: Duration,
}

impl Waits {
    /// The loop takes a command between two messages, within milliseconds when it runs; a
    /// delivery normally takes milliseconds too. 5 s each keeps an operator's `curl` (and the
    /// HTTP server's 5 s shutdown grace) from waiting on a plane that is stuck or stopping.
    const PRODUCTION: Self = Self { applied: Duration::from_secs(5), published: Duration::from_secs(5) };
}

#[derive(Clone)]
struct AdminState {
    token: String,
    commands: mpsc::Sender<HaltCommand>,
    waits: Waits,
}

/// The admin routes, authenticated by `token`.
pub fn router(token: String, commands: mpsc::Sender<HaltCommand>) -> Router {
    router_with(token, commands, Waits::PRODUCTION)
}

fn router_with(token: String, commands: mpsc::Sender<HaltCommand>, waits: Waits) -> Router {
    Router::new().route("/admin/kill-switch", post(kill_switch)).with_state(AdminState { token, commands, waits })
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    !token.is_empty() && same(presented.as_bytes(), token.as_bytes())
}

async fn kill_switch(State(state): State<AdminState>, request: Request) -> (StatusCode, &'static str) {
    // The request is taken whole, not through body extractors: they would read and judge the
    // body (400, 413, 422 with the parser's words) before this check could run.
    let (parts, body) = request.into_parts();
    if !authorized(&state.token, &parts.headers) {
        return (StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "expected a JSON body of at most 4 KiB\n");
    };
    let Ok(body) = serde_json::from_slice::<Body>(&bytes) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected JSON {\"halted\": bool, \"reason\": string, \"cancel_open\": bool}\n",
        );
    };
    let halted = body.halted;
    // The reason travels in a Kafka record and into logs: keep it short.
    let given: String = body.reason.unwrap_or_else(|| "no reason given".into()).chars().take(256).collect();
    let reason = format!("admin: {given}");
    let (applied_tx, applied) = oneshot::channel();
    let (published_tx, published) = oneshot::channel();
    let command =
        HaltCommand { halted, reason, cancel_open: body.cancel_open, applied: applied_tx, published: published_tx };
    let taken = async {
        state.commands.send(command).await.ok()?;
        applied.await.ok()
    };
    if !matches!(tokio::time::timeout(state.waits.applied, taken).await, Ok(Some(()))) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not applied: the order plane is busy or stopping\n");
    }
    match tokio::time::timeout(state.waits.published, published).await {
        Ok(Ok(())) => {
            (StatusCode::OK, if halted { "trading halted (published)\n" } else { "trading resumed (published)\n" })
        }
        Err(_) => (
            StatusCode::ACCEPTED,
            if halted {
                "trading halted; not yet published (broker unreachable); it is published once the broker answers\n"
            } else {
                "trading resumed; not yet published (broker unreachable); it is published once the broker answers\n"
            },
        ),
        // The loop stopped (shutdown or a broker failure) before the delivery was confirmed; its
        // final flush may still deliver it.
        Ok(Err(_)) => (
            StatusCode::ACCEPTED,
            if halted {
                "trading halted; publication not confirmed (the order plane is stopping): check after its restart\n"
            } else {
                "trading resumed; publication not confirmed (the order plane is stopping): check after its restart\n"
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use test_support::http_request;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{HaltCommand, Waits, router_with};

    const TOKEN: &str = "a-long-enough-admin-token";
    const SHORT: Waits = Waits { applied: Duration::from_millis(300), published: Duration::from_millis(300) };

    /// Serves the admin routes with `SHORT` waits; the caller plays the plane's loop.
    async fn start() -> (SocketAddr, mpsc::Receiver<HaltCommand>, CancellationToken) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (commands, loop_rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        tokio::spawn(common::http::serve_router(listener, router_with(TOKEN.into(), commands, SHORT), stop.clone()));
        (addr, loop_rx, stop)
    }

    async fn post(addr: SocketAddr, token: Option<&'static str>, body: &'static str) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = &auth {
                headers.push(("Authorization", a.as_str()));
            }
            http_request(addr, "POST", "/admin/kill-switch", &headers, body).unwrap()
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn published_applied_and_stuck_commands_each_get_their_answer() {
        let (addr, mut loop_rx, stop) = start().await;
        let body = r#"{"halted":true,"reason":"drill"}"#;

        let answering = tokio::spawn(async move {
            let cmd = loop_rx.recv().await.unwrap();
            assert_eq!((cmd.halted, cmd.reason.as_str()), (true, "admin: drill"));
            cmd.applied.send(()).unwrap();
            cmd.published.send(()).unwrap();
            loop_rx
        });
        assert_eq!(post(addr, Some(TOKEN), body).await, (200, "trading halted (published)\n".into()));
        let mut loop_rx = answering.await.unwrap();

        // Applied, but the broker does not confirm: the caller hears so instead of waiting.
        let unpublished = tokio::spawn(async move {
            let cmd = loop_rx.recv().await.unwrap();
            cmd.applied.send(()).unwrap();
            (loop_rx, cmd.published)
        });
        let (code, text) = post(addr, Some(TOKEN), body).await;
        assert_eq!(code, 202, "{text}");
        assert!(text.starts_with("trading halted; not yet published"), "{text}");
        let (loop_rx, _published) = unpublished.await.unwrap();

        // The loop does not take the command: 503, and the command it finds later is marked
        // abandoned so that it is not applied after the caller was told it was not.
        let (code, text) = post(addr, Some(TOKEN), body).await;
        assert_eq!((code, text.as_str()), (503, "not applied: the order plane is busy or stopping\n"));
        let mut loop_rx = loop_rx;
        let abandoned = loop_rx.try_recv().unwrap();
        assert!(abandoned.applied.is_closed());
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_token_is_checked_before_the_body_is_read() {
        let (addr, mut loop_rx, stop) = start().await;
        for body in ["not json", r#"{"halted":"yes"}"#, r#"{"halted":true,"extra":1}"#, ""] {
            for token in [None, Some("wrong-token-wrong-token")] {
                let answer = post(addr, token, body).await;
                assert_eq!(answer, (401, "missing or wrong bearer token\n".into()), "{token:?} {body:?}");
            }
        }
        assert!(loop_rx.try_recv().is_err(), "nothing reached the loop");
        // With the token, the body is judged.
        assert_eq!(post(addr, Some(TOKEN), "not json").await.0, 400);
        stop.cancel();
    }
}
