//! The Data Plane's synchronous core: raw rows in, envelopes and rejections out. No IO, no async,
//! no wall clock except through the injected [`Clock`] (for `ts_init` only).

use std::sync::Arc;

use common::clock::Clock;
use common::config::DataPlaneConfig;
use common::events::{DepthUpdate, Envelope, FeedStatus, MarketEvent, OfiEvent, SCHEMA_VERSION, Source, SymbolStatus};
use common::ids;
use common::types::{EventId, Symbol, UnixNanos};

use crate::ofi::{ClosedWindow, OfiEngine};
use crate::quality::{Accepted, QualityChecker, Rejection};
use crate::source::RawEvent;

/// How often, in event time, stale symbols are looked for.
const STALE_SWEEP_NS: u64 = 100_000_000;

/// What the core produced for one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A record for `market_events`.
    Market(Envelope<MarketEvent>),
    /// A record for `ofi_events`.
    Ofi(Envelope<OfiEvent>),
    /// The input was refused.
    Rejected {
        /// Why.
        reason: Rejection,
        /// Its symbol.
        symbol: Symbol,
        /// Its replay position.
        seq: u64,
    },
}

/// Quality checks, normalization and OFI for every symbol of one stream of market data.
pub struct DataCore<C> {
    clock: C,
    source: Arc<Source>,
    stream: u64,
    quality: QualityChecker,
    ofi: OfiEngine,
    closed: Vec<ClosedWindow>,
    next_sweep: u64,
    status_seq: u64,
    pass: u32,
    cfg: DataPlaneConfig,
    window: u64,
    /// Every symbol seen, and the latest event time.
    symbols: std::collections::BTreeSet<Symbol>,
    last_ts: UnixNanos,
    expected: Vec<Symbol>,
}

impl<C: Clock> DataCore<C> {
    /// A core for the stream named `stream` (event ids derive from it), writing as `source`.
    pub fn new(cfg: &DataPlaneConfig, stream: &str, source: Arc<Source>, clock: C) -> Self {
        Self {
            clock,
            source,
            stream: ids::stream_hash(stream),
            quality: QualityChecker::new(cfg.quality.clone()),
            ofi: OfiEngine::new(cfg.ofi.window_ms, cfg.ofi.depth_levels),
            closed: Vec::new(),
            next_sweep: 0,
            status_seq: 0,
            pass: 0,
            cfg: cfg.clone(),
            window: 0,
            symbols: std::collections::BTreeSet::new(),
            last_ts: UnixNanos(0),
            expected: Vec::new(),
        }
    }

    fn envelope<P>(&self, id: EventId, ts_event: UnixNanos, causation_id: Option<EventId>, payload: P) -> Envelope<P> {
        Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: id,
            source: Arc::clone(&self.source),
            ts_event,
            ts_init: self.clock.now(),
            causation_id,
            payload,
        }
    }

    /// Every window boundary also carries a window for each of `symbols` that had none (an empty
    /// heartbeat, `n_quotes = 0`), quoted yet or not: consumers that wait for every instrument
    /// before deciding then wait for event time only (see [`OfiEngine::heartbeat`]).
    pub fn expecting(mut self, symbols: &[Symbol]) -> Self {
        self.expected = symbols.to_vec();
        self.ofi.expect(symbols);
        self
    }

    /// Processes one row, appending what it produced to `out` in publication order.
    pub fn process(&mut self, ev: RawEvent, out: &mut Vec<Output>) {
        if ev.pass != self.pass {
            // A new pass of a looped replay starts from scratch, so each pass yields the windows
            // a single clean run would, and its first quotes are not judged against the last pass.
            self.finish(out);
            self.quality = QualityChecker::new(self.cfg.quality.clone());
            self.ofi = OfiEngine::new(self.cfg.ofi.window_ms, self.cfg.ofi.depth_levels);
            self.ofi.expect(&self.expected);
            self.next_sweep = 0;
            self.window = 0;
            self.pass = ev.pass;
        }
        self.advance(ev.ts, out);
        self.last_ts = self.last_ts.max(ev.ts);
        if !self.symbols.contains(&ev.symbol) {
            self.symbols.insert(ev.symbol.clone());
        }
        let checked = self.quality.check(&ev);
        let id = ids::event_id(ev.ts, self.stream, ev.seq);
        for status in checked.status {
            self.ofi.mark_gap(&status.symbol, ev.ts);
            self.push_status(ev.ts, Some(id), status, out);
        }
        match checked.verdict {
            Err(reason) => out.push(Output::Rejected { reason, symbol: ev.symbol, seq: ev.seq }),
            Ok(Accepted::Quote(q)) => {
                self.ofi.on_quote(ev.ts, id, &q, &mut self.closed);
                self.flush_windows(out);
                out.push(Output::Market(self.envelope(id, ev.ts, None, MarketEvent::Quote(q))));
            }
            Ok(Accepted::Trade(t)) => {
                self.ofi.on_trade(ev.ts, &t, &mut self.closed);
                self.flush_windows(out);
                out.push(Output::Market(self.envelope(id, ev.ts, None, MarketEvent::Trade(t))));
            }
        }
    }

    /// Time has reached `ts`: closes the windows before it and sweeps for stale symbols.
    fn advance(&mut self, ts: UnixNanos, out: &mut Vec<Output>) {
        // The input is in time order, so once time enters a new window every symbol's older
        // window is complete: publish them now rather than at each symbol's next event, so quiet
        // symbols do not hold the Strategy Plane's decisions back.
        let window_ns = self.cfg.ofi.window_ms.saturating_mul(1_000_000).max(1);
        let window = ts.0 / window_ns;
        if window > self.window {
            self.window = window;
            self.ofi.close_until(UnixNanos(window * window_ns), &mut self.closed);
            self.ofi.heartbeat(UnixNanos(window * window_ns), &mut self.closed);
            self.flush_windows(out);
        }
        if ts.0 >= self.next_sweep {
            self.next_sweep = ts.0.saturating_add(STALE_SWEEP_NS);
            self.sweep(ts, None, out);
        }
    }

    /// Time has reached `ts` with no event (a live source's clock): closes the windows before
    /// it and reports the symbols gone stale.
    pub fn advance_to(&mut self, ts: UnixNanos, out: &mut Vec<Output>) {
        self.advance(ts, out);
    }

    /// Processes one snapshot of a symbol's book at input position `seq` (a live source's depth
    /// feed): published to `market_events` as `depth` and added to the window's multi-level OFI.
    /// A book that is not strictly ordered best first, or crossed or locked at the top, is
    /// refused with the matching reason; an empty side carries no levels to compare and is
    /// skipped.
    pub fn process_depth(&mut self, seq: u64, ts: UnixNanos, depth: DepthUpdate, out: &mut Vec<Output>) {
        self.advance(ts, out);
        let refused = |reason| Output::Rejected { reason, symbol: depth.symbol.clone(), seq };
        let (Some(bid), Some(ask)) = (depth.bids.first(), depth.asks.first()) else { return };
        if bid.px > ask.px {
            out.push(refused(Rejection::CrossedBook));
            return;
        }
        if bid.px == ask.px {
            out.push(refused(Rejection::LockedBook));
            return;
        }
        let ordered =
            depth.bids.windows(2).all(|w| w[0].px > w[1].px) && depth.asks.windows(2).all(|w| w[0].px < w[1].px);
        if !ordered {
            out.push(refused(Rejection::UnorderedBook));
            return;
        }
        let id = ids::event_id(ts, self.stream, seq);
        self.ofi.on_depth(ts, &depth, &mut self.closed);
        self.flush_windows(out);
        out.push(Output::Market(self.envelope(id, ts, None, MarketEvent::Depth(depth))));
    }

    /// A pass of the input has ended: closes every open window.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.ofi.finish(&mut self.closed);
        self.flush_windows(out);
    }

    /// The whole input has ended: closes every open window, then says so for every symbol, at
    /// the input's last event time (a simulated venue then executes what waits for a quote).
    pub fn end(&mut self, out: &mut Vec<Output>) {
        self.finish(out);
        let ts = self.last_ts;
        for symbol in std::mem::take(&mut self.symbols) {
            let identity = format!("ended:{}:{symbol}:{}", self.stream, ts.0);
            let id = EventId(ids::derive_uuid(ts, identity.as_bytes()));
            let status = SymbolStatus { symbol, status: FeedStatus::Ended, last_update: ts };
            out.push(Output::Market(self.envelope(id, ts, None, MarketEvent::Status(status))));
        }
    }

    /// Symbols currently stale.
    pub fn stale_symbols(&self) -> usize {
        self.quality.stale_count()
    }

    /// `symbol`'s feed had a break noticed at `ts` (event time): its window holding `ts`, or its
    /// next one, is published with `data_gap = true`, and its next quote starts the flow afresh.
    pub fn mark_gap(&mut self, symbol: &Symbol, ts: UnixNanos) {
        self.ofi.mark_gap(symbol, ts);
    }

    fn sweep(&mut self, now: UnixNanos, cause: Option<EventId>, out: &mut Vec<Output>) {
        for status in self.quality.sweep_stale(now) {
            self.push_status(now, cause, status, out);
        }
    }

    fn push_status(&mut self, ts: UnixNanos, cause: Option<EventId>, status: SymbolStatus, out: &mut Vec<Output>) {
        self.status_seq += 1;
        let identity = format!("status:{}:{}:{}:{}", self.stream, status.symbol, ts.0, self.status_seq);
        let id = EventId(ids::derive_uuid(ts, identity.as_bytes()));
        out.push(Output::Market(self.envelope(id, ts, cause, MarketEvent::Status(status))));
    }

    fn flush_windows(&mut self, out: &mut Vec<Output>) {
        for closed in std::mem::take(&mut self.closed) {
            let w = closed.window;
            // A looped replay can give two passes a window with the same start: the pass tells
            // them apart.
            let identity = format!("ofi:{}:{}:{}:{}", self.stream, self.pass, w.symbol, w.window_start.0);
            let id = EventId(ids::derive_uuid(w.window_end, identity.as_bytes()));
            out.push(Output::Ofi(self.envelope(id, w.window_end, closed.last_quote, OfiEvent::Window(w))));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::source::{Num, RawBody};
    use common::clock::ManualClock;
    use common::events::OfiWindow;
    use rust_decimal::Decimal;

    fn quote(seq: u64, ts: u64, bid: i64) -> RawEvent {
        let n = |v: i64| Num::Value(Decimal::from(v));
        RawEvent {
            seq,
            pass: 0,
            ts: UnixNanos(ts),
            symbol: Symbol::new("AAPL").unwrap(),
            body: RawBody::Quote { bid_px: n(bid), bid_sz: n(10), ask_px: n(bid + 1), ask_sz: n(10) },
        }
    }

    fn windows(out: &[Output]) -> Vec<OfiWindow> {
        out.iter()
            .filter_map(|o| match o {
                Output::Ofi(env) => {
                    let OfiEvent::Window(w) = &env.payload;
                    Some(w.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_marked_gap_flags_the_next_window_only() {
        let source = Arc::new(Source { plane: "data-plane".into(), instance: "t".into() });
        let mut core = DataCore::new(&DataPlaneConfig::default(), "ibkr:test", source, ManualClock::new(UnixNanos(1)));
        let mut out = Vec::new();
        core.process(quote(0, 1_000_000_000, 100), &mut out);
        core.process(quote(1, 1_500_000_000, 100), &mut out);
        // The feed drops after the second window is over and comes back in the third.
        let symbol = Symbol::new("AAPL").unwrap();
        core.mark_gap(&symbol, UnixNanos(2_500_000_000));
        core.process(quote(2, 2_600_000_000, 100), &mut out);
        core.process(quote(3, 3_100_000_000, 100), &mut out);
        core.finish(&mut out);
        let gaps: Vec<(u64, bool)> = windows(&out).iter().map(|w| (w.window_start.0, w.data_gap)).collect();
        assert_eq!(gaps, [(1_000_000_000, false), (2_000_000_000, true), (3_000_000_000, false)]);
    }

    #[test]
    fn two_passes_of_a_loop_never_share_a_window_id() {
        let source = Arc::new(Source { plane: "data-plane".into(), instance: "t".into() });
        let mut core = DataCore::new(&DataPlaneConfig::default(), "replay:t", source, ManualClock::new(UnixNanos(1)));
        let mut out = Vec::new();
        // The second pass starts inside the window where the first one ended.
        core.process(quote(0, 1_000_000_000, 100), &mut out);
        core.process(quote(1, 1_200_000_000, 101), &mut out);
        core.process(RawEvent { pass: 1, ..quote(2, 1_700_000_000, 100) }, &mut out);
        core.finish(&mut out);
        let ids: Vec<(u64, EventId)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Ofi(env) => Some((env.ts_event.0, env.event_id)),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 2, "one window per pass");
        assert_eq!(ids[0].0, ids[1].0, "the same window of time");
        assert_ne!(ids[0].1, ids[1].1, "distinct events");
    }
}
