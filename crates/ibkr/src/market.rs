//! The market-data feed: one supervised task per contract and stream (tick-by-tick bid/ask,
//! tick-by-tick trades, market depth), plus one task reading the gateway's notices.
//!
//! Each task subscribes, forwards what arrives as [`FeedEvent`]s, and re-subscribes when the
//! connection comes back (the library reconnects the socket but not the subscriptions), when the
//! gateway says data was lost (1101), or after a pacing refusal (420, 162, 10197) with back-off.
//! A contract IB does not know (200) is given up, once, loudly. Every break in the data is a
//! [`FeedEvent::Gap`], so the Data Plane can mark the affected OFI windows.

use std::sync::Arc;
use std::time::Duration;

use common::config::IbkrContractConfig;
use common::types::{Symbol, UnixNanos};
use futures::StreamExt;
use futures::stream::BoxStream;
use ibapi::Client;
use ibapi::contracts::Contract;
use ibapi::market_data::IgnoreSize;
use ibapi::market_data::realtime::{BidAsk, MarketDepths, Trade};
use ibapi::subscriptions::{NoticeStream, SubscriptionItem};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::codes::{self, Reaction};
use crate::convert::{DepthBook, Levels, decimal};
use crate::limits::{Backoff, LineBudget};

/// One thing the feed saw. Prices and sizes stay as the library gave them (floats); the Data
/// Plane turns them into exact decimals and checks them like any other source.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// Top of book (tick-by-tick `BidAsk`).
    Quote {
        /// Instrument.
        symbol: Symbol,
        /// IB's time, Unix seconds.
        ib_time: i64,
        /// When we received it.
        received: UnixNanos,
        /// Bid price.
        bid_px: f64,
        /// Bid size.
        bid_sz: f64,
        /// Ask price.
        ask_px: f64,
        /// Ask size.
        ask_sz: f64,
    },
    /// A trade (tick-by-tick `Last`).
    Trade {
        /// Instrument.
        symbol: Symbol,
        /// IB's time, Unix seconds.
        ib_time: i64,
        /// When we received it.
        received: UnixNanos,
        /// Price.
        price: f64,
        /// Size.
        size: f64,
    },
    /// The valid part of the depth book after a change.
    Depth {
        /// Instrument.
        symbol: Symbol,
        /// When we received it.
        received: UnixNanos,
        /// Bids, best first.
        bids: Levels,
        /// Asks, best first.
        asks: Levels,
    },
    /// Data was (or may have been) missed: one symbol, or all of them (`None`).
    Gap {
        /// The symbol, or every symbol.
        symbol: Option<Symbol>,
        /// When we noticed.
        received: UnixNanos,
        /// Why, for the log.
        reason: String,
    },
    /// A subscription is (again) in place.
    Subscribed {
        /// Instrument.
        symbol: Symbol,
        /// `bid_ask`, `trades` or `depth`.
        stream: &'static str,
    },
    /// IB refused a subscription.
    Refused {
        /// Instrument.
        symbol: Symbol,
        /// `bid_ask`, `trades` or `depth`.
        stream: &'static str,
        /// IB's error code (0 when refused locally for lack of market-data lines).
        code: i32,
        /// Whether it will be tried again.
        retrying: bool,
    },
}

/// The wall clock, for receive times.
pub fn now() -> UnixNanos {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    UnixNanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The ibapi contract for a configured one.
pub fn contract(c: &IbkrContractConfig) -> Contract {
    Contract {
        symbol: c.symbol.as_str().into(),
        security_type: c.sec_type.parse().unwrap_or_default(),
        exchange: c.exchange.as_str().into(),
        primary_exchange: c.primary_exchange.as_str().into(),
        currency: c.currency.as_str().into(),
        ..Contract::default()
    }
}

/// Back-off of re-subscriptions: first wait and cap.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First wait after a refusal.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { first: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    BidAsk,
    Trades,
    Depth(i32),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::BidAsk => "bid_ask",
            Self::Trades => "trades",
            Self::Depth(_) => "depth",
        }
    }
}

enum Tick {
    BidAsk(BidAsk),
    Trade(Trade),
    Depth(MarketDepths),
}

type TickStream = BoxStream<'static, Result<SubscriptionItem<Tick>, ibapi::Error>>;

fn lift<T>(
    item: Result<SubscriptionItem<T>, ibapi::Error>,
    f: fn(T) -> Tick,
) -> Result<SubscriptionItem<Tick>, ibapi::Error> {
    item.map(|i| match i {
        SubscriptionItem::Data(d) => SubscriptionItem::Data(f(d)),
        SubscriptionItem::Notice(n) => SubscriptionItem::Notice(n),
    })
}

async fn open(client: &Client, contract: &Contract, kind: Kind) -> Result<TickStream, ibapi::Error> {
    Ok(match kind {
        Kind::BidAsk => {
            client.tick_by_tick(contract, 0).bid_ask(IgnoreSize::No).await?.map(|i| lift(i, Tick::BidAsk)).boxed()
        }
        Kind::Trades => client.tick_by_tick(contract, 0).last().await?.map(|i| lift(i, Tick::Trade)).boxed(),
        Kind::Depth(rows) => {
            client.market_depth(contract, rows).subscribe().await?.map(|i| lift(i, Tick::Depth)).boxed()
        }
    })
}

/// The running feed.
pub struct Feed {
    /// Subscription and notice tasks; they end when the shutdown token fires.
    pub tasks: Vec<JoinHandle<()>>,
    /// Contracts left out for lack of market-data lines.
    pub refused: Vec<Symbol>,
}

/// Starts the feed for `contracts` within `lines` market-data lines (each contract takes two,
/// plus one with depth). Events go to `tx`; everything stops when `shutdown` fires.
pub fn spawn(
    client: Arc<Client>,
    notices: NoticeStream,
    contracts: &[IbkrContractConfig],
    lines: u32,
    retry: RetryPolicy,
    tx: mpsc::Sender<FeedEvent>,
    shutdown: CancellationToken,
) -> Feed {
    let (resub_tx, resub_rx) = watch::channel(0u64);
    let mut budget = LineBudget::new(lines);
    let mut tasks = Vec::new();
    let mut refused = Vec::new();
    for c in contracts {
        let Ok(symbol) = Symbol::new(&c.symbol) else { continue };
        let mut kinds = vec![Kind::BidAsk, Kind::Trades];
        if c.depth_rows > 0 {
            kinds.push(Kind::Depth(i32::try_from(c.depth_rows).unwrap_or(i32::MAX)));
        }
        let needed = u32::try_from(kinds.len()).unwrap_or(u32::MAX);
        if !budget.take(needed) {
            tracing::error!(%symbol, needed, lines, used = budget.used(), "Not enough IBKR market-data lines; contract not subscribed.");
            refused.push(symbol);
            continue;
        }
        for kind in kinds {
            let sub = Subscriber {
                client: Arc::clone(&client),
                contract: contract(c),
                symbol: symbol.clone(),
                kind,
                tx: tx.clone(),
                resub: resub_rx.clone(),
                shutdown: shutdown.clone(),
                backoff: Backoff::new(retry.first, retry.max),
            };
            tasks.push(tokio::spawn(sub.run()));
        }
    }
    tasks.push(tokio::spawn(watch_notices(notices, resub_tx, tx, shutdown)));
    Feed { tasks, refused }
}

/// Reads unrouted notices: connectivity (1100/1101/1102) and farm status.
async fn watch_notices(
    mut notices: NoticeStream,
    resub_tx: watch::Sender<u64>,
    tx: mpsc::Sender<FeedEvent>,
    shutdown: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => return,
            n = notices.next() => n,
        };
        let Some(n) = notice else { return };
        let code = n.code;
        match codes::reaction(code) {
            Reaction::ConnectivityLost => {
                tracing::warn!(code, message = %n.message, "IBKR gateway lost its connection to IB; data paused.");
                let gap = FeedEvent::Gap { symbol: None, received: now(), reason: format!("IB error {code}") };
                let _ = tx.send(gap).await;
            }
            Reaction::RestoredDataLost => {
                tracing::warn!(code, "IBKR connectivity restored, data lost: re-subscribing everything.");
                let gap = FeedEvent::Gap { symbol: None, received: now(), reason: format!("IB error {code}") };
                let _ = tx.send(gap).await;
                resub_tx.send_modify(|g| *g += 1);
            }
            Reaction::RestoredDataKept => tracing::info!(code, "IBKR connectivity restored, data kept."),
            Reaction::Informational => tracing::info!(code, message = %n.message, "IBKR notice."),
            _ => tracing::warn!(code, message = %n.message, remedy = codes::remedy(code), "IBKR notice."),
        }
    }
}

struct Subscriber {
    client: Arc<Client>,
    contract: Contract,
    symbol: Symbol,
    kind: Kind,
    tx: mpsc::Sender<FeedEvent>,
    resub: watch::Receiver<u64>,
    shutdown: CancellationToken,
    backoff: Backoff,
}

/// What ends one subscription.
enum Next {
    /// Subscribe again at once (after a reconnect or a 1101).
    Resubscribe,
    /// Wait, then subscribe again.
    RetryLater,
    /// Stop this stream for good.
    Stop,
}

impl Subscriber {
    async fn send(&self, ev: FeedEvent) -> bool {
        self.tx.send(ev).await.is_ok()
    }

    async fn gap(&self, reason: String) -> bool {
        self.send(FeedEvent::Gap { symbol: Some(self.symbol.clone()), received: now(), reason }).await
    }

    async fn run(mut self) {
        loop {
            let next = self.subscribe_once().await;
            match next {
                Next::Stop => return,
                Next::Resubscribe => {}
                Next::RetryLater => {
                    let wait = self.backoff.next_delay();
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
            if self.shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Handles an error that ended the request or the stream.
    async fn on_error(&self, e: ibapi::Error) -> Next {
        let stream = self.kind.name();
        let symbol = &self.symbol;
        if e.is_connection_lost() {
            tracing::warn!(%symbol, stream, "IBKR connection lost; re-subscribing once it is back.");
            if !self.gap("connection lost".into()).await {
                return Next::Stop;
            }
            let waited = tokio::select! {
                () = self.shutdown.cancelled() => return Next::Stop,
                w = self.client.wait_connected() => w,
            };
            return if waited.is_ok() { Next::Resubscribe } else { Next::Stop };
        }
        match e {
            ibapi::Error::Notice(n) => {
                let code = n.code;
                let remedy = codes::remedy(code);
                match codes::reaction(code) {
                    Reaction::GiveUp => {
                        tracing::error!(%symbol, stream, code, message = %n.message, remedy, "IBKR refused the subscription; contract given up.");
                        let _ = self
                            .send(FeedEvent::Refused { symbol: symbol.clone(), stream, code, retrying: false })
                            .await;
                        Next::Stop
                    }
                    _ => {
                        tracing::warn!(%symbol, stream, code, message = %n.message, remedy, "IBKR refused the subscription; retrying with back-off.");
                        let ok = self
                            .send(FeedEvent::Refused { symbol: symbol.clone(), stream, code, retrying: true })
                            .await;
                        if ok { Next::RetryLater } else { Next::Stop }
                    }
                }
            }
            ibapi::Error::Shutdown | ibapi::Error::ConnectionFailed => Next::Stop,
            other => {
                tracing::warn!(%symbol, stream, error = %other, "IBKR subscription failed; retrying with back-off.");
                Next::RetryLater
            }
        }
    }

    async fn subscribe_once(&mut self) -> Next {
        let opened = tokio::select! {
            () = self.shutdown.cancelled() => return Next::Stop,
            o = open(&self.client, &self.contract, self.kind) => o,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => return self.on_error(e).await,
        };
        let name = self.kind.name();
        tracing::info!(symbol = %self.symbol, stream = name, "IBKR subscription in place.");
        if !self.send(FeedEvent::Subscribed { symbol: self.symbol.clone(), stream: name }).await {
            return Next::Stop;
        }
        self.resub.mark_unchanged();
        let mut book = DepthBook::default();
        loop {
            let item = tokio::select! {
                () = self.shutdown.cancelled() => return Next::Stop,
                changed = self.resub.changed() => {
                    if changed.is_err() {
                        return Next::Stop;
                    }
                    // Dropping the stream cancels it at the gateway before the new request.
                    drop(stream);
                    return Next::Resubscribe;
                }
                item = stream.next() => item,
            };
            let ev = match item {
                None => return Next::RetryLater,
                Some(Err(e)) => return self.on_error(e).await,
                Some(Ok(SubscriptionItem::Notice(n))) => {
                    tracing::info!(symbol = %self.symbol, stream = name, code = n.code, message = %n.message, "IBKR subscription notice.");
                    if n.code == 317 {
                        book.reset();
                    }
                    continue;
                }
                Some(Ok(SubscriptionItem::Data(tick))) => self.event(tick, &mut book),
            };
            self.backoff.reset();
            if let Some(ev) = ev
                && !self.send(ev).await
            {
                return Next::Stop;
            }
        }
    }

    fn event(&self, tick: Tick, book: &mut DepthBook) -> Option<FeedEvent> {
        let symbol = self.symbol.clone();
        let received = now();
        match tick {
            Tick::BidAsk(q) => Some(FeedEvent::Quote {
                symbol,
                ib_time: q.time.unix_timestamp(),
                received,
                bid_px: q.bid_price,
                bid_sz: q.bid_size,
                ask_px: q.ask_price,
                ask_sz: q.ask_size,
            }),
            Tick::Trade(t) => Some(FeedEvent::Trade {
                symbol,
                ib_time: t.time.unix_timestamp(),
                received,
                price: t.price,
                size: t.size,
            }),
            Tick::Depth(d) => {
                let (position, operation, side, price, size) = match d {
                    MarketDepths::MarketDepth(r) => (r.position, r.operation, r.side, r.price, r.size),
                    MarketDepths::MarketDepthL2(r) => (r.position, r.operation, r.side, r.price, r.size),
                    MarketDepths::Reset => {
                        book.reset();
                        return None;
                    }
                };
                let (Some(price), Some(size)) = (decimal(price), decimal(size)) else { return None };
                if let Err(e) = book.apply(position, operation, side, price, size) {
                    // The book lost sync with IB: start over rather than publish a wrong book.
                    tracing::warn!(%symbol, error = %e, "IBKR depth out of sync; book reset.");
                    book.reset();
                    return None;
                }
                let levels = usize::try_from(self.kind_rows()).unwrap_or(0);
                book.snapshot(levels).map(|(bids, asks)| FeedEvent::Depth { symbol, received, bids, asks })
            }
        }
    }

    fn kind_rows(&self) -> i32 {
        match self.kind {
            Kind::Depth(rows) => rows,
            _ => 0,
        }
    }
}
