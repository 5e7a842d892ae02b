//! The simulated venue: executes risk-approved orders against the replayed or live market data
//! in **event time**, so that the same input and configuration give the same fills at any replay
//! speed and however the plane's input topics interleave (docs/architecture.md, "Simulated
//! execution").
//!
//! - **Arrival.** An order reaches the venue `latency` after its decision: a fixed part plus a
//!   log-normal part drawn from a hash of the seed and the intent id (never from the order in
//!   which intents reach the plane), capped at `latency_max_ms`. Orders of one symbol arrive in
//!   the order they were sent, as on one session: an arrival is never before the previous one.
//! - **The book in effect** at arrival is the symbol's last snapshot at or before that time. It is
//!   known once the symbol's market data has moved past the arrival (any event of the symbol
//!   later than it, or the end of the input); until then the order waits. When the plane's market
//!   data is already past the arrival, the snapshot comes from a per-symbol history, kept from
//!   the latest decision mark on (at most `history_limit` snapshots).
//! - **Liquidity.** An order takes the displayed levels of the book in effect (the quote's best
//!   level, and the published depth behind it), best first; what it takes is gone for the next
//!   order on the same snapshot. Beyond the displayed size, the rest fills at one price
//!   `impact_coefficient · σ_bps · sqrt(rest / volume)` basis points past the deepest level (the
//!   square-root law the cost model learns), or not at all without a volume and volatility
//!   estimate.
//! - **Protection.** A market order carries an implicit limit at the mark ± `price_collar_bps`;
//!   what is not fillable inside it is cancelled with that reason.
//! - **Resting limit orders** (`day`, `gtc`) join the back of the displayed queue at their price:
//!   trades at that price first use up the queue ahead (which cancellations can only shorten),
//!   then fill the order; a trade through the price, or an opposite quote that crosses it, fills
//!   it at once. Such fills are maker fills at the limit price. `day` orders end at the first
//!   market event of a later UTC day. The book lives in memory: a restart cancels them.

use std::collections::{HashMap, VecDeque};

use common::config::OrderPlaneConfig;
use common::events::{DepthUpdate, FeedStatus, IntentId, MarketEvent, OrderType, Quote, TimeInForce};
use common::types::{Side, Symbol, SymbolMap, UnixNanos};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use smallvec::SmallVec;

use crate::order::Order;
use crate::risk::{Mark, RiskApproved};
use crate::venue::{MarkAt, Venue, VenueEvent};

const DAY_NS: u64 = 86_400_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;

/// The simulated delay between decision and arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    fixed_ns: u64,
    median_ns: f64,
    sigma: f64,
    seed: u64,
    max_ns: u64,
}

impl LatencyModel {
    /// The model the configuration describes.
    pub fn new(cfg: &OrderPlaneConfig) -> Self {
        Self {
            fixed_ns: cfg.latency_ms.saturating_mul(1_000_000),
            median_ns: cfg.latency_jitter_ms * 1e6,
            sigma: cfg.latency_jitter_sigma,
            seed: cfg.latency_seed,
            max_ns: cfg.latency_max_ms.saturating_mul(1_000_000),
        }
    }

    /// A fixed delay of `ms`, no random part.
    pub fn fixed(ms: u64) -> Self {
        let ns = ms.saturating_mul(1_000_000);
        Self { fixed_ns: ns, median_ns: 0.0, sigma: 0.0, seed: 0, max_ns: ns }
    }

    /// The delay of `intent`'s order, nanoseconds. Two uniforms come from a hash of the seed and
    /// the intent id (Box–Muller turns them into a normal draw), so the delay of an order does not
    /// depend on which orders the plane saw before it.
    pub fn delay_ns(&self, intent: IntentId) -> u64 {
        if self.median_ns <= 0.0 {
            return self.fixed_ns.min(self.max_ns);
        }
        let mut identity = [0u8; 24];
        identity[..8].copy_from_slice(&self.seed.to_le_bytes());
        identity[8..].copy_from_slice(intent.0.as_bytes());
        let hash = xxhash_rust::xxh3::xxh3_128(&identity);
        let unit = |bits: u64| (bits >> 11) as f64 / (1u64 << 53) as f64;
        let u1 = 1.0 - unit(hash as u64); // (0, 1]: the logarithm stays finite
        let u2 = unit((hash >> 64) as u64);
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let jitter = self.median_ns * (self.sigma * z).exp();
        // |z| < 8.6, so the jitter is finite; the cap bounds it.
        let jitter = if jitter.is_finite() { jitter.min(self.max_ns as f64) as u64 } else { self.max_ns };
        self.fixed_ns.saturating_add(jitter).min(self.max_ns)
    }
}

/// Settings of the simulated venue.
#[derive(Debug, Clone)]
pub struct SimulatedConfig {
    /// Decision → arrival.
    pub latency: LatencyModel,
    /// Market orders fill only within this many basis points of the mark.
    pub collar_bps: Decimal,
    /// Scale of the square-root impact beyond the displayed size.
    pub impact_coefficient: f64,
    /// Horizon of the traded volume and of the volatility estimate.
    pub volume_window_ns: u64,
    /// Most snapshots kept per symbol.
    pub history_limit: usize,
    /// Each symbol's tick size (impact prices are rounded to it, against the order).
    pub ticks: HashMap<Symbol, Decimal>,
}

impl SimulatedConfig {
    /// The settings the configuration describes.
    pub fn new(cfg: &OrderPlaneConfig, ticks: HashMap<Symbol, Decimal>) -> Self {
        Self {
            latency: LatencyModel::new(cfg),
            collar_bps: cfg.price_collar_bps,
            impact_coefficient: cfg.impact_coefficient,
            volume_window_ns: cfg.impact_volume_window_s.saturating_mul(SECOND_NS),
            history_limit: cfg.history_limit.max(2),
            ticks,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Level {
    px: Decimal,
    left: Decimal,
}

/// A side of a snapshot: the quote's one level, and depth beyond it when the feed has depth.
type Levels = SmallVec<[Level; 1]>;

#[derive(Debug)]
struct Snapshot {
    ts: UnixNanos,
    bids: Levels,
    asks: Levels,
    mid: Decimal,
    sigma_bps: f64,
    volume: Decimal,
}

#[derive(Debug)]
enum Entry {
    Book(Snapshot),
    Trade { ts: UnixNanos, px: Decimal, left: Decimal, aggressor: Side },
}

impl Entry {
    fn ts(&self) -> UnixNanos {
        match self {
            Self::Book(s) => s.ts,
            Self::Trade { ts, .. } => *ts,
        }
    }
}

#[derive(Debug)]
struct Working {
    order: Order,
    arrival: UnixNanos,
    leaves: Decimal,
    /// Displayed quantity ahead of a resting order at its price; `None` until the price is shown.
    queue_ahead: Option<Decimal>,
}

/// One symbol's market as the venue sees it, and its orders.
#[derive(Debug, Default)]
struct SymbolBook {
    /// Snapshots and trades, oldest first, from the one in effect at `keep_from` on.
    history: VecDeque<Entry>,
    /// Whether the cap made the history forget snapshots it would have kept.
    truncated: bool,
    quote: Option<Quote>,
    depth: Option<DepthUpdate>,
    trades: VecDeque<(UnixNanos, Decimal)>,
    volume: Decimal,
    /// (second, mid at its first quote) of the latest second seen.
    second: Option<(u64, f64)>,
    /// Squared one-second log returns inside the window.
    returns: VecDeque<(u64, f64)>,
    /// Volatility of `returns`, in bps; they change once a second, quotes many times.
    sigma_bps: f64,
    /// The oldest time of the last trim that dropped what came before its snapshot in effect,
    /// while nothing at or before it has been added since: trimming there again drops nothing.
    trimmed_at: Option<UnixNanos>,
    /// Latest market event time of the symbol.
    market_ts: Option<UnixNanos>,
    ended: bool,
    pending: VecDeque<Working>,
    resting: Vec<Working>,
    last_arrival: UnixNanos,
    keep_from: UnixNanos,
    /// (second, input position of the symbol's first event in it), far enough back that reading
    /// again from the oldest rebuilds every snapshot held now, volatility and volume included.
    restart: VecDeque<(u64, u64)>,
    /// Input position of the next event (the shell's).
    position: u64,
}

impl SymbolBook {
    fn update_sigma(&mut self) {
        self.sigma_bps = if self.returns.is_empty() {
            0.0
        } else {
            let mean = self.returns.iter().map(|(_, r2)| r2).sum::<f64>() / self.returns.len() as f64;
            mean.sqrt() * 1e4
        };
    }

    /// The book at `ts`: the quote, with the depth beyond it.
    fn snapshot(&self, ts: UnixNanos) -> Option<Snapshot> {
        let level = |px: Decimal, sz: Decimal| Level { px, left: sz };
        let (mut bids, mut asks) = match &self.quote {
            Some(q) => (
                Levels::from_elem(level(q.bid_px.get(), q.bid_sz.get()), 1),
                Levels::from_elem(level(q.ask_px.get(), q.ask_sz.get()), 1),
            ),
            None => (Levels::new(), Levels::new()),
        };
        if let Some(d) = &self.depth {
            let (best_bid, best_ask) = (bids.first().map(|l| l.px), asks.first().map(|l| l.px));
            bids.extend(
                d.bids
                    .iter()
                    .filter(|l| best_bid.is_none_or(|b| l.px.get() < b))
                    .map(|l| level(l.px.get(), l.sz.get())),
            );
            asks.extend(
                d.asks
                    .iter()
                    .filter(|l| best_ask.is_none_or(|a| l.px.get() > a))
                    .map(|l| level(l.px.get(), l.sz.get())),
            );
        }
        let mid = common::num::mid(bids.first()?.px, asks.first()?.px);
        Some(Snapshot { ts, bids, asks, mid, sigma_bps: self.sigma_bps, volume: self.volume })
    }

    /// Adds a snapshot or trade, and lets the resting orders meet it.
    fn push(&mut self, mut entry: Entry, out: &mut Vec<VenueEvent>) {
        self.resting.retain_mut(|w| !rest_on(w, &mut entry, out));
        if self.trimmed_at.is_some_and(|t| entry.ts() <= t) {
            self.trimmed_at = None;
        }
        self.history.push_back(entry);
    }

    /// Index of the last snapshot at or before `ts`.
    fn in_effect(&self, ts: UnixNanos) -> Option<usize> {
        let after = self.history.partition_point(|e| e.ts() <= ts);
        (0..after).rev().find(|&i| matches!(self.history[i], Entry::Book(_)))
    }

    /// Whether the book in effect at `ts` is known: market data has moved past it.
    fn passed(&self, ts: UnixNanos) -> bool {
        self.ended || self.market_ts.is_some_and(|m| m > ts)
    }

    fn mark_at(&self, ts: UnixNanos) -> Option<Mark> {
        let i = self.in_effect(ts)?;
        match &self.history[i] {
            Entry::Book(s) => Some(Mark { mid: s.mid, ts: s.ts }),
            Entry::Trade { .. } => None,
        }
    }

    /// Forgets what no order can need any more: everything before the snapshot in effect at the
    /// oldest time an order may still arrive or decide at; and beyond the cap, the oldest.
    fn trim(&mut self, limit: usize) {
        let oldest = self.pending.front().map_or(self.keep_from, |w| w.arrival.min(self.keep_from));
        if self.trimmed_at != Some(oldest) {
            if let Some(i) = self.in_effect(oldest) {
                self.history.drain(..i);
            }
            self.trimmed_at = Some(oldest);
        }
        while self.history.len() > limit {
            self.history.pop_front();
            self.truncated = true;
            self.trimmed_at = None;
        }
    }

    /// Drops restart points older than needed: the estimates of the oldest snapshot held look
    /// back `horizon_s` whole seconds (and a return needs the second before).
    fn trim_restart(&mut self, horizon_s: u64) {
        let Some(oldest) = self.history.front().map(Entry::ts).or(self.market_ts) else { return };
        let bound = (oldest.0 / SECOND_NS).saturating_sub(horizon_s + 2);
        while self.restart.get(1).is_some_and(|(sec, _)| *sec <= bound) {
            self.restart.pop_front();
        }
    }
}

/// The default venue while live trading is off (see the module documentation).
#[derive(Debug)]
pub struct SimulatedVenue {
    cfg: SimulatedConfig,
    books: SymbolMap<SymbolBook>,
}

impl SimulatedVenue {
    /// A venue with nothing seen yet.
    pub fn new(cfg: SimulatedConfig) -> Self {
        Self { cfg, books: SymbolMap::default() }
    }

    /// A venue with a fixed latency and the default collar and impact (tests).
    pub fn with_latency(latency_ms: u64, ticks: HashMap<Symbol, Decimal>) -> Self {
        let defaults = OrderPlaneConfig::default();
        let mut cfg = SimulatedConfig::new(&defaults, ticks);
        cfg.latency = LatencyModel::fixed(latency_ms);
        Self::new(cfg)
    }

    /// How many symbols it keeps a book for.
    pub fn symbols(&self) -> usize {
        self.books.len()
    }

    /// Snapshots held for `symbol` now.
    pub fn history_len(&self, symbol: &Symbol) -> usize {
        self.books.get(symbol).map_or(0, |b| b.history.len())
    }
}

impl SimulatedConfig {
    fn tick(&self, symbol: &Symbol) -> Decimal {
        self.ticks.get(symbol).copied().unwrap_or(Decimal::new(1, 2))
    }
}

/// What of the venue's settings an execution needs.
struct Rules {
    collar_bps: Decimal,
    impact_coefficient: f64,
    tick: Decimal,
}

/// Executes `w` at its arrival against snapshot `s`; `true` when the order is finished.
fn arrive(rules: &Rules, w: &mut Working, s: &mut Snapshot, out: &mut Vec<VenueEvent>) -> bool {
    let (id, ts, side) = (w.order.intent_id, w.arrival, w.order.side);
    let half_spread_bps = match (s.bids.first(), s.asks.first()) {
        (Some(b), Some(a)) => ((a.px - b.px) / Decimal::TWO / s.mid * Decimal::from(10_000)).to_f64().unwrap_or(0.0),
        _ => 0.0,
    };
    let volume = s.volume.to_f64().unwrap_or(0.0);
    let qty = w.order.qty.to_f64().unwrap_or(0.0);
    let impact = if volume > 0.0 { s.sigma_bps * (qty / volume).sqrt() } else { 0.0 };
    out.push(VenueEvent::Arrived { intent_id: id, mid: s.mid, half_spread_bps, impact, ts });
    out.push(VenueEvent::Accepted { intent_id: id, order_id: format!("SIM-{id}"), ts });
    let market = w.order.order_type == OrderType::Market;
    let collar = s.mid * rules.collar_bps / Decimal::from(10_000);
    let bound = match (w.order.order_type, w.order.limit_price) {
        (OrderType::Limit, Some(limit)) => limit,
        _ => match side {
            Side::Buy => s.mid + collar,
            Side::Sell => s.mid - collar,
        },
    };
    let inside = |px: Decimal| match side {
        Side::Buy => px <= bound,
        Side::Sell => px >= bound,
    };
    let levels = match side {
        Side::Buy => &mut s.asks,
        Side::Sell => &mut s.bids,
    };
    let mut blocked = false;
    for level in levels.iter_mut() {
        if w.leaves <= Decimal::ZERO {
            break;
        }
        if !inside(level.px) {
            blocked = true;
            break;
        }
        let qty = w.leaves.min(level.left);
        if qty > Decimal::ZERO {
            out.push(VenueEvent::Fill { intent_id: id, px: level.px, qty, ts, exec: None, maker: false });
            level.left -= qty;
            w.leaves -= qty;
        }
    }
    let deepest = levels.last().map(|l| l.px);
    let rests = !market && w.order.tif != TimeInForce::Ioc;
    if w.leaves > Decimal::ZERO && !blocked && !rests {
        // Beyond the displayed size: one price on the square-root law, rounded against the order.
        if let Some(px) = deepest.and_then(|base| impact_price(rules, side, base, w.leaves, s)) {
            if inside(px) {
                out.push(VenueEvent::Fill { intent_id: id, px, qty: w.leaves, ts, exec: None, maker: false });
                w.leaves = Decimal::ZERO;
            } else {
                blocked = true;
            }
        }
    }
    if w.leaves <= Decimal::ZERO {
        return true;
    }
    if rests {
        let own = match side {
            Side::Buy => &s.bids,
            Side::Sell => &s.asks,
        };
        w.queue_ahead = queue_at(own, side, bound);
        return false;
    }
    let detail = if market && blocked {
        format!("price collar: the rest is not fillable within {} bps of mark {}", rules.collar_bps, s.mid.normalize())
    } else if market {
        "no liquidity beyond the displayed size (no volume or volatility estimate yet)".to_owned()
    } else {
        "immediate-or-cancel remainder".to_owned()
    };
    out.push(VenueEvent::Cancelled { intent_id: id, detail, ts });
    true
}

/// The price of `rest` beyond the deepest displayed level `base`, or `None` without estimates.
fn impact_price(rules: &Rules, side: Side, base: Decimal, rest: Decimal, s: &Snapshot) -> Option<Decimal> {
    let volume = s.volume.to_f64().filter(|v| *v > 0.0)?;
    let rest = rest.to_f64()?;
    if s.sigma_bps <= 0.0 {
        return None;
    }
    let bps = rules.impact_coefficient * s.sigma_bps * (rest / volume).sqrt();
    let away = base * Decimal::from_f64(bps)? / Decimal::from(10_000);
    let tick = rules.tick;
    let px = match side {
        Side::Buy => ((base + away) / tick).ceil() * tick,
        Side::Sell => ((base - away) / tick).floor() * tick,
    };
    (px > Decimal::ZERO).then(|| px.normalize())
}

/// Displayed quantity ahead of a new resting order at `px` on its own side: the level's size,
/// none when the order improves the best price, unknown when its price is not displayed.
fn queue_at(own: &[Level], side: Side, px: Decimal) -> Option<Decimal> {
    let better = |a: Decimal, b: Decimal| match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    };
    match own.first() {
        None => Some(Decimal::ZERO),
        Some(best) if better(px, best.px) => Some(Decimal::ZERO),
        _ => own.iter().find(|l| l.px == px).map(|l| l.left),
    }
}

/// A resting order meets one later entry; `true` when it is finished.
fn rest_on(w: &mut Working, entry: &mut Entry, out: &mut Vec<VenueEvent>) -> bool {
    let (id, side) = (w.order.intent_id, w.order.side);
    let Some(limit) = w.order.limit_price else { return true };
    let ts = entry.ts();
    if w.order.tif == TimeInForce::Day && ts.0 / DAY_NS > w.order.decided_at.0 / DAY_NS {
        out.push(VenueEvent::Cancelled { intent_id: id, detail: "day order expired".into(), ts });
        return true;
    }
    let crosses = |px: Decimal| match side {
        Side::Buy => px <= limit,
        Side::Sell => px >= limit,
    };
    match entry {
        Entry::Book(s) => {
            let (opposite, own) = match side {
                Side::Buy => (&mut s.asks, &s.bids),
                Side::Sell => (&mut s.bids, &s.asks),
            };
            // Cancellations ahead shorten the queue; newcomers join behind.
            if let Some(seen) = queue_at(own, side, limit) {
                w.queue_ahead = Some(w.queue_ahead.map_or(seen, |q| q.min(seen)));
            }
            for level in opposite.iter_mut().take_while(|l| crosses(l.px)) {
                let qty = w.leaves.min(level.left);
                if qty > Decimal::ZERO {
                    out.push(VenueEvent::Fill { intent_id: id, px: limit, qty, ts, exec: None, maker: true });
                    level.left -= qty;
                    w.leaves -= qty;
                }
            }
        }
        Entry::Trade { px, left, aggressor, .. } => {
            // Only trades against this order's side reach its queue.
            if *aggressor == side || !crosses(*px) || *left <= Decimal::ZERO {
                return false;
            }
            let mut volume = *left;
            if *px == limit {
                let ahead = w.queue_ahead.unwrap_or(Decimal::MAX);
                let used = ahead.min(volume);
                w.queue_ahead = Some(ahead - used);
                volume -= used;
            }
            let qty = w.leaves.min(volume);
            if qty > Decimal::ZERO {
                out.push(VenueEvent::Fill { intent_id: id, px: limit, qty, ts, exec: None, maker: true });
                w.leaves -= qty;
                *left -= qty;
            }
        }
    }
    w.leaves <= Decimal::ZERO
}

/// Executes `w` now that the book in effect at its arrival is known; a resting remainder then
/// meets every later entry already in the history, and rests.
fn resolve(cfg: &SimulatedConfig, book: &mut SymbolBook, mut w: Working, out: &mut Vec<VenueEvent>) {
    let rules = Rules {
        collar_bps: cfg.collar_bps,
        impact_coefficient: cfg.impact_coefficient,
        tick: cfg.tick(&w.order.symbol),
    };
    let id = w.order.intent_id;
    let Some(i) = book.in_effect(w.arrival) else {
        let detail = if book.truncated {
            "no market data at arrival: the quote history no longer reaches back to it"
        } else {
            "no quote at or before the order's arrival"
        };
        out.push(VenueEvent::Rejected { intent_id: id, detail: detail.into(), ts: w.arrival });
        return;
    };
    let Entry::Book(s) = &mut book.history[i] else { return };
    if arrive(&rules, &mut w, s, out) {
        return;
    }
    for entry in book.history.iter_mut().skip(i + 1) {
        if rest_on(&mut w, entry, out) {
            return;
        }
    }
    book.resting.push(w);
}

/// Resolves the orders that arrived before `ts`, then adds `entry` at `ts` and trims.
fn on_entry(
    cfg: &SimulatedConfig,
    book: &mut SymbolBook,
    ts: UnixNanos,
    entry: Option<Entry>,
    out: &mut Vec<VenueEvent>,
) {
    // Orders that arrived before this event meet the book in effect before it.
    while book.pending.front().is_some_and(|w| w.arrival < ts || book.ended) {
        let Some(w) = book.pending.pop_front() else { break };
        resolve(cfg, book, w, out);
    }
    if let Some(entry) = entry {
        book.push(entry, out);
    }
    book.trim(cfg.history_limit);
}

impl Venue for SimulatedVenue {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn place(&mut self, order: RiskApproved<Order>, out: &mut Vec<VenueEvent>) {
        let order = order.into_inner();
        let delay = self.cfg.latency.delay_ns(order.intent_id);
        let book = self.books.entry(order.symbol.clone()).or_default();
        let arrival = UnixNanos(order.decided_at.0.saturating_add(delay)).max(book.last_arrival);
        book.last_arrival = arrival;
        let w = Working { leaves: order.qty, order, arrival, queue_ahead: None };
        if book.passed(arrival) {
            resolve(&self.cfg, book, w, out);
        } else {
            book.pending.push_back(w);
        }
    }

    fn cancel(&mut self, intent_id: IntentId, ts: UnixNanos, detail: &str, out: &mut Vec<VenueEvent>) -> bool {
        for book in self.books.values_mut() {
            let found = if let Some(i) = book.resting.iter().position(|w| w.order.intent_id == intent_id) {
                book.resting.remove(i);
                true
            } else if let Some(i) = book.pending.iter().position(|w| w.order.intent_id == intent_id) {
                book.pending.remove(i);
                true
            } else {
                false
            };
            if found {
                out.push(VenueEvent::Cancelled { intent_id, detail: detail.into(), ts });
                return true;
            }
        }
        false
    }

    fn on_quote(&mut self, ts: UnixNanos, quote: &Quote, out: &mut Vec<VenueEvent>) {
        self.on_market(ts, &MarketEvent::Quote(quote.clone()), out);
    }

    fn on_market(&mut self, ts: UnixNanos, event: &MarketEvent, out: &mut Vec<VenueEvent>) {
        let cfg = &self.cfg;
        let window = cfg.volume_window_ns;
        let book = self.books.entry(event.symbol().clone()).or_default();
        // Each symbol's events come in event-time order on its partition; an older one is a
        // re-delivery and would move the book back.
        if book.market_ts.is_some_and(|m| ts < m) {
            return;
        }
        book.market_ts = Some(ts);
        let sec = ts.0 / SECOND_NS;
        if book.restart.back().is_none_or(|(s, _)| *s < sec) {
            book.restart.push_back((sec, book.position));
        }
        let entry = match event {
            MarketEvent::Quote(q) => {
                // The mid is needed once a second, at the first quote of each.
                let mid = || q.mid().to_f64().unwrap_or(f64::NAN);
                let mut returns_changed = false;
                match book.second {
                    Some((s, last)) if sec > s => {
                        let mid = mid();
                        let r = (mid / last).ln();
                        if r.is_finite() {
                            book.returns.push_back((sec, r * r));
                            returns_changed = true;
                        }
                        book.second = Some((sec, mid));
                    }
                    None => book.second = Some((sec, mid())),
                    _ => {}
                }
                let horizon = window / SECOND_NS;
                while book.returns.front().is_some_and(|(s, _)| sec.saturating_sub(*s) > horizon) {
                    book.returns.pop_front();
                    returns_changed = true;
                }
                if returns_changed {
                    book.update_sigma();
                }
                book.quote = Some(q.clone());
                book.snapshot(ts).map(Entry::Book)
            }
            MarketEvent::Depth(d) => {
                book.depth = Some(d.clone());
                book.snapshot(ts).map(Entry::Book)
            }
            MarketEvent::Trade(t) => {
                book.trades.push_back((ts, t.size.get()));
                book.volume += t.size.get();
                while book.trades.front().is_some_and(|(at, _)| ts.saturating_sub(*at) > window) {
                    if let Some((_, size)) = book.trades.pop_front() {
                        book.volume -= size;
                    }
                }
                Some(Entry::Trade { ts, px: t.price.get(), left: t.size.get(), aggressor: t.aggressor })
            }
            MarketEvent::Status(s) => {
                if s.status == FeedStatus::Ended {
                    book.ended = true;
                }
                None
            }
        };
        on_entry(cfg, book, ts, entry, out);
        book.trim_restart(window / SECOND_NS);
    }

    fn restart_position(&self, symbol: &Symbol) -> Option<u64> {
        self.books.get(symbol)?.restart.front().map(|(_, position)| *position)
    }

    fn at_position(&mut self, symbol: &Symbol, position: u64) {
        self.books.entry(symbol.clone()).or_default().position = position;
    }

    fn mark_at(&self, symbol: &Symbol, ts: UnixNanos) -> MarkAt {
        match self.books.get(symbol) {
            Some(book) if book.passed(ts) => book.mark_at(ts).map_or(MarkAt::Unknown, MarkAt::Known),
            _ => MarkAt::NotYet,
        }
    }

    fn decided(&mut self, symbol: &Symbol, upto: UnixNanos) {
        let limit = self.cfg.history_limit;
        let book = self.books.entry(symbol.clone()).or_default();
        book.keep_from = book.keep_from.max(upto);
        book.trim(limit);
    }

    fn working(&self) -> Vec<IntentId> {
        let mut ids: Vec<IntentId> =
            self.books.values().flat_map(|b| b.pending.iter().chain(&b.resting).map(|w| w.order.intent_id)).collect();
        ids.sort();
        ids
    }
}
