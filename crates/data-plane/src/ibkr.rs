//! The live source: the IBKR market-data feed (`DATA_SOURCE=ibkr`) through the same [`DataCore`]
//! as the replay, published to `market_events` and `ofi_events` with delivery tracking.
//!
//! [`LiveFeed`] is the synchronous part: it stamps event time, turns feed events into the core's
//! [`RawEvent`]s (exact decimals; a trade's aggressor from the quote before it), hands depth
//! snapshots to the core's multi-level OFI, and marks the OFI windows of every symbol the feed
//! lost. [`run`] is the shell around it: connect, subscribe,
//! loop, drain.
//!
//! Nothing is cached and re-sent: a quote is published once, when it arrives. The feed sends a
//! stream's ticks in order and nothing between its gap and its new subscription, so after a
//! reconnect the first quotes are the new subscription's. What the core remembers across the
//! gap is dropped: the OFI flow restarts at the next quote, and a trade's aggressor is only
//! inferred from a quote received after the gap.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ::ibkr::convert::{self, EventClock, Levels};
use ::ibkr::market::{self, FeedEvent, RetryPolicy};
use common::clock::{Clock, SystemClock};
use common::config::AppConfig;
use common::events::{DepthUpdate, Level, Source};
use common::http::{self, Health};
use common::kafka::{self, AckQueue, BrokerError};
use common::topics::{MARKET_EVENTS, OFI_EVENTS};
use common::types::{Price, Quantity, Symbol, UnixNanos};
use rust_decimal::Decimal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::{DataCore, Output};
use crate::metrics::Metrics;
use crate::run::{Pending, RunError, publish};
use crate::source::{Num, RawBody, RawEvent};

/// Feed events waiting for the core at once; the feed tasks wait beyond it.
const FEED_BUFFER: usize = 8192;
/// How often the wall clock moves event time forward when no tick does.
const HEARTBEAT: Duration = Duration::from_millis(100);
/// How far behind the wall clock the heartbeat keeps event time, so a tick IB stamped a moment
/// ago still lands in its own window.
const HEARTBEAT_LAG: u64 = 500_000_000;

/// Feed events in, core inputs out: event time, decimals, aggressors and gaps.
pub struct LiveFeed {
    clock: EventClock,
    seq: u64,
    symbols: Vec<Symbol>,
    /// Each symbol's last (bid, ask) since its last gap, for trade aggressors.
    last_quote: HashMap<Symbol, (Decimal, Decimal)>,
    /// Symbols whose next event is the first after a gap.
    gapped: HashSet<Symbol>,
    /// Trades dropped because no quote since the last gap told their aggressor.
    pub trades_without_quote: u64,
}

fn num(f: f64) -> Num {
    convert::decimal(f).map_or(Num::NonFinite, Num::Value)
}

impl LiveFeed {
    /// A feed of `symbols` (the configured contracts; a gap for "every symbol" marks these).
    pub fn new(symbols: Vec<Symbol>) -> Self {
        Self {
            clock: EventClock::default(),
            seq: 0,
            symbols,
            last_quote: HashMap::new(),
            gapped: HashSet::new(),
            trades_without_quote: 0,
        }
    }

    /// Inputs handed to the core so far (the last one's position is this minus one).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Handles one feed event, appending what the core produced to `out`; `true` when it was
    /// market data (a quote or a trade).
    pub fn apply<C: Clock>(&mut self, ev: FeedEvent, core: &mut DataCore<C>, out: &mut Vec<Output>) -> bool {
        match ev {
            FeedEvent::Quote { symbol, ib_time, received, bid_px, bid_sz, ask_px, ask_sz } => {
                let ts = self.arrived(&symbol, ib_time, received, core);
                if let (Some(bid), Some(ask)) = (convert::decimal(bid_px), convert::decimal(ask_px)) {
                    self.last_quote.insert(symbol.clone(), (bid, ask));
                }
                let body = RawBody::Quote {
                    bid_px: num(bid_px),
                    bid_sz: num(bid_sz),
                    ask_px: num(ask_px),
                    ask_sz: num(ask_sz),
                };
                self.process(ts, symbol, body, core, out);
                true
            }
            FeedEvent::Trade { symbol, ib_time, received, price, size } => {
                let ts = self.arrived(&symbol, ib_time, received, core);
                let (Some(&(bid, ask)), Some(px)) = (self.last_quote.get(&symbol), convert::decimal(price)) else {
                    // Tick-by-tick trades carry no aggressor; without a fresh quote it would be
                    // a guess, and a guess would bias the trade imbalance.
                    self.trades_without_quote += 1;
                    tracing::debug!(%symbol, price, "IBKR trade before any quote since the last gap; skipped.");
                    return true;
                };
                let aggressor = convert::aggressor(px, bid, ask);
                let body = RawBody::Trade { price: num(price), size: num(size), aggressor };
                self.process(ts, symbol, body, core, out);
                true
            }
            FeedEvent::Gap { symbol, received, reason } => {
                // The window the loss falls in, or the symbol's next one, carries the flag; the
                // first event after the gap flags its own window too (see `arrived`).
                let at = UnixNanos(self.clock.last().0.max(received.0));
                let targets = symbol.map_or_else(|| self.symbols.clone(), |s| vec![s]);
                tracing::warn!(symbols = ?targets, %reason, "IBKR feed gap; the affected OFI windows are flagged.");
                for s in targets {
                    core.mark_gap(&s, at);
                    self.last_quote.remove(&s);
                    self.gapped.insert(s);
                }
                false
            }
            FeedEvent::Depth { symbol, received, bids, asks } => {
                // Depth carries no IB time: the receive time, kept in order with the ticks.
                let seconds = i64::try_from(received.0 / 1_000_000_000).unwrap_or(i64::MAX);
                let ts = self.arrived(&symbol, seconds, received, core);
                let levels = |side: Levels| -> Vec<Level> {
                    side.into_iter()
                        .map_while(|(px, sz)| Some(Level { px: Price::new(px).ok()?, sz: Quantity::new(sz).ok()? }))
                        .collect()
                };
                let depth = DepthUpdate { symbol, bids: levels(bids), asks: levels(asks) };
                core.process_depth(self.seq, ts, depth, out);
                self.seq += 1;
                true
            }
            FeedEvent::Subscribed { symbol, stream } => {
                tracing::info!(%symbol, stream, "IBKR market data flowing.");
                false
            }
            FeedEvent::Refused { symbol, stream, code, retrying } => {
                tracing::warn!(%symbol, stream, code, retrying, "IBKR refused a market-data subscription.");
                false
            }
        }
    }

    /// The wall clock says `received`: event time moves to `HEARTBEAT_LAG` behind it, so windows
    /// of a quiet market close and a feed that went silent is reported stale (a live market has
    /// no next row to do either).
    pub fn heartbeat<C: Clock>(&mut self, received: UnixNanos, core: &mut DataCore<C>, out: &mut Vec<Output>) {
        let behind = UnixNanos(received.0.saturating_sub(HEARTBEAT_LAG));
        if behind > self.clock.last() {
            let seconds = i64::try_from(behind.0 / 1_000_000_000).unwrap_or(i64::MAX);
            let ts = self.clock.stamp(seconds, behind);
            core.advance_to(ts, out);
        }
    }

    /// Event time of a tick; the first tick of a symbol after a gap flags its window.
    fn arrived<C: Clock>(
        &mut self,
        symbol: &Symbol,
        ib_time: i64,
        received: UnixNanos,
        core: &mut DataCore<C>,
    ) -> UnixNanos {
        let ts = self.clock.stamp(ib_time, received);
        if self.gapped.remove(symbol) {
            core.mark_gap(symbol, ts);
        }
        ts
    }

    fn process<C: Clock>(
        &mut self,
        ts: UnixNanos,
        symbol: Symbol,
        body: RawBody,
        core: &mut DataCore<C>,
        out: &mut Vec<Output>,
    ) {
        let ev = RawEvent { seq: self.seq, pass: 0, ts, symbol, body };
        self.seq += 1;
        core.process(ev, out);
    }
}

/// Streams the configured contracts from TWS / IB Gateway until `shutdown` fires. The gateway
/// connection reconnects forever; every break is a gap in the affected symbols' OFI windows.
pub(crate) async fn run(
    cfg: &AppConfig,
    metrics: &Metrics,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let instance = cfg.instance_id();
    let client_id = format!("data-plane-{instance}");
    let Some(mut publisher) = kafka::connect(&cfg.kafka, &client_id, &[MARKET_EVENTS, OFI_EVENTS], shutdown).await?
    else {
        return Ok(());
    };
    ::ibkr::connect::log_trading_mode(cfg, "data-plane");
    let (client, notices) = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        connected = ::ibkr::connect(&cfg.ibkr) => connected?,
    };
    let client = Arc::new(client);
    health.set_broker_reachable(true);
    health.set_working(true);
    let checker = http::spawn_broker_check(Arc::clone(publisher.producer()), Arc::clone(health));

    let (tx, mut rx) = mpsc::channel(FEED_BUFFER);
    let feed_stop = shutdown.child_token();
    let feed = market::spawn(
        Arc::clone(&client),
        notices,
        &cfg.ibkr.contracts,
        cfg.ibkr.market_data_lines,
        RetryPolicy::default(),
        tx,
        feed_stop.clone(),
    );
    let symbols: Vec<Symbol> = cfg
        .ibkr
        .contracts
        .iter()
        .filter_map(|c| Symbol::new(&c.symbol).ok())
        .filter(|s| !feed.refused.contains(s))
        .collect();
    tracing::info!(symbols = ?symbols, refused = ?feed.refused, "IBKR market data starting.");

    let m = metrics.clone();
    let (acks, ack_task) = AckQueue::spawn(8192, publisher.deliveries().clone(), move |p: Pending| {
        m.publish_latency.observe(p.produced_at.elapsed().as_secs_f64());
        m.events_published.with_label_values(&[MARKET_EVENTS]).inc_by(p.market);
        m.events_published.with_label_values(&[OFI_EVENTS]).inc_by(p.ofi);
        m.ofi_windows.inc_by(p.ofi);
    });

    // Event ids derive from the stream name and the position in it: a new name per start keeps
    // two sessions' ids apart.
    let stream = format!("ibkr:{}:{}:{}", ::ibkr::connect::address(&cfg.ibkr), cfg.ibkr.client_id, market::now().0);
    let source = Arc::new(Source { plane: "data-plane".into(), instance: instance.into() });
    let mut core =
        DataCore::new(&cfg.data_plane, &stream, source, SystemClock).expecting(&crate::run::instruments(cfg));
    let mut live = LiveFeed::new(symbols);
    let mut out = Vec::new();
    let mut result = Ok(());
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let ev = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            ev = rx.recv() => {
                let Some(ev) = ev else {
                    tracing::error!("IBKR feed tasks ended on their own; stopping.");
                    break;
                };
                Some(ev)
            }
            _ = heartbeat.tick() => {
                live.heartbeat(market::now(), &mut core, &mut out);
                None
            }
        };
        if let Some(ev) = ev
            && live.apply(ev, &mut core, &mut out)
        {
            metrics.messages_processed.inc();
        }
        if out.is_empty() {
            continue;
        }
        let seq = live.seq().saturating_sub(1);
        // A broker that is down keeps the producer queue full; shutdown must still get through.
        let published = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            published = publish(&mut publisher, &mut out, (seq, false), &acks, metrics) => published,
        };
        match published {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        metrics.stale_symbols.set(i64::try_from(core.stale_symbols()).unwrap_or(i64::MAX));
    }
    feed_stop.cancel();
    drop(rx);
    for task in feed.tasks {
        let _ = task.await;
    }
    // Open windows are not published at shutdown: they are incomplete, and the next session
    // starts its own.
    drop(acks);
    match tokio::time::timeout(kafka::DRAIN_GRACE, ack_task).await {
        Ok(Ok(Err(e))) if result.is_ok() => result = Err(e.into()),
        Ok(Err(_)) if result.is_ok() => result = Err(BrokerError::TaskLost.into()),
        Err(_) => tracing::warn!(grace = ?kafka::DRAIN_GRACE, "In-flight records not acknowledged in time."),
        _ => {}
    }
    publisher.flush_at_stop();
    checker.abort();
    if let Ok(client) = Arc::try_unwrap(client) {
        client.disconnect().await;
    }
    tracing::info!(events = live.seq(), trades_without_quote = live.trades_without_quote, "IBKR source stopped.");
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use common::clock::ManualClock;
    use common::config::DataPlaneConfig;
    use common::events::{MarketEvent, OfiEvent};
    use common::types::Side;

    fn aapl() -> Symbol {
        Symbol::new("AAPL").unwrap()
    }

    fn core() -> DataCore<ManualClock> {
        let source = Arc::new(Source { plane: "data-plane".into(), instance: "t".into() });
        DataCore::new(&DataPlaneConfig::default(), "ibkr:test", source, ManualClock::new(UnixNanos(1)))
    }

    fn quote(ib_time: i64, bid: f64, ask: f64) -> FeedEvent {
        FeedEvent::Quote {
            symbol: aapl(),
            ib_time,
            received: UnixNanos(0),
            bid_px: bid,
            bid_sz: 300.0,
            ask_px: ask,
            ask_sz: 200.0,
        }
    }

    fn trade(ib_time: i64, price: f64) -> FeedEvent {
        FeedEvent::Trade { symbol: aapl(), ib_time, received: UnixNanos(0), price, size: 100.0 }
    }

    #[test]
    fn ticks_become_exact_quotes_and_trades_with_an_inferred_aggressor() {
        let (mut live, mut core, mut out) = (LiveFeed::new(vec![aapl()]), core(), Vec::new());
        assert!(live.apply(quote(10, 189.51, 189.52), &mut core, &mut out));
        assert!(live.apply(trade(10, 189.52), &mut core, &mut out));
        let market: Vec<MarketEvent> = out
            .iter()
            .filter_map(|o| match o {
                Output::Market(e) => Some(e.payload.clone()),
                _ => None,
            })
            .collect();
        let [MarketEvent::Quote(q), MarketEvent::Trade(t)] = market.as_slice() else { panic!("{market:?}") };
        assert_eq!(q.bid_px.get().to_string(), "189.51");
        assert_eq!(q.ask_sz.get().to_string(), "200");
        assert_eq!((t.price.get().to_string(), t.aggressor), ("189.52".to_owned(), Side::Buy));
        // Event time stays inside the second IB stamped, whatever the receive time says.
        let Output::Market(env) = &out[0] else { panic!() };
        assert_eq!(env.ts_event, UnixNanos(10_000_000_000));
    }

    #[test]
    fn after_a_gap_trades_wait_for_a_fresh_quote_and_the_next_window_is_flagged() {
        let (mut live, mut core, mut out) = (LiveFeed::new(vec![aapl()]), core(), Vec::new());
        live.apply(quote(10, 100.0, 100.02), &mut core, &mut out);
        live.apply(quote(11, 100.0, 100.02), &mut core, &mut out);
        let gap = FeedEvent::Gap { symbol: None, received: UnixNanos(0), reason: "connection lost".into() };
        assert!(!live.apply(gap, &mut core, &mut out));
        out.clear();
        // The pre-gap quote does not decide this trade's side.
        live.apply(trade(13, 100.01), &mut core, &mut out);
        assert_eq!(live.trades_without_quote, 1);
        live.apply(quote(13, 100.0, 100.02), &mut core, &mut out);
        live.apply(quote(14, 100.0, 100.02), &mut core, &mut out);
        let windows: Vec<(u64, bool)> = out
            .iter()
            .filter_map(|o| match o {
                // Heartbeats (quiet seconds, no quotes) carry no flag of their own.
                Output::Ofi(e) => {
                    let OfiEvent::Window(w) = &e.payload;
                    (w.n_quotes > 0).then_some((w.window_start.0 / 1_000_000_000, w.data_gap))
                }
                _ => None,
            })
            .collect();
        assert_eq!(windows, [(11, true), (13, true)]);
    }

    #[test]
    fn the_wall_clock_closes_windows_of_a_quiet_market_and_finds_a_silent_feed() {
        const S: u64 = 1_000_000_000;
        let (mut live, mut core, mut out) = (LiveFeed::new(vec![aapl()]), core(), Vec::new());
        live.apply(quote(10, 100.0, 100.02), &mut core, &mut out);
        out.clear();
        // Half a second of lag: a tick IB stamped in second 10 may still be on its way at 11.4.
        live.heartbeat(UnixNanos(10 * S + 200_000_000), &mut core, &mut out);
        live.heartbeat(UnixNanos(11 * S + 400_000_000), &mut core, &mut out);
        assert!(out.is_empty(), "{out:?}");
        live.heartbeat(UnixNanos(11 * S + 600_000_000), &mut core, &mut out);
        let [Output::Ofi(w)] = out.as_slice() else { panic!("{out:?}") };
        let OfiEvent::Window(w) = &w.payload;
        assert_eq!(w.window_start, UnixNanos(10 * S));
        // No tick for longer than the staleness limit: the symbol is reported stale.
        out.clear();
        let stale_after = DataPlaneConfig::default().quality.stale_after_ms * 1_000_000;
        live.heartbeat(UnixNanos(10 * S + stale_after + S), &mut core, &mut out);
        let stale: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Market(e) => match &e.payload {
                    MarketEvent::Status(st) => Some((st.symbol.clone(), st.status)),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(stale, [(aapl(), common::events::FeedStatus::Stale)]);
    }

    fn depth(at_ms: u64, bids: &[(Decimal, Decimal)], asks: &[(Decimal, Decimal)]) -> FeedEvent {
        FeedEvent::Depth {
            symbol: aapl(),
            received: UnixNanos(at_ms * 1_000_000),
            bids: bids.to_vec(),
            asks: asks.to_vec(),
        }
    }

    #[test]
    fn depth_snapshots_are_published_and_feed_multi_level_ofi() {
        use rust_decimal::dec;
        let (mut live, mut core, mut out) = (LiveFeed::new(vec![aapl()]), core(), Vec::new());
        let bids = [(dec!(100.00), dec!(5)), (dec!(99.99), dec!(7))];
        let asks = [(dec!(100.01), dec!(4)), (dec!(100.02), dec!(6))];
        // A window is published for a symbol with quotes in it.
        live.apply(quote(10, 100.0, 100.01), &mut core, &mut out);
        assert!(live.apply(depth(10_100, &bids, &asks), &mut core, &mut out));
        // Level 1: bid size 5 → 8 (+3), ask size 4 → 4; level 2: bid 7 → 7, ask 6 → 9 (−3).
        let bids2 = [(dec!(100.00), dec!(8)), (dec!(99.99), dec!(7))];
        let asks2 = [(dec!(100.01), dec!(4)), (dec!(100.02), dec!(9))];
        assert!(live.apply(depth(10_200, &bids2, &asks2), &mut core, &mut out));
        // Refused: crossed at the top, and levels out of order; a level that is not a valid
        // price ends its side.
        live.apply(depth(10_300, &[(dec!(100.02), dec!(1))], &asks), &mut core, &mut out);
        live.apply(depth(10_400, &[(dec!(99.99), dec!(1)), (dec!(100.00), dec!(1))], &asks), &mut core, &mut out);
        let rejected: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                Output::Rejected { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(rejected, ["crossed_book", "unordered_book"]);
        let published =
            out.iter().filter(|o| matches!(o, Output::Market(e) if matches!(e.payload, MarketEvent::Depth(_)))).count();
        assert_eq!(published, 2);
        // The window closes once time passes its end.
        live.apply(quote(12, 100.0, 100.01), &mut core, &mut out);
        let mlofi: Vec<Option<Vec<Decimal>>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Ofi(e) => {
                    let OfiEvent::Window(w) = &e.payload;
                    (w.n_quotes > 0).then(|| w.mlofi.clone())
                }
                _ => None,
            })
            .collect();
        let levels = DataPlaneConfig::default().ofi.depth_levels;
        let mut expected = vec![Decimal::ZERO; levels];
        expected[0] = dec!(3);
        expected[1] = dec!(-3);
        assert_eq!(mlofi, [Some(expected)]);
    }
}
