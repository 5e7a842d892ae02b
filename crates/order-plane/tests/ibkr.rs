//! The Order Plane's IBKR venue through a real Kafka-protocol broker and the project's fake IB
//! gateway, driven by the real `ibapi` client: intents become IB orders (intent id in `orderRef`),
//! partial executions with their commissions become exec reports, a cancel works, a fill during
//! a gateway outage is reported exactly once, and a restart neither cancels what IB still works
//! nor sends an intent IB already holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::codec;
use common::config::{AppConfig, InstrumentConfig};
use common::events::*;
use common::topics::{EXEC_REPORTS, MARKET_EVENTS, ORDER_INTENTS};
use common::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};
use fake_ib_gateway::{FakeGateway, Request};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rust_decimal::{Decimal, dec};
use test_support::{Broker, http_get, metric, unique, wait_for};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
/// Event time of the test's market (2026-01-02 14:30 UTC).
const T0: u64 = 1_767_364_200_000_000_000;

async fn wait_metric(addr: SocketAddr, name: &'static str, pick: impl Fn(f64) -> bool + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        wait_for(WAIT, name, || {
            let (_, body) = http_get(addr, "/metrics").ok()?;
            metric(&body, name).filter(|v| pick(*v))
        })
    })
    .await
    .unwrap();
}

fn aapl() -> Symbol {
    Symbol::new("AAPL").unwrap()
}

fn intent_id(n: u64) -> IntentId {
    IntentId(Uuid::from_u64_pair(77, n))
}

fn intent(n: u64, qty: Decimal) -> OrderIntent {
    OrderIntent {
        intent_id: intent_id(n),
        symbol: aapl(),
        side: Side::Buy,
        quantity: qty,
        order_type: OrderType::Limit,
        limit_price: Some(dec!(189.52)),
        time_in_force: TimeInForce::Day,
        arrival_mid: dec!(189.51),
        expected_cost_bps: dec!(0),
        signals: vec![SignalValue { name: "test".into(), value: 1.0 }],
    }
}

async fn send<P: Payload + 'static>(producer: &FutureProducer, topic: &str, n: u64, ts: u64, payload: P) {
    let key = payload.key().unwrap().to_owned();
    let env = Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(Uuid::from_u64_pair(78, n)),
        source: Arc::new(Source { plane: "test".into(), instance: "test".into() }),
        ts_event: UnixNanos(ts),
        ts_init: UnixNanos(ts),
        causation_id: None,
        payload,
    };
    let bytes = codec::encode(&env);
    producer.send(FutureRecord::to(topic).key(&key).payload(&bytes), Duration::from_secs(10)).await.unwrap();
}

struct Harness {
    cfg: AppConfig,
    producer: FutureProducer,
    /// Intents sent so far (names the next envelope).
    sent: u64,
}

impl Harness {
    async fn quote(&mut self, ts: u64) {
        let q = Quote {
            symbol: aapl(),
            bid_px: Price::new(dec!(189.50)).unwrap(),
            bid_sz: Quantity::new(dec!(300)).unwrap(),
            ask_px: Price::new(dec!(189.52)).unwrap(),
            ask_sz: Quantity::new(dec!(200)).unwrap(),
        };
        self.sent += 1;
        send(&self.producer, &self.cfg.kafka.topic(MARKET_EVENTS), 1_000 + self.sent, ts, MarketEvent::Quote(q)).await;
    }

    async fn intent(&mut self, payload: IntentEvent, ts: u64) {
        self.sent += 1;
        send(&self.producer, &self.cfg.kafka.topic(ORDER_INTENTS), self.sent, ts, payload).await;
    }

    /// The reports of `id` once `done` holds for them.
    async fn reports_until(&self, id: IntentId, done: impl Fn(&[ExecReport]) -> bool) -> Vec<ExecReport> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (kafka, topic) = (self.cfg.kafka.clone(), self.cfg.kafka.topic(EXEC_REPORTS));
            let records = tokio::task::spawn_blocking(move || {
                common::kafka::read_to_end(&kafka, &topic, Duration::from_secs(30))
            })
            .await
            .unwrap()
            .unwrap();
            let mine: Vec<ExecReport> = records
                .iter()
                .filter_map(|r| match codec::decode::<ExecEvent>(&r.payload).unwrap().payload {
                    ExecEvent::Report(report) if report.intent_id == id => Some(report),
                    _ => None,
                })
                .collect();
            if done(&mine) {
                return mine;
            }
            assert!(tokio::time::Instant::now() < deadline, "reports of {id} never got there: {mine:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn placed(gw: &FakeGateway, n: usize) -> fake_ib_gateway::PlacedOrder {
    match gw.wait_request(n, WAIT, |r| matches!(r, Request::PlaceOrder(_))).await {
        Some(Request::PlaceOrder(p)) => p,
        other => panic!("no order #{n}: {other:?}"),
    }
}

/// The `n`-th (0-based) order the gateway received, which must be intent `id`'s: its order id.
async fn placed_for(gw: &FakeGateway, n: usize, id: IntentId) -> i32 {
    let p = placed(gw, n).await;
    assert_eq!(p.order_ref, id.to_string(), "order #{n} is not intent {id}'s: {:?}", gw.requests());
    p.order_id
}

fn place_count(gw: &FakeGateway) -> usize {
    gw.requests().iter().filter(|r| matches!(r, Request::PlaceOrder(_))).count()
}

async fn start(cfg: &AppConfig) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let run = order_plane::run::run(cfg.clone(), listener, stop.clone());
    let task = tokio::spawn(async move { run.await.unwrap() });
    wait_metric(addr, "order_plane_venue_connected", |v| v == 1.0).await;
    wait_metric(addr, "order_plane_assigned_partitions", |v| v >= 1.0).await;
    (addr, stop, task)
}

fn statuses(reports: &[ExecReport]) -> Vec<ExecStatus> {
    reports.iter().map(|r| r.status).collect()
}

fn fills(reports: &[ExecReport]) -> Vec<(String, Decimal, Decimal)> {
    reports.iter().filter_map(|r| Some((r.exec_id.clone()?, r.last_qty, r.commission))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_trade_at_ibkr_exactly_once_across_outages_and_restarts() {
    let broker = Broker::shared();
    let gw = FakeGateway::start_with("DU1234567", 100).await.unwrap();
    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.app.instance_id = "ibkr-test".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique("ibkr_");
    cfg.order_plane.venue = "ibkr".into();
    cfg.ibkr.port = gw.port();
    // The fake gateway's port is none of IB's: named, as an operator names a tunnel's.
    cfg.ibkr.allow_port = gw.port();
    cfg.ibkr.order_client_id = 7;
    cfg.ibkr.request_timeout_ms = 3_000;
    cfg.instruments = vec![InstrumentConfig {
        symbol: "AAPL".into(),
        tick_size: dec!(0.01),
        lot_size: dec!(1),
        min_qty: dec!(1),
        min_notional: dec!(0),
        fees: Default::default(),
    }];
    cfg.validate().unwrap();
    let producer = common::kafka::producer(&cfg.kafka, "ibkr-test").unwrap();
    let mut h = Harness { cfg: cfg.clone(), producer, sent: 0 };

    let (addr, stop, plane) = start(&cfg).await;
    h.quote(T0).await;
    wait_metric(addr, "order_plane_messages_processed_total{topic=\"market_events\"}", |v| v >= 1.0).await;

    // 1. An order that fills in two partial executions, each with its commission.
    h.intent(IntentEvent::Intent(intent(1, dec!(100))), T0 + 1_000_000).await;
    let p = placed(&gw, 0).await;
    assert_eq!(
        (p.order_id, p.order_ref.clone(), p.action.as_str(), p.order_type.as_str(), p.tif.as_str()),
        (100, intent_id(1).to_string(), "BUY", "LMT", "DAY")
    );
    assert_eq!((p.symbol.as_str(), p.quantity.parse::<f64>().unwrap(), p.limit_price), ("AAPL", 100.0, Some(189.52)));
    h.reports_until(intent_id(1), |r| r.iter().any(|x| !x.order_id.is_empty())).await;
    gw.fill(100, "0001.01", "40", 189.52, 1.0);
    gw.fill(100, "0001.02", "60", 189.51, 1.25);
    let r1 = h.reports_until(intent_id(1), |r| r.iter().any(|x| x.status == ExecStatus::Filled)).await;
    assert_eq!(
        statuses(&r1),
        [ExecStatus::Accepted, ExecStatus::Accepted, ExecStatus::PartiallyFilled, ExecStatus::Filled]
    );
    // Reported sent before it left, then with IB's order id.
    assert_eq!((r1[0].order_id.as_str(), r1[1].order_id.as_str()), ("", "100"));
    assert_eq!(fills(&r1), [("0001.01".into(), dec!(40), dec!(1)), ("0001.02".into(), dec!(60), dec!(1.25))]);
    let last = r1.last().unwrap();
    assert_eq!((last.order_id.as_str(), last.venue.as_str()), ("100", "ibkr"));
    assert_eq!((last.cum_qty, last.cum_commission, last.leaves_qty), (dec!(100), dec!(2.25), dec!(0)));
    assert_eq!(last.avg_px, Some(dec!(189.514)));

    // 2. A cancel of a working order.
    h.intent(IntentEvent::Intent(intent(2, dec!(10))), T0 + 2_000_000).await;
    assert_eq!(placed_for(&gw, 1, intent_id(2)).await, 101);
    h.reports_until(intent_id(2), |r| r.iter().any(|x| !x.order_id.is_empty())).await;
    h.intent(IntentEvent::Cancel(CancelIntent { intent_id: intent_id(2), symbol: aapl() }), T0 + 3_000_000).await;
    assert!(gw.wait_request(0, WAIT, |r| matches!(r, Request::CancelOrder { order_id: 101 })).await.is_some());
    let r2 = h.reports_until(intent_id(2), |r| r.iter().any(|x| x.status.is_terminal())).await;
    assert_eq!(statuses(&r2), [ExecStatus::Accepted, ExecStatus::Accepted, ExecStatus::Cancelled]);

    // 3. The gateway goes down, the working order fills meanwhile: reported once, on reconnect.
    h.intent(IntentEvent::Intent(intent(3, dec!(5))), T0 + 4_000_000).await;
    assert_eq!(placed_for(&gw, 2, intent_id(3)).await, 102);
    h.reports_until(intent_id(3), |r| r.iter().any(|x| !x.order_id.is_empty())).await;
    gw.set_accepting(false);
    gw.drop_connection();
    wait_metric(addr, "order_plane_venue_connected", |v| v == 0.0).await;
    gw.fill(102, "0003.01", "5", 189.60, 0.35);
    gw.set_accepting(true);
    let r3 = h.reports_until(intent_id(3), |r| r.iter().any(|x| x.status == ExecStatus::Filled)).await;
    assert_eq!(fills(&r3), [("0003.01".into(), dec!(5), dec!(0.35))]);
    wait_metric(addr, "order_plane_venue_connected", |v| v == 1.0).await;

    // 4. Two working orders, then the plane stops. While it is away one fills in part and IB
    //    cancels the other; an earlier run's order (taken, sent, never reported) also works at IB.
    h.intent(IntentEvent::Intent(intent(4, dec!(10))), T0 + 5_000_000).await;
    h.intent(IntentEvent::Intent(intent(5, dec!(10))), T0 + 5_000_001).await;
    // The fill and the cancel below name IB's order ids: 103 must be intent 4's, 104 intent 5's.
    assert_eq!(placed_for(&gw, 3, intent_id(4)).await, 103);
    assert_eq!(placed_for(&gw, 4, intent_id(5)).await, 104);
    h.reports_until(intent_id(5), |r| r.iter().any(|x| !x.order_id.is_empty())).await;
    h.reports_until(intent_id(4), |r| r.iter().any(|x| !x.order_id.is_empty())).await;
    stop.cancel();
    plane.await.unwrap();
    gw.fill(103, "0004.01", "4", 189.52, 0.35);
    gw.cancel_at_gateway(104);
    assert_eq!(place_behind_the_planes_back(&cfg, &gw, intent_id(6)).await, 105);
    let places_before_restart = place_count(&gw);
    assert_eq!(places_before_restart, 6, "{:?}", gw.requests());

    let (addr, stop, plane) = start(&cfg).await;
    let r4 = h.reports_until(intent_id(4), |r| r.iter().any(|x| x.exec_id.as_deref() == Some("0004.01"))).await;
    assert_eq!(
        statuses(&r4),
        [ExecStatus::Accepted, ExecStatus::Accepted, ExecStatus::PartiallyFilled],
        "still working at IB: {r4:#?}"
    );
    assert_eq!(fills(&r4), [("0004.01".into(), dec!(4), dec!(0.35))]);
    let r5 = h.reports_until(intent_id(5), |r| r.iter().any(|x| x.status.is_terminal())).await;
    assert_eq!(statuses(&r5), [ExecStatus::Accepted, ExecStatus::Accepted, ExecStatus::Cancelled]);
    let r6 = h.reports_until(intent_id(6), |r| r.iter().any(|x| !x.order_id.is_empty())).await;
    assert_eq!((r6[0].status, r6[0].order_qty, r6[0].order_id.as_str()), (ExecStatus::Accepted, dec!(3), "105"));
    // The reconciliation replayed every execution of the day; the ones reported before were
    // recognised by execution id.
    wait_metric(addr, "order_plane_venue_events_dropped_total{why=\"repeated_execution\"}", |v| v >= 3.0).await;

    // The intent the earlier run sent, and an intent executed before, read again: nothing is sent.
    h.quote(T0 + 6_000_000).await;
    h.intent(IntentEvent::Intent(intent(6, dec!(3))), T0 + 6_000_001).await;
    h.intent(IntentEvent::Intent(intent(4, dec!(10))), T0 + 6_000_002).await;
    wait_metric(addr, "order_plane_duplicate_intents_total", |v| v >= 2.0).await;
    // The rest of intent 4 still trades, and the cancel of a found order reaches IB.
    gw.fill(103, "0004.02", "6", 189.52, 0.10);
    let r4 = h.reports_until(intent_id(4), |r| r.iter().any(|x| x.status == ExecStatus::Filled)).await;
    assert_eq!(fills(&r4).len(), 2);
    h.intent(IntentEvent::Cancel(CancelIntent { intent_id: intent_id(6), symbol: aapl() }), T0 + 7_000_000).await;
    assert!(gw.wait_request(0, WAIT, |r| matches!(r, Request::CancelOrder { order_id: 105 })).await.is_some());
    let r6 = h.reports_until(intent_id(6), |r| r.iter().any(|x| x.status.is_terminal())).await;
    assert_eq!(statuses(&r6), [ExecStatus::Accepted, ExecStatus::Cancelled]);
    assert_eq!(place_count(&gw), places_before_restart, "an intent was sent twice: {:?}", gw.requests());

    // Every intent ended with exactly one terminal report, and no execution was reported twice.
    for n in 1..=6 {
        let r = h.reports_until(intent_id(n), |_| true).await;
        assert_eq!(r.iter().filter(|x| x.status.is_terminal()).count(), 1, "{n}: {r:#?}");
        let mut ids: Vec<_> = fills(&r).into_iter().map(|f| f.0).collect();
        let all = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all, "{n}: {r:#?}");
    }
    stop.cancel();
    plane.await.unwrap();
}

/// What an earlier run of the plane did just before it died: took intent `id` and sent its
/// order (3 AAPL), but never published a report. Returns once the gateway holds the order (the
/// session's `Submitted` only says it was written to the socket): its IB order id.
async fn place_behind_the_planes_back(cfg: &AppConfig, gw: &FakeGateway, id: IntentId) -> i32 {
    let session_cfg = common::config::IbkrConfig { client_id: cfg.ibkr.order_client_id, ..cfg.ibkr.clone() };
    let (client, _notices) = ibkr::connect(&session_cfg).await.unwrap();
    let client = Arc::new(client);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let timeout = Duration::from_secs(3);
    let session = tokio::spawn(ibkr::orders::run(Arc::clone(&client), cmd_rx, tx, timeout, stop.clone()));
    let contract = ibkr::market::contract(&common::config::IbkrContractConfig::stock("AAPL"));
    cmd_tx
        .send(ibkr::orders::OrderCommand::Place {
            order_ref: id.to_string(),
            contract: Box::new(contract),
            buy: true,
            qty: dec!(3),
            limit: Some(dec!(189.50)),
            tif: ibapi::orders::TimeInForce::Day,
            account: String::new(),
        })
        .unwrap();
    let order_ref = id.to_string();
    let order_id = loop {
        let ev = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        if let ibkr::orders::OrderEvent::Submitted { order_ref: r, order_id } = ev
            && r == order_ref
        {
            break order_id;
        }
    };
    // Before the session lets go of its connection: the gateway reads what was sent on it only
    // while it is its current one.
    let at_gateway =
        gw.wait_request(0, WAIT, |r| matches!(r, Request::PlaceOrder(p) if p.order_ref == order_ref)).await;
    match at_gateway {
        Some(Request::PlaceOrder(p)) => assert_eq!(p.order_id, order_id),
        other => panic!("the gateway never got intent {id}'s order: {other:?}"),
    }
    stop.cancel();
    session.await.unwrap();
    client.disconnect().await;
    order_id
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn a_live_port_is_refused_before_anything_connects() {
    let dir = tempfile::tempdir().unwrap();
    for port in ["7496", "4001"] {
        let out = Command::new(env!("CARGO_BIN_EXE_order-plane"))
            .current_dir(dir.path())
            .arg("--config-dir")
            .arg(repo().join("config"))
            .env("LOG_DIR", "")
            .env("ALGOTRADER__ORDER_PLANE__VENUE", "ibkr")
            .env("IBKR_PORT", port)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "port {port}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("ibkr.port"), "port {port}: {stderr}");
    }
}

/// Ports say which session was meant; the handshake says which it is. A gateway on a paper port
/// (here an allowed tunnel port) whose login manages a live account is refused before any order:
/// exit 78, the account masked, the opt-in named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_account_behind_a_paper_port_is_refused_after_the_handshake() {
    let broker = Broker::shared();
    let gw = FakeGateway::start_with("U7654321", 100).await.unwrap();
    let port = gw.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-plane"));
    cmd.current_dir(dir.path())
        .arg("--config-dir")
        .arg(repo().join("config"))
        .env("LOG_DIR", "")
        .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("ALGOTRADER__KAFKA__TOPIC_PREFIX", unique("acct_"))
        .env("ORDER_PLANE_PORT", test_support::free_port().to_string())
        .env("ALGOTRADER__ORDER_PLANE__VENUE", "ibkr")
        .env("IBKR_PORT", &port)
        .env("IBKR_ALLOW_PORT", &port)
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("U7… is not a paper account") && !stderr.contains("7654321"), "{stderr}");
    assert!(!gw.requests().iter().any(|r| matches!(r, Request::PlaceOrder(_))), "no order reached the gateway");
}
