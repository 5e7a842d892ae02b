//! What the Order Plane keeps of one `exec_reports` partition, folded record by record: exactly
//! what [`OrderEngine::restore`](crate::engine::OrderEngine::restore) would rebuild from its
//! records (positions, marks, the intent ids a repeat could still pass risk with, orders that may
//! still change, the latest cost models and halt, the month's volume), and nothing that grows
//! with the ledger. It is written as the partition's snapshot (`common::snapshot`); a start
//! restores it with [`OrderEngine::restore_snapshot`](crate::engine::OrderEngine::restore_snapshot).

use std::collections::{BTreeMap, VecDeque};

use common::dedup::Recent;
use common::events::{CostModelUpdate, Envelope, ExecEvent, IntentId};
use common::snapshot::LedgerFold;
use common::types::{EventId, Symbol, UnixNanos};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::cost_model::CostModel;
use crate::engine::{forget_finished, year_month};
use crate::order::OrderState;
use crate::remembered::RememberedIntents;

/// Event ids remembered to drop a copy of a record (a producer retry, a report published again
/// after a restart). A copy that is missed does harm: a finished order's `accepted` read again
/// makes it a working order, which the start then reports cancelled, a second terminal report.
/// Chaos found copies 1,781 records behind their originals (a restart re-executing the intents
/// of a 90 s broker freeze); 1,024 was too few. 16,384 ids are ~650 kB of a snapshot, under the
/// broker's 1 MB record limit.
pub const SNAPSHOT_EVENTS: usize = 16_384;

/// Venues whose finished orders cannot change again: risk's refusals and the simulated venue's
/// orders. A broker venue can still report a late execution of a finished order.
const FINAL_VENUES: [&str; 2] = ["risk", "simulated"];

/// One `exec_reports` partition as the Order Plane's rebuild sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLedger {
    /// Signed filled quantity per symbol.
    positions: BTreeMap<Symbol, Decimal>,
    /// Each symbol's latest fill (price, event time): its mark until a quote arrives.
    marks: BTreeMap<Symbol, (Decimal, UnixNanos)>,
    /// Intent ids whose repeat risk could still pass.
    remembered: RememberedIntents,
    /// The latest month with fills, and the quantity filled in it.
    monthly: (i32, u8, Decimal),
    /// Orders that may still change: working ones, and a broker venue's finished ones.
    orders: BTreeMap<IntentId, OrderState>,
    /// A broker venue's finished orders by when they finished, oldest first.
    finished: VecDeque<(UnixNanos, IntentId)>,
    /// Each symbol's latest cost model the engine would take.
    costs: BTreeMap<Symbol, CostModelUpdate>,
    /// The latest halt on the partition: halted, and why.
    halt: Option<(bool, String)>,
    /// The newest records' event ids.
    seen: Recent<EventId>,
}

impl OrderLedger {
    /// An empty fold whose ids are kept for `max_intent_lag_ms` (in nanoseconds).
    pub fn new(max_lag_ns: u64) -> Self {
        Self {
            positions: BTreeMap::new(),
            marks: BTreeMap::new(),
            remembered: RememberedIntents::new(max_lag_ns),
            monthly: (0, 0, Decimal::ZERO),
            orders: BTreeMap::new(),
            finished: VecDeque::new(),
            costs: BTreeMap::new(),
            halt: None,
            seen: Recent::new(SNAPSHOT_EVENTS),
        }
    }

    /// Signed filled quantity per symbol.
    pub fn positions(&self) -> &BTreeMap<Symbol, Decimal> {
        &self.positions
    }

    /// Each symbol's latest fill price and time.
    pub fn marks(&self) -> &BTreeMap<Symbol, (Decimal, UnixNanos)> {
        &self.marks
    }

    /// Remembered intent ids with their symbol and time.
    pub(crate) fn remembered(&self) -> impl Iterator<Item = (&Symbol, UnixNanos, IntentId)> {
        self.remembered.entries()
    }

    /// The latest month with fills (year, month) and the quantity filled in it.
    pub fn monthly(&self) -> (i32, u8, Decimal) {
        self.monthly
    }

    /// Orders that may still change.
    pub fn orders(&self) -> &BTreeMap<IntentId, OrderState> {
        &self.orders
    }

    /// Each symbol's latest cost model.
    pub fn costs(&self) -> &BTreeMap<Symbol, CostModelUpdate> {
        &self.costs
    }

    /// The latest halt: halted, and why.
    pub fn halt(&self) -> Option<&(bool, String)> {
        self.halt.as_ref()
    }

    /// The newest records' event ids, oldest first.
    pub fn seen(&self) -> impl Iterator<Item = &EventId> {
        self.seen.iter()
    }

    /// Forgets a broker venue's finished orders past [`FINISHED_KEPT_NS`] before `now` and the
    /// oldest beyond [`FINISHED_KEPT_MAX`]: the engine would drop them at the rebuild's end too.
    fn forget_finished(&mut self, now: UnixNanos) {
        let orders = &mut self.orders;
        forget_finished(&mut self.finished, now, |id| {
            if orders.get(&id).is_some_and(|o| o.status.is_terminal()) {
                orders.remove(&id);
            }
        });
    }
}

impl LedgerFold for OrderLedger {
    const KIND: &'static str = "order";

    /// [`OrderEngine::restore`](crate::engine::OrderEngine::restore), one partition at a time.
    fn apply(&mut self, env: &Envelope<ExecEvent>) {
        if !self.seen.insert(env.event_id) {
            return;
        }
        let ts = env.ts_event;
        match &env.payload {
            ExecEvent::Report(r) => {
                let mark = self.marks.get(&r.symbol).map(|m| m.1);
                self.remembered.insert(&r.symbol, r.intent_id, ts, mark);
                if r.last_qty > Decimal::ZERO {
                    *self.positions.entry(r.symbol.clone()).or_default() += r.side.sign() * r.last_qty;
                    let (year, month) = year_month(ts);
                    if (year, month) > (self.monthly.0, self.monthly.1) {
                        self.monthly = (year, month, Decimal::ZERO);
                    }
                    // As the engine counts it: a late fill of an earlier month adds to this one.
                    self.monthly.2 += r.last_qty;
                    if let Some(px) = r.last_px
                        && mark.is_none_or(|m| m <= ts)
                    {
                        self.marks.insert(r.symbol.clone(), (px, ts));
                    }
                }
                let state = self.orders.entry(r.intent_id).or_insert_with(|| OrderState::from_ledger(env, r));
                let newly_finished = state.restore_report(r, ts);
                if r.status.is_terminal() && FINAL_VENUES.contains(&state.venue.as_str()) {
                    self.orders.remove(&r.intent_id);
                } else if newly_finished {
                    self.finished.push_back((ts, r.intent_id));
                    self.forget_finished(ts);
                }
            }
            ExecEvent::CostModel(c) => {
                if let Some(symbol) = &c.symbol
                    && CostModel::restorable(c)
                {
                    self.costs.insert(symbol.clone(), c.clone());
                }
            }
            ExecEvent::Halt(h) => self.halt = Some((h.halted, h.reason.clone())),
        }
    }

    /// Ids were forgotten after the snapshot's lag: a longer lag now would need ids it no longer
    /// holds.
    fn usable_with(&self, fresh: &Self) -> Result<(), &'static str> {
        if self.remembered.max_lag_ns() < fresh.remembered.max_lag_ns() {
            return Err("order_plane.max_intent_lag_ms is longer than when the snapshot was written");
        }
        Ok(())
    }
}
