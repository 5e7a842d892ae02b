//! The kill-switch endpoint: off by default, token required when on, and a halt is published to
//! `exec_reports` for the Strategy Plane.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
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

/// An unauthenticated POST that declares a 3 MiB body (above axum's 2 MB default body limit)
/// and sends its first 5 KiB; what the server answered before closing.
fn post_huge_without_token(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!(
        "POST /admin/kill-switch HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        3 << 20
    )
    .into_bytes();
    request.extend_from_slice(&[b'['; 5 * 1024]);
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    // The server answers without reading the rest and closes; what it sent first is kept.
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn the_http_port_listens_on_loopback_unless_http_bind_says_otherwise() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let cfg = common::config::load_from(&shipped, &[]).unwrap();
    assert_eq!(cfg.http_bind(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let all = [("HTTP_BIND".to_owned(), "0.0.0.0".to_owned())];
    assert_eq!(common::config::load_from(&shipped, &all).unwrap().http_bind(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let bad = [("HTTP_BIND".to_owned(), "not-an-ip".to_owned())];
    let err = common::config::load_from(&shipped, &bad).unwrap_err();
    assert_eq!(err.fields(), vec!["app.http_bind"], "{err}");
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
    let (codes, huge) = tokio::task::spawn_blocking(move || {
        let codes = [
            post(addr, None, r#"{"halted":true}"#),
            post(addr, Some("wrong-token-wrong-token"), r#"{"halted":true}"#),
            // A caller without the token gets 401 whatever the body, never the parser's verdict.
            post(addr, None, "not json"),
            post(addr, Some("wrong-token-wrong-token"), r#"{"halted":"yes"}"#),
            post(addr, None, r#"{"halted":true,"unknown":1}"#),
            post(addr, Some(TOKEN), "not json"),
            post(addr, Some(TOKEN), r#"{"halted":true,"reason":"test drill"}"#),
        ];
        (codes, post_huge_without_token(addr))
    })
    .await
    .unwrap();
    assert_eq!(codes[..5], [401; 5], "unauthenticated: {codes:?}");
    assert!(huge.starts_with("HTTP/1.1 401"), "unauthenticated huge body: {huge:?}");
    assert_eq!(codes[5], 400, "bad body with the token");
    assert_eq!(codes[6], 200);
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
