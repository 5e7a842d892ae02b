//! The adapter against the real `ibapi` client and the project's fake gateway: handshake, ticks,
//! a refused subscription, orders with partial fills and commissions, a cancel, and a gateway
//! drop with an execution during the outage.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use common::config::{IbkrConfig, IbkrContractConfig};
use fake_ib_gateway::{FakeGateway, Request};
use ibapi::orders::TimeInForce;
use ibkr::market::{self, FeedEvent, RetryPolicy};
use ibkr::orders::{self, OrderCommand, OrderEvent};
use rust_decimal::dec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn settings(gw: &FakeGateway) -> IbkrConfig {
    IbkrConfig {
        host: "127.0.0.1".into(),
        port: gw.port(),
        client_id: 7,
        request_timeout_ms: 3_000,
        ..IbkrConfig::default()
    }
}

/// Events received so far and not yet matched, so a wait never loses an event it skipped.
struct Events<T> {
    rx: mpsc::Receiver<T>,
    seen: Vec<T>,
}

impl<T: std::fmt::Debug> Events<T> {
    fn new(rx: mpsc::Receiver<T>) -> Self {
        Self { rx, seen: Vec::new() }
    }

    /// The first event (oldest first) matching `pick`, waiting for it if needed.
    async fn wait(&mut self, pick: impl Fn(&T) -> bool) -> T {
        if let Some(i) = self.seen.iter().position(&pick) {
            return self.seen.remove(i);
        }
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let ev = self.rx.recv().await.expect("channel closed");
                if pick(&ev) {
                    return ev;
                }
                self.seen.push(ev);
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out; unmatched events: {:?}", self.seen))
    }
}

fn is_tbt(symbol: &'static str, kind: &'static str) -> impl Fn(&Request) -> bool {
    move |r| matches!(r, Request::TickByTick { symbol: s, tick_type, .. } if s == symbol && tick_type == kind)
}

fn req_id(r: Option<Request>) -> i32 {
    match r {
        Some(Request::TickByTick { req_id, .. } | Request::MarketDepth { req_id, .. }) => req_id,
        other => panic!("not a subscription: {other:?}"),
    }
}

#[tokio::test]
async fn handshake_gives_the_account_and_the_next_order_id() {
    let gw = FakeGateway::start_with("DU111,DU222", 41).await.unwrap();
    let (client, _notices) = ibkr::connect(&settings(&gw)).await.unwrap();
    assert_eq!(client.handshake_managed_accounts(), ["DU111", "DU222"]);
    assert_eq!(client.next_order_id(), 41);
    assert_eq!(gw.requests().first(), Some(&Request::StartApi { client_id: 7 }));
    client.disconnect().await;
}

#[tokio::test]
async fn a_client_id_in_use_is_refused_with_its_remedy() {
    let gw = FakeGateway::start().await.unwrap();
    gw.set_client_id_in_use(true);
    let err = ibkr::connect(&settings(&gw)).await.err().expect("must be refused");
    assert!(matches!(err, ibkr::IbkrError::ClientIdInUse { client_id: 7, .. }), "{err}");
    assert!(err.to_string().contains("IBKR_CLIENT_ID"), "{err}");
}

#[tokio::test]
async fn ticks_flow_a_refused_subscription_is_retried_and_a_drop_resubscribes() {
    let gw = FakeGateway::start().await.unwrap();
    gw.reject_next_subscription("MSFT", 420, "Invalid Real-time Query: pacing violation");
    let (client, notices) = ibkr::connect(&settings(&gw)).await.unwrap();
    let client = Arc::new(client);
    let (tx, rx) = mpsc::channel(1024);
    let mut rx = Events::new(rx);
    let stop = CancellationToken::new();
    let retry = RetryPolicy { first: Duration::from_millis(50), max: Duration::from_millis(200) };
    let feed = market::spawn(
        Arc::clone(&client),
        notices,
        &[IbkrContractConfig::stock("AAPL"), IbkrContractConfig::stock("MSFT")],
        100,
        retry,
        tx,
        stop.clone(),
    );
    assert!(feed.refused.is_empty());

    let bid_ask = req_id(gw.wait_request(0, WAIT, is_tbt("AAPL", "BidAsk")).await);
    let last = req_id(gw.wait_request(0, WAIT, is_tbt("AAPL", "Last")).await);
    rx.wait(|e| matches!(e, FeedEvent::Subscribed { stream: "bid_ask", symbol } if symbol.as_str() == "AAPL")).await;
    rx.wait(|e| matches!(e, FeedEvent::Subscribed { stream: "trades", symbol } if symbol.as_str() == "AAPL")).await;
    gw.send_bid_ask(bid_ask, 1_767_364_200, 189.51, 189.52, "300", "200");
    gw.send_last(last, 1_767_364_200, 189.52, "100");
    let q = rx.wait(|e| matches!(e, FeedEvent::Quote { .. })).await;
    assert!(
        matches!(q, FeedEvent::Quote { ib_time: 1_767_364_200, bid_px, ask_sz, .. } if bid_px == 189.51 && ask_sz == 200.0)
    );
    let t = rx.wait(|e| matches!(e, FeedEvent::Trade { .. })).await;
    assert!(matches!(t, FeedEvent::Trade { price, size, .. } if price == 189.52 && size == 100.0));

    // 420 on MSFT's first request: reported, then asked again (not given up, no crash loop).
    rx.wait(|e| matches!(e, FeedEvent::Refused { code: 420, retrying: true, .. })).await;
    assert!(gw.wait_request(1, WAIT, is_tbt("MSFT", "BidAsk")).await.is_some());

    // The gateway restarts: a gap is reported and every stream is requested again.
    gw.drop_connection();
    rx.wait(|e| matches!(e, FeedEvent::Gap { .. })).await;
    assert!(gw.wait_connections(2, WAIT).await);
    let bid_ask2 = req_id(gw.wait_request(1, WAIT, is_tbt("AAPL", "BidAsk")).await);
    assert!(gw.wait_request(1, WAIT, is_tbt("AAPL", "Last")).await.is_some());
    rx.wait(|e| matches!(e, FeedEvent::Subscribed { stream: "bid_ask", symbol } if symbol.as_str() == "AAPL")).await;
    gw.send_bid_ask(bid_ask2, 1_767_364_260, 190.00, 190.02, "100", "100");
    let q = rx.wait(|e| matches!(e, FeedEvent::Quote { .. })).await;
    assert!(matches!(q, FeedEvent::Quote { bid_px, .. } if bid_px == 190.0));

    stop.cancel();
    for t in feed.tasks {
        t.await.unwrap();
    }
    client.disconnect().await;
}

#[tokio::test]
async fn unknown_contracts_are_given_up_and_lines_are_budgeted() {
    let gw = FakeGateway::start().await.unwrap();
    gw.reject_next_subscription("NOPE", 200, "No security definition has been found for the request");
    let (client, notices) = ibkr::connect(&settings(&gw)).await.unwrap();
    let client = Arc::new(client);
    let (tx, rx) = mpsc::channel(1024);
    let mut rx = Events::new(rx);
    let stop = CancellationToken::new();
    // Two lines: NOPE takes both, AAPL does not fit.
    let feed = market::spawn(
        Arc::clone(&client),
        notices,
        &[IbkrContractConfig::stock("NOPE"), IbkrContractConfig::stock("AAPL")],
        2,
        RetryPolicy::default(),
        tx,
        stop.clone(),
    );
    assert_eq!(feed.refused.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["AAPL"]);
    rx.wait(|e| matches!(e, FeedEvent::Refused { code: 200, retrying: false, .. })).await;
    stop.cancel();
    for t in feed.tasks {
        t.await.unwrap();
    }
    client.disconnect().await;
}

fn place(order_ref: &str, qty: rust_decimal::Decimal) -> OrderCommand {
    OrderCommand::Place {
        order_ref: order_ref.into(),
        contract: Box::new(market::contract(&IbkrContractConfig::stock("AAPL"))),
        buy: true,
        qty,
        limit: Some(dec!(189.52)),
        tif: TimeInForce::Day,
        account: "DU1234567".into(),
    }
}

#[tokio::test]
async fn orders_fill_in_parts_cancel_and_survive_a_gateway_drop() {
    let gw = FakeGateway::start_with("DU1234567", 100).await.unwrap();
    let (client, _notices) = ibkr::connect(&settings(&gw)).await.unwrap();
    let client = Arc::new(client);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (tx, rx) = mpsc::channel(1024);
    let mut rx = Events::new(rx);
    let stop = CancellationToken::new();
    let session = tokio::spawn(orders::run(Arc::clone(&client), cmd_rx, tx, Duration::from_secs(3), stop.clone()));
    assert_eq!(rx.wait(|e| matches!(e, OrderEvent::Reconciled { .. })).await, OrderEvent::Reconciled { open: vec![] });

    // Two partial executions, each with its commission.
    cmd_tx.send(place("intent-1", dec!(100))).unwrap();
    let placed = gw.wait_request(0, WAIT, |r| matches!(r, Request::PlaceOrder(_))).await;
    let Some(Request::PlaceOrder(p)) = placed else { panic!("no order") };
    assert_eq!(
        (p.order_id, p.order_ref.as_str(), p.action.as_str(), p.order_type.as_str()),
        (100, "intent-1", "BUY", "LMT")
    );
    assert_eq!(p.quantity.parse::<f64>().unwrap(), 100.0);
    assert_eq!(
        rx.wait(|e| matches!(e, OrderEvent::Submitted { .. })).await,
        OrderEvent::Submitted { order_ref: "intent-1".into(), order_id: 100 }
    );
    gw.fill(100, "0001.01", "40", 189.52, 1.0);
    gw.fill(100, "0001.02", "60", 189.51, 1.25);
    let f1 = rx.wait(|e| matches!(e, OrderEvent::Fill { .. })).await;
    let f2 = rx.wait(|e| matches!(e, OrderEvent::Fill { .. })).await;
    assert!(
        matches!(&f1, OrderEvent::Fill { exec_id, qty, px, commission, .. } if exec_id == "0001.01" && *qty == dec!(40) && *px == dec!(189.52) && *commission == dec!(1)),
        "{f1:?}"
    );
    assert!(
        matches!(&f2, OrderEvent::Fill { exec_id, qty, commission, .. } if exec_id == "0001.02" && *qty == dec!(60) && *commission == dec!(1.25)),
        "{f2:?}"
    );

    // A cancel of a working order.
    cmd_tx.send(place("intent-2", dec!(10))).unwrap();
    rx.wait(|e| matches!(e, OrderEvent::Submitted { order_ref, .. } if order_ref == "intent-2")).await;
    cmd_tx.send(OrderCommand::Cancel { order_ref: "intent-2".into() }).unwrap();
    assert!(gw.wait_request(0, WAIT, |r| matches!(r, Request::CancelOrder { order_id: 101 })).await.is_some());
    let c = rx.wait(|e| matches!(e, OrderEvent::Cancelled { .. })).await;
    assert!(matches!(c, OrderEvent::Cancelled { order_ref, .. } if order_ref == "intent-2"));

    // A working order, then the gateway goes down and the order fills meanwhile.
    cmd_tx.send(place("intent-3", dec!(5))).unwrap();
    rx.wait(|e| matches!(e, OrderEvent::Submitted { order_ref, .. } if order_ref == "intent-3")).await;
    assert!(gw.wait_request(2, WAIT, |r| matches!(r, Request::PlaceOrder(_))).await.is_some());
    gw.set_accepting(false);
    gw.drop_connection();
    rx.wait(|e| matches!(e, OrderEvent::Disconnected)).await;
    gw.fill(102, "0003.01", "5", 189.60, 0.35);
    gw.set_accepting(true);
    let f3 = rx.wait(|e| matches!(e, OrderEvent::Fill { .. })).await;
    assert!(
        matches!(&f3, OrderEvent::Fill { order_ref, exec_id, commission, .. } if order_ref == "intent-3" && exec_id == "0003.01" && *commission == dec!(0.35)),
        "{f3:?}"
    );
    // The reconciliation replays every execution; only the new one became a fill.
    let rec = rx.wait(|e| matches!(e, OrderEvent::Reconciled { .. })).await;
    assert_eq!(rec, OrderEvent::Reconciled { open: vec![] });
    assert!(gw.requests().iter().filter(|r| matches!(r, Request::Executions { .. })).count() >= 2);
    stop.cancel();
    session.await.unwrap();
    rx.seen.retain(|e| {
        !matches!(e, OrderEvent::Reconciled { .. } | OrderEvent::Submitted { .. } | OrderEvent::Disconnected)
    });
    assert!(rx.seen.is_empty(), "unexpected events: {:?}", rx.seen);
    while let Ok(ev) = rx.rx.try_recv() {
        assert!(!matches!(ev, OrderEvent::Fill { .. }), "a fill reported twice: {ev:?}");
    }
    client.disconnect().await;
}
