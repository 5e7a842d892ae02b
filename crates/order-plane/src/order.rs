//! An order as a venue receives it, and the Order Plane's record of each order's progress.

use common::events::{Envelope, ExecEvent, ExecReport, ExecStatus, IntentId, OrderType, TimeInForce};
use common::types::{EventId, MAX_MAGNITUDE, Side, Symbol, UnixNanos};
use rust_decimal::Decimal;

/// What a venue is asked to execute. Built only from a risk-approved intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The intent it executes; the venue's client order reference.
    pub intent_id: IntentId,
    /// Instrument.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Quantity, positive.
    pub qty: Decimal,
    /// Market or limit.
    pub order_type: OrderType,
    /// Limit price, for limit orders.
    pub limit_price: Option<Decimal>,
    /// Time in force.
    pub tif: TimeInForce,
    /// Mid at decision time.
    pub arrival_mid: Decimal,
    /// Decision time (event time).
    pub decided_at: UnixNanos,
}

/// The Order Plane's view of one order, updated by every exec report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderState {
    /// Instrument.
    pub symbol: Symbol,
    /// Side.
    pub side: Side,
    /// Venue order id.
    pub order_id: String,
    /// Venue name.
    pub venue: String,
    /// Total quantity.
    pub order_qty: Decimal,
    /// Filled so far.
    pub cum_qty: Decimal,
    /// Σ price × size of the fills.
    pub cum_value: Decimal,
    /// Commission so far.
    pub cum_commission: Decimal,
    /// Latest status.
    pub status: ExecStatus,
    /// Mid at decision time.
    pub arrival_mid: Decimal,
    /// Fills so far (names the next execution id).
    pub fills: u32,
    /// Reports published so far (names the next report's event id).
    pub reports: u32,
    /// The intent's event id (causation of the first reports).
    pub intent_event: EventId,
    /// The intent's decision time (`ts_event`), which names its first report: see
    /// `OrderEngine::report`.
    pub decided_at: UnixNanos,
    /// Execution ids reported so far: a venue that reports an execution again (a reconciliation
    /// after a reconnect or a restart) must not count it twice.
    pub exec_ids: Vec<String>,
    /// Features the cost model saw at decision time: (half spread bps, σ·sqrt(qty/volume) bps).
    pub cost_features: Option<(f64, f64)>,
    /// Mid of the venue's book when the order arrived (the simulated venue).
    pub venue_mid: Option<Decimal>,
    /// When a broker venue's order finished (its first terminal report): it is kept that long
    /// for a late execution, see `OrderEngine`'s `FINISHED_KEPT_NS`.
    pub finished_at: Option<UnixNanos>,
}

impl OrderState {
    /// An order as its first report in the ledger describes it (a rebuild at start-up, or a
    /// snapshot's): the fills and counts are then taken from each report by
    /// [`OrderState::restore_report`].
    pub fn from_ledger(env: &Envelope<ExecEvent>, r: &ExecReport) -> Self {
        Self {
            symbol: r.symbol.clone(),
            side: r.side,
            order_id: r.order_id.clone(),
            venue: r.venue.clone(),
            order_qty: r.order_qty,
            cum_qty: Decimal::ZERO,
            cum_value: Decimal::ZERO,
            cum_commission: Decimal::ZERO,
            status: r.status,
            arrival_mid: r.arrival_mid,
            fills: 0,
            reports: 0,
            intent_event: env.causation_id.unwrap_or(env.event_id),
            // Unknown, and not needed: this order's first report is already published.
            decided_at: env.ts_event,
            exec_ids: Vec::new(),
            cost_features: None,
            venue_mid: r.venue_mid,
            finished_at: None,
        }
    }

    /// Takes one past report of this order, published at `ts`; `true` when it is the one that
    /// finished the order.
    pub fn restore_report(&mut self, r: &ExecReport, ts: UnixNanos) -> bool {
        if let Some(exec_id) = &r.exec_id
            && !self.exec_ids.contains(exec_id)
        {
            self.exec_ids.push(exec_id.clone());
        }
        self.status = r.status;
        let newly_finished = r.status.is_terminal() && self.finished_at.is_none();
        if newly_finished {
            self.finished_at = Some(ts);
        }
        // An order is first reported sent, without the venue's id.
        if self.order_id.is_empty() {
            self.order_id.clone_from(&r.order_id);
        }
        self.cum_qty = r.cum_qty;
        self.cum_value = r.avg_px.unwrap_or_default() * r.cum_qty;
        self.cum_commission = r.cum_commission;
        self.reports += 1;
        self.fills += u32::from(r.last_qty > Decimal::ZERO);
        newly_finished
    }

    /// Still working.
    pub fn leaves(&self) -> Decimal {
        if self.status.is_terminal() { Decimal::ZERO } else { self.order_qty - self.cum_qty }
    }

    /// Average fill price.
    pub fn avg_px(&self) -> Option<Decimal> {
        (self.cum_qty > Decimal::ZERO).then(|| (self.cum_value / self.cum_qty).round_dp(10).normalize())
    }

    /// Signed cost of the fills versus the arrival mid, in basis points (positive = paid).
    pub fn slippage_bps(&self) -> Option<Decimal> {
        let avg = self.avg_px()?;
        if self.arrival_mid <= Decimal::ZERO {
            return None;
        }
        // Checked and bounded: a valid intent may carry any positive arrival mid, a tiny one makes
        // the ratio huge, and a report must stay within the contract's bound (±10^12).
        let signed = avg.checked_sub(self.arrival_mid)?.checked_mul(self.side.sign())?;
        let bps = signed.checked_div(self.arrival_mid)?.checked_mul(Decimal::from(10_000))?;
        (bps.abs() <= MAX_MAGNITUDE).then(|| bps.round_dp(6).normalize())
    }
}
