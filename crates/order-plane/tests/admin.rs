//! The kill-switch endpoint: off by default, token required when on, and a halt is published to
//! `exec_reports` for the Strategy Plane.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::time::Duration;

use common::codec;
use common::config::{AppConfig, Secret};
use common::events::ExecEvent;
use common::topics::EXEC_REPORTS;
use test_support::{Broker, http_get, http_request, unique, wait_for};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "a-long-enough-admin-token";

async fn start(cfg: AppConfig) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { order_plane::run::run(cfg, listener, s).await.unwrap() });
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "ready", || (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(()))
    })
    .await
    .unwrap();
    (addr, stop, task)
}

fn post(addr: std::net::SocketAddr, token: Option<&str>, body: &str) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http_request(addr, "POST", "/admin/kill-switch", &headers, body).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_switch_needs_the_token_and_publishes_the_halt() {
    let broker = Broker::shared();
    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique("adm_");

    // Off by default: the route does not exist.
    let (addr, stop, task) = start(cfg.clone()).await;
    let code = tokio::task::spawn_blocking(move || post(addr, Some(TOKEN), r#"{"halted":true}"#)).await.unwrap();
    assert_eq!(code, 404);
    stop.cancel();
    task.await.unwrap();

    cfg.order_plane.admin_enabled = true;
    cfg.order_plane.admin_token = serde_json::from_str::<Secret>(&format!("\"{TOKEN}\"")).unwrap();
    cfg.validate().unwrap();
    let (addr, stop, task) = start(cfg.clone()).await;
    let codes = tokio::task::spawn_blocking(move || {
        [
            post(addr, None, r#"{"halted":true}"#),
            post(addr, Some("wrong-token-wrong-token"), r#"{"halted":true}"#),
            post(addr, Some(TOKEN), "not json"),
            post(addr, Some(TOKEN), r#"{"halted":true,"reason":"test drill"}"#),
        ]
    })
    .await
    .unwrap();
    assert_eq!(codes[0], 401);
    assert_eq!(codes[1], 401);
    assert!(codes[2] == 400 || codes[2] == 415 || codes[2] == 422, "bad body: {}", codes[2]);
    assert_eq!(codes[3], 200);
    let (_, metrics) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").unwrap()).await.unwrap();
    assert!(metrics.lines().any(|l| l == "order_plane_kill_switch 1"));
    assert!(!metrics.contains(TOKEN), "the token never appears in metrics");
    stop.cancel();
    task.await.unwrap();

    let (kafka, topic) = (cfg.kafka.clone(), cfg.kafka.topic(EXEC_REPORTS));
    let records =
        tokio::task::spawn_blocking(move || common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
    let halts: Vec<_> = records
        .iter()
        .filter_map(|r| match codec::decode::<ExecEvent>(&r.payload).unwrap().payload {
            ExecEvent::Halt(h) => Some(h),
            _ => None,
        })
        .collect();
    assert!(!halts.is_empty() && halts.iter().all(|h| h.halted && h.reason == "admin: test drill"));
    assert_eq!(halts.len(), cfg.kafka.partitions as usize, "written to every partition");

    // A restarted plane comes back halted.
    let (addr, stop, task) = start(cfg.clone()).await;
    let (_, metrics) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").unwrap()).await.unwrap();
    assert!(metrics.lines().any(|l| l == "order_plane_kill_switch 1"), "halt survives a restart");
    stop.cancel();
    task.await.unwrap();
}
