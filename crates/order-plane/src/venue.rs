//! Venues execute risk-approved orders. [`Venue`] is the seam where IBKR plugs in; the
//! [`SimulatedVenue`] is the default while live trading is off.
//!
//! # Simulated fills (documented rule)
//! - An order reaches the venue `latency_ms` of **event time** after its decision and executes
//!   against the book in effect at that moment: the last quote at or before the arrival time,
//!   known once a quote at or after it arrives (when the plane already holds such a quote, the
//!   order executes at once against the latest one). Any symbol's quote moves the venue's clock:
//!   once event time has passed an order's arrival, an order in a quiet symbol executes against
//!   that symbol's latest quote. Everything runs on event time, so a replay is deterministic.
//! - The book beyond the best level is unknown, so the venue assumes level k (k = 0, 1, …) sits
//!   k ticks behind the best price with the best level's displayed size. A market order sweeps
//!   those levels (at most [`MAX_LEVELS`]; what is left is cancelled as "book exhausted"). A limit
//!   order sweeps only levels at or better than its limit.
//! - What a limit order does not fill at arrival rests (`day`, `gtc`) or is cancelled (`ioc`).
//!   A resting buy fills at its limit when the ask reaches it, up to the ask size, on each quote
//!   (a sell, symmetrically, against the bid). `day` orders are cancelled on the first quote of a
//!   later UTC day.

use std::collections::HashMap;

use common::events::{IntentId, OrderType, Quote, TimeInForce};
use common::types::{Side, Symbol, UnixNanos};
use rust_decimal::Decimal;

use crate::order::Order;
use crate::risk::RiskApproved;

/// Deepest level a simulated sweep reaches.
pub const MAX_LEVELS: u32 = 100;
const DAY_NS: u64 = 86_400_000_000_000;

/// What a venue reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VenueEvent {
    /// The venue took the order.
    Accepted {
        /// Intent.
        intent_id: IntentId,
        /// Venue order id.
        order_id: String,
        /// Event time.
        ts: UnixNanos,
    },
    /// Part or all of the order traded.
    Fill {
        /// Intent.
        intent_id: IntentId,
        /// Price.
        px: Decimal,
        /// Size.
        qty: Decimal,
        /// Event time.
        ts: UnixNanos,
        /// The venue's execution id and commission; `None` when the plane names the execution
        /// and charges the published schedule (the simulated venue).
        exec: Option<Execution>,
    },
    /// The order is on its way to a venue that acknowledges later (IBKR): published before
    /// the order leaves, so a crash in between leaves a record that the restart reconciles.
    Sent {
        /// Intent.
        intent_id: IntentId,
        /// Event time.
        ts: UnixNanos,
    },
    /// An order the venue holds that the plane did not send in this run (placed before a
    /// restart): the venue's state wins.
    Found {
        /// Intent.
        intent_id: IntentId,
        /// Venue order id.
        order_id: String,
        /// Instrument.
        symbol: Symbol,
        /// Side.
        side: Side,
        /// Order quantity.
        qty: Decimal,
        /// Event time.
        ts: UnixNanos,
    },
    /// The rest of the order will not trade.
    Cancelled {
        /// Intent.
        intent_id: IntentId,
        /// Why.
        detail: String,
        /// Event time.
        ts: UnixNanos,
    },
    /// The venue refused the order.
    Rejected {
        /// Intent.
        intent_id: IntentId,
        /// Why.
        detail: String,
        /// Event time.
        ts: UnixNanos,
    },
}

/// A venue's own record of one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// Unique per execution at the venue; a repeat is the same execution.
    pub exec_id: String,
    /// What the venue charged for it.
    pub commission: Decimal,
}

/// An execution venue. It only ever receives [`RiskApproved`] orders.
///
/// A venue answers in `out` at once (the simulated venue) or later, through
/// [`OrderEngine::on_venue`](crate::engine::OrderEngine::on_venue) (IBKR).
pub trait Venue: Send {
    /// `simulated`, `ibkr`, …
    fn name(&self) -> &'static str;
    /// Sends an order.
    fn place(&mut self, order: RiskApproved<Order>, out: &mut Vec<VenueEvent>);
    /// Cancels what is left of an order; `false` when it is not working.
    fn cancel(&mut self, intent_id: IntentId, ts: UnixNanos, detail: &str, out: &mut Vec<VenueEvent>) -> bool;
    /// Market data: may fill or expire working orders.
    fn on_quote(&mut self, ts: UnixNanos, quote: &Quote, out: &mut Vec<VenueEvent>);
    /// Intents of the orders still working.
    fn working(&self) -> Vec<IntentId>;
    /// Whether working orders outlive the plane (a broker's venue does; the simulated one's
    /// book is in memory). When they do, a restart waits for the venue's reconciliation instead
    /// of reporting them cancelled.
    fn keeps_orders(&self) -> bool {
        false
    }
    /// Sees every event the engine applied, including those that arrived later.
    fn observe(&mut self, _event: &VenueEvent) {}
}

impl<V: Venue + ?Sized> Venue for Box<V> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn place(&mut self, order: RiskApproved<Order>, out: &mut Vec<VenueEvent>) {
        (**self).place(order, out);
    }
    fn cancel(&mut self, intent_id: IntentId, ts: UnixNanos, detail: &str, out: &mut Vec<VenueEvent>) -> bool {
        (**self).cancel(intent_id, ts, detail, out)
    }
    fn on_quote(&mut self, ts: UnixNanos, quote: &Quote, out: &mut Vec<VenueEvent>) {
        (**self).on_quote(ts, quote, out);
    }
    fn working(&self) -> Vec<IntentId> {
        (**self).working()
    }
    fn keeps_orders(&self) -> bool {
        (**self).keeps_orders()
    }
    fn observe(&mut self, event: &VenueEvent) {
        (**self).observe(event);
    }
}

#[derive(Debug)]
struct Working {
    order: Order,
    arrival: UnixNanos,
    arrived: bool,
    leaves: Decimal,
}

/// The default venue: fills against the replayed or live quotes.
#[derive(Debug)]
pub struct SimulatedVenue {
    latency_ns: u64,
    ticks: HashMap<Symbol, Decimal>,
    quotes: HashMap<Symbol, (Quote, UnixNanos)>,
    working: Vec<Working>,
}

impl SimulatedVenue {
    /// A venue with `latency_ms` of event-time latency and each symbol's tick size.
    pub fn new(latency_ms: u64, ticks: HashMap<Symbol, Decimal>) -> Self {
        Self { latency_ns: latency_ms.saturating_mul(1_000_000), ticks, quotes: HashMap::new(), working: Vec::new() }
    }

    fn tick(&self, symbol: &Symbol) -> Decimal {
        self.ticks.get(symbol).copied().unwrap_or(Decimal::new(1, 2))
    }

    /// Executes what is marketable of `w` against `q`; true when `w` is finished.
    fn execute(tick: Decimal, w: &mut Working, q: &Quote, ts: UnixNanos, out: &mut Vec<VenueEvent>) -> bool {
        let id = w.order.intent_id;
        let (best, size, step) = match w.order.side {
            Side::Buy => (q.ask_px.get(), q.ask_sz.get(), tick),
            Side::Sell => (q.bid_px.get(), q.bid_sz.get(), -tick),
        };
        let marketable = |px: Decimal| match (w.order.order_type, w.order.limit_price) {
            (OrderType::Limit, Some(limit)) => match w.order.side {
                Side::Buy => px <= limit,
                Side::Sell => px >= limit,
            },
            _ => px > Decimal::ZERO,
        };
        if !w.arrived {
            w.arrived = true;
            let mut level = 0u32;
            let mut px = best;
            while w.leaves > Decimal::ZERO && level < MAX_LEVELS && marketable(px) && size > Decimal::ZERO {
                let qty = w.leaves.min(size);
                out.push(VenueEvent::Fill { intent_id: id, px, qty, ts, exec: None });
                w.leaves -= qty;
                level += 1;
                px += step;
            }
            if w.leaves > Decimal::ZERO {
                let rests = w.order.order_type == OrderType::Limit && w.order.tif != TimeInForce::Ioc;
                if !rests {
                    let detail = if w.order.tif == TimeInForce::Ioc && w.order.order_type == OrderType::Limit {
                        "immediate-or-cancel remainder"
                    } else {
                        "book exhausted"
                    };
                    out.push(VenueEvent::Cancelled { intent_id: id, detail: detail.into(), ts });
                    return true;
                }
            }
            return w.leaves <= Decimal::ZERO;
        }
        // Resting limit order: fills at its own price when the opposite side reaches it.
        if w.order.tif == TimeInForce::Day && ts.0 / DAY_NS > w.order.decided_at.0 / DAY_NS {
            out.push(VenueEvent::Cancelled { intent_id: id, detail: "day order expired".into(), ts });
            return true;
        }
        if let Some(limit) = w.order.limit_price
            && marketable(best)
            && size > Decimal::ZERO
        {
            let qty = w.leaves.min(size);
            out.push(VenueEvent::Fill { intent_id: id, px: limit, qty, ts, exec: None });
            w.leaves -= qty;
        }
        w.leaves <= Decimal::ZERO
    }
}

impl Venue for SimulatedVenue {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn place(&mut self, order: RiskApproved<Order>, out: &mut Vec<VenueEvent>) {
        let order = order.into_inner();
        let ts = order.decided_at;
        out.push(VenueEvent::Accepted { intent_id: order.intent_id, order_id: format!("SIM-{}", order.intent_id), ts });
        let arrival = UnixNanos(ts.0.saturating_add(self.latency_ns));
        let mut w = Working { leaves: order.qty, order, arrival, arrived: false };
        // Market data may already be past the arrival time (the order plane lags the feed).
        if let Some((q, qts)) = self.quotes.get(&w.order.symbol).cloned()
            && qts >= arrival
        {
            let tick = self.tick(&w.order.symbol);
            if Self::execute(tick, &mut w, &q, qts, out) {
                return;
            }
        }
        self.working.push(w);
    }

    fn cancel(&mut self, intent_id: IntentId, ts: UnixNanos, detail: &str, out: &mut Vec<VenueEvent>) -> bool {
        let Some(i) = self.working.iter().position(|w| w.order.intent_id == intent_id) else { return false };
        self.working.remove(i);
        out.push(VenueEvent::Cancelled { intent_id, detail: detail.into(), ts });
        true
    }

    fn on_quote(&mut self, ts: UnixNanos, quote: &Quote, out: &mut Vec<VenueEvent>) {
        let previous = self.quotes.insert(quote.symbol.clone(), (quote.clone(), ts));
        let tick = self.tick(&quote.symbol);
        let (quotes, ticks) = (&self.quotes, &self.ticks);
        self.working.retain_mut(|w| {
            if w.order.symbol != quote.symbol {
                // Time passed this order's arrival on another symbol's clock: its own latest
                // quote is the book in effect at arrival.
                if !w.arrived
                    && ts > w.arrival
                    && let Some((own, _)) = quotes.get(&w.order.symbol)
                {
                    let own_tick = ticks.get(&w.order.symbol).copied().unwrap_or(Decimal::new(1, 2));
                    return !Self::execute(own_tick, w, own, w.arrival, out);
                }
                return true;
            }
            if !w.arrived && ts < w.arrival {
                return true;
            }
            if !w.arrived && ts > w.arrival {
                // This quote is after the arrival; the book in effect at arrival was the one before.
                if let Some((before, _)) = &previous
                    && Self::execute(tick, w, before, w.arrival, out)
                {
                    return false;
                }
                w.arrived = true;
            }
            !Self::execute(tick, w, quote, ts, out)
        });
    }

    fn working(&self) -> Vec<IntentId> {
        self.working.iter().map(|w| w.order.intent_id).collect()
    }
}
