//! The Strategy Plane through a real Kafka-protocol broker: the Data Plane replays real data, the
//! Strategy Plane publishes intents, and the test reads them back and checks they are exactly the
//! intents the core computes from the same input (ids included).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::clock::ManualClock;
use common::codec;
use common::config::AppConfig;
use common::events::{IntentEvent, Payload, Source};
use common::topics::ORDER_INTENTS;
use common::types::UnixNanos;
use data_plane::core::{DataCore, Output};
use data_plane::source::Replay;
use strategy_plane::engine::StrategyEngine;
use test_support::{Broker, http_get, metric, spot_fixture, unique, wait_for};
use tokio_util::sync::CancellationToken;

const ROWS: usize = 30_000;

/// The configuration of a test run: the broker, a fresh topic prefix, the fixture replayed at
/// full speed, no log files, and the trading costs left out of decisions (the shipped fees
/// exceed every forecast of the samples: nothing would trade).
fn config(broker: &Broker, fixture: &Path, prefix: &str, instance: &str) -> AppConfig {
    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.app.instance_id = instance.into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique(prefix);
    cfg.data_plane.replay.path = fixture.to_owned();
    cfg.data_plane.replay.speed = "max".into();
    cfg.strategy_plane.cost_aversion = 0.0;
    cfg
}

/// The intents the core makes from `path`, as payload JSON by intent id.
fn expected(cfg: &AppConfig, path: &Path) -> BTreeMap<String, String> {
    let source = Arc::new(Source { plane: "x".into(), instance: "x".into() });
    let mut data = DataCore::new(&cfg.data_plane, "replay:x", Arc::clone(&source), ManualClock::new(UnixNanos(1)))
        .expecting(&data_plane::run::instruments(cfg));
    let mut strategy = StrategyEngine::new(cfg, source, ManualClock::new(UnixNanos(1)));
    let (mut out, mut intents) = (Vec::new(), Vec::new());
    for item in Replay::open(path, 1).unwrap() {
        data.process(item.unwrap(), &mut out);
    }
    data.end(&mut out);
    for o in out {
        if let Output::Ofi(e) = o {
            strategy.on_ofi(&e, &mut intents);
        }
    }
    intents.iter().filter_map(|e| payload(&codec::encode(e))).collect()
}

/// (intent id, payload JSON) of an encoded order intent record; `None` for a decision mark.
fn payload(bytes: &[u8]) -> Option<(String, String)> {
    let env = codec::decode::<IntentEvent>(bytes).unwrap();
    let IntentEvent::Intent(i) = &env.payload else { return None };
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    Some((i.intent_id.to_string(), text.split_once("\"payload\":").unwrap().1.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_through_the_broker_match_the_core_exactly() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (fixture, _) = spot_fixture(dir.path(), ROWS);

    let cfg = config(broker, &fixture, "stp_", "system-test");
    // With no Order Plane, no intent ever gets its final report: the plane makes decisions until
    // the first one that trades, then waits (every decision sees the fills of the one before),
    // exactly as its core does. The determinism test runs all three planes.
    let want = expected(&cfg, &fixture);
    assert!(!want.is_empty(), "the fixture should produce intents");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let plane = tokio::spawn(strategy_plane::run::run(cfg.clone(), listener, stop.clone()));
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "strategy ready", || {
            (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(())
        })
    })
    .await
    .unwrap();

    let mut data_cfg = cfg.clone();
    data_cfg.data_plane.replay.exit_when_done = true;
    let data_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    data_plane::run(data_cfg, data_listener, CancellationToken::new()).await.unwrap();

    let n = want.len() as f64;
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(120), "every intent published", || {
            let (_, body) = http_get(addr, "/metrics").ok()?;
            (metric(&body, "strategy_plane_intents_published_total")? >= n).then_some(())
        })
    })
    .await
    .unwrap();
    // The metric counts intents handed to the producer; wait until the broker holds them all.
    let (kafka, topic, expected_len) = (cfg.kafka.clone(), cfg.kafka.topic(ORDER_INTENTS), want.len());
    let records = tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "every intent on the topic", || {
            let r = common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)).ok()?;
            let orders: Vec<_> = r.iter().filter_map(|r| payload(&r.payload)).collect();
            (orders.len() >= expected_len).then_some(orders)
        })
    })
    .await
    .unwrap();
    let got: BTreeMap<String, String> = records.iter().cloned().collect();
    assert_eq!(records.len(), want.len(), "no intent twice");
    let differing: Vec<&String> =
        want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).map(|(k, _)| k).take(3).collect();
    assert!(differing.is_empty() && got.len() == want.len(), "intents differ from the core's: {differing:?}");

    let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").unwrap()).await.unwrap();
    let r2 = metric(&body, "strategy_plane_ofi_r2_contemporaneous{symbol=\"BTCUSDT\"}").unwrap();
    assert!(r2 > 0.5, "contemporaneous R² {r2}");
    assert!(metric(&body, "strategy_plane_signals_generated_total").unwrap() > 0.0);
    stop.cancel();
    plane.await.unwrap().unwrap();
}

/// Σ signed fills per symbol in `exec_reports`: the ledger positions must match.
async fn ledger(cfg: &AppConfig) -> BTreeMap<String, f64> {
    use common::events::ExecEvent;
    use rust_decimal::prelude::ToPrimitive;
    let (kafka, topic) = (cfg.kafka.clone(), cfg.kafka.topic(common::topics::EXEC_REPORTS));
    let records =
        tokio::task::spawn_blocking(move || common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
    let mut sums: BTreeMap<String, rust_decimal::Decimal> = BTreeMap::new();
    for r in records {
        if let Ok(env) = codec::decode::<ExecEvent>(&r.payload)
            && let ExecEvent::Report(rep) = env.payload
        {
            *sums.entry(rep.symbol.to_string()).or_default() += rep.side.sign() * rep.last_qty;
        }
    }
    sums.into_iter().map(|(k, v)| (k, v.to_f64().unwrap())).collect()
}

async fn positions(addr: SocketAddr, symbols: &[String]) -> BTreeMap<String, f64> {
    let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").unwrap()).await.unwrap();
    symbols
        .iter()
        .map(|s| (s.clone(), metric(&body, &format!("strategy_plane_position{{symbol=\"{s}\"}}")).unwrap_or(0.0)))
        .collect()
}

/// What each symbol's signals have learned, as the plane exports it.
async fn learned(addr: SocketAddr, symbols: &[String]) -> BTreeMap<String, Option<f64>> {
    let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").unwrap()).await.unwrap();
    let fits = ["strategy_plane_ofi_r2_predictive", "strategy_plane_ofi_r2_contemporaneous"];
    let series = symbols.iter().flat_map(|s| fits.map(|fit| format!("{fit}{{symbol=\"{s}\"}}")));
    series.map(|name| (name.clone(), metric(&body, &name))).collect()
}

/// Waits until the instance at `addr` is assigned `n` input partitions.
async fn wait_assigned(addr: SocketAddr, n: i32) {
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "the partitions assigned", || {
            let (_, body) = http_get(addr, "/metrics").ok()?;
            (metric(&body, "strategy_plane_assigned_partitions")? == f64::from(n)).then_some(())
        })
    })
    .await
    .unwrap();
}

/// Every sample of `name` in the `/metrics` body of `addr`, by its label set as exposed.
async fn samples(addr: SocketAddr, name: &'static str) -> BTreeMap<String, f64> {
    labelled(&http_get_async(addr).await, name)
}

/// Every sample of `name` in `body`, by its label set as exposed.
fn labelled(body: &str, name: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn start_strategy(
    cfg: &AppConfig,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<Result<(), strategy_plane::run::RunError>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(strategy_plane::run::run(cfg.clone(), listener, stop.clone()));
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "strategy ready", || {
            (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(())
        })
    })
    .await
    .unwrap();
    (addr, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_strategy_plane_rebuilds_the_ledger_positions_and_its_signals() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (fixture, _) = spot_fixture(dir.path(), ROWS);
    let mut cfg = config(broker, &fixture, "rst_", "restart-test");
    cfg.data_plane.replay.speed = "20x".into();
    cfg.data_plane.replay.exit_when_done = true;
    // Snapshots every few records: a restart reads each partition's latest and its tail only.
    cfg.strategy_plane.snapshot_every = 10;
    cfg.order_plane.snapshot_every = 10;
    let symbols: Vec<String> = cfg.instruments.iter().map(|i| i.symbol.clone()).collect();

    let (addr, stop, strategy) = start_strategy(&cfg).await;
    let order_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let order_addr = order_listener.local_addr().unwrap();
    let order_stop = CancellationToken::new();
    let order = tokio::spawn(order_plane::run::run(cfg.clone(), order_listener, order_stop.clone()));
    // The Order Plane must be consuming before the replay starts, or it reads the intents before
    // the quotes they were decided on and refuses them as stale.
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "order plane assigned", || {
            let (_, body) = http_get(order_addr, "/metrics").ok()?;
            (metric(&body, "order_plane_assigned_partitions")? > 0.0).then_some(())
        })
    })
    .await
    .unwrap();
    let data_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    data_plane::run(cfg.clone(), data_listener, CancellationToken::new()).await.unwrap();
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "fills", || {
            let (_, body) = http_get(order_addr, "/metrics").ok()?;
            (metric(&body, "order_plane_fills_total")? > 0.0).then_some(())
        })
    })
    .await
    .unwrap();

    // Positions before the restart converge to the ledger...
    let mut before = BTreeMap::new();
    for _ in 0..600 {
        let want = ledger(&cfg).await;
        before = positions(addr, &symbols).await;
        if symbols.iter().all(|s| (before[s] - want.get(s).copied().unwrap_or(0.0)).abs() < 1e-12) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let want = ledger(&cfg).await;
    assert!(want.values().any(|q| *q != 0.0), "something was held: {want:?}");
    for s in &symbols {
        assert_eq!(before[s], want.get(s).copied().unwrap_or(0.0), "{s} before the restart");
    }
    order_stop.cancel();
    order.await.unwrap().unwrap();
    let fits = learned(addr, &symbols).await;
    assert!(fits.values().all(Option::is_some), "{fits:?}");
    // ...and a new instance rebuilds exactly them from exec_reports, and its signals from the
    // windows before where its group resumes (here every window of the fixture: the same fits).
    stop.cancel();
    strategy.await.unwrap().unwrap();
    let (addr, stop, strategy) = start_strategy(&cfg).await;
    // Positions are exported once the group says which symbols are this instance's.
    wait_assigned(addr, 3 * cfg.kafka.partitions).await;
    let after = positions(addr, &symbols).await;
    assert_eq!(after, before, "positions after the restart");
    assert_eq!(learned(addr, &symbols).await, fits, "signals after the restart");
    // Positions came from the snapshots (the last ones written as the planes stopped), and only
    // the ledger records after them were read.
    let size = ledger_size(&cfg).await;
    assert!(size > 10 * cfg.strategy_plane.snapshot_every, "a ledger worth snapshots: {size}");
    let read = scalar(addr, "strategy_plane_rebuild_records_total").await;
    assert!(read < size as f64, "read {read} of the {size} ledger records");
    assert_eq!(scalar(addr, "strategy_plane_snapshots_rejected_total").await, 0.0);
    stop.cancel();
    strategy.await.unwrap().unwrap();

    // The Order Plane starts from its snapshots too, and halts: one record more on each partition.
    let mut halting = cfg.clone();
    halting.order_plane.kill_switch = true;
    let (from_snapshots, read) = order_plane_state(&halting).await;
    assert!(read < size as f64, "the Order Plane read {read} of the {size} ledger records");
    assert_eq!(from_snapshots["order_plane_kill_switch"], 1.0);
    let partitions = cfg.kafka.partitions;
    // A halt on each partition, and a cancel for an order left working at the first stop, if any.
    let added = ledger_size(&cfg).await - size;
    assert!(added >= partitions as u64, "{added}");

    // The Strategy Plane reads those halts after its snapshots, and nothing before them.
    let (addr, stop, strategy) = start_strategy(&cfg).await;
    wait_assigned(addr, 3 * partitions).await;
    assert_eq!(positions(addr, &symbols).await, before, "positions after the halt");
    assert_eq!(scalar(addr, "strategy_plane_rebuild_records_total").await, added as f64);
    assert_eq!(scalar(addr, "strategy_plane_halted").await, 1.0);
    stop.cancel();
    strategy.await.unwrap().unwrap();

    // A snapshot that does not decode is counted and left out: its partition is read from its
    // start, and the positions are the same.
    corrupt(&cfg, common::topics::STRATEGY_SNAPSHOTS, &[common::snapshot::key(0)]).await;
    let (addr, stop, strategy) = start_strategy(&cfg).await;
    wait_assigned(addr, 3 * partitions).await;
    assert_eq!(positions(addr, &symbols).await, before, "positions after a corrupt snapshot");
    let rejected = samples(addr, "strategy_plane_snapshots_rejected_total").await;
    assert_eq!(rejected, BTreeMap::from([("reason=\"undecodable\"".to_owned(), 1.0)]));
    let partition_0 = ledger_sizes(&cfg).await[&0];
    assert_eq!(scalar(addr, "strategy_plane_rebuild_records_total").await, partition_0 as f64);
    stop.cancel();
    strategy.await.unwrap().unwrap();

    // The Order Plane rebuilds the same state from the whole ledger as from its snapshots.
    let keys: Vec<String> = (0..partitions).map(common::snapshot::key).collect();
    corrupt(&cfg, common::topics::ORDER_SNAPSHOTS, &keys).await;
    let (from_ledger, read) = order_plane_state(&halting).await;
    assert_eq!(read, ledger_size(&cfg).await as f64, "corrupt snapshots: the whole ledger read");
    assert_eq!(from_snapshots, from_ledger);
    assert!(from_ledger["order_plane_gross_exposure"] > 0.0, "{from_ledger:?}");
    assert!(from_ledger["order_plane_remembered_intents"] > 0.0, "{from_ledger:?}");
}

/// Total records on `exec_reports`.
async fn ledger_size(cfg: &AppConfig) -> u64 {
    ledger_sizes(cfg).await.values().sum()
}

/// Records on each partition of `exec_reports`.
async fn ledger_sizes(cfg: &AppConfig) -> BTreeMap<i32, u64> {
    let (kafka, topic) = (cfg.kafka.clone(), cfg.kafka.topic(common::topics::EXEC_REPORTS));
    let records =
        tokio::task::spawn_blocking(move || common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
    let mut sizes = BTreeMap::new();
    for r in records {
        *sizes.entry(r.partition).or_default() += 1;
    }
    sizes
}

/// An unlabelled metric of the plane at `addr`, or the sum of its labelled samples.
async fn scalar(addr: SocketAddr, name: &'static str) -> f64 {
    let body = http_get_async(addr).await;
    metric(&body, name).unwrap_or_else(|| labelled(&body, name).values().sum())
}

/// Writes a record that is not a snapshot under each of `keys` on snapshot topic `base`.
async fn corrupt(cfg: &AppConfig, base: &str, keys: &[String]) {
    use rdkafka::producer::FutureRecord;
    let producer = common::kafka::producer(&cfg.kafka, "corrupt").unwrap();
    let topic = cfg.kafka.topic(base);
    for key in keys {
        let record = FutureRecord::to(&topic).key(key).payload("{\"version\":1,\"kind\":");
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
}

/// Starts an Order Plane, waits until it takes intents, and stops it: what it rebuilt (its
/// exposure and remembered intents, as exported) and the ledger records it read.
async fn order_plane_state(cfg: &AppConfig) -> (BTreeMap<&'static str, f64>, f64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let order = tokio::spawn(order_plane::run::run(cfg.clone(), listener, stop.clone()));
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "order plane ready", || {
            (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(())
        })
    })
    .await
    .unwrap();
    let body = http_get_async(addr).await;
    let names = [
        "order_plane_gross_exposure",
        "order_plane_net_exposure",
        "order_plane_remembered_intents",
        "order_plane_kill_switch",
    ];
    let state = names.into_iter().map(|n| (n, metric(&body, n).unwrap())).collect();
    let read = metric(&body, "order_plane_rebuild_records_total").unwrap();
    stop.cancel();
    order.await.unwrap().unwrap();
    (state, read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_symbols_and_never_trade_the_same_one() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (fixture, _) = spot_fixture(dir.path(), ROWS);
    let mut cfg = config(broker, &fixture, "two_", "unused");
    cfg.kafka.partitions = 4;
    cfg.strategy_plane.limit_share = 0.5;
    cfg.data_plane.replay.exit_when_done = true;

    let (mut a_cfg, mut b_cfg) = (cfg.clone(), cfg.clone());
    a_cfg.app.instance_id = "strategy-a".into();
    b_cfg.app.instance_id = "strategy-b".into();
    let (a, a_stop, a_task) = start_strategy(&a_cfg).await;
    let (b, b_stop, b_task) = start_strategy(&b_cfg).await;
    // Both in the group, every input partition owned by one of them, before any data flows.
    let total = 3 * cfg.kafka.partitions as usize;
    split(a, b, total).await;

    let data_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    data_plane::run(cfg.clone(), data_listener, CancellationToken::new()).await.unwrap();
    let (kafka, topic) = (cfg.kafka.clone(), cfg.kafka.topic(ORDER_INTENTS));
    let records = tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "intents", || {
            let r = common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)).ok()?;
            (!r.is_empty()).then_some(r)
        })
    })
    .await
    .unwrap();
    let mut traders: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in &records {
        let env = codec::decode::<IntentEvent>(&r.payload).unwrap();
        traders.entry(env.payload.key().unwrap().to_owned()).or_default().insert(env.source.instance.to_string());
    }
    for (symbol, instances) in &traders {
        assert_eq!(instances.len(), 1, "{symbol} traded by {instances:?}");
    }
    println!("symbol → instance: {traders:?}");
    a_stop.cancel();
    b_stop.cancel();
    a_task.await.unwrap().unwrap();
    b_task.await.unwrap().unwrap();
}

/// Two instances share the symbols and trade against the Order Plane. Each exports the positions,
/// PnL and consumer lag of its own partitions only: every symbol shows in exactly one instance's
/// `/metrics`, and summing the two instances' series gives each symbol's ledger position once
/// (what the dashboard's `sum` panels show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_export_each_symbol_once_and_their_sum_is_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let Pair { cfg, a_cfg, b_cfg, symbols } = pair(dir.path(), "sum_", "20x");
    let (a, a_stop, a_task) = start_strategy(&a_cfg).await;
    let (b, b_stop, b_task) = start_strategy(&b_cfg).await;
    let total = 3 * cfg.kafka.partitions as usize;
    split(a, b, total).await;
    let order_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let order_addr = order_listener.local_addr().unwrap();
    let order_stop = CancellationToken::new();
    let order = tokio::spawn(order_plane::run::run(cfg.clone(), order_listener, order_stop.clone()));
    // Consuming before the replay starts, or it reads intents before their quotes (stale).
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "order plane assigned", || {
            let (_, body) = http_get(order_addr, "/metrics").ok()?;
            (metric(&body, "order_plane_assigned_partitions")? > 0.0).then_some(())
        })
    })
    .await
    .unwrap();
    let data_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    data_plane::run(cfg.clone(), data_listener, CancellationToken::new()).await.unwrap();

    let symbol_label = |s: &String| format!("symbol=\"{s}\"");
    let (mut want, mut got) = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..900 {
        want = ledger(&cfg).await;
        let (pa, pb) = (samples(a, "strategy_plane_position").await, samples(b, "strategy_plane_position").await);
        got = symbols
            .iter()
            .map(|s| {
                let label = symbol_label(s);
                (s.clone(), pa.get(&label).copied().unwrap_or(0.0) + pb.get(&label).copied().unwrap_or(0.0))
            })
            .collect();
        if symbols.iter().all(|s| got[s] == want.get(s).copied().unwrap_or(0.0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(want.values().any(|q| *q != 0.0), "something was held: {want:?}");
    for s in &symbols {
        assert_eq!(
            got[s],
            want.get(s).copied().unwrap_or(0.0),
            "{s}: the instances' positions summed, against the ledger"
        );
    }

    let mut pnl_sum = 0.0;
    let mut owners: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (addr, name) in [(a, "strategy-a"), (b, "strategy-b")] {
        // One scrape: the gauges move between two (marks arrive after the last window).
        let body = http_get_async(addr).await;
        let pnl = labelled(&body, "strategy_plane_pnl");
        for family in ["strategy_plane_position", "strategy_plane_pnl", "strategy_plane_fees"] {
            let labels: Vec<String> = labelled(&body, family).into_keys().collect();
            let want: Vec<String> = pnl.keys().cloned().collect();
            assert_eq!(labels, want, "{name}: {family} and strategy_plane_pnl name the same symbols");
        }
        for s in &symbols {
            if pnl.contains_key(&symbol_label(s)) {
                owners.entry(s.clone()).or_default().push(name);
            }
        }
        let total = metric(&body, "strategy_plane_pnl_total").unwrap();
        let by_symbol: f64 = pnl.values().sum();
        assert!((total - by_symbol).abs() < 1e-6, "{name}: pnl_total {total} is its symbols' PnL {by_symbol}");
        pnl_sum += total;
    }
    for s in &symbols {
        assert_eq!(owners.get(s).map(Vec::len), Some(1), "{s} is exported by {:?}", owners.get(s));
    }
    let exporters: std::collections::BTreeSet<&str> = owners.values().flatten().copied().collect();
    assert_eq!(exporters.len(), 2, "both instances own a symbol: {owners:?}");
    println!("symbol → exporting instance: {owners:?}; portfolio PnL {pnl_sum}");

    // The lag of each input partition, likewise, comes from the one instance assigned it.
    let mut lags = samples(a, "strategy_plane_consumer_lag_records").await;
    for _ in 0..100 {
        let (la, lb) = (
            samples(a, "strategy_plane_consumer_lag_records").await,
            samples(b, "strategy_plane_consumer_lag_records").await,
        );
        let shared = la.keys().filter(|k| lb.contains_key(*k)).count();
        assert_eq!(shared, 0, "a partition's lag exported twice: {la:?} {lb:?}");
        lags = la.into_iter().chain(lb).collect();
        if lags.len() == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lags.len(), total, "every input partition's lag: {lags:?}");

    order_stop.cancel();
    order.await.unwrap().unwrap();
    a_stop.cancel();
    b_stop.cancel();
    a_task.await.unwrap().unwrap();
    b_task.await.unwrap().unwrap();
}

/// The `/metrics` body of `addr`.
async fn http_get_async(addr: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || http_get(addr, "/metrics").unwrap().1).await.unwrap()
}

/// Two instances share the symbols; one is killed mid-replay (no shutdown, no commit) and the
/// other takes its partitions over. The fills of a taken-over symbol between the survivor's
/// start and the takeover were handled by the killed instance: the survivor reads them from the
/// partition's history, so its positions are every symbol's fills added up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivor_of_two_instances_holds_every_fill_of_the_symbols_it_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let Pair { cfg, a_cfg, b_cfg, symbols } = pair(dir.path(), "kill_", "4x");
    let (a, a_stop, a_task, a_runtime) = start_strategy_apart(&a_cfg).await;
    let (b, b_stop, b_task, b_runtime) = start_strategy_apart(&b_cfg).await;
    let total = 3 * cfg.kafka.partitions as usize;
    split(a, b, total).await;
    let order_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let order_stop = CancellationToken::new();
    let order = tokio::spawn(order_plane::run::run(cfg.clone(), order_listener, order_stop.clone()));
    let data_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data = tokio::spawn(data_plane::run(cfg.clone(), data_listener, CancellationToken::new()));

    // Once some symbol has fills, the instance that trades it dies.
    let (kafka, topic) = (cfg.kafka.clone(), cfg.kafka.topic(ORDER_INTENTS));
    let victim = tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(90), "intents", || {
            let r = common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)).ok()?;
            let env = r.iter().find_map(|r| codec::decode::<IntentEvent>(&r.payload).ok())?;
            Some(env.source.instance.to_string())
        })
    })
    .await
    .unwrap();
    let filled_by_victim = wait_for_fills(&cfg).await;
    // Every task of the victim ends at once, as in a crash (aborting the plane's task alone would
    // leave the tasks it spawned, its consumer among them, alive in the group).
    let (survivor, survivor_stop, survivor_task, survivor_runtime) = if victim == "strategy-a" {
        drop((a_stop, a_task));
        a_runtime.shutdown_background();
        (b, b_stop, b_task, b_runtime)
    } else {
        drop((b_stop, b_task));
        b_runtime.shutdown_background();
        (a, a_stop, a_task, a_runtime)
    };
    println!("{victim} killed after {filled_by_victim:?}");
    data.await.unwrap().unwrap();

    let mut held = BTreeMap::new();
    let mut want = BTreeMap::new();
    for _ in 0..900 {
        want = ledger(&cfg).await;
        held = positions(survivor, &symbols).await;
        if symbols.iter().all(|s| held[s] == want.get(s).copied().unwrap_or(0.0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(want.values().any(|q| *q != 0.0), "something was held: {want:?}");
    for s in &symbols {
        assert_eq!(held[s], want.get(s).copied().unwrap_or(0.0), "{s}: the survivor's position against the ledger");
    }
    order_stop.cancel();
    order.await.unwrap().unwrap();
    survivor_stop.cancel();
    survivor_task.await.unwrap().unwrap();
    survivor_runtime.shutdown_background();
}

/// Two instances' configurations: four partitions, half the limits each, the fixture replayed
/// at `speed` once.
struct Pair {
    cfg: AppConfig,
    a_cfg: AppConfig,
    b_cfg: AppConfig,
    symbols: Vec<String>,
}

fn pair(dir: &Path, prefix: &str, speed: &str) -> Pair {
    let (fixture, _) = spot_fixture(dir, ROWS);
    let mut cfg = config(Broker::shared(), &fixture, prefix, "unused");
    cfg.kafka.partitions = 4;
    cfg.strategy_plane.limit_share = 0.5;
    cfg.data_plane.replay.speed = speed.into();
    cfg.data_plane.replay.exit_when_done = true;
    let symbols = cfg.instruments.iter().map(|i| i.symbol.clone()).collect();
    let (mut a_cfg, mut b_cfg) = (cfg.clone(), cfg.clone());
    a_cfg.app.instance_id = "strategy-a".into();
    b_cfg.app.instance_id = "strategy-b".into();
    Pair { cfg, a_cfg, b_cfg, symbols }
}

/// Waits until the instances at `a` and `b` each own some of the group's `total` input
/// partitions and together all of them.
async fn split(a: SocketAddr, b: SocketAddr, total: usize) {
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(90), "the group to split the partitions", || {
            let count = |addr| metric(&http_get(addr, "/metrics").ok()?.1, "strategy_plane_assigned_partitions");
            let (x, y) = (count(a)?, count(b)?);
            (x > 0.0 && y > 0.0 && (x + y) as usize == total).then_some(())
        })
    })
    .await
    .unwrap();
}

/// A Strategy Plane in a runtime of its own, so that it can be ended as a crash ends a process:
/// `shutdown_background` drops every task of it at once.
async fn start_strategy_apart(
    cfg: &AppConfig,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), strategy_plane::run::RunError>>,
    tokio::runtime::Runtime,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let (cfg, s) = (cfg.clone(), stop.clone());
    let task = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        strategy_plane::run::run(cfg, listener, s).await
    });
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "strategy ready", || {
            (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(())
        })
    })
    .await
    .unwrap();
    (addr, stop, task, runtime)
}

/// Waits until `exec_reports` holds a fill; returns each symbol's position then.
async fn wait_for_fills(cfg: &AppConfig) -> BTreeMap<String, f64> {
    for _ in 0..600 {
        let sums = ledger(cfg).await;
        if sums.values().any(|q| *q != 0.0) {
            return sums;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no fill within 60 s");
}
