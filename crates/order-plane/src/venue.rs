//! Venues execute risk-approved orders. [`Venue`] is the seam where IBKR plugs in; the
//! [`SimulatedVenue`](crate::simulated::SimulatedVenue) is the default while live trading is off.

use common::events::{IntentId, MarketEvent, Quote};
use common::types::{Side, Symbol, UnixNanos};
use rust_decimal::Decimal;

use crate::order::Order;
use crate::risk::{Mark, RiskApproved};

/// What a venue reports.
#[derive(Debug, Clone, PartialEq)]
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
        /// A resting order's fill (it added liquidity); a taker's otherwise.
        maker: bool,
    },
    /// The order reached the venue, whose book then had this mid (the simulated venue): the
    /// benchmark that splits the delay cost from the spread and impact.
    Arrived {
        /// Intent.
        intent_id: IntentId,
        /// Mid of the book in effect at arrival.
        mid: Decimal,
        /// Half the spread of that book, basis points of its mid (the cost model's feature).
        half_spread_bps: f64,
        /// `σ_bps · sqrt(qty / volume)` then (the cost model's impact feature; 0 without volume).
        impact: f64,
        /// Arrival time (event time).
        ts: UnixNanos,
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

/// The mark of a symbol at an event time, as a venue that keeps event time knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkAt {
    /// The venue does not keep event time (a broker): risk judges on the latest mark.
    Live,
    /// The mark in effect at that time.
    Known(Mark),
    /// Market data has passed that time, with no quote at or before it.
    Unknown,
    /// Market data has not reached that time yet: the intent waits for it.
    NotYet,
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
    /// Any market event (quotes go to [`on_quote`](Self::on_quote) unless a venue uses more).
    fn on_market(&mut self, ts: UnixNanos, event: &MarketEvent, out: &mut Vec<VenueEvent>) {
        if let MarketEvent::Quote(q) = event {
            self.on_quote(ts, q, out);
        }
    }
    /// Where `symbol`'s market data must be read again from after a restart (the position the
    /// shell passed with [`Venue::at_position`]) for this venue to rebuild the history it holds
    /// now; `None` when it needs none.
    fn restart_position(&self, _symbol: &Symbol) -> Option<u64> {
        None
    }
    /// The next market event of `symbol` is at input `position` (a record's offset).
    fn at_position(&mut self, _symbol: &Symbol, _position: u64) {}
    /// `symbol`'s mark at event time `ts`, for a venue that executes in event time.
    fn mark_at(&self, _symbol: &Symbol, _ts: UnixNanos) -> MarkAt {
        MarkAt::Live
    }
    /// No intent for `symbol` decided at or before `upto` will come any more (a decision mark):
    /// history older than that can go.
    fn decided(&mut self, _symbol: &Symbol, _upto: UnixNanos) {}
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
    fn on_market(&mut self, ts: UnixNanos, event: &MarketEvent, out: &mut Vec<VenueEvent>) {
        (**self).on_market(ts, event, out);
    }
    fn mark_at(&self, symbol: &Symbol, ts: UnixNanos) -> MarkAt {
        (**self).mark_at(symbol, ts)
    }
    fn restart_position(&self, symbol: &Symbol) -> Option<u64> {
        (**self).restart_position(symbol)
    }
    fn at_position(&mut self, symbol: &Symbol, position: u64) {
        (**self).at_position(symbol, position);
    }
    fn decided(&mut self, symbol: &Symbol, upto: UnixNanos) {
        (**self).decided(symbol, upto);
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
