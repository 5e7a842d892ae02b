//! What the Strategy Plane keeps of one `exec_reports` partition, folded record by record: the
//! state its rebuild needs (positions, the latest cost models, the halt, the newest intents and
//! fills), and nothing that grows with the ledger. It is written as the partition's snapshot
//! (`common::snapshot`); a start or a take-over restores it with
//! [`StrategyEngine::restore_partition`](crate::engine::StrategyEngine::restore_partition) and
//! reads only the records after it.

use std::collections::BTreeMap;

use common::dedup::Recent;
use common::events::{CostModelUpdate, Envelope, ExecEvent, IntentId};
use common::snapshot::LedgerFold;
use common::types::Symbol;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::positions::Position;

/// Fills remembered to count a copy once. A copy comes within seconds of its original (a
/// re-published report); the snapshot stays small (about 40 kB of ids at the bound).
pub const SNAPSHOT_FILLS: usize = 2_048;
/// Intents remembered as issued and as finished: a restart re-decides from where its group
/// resumes, seconds back, and must know which of those intents are done.
pub const SNAPSHOT_INTENTS: usize = 1_024;

/// One `exec_reports` partition as the Strategy Plane sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyLedger {
    /// Each symbol's position, from the partition's fills (average cost, realized PnL, fees).
    pub positions: BTreeMap<Symbol, Position>,
    /// The newest fills counted, by execution id.
    pub fills: Recent<String>,
    /// Each symbol's latest cost model.
    pub costs: BTreeMap<Symbol, CostModelUpdate>,
    /// The latest halt state on the partition, if any.
    pub halted: Option<bool>,
    /// The newest intents reported on.
    pub issued: Recent<IntentId>,
    /// The newest intents with a final report.
    pub finished: Recent<IntentId>,
}

impl Default for StrategyLedger {
    fn default() -> Self {
        Self {
            positions: BTreeMap::new(),
            fills: Recent::new(SNAPSHOT_FILLS),
            costs: BTreeMap::new(),
            halted: None,
            issued: Recent::new(SNAPSHOT_INTENTS),
            finished: Recent::new(SNAPSHOT_INTENTS),
        }
    }
}

impl LedgerFold for StrategyLedger {
    const KIND: &'static str = "strategy";

    fn apply(&mut self, env: &Envelope<ExecEvent>) {
        match &env.payload {
            ExecEvent::Report(r) => {
                self.issued.insert(r.intent_id);
                // As `Book::on_report`: a fill counts once, and one that would not fit an exact
                // decimal changes nothing.
                if let (Some(exec_id), Some(px)) = (&r.exec_id, r.last_px)
                    && r.last_qty > Decimal::ZERO
                    && self.fills.insert(exec_id.clone())
                {
                    self.positions.entry(r.symbol.clone()).or_default().fill(r.side, r.last_qty, px, r.commission);
                }
                if r.status.is_terminal() {
                    self.finished.insert(r.intent_id);
                }
            }
            ExecEvent::CostModel(c) => {
                if let Some(symbol) = &c.symbol {
                    self.costs.insert(symbol.clone(), c.clone());
                }
            }
            ExecEvent::Halt(h) => self.halted = Some(h.halted),
        }
    }
}

impl StrategyLedger {
    /// The symbols the partition holds state of.
    pub fn symbols(&self) -> impl Iterator<Item = &Symbol> {
        self.positions.keys().chain(self.costs.keys())
    }
}
