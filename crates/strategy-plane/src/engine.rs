//! The Strategy Plane's synchronous core: `ofi_events`, `market_events` and `exec_reports` in,
//! `order_intents` out. Time is the events' own; the clock only stamps `ts_init`.
//!
//! Decisions run on OFI event time, every `decision_interval_ms`, and depend only on the OFI
//! stream, past fills and halts, never on how the plane's input topics interleave: the same
//! inputs give byte-identical intents (ids included), which is what lets the Order Plane drop a
//! repeated intent after a crash. To that end a decision waits until every intent of an earlier
//! decision has its final report (the simulated venue answers within `latency_max_ms`, below the
//! decision interval), so it sees the same fills whatever the replay speed; and each decision
//! ends with a [`DecisionMark`] per symbol, which tells the Order Plane that no older intent of
//! the symbol will come.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use common::clock::Clock;
use common::config::{AppConfig, FeeSchedule, InstrumentConfig, RiskConfig, StrategyPlaneConfig};
use common::core::{Core, Event, Topic};
use common::dedup::{Dedup, Recent};
use common::events::{
    CostModelUpdate, DecisionMark, Envelope, ExecEvent, IntentEvent, IntentId, MarketEvent, OfiEvent, OrderIntent,
    OrderType, SCHEMA_VERSION, SignalValue, Source, TimeInForce,
};
use common::num::to_f64;
use common::types::{EventId, MAX_MAGNITUDE, Side, Symbol, SymbolMap, UnixNanos};
use common::{fees, ids};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;

use crate::covariance::EwmaCovariance;
use crate::optimizer::{Asset, Problem, Trading, optimize};
use crate::positions::Book;
use crate::signals::{Forecast, SIGNALS, SymbolSignals};
use crate::snapshot::StrategyLedger;

/// What the core has counted (the shell mirrors these into metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Forecasts produced (one per warmed-up OFI window).
    pub signals: u64,
    /// Portfolio decisions made.
    pub decisions: u64,
    /// Decisions skipped because trading is halted.
    pub halted_decisions: u64,
    /// Decisions the solver could not finish.
    pub solver_failures: u64,
    /// Events about symbols outside the configured instruments.
    pub unknown_symbol: u64,
    /// Exec reports for intents this plane did not issue (or issued before its history).
    pub unknown_intent: u64,
    /// Re-delivered `ofi_events` records dropped.
    pub duplicate_ofi: u64,
    /// Re-delivered `market_events` records dropped.
    pub duplicate_market: u64,
}

#[derive(Debug, Clone)]
struct Latest {
    window_start: UnixNanos,
    window_end: UnixNanos,
    ret: f64,
    counted: bool,
    mid: Decimal,
    half_spread_bps: f64,
    forecast: Option<Forecast>,
    cause: EventId,
    /// Σ trade sizes in the window.
    volume: f64,
}

/// One symbol of a decision.
struct Candidate {
    symbol: Symbol,
    /// The latest window, when fresh.
    latest: Option<Latest>,
    forecast: Option<Forecast>,
    /// The position, filled and in flight, at the latest mid (account currency, signed).
    value: Decimal,
    trading: Trading,
    cost: Cost,
}

/// What trading a symbol is expected to cost.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    /// Fees per unit of value traded (the schedule's rate; a fixed part is judged per order).
    fee_rate: f64,
    /// The learned cost that does not depend on the size (intercept and spread), bps.
    learned_bps: f64,
    /// Every cost that does not depend on the size, per unit of value (a fraction).
    linear: f64,
    /// The learned square-root impact coefficient (`cost_bps = b · σ_bps · sqrt(qty / volume)`).
    impact_coef: f64,
    /// The value traded in the market over the impact horizon.
    notional_volume: f64,
}

/// A decision's trades in the order they go out. Risk judges them one at a time, against the
/// book as the earlier ones left it, so every step must be within the limits, not only the end:
/// - reductions go first, trades that take a position toward zero and not past it (a rebalance
///   within the gross and net limits passes only if its reduction is booked when its increase is
///   judged);
/// - the others follow (increases, and trades through zero), each time one that moves the net
///   exposure back toward zero if there is one: the net then stays between where it starts and
///   where it ends, unless one trade alone is larger than the room, and the gross grows toward
///   its final, allowed value.
fn in_risk_order(trades: Vec<(usize, Candidate, Decimal)>, net: f64) -> Vec<(usize, Candidate, Decimal)> {
    let (mut ordered, mut others): (Vec<_>, Vec<_>) = trades.into_iter().partition(|(_, a, target)| {
        let through_zero =
            !target.is_zero() && !a.value.is_zero() && target.is_sign_negative() != a.value.is_sign_negative();
        target.abs() < a.value.abs() && !through_zero
    });
    let change = |(_, a, target): &(usize, Candidate, Decimal)| to_f64(*target - a.value);
    let mut net = net + ordered.iter().map(change).sum::<f64>();
    while !others.is_empty() {
        let toward_zero = others.iter().position(|t| change(t) * net < 0.0).unwrap_or(0);
        let next = others.remove(toward_zero);
        net += change(&next);
        ordered.push(next);
    }
    ordered
}

impl Cost {
    /// The optimizer's `κ`: trading value `d` costs `κ · d^{3/2}`, since the Order Plane's model
    /// charges `b · σ_bps · sqrt(d / V)` bps of `d` (`V`: the market's traded value). `variance`
    /// is the symbol's return variance per window.
    fn impact_per_notional(&self, variance: f64) -> f64 {
        if !(self.impact_coef > 0.0 && self.notional_volume > 0.0 && variance > 0.0) {
            return 0.0;
        }
        let kappa = self.impact_coef * variance.sqrt() / self.notional_volume.sqrt();
        if kappa.is_finite() { kappa } else { 0.0 }
    }

    /// An order's whole expected cost in bps of its `notional`, its `fee` included.
    fn expected_bps(&self, fee: f64, notional: f64, variance: f64) -> f64 {
        let impact_bps = self.impact_per_notional(variance) * notional.sqrt() * 1e4;
        fee / notional * 1e4 + self.learned_bps + impact_bps
    }
}

/// The share of `max_order_notional` an intent may ask for.
const ORDER_NOTIONAL_MARGIN: Decimal = Decimal::from_parts(99, 0, 0, false, 2);

/// The core.
pub struct StrategyEngine<C> {
    cfg: StrategyPlaneConfig,
    limits: RiskConfig,
    /// The Order Plane's `max_order_notional`: no intent asks for more.
    max_order_notional: Decimal,
    instruments: SymbolMap<InstrumentConfig>,
    clock: C,
    source: Arc<Source>,
    signals: SymbolMap<SymbolSignals>,
    /// Each symbol's recent windows, oldest first, until a decision has used them.
    latest: BTreeMap<Symbol, VecDeque<Latest>>,
    /// Each symbol's traded size per window over the last `impact_volume_window_s`, as of the
    /// latest decision: the volume of the impact estimate.
    volumes: SymbolMap<VecDeque<(UnixNanos, f64)>>,
    volume_window_ns: u64,
    cov: EwmaCovariance,
    book: Book,
    /// Intents without a final report: symbol, signed open quantity, decision time.
    inflight: HashMap<IntentId, (Symbol, Decimal, UnixNanos)>,
    /// Each symbol's sum of the signed open quantities in `inflight`, kept as they change: every
    /// decision needs it per symbol, and summing `inflight` there cost a catching-up plane 7 % of
    /// its CPU (hundreds of intents are in flight then).
    working: SymbolMap<Decimal>,
    /// The newest intents issued (or read back from `exec_reports`), to tell reports for them
    /// from reports for someone else's intents.
    issued: Recent<IntentId>,
    /// The newest intents with a final report: one issued again (a restart re-deciding) is not
    /// waited for, since the Order Plane ignores a repeat.
    finished: Recent<IntentId>,
    /// Each symbol's latest learned cost model.
    cost: SymbolMap<CostModelUpdate>,
    halted: bool,
    expect_all: bool,
    next_decision: u64,
    /// First and latest decision times (0 before the first).
    decisions: (u64, u64),
    /// Each configured symbol's newest window end, and the latest decision marked for it.
    marks: BTreeMap<Symbol, (UnixNanos, u64)>,
    counters: Counters,
    ofi_seen: Dedup,
    market_seen: Dedup,
}

/// Intents remembered as issued. A report comes within seconds of its intent, and a restart's
/// re-read ends with the newest reports, so only a report for an intent this many intents old
/// would be miscounted as `unknown_intent` (a metric only). About 1 MiB at the bound.
const ISSUED_REMEMBERED: usize = 16_384;

impl<C: Clock> StrategyEngine<C> {
    /// A core with nothing learned yet. It reads the Order Plane's limits too (`risk`,
    /// `order_plane.max_order_notional`): it asks only for orders that pass them.
    pub fn new(app: &AppConfig, source: Arc<Source>, clock: C) -> Self {
        let (cfg, limits, instruments) = (&app.strategy_plane, &app.risk, &app.instruments);
        let share = Decimal::from_f64(cfg.limit_share).unwrap_or(Decimal::ONE);
        Self {
            cfg: cfg.clone(),
            limits: RiskConfig {
                max_gross_exposure: limits.max_gross_exposure * share,
                max_net_exposure: limits.max_net_exposure * share,
                max_position_size: limits.max_position_size,
            },
            max_order_notional: app.order_plane.max_order_notional,
            instruments: instruments
                .iter()
                .filter_map(|i| Symbol::new(&i.symbol).ok().map(|s| (s, i.clone())))
                .collect(),
            clock,
            source,
            signals: SymbolMap::default(),
            latest: BTreeMap::new(),
            volumes: SymbolMap::default(),
            volume_window_ns: app.order_plane.impact_volume_window_s.saturating_mul(1_000_000_000),
            cov: EwmaCovariance::new(cfg.covariance_alpha),
            book: Book::default(),
            inflight: HashMap::new(),
            working: SymbolMap::default(),
            issued: Recent::new(ISSUED_REMEMBERED),
            finished: Recent::new(ISSUED_REMEMBERED),
            cost: SymbolMap::default(),
            halted: false,
            expect_all: true,
            next_decision: 0,
            decisions: (0, 0),
            marks: BTreeMap::new(),
            counters: Counters::default(),
            ofi_seen: Dedup::new(),
            market_seen: Dedup::new(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Positions and PnL.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// The signal state of `symbol`.
    pub fn signals(&self, symbol: &Symbol) -> Option<&SymbolSignals> {
        self.signals.get(symbol)
    }

    /// Whether trading is halted.
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Handles one `ofi_events` record; may decide and append intents to `out`.
    pub fn on_ofi(&mut self, env: &Envelope<OfiEvent>, out: &mut Vec<Envelope<IntentEvent>>) {
        if !self.learn(env) {
            return;
        }
        let OfiEvent::Window(w) = &env.payload;
        let newest = &mut self.marks.entry(w.symbol.clone()).or_insert((UnixNanos(0), 0)).0;
        *newest = (*newest).max(w.window_end);
        self.advance(out);
        self.mark(out);
    }

    /// Learns from one `ofi_events` record read back at start-up, from before where the plane's
    /// consumer group resumes: the signals and the covariance take up about where they were
    /// before the restart, so the plane trades again at its first decision instead of warming up
    /// for `warmup_windows`. Nothing is decided or marked on it, and its symbol is not traded
    /// until its live stream reaches a decision.
    pub fn warm(&mut self, env: &Envelope<OfiEvent>) {
        self.learn(env);
    }

    /// Feeds a window to its symbol's signals and keeps it for the next decision; whether it was
    /// new and about a configured symbol.
    fn learn(&mut self, env: &Envelope<OfiEvent>) -> bool {
        let OfiEvent::Window(w) = &env.payload;
        // Configured symbols first: no state is kept for names anyone can write.
        if !self.instruments.contains_key(&w.symbol) {
            self.counters.unknown_symbol += 1;
            return false;
        }
        if !self.ofi_seen.first(&w.symbol, env.ts_event, env.event_id) {
            self.counters.duplicate_ofi += 1;
            return false;
        }
        // A heartbeat (a window without quotes) only says the symbol's stream has got this far.
        if w.n_quotes == 0 {
            return true;
        }
        let (warmup, forgetting) = (self.cfg.warmup_windows, self.cfg.signal_forgetting);
        let forecast =
            self.signals.entry(w.symbol.clone()).or_insert_with(|| SymbolSignals::new(warmup, forgetting)).on_window(w);
        if forecast.is_some() {
            self.counters.signals += 1;
        }
        let mid_open = to_f64(w.mid_open);
        let ret = if mid_open > 0.0 { to_f64(w.mid_change) / mid_open } else { f64::NAN };
        let mid = to_f64(w.mid_close);
        let half_spread_bps = if mid > 0.0 { to_f64(w.mean_spread) / 2.0 / mid * 1e4 } else { f64::NAN };
        let latest = Latest {
            window_start: w.window_start,
            window_end: w.window_end,
            ret,
            counted: false,
            mid: w.mid_close,
            half_spread_bps,
            forecast,
            cause: env.event_id,
            volume: to_f64(w.trade_volume),
        };
        self.latest.entry(w.symbol.clone()).or_default().push_back(latest);
        true
    }

    /// Marks, for every symbol, each decision its stream has reached (a window ending at or after
    /// it): the marks then depend on event time only, not on when a symbol's windows arrived.
    fn mark(&mut self, out: &mut Vec<Envelope<IntentEvent>>) {
        let (first, last) = self.decisions;
        if last == 0 {
            return;
        }
        let interval = self.cfg.decision_interval_ms.saturating_mul(1_000_000).max(1);
        for (symbol, (newest, marked)) in &mut self.marks {
            let reached = newest.0.min(last);
            let mut at = if *marked == 0 { first } else { *marked + interval };
            while at <= reached {
                let identity = format!("decision:{symbol}:{at}");
                out.push(Envelope {
                    schema_version: SCHEMA_VERSION,
                    event_id: EventId(ids::derive_uuid(UnixNanos(at), identity.as_bytes())),
                    source: Arc::clone(&self.source),
                    ts_event: UnixNanos(at),
                    ts_init: self.clock.now(),
                    causation_id: None,
                    payload: IntentEvent::Decided(DecisionMark { symbol: symbol.clone() }),
                });
                *marked = at;
                at += interval;
            }
        }
    }

    /// Whether decisions wait for every configured instrument's stream (one instance reads every
    /// partition), or only for the symbols seen (instances share the partitions, and the others'
    /// symbols never come).
    pub fn expect_all(&mut self, all: bool) {
        self.expect_all = all;
    }

    /// Makes every decision whose time every symbol's stream has reached (a window, or a heartbeat,
    /// ending at or after it): a decision never depends on which symbol's windows were read
    /// first.
    fn advance(&mut self, out: &mut Vec<Envelope<IntentEvent>>) {
        let interval = self.cfg.decision_interval_ms.saturating_mul(1_000_000).max(1);
        loop {
            let newest = self.marks.values().map(|(n, _)| n.0).max().unwrap_or(0);
            if self.next_decision == 0 {
                let oldest = self.marks.values().map(|(n, _)| n.0).min().unwrap_or(0);
                self.next_decision = oldest.div_ceil(interval).max(1) * interval;
            }
            let at = self.next_decision;
            let behind = |s: &Symbol| self.marks.get(s).is_none_or(|(n, _)| n.0 < at);
            let waiting =
                if self.expect_all { self.instruments.keys().any(behind) } else { self.marks.keys().any(behind) };
            // Every earlier decision's orders are settled first: their fills are in the book.
            let unsettled = self.inflight.values().any(|(_, _, decided)| decided.0 < at);
            if waiting || newest < at || unsettled {
                return;
            }
            self.decide(UnixNanos(at), out);
            self.next_decision = at + interval;
        }
    }

    /// Handles one `market_events` record: marks for PnL, and feed status.
    pub fn on_market(&mut self, env: &Envelope<MarketEvent>) {
        // Configured symbols first: no state is kept for names anyone can write.
        if !self.instruments.contains_key(env.payload.symbol()) {
            if matches!(env.payload, MarketEvent::Quote(_)) {
                self.counters.unknown_symbol += 1;
            }
            return;
        }
        if !self.market_seen.first(env.payload.symbol(), env.ts_event, env.event_id) {
            self.counters.duplicate_market += 1;
            return;
        }
        match &env.payload {
            MarketEvent::Quote(q) => self.book.mark(&q.symbol, q.mid()),
            // A feed's status is not used to decide: it arrives on another topic than the windows,
            // at another pace, so it would make decisions depend on read speed. A symbol without
            // fresh windows is left out by the windows' own age (`stale_after_ms`).
            MarketEvent::Status(_) | MarketEvent::Trade(_) | MarketEvent::Depth(_) => {}
        }
    }

    /// Handles one `exec_reports` record (live, or replayed at start-up with `live = false`); a
    /// final report may let the decisions waiting for it run, appending intents to `out`.
    pub fn on_exec(&mut self, env: &Envelope<ExecEvent>, live: bool, out: &mut Vec<Envelope<IntentEvent>>) {
        self.exec(env, live, true, out);
    }

    /// Handles a live `exec_reports` record that the book already holds (read at start-up or at a
    /// take-over, delivered again by the group): everything but its fill.
    pub fn on_exec_booked(&mut self, env: &Envelope<ExecEvent>, out: &mut Vec<Envelope<IntentEvent>>) {
        self.exec(env, true, false, out);
    }

    fn exec(&mut self, env: &Envelope<ExecEvent>, live: bool, book: bool, out: &mut Vec<Envelope<IntentEvent>>) {
        match &env.payload {
            ExecEvent::Report(r) => {
                if live && !self.issued.contains(&r.intent_id) {
                    self.counters.unknown_intent += 1;
                }
                if !live {
                    self.issued.insert(r.intent_id);
                }
                if book {
                    self.book.on_report(r);
                }
                if r.status.is_terminal() {
                    self.finished.insert(r.intent_id);
                    if let Some((symbol, open, _)) = self.inflight.remove(&r.intent_id) {
                        self.add_working(&symbol, -open);
                        self.advance(out);
                    }
                } else if let Some((symbol, open, _)) = self.inflight.get_mut(&r.intent_id) {
                    let now_open = r.side.sign() * r.leaves_qty;
                    let change = now_open - *open;
                    *open = now_open;
                    let symbol = symbol.clone();
                    self.add_working(&symbol, change);
                }
            }
            ExecEvent::CostModel(c) => self.learn_cost(c),
            ExecEvent::Halt(h) => self.halted = h.halted,
        }
    }

    /// Takes over a partition of `exec_reports` that another instance has traded: `records` are
    /// its whole history up to where this instance reads it live. Its symbols' positions become
    /// what its fills add up to; the cost models in it are the latest. Halts are left alone
    /// (they are read live, whichever partition holds them).
    pub fn take_over(&mut self, records: &[Envelope<ExecEvent>]) {
        let mut reports = Vec::new();
        for env in records {
            match &env.payload {
                ExecEvent::Report(r) => {
                    self.issued.insert(r.intent_id);
                    reports.push(r.clone());
                }
                ExecEvent::CostModel(c) => self.learn_cost(c),
                ExecEvent::Halt(_) => {}
            }
        }
        self.book.replace(&reports);
    }

    /// Restores what one `exec_reports` partition holds, from its fold ([`StrategyLedger`]): its
    /// symbols' positions become the fold's, its cost models the latest, its intents and fills
    /// known. With `halts` (at start-up) the partition's latest halt state is taken too; a
    /// take-over leaves halts alone (they are read live, whichever partition holds them).
    pub fn restore_partition(&mut self, ledger: &StrategyLedger, halts: bool) {
        for (symbol, position) in &ledger.positions {
            self.book.restore(symbol, *position, ledger.fills.iter());
        }
        for c in ledger.costs.values() {
            self.learn_cost(c);
        }
        for id in ledger.issued.iter() {
            self.issued.insert(*id);
        }
        for id in ledger.finished.iter() {
            self.finished.insert(*id);
        }
        if halts && let Some(halted) = ledger.halted {
            self.halted = halted;
        }
    }

    /// The latest cost model learned for `symbol`.
    pub fn cost_model(&self, symbol: &Symbol) -> Option<&CostModelUpdate> {
        self.cost.get(symbol)
    }

    /// Keeps a configured symbol's latest cost model (only those: anyone can write a name).
    fn learn_cost(&mut self, c: &CostModelUpdate) {
        if let Some(symbol) = c.symbol.as_ref().filter(|s| self.instruments.contains_key(*s)) {
            self.cost.insert(symbol.clone(), c.clone());
        }
    }

    fn working(&self, symbol: &Symbol) -> Decimal {
        self.working.get(symbol).copied().unwrap_or_default()
    }

    /// Counts `open` (signed) as in flight for `symbol` until a report says otherwise.
    fn track(&mut self, intent_id: IntentId, symbol: Symbol, open: Decimal, decided: UnixNanos) {
        if self.finished.contains(&intent_id) {
            return;
        }
        self.add_working(&symbol, open);
        if let Some((old_symbol, old, _)) = self.inflight.insert(intent_id, (symbol, open, decided)) {
            self.add_working(&old_symbol, -old);
        }
    }

    /// Exact decimal sums: adding and removing the same quantities returns to zero exactly.
    fn add_working(&mut self, symbol: &Symbol, change: Decimal) {
        match self.working.get_mut(symbol) {
            Some(sum) => *sum += change,
            None => {
                self.working.insert(symbol.clone(), change);
            }
        }
    }

    /// Each symbol's latest window ending at or before `now`; older ones are dropped. Windows
    /// enter the covariance here, one joint return vector per window in window order and never
    /// past `now`, so the estimate neither looks ahead nor depends on which symbol's stream
    /// arrived first.
    fn as_of(&mut self, now: UnixNanos) -> Vec<(Symbol, Latest)> {
        let mut fresh: Vec<(UnixNanos, Symbol, UnixNanos, f64)> = Vec::new();
        for (symbol, queue) in &mut self.latest {
            let volumes = self.volumes.entry(symbol.clone()).or_default();
            for l in queue.iter_mut().filter(|l| !l.counted && l.window_end <= now) {
                l.counted = true;
                fresh.push((l.window_end, symbol.clone(), l.window_start, l.ret));
                volumes.push_back((l.window_end, l.volume));
            }
            while volumes.front().is_some_and(|(end, _)| now.saturating_sub(*end) >= self.volume_window_ns) {
                volumes.pop_front();
            }
        }
        // One joint update per window, in window order, its symbols in name order: every
        // symbol's windows up to `now` are here (the decision waited for every stream).
        fresh.sort_by(|a, b| (a.2, a.0, &a.1).cmp(&(b.2, b.0, &b.1)));
        for window in fresh.chunk_by(|a, b| a.2 == b.2) {
            let returns: Vec<(Symbol, f64)> = window.iter().map(|(_, symbol, _, ret)| (symbol.clone(), *ret)).collect();
            self.cov.update_window(&returns);
        }
        let mut current = Vec::new();
        for (symbol, queue) in &mut self.latest {
            while queue.len() > 1 && queue.get(1).is_some_and(|l| l.window_end <= now) {
                queue.pop_front();
            }
            if let Some(l) = queue.front().filter(|l| l.window_end <= now) {
                current.push((symbol.clone(), l.clone()));
            }
        }
        current
    }

    /// Decides at `now`, then marks the decision on the symbols whose streams have reached it.
    fn decide(&mut self, now: UnixNanos, out: &mut Vec<Envelope<IntentEvent>>) {
        self.decide_orders(now, out);
        if self.decisions.0 == 0 {
            self.decisions.0 = now.0;
        }
        self.decisions.1 = now.0;
        self.mark(out);
    }

    fn decide_orders(&mut self, now: UnixNanos, out: &mut Vec<Envelope<IntentEvent>>) {
        let as_of = self.as_of(now);
        if self.halted {
            self.counters.halted_decisions += 1;
            return;
        }
        let assets = self.assets(now, as_of);
        if !assets.iter().any(|a| a.trading != Trading::Held) {
            return;
        }
        self.counters.decisions += 1;
        let symbols: Vec<Symbol> = assets.iter().map(|a| a.symbol.clone()).collect();
        let covariance = self.cov.matrix(&symbols);
        let capital = to_f64(self.limits.max_gross_exposure);
        let cost_aversion = self.cfg.cost_aversion;
        // Positions that cannot trade may alone be beyond a limit (held since before it was
        // lowered, say): the limits are then where those stand, so the problem stays feasible and
        // what can trade is pushed to use none of the room they take.
        let held = assets.iter().filter(|a| a.trading == Trading::Held).map(|a| to_f64(a.value));
        let (held_gross, held_net) = held.fold((0.0, 0.0), |(g, n), v| (g + v.abs(), n + v));
        let problem = Problem {
            assets: assets
                .iter()
                .enumerate()
                .map(|(i, a)| Asset {
                    mu: a.forecast.as_ref().map_or(0.0, |f| f.expected_return),
                    cost: cost_aversion * a.cost.linear,
                    impact: cost_aversion * a.cost.impact_per_notional(covariance[i][i]),
                    current: to_f64(a.value),
                    max_position: to_f64(self.limits.max_position_size).max(to_f64(a.value).abs()),
                    trading: a.trading,
                })
                .collect(),
            covariance,
            // λ is per unit of the variance of the return on the limit capital: γ = λ / C.
            risk_aversion: self.cfg.risk_aversion / capital,
            max_gross: capital.max(held_gross),
            max_net: to_f64(self.limits.max_net_exposure).max(held_net.abs()),
        };
        let Ok(targets) = optimize(&problem) else {
            self.counters.solver_failures += 1;
            return;
        };
        let net: f64 = assets.iter().map(|a| to_f64(a.value)).sum();
        let trades: Vec<_> = assets
            .into_iter()
            .enumerate()
            .zip(targets.iter())
            .filter(|((_, a), _)| a.trading != Trading::Held)
            .filter_map(|((i, a), target)| Some((i, a, Decimal::from_f64(*target)?)))
            .collect();
        let trades = in_risk_order(trades, net);
        for (i, asset, target) in trades {
            let Some(inst) = self.instruments.get(&asset.symbol) else { continue };
            let Some(latest) = asset.latest else { continue };
            // Checked: a mid far below any real market (1e-26, say) makes a quantity no exact
            // decimal holds; such a trade is not made.
            let Some(delta) = target.checked_sub(asset.value).and_then(|d| d.checked_div(latest.mid)) else { continue };
            // A larger rebalance is made in steps, one per decision. Risk values the order at the
            // quote in effect at the decision, which can be one this window did not see (a quote
            // at that very instant): 1 % of margin.
            let most = (self.max_order_notional * ORDER_NOTIONAL_MARGIN).checked_div(latest.mid);
            let wanted = most.map_or(delta.abs(), |most| delta.abs().min(most));
            let Some(qty) = wanted.checked_div(inst.lot_size).and_then(|lots| lots.floor().checked_mul(inst.lot_size))
            else {
                continue;
            };
            let qty = qty.normalize();
            // Past the contract's bound, the Order Plane would only refuse it (`invalid_quantity`).
            let Some(notional) = qty.checked_mul(latest.mid) else { continue };
            if qty < inst.min_qty || qty > MAX_MAGNITUDE || notional < inst.min_notional {
                continue;
            }
            let side = if delta.is_sign_positive() { Side::Buy } else { Side::Sell };
            let fee = fees::order_fee(&inst.fees, qty, latest.mid);
            // The optimizer weighed fees as a rate; a schedule's fixed part (IBKR's minimum per
            // order) it could not see. A trade that adds exposure is made only if what the
            // objective gains from it pays that part too, unless leaving it out would breach a
            // limit (a hedge); a reduction is always made.
            if matches!(inst.fees, FeeSchedule::IbkrTiered) && target.abs() >= asset.value.abs() {
                let fixed = to_f64(fee) - asset.cost.fee_rate * to_f64(notional);
                let traded = to_f64(side.sign() * notional);
                let mut without = targets.clone();
                without[i] = problem.assets[i].current;
                if fixed > 0.0
                    && problem.gain(&targets, i, traded) < cost_aversion * fixed
                    && problem.within_limits(&without)
                {
                    continue;
                }
            }
            let identity = format!("intent:{}:{}", asset.symbol, now.0);
            let intent_id = IntentId(ids::derive_uuid(now, identity.as_bytes()));
            let event_id =
                EventId(ids::derive_uuid(now, format!("intent-event:{}:{}", asset.symbol, now.0).as_bytes()));
            // What the order is expected to cost in all, fee included, in bps of its value; within
            // the contract's bound, or the intent would be refused as malformed.
            let expected = asset.cost.expected_bps(to_f64(fee), to_f64(notional), problem.covariance[i][i]);
            let expected_cost_bps =
                Decimal::from_f64(expected).unwrap_or_default().round_dp(4).clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE);
            let forecast = asset.forecast.unwrap_or_default();
            let mut signals: Vec<SignalValue> = SIGNALS
                .iter()
                .zip(forecast.contributions)
                .map(|(name, value)| SignalValue { name: (*name).to_owned(), value })
                .collect();
            signals.push(SignalValue { name: "expected_return".into(), value: forecast.expected_return });
            let intent = OrderIntent {
                intent_id,
                symbol: asset.symbol.clone(),
                side,
                quantity: qty,
                order_type: OrderType::Market,
                limit_price: None,
                time_in_force: TimeInForce::Ioc,
                arrival_mid: latest.mid,
                expected_cost_bps,
                signals,
            };
            self.track(intent_id, asset.symbol, side.sign() * qty, now);
            self.issued.insert(intent_id);
            out.push(Envelope {
                schema_version: SCHEMA_VERSION,
                event_id,
                source: Arc::clone(&self.source),
                ts_event: now,
                ts_init: self.clock.now(),
                causation_id: Some(latest.cause),
                payload: IntentEvent::Intent(intent),
            });
        }
    }

    /// Every symbol the decision at `now` must weigh: each configured symbol with a fresh window
    /// and a forecast may trade; every other position held (a symbol warming up, stale, or not
    /// configured) counts in the gross and net limits, and is only reduced, or held where it
    /// cannot be traded. A position that cannot be valued in an exact decimal (absurd prices or
    /// sizes on the input) leaves its symbol out rather than overflowing.
    fn assets(&self, now: UnixNanos, as_of: Vec<(Symbol, Latest)>) -> Vec<Candidate> {
        let stale_ns = self.cfg.stale_after_ms.saturating_mul(1_000_000);
        let mut latest: BTreeMap<Symbol, Latest> = as_of.into_iter().collect();
        let held: Vec<Symbol> = self.book.symbols().chain(self.working.keys()).cloned().collect();
        let symbols: std::collections::BTreeSet<Symbol> = latest.keys().cloned().chain(held).collect();
        let mut assets = Vec::new();
        for symbol in symbols {
            // Instances that share the partitions each weigh the symbols they read, under their
            // share of the limits; the others' positions are theirs to count.
            if !self.expect_all && !self.marks.contains_key(&symbol) {
                continue;
            }
            let qty = self.book.position(&symbol).qty.checked_add(self.working(&symbol));
            let Some(qty) = qty else { continue };
            let window = latest.remove(&symbol);
            let fresh = window.as_ref().filter(|l| {
                now.saturating_sub(l.window_end) <= stale_ns && l.mid > Decimal::ZERO && l.half_spread_bps.is_finite()
            });
            // Only a symbol whose live stream this instance reads is traded: windows read back at a
            // start (`warm`) may be of symbols another instance now trades.
            let inst = self.instruments.get(&symbol).filter(|_| self.marks.contains_key(&symbol));
            let forecast = fresh.and_then(|l| l.forecast.clone()).filter(|f| f.expected_return.is_finite());
            let trading = match (inst, fresh, &forecast) {
                (Some(_), Some(_), Some(_)) => Trading::Free,
                (Some(_), Some(_), None) => Trading::ReduceOnly,
                _ => Trading::Held,
            };
            if trading != Trading::Free && qty.is_zero() {
                continue;
            }
            // A position without a fresh window is valued at its last window's mid, or, with none
            // since the start, at its average price: both are event-time facts.
            let mark = window.as_ref().map(|l| l.mid).filter(|m| *m > Decimal::ZERO);
            let Some(value) = qty.checked_mul(mark.unwrap_or(self.book.position(&symbol).avg_px)) else { continue };
            let cost = match (inst, fresh) {
                (Some(inst), Some(l)) => self.expected_cost(&symbol, inst, l),
                _ => Cost::default(),
            };
            assets.push(Candidate { symbol, latest: fresh.cloned(), forecast, value, trading, cost });
        }
        assets
    }

    /// What trading `symbol` is expected to cost at its latest window, per the instrument's fee
    /// schedule and the Order Plane's cost model for it (before it has one: the half spread).
    fn expected_cost(&self, symbol: &Symbol, inst: &InstrumentConfig, l: &Latest) -> Cost {
        let model = self.cost.get(symbol);
        let (intercept, spread_coef, impact_coef) =
            model.map_or((0.0, 1.0, 0.0), |c| (c.intercept_bps, c.half_spread_coef, c.impact_coef));
        let volume: f64 = self.volumes.get(symbol).map_or(0.0, |v| v.iter().map(|(_, v)| v).sum());
        let fee_rate = fees::taker_rate(&inst.fees, l.mid);
        let learned_bps = intercept + spread_coef * l.half_spread_bps;
        let linear = fee_rate + learned_bps / 1e4;
        Cost {
            fee_rate,
            learned_bps,
            linear: if linear.is_finite() { linear.max(0.0) } else { 0.0 },
            impact_coef,
            notional_volume: volume * to_f64(l.mid),
        }
    }
}

impl<C: Clock> Core for StrategyEngine<C> {
    const INPUTS: &'static [Topic] = &[Topic::Ofi, Topic::Market, Topic::Exec];
    type Output = IntentEvent;
    type Outcome = ();

    fn handle(&mut self, input: &Event, _position: u64, out: &mut Vec<Envelope<IntentEvent>>) {
        match input {
            Event::Ofi(env) => self.on_ofi(env, out),
            Event::Market(env) => self.on_market(env),
            Event::Exec(env) => self.on_exec(env, true, out),
            Event::Intent(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::clock::ManualClock;
    use common::config::AppConfig;
    use common::events::{ExecReport, ExecStatus};

    fn report(intent: u128) -> Envelope<ExecEvent> {
        Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: EventId(uuid::Uuid::from_u128(intent)),
            source: Arc::new(Source { plane: "order-plane".into(), instance: "test".into() }),
            ts_event: UnixNanos(1),
            ts_init: UnixNanos(1),
            causation_id: None,
            payload: ExecEvent::Report(ExecReport {
                intent_id: IntentId(uuid::Uuid::from_u128(intent)),
                order_id: format!("SIM-{intent}"),
                symbol: Symbol::new("BTCUSDT").unwrap(),
                side: Side::Buy,
                status: ExecStatus::Rejected,
                reason: None,
                detail: None,
                venue: "risk".into(),
                order_qty: Decimal::ONE,
                exec_id: None,
                last_px: None,
                last_qty: Decimal::ZERO,
                cum_qty: Decimal::ZERO,
                avg_px: None,
                leaves_qty: Decimal::ZERO,
                commission: Decimal::ZERO,
                cum_commission: Decimal::ZERO,
                arrival_mid: Decimal::ONE,
                slippage_bps: None,
                venue_mid: None,
            }),
        }
    }

    /// An engine with the shipped defaults.
    fn engine() -> StrategyEngine<ManualClock> {
        let cfg = AppConfig::default();
        let source = Arc::new(Source { plane: "strategy-plane".into(), instance: "test".into() });
        StrategyEngine::new(&cfg, source, ManualClock::new(UnixNanos(1)))
    }

    #[test]
    fn the_working_quantity_of_a_symbol_follows_its_intents_reports() {
        let mut engine = engine();
        let (btc, eth) = (Symbol::new("BTCUSDT").unwrap(), Symbol::new("ETHUSDT").unwrap());
        let summed = |e: &StrategyEngine<ManualClock>, s: &Symbol| -> Decimal {
            e.inflight.values().filter(|(x, _, _)| x == s).map(|(_, q, _)| *q).sum()
        };
        let dec = |s: &str| s.parse::<Decimal>().unwrap();
        let t = UnixNanos(1);
        engine.track(IntentId(uuid::Uuid::from_u128(1)), btc.clone(), dec("0.003"), t);
        engine.track(IntentId(uuid::Uuid::from_u128(2)), btc.clone(), dec("-0.001"), t);
        engine.track(IntentId(uuid::Uuid::from_u128(3)), eth.clone(), dec("0.25"), t);
        assert_eq!(engine.working(&btc), dec("0.002"));
        assert_eq!(engine.working(&eth), dec("0.25"));
        // A partial fill leaves 0.001 of intent 1 open.
        let mut partial = report(1);
        if let ExecEvent::Report(r) = &mut partial.payload {
            r.status = ExecStatus::PartiallyFilled;
            r.leaves_qty = dec("0.001");
        }
        engine.on_exec(&partial, true, &mut Vec::new());
        assert_eq!(engine.working(&btc), dec("0.000"));
        // The same id tracked again replaces, not adds.
        engine.track(IntentId(uuid::Uuid::from_u128(3)), eth.clone(), dec("-0.5"), t);
        assert_eq!(engine.working(&eth), dec("-0.5"));
        // Terminal reports close intents 1 and 2; a report for an unknown intent changes nothing.
        engine.on_exec(&report(1), true, &mut Vec::new());
        engine.on_exec(&report(2), true, &mut Vec::new());
        engine.on_exec(&report(99), true, &mut Vec::new());
        for s in [&btc, &eth] {
            assert_eq!(engine.working(s), summed(&engine, s), "{s}");
        }
        assert!(engine.working(&btc).is_zero());
        assert_eq!(engine.working(&eth), dec("-0.5"));
    }

    /// Names anyone can write keep no state: 5,000 symbols that are not configured, each with a
    /// window, a quote and a cost model, leave the per-symbol maps as they were.
    #[test]
    fn symbols_that_are_not_configured_keep_no_state() {
        fn envelope<P>(n: u128, payload: P) -> Envelope<P> {
            Envelope {
                schema_version: SCHEMA_VERSION,
                event_id: EventId(uuid::Uuid::from_u128(n)),
                source: Arc::new(Source { plane: "x".into(), instance: "x".into() }),
                ts_event: UnixNanos(1_000_000_000),
                ts_init: UnixNanos(1),
                causation_id: None,
                payload,
            }
        }
        let mut engine = engine();
        let dec = |s: &str| s.parse::<Decimal>().unwrap();
        for n in 0..5_000u128 {
            let symbol = Symbol::new(format!("X{n}")).unwrap();
            let window = common::events::OfiWindow {
                symbol: symbol.clone(),
                window_start: UnixNanos(0),
                window_end: UnixNanos(1_000_000_000),
                ofi: dec("1"),
                n_quotes: 1,
                n_trades: 0,
                mid_open: dec("100"),
                mid_close: dec("100"),
                mid_change: dec("0"),
                mean_depth: dec("1"),
                mean_spread: dec("0.01"),
                ofi_normalized: dec("1"),
                trade_imbalance: dec("0"),
                trade_volume: dec("0"),
                mlofi: None,
                data_gap: false,
            };
            let ofi = envelope(n, OfiEvent::Window(window));
            engine.on_ofi(&ofi, &mut Vec::new());
            let quote = common::events::Quote {
                symbol: symbol.clone(),
                bid_px: common::types::Price::new(dec("99")).unwrap(),
                bid_sz: common::types::Quantity::new(dec("1")).unwrap(),
                ask_px: common::types::Price::new(dec("101")).unwrap(),
                ask_sz: common::types::Quantity::new(dec("1")).unwrap(),
            };
            engine.on_market(&envelope(n, MarketEvent::Quote(quote)));
            let model = CostModelUpdate {
                intercept_bps: 0.0,
                half_spread_coef: 1.0,
                impact_coef: 0.0,
                intercept_stderr: 0.0,
                half_spread_stderr: 0.0,
                impact_stderr: 0.0,
                residual_scale_bps: 0.0,
                residual_std_bps: 0.0,
                n_fills: 1,
                symbol: Some(symbol),
                state: None,
            };
            engine.on_exec(&envelope(n, ExecEvent::CostModel(model)), true, &mut Vec::new());
        }
        assert_eq!(engine.counters().unknown_symbol, 10_000, "every window and quote counted");
        assert_eq!((engine.ofi_seen.symbols(), engine.market_seen.symbols()), (0, 0));
        assert!(
            engine.signals.is_empty() && engine.latest.is_empty() && engine.cost.is_empty() && engine.marks.is_empty()
        );
    }

    #[test]
    fn the_intents_remembered_stay_bounded_over_a_long_ledger() {
        let mut engine = engine();
        let intents = 3 * ISSUED_REMEMBERED as u128;
        for intent in 0..intents {
            engine.on_exec(&report(intent), false, &mut Vec::new());
        }
        assert_eq!(engine.issued.len(), ISSUED_REMEMBERED);
        engine.on_exec(&report(intents - 1), true, &mut Vec::new());
        assert_eq!(engine.counters().unknown_intent, 0, "a report for a recent intent");
        engine.on_exec(&report(0), true, &mut Vec::new());
        assert_eq!(engine.counters().unknown_intent, 1, "older than the bound: counted as unknown");
    }
}
