//! Event-time execution end to end: the three planes through a real Kafka broker publish the same
//! `order_intents` and `exec_reports` (every field of every record but `ts_init`) at replay speeds
//! `max`, `10x` and `realtime`, with one partition and with three, and after the Order Plane
//! crashed in the middle of a replay, and exactly what the three cores wired together in one
//! process, with no broker, publish for the same input.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::clock::ManualClock;
use common::codec;
use common::config::AppConfig;
use common::events::{Envelope, ExecEvent, IntentEvent, Payload, Source};
use common::topics::{EXEC_REPORTS, ORDER_INTENTS};
use common::types::{Symbol, UnixNanos};
use data_plane::core::{DataCore, Output};
use data_plane::source::Replay;
use order_plane::engine::OrderEngine;
use order_plane::simulated::{SimulatedConfig, SimulatedVenue};
use strategy_plane::engine::StrategyEngine;
use test_support::{Broker, http_get, spot_fixture, unique, wait_for};
use tokio_util::sync::CancellationToken;

/// The first 124 s of the spot sample (both symbols): a realtime run takes two minutes.
const ROWS: usize = 40_000;

/// Each symbol's records of one topic, in log order, as JSON with `ts_init` set to 0.
type Streams = BTreeMap<String, Vec<String>>;

fn config(broker: &Broker, fixture: &Path, speed: &str, partitions: i32) -> AppConfig {
    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.app.instance_id = "determinism".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique("det_");
    cfg.kafka.partitions = partitions;
    cfg.data_plane.replay.path = fixture.to_owned();
    cfg.data_plane.replay.speed = speed.into();
    cfg.data_plane.replay.exit_when_done = true;
    // The shipped fees exceed every forecast of the samples: with them weighed nothing trades.
    cfg.strategy_plane.cost_aversion = 0.0;
    // Trading starts after 10 windows, so two minutes of data make about a hundred decisions.
    cfg.strategy_plane.warmup_windows = 10;
    cfg
}

fn canonical<P: Payload + 'static>(mut env: Envelope<P>, streams: &mut Streams) {
    env.ts_init = UnixNanos(0);
    let key = env.payload.key().unwrap_or_default().to_owned();
    streams.entry(key).or_default().push(String::from_utf8(codec::encode(&env)).unwrap());
}

/// What the three cores publish for `cfg`'s input with no broker: intents and reports.
fn expected(cfg: &AppConfig) -> (Streams, Streams) {
    let path = &cfg.data_plane.replay.path;
    let replay = Replay::open(path, 1).unwrap();
    let stream = data_plane::run::stream_name(replay.files(), &cfg.data_plane);
    let source = |plane: &str| Arc::new(Source { plane: plane.into(), instance: cfg.instance_id().into() });
    let mut data = DataCore::new(&cfg.data_plane, &stream, source("data-plane"), ManualClock::new(UnixNanos(1)))
        .expecting(&data_plane::run::instruments(cfg));
    let mut strategy = StrategyEngine::new(cfg, source("strategy-plane"), ManualClock::new(UnixNanos(1)));
    let ticks = cfg.instruments.iter().map(|i| (Symbol::new(&i.symbol).unwrap(), i.tick_size)).collect();
    let venue = SimulatedVenue::new(SimulatedConfig::new(&cfg.order_plane, ticks));
    let mut order = OrderEngine::new(
        &cfg.risk,
        &cfg.order_plane,
        &cfg.instruments,
        venue,
        source("order-plane"),
        ManualClock::new(UnixNanos(1)),
    );
    let (mut intents, mut reports) = (Streams::new(), Streams::new());
    let (mut outputs, mut exec) = (Vec::new(), Vec::new());
    let mut feed = |outputs: &mut Vec<Output>| {
        for o in outputs.drain(..) {
            let mut new_intents = Vec::new();
            match o {
                Output::Market(env) => {
                    strategy.on_market(&env);
                    order.on_market(&env, &mut exec);
                }
                Output::Ofi(env) => strategy.on_ofi(&env, &mut new_intents),
                Output::Rejected { .. } => {}
            }
            loop {
                for i in new_intents.drain(..) {
                    order.on_intent(&i, &mut exec);
                    canonical(i, &mut intents);
                }
                if exec.is_empty() {
                    break;
                }
                for e in std::mem::take(&mut exec) {
                    strategy.on_exec(&e, true, &mut new_intents);
                    canonical(e, &mut reports);
                }
            }
        }
    };
    for item in replay {
        data.process(item.unwrap(), &mut outputs);
        feed(&mut outputs);
    }
    data.end(&mut outputs);
    feed(&mut outputs);
    (intents, reports)
}

/// Reads `topic` of `cfg` into streams.
async fn read<P: Payload + Send + 'static>(cfg: &AppConfig, topic: &str) -> Streams {
    let (kafka, topic) = (cfg.kafka.clone(), cfg.kafka.topic(topic));
    let records =
        tokio::task::spawn_blocking(move || common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
    let mut streams = Streams::new();
    for r in records {
        canonical(codec::decode::<P>(&r.payload).unwrap(), &mut streams);
    }
    streams
}

/// Whether every order intent in `intents` has a final report in `reports`.
fn settled(intents: &Streams, reports: &Streams) -> bool {
    let finals: Vec<String> = reports
        .values()
        .flatten()
        .filter_map(|r| match codec::decode::<ExecEvent>(r.as_bytes()).ok()?.payload {
            ExecEvent::Report(r) if r.status.is_terminal() => Some(r.intent_id.to_string()),
            _ => None,
        })
        .collect();
    intents.values().flatten().all(|i| match codec::decode::<IntentEvent>(i.as_bytes()).unwrap().payload {
        IntentEvent::Intent(i) => finals.contains(&i.intent_id.to_string()),
        _ => true,
    })
}

async fn start(
    cfg: &AppConfig,
    plane: fn(AppConfig, tokio::net::TcpListener, CancellationToken) -> tokio::task::JoinHandle<Result<(), String>>,
) -> (CancellationToken, tokio::task::JoinHandle<Result<(), String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = plane(cfg.clone(), listener, stop.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "plane ready", || {
            (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(())
        })
    })
    .await
    .unwrap();
    (stop, task)
}

fn strategy(
    cfg: AppConfig,
    l: tokio::net::TcpListener,
    s: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), String>> {
    tokio::spawn(async move { strategy_plane::run::run(cfg, l, s).await.map_err(|e| e.to_string()) })
}

fn order(
    cfg: AppConfig,
    l: tokio::net::TcpListener,
    s: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), String>> {
    tokio::spawn(async move { order_plane::run::run(cfg, l, s).await.map_err(|e| e.to_string()) })
}

/// Runs the three planes over `cfg`'s input until every intent is settled and nothing changes
/// for three seconds; returns what they published. With `crash_after = Some(n)`, the Order
/// Plane's task is aborted once `n` exec reports are on the broker (its consumer and producer
/// dropped, no shutdown: what it had not acknowledged is lost, as in a crash) and a new one
/// started.
async fn through_the_broker(cfg: &AppConfig, crash_after: Option<usize>) -> (Streams, Streams) {
    let (mut order_stop, mut order_task) = start(cfg, order).await;
    let (strategy_stop, strategy_task) = start(cfg, strategy).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data = tokio::spawn(data_plane::run(cfg.clone(), listener, CancellationToken::new()));
    if let Some(n) = crash_after {
        for _ in 0..600 {
            if read::<ExecEvent>(cfg, EXEC_REPORTS).await.values().map(Vec::len).sum::<usize>() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        order_task.abort();
        assert!(order_task.await.unwrap_err().is_cancelled());
        (order_stop, order_task) = start(cfg, order).await;
    }
    data.await.unwrap().unwrap();
    let mut last = (Streams::new(), Streams::new());
    let mut unchanged = 0;
    for _ in 0..240 {
        let now = (read::<IntentEvent>(cfg, ORDER_INTENTS).await, read::<ExecEvent>(cfg, EXEC_REPORTS).await);
        unchanged = if now == last && settled(&now.0, &now.1) { unchanged + 1 } else { 0 };
        last = now;
        if unchanged == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(unchanged, 3, "the planes did not settle");
    strategy_stop.cancel();
    order_stop.cancel();
    strategy_task.await.unwrap().unwrap();
    order_task.await.unwrap().unwrap();
    last
}

/// The first record that differs between two runs, per symbol.
fn difference(a: &Streams, b: &Streams) -> Option<String> {
    let mut found = Vec::new();
    for symbol in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (x, y) = (a.get(symbol).cloned().unwrap_or_default(), b.get(symbol).cloned().unwrap_or_default());
        if let Some(i) = (0..x.len().max(y.len())).find(|&i| x.get(i) != y.get(i)) {
            // The envelope's head and the start of the payload say enough; records are long.
            let brief = |r: Option<&String>| {
                r.map_or_else(
                    || "none".to_owned(),
                    |r| {
                        let (head, payload) = r.split_once("\"payload\":").unwrap_or((r, ""));
                        let kind = head.split("\"event_type\":").nth(1).unwrap_or("").split(',').next().unwrap_or("");
                        let ts = head.split("\"ts_event\":").nth(1).unwrap_or("").split(',').next().unwrap_or("");
                        format!("{kind} at {ts}: {}", payload.chars().take(400).collect::<String>())
                    },
                )
            };
            found.push(format!(
                "{symbol} record {i} of {} / {}:\n  {}\n  {}",
                x.len(),
                y.len(),
                brief(x.get(i)),
                brief(y.get(i))
            ));
        }
    }
    (!found.is_empty()).then(|| found.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_input_gives_the_same_intents_and_fills_at_any_speed_and_partition_count() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (fixture, _) = spot_fixture(dir.path(), ROWS);
    let (want_intents, want_reports) = expected(&config(broker, &fixture, "max", 1));
    let orders = want_intents.values().flatten().filter(|i| i.contains("\"event_type\":\"order_intent\"")).count();
    let fills = want_reports.values().flatten().filter(|r| r.contains("\"exec_id\":\"SIM-")).count();
    assert!(orders >= 10 && fills >= 10, "the fixture should trade: {orders} intents, {fills} fills");

    let runs = [("max", 1, None), ("max", 3, None), ("10x", 3, None), ("realtime", 1, None), ("10x", 3, Some(20))];
    for (speed, partitions, crash_after) in runs {
        let cfg = config(broker, &fixture, speed, partitions);
        let (intents, reports) = through_the_broker(&cfg, crash_after).await;
        let crashed = if crash_after.is_some() { ", the Order Plane crashed and restarted" } else { "" };
        let run = format!("{speed}, {partitions} partition(s){crashed}");
        let (i, r) = (difference(&want_intents, &intents), difference(&want_reports, &reports));
        assert!(i.is_none() && r.is_none(), "at {run}:\norder_intents: {i:?}\nexec_reports: {r:?}");
    }
}
