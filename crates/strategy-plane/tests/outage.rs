//! The three planes against a broker that stops answering (`SIGSTOP` of the Kafka JVM: the
//! sockets stay open, nothing comes back, as with a hung broker or a network partition): each
//! outlives an outage longer than a producer's message timeout, not ready meanwhile, resumes
//! when it answers again, and stops within 30 s of being told to, whatever the broker does.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::config::AppConfig;
use test_support::{KafkaNode, NodeSpec, http_get, metric, spot_fixture, unique, wait_for};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Plane = (&'static str, SocketAddr, CancellationToken, JoinHandle<Result<(), String>>);

async fn start(cfg: &AppConfig, name: &'static str) -> Plane {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let (cfg, s) = (cfg.clone(), stop.clone());
    let task = match name {
        "data-plane" => tokio::spawn(async move { data_plane::run(cfg, listener, s).await.map_err(|e| e.to_string()) }),
        "strategy-plane" => {
            tokio::spawn(async move { strategy_plane::run::run(cfg, listener, s).await.map_err(|e| e.to_string()) })
        }
        _ => tokio::spawn(async move { order_plane::run::run(cfg, listener, s).await.map_err(|e| e.to_string()) }),
    };
    wait_until(addr, "ready", |code, _| code == 200, Duration::from_secs(90)).await;
    (name, addr, stop, task)
}

/// Waits until `/health/ready`'s answer (status, `/metrics` body) passes `ok`.
async fn wait_until(addr: SocketAddr, what: &'static str, ok: fn(u16, &str) -> bool, timeout: Duration) {
    tokio::task::spawn_blocking(move || {
        wait_for(timeout, what, || {
            let (code, _) = http_get(addr, "/health/ready").ok()?;
            let (_, body) = http_get(addr, "/metrics").ok()?;
            ok(code, &body).then_some(())
        })
    })
    .await
    .unwrap();
}

fn signal(node: &KafkaNode, sig: &str) {
    let pid = node.pid().unwrap().to_string();
    assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success(), "kill {sig} {pid}");
}

fn processed(body: &str, plane: &str) -> f64 {
    let name = match plane {
        "data-plane" => "data_plane_events_published_total{topic=\"market_events\"}",
        "strategy-plane" => "strategy_plane_messages_processed_total{topic=\"ofi_events\"}",
        _ => "order_plane_messages_processed_total{topic=\"market_events\"}",
    };
    metric(body, name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planes_outlive_a_hung_broker_and_stop_within_30_s_while_it_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let node = KafkaNode::start(&NodeSpec::single(&dir.path().join("kafka"))).unwrap();
    let (fixture, _) = spot_fixture(dir.path(), 98_000);
    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.app.instance_id = "outage".into();
    cfg.kafka.bootstrap_servers = node.bootstrap();
    cfg.kafka.topic_prefix = unique("out_");
    cfg.data_plane.replay.path = fixture;
    // Long enough to still be replaying after the outage.
    cfg.data_plane.replay.speed = "1x".into();
    cfg.strategy_plane.cost_aversion = 0.0;
    cfg.validate().unwrap();
    let mut planes = Vec::new();
    for name in ["order-plane", "strategy-plane", "data-plane"] {
        planes.push(start(&cfg, name).await);
    }

    // 1. Longer than the producers' message timeout (60 s): nobody exits, nobody is ready.
    signal(&node, "-STOP");
    let outage = Duration::from_secs(75);
    let hung = Instant::now();
    for (name, addr, ..) in &planes {
        wait_until(*addr, "not ready while the broker hangs", |code, _| code == 503, Duration::from_secs(60)).await;
        println!("{name} not ready after {:?}", hung.elapsed());
    }
    tokio::time::sleep(outage.saturating_sub(hung.elapsed())).await;
    for (name, _, _, task) in &planes {
        assert!(!task.is_finished(), "{name} ended during the outage: {:?}", task);
    }
    let before = tokio::task::spawn_blocking({
        let addrs: Vec<_> = planes.iter().map(|(n, a, ..)| (*n, *a)).collect();
        move || addrs.iter().map(|(n, a)| processed(&http_get(*a, "/metrics").unwrap().1, n)).collect::<Vec<_>>()
    })
    .await
    .unwrap();

    // 2. The broker answers again: every plane is ready and moving.
    signal(&node, "-CONT");
    for (_, addr, ..) in &planes {
        wait_until(*addr, "ready again", |code, _| code == 200, Duration::from_secs(120)).await;
    }
    let moving = tokio::task::spawn_blocking({
        let addrs: Vec<_> = planes.iter().map(|(n, a, ..)| (*n, *a)).collect();
        let before = before.clone();
        move || {
            wait_for(Duration::from_secs(120), "every plane processing again", || {
                let mut now = Vec::new();
                for (n, a) in &addrs {
                    now.push(processed(&http_get(*a, "/metrics").ok()?.1, n));
                }
                now.iter().zip(&before).all(|(n, b)| n > b).then_some(now)
            })
        }
    })
    .await
    .unwrap();
    println!("processed before the thaw {before:?}, after {moving:?}");

    // 3. Hung again, each plane is told to stop: each is gone within 30 s.
    signal(&node, "-STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (_, _, stop, _) in &planes {
        stop.cancel();
    }
    let told = Instant::now();
    for (name, _, _, task) in planes {
        let left = Duration::from_secs(30).saturating_sub(told.elapsed());
        let ended = tokio::time::timeout(left, task).await;
        println!("{name} stopped after {:?}: {ended:?}", told.elapsed());
        assert!(ended.is_ok(), "{name} still running {:?} after it was told to stop", told.elapsed());
    }
    signal(&node, "-CONT");
}
