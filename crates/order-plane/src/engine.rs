//! The Order Plane's synchronous core: intents, market data and kill-switch commands in;
//! `exec_reports` envelopes out. No IO; time is the events' own, plus an injected clock for
//! `ts_init`.
//!
//! Idempotency: an intent id is executed at most once. On start-up the shell feeds every past
//! `exec_reports` record to [`OrderEngine::restore`], which rebuilds the remembered intents,
//! positions, the cost model and the halt state; [`OrderEngine::finish_restore`] then closes
//! orders that were working in the simulated venue when the plane stopped (that venue's book lived
//! in memory).
//!
//! A repeat is recognised by its tracked order or by its remembered id. Ids are not remembered
//! forever: risk refuses an intent decided more than `max_intent_lag_ms` before its symbol's latest
//! mark, and a symbol's mark only moves forward in event time, so once the mark has passed that
//! horizon for an intent, a repeat of it can never place an order and its id is forgotten (see
//! `remembered::RememberedIntents`). Such a repeat gets a `rejected` (`stale_market_data`) report instead of
//! being ignored. This holds because a repeat is the same record, carrying the event time its
//! intent was decided at (the Strategy Plane also derives the intent id from that time); an intent
//! id sent again with a later event time would be taken as a new intent once the id is forgotten.
//!
//! A venue that answers later (IBKR) hands its events to [`OrderEngine::on_venue`]; after each
//! (re)connect its reconciliation ends in [`OrderEngine::reconciled`], which closes the orders the
//! venue no longer works. Its orders survive a restart: they are not closed by
//! `finish_restore` but by that reconciliation. An execution id already reported is never
//! counted again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use common::clock::Clock;
use common::codec::DecodeError;
use common::config::{FeeSchedule, InstrumentConfig, OrderPlaneConfig, RiskConfig};
use common::core::{Core, Event, Topic};
use common::dedup::Dedup;
use common::events::{
    CancelIntent, Envelope, ExecEvent, ExecReport, ExecStatus, IntentEvent, IntentId, MarketEvent, OrderIntent, Quote,
    RejectReason, SCHEMA_VERSION, Source, TradingHalt,
};
use common::ids;
use common::types::{EventId, MAX_MAGNITUDE, Symbol, SymbolMap, UnixNanos};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::cost_model::CostModel;
use crate::market::{MarketState, impact_feature};
use crate::order::OrderState;
use crate::remembered::RememberedIntents;
use crate::risk::{Mark, RiskEngine};
use crate::snapshot::OrderLedger;
use crate::venue::{MarkAt, Venue, VenueEvent};
use common::fees::{self, Filled};

/// How long a broker venue's finished order is kept, in event time (a broker venue's events are
/// stamped with the wall clock): a reconciliation reads the last 7 days of executions
/// (`ibkr::orders`), and an execution of an order no longer kept is dropped as unknown, so a
/// day more than that.
pub const FINISHED_KEPT_NS: u64 = 8 * 24 * 3600 * 1_000_000_000;
/// The most finished orders kept, whatever their age: beyond it the oldest go first.
pub const FINISHED_KEPT_MAX: usize = 100_000;

/// What became of an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentOutcome {
    /// Seen before: no new order.
    Duplicate,
    /// Refused by risk.
    Rejected(RejectReason),
    /// Sent to the venue.
    Placed,
    /// A cancel request for an order that is not working (unknown or already done).
    CancelIgnored,
    /// A cancel request that cancelled a working order (or asked the venue to).
    Cancelled,
    /// Waits until the symbol's market data reaches the intent's decision time (an event-time
    /// venue): risk and the venue then judge it on the market of that time.
    Held,
    /// A decision mark, taken note of.
    Marked,
}

/// What became of a batch of late venue events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VenueApplied {
    /// Events for an intent the plane does not know (they are logged and dropped).
    pub unknown: u64,
    /// Executions reported before (by execution id), dropped.
    pub repeated: u64,
}

/// How many symbols each of the core's per-symbol structures holds (see
/// [`OrderEngine::symbols_held`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SymbolsHeld {
    /// Markets: latest quote, volatility, traded volume.
    pub market: usize,
    /// Newest market event times, by which re-deliveries are dropped.
    pub market_seen: usize,
    /// Risk's marks and exposures.
    pub risk: usize,
    /// Remembered intent ids.
    pub remembered: usize,
    /// Intents held for market data.
    pub held: usize,
    /// Learned cost models.
    pub cost: usize,
}

/// The core.
pub struct OrderEngine<V, C> {
    venue: V,
    clock: C,
    source: Arc<Source>,
    risk: RiskEngine,
    market: MarketState,
    /// Each symbol's cost model, learned from its own fills.
    cost: SymbolMap<CostModel>,
    cost_params: (f64, f64),
    /// Working orders, and a broker venue's finished ones (see `finished`).
    orders: HashMap<IntentId, OrderState>,
    /// A broker venue's finished orders still in `orders`, by when they finished: kept for
    /// [`FINISHED_KEPT_NS`], at most [`FINISHED_KEPT_MAX`] of them.
    finished: VecDeque<(UnixNanos, IntentId)>,
    /// Ids of intents taken whose repeat risk could still pass.
    remembered: RememberedIntents,
    monthly: (i32, u8, Decimal),
    cancel_open_on_halt: bool,
    pending: Vec<VenueEvent>,
    market_seen: Dedup,
    /// Event ids of the reports restored so far; only needed until the rebuild ends.
    restored: HashSet<EventId>,
    /// Orders restored as sent to a broker venue without its order id: the first reconciliation
    /// says whether they ever arrived.
    unconfirmed: HashSet<IntentId>,
    /// Each instrument's fee schedule.
    fees: SymbolMap<FeeSchedule>,
    /// Intents waiting for their symbol's market data to reach their decision time, in order.
    held: SymbolMap<VecDeque<Envelope<IntentEvent>>>,
    /// Held intents judged since the shell last asked.
    released: Vec<IntentId>,
    /// Placed orders the venue has said nothing about yet (waiting for their arrival).
    awaiting: HashSet<IntentId>,
}

impl<V: Venue, C: Clock> OrderEngine<V, C> {
    /// A core with nothing seen yet.
    pub fn new(
        risk: &RiskConfig,
        cfg: &OrderPlaneConfig,
        instruments: &[InstrumentConfig],
        venue: V,
        source: Arc<Source>,
        clock: C,
    ) -> Self {
        Self {
            venue,
            clock,
            source,
            risk: RiskEngine::new(risk, cfg, instruments),
            market: MarketState::new(cfg.impact_volume_window_s),
            cost: SymbolMap::default(),
            cost_params: (cfg.cost_forgetting, cfg.cost_huber_k),
            orders: HashMap::new(),
            finished: VecDeque::new(),
            remembered: RememberedIntents::new(cfg.max_intent_lag_ms.saturating_mul(1_000_000)),
            monthly: (0, 0, Decimal::ZERO),
            cancel_open_on_halt: cfg.cancel_open_on_halt,
            pending: Vec::new(),
            market_seen: Dedup::new(),
            restored: HashSet::new(),
            unconfirmed: HashSet::new(),
            fees: instruments.iter().filter_map(|i| Symbol::new(&i.symbol).ok().map(|s| (s, i.fees.clone()))).collect(),
            held: SymbolMap::default(),
            released: Vec::new(),
            awaiting: HashSet::new(),
        }
    }

    /// The held intents judged since the last call: their records are done with once what they
    /// produced is on the broker.
    pub fn take_released(&mut self) -> Vec<IntentId> {
        std::mem::take(&mut self.released)
    }

    /// The input position `symbol`'s market data must be read again from after a restart, for
    /// an event-time venue to hold the same history as now (and so give the same fills).
    pub fn restart_position(&self, symbol: &Symbol) -> Option<u64> {
        self.venue.restart_position(symbol)
    }

    /// Intents waiting for market data now.
    pub fn held_intents(&self) -> usize {
        self.held.values().map(VecDeque::len).sum()
    }

    /// The risk engine (for exposure metrics and tests).
    pub fn risk(&self) -> &RiskEngine {
        &self.risk
    }

    /// Whether trading is halted.
    pub fn halted(&self) -> bool {
        self.risk.halted()
    }

    /// The venue (for its own figures).
    pub fn venue(&self) -> &V {
        &self.venue
    }

    /// How many symbols the core keeps state for, structure by structure: a name on a topic that
    /// no instrument has must not add one, or anyone who can write a record grows its memory.
    pub fn symbols_held(&self) -> SymbolsHeld {
        SymbolsHeld {
            market: self.market.symbols(),
            market_seen: self.market_seen.symbols(),
            risk: self.risk.symbols(),
            remembered: self.remembered.symbols(),
            held: self.held.len(),
            cost: self.cost.len(),
        }
    }

    /// Whether an intent id was taken before: its order is tracked, or its id remembered. A
    /// tracked order must be found even when its id was forgotten: a repeat sent on to risk would
    /// overwrite a working (or a broker venue's finished) order with a rejection.
    fn known(&self, id: &IntentId) -> bool {
        self.remembered.contains(id) || self.orders.contains_key(id)
    }

    /// Remembers `id` of `symbol`, decided no later than `ts`.
    fn remember(&mut self, symbol: &Symbol, id: IntentId, ts: UnixNanos) {
        // Risk refuses every intent of a symbol it does not trade, a repeat as much as the first:
        // nothing to remember, and no mark would ever let the id go.
        if !self.risk.tradable(symbol) {
            return;
        }
        let mark = self.risk.mark(symbol).map(|m| m.ts);
        self.remembered.insert(symbol, id, ts, mark);
    }

    fn envelope(&self, id: EventId, ts: UnixNanos, cause: Option<EventId>, payload: ExecEvent) -> Envelope<ExecEvent> {
        Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: id,
            source: Arc::clone(&self.source),
            ts_event: ts,
            ts_init: self.clock.now(),
            causation_id: cause,
            payload,
        }
    }

    /// Handles one `order_intents` record.
    pub fn on_intent(&mut self, env: &Envelope<IntentEvent>, out: &mut Vec<Envelope<ExecEvent>>) -> IntentOutcome {
        match &env.payload {
            IntentEvent::Intent(intent) => self.on_order_intent(env, intent, out),
            IntentEvent::Cancel(cancel) => self.on_cancel(env, cancel, out),
            IntentEvent::Decided(mark) => {
                // No order of a symbol risk does not trade ever reaches the venue: its mark would
                // only give the venue a book to keep for a name anyone can write.
                if self.risk.tradable(&mark.symbol) {
                    let oldest_held = self.held.get(&mark.symbol).and_then(|q| q.front()).map(|e| e.ts_event);
                    let upto = oldest_held.map_or(env.ts_event, |h| h.min(env.ts_event));
                    self.venue.decided(&mark.symbol, upto);
                }
                IntentOutcome::Marked
            }
        }
    }

    fn on_order_intent(
        &mut self,
        env: &Envelope<IntentEvent>,
        intent: &OrderIntent,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) -> IntentOutcome {
        // A repeat whose id was forgotten goes on to risk, which refuses it as stale: a second
        // `rejected` report, never an order. That report is harmless: it carries no execution (the
        // Strategy Plane books fills only, by execution id, and the intent left its in-flight set
        // at its first terminal report), and its event id is the intent's first report's (same
        // time, numbered first as well), so the rebuild, and any consumer that drops event ids it
        // knows, takes it for a copy.
        if self.known(&intent.intent_id) {
            return IntentOutcome::Duplicate;
        }
        let now = env.ts_event;
        // An intent of a symbol risk does not trade is refused at once: no market data of it may
        // ever come to release it, and a held intent keeps its partition paused.
        if !self.risk.tradable(&intent.symbol) {
            return self.execute(env, intent, out);
        }
        let queue = self.held.get(&intent.symbol).is_some_and(|q| !q.is_empty());
        if queue || self.venue.mark_at(&intent.symbol, now) == MarkAt::NotYet {
            self.remember(&intent.symbol, intent.intent_id, now);
            self.held.entry(intent.symbol.clone()).or_default().push_back(env.clone());
            return IntentOutcome::Held;
        }
        self.advance_mark(&intent.symbol, now);
        // Risk judges the intent at this same time, so the id is forgotten exactly when risk would
        // refuse a repeat of it.
        self.remember(&intent.symbol, intent.intent_id, now);
        self.execute(env, intent, out)
    }

    /// An event-time venue values an intent at the market of its decision: the symbol's mark
    /// moves to it (forward only, as a symbol's intents come in decision order), and the ids
    /// that a repeat could no longer pass risk with are forgotten.
    fn advance_mark(&mut self, symbol: &Symbol, now: UnixNanos) {
        if let MarkAt::Known(mark) = self.venue.mark_at(symbol, now)
            && self.risk.mark(symbol).is_none_or(|m| m.ts < mark.ts)
        {
            self.risk.set_mark(symbol, mark);
            self.remembered.forget_symbol(symbol, mark.ts);
        }
    }

    /// Judges and places an intent whose symbol's market has reached its decision time.
    fn execute(
        &mut self,
        env: &Envelope<IntentEvent>,
        intent: &OrderIntent,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) -> IntentOutcome {
        let now = env.ts_event;
        let mut state = OrderState {
            symbol: intent.symbol.clone(),
            side: intent.side,
            order_id: String::new(),
            venue: "risk".into(),
            order_qty: reportable(intent.quantity),
            cum_qty: Decimal::ZERO,
            cum_value: Decimal::ZERO,
            cum_commission: Decimal::ZERO,
            status: ExecStatus::Accepted,
            arrival_mid: intent.arrival_mid,
            fills: 0,
            reports: 0,
            intent_event: env.event_id,
            decided_at: now,
            exec_ids: Vec::new(),
            cost_features: None,
            venue_mid: None,
            finished_at: None,
        };
        match self.risk.check(intent, now) {
            Err(refusal) => {
                state.status = ExecStatus::Rejected;
                self.orders.insert(intent.intent_id, state);
                let reason = refusal.reason;
                self.report(intent.intent_id, now, env.event_id, Some((reason, refusal.detail)), None, None, out);
                IntentOutcome::Rejected(reason)
            }
            Ok(approved) => {
                state.venue = self.venue.name().into();
                if let Some(m) = self.market.get(&intent.symbol) {
                    state.cost_features =
                        Some((m.half_spread_bps().unwrap_or(0.0), impact_feature(m, intent.quantity)));
                }
                self.orders.insert(intent.intent_id, state);
                let mut events = std::mem::take(&mut self.pending);
                self.venue.place(approved, &mut events);
                // An order that waits for its arrival has produced nothing yet: its record is not
                // done with until it does.
                let waits = !events.iter().any(|e| venue_event_intent(e) == intent.intent_id);
                self.apply(events, Some(env.event_id), out);
                if waits {
                    self.awaiting.insert(intent.intent_id);
                    return IntentOutcome::Held;
                }
                IntentOutcome::Placed
            }
        }
    }

    fn on_cancel(
        &mut self,
        env: &Envelope<IntentEvent>,
        cancel: &CancelIntent,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) -> IntentOutcome {
        let mut events = std::mem::take(&mut self.pending);
        let cancelled = self.venue.cancel(cancel.intent_id, env.ts_event, "cancelled on request", &mut events);
        self.apply(events, Some(env.event_id), out);
        if cancelled { IntentOutcome::Cancelled } else { IntentOutcome::CancelIgnored }
    }

    /// Answers an `order_intents` record the strict decoder refused, when its intent id, symbol
    /// and side can still be read: a `rejected` report (`malformed_intent`, the decoder's message
    /// as detail), once per intent id. Returns whether it answered.
    pub fn reject_undecodable(
        &mut self,
        raw: &[u8],
        error: &str,
        now: UnixNanos,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) -> bool {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(raw) else { return false };
        if value.get("event_type").and_then(|t| t.as_str()) != Some("order_intent") {
            return false;
        }
        let payload = &value["payload"];
        let text = |k: &str| payload.get(k).and_then(|v| v.as_str());
        let (Some(id), Some(symbol), Some(side)) = (
            text("intent_id").and_then(|s| s.parse::<uuid::Uuid>().ok()).map(IntentId),
            text("symbol").and_then(|s| Symbol::new(s).ok()),
            match text("side") {
                Some("buy") => Some(common::types::Side::Buy),
                Some("sell") => Some(common::types::Side::Sell),
                _ => None,
            },
        ) else {
            return false;
        };
        if self.known(&id) {
            return false;
        }
        let ts = value.get("ts_event").and_then(serde_json::Value::as_u64).map_or(now, UnixNanos);
        self.remember(&symbol, id, ts);
        let cause = value
            .get("event_id")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| EventId(ids::derive_uuid(ts, format!("malformed:{id}").as_bytes())));
        let quantity = text("quantity").and_then(|q| q.parse::<Decimal>().ok()).unwrap_or_default();
        self.orders.insert(
            id,
            OrderState {
                symbol,
                side,
                order_id: String::new(),
                venue: "risk".into(),
                order_qty: reportable(quantity),
                cum_qty: Decimal::ZERO,
                cum_value: Decimal::ZERO,
                cum_commission: Decimal::ZERO,
                status: ExecStatus::Rejected,
                arrival_mid: Decimal::ZERO,
                fills: 0,
                reports: 0,
                intent_event: cause,
                decided_at: ts,
                exec_ids: Vec::new(),
                cost_features: None,
                venue_mid: None,
                finished_at: None,
            },
        );
        let detail: String = error.chars().take(512).collect();
        self.report(id, ts, cause, Some((RejectReason::MalformedIntent, detail)), None, None, out);
        true
    }

    /// Handles one `market_events` record; `false` when it is a re-delivery, which is dropped (an
    /// old quote replayed into the venue would fill resting orders at stale prices).
    pub fn on_market(&mut self, env: &Envelope<MarketEvent>, out: &mut Vec<Envelope<ExecEvent>>) -> bool {
        self.on_market_at(env, 0, out)
    }

    /// [`on_market`](Self::on_market) for the record at input `position` (its offset), which
    /// [`restart_position`](Self::restart_position) may name later.
    pub fn on_market_at(
        &mut self,
        env: &Envelope<MarketEvent>,
        position: u64,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) -> bool {
        let symbol = env.payload.symbol();
        if !self.risk.tradable(symbol) {
            // Market data of a symbol risk does not trade can place no order: nothing keeps state
            // for names anyone can write. Only a live venue's quote of one that holds a position
            // (restored from the ledger: an instrument since removed) marks it for the limits.
            if let MarketEvent::Quote(q) = &env.payload
                && !self.risk.exposure(symbol).worst().is_zero()
            {
                self.mark_live(q, env.ts_event);
            }
            return true;
        }
        if !self.market_seen.first(symbol, env.ts_event, env.event_id) {
            return false;
        }
        self.venue.at_position(symbol, position);
        match &env.payload {
            MarketEvent::Quote(q) => {
                self.market.on_quote(env.ts_event, q);
                self.mark_live(q, env.ts_event);
            }
            MarketEvent::Trade(t) => self.market.on_trade(env.ts_event, t),
            MarketEvent::Depth(_) | MarketEvent::Status(_) => {}
        }
        // Venue events are caused by their order's intent, whichever record let them happen: the
        // reports then do not depend on how the input topics interleaved.
        let mut events = std::mem::take(&mut self.pending);
        self.venue.on_market(env.ts_event, &env.payload, &mut events);
        self.apply(events, None, out);
        self.release(env.payload.symbol(), out);
        true
    }

    /// A live venue's quote marks its symbol for risk. Forgotten intent ids rely on a symbol's
    /// mark never moving back. Live quotes arrive in event-time order, but after a restart the
    /// mark restored from the last fill can be newer than the first quotes re-delivered from the
    /// committed offset. An event-time venue sets marks as intents are judged instead (see
    /// `execute`).
    fn mark_live(&mut self, q: &Quote, ts: UnixNanos) {
        if self.venue.mark_at(&q.symbol, ts) == MarkAt::Live && self.risk.mark(&q.symbol).is_none_or(|m| m.ts <= ts) {
            self.risk.set_mark(&q.symbol, Mark { mid: q.mid(), ts });
        }
    }

    /// Judges the held intents of `symbol` whose decision time its market data has now reached.
    fn release(&mut self, symbol: &Symbol, out: &mut Vec<Envelope<ExecEvent>>) {
        loop {
            let Some(queue) = self.held.get_mut(symbol) else { return };
            let ready = queue.front().is_some_and(|e| self.venue.mark_at(symbol, e.ts_event) != MarkAt::NotYet);
            let Some(env) = ready.then(|| queue.pop_front()).flatten() else { return };
            if queue.is_empty() {
                self.held.remove(symbol);
            }
            if let IntentEvent::Intent(intent) = &env.payload {
                self.advance_mark(symbol, env.ts_event);
                if self.execute(&env, intent, out) != IntentOutcome::Held {
                    self.released.push(intent.intent_id);
                }
            }
        }
    }

    /// Halts or resumes trading at `now`; publishes the change (and cancels open orders when
    /// halting with `cancel_open`, or when configured to).
    pub fn set_halt(
        &mut self,
        halted: bool,
        reason: &str,
        cancel_open: Option<bool>,
        now: UnixNanos,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) {
        let cancel_open = halted && cancel_open.unwrap_or(self.cancel_open_on_halt);
        self.risk.set_halt(halted.then(|| reason.to_owned()));
        let identity = format!("halt:{}:{}:{halted}", now.0, self.clock.now().0);
        let id = EventId(ids::derive_uuid(now, identity.as_bytes()));
        let halt = TradingHalt { halted, reason: reason.to_owned(), cancel_open };
        out.push(self.envelope(id, now, None, ExecEvent::Halt(halt)));
        if cancel_open {
            let mut events = std::mem::take(&mut self.pending);
            for intent_id in self.venue.working() {
                self.venue.cancel(intent_id, now, "cancelled by kill switch", &mut events);
            }
            self.apply(events, Some(id), out);
        }
    }

    /// Rebuilds what one `exec_reports` partition holds from its fold ([`OrderLedger`]): the same
    /// state as [`restore`](Self::restore) of each of its records. Call it for every partition,
    /// then [`finish_restore`](Self::finish_restore).
    pub fn restore_snapshot(&mut self, ledger: &OrderLedger) {
        for id in ledger.seen() {
            self.restored.insert(*id);
        }
        for (symbol, (px, ts)) in ledger.marks() {
            if self.risk.mark(symbol).is_none_or(|m| m.ts <= *ts) {
                self.risk.set_mark(symbol, Mark { mid: *px, ts: *ts });
            }
        }
        for (symbol, qty) in ledger.positions() {
            let side = if qty.is_sign_negative() { common::types::Side::Sell } else { common::types::Side::Buy };
            self.risk.on_fill(symbol, side, qty.abs());
        }
        // Months only move forward; a partition's tally of a month already over is not this one's.
        let (year, month, qty) = ledger.monthly();
        if (year, month) > (self.monthly.0, self.monthly.1) {
            self.monthly = (year, month, qty);
        } else if (year, month) == (self.monthly.0, self.monthly.1) {
            self.monthly.2 += qty;
        }
        for (symbol, ts, id) in ledger.remembered() {
            self.remember(symbol, id, ts);
        }
        for (id, order) in ledger.orders() {
            self.orders.insert(*id, order.clone());
        }
        for (symbol, c) in ledger.costs() {
            let (lambda, k) = self.cost_params;
            self.cost.entry(symbol.clone()).or_insert_with(|| CostModel::new(lambda, k)).restore(c);
        }
        if let Some((halted, reason)) = ledger.halt() {
            self.risk.set_halt(halted.then(|| reason.clone()));
        }
    }

    /// Whether a repeat of intent `id` would be recognised as one (its order tracked, or its id
    /// remembered).
    pub fn remembers(&self, id: &IntentId) -> bool {
        self.known(id)
    }

    /// The cost model learned for `symbol`, as published.
    pub fn cost_model(&self, symbol: &Symbol) -> Option<common::events::CostModelUpdate> {
        self.cost.get(symbol).map(|m| m.snapshot(symbol))
    }

    /// Rebuilds state from one past `exec_reports` record (start-up).
    pub fn restore(&mut self, env: &Envelope<ExecEvent>) {
        // A copy of a record already restored (a producer retry, a re-delivery) must neither count
        // its fill twice nor move an order's state back to an earlier one.
        if !self.restored.insert(env.event_id) {
            return;
        }
        match &env.payload {
            ExecEvent::Report(r) => {
                // A report is never earlier than its intent's decision (the first one is stamped
                // with it), so the report's time forgets the id no sooner than risk would refuse.
                self.remember(&r.symbol, r.intent_id, env.ts_event);
                if r.last_qty > Decimal::ZERO {
                    self.risk.on_fill(&r.symbol, r.side, r.last_qty);
                    self.add_monthly(env.ts_event, r.last_qty);
                    // Until a quote arrives, the last fill price values the position (a restart
                    // must not leave exposure unvalued, which would let limits be passed).
                    if let Some(px) = r.last_px
                        && self.risk.mark(&r.symbol).is_none_or(|m| m.ts <= env.ts_event)
                    {
                        self.risk.set_mark(&r.symbol, Mark { mid: px, ts: env.ts_event });
                    }
                }
                let state = self.orders.entry(r.intent_id).or_insert_with(|| OrderState::from_ledger(env, r));
                state.restore_report(r, env.ts_event);
            }
            // A model from when one served every symbol is not restored: each symbol learns anew.
            // Nor is one of a symbol risk does not trade: it would never be used, and the ledger
            // can hold any name.
            ExecEvent::CostModel(c) => {
                if let Some(symbol) = c.symbol.as_ref().filter(|s| self.risk.tradable(s)) {
                    let (lambda, k) = self.cost_params;
                    self.cost.entry(symbol.clone()).or_insert_with(|| CostModel::new(lambda, k)).restore(c);
                }
            }
            ExecEvent::Halt(h) => self.risk.set_halt(h.halted.then(|| h.reason.clone())),
        }
    }

    /// Ends the rebuild at `now`: orders still working when the plane stopped are reported
    /// cancelled, since the simulated venue's book did not survive the restart.
    pub fn finish_restore(&mut self, now: UnixNanos, out: &mut Vec<Envelope<ExecEvent>>) {
        self.restored = HashSet::new();
        // Ids are forgotten as their symbol's next id arrives; a symbol that trades no more would
        // keep what the ledger gave it.
        let risk = &self.risk;
        self.remembered.forget_passed(|s| risk.mark(s).map(|m| m.ts));
        let (keeps, name) = (self.venue.keeps_orders(), self.venue.name());
        self.orders.retain(|_, o| !o.status.is_terminal() || (keeps && o.venue == name));
        let mut finished: Vec<(UnixNanos, IntentId)> = self
            .orders
            .iter()
            .filter(|(_, o)| o.status.is_terminal())
            .map(|(id, o)| (o.finished_at.unwrap_or(now), *id))
            .collect();
        finished.sort();
        self.finished = finished.into();
        self.forget_finished(now);
        self.orders.shrink_to_fit();
        if self.venue.keeps_orders() {
            // The venue learns which orders it works from the ledger, so a cancel or a halt
            // reaches them even before its reconciliation names them.
            let name = self.venue.name();
            let working: Vec<VenueEvent> = self
                .orders
                .iter()
                .filter(|(_, o)| o.venue == name && !o.status.is_terminal())
                .map(|(id, o)| VenueEvent::Found {
                    intent_id: *id,
                    order_id: o.order_id.clone(),
                    symbol: o.symbol.clone(),
                    side: o.side,
                    qty: o.order_qty - o.cum_qty,
                    ts: now,
                })
                .collect();
            for event in &working {
                if let VenueEvent::Found { intent_id, order_id, symbol, side, qty, .. } = event {
                    self.risk.on_working(symbol, *side, *qty);
                    if order_id.is_empty() {
                        self.unconfirmed.insert(*intent_id);
                    }
                }
                self.venue.observe(event);
            }
            return;
        }
        let mut orphans: Vec<(IntentId, EventId)> =
            self.orders.iter().filter(|(_, o)| !o.status.is_terminal()).map(|(id, o)| (*id, o.intent_event)).collect();
        orphans.sort();
        for (intent_id, cause) in orphans {
            let detail = "venue state lost at restart".to_owned();
            self.apply(vec![VenueEvent::Cancelled { intent_id, detail, ts: now }], Some(cause), out);
        }
    }

    /// Events a venue reported on its own (fills, cancels, order ids), each caused by its order's
    /// intent.
    pub fn on_venue(&mut self, events: Vec<VenueEvent>, out: &mut Vec<Envelope<ExecEvent>>) -> VenueApplied {
        self.apply(events, None, out)
    }

    /// The venue re-read its orders after a (re)connect and works exactly `open` of this plane's:
    /// every other order of the venue still working here ended while nobody listened (its fills,
    /// if any, came before this call), so what is left of it is reported cancelled at `now`.
    /// Orders not yet acknowledged by the venue are still on their way and stay, except those
    /// restored that way: the plane stopped before the venue's answer, and it never arrived.
    pub fn reconciled(&mut self, open: &HashSet<IntentId>, now: UnixNanos, out: &mut Vec<Envelope<ExecEvent>>) {
        let venue = self.venue.name();
        let mut gone: Vec<IntentId> = self
            .orders
            .iter()
            .filter(|(id, o)| {
                o.venue == venue
                    && !o.status.is_terminal()
                    && (!o.order_id.is_empty() || self.unconfirmed.contains(id))
                    && !open.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        self.unconfirmed.clear();
        gone.sort();
        let detail = format!("no longer working at {venue} (reconciliation)");
        let events = gone
            .into_iter()
            .map(|intent_id| VenueEvent::Cancelled { intent_id, detail: detail.clone(), ts: now })
            .collect();
        self.apply(events, None, out);
    }

    /// Records an order the venue holds that this plane never saw placed (the intent was taken,
    /// sent and then the plane stopped before its report reached the ledger): the venue's word
    /// is the truth, so it counts as seen, its quantity as working, and the report says so.
    fn adopt(&mut self, event: &VenueEvent) -> Option<EventId> {
        let VenueEvent::Found { intent_id, symbol, side, qty, ts, .. } = event else { return None };
        if self.orders.contains_key(intent_id) {
            return None;
        }
        // Its decision time is unknown, but came before the venue's report of it.
        self.remember(symbol, *intent_id, *ts);
        self.risk.on_working(symbol, *side, *qty);
        let cause = EventId(ids::derive_uuid(*ts, format!("found:{intent_id}").as_bytes()));
        self.orders.insert(
            *intent_id,
            OrderState {
                symbol: symbol.clone(),
                side: *side,
                // Set, and reported, as the event is applied.
                order_id: String::new(),
                venue: self.venue.name().into(),
                order_qty: *qty,
                cum_qty: Decimal::ZERO,
                cum_value: Decimal::ZERO,
                cum_commission: Decimal::ZERO,
                status: ExecStatus::Accepted,
                arrival_mid: Decimal::ZERO,
                fills: 0,
                reports: 0,
                intent_event: cause,
                decided_at: *ts,
                exec_ids: Vec::new(),
                cost_features: None,
                venue_mid: None,
                finished_at: None,
            },
        );
        Some(cause)
    }

    fn add_monthly(&mut self, ts: UnixNanos, qty: Decimal) -> Decimal {
        // Months only move forward: reports restored out of order must not reset the tier.
        let (year, month) = year_month(ts);
        if (year, month) > (self.monthly.0, self.monthly.1) {
            self.monthly = (year, month, Decimal::ZERO);
        }
        let before = self.monthly.2;
        self.monthly.2 += qty;
        before
    }

    fn apply(
        &mut self,
        events: Vec<VenueEvent>,
        cause: Option<EventId>,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) -> VenueApplied {
        let mut applied = VenueApplied::default();
        for event in &events {
            let adopted = self.adopt(event);
            let intent_id = venue_event_intent(event);
            if self.awaiting.remove(&intent_id) {
                self.released.push(intent_id);
            }
            let Some(o) = self.orders.get_mut(&intent_id) else {
                tracing::warn!(%intent_id, ?event, "Venue event for an order this plane does not know; dropped.");
                applied.unknown += 1;
                continue;
            };
            let cause = cause.unwrap_or(o.intent_event);
            match event {
                VenueEvent::Accepted { order_id, ts, .. } | VenueEvent::Found { order_id, ts, .. } => {
                    // An order id is announced once; a second announcement (a reconciliation
                    // re-finding it) changes nothing.
                    if o.status.is_terminal() {
                        continue;
                    }
                    if !o.order_id.is_empty() {
                        self.venue.observe(event);
                        continue;
                    }
                    o.order_id.clone_from(order_id);
                    let detail = adopted
                        .is_some()
                        .then(|| "found working at the venue after a restart; placed by an earlier run".to_owned());
                    self.report(intent_id, *ts, cause, None, detail, None, out);
                }
                VenueEvent::Arrived { mid, half_spread_bps, impact, .. } => {
                    o.venue_mid = Some(*mid);
                    o.cost_features = Some((*half_spread_bps, *impact));
                }
                VenueEvent::Sent { ts, .. } => {
                    let detail = format!("sent to {}; its order id follows", self.venue.name());
                    self.report(intent_id, *ts, cause, None, Some(detail), None, out);
                }
                VenueEvent::Fill { px, qty, ts, exec, maker, .. } => {
                    if let Some(e) = exec
                        && o.exec_ids.contains(&e.exec_id)
                    {
                        applied.repeated += 1;
                        continue;
                    }
                    let (cum_qty, cum_value) = (o.cum_qty, o.cum_value);
                    // Venue numbers are outside input: a sum that does not fit is refused, not a panic.
                    let (Some(value), Some(new_qty)) = (px.checked_mul(*qty), cum_qty.checked_add(*qty)) else {
                        tracing::warn!(%intent_id, %px, %qty, "Venue fill whose value does not fit a decimal; dropped.");
                        applied.unknown += 1;
                        continue;
                    };
                    let Some(new_value) = cum_value.checked_add(value) else {
                        tracing::warn!(%intent_id, %px, %qty, "Venue fill whose value does not fit a decimal; dropped.");
                        applied.unknown += 1;
                        continue;
                    };
                    let monthly = self.add_monthly(*ts, *qty);
                    let Some(o) = self.orders.get_mut(&intent_id) else { continue };
                    let fee = match exec {
                        Some(e) => e.commission,
                        None => {
                            let schedule = self.fees.get(&o.symbol).unwrap_or(&FeeSchedule::IbkrTiered);
                            let before = Filled { qty: cum_qty, value: cum_value };
                            let after = Filled { qty: new_qty, value: new_value };
                            fees::fill_fee(schedule, *maker, before, after, monthly)
                        }
                    };
                    o.cum_qty = new_qty;
                    o.cum_value = new_value;
                    o.cum_commission = o.cum_commission.saturating_add(fee);
                    o.fills += 1;
                    // A late execution of an order already closed still moves the position; the
                    // order's status stays what it was.
                    let late = o.status.is_terminal();
                    if !late {
                        o.status =
                            if o.cum_qty >= o.order_qty { ExecStatus::Filled } else { ExecStatus::PartiallyFilled };
                    }
                    let exec_id =
                        exec.as_ref().map_or_else(|| format!("{}-{}", o.order_id, o.fills), |e| e.exec_id.clone());
                    o.exec_ids.push(exec_id.clone());
                    let (symbol, side) = (o.symbol.clone(), o.side);
                    if late {
                        self.risk.on_late_fill(&symbol, side, *qty);
                    } else {
                        self.risk.on_fill(&symbol, side, *qty);
                    }
                    self.report(intent_id, *ts, cause, None, None, Some((exec_id, *px, *qty, fee)), out);
                }
                VenueEvent::Cancelled { ts, detail, .. } | VenueEvent::Rejected { ts, detail, .. } => {
                    if o.status.is_terminal() {
                        self.venue.observe(event);
                        continue;
                    }
                    let rejected = matches!(event, VenueEvent::Rejected { .. });
                    let leaves = o.order_qty - o.cum_qty;
                    o.status = if rejected { ExecStatus::Rejected } else { ExecStatus::Cancelled };
                    let (symbol, side) = (o.symbol.clone(), o.side);
                    self.risk.on_done(&symbol, side, leaves.max(Decimal::ZERO));
                    let reason = rejected.then(|| (RejectReason::VenueRejected, detail.clone()));
                    let detail_only = (!rejected).then(|| detail.clone());
                    self.report(intent_id, *ts, cause, reason, detail_only, None, out);
                }
            }
            self.venue.observe(event);
        }
        self.pending = events;
        self.pending.clear();
        applied
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &mut self,
        intent_id: IntentId,
        ts: UnixNanos,
        cause: EventId,
        reject: Option<(RejectReason, String)>,
        detail: Option<String>,
        fill: Option<(String, Decimal, Decimal, Decimal)>,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) {
        let (keeps, name) = (self.venue.keeps_orders(), self.venue.name());
        let Some(o) = self.orders.get_mut(&intent_id) else { return };
        o.reports += 1;
        let retire = o.status.is_terminal() && !(keeps && o.venue == name);
        let identity = format!("exec:{intent_id}:{}", o.reports);
        // An intent's first report is named for its decision time, whenever it is made (an
        // order's comes at its arrival at the venue). A repeat of the intent whose id was
        // forgotten is refused at that same decision time and numbered first as well: its report
        // is then a copy of the first by event id, which the rebuild and every consumer drop.
        let named_at = if o.reports == 1 { o.decided_at } else { ts };
        let id = EventId(ids::derive_uuid(named_at, identity.as_bytes()));
        let (reason, reject_detail) = reject.map_or((None, None), |(r, d)| (Some(r), Some(d)));
        let (exec_id, last_px, last_qty, commission) = match fill {
            Some((e, px, qty, fee)) => (Some(e), Some(px), qty, fee),
            None => (None, None, Decimal::ZERO, Decimal::ZERO),
        };
        let report = ExecReport {
            intent_id,
            order_id: o.order_id.clone(),
            symbol: o.symbol.clone(),
            side: o.side,
            status: o.status,
            reason,
            detail: reject_detail.or(detail),
            venue: o.venue.clone(),
            order_qty: o.order_qty,
            exec_id,
            last_px,
            last_qty,
            cum_qty: o.cum_qty,
            avg_px: o.avg_px(),
            leaves_qty: o.leaves(),
            commission,
            cum_commission: o.cum_commission,
            arrival_mid: o.arrival_mid,
            slippage_bps: o.slippage_bps(),
            venue_mid: o.venue_mid,
        };
        let learn = (o.status.is_terminal() && o.cum_qty > Decimal::ZERO)
            .then(|| o.cost_features.zip(o.slippage_bps()))
            .flatten();
        let report_symbol = o.symbol.clone();
        // The model learned from an order goes out before the order's final report: a consumer
        // that acts on the final report (the Strategy Plane's next decision) has it by then,
        // however fast it reads.
        if let Some(((half_spread, impact), cost)) = learn {
            let (lambda, k) = self.cost_params;
            let model = self.cost.entry(report_symbol.clone()).or_insert_with(|| CostModel::new(lambda, k));
            model.update(half_spread, impact, cost.to_f64().unwrap_or(f64::NAN));
            let snapshot = model.snapshot(&report_symbol);
            let identity = format!("cost:{intent_id}");
            let cost_id = EventId(ids::derive_uuid(ts, identity.as_bytes()));
            out.push(self.envelope(cost_id, ts, Some(cause), ExecEvent::CostModel(snapshot)));
        }
        out.push(self.envelope(id, ts, Some(cause), ExecEvent::Report(report)));
        // A finished order stays tracked only at a broker venue, which can still report a late
        // execution of it, and only as long as it can. Refused by risk or finished on the
        // simulated venue, it cannot change again: its remembered id refuses a repeat until risk
        // would refuse one anyway, so memory does not grow with every order ever handled.
        if retire {
            self.orders.remove(&intent_id);
        } else if let Some(o) = self.orders.get_mut(&intent_id)
            && o.status.is_terminal()
            && o.finished_at.is_none()
        {
            o.finished_at = Some(ts);
            self.finished.push_back((ts, intent_id));
            self.forget_finished(ts);
        }
    }

    /// Forgets a broker venue's finished orders older than [`FINISHED_KEPT_NS`] at `now`, and the
    /// oldest beyond [`FINISHED_KEPT_MAX`]. A late execution of one is then dropped as unknown;
    /// a repeat of its intent is still refused by its remembered id or by risk.
    fn forget_finished(&mut self, now: UnixNanos) {
        let orders = &mut self.orders;
        forget_finished(&mut self.finished, now, |id| {
            if orders.get(&id).is_some_and(|o| o.status.is_terminal()) {
                orders.remove(&id);
            }
        });
    }

    /// Orders tracked now (working ones, and a broker venue's finished ones).
    pub fn tracked_orders(&self) -> usize {
        self.orders.len()
    }

    /// Intent ids remembered now to refuse a repeat (those risk would still pass).
    pub fn remembered_intents(&self) -> usize {
        self.remembered.len()
    }
}

/// What became of one input of the Order core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// An `order_intents` record.
    Intent(IntentOutcome),
    /// A `market_events` record; `fresh` is false for a re-delivery, which was dropped.
    Market {
        /// Whether it was new.
        fresh: bool,
    },
    /// A record of a topic the core does not read.
    NotRead,
}

impl<V: Venue, C: Clock> Core for OrderEngine<V, C> {
    const INPUTS: &'static [Topic] = &[Topic::Intent, Topic::Market];
    type Output = ExecEvent;
    type Outcome = Handled;

    fn handle(&mut self, input: &Event, position: u64, out: &mut Vec<Envelope<ExecEvent>>) -> Handled {
        match input {
            Event::Intent(env) => Handled::Intent(self.on_intent(env, out)),
            Event::Market(env) => Handled::Market { fresh: self.on_market_at(env, position, out) },
            Event::Ofi(_) | Event::Exec(_) => Handled::NotRead,
        }
    }

    fn refused(
        &mut self,
        topic: Topic,
        payload: &[u8],
        error: &DecodeError,
        out: &mut Vec<Envelope<ExecEvent>>,
    ) -> bool {
        topic == Topic::Intent && self.reject_undecodable(payload, &error.to_string(), self.clock.now(), out)
    }
}

/// An intent's quantity as its reports carry it. One past the contract's bound (±10^12) is
/// refused by risk (`invalid_quantity`, whose detail names it); the report then says 0, so that it
/// stays a record every consumer reads (the Strategy Plane's and this plane's own rebuild).
fn reportable(qty: Decimal) -> Decimal {
    if qty.abs() <= MAX_MAGNITUDE { qty } else { Decimal::ZERO }
}

/// The intent a venue event is about.
fn venue_event_intent(event: &VenueEvent) -> IntentId {
    match event {
        VenueEvent::Accepted { intent_id, .. }
        | VenueEvent::Arrived { intent_id, .. }
        | VenueEvent::Fill { intent_id, .. }
        | VenueEvent::Found { intent_id, .. }
        | VenueEvent::Sent { intent_id, .. }
        | VenueEvent::Cancelled { intent_id, .. }
        | VenueEvent::Rejected { intent_id, .. } => *intent_id,
    }
}

/// Pops the finished orders (by finish time, oldest first) kept past [`FINISHED_KEPT_NS`] before
/// `now` or beyond [`FINISHED_KEPT_MAX`], handing each id to `forget`: the live engine and the
/// snapshot fold keep the same ones.
pub(crate) fn forget_finished(
    finished: &mut VecDeque<(UnixNanos, IntentId)>,
    now: UnixNanos,
    mut forget: impl FnMut(IntentId),
) {
    while let Some(&(at, id)) = finished.front() {
        if finished.len() <= FINISHED_KEPT_MAX && at.0.saturating_add(FINISHED_KEPT_NS) >= now.0 {
            break;
        }
        finished.pop_front();
        forget(id);
    }
}

/// Calendar year and month (UTC) of `ts`.
pub(crate) fn year_month(ts: UnixNanos) -> (i32, u8) {
    let seconds = i64::try_from(ts.0 / 1_000_000_000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => (t.year(), u8::from(t.month())),
        Err(_) => (0, 0),
    }
}
