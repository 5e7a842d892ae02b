//! System test of `DATA_SOURCE=ibkr`: the Data Plane connects with the real `ibapi` client to the
//! project's fake gateway and publishes to a real broker. Ticks scripted on the gateway come back
//! from `market_events` as exact quotes and trades and from `ofi_events` as windows; a gateway drop
//! mid-stream is reconnected and re-subscribed, and the symbols' next windows say `data_gap`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use common::codec;
use common::config::{AppConfig, IbkrContractConfig};
use common::events::{MarketEvent, OfiEvent, OfiWindow};
use common::kafka::read_to_end;
use common::topics::{MARKET_EVENTS, OFI_EVENTS};
use common::types::Side;
use fake_ib_gateway::{FakeGateway, Request};
use test_support::{Broker, http_get, metric, unique, wait_for};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);
/// IB's time of the first ticks (Unix seconds; later ticks are whole seconds after it): a minute
/// ahead of the wall clock, so the plane's heartbeat (which moves event time with the wall
/// clock in a quiet market) never overtakes the script.
fn first_tick_second() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    i64::try_from(now).unwrap() + 60
}

/// Waits until the plane's metric `name` reaches `at_least`.
async fn wait_metric(http: SocketAddr, name: &'static str, at_least: f64) {
    tokio::task::spawn_blocking(move || {
        wait_for(WAIT, name, || {
            let (_, body) = http_get(http, "/metrics").ok()?;
            metric(&body, name).filter(|v| *v >= at_least)
        })
    })
    .await
    .unwrap();
}

/// The request id of the `n`-th (0-based) tick-by-tick request of `kind` for `symbol`.
async fn subscription(gw: &FakeGateway, n: usize, symbol: &'static str, kind: &'static str) -> i32 {
    let pick = move |r: &Request| matches!(r, Request::TickByTick { symbol: s, tick_type, .. } if s == symbol && tick_type == kind);
    match gw.wait_request(n, WAIT, pick).await {
        Some(Request::TickByTick { req_id, .. }) => req_id,
        other => panic!("no request #{n} for {symbol} {kind}: {other:?}; requests: {:?}", gw.requests()),
    }
}

const PROCESSED: &str = "data_plane_messages_processed_total";

/// Sends ticks one by one, each once the plane has taken the one before: the feed's tasks are
/// independent, so this is what keeps the scripted order.
struct Script<'a> {
    gw: &'a FakeGateway,
    http: SocketAddr,
    sent: f64,
}

impl Script<'_> {
    async fn quote(&mut self, req: i32, t: i64, bid: f64, ask: f64) {
        self.gw.send_bid_ask(req, t, bid, ask, "300", "200");
        self.sent += 1.0;
        wait_metric(self.http, PROCESSED, self.sent).await;
    }

    /// A depth row operation; `snapshot` when the book it leaves has both sides (the feed then
    /// hands the plane a snapshot).
    async fn depth(&mut self, req: i32, row: (i32, i32, i32), price: f64, size: &str, snapshot: bool) {
        let (position, operation, side) = row;
        self.gw.send_depth(req, position, operation, side, price, size);
        if snapshot {
            self.sent += 1.0;
            wait_metric(self.http, PROCESSED, self.sent).await;
        }
    }

    async fn trade(&mut self, req: i32, t: i64, price: f64) {
        self.gw.send_last(req, t, price, "100");
        self.sent += 1.0;
        wait_metric(self.http, PROCESSED, self.sent).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_ticks_are_published_and_a_gateway_drop_flags_the_next_windows() {
    let broker = Broker::shared();
    let gw = FakeGateway::start().await.unwrap();

    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique("ibkr_");
    cfg.kafka.partitions = 1;
    cfg.app.instance_id = "ibkr-test".into();
    cfg.data_plane.source = "ibkr".into();
    cfg.ibkr.host = "127.0.0.1".into();
    cfg.ibkr.port = gw.port();
    // The fake gateway's port is none of IB's: named, as an operator names a tunnel's.
    cfg.ibkr.allow_port = gw.port();
    cfg.ibkr.client_id = 11;
    cfg.ibkr.request_timeout_ms = 3_000;
    cfg.ibkr.contracts = vec![
        IbkrContractConfig { depth_rows: 5, ..IbkrContractConfig::stock("AAPL") },
        IbkrContractConfig::stock("MSFT"),
    ];
    cfg.validate().unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let plane = tokio::spawn(data_plane::run(cfg.clone(), listener, shutdown.clone()));

    let t0 = first_tick_second();
    let mut s = Script { gw: &gw, http, sent: 0.0 };
    let (aapl_q, aapl_t) = (subscription(&gw, 0, "AAPL", "BidAsk").await, subscription(&gw, 0, "AAPL", "Last").await);
    let msft_q = subscription(&gw, 0, "MSFT", "BidAsk").await;
    subscription(&gw, 0, "MSFT", "Last").await;
    s.quote(aapl_q, t0, 189.51, 189.52).await;
    s.trade(aapl_t, t0, 189.52).await;
    s.quote(msft_q, t0, 410.10, 410.12).await;
    s.quote(aapl_q, t0 + 1, 189.52, 189.53).await;
    s.quote(msft_q, t0 + 1, 410.11, 410.13).await;

    // The gateway restarts: the client reconnects and every stream is requested again.
    gw.drop_connection();
    assert!(gw.wait_connections(2, WAIT).await, "the client did not reconnect");
    let (aapl_q, aapl_t) = (subscription(&gw, 1, "AAPL", "BidAsk").await, subscription(&gw, 1, "AAPL", "Last").await);
    let msft_q = subscription(&gw, 1, "MSFT", "BidAsk").await;
    subscription(&gw, 1, "MSFT", "Last").await;
    s.quote(aapl_q, t0 + 3, 189.60, 189.61).await;
    // Below the new mid: a sell, judged against the quote after the gap, not the one before.
    s.trade(aapl_t, t0 + 3, 189.60).await;
    s.quote(msft_q, t0 + 3, 410.20, 410.22).await;
    s.quote(aapl_q, t0 + 4, 189.61, 189.62).await;

    // Depth (re-subscribed after the reconnect too): rows build a book; every change that leaves
    // both sides is a snapshot on market_events and feeds the window's multi-level OFI. Depth
    // carries no IB time: it takes the receive time, kept in order with the ticks before it.
    let depth = match gw
        .wait_request(1, WAIT, |r| matches!(r, Request::MarketDepth { symbol, .. } if symbol == "AAPL"))
        .await
    {
        Some(Request::MarketDepth { req_id, rows, .. }) => {
            assert_eq!(rows, 5);
            req_id
        }
        other => panic!("no depth re-subscription: {other:?}"),
    };
    const BID: i32 = 1;
    const ASK: i32 = 0;
    const INSERT: i32 = 0;
    const UPDATE: i32 = 1;
    s.depth(depth, (0, INSERT, BID), 189.61, "5", false).await;
    s.depth(depth, (0, INSERT, ASK), 189.62, "4", true).await;
    s.quote(aapl_q, t0 + 5, 189.61, 189.62).await;
    s.depth(depth, (1, INSERT, BID), 189.60, "7", true).await;
    s.depth(depth, (1, INSERT, ASK), 189.63, "6", true).await;
    // Level 1's bid grows by 3, then level 2's ask by 3: multi-level OFI (+3, −3).
    s.depth(depth, (0, UPDATE, BID), 189.61, "8", true).await;
    s.depth(depth, (1, UPDATE, ASK), 189.63, "9", true).await;
    s.quote(aapl_q, t0 + 6, 189.61, 189.62).await;
    // A quote in a later second closes the depth's windows.
    s.quote(msft_q, t0 + 10, 410.21, 410.23).await;

    wait_metric(http, "data_plane_ofi_windows_total", 7.0).await;
    wait_metric(http, "data_plane_events_published_total{topic=\"market_events\"}", 17.0).await;

    let kafka = cfg.kafka.clone();
    let (market, ofi) = tokio::task::spawn_blocking(move || {
        let market = read_to_end(&kafka, &kafka.topic(MARKET_EVENTS), WAIT).unwrap();
        let ofi = read_to_end(&kafka, &kafka.topic(OFI_EVENTS), WAIT).unwrap();
        (market, ofi)
    })
    .await
    .unwrap();

    // market_events, in order: exact decimals; after the reconnect, only the new subscription's.
    let mut quotes = Vec::new();
    let mut trades = Vec::new();
    let mut books = Vec::new();
    for r in &market {
        match codec::decode::<MarketEvent>(&r.payload).unwrap().payload {
            MarketEvent::Quote(q) => quotes.push(format!(
                "{} {}x{} {}x{}",
                q.symbol.as_str(),
                q.bid_px.get(),
                q.bid_sz.get(),
                q.ask_px.get(),
                q.ask_sz.get()
            )),
            MarketEvent::Trade(t) => {
                trades.push((t.symbol.as_str().to_owned(), t.price.get().to_string(), t.aggressor))
            }
            MarketEvent::Depth(d) => {
                let side = |levels: &[common::events::Level]| {
                    levels.iter().map(|l| format!("{}x{}", l.px.get(), l.sz.get())).collect::<Vec<_>>().join(" ")
                };
                books.push(format!("{} {} | {}", d.symbol.as_str(), side(&d.bids), side(&d.asks)));
            }
            other => panic!("unexpected market event {other:?}"),
        }
    }
    assert_eq!(
        quotes,
        [
            "AAPL 189.51x300 189.52x200",
            "MSFT 410.1x300 410.12x200",
            "AAPL 189.52x300 189.53x200",
            "MSFT 410.11x300 410.13x200",
            "AAPL 189.6x300 189.61x200",
            "MSFT 410.2x300 410.22x200",
            "AAPL 189.61x300 189.62x200",
            "AAPL 189.61x300 189.62x200",
            "AAPL 189.61x300 189.62x200",
            "MSFT 410.21x300 410.23x200",
        ]
    );
    assert_eq!(
        books,
        [
            "AAPL 189.61x5 | 189.62x4",
            "AAPL 189.61x5 189.6x7 | 189.62x4",
            "AAPL 189.61x5 189.6x7 | 189.62x4 189.63x6",
            "AAPL 189.61x8 189.6x7 | 189.62x4 189.63x6",
            "AAPL 189.61x8 189.6x7 | 189.62x4 189.63x9",
        ]
    );
    assert_eq!(
        trades,
        [("AAPL".to_owned(), "189.52".to_owned(), Side::Buy), ("AAPL".to_owned(), "189.6".to_owned(), Side::Sell)]
    );

    // ofi_events: the windows before the drop are clean, the first after it is flagged.
    let windows: Vec<OfiWindow> = ofi
        .iter()
        .map(|r| {
            let OfiEvent::Window(w) = codec::decode::<OfiEvent>(&r.payload).unwrap().payload;
            w
        })
        .collect();
    let window = |symbol: &str, second: i64| {
        let start = u64::try_from(second).unwrap() * 1_000_000_000;
        windows
            .iter()
            .find(|w| w.symbol.as_str() == symbol && w.window_start.0 == start)
            .unwrap_or_else(|| panic!("no {symbol} window at {second}: {windows:?}"))
    };
    let first = window("AAPL", t0);
    assert_eq!((first.n_quotes, first.n_trades, first.data_gap), (1, 1, false));
    assert_eq!(first.mid_close.to_string(), "189.515");
    assert_eq!(first.trade_imbalance.to_string(), "100");
    let before = window("AAPL", t0 + 1);
    // CKS: bid up (+300), ask up (+200 of the previous ask).
    assert_eq!(before.ofi.to_string(), "500");
    assert!(!window("MSFT", t0).data_gap);
    for symbol in ["AAPL", "MSFT"] {
        let after = window(symbol, t0 + 3);
        assert!(after.data_gap, "{symbol}'s first window after the reconnect must be flagged: {after:?}");
        // The flow restarts at the new subscription's first quote.
        assert_eq!(after.ofi.to_string(), "0", "{symbol}");
    }
    assert_eq!(window("AAPL", t0 + 3).trade_imbalance.to_string(), "-100");
    // Multi-level OFI over the depth's windows (it may straddle a second boundary).
    let mut mlofi = [rust_decimal::Decimal::ZERO; 5];
    for w in windows.iter().filter(|w| w.symbol.as_str() == "AAPL") {
        for (m, v) in w.mlofi.iter().flatten().enumerate() {
            mlofi[m] += v;
        }
    }
    let aapl: Vec<_> = windows.iter().filter(|w| w.symbol.as_str() == "AAPL").collect();
    assert_eq!(mlofi.iter().map(ToString::to_string).collect::<Vec<_>>(), ["3", "-3", "0", "0", "0"], "{aapl:#?}");
    assert!(windows.iter().all(|w| w.symbol.as_str() == "AAPL" || w.mlofi.is_none()));

    shutdown.cancel();
    tokio::time::timeout(WAIT, plane).await.expect("the plane did not stop").unwrap().unwrap();
}
