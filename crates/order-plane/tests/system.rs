//! The Order Plane through a real Kafka-protocol broker: real market data from the Data Plane,
//! intents from the test; every intent gets exactly one terminal report, a repeated intent places
//! no second order, and a restarted plane remembers what it executed.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::codec;
use common::config::AppConfig;
use common::events::*;
use common::topics::{EXEC_REPORTS, ORDER_INTENTS};
use common::types::{EventId, Side, Symbol, UnixNanos};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rust_decimal::dec;
use test_support::{Broker, http_get, metric, spot_fixture, unique, wait_for};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const ROWS: usize = 5_000;

async fn wait_metric(addr: SocketAddr, name: &'static str, at_least: f64) {
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(120), name, || {
            let (_, body) = http_get(addr, "/metrics").ok()?;
            (metric(&body, name)? >= at_least).then_some(())
        })
    })
    .await
    .unwrap();
}

async fn get_metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics").unwrap()).await.unwrap();
    metric(&body, name).unwrap_or(0.0)
}

fn intent(
    n: u64,
    symbol: &str,
    side: Side,
    qty: rust_decimal::Decimal,
    limit: Option<rust_decimal::Decimal>,
    tif: TimeInForce,
) -> OrderIntent {
    OrderIntent {
        intent_id: IntentId(Uuid::from_u64_pair(42, n)),
        symbol: Symbol::new(symbol).unwrap(),
        side,
        quantity: qty,
        order_type: if limit.is_some() { OrderType::Limit } else { OrderType::Market },
        limit_price: limit,
        time_in_force: tif,
        arrival_mid: dec!(0),
        expected_cost_bps: dec!(0),
        signals: vec![SignalValue { name: "test".into(), value: 1.0 }],
    }
}

async fn send(producer: &FutureProducer, topic: &str, ts: u64, n: u64, payload: IntentEvent) {
    let key = payload.key().unwrap().to_owned();
    let env = Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(Uuid::from_u64_pair(7, n)),
        source: Arc::new(Source { plane: "strategy-plane".into(), instance: "test".into() }),
        ts_event: UnixNanos(ts),
        ts_init: UnixNanos(ts),
        causation_id: None,
        payload,
    };
    let bytes = codec::encode(&env);
    producer.send(FutureRecord::to(topic).key(&key).payload(&bytes), Duration::from_secs(10)).await.unwrap();
}

async fn start_order_plane(
    cfg: &AppConfig,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<Result<(), order_plane::run::RunError>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(order_plane::run::run(cfg.clone(), listener, stop.clone()));
    (addr, stop, task)
}

/// Every exec report on the topic so far, by intent.
async fn reports(cfg: &AppConfig) -> HashMap<IntentId, Vec<ExecReport>> {
    let (kafka, topic) = (cfg.kafka.clone(), cfg.kafka.topic(EXEC_REPORTS));
    let records =
        tokio::task::spawn_blocking(move || common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
    let mut by_intent: HashMap<IntentId, Vec<ExecReport>> = HashMap::new();
    for r in records {
        if let ExecEvent::Report(report) = codec::decode::<ExecEvent>(&r.payload).unwrap().payload {
            by_intent.entry(report.intent_id).or_default().push(report);
        }
    }
    by_intent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_intent_gets_one_terminal_report_and_repeats_place_nothing() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (fixture, lines) = spot_fixture(dir.path(), ROWS);
    let last_ts: u64 = lines.last().unwrap().split(',').next().unwrap().parse().unwrap();

    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.app.instance_id = "system-test".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique("ops_");
    cfg.data_plane.replay.path = fixture;
    cfg.data_plane.replay.speed = "max".into();
    cfg.validate().unwrap();

    // Market data first, all of it, so every intent meets fresh quotes.
    let data_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data_addr = data_listener.local_addr().unwrap();
    let data_stop = CancellationToken::new();
    let data = tokio::spawn(data_plane::run(cfg.clone(), data_listener, data_stop.clone()));
    wait_metric(data_addr, "data_plane_replay_complete", 1.0).await;

    let (addr, stop, plane) = start_order_plane(&cfg).await;
    let market = "order_plane_messages_processed_total{topic=\"market_events\"}";
    wait_metric(addr, market, ROWS as f64).await;

    let producer = common::kafka::producer(&cfg.kafka, "test-strategy").unwrap();
    let topic = cfg.kafka.topic(ORDER_INTENTS);
    let ts = last_ts + 1_000_000;
    // Poison first: counted and skipped, never an order, never a stop.
    let nan_quantity = String::from_utf8(codec::encode(&Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(Uuid::from_u64_pair(7, 99)),
        source: Arc::new(Source { plane: "strategy-plane".into(), instance: "test".into() }),
        ts_event: UnixNanos(ts),
        ts_init: UnixNanos(ts),
        causation_id: None,
        payload: IntentEvent::Intent(intent(99, "BTCUSDT", Side::Buy, dec!(1), None, TimeInForce::Ioc)),
    }))
    .unwrap()
    .replace("\"quantity\":\"1\"", "\"quantity\":\"NaN\"");
    for poison in ["not json at all", r#"{"schema_version":1}"#, nan_quantity.as_str()] {
        producer.send(FutureRecord::to(&topic).key("BTCUSDT").payload(poison), Duration::from_secs(10)).await.unwrap();
    }
    let market_buy = intent(1, "BTCUSDT", Side::Buy, dec!(0.01), None, TimeInForce::Ioc);
    // ETH trades near 2682: a sell limit at 2680 is marketable and inside the 100 bps collar.
    let limit_ioc = intent(2, "ETHUSDT", Side::Sell, dec!(0.5), Some(dec!(2680)), TimeInForce::Ioc);
    let resting = intent(3, "BTCUSDT", Side::Buy, dec!(0.001), Some(dec!(61500)), TimeInForce::Gtc);
    let invalid = intent(4, "BTCUSDT", Side::Buy, dec!(-1), None, TimeInForce::Ioc);
    for (n, i) in [&market_buy, &limit_ioc, &resting, &invalid].into_iter().enumerate() {
        send(&producer, &topic, ts, n as u64, IntentEvent::Intent(i.clone())).await;
    }
    send(&producer, &topic, ts, 10, IntentEvent::Intent(market_buy.clone())).await;
    let cancel = CancelIntent { intent_id: resting.intent_id, symbol: resting.symbol.clone() };
    send(&producer, &topic, ts + 1, 11, IntentEvent::Cancel(cancel)).await;
    // Quotes after the intents' arrival time let the simulated venue execute them.
    data_stop.cancel();
    data.await.unwrap().unwrap();
    let mut more = cfg.clone();
    let tail: Vec<String> = std::iter::once(lines[0].clone())
        .chain(lines[1..].iter().rev().take(50).rev().map(|l| {
            let (t, rest) = l.split_once(',').unwrap();
            format!(
                "{},{rest}",
                t.parse::<u64>().unwrap() - lines[1].split(',').next().unwrap().parse::<u64>().unwrap()
                    + ts
                    + 10_000_000
            )
        }))
        .collect();
    let tail_path = dir.path().join("tail.csv");
    std::fs::write(&tail_path, tail.join("\n") + "\n").unwrap();
    more.data_plane.replay.path = tail_path;
    more.data_plane.replay.exit_when_done = true;
    more.app.instance_id = "system-test-tail".into();
    let tail_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    data_plane::run(more, tail_listener, CancellationToken::new()).await.unwrap();

    wait_metric(addr, "order_plane_duplicate_intents_total", 1.0).await;
    wait_metric(addr, "order_plane_cancels_total", 1.0).await;
    let intents_topic = cfg.kafka.topic(ORDER_INTENTS);
    for (reason, n) in [("invalid_json", 1.0), ("invalid_envelope", 1.0), ("invalid_payload", 1.0)] {
        let name = format!("order_plane_decode_errors_total{{reason=\"{reason}\",topic=\"{intents_topic}\"}}");
        assert_eq!(get_metric(addr, &name).await, n, "{name}");
    }
    let terminal = |r: &HashMap<IntentId, Vec<ExecReport>>, id: &IntentId| {
        r.get(id).map_or(0, |v| v.iter().filter(|x| x.status.is_terminal()).count())
    };
    let nan_id = intent(99, "BTCUSDT", Side::Buy, dec!(1), None, TimeInForce::Ioc).intent_id;
    let all = [&market_buy, &limit_ioc, &resting, &invalid];
    let by_intent = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        let ids: Vec<IntentId> = all.iter().map(|i| i.intent_id).collect();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            wait_for(Duration::from_secs(60), "a terminal report for every intent", || {
                let r = rt.block_on(reports(&cfg));
                ids.iter().all(|id| terminal(&r, id) >= 1).then_some(r)
            })
        }
    })
    .await
    .unwrap();
    for i in all {
        assert_eq!(terminal(&by_intent, &i.intent_id), 1, "exactly one terminal report for {}", i.intent_id);
    }
    let last = |i: &OrderIntent| by_intent[&i.intent_id].last().unwrap().clone();
    assert_eq!(last(&market_buy).status, ExecStatus::Filled);
    assert_eq!(last(&market_buy).cum_qty, dec!(0.01));
    assert!(last(&market_buy).commission >= dec!(0) && last(&market_buy).cum_commission >= dec!(0.35));
    assert_eq!(
        (last(&invalid).status, last(&invalid).reason),
        (ExecStatus::Rejected, Some(RejectReason::InvalidQuantity))
    );
    assert_eq!(last(&resting).status, ExecStatus::Cancelled);
    let nan = by_intent[&nan_id].last().unwrap();
    assert_eq!((nan.status, nan.reason), (ExecStatus::Rejected, Some(RejectReason::MalformedIntent)));
    assert_eq!(by_intent[&nan_id].len(), 1);
    assert_eq!(last(&limit_ioc).status, ExecStatus::Filled);
    assert_eq!(get_metric(addr, "order_plane_orders_placed_total").await, 3.0, "the repeat placed nothing");
    assert_eq!(by_intent[&market_buy.intent_id].iter().filter(|r| r.status == ExecStatus::Accepted).count(), 1);

    // Restart: the new instance rebuilds from exec_reports and still refuses the repeat.
    stop.cancel();
    plane.await.unwrap().unwrap();
    let (addr, stop, plane) = start_order_plane(&cfg).await;
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "ready after rebuild", || {
            (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(())
        })
    })
    .await
    .unwrap();
    send(&producer, &topic, ts + 2, 12, IntentEvent::Intent(market_buy.clone())).await;
    wait_metric(addr, "order_plane_duplicate_intents_total", 1.0).await;
    assert_eq!(get_metric(addr, "order_plane_orders_placed_total").await, 0.0);
    stop.cancel();
    plane.await.unwrap().unwrap();
    let after = reports(&cfg).await;
    assert_eq!(
        after[&market_buy.intent_id].len(),
        by_intent[&market_buy.intent_id].len(),
        "no new report for the repeat"
    );
}
