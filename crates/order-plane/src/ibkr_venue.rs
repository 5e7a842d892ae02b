//! The IBKR venue: risk-approved orders go to TWS / IB Gateway through the `ibkr` crate's order
//! session, and what the gateway reports comes back as [`VenueEvent`]s.
//!
//! The session runs on its own task, so this venue answers little at once: `place` reports the
//! order `Sent` (published before the command leaves: the shell forwards commands only once what
//! was published before them is on the broker) and `cancel` queues a command; the shell hands the session's [`OrderEvent`]s, translated by
//! [`translate`], to [`OrderEngine::on_venue`](crate::engine::OrderEngine::on_venue) and
//! [`OrderEngine::reconciled`](crate::engine::OrderEngine::reconciled).
//!
//! - The intent id travels as `orderRef`; IB's order id comes from the gateway's next valid id.
//! - Executions carry IB's execution id and commission (joined by execution id in the session);
//!   the engine drops an execution id it has reported before, so the reconciliation after a
//!   reconnect or a restart reports a fill exactly once.
//! - Orders survive a restart at IB, so a restart does not report them cancelled: the first
//!   reconciliation says which still work.

use std::collections::{HashMap, HashSet};

use common::config::IbkrContractConfig;
use common::events::{IntentId, OrderType, Quote, TimeInForce};
use common::types::{Side, Symbol, UnixNanos};
use ibapi::contracts::Contract;
use ibkr::orders::{OrderCommand, OrderEvent};
use rust_decimal::Decimal;
use tokio::sync::mpsc;

use crate::order::Order;
use crate::risk::RiskApproved;
use crate::venue::{Execution, Venue, VenueEvent};

/// Sends orders to the IBKR order session.
#[derive(Debug)]
pub struct IbkrVenue {
    commands: mpsc::UnboundedSender<OrderCommand>,
    contracts: HashMap<String, IbkrContractConfig>,
    account: String,
    /// Each working order's unfilled quantity, as far as the venue's reports tell.
    working: HashMap<IntentId, Decimal>,
}

impl IbkrVenue {
    /// A venue that queues commands on `commands`; `contracts` name each symbol's IB contract
    /// (an unlisted symbol trades as a US stock on SMART), `account` is the IB account (empty
    /// when the login has one).
    pub fn new(
        commands: mpsc::UnboundedSender<OrderCommand>,
        contracts: &[IbkrContractConfig],
        account: String,
    ) -> Self {
        let contracts = contracts.iter().map(|c| (c.symbol.clone(), c.clone())).collect();
        Self { commands, contracts, account, working: HashMap::new() }
    }

    fn contract(&self, symbol: &Symbol) -> Contract {
        let listed = self.contracts.get(symbol.as_str()).cloned();
        let config = listed.unwrap_or_else(|| IbkrContractConfig::stock(symbol.as_str()));
        ibkr::market::contract(&config)
    }
}

fn tif(t: TimeInForce) -> ibapi::orders::TimeInForce {
    match t {
        TimeInForce::Day => ibapi::orders::TimeInForce::Day,
        TimeInForce::Ioc => ibapi::orders::TimeInForce::ImmediateOrCancel,
        TimeInForce::Gtc => ibapi::orders::TimeInForce::GoodTillCanceled,
    }
}

impl Venue for IbkrVenue {
    fn name(&self) -> &'static str {
        "ibkr"
    }

    fn place(&mut self, order: RiskApproved<Order>, out: &mut Vec<VenueEvent>) {
        let order = order.into_inner();
        let command = OrderCommand::Place {
            order_ref: order.intent_id.to_string(),
            contract: Box::new(self.contract(&order.symbol)),
            buy: order.side == Side::Buy,
            qty: order.qty,
            limit: if order.order_type == OrderType::Limit { order.limit_price } else { None },
            tif: tif(order.tif),
            account: self.account.clone(),
        };
        if self.commands.send(command).is_err() {
            let detail = "the IBKR order session is not running".into();
            out.push(VenueEvent::Rejected { intent_id: order.intent_id, detail, ts: order.decided_at });
            return;
        }
        out.push(VenueEvent::Sent { intent_id: order.intent_id, ts: order.decided_at });
        self.working.insert(order.intent_id, order.qty);
    }

    fn cancel(&mut self, intent_id: IntentId, _ts: UnixNanos, _detail: &str, _out: &mut Vec<VenueEvent>) -> bool {
        if !self.working.contains_key(&intent_id) {
            return false;
        }
        // IB confirms the cancel (or the fill that beat it) on the order stream.
        self.commands.send(OrderCommand::Cancel { order_ref: intent_id.to_string() }).is_ok()
    }

    fn on_quote(&mut self, _ts: UnixNanos, _quote: &Quote, _out: &mut Vec<VenueEvent>) {}

    fn working(&self) -> Vec<IntentId> {
        let mut ids: Vec<IntentId> = self.working.keys().copied().collect();
        ids.sort();
        ids
    }

    fn keeps_orders(&self) -> bool {
        true
    }

    fn observe(&mut self, event: &VenueEvent) {
        match event {
            VenueEvent::Found { intent_id, qty, .. } => {
                self.working.entry(*intent_id).or_insert(*qty);
            }
            VenueEvent::Fill { intent_id, qty, .. } => {
                if let Some(leaves) = self.working.get_mut(intent_id) {
                    *leaves -= *qty;
                    if *leaves <= Decimal::ZERO {
                        self.working.remove(intent_id);
                    }
                }
            }
            VenueEvent::Cancelled { intent_id, .. } | VenueEvent::Rejected { intent_id, .. } => {
                self.working.remove(intent_id);
            }
            VenueEvent::Accepted { .. } | VenueEvent::Sent { .. } | VenueEvent::Arrived { .. } => {}
        }
    }
}

/// A session event, as the engine takes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Translated {
    /// Order events for [`OrderEngine::on_venue`](crate::engine::OrderEngine::on_venue).
    Events(Vec<VenueEvent>),
    /// The end of a reconciliation: the intents IB still works.
    Reconciled(HashSet<IntentId>),
    /// The gateway connection dropped.
    Disconnected,
    /// Nothing the engine needs (an order reference that is not an intent id, logged).
    Ignored,
}

/// Translates one session event received at `now` (the event time of what IB reports: IB's own
/// execution times are not comparable with the data's event times).
pub fn translate(event: OrderEvent, now: UnixNanos) -> Translated {
    let intent = |order_ref: &str| {
        let id = order_ref.parse::<uuid::Uuid>().ok().map(IntentId);
        if id.is_none() {
            tracing::info!(order_ref, "IBKR order whose reference is not an intent id ignored (placed by hand?).");
        }
        id
    };
    let one = |ev: Option<VenueEvent>| ev.map_or(Translated::Ignored, |e| Translated::Events(vec![e]));
    match event {
        OrderEvent::Submitted { order_ref, order_id } => one(intent(&order_ref)
            .map(|intent_id| VenueEvent::Accepted { intent_id, order_id: order_id.to_string(), ts: now })),
        OrderEvent::Found { order_ref, order_id, symbol, buy, qty } => {
            let Ok(symbol) = Symbol::new(&symbol) else {
                tracing::warn!(order_ref, symbol, "IBKR order on a symbol this platform cannot name ignored.");
                return Translated::Ignored;
            };
            let side = if buy { Side::Buy } else { Side::Sell };
            one(intent(&order_ref).map(|intent_id| VenueEvent::Found {
                intent_id,
                order_id: order_id.to_string(),
                symbol,
                side,
                qty,
                ts: now,
            }))
        }
        OrderEvent::Fill { order_ref, exec_id, px, qty, commission, received } => {
            one(intent(&order_ref).map(|intent_id| VenueEvent::Fill {
                intent_id,
                px,
                qty,
                ts: received,
                exec: Some(Execution { exec_id, commission }),
                // IB reports the commission; who provided liquidity does not change it here.
                maker: false,
            }))
        }
        OrderEvent::Cancelled { order_ref, detail } => {
            one(intent(&order_ref).map(|intent_id| VenueEvent::Cancelled { intent_id, detail, ts: now }))
        }
        OrderEvent::Rejected { order_ref, detail } => {
            one(intent(&order_ref).map(|intent_id| VenueEvent::Rejected { intent_id, detail, ts: now }))
        }
        OrderEvent::Reconciled { open } => Translated::Reconciled(open.iter().filter_map(|r| intent(r)).collect()),
        OrderEvent::Disconnected => Translated::Disconnected,
    }
}
