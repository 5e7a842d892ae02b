//! The order session: places and cancels orders, turns the gateway's order messages into
//! [`OrderEvent`]s, and reconciles after every (re)connect.
//!
//! - Order ids come from the gateway (`next_order_id`, seeded by its next valid id); the intent
//!   id travels as `orderRef`, so every execution and open order maps back to its intent.
//! - A fill is reported once its execution **and** its commission report have arrived (joined
//!   by execution id, [`FillJoiner`]); an execution id is reported at most once per session, and
//!   the Order Plane's ledger drops the ones reported before a restart.
//! - After each connect the session requests this client's executions and open orders before it
//!   sends anything: fills that happened while disconnected are found, orders IB holds that this
//!   session did not place (placed before a restart) are announced as [`OrderEvent::Found`], and
//!   [`OrderEvent::Reconciled`] lists the orders still working.
//! - No order reference is sent twice: a `Place` for a reference IB already knows announces the
//!   existing order instead. A submission cut off by a connection loss is settled by the next
//!   reconciliation: found at IB, or reported cancelled as never having arrived.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::types::UnixNanos;
use futures::StreamExt;
use ibapi::Client;
use ibapi::contracts::Contract;
use ibapi::orders::{
    Action, CommissionReport, ExecutionData, ExecutionFilter, Executions, Order, OrderStatusKind, OrderUpdate, Orders,
    TimeInForce,
};
use ibapi::subscriptions::SubscriptionItem;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::codes::{self, Reaction};
use crate::convert::decimal;
use crate::market::now;

/// What the Order Plane asks of the gateway.
#[derive(Debug, Clone)]
pub enum OrderCommand {
    /// Send a new order.
    Place {
        /// The intent id.
        order_ref: String,
        /// What to trade (boxed: contracts are large).
        contract: Box<Contract>,
        /// Buy (`true`) or sell.
        buy: bool,
        /// Quantity, positive.
        qty: Decimal,
        /// Limit price; `None` for a market order.
        limit: Option<Decimal>,
        /// `DAY`, `IOC`, `GTC`.
        tif: TimeInForce,
        /// Account, when the login manages several.
        account: String,
    },
    /// Cancel what is left of an order.
    Cancel {
        /// The intent id.
        order_ref: String,
    },
}

/// What the gateway said about our orders.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    /// The order went to the gateway under this id.
    Submitted {
        /// The intent id.
        order_ref: String,
        /// IB's order id.
        order_id: i32,
    },
    /// An execution, with its commission.
    Fill {
        /// The intent id.
        order_ref: String,
        /// IB's execution id.
        exec_id: String,
        /// Price.
        px: Decimal,
        /// Size.
        qty: Decimal,
        /// Commission of this execution.
        commission: Decimal,
        /// When we learned of it.
        received: UnixNanos,
    },
    /// The rest of the order is cancelled.
    Cancelled {
        /// The intent id.
        order_ref: String,
        /// Why.
        detail: String,
    },
    /// The gateway refused the order.
    Rejected {
        /// The intent id.
        order_ref: String,
        /// Why.
        detail: String,
    },
    /// An order of this client that IB holds and this session did not place: placed before a
    /// restart, or a submission whose outcome was in doubt. Comes before the order's fills.
    Found {
        /// The intent id.
        order_ref: String,
        /// IB's order id.
        order_id: i32,
        /// Contract symbol.
        symbol: String,
        /// Buy (`true`) or sell.
        buy: bool,
        /// The order's quantity (the executed quantity when IB no longer lists the order).
        qty: Decimal,
    },
    /// Executions and open orders were re-read after a connect; these orders are still working.
    Reconciled {
        /// Intent ids of the orders IB still works.
        open: Vec<String>,
    },
    /// The connection dropped; the session reconciles once it is back.
    Disconnected,
}

#[derive(Debug, Clone)]
struct PendingExec {
    order_ref: String,
    px: Decimal,
    qty: Decimal,
}

/// Joins executions with their commission reports (by execution id) and holds an order's
/// terminal event until its fills are out, so reports stay in the order fills → terminal.
#[derive(Debug, Default)]
pub struct FillJoiner {
    execs: HashMap<String, PendingExec>,
    commissions: HashMap<String, Decimal>,
    reported: HashSet<String>,
    held: HashMap<String, OrderEvent>,
}

impl FillJoiner {
    /// An execution arrived.
    pub fn on_execution(
        &mut self,
        order_ref: &str,
        exec_id: &str,
        px: Decimal,
        qty: Decimal,
        out: &mut Vec<OrderEvent>,
    ) {
        if self.reported.contains(exec_id) || order_ref.is_empty() {
            return;
        }
        let pending = PendingExec { order_ref: order_ref.into(), px, qty };
        self.execs.insert(exec_id.into(), pending);
        self.try_emit(exec_id, out);
    }

    /// A commission report arrived.
    pub fn on_commission(&mut self, exec_id: &str, commission: Decimal, out: &mut Vec<OrderEvent>) {
        if self.reported.contains(exec_id) {
            return;
        }
        self.commissions.insert(exec_id.into(), commission);
        self.try_emit(exec_id, out);
    }

    /// References with an execution still waiting for its commission.
    pub fn pending_refs(&self) -> impl Iterator<Item = &str> {
        self.execs.values().map(|e| e.order_ref.as_str())
    }

    /// A terminal event for an order: out now, or after the order's pending fills.
    pub fn on_terminal(&mut self, order_ref: &str, ev: OrderEvent, out: &mut Vec<OrderEvent>) {
        if self.execs.values().any(|e| e.order_ref == order_ref) {
            self.held.insert(order_ref.into(), ev);
        } else {
            out.push(ev);
        }
    }

    fn try_emit(&mut self, exec_id: &str, out: &mut Vec<OrderEvent>) {
        if !(self.execs.contains_key(exec_id) && self.commissions.contains_key(exec_id)) {
            return;
        }
        let (Some(e), Some(commission)) = (self.execs.remove(exec_id), self.commissions.remove(exec_id)) else {
            return;
        };
        self.reported.insert(exec_id.into());
        out.push(OrderEvent::Fill {
            order_ref: e.order_ref.clone(),
            exec_id: exec_id.into(),
            px: e.px,
            qty: e.qty,
            commission,
            received: now(),
        });
        if !self.execs.values().any(|p| p.order_ref == e.order_ref)
            && let Some(held) = self.held.remove(&e.order_ref)
        {
            out.push(held);
        }
    }
}

/// How often the session checks that the connection is still up.
const CONNECTION_POLL: Duration = Duration::from_millis(250);
/// How often the session reconciles while connected: the safety net for a reconnect shorter
/// than [`CONNECTION_POLL`], which the order stream survives without a word.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);
/// Days of executions a reconciliation reads (IB keeps seven): a GTC order that filled before
/// the daily reset during an outage is still found.
const EXECUTION_DAYS: i32 = 7;

struct Session {
    client: Arc<Client>,
    tx: mpsc::Sender<OrderEvent>,
    refs: HashMap<i32, String>,
    ids: HashMap<String, i32>,
    done: HashSet<String>,
    /// References this session has announced (`Submitted` or `Found`).
    announced: HashSet<String>,
    /// References whose submission failed with the connection: at IB or not, the next
    /// reconciliation tells.
    in_doubt: HashSet<String>,
    joiner: FillJoiner,
    timeout: Duration,
}

/// What one reconciliation learned of an order: (order id, symbol, buy, quantity).
type Seen = (i32, String, bool, Decimal);

/// Runs the order session until `shutdown` fires or the client is shut down.
pub async fn run(
    client: Arc<Client>,
    mut commands: mpsc::UnboundedReceiver<OrderCommand>,
    tx: mpsc::Sender<OrderEvent>,
    request_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut s = Session {
        client,
        tx,
        refs: HashMap::new(),
        ids: HashMap::new(),
        done: HashSet::new(),
        announced: HashSet::new(),
        in_doubt: HashSet::new(),
        joiner: FillJoiner::default(),
        timeout: request_timeout,
    };
    loop {
        let opened = tokio::select! {
            () = shutdown.cancelled() => return,
            o = s.client.order_update_stream() => o,
        };
        let mut updates = match opened {
            Ok(u) => u,
            Err(e) => {
                if !s.wait_after(&e, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = s.reconcile().await {
            tracing::warn!(error = %e, "IBKR reconciliation failed; retrying.");
            if !s.wait_after(&e, &shutdown).await {
                return;
            }
            continue;
        }
        // The order stream may outlive a reconnect, so the connection itself is watched: every
        // reconnect must be followed by a reconciliation.
        let mut watch = tokio::time::interval(CONNECTION_POLL);
        let mut periodic = tokio::time::interval_at(tokio::time::Instant::now() + RECONCILE_EVERY, RECONCILE_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    s.send_queued(&mut commands).await;
                    return;
                }
                _ = watch.tick() => {
                    if !s.client.is_connected() {
                        let _ = s.tx.send(OrderEvent::Disconnected).await;
                        if !s.wait_after(&ibapi::Error::ConnectionReset, &shutdown).await {
                            return;
                        }
                        break;
                    }
                    // A submission cut off by a connection loss is settled as soon as the
                    // connection is back, however short the loss was.
                    if !s.in_doubt.is_empty() {
                        break;
                    }
                }
                _ = periodic.tick() => {
                    if let Err(e) = s.reconcile().await {
                        tracing::warn!(error = %e, "Periodic IBKR reconciliation failed.");
                    }
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    s.command(cmd).await;
                }
                item = updates.next() => match item {
                    Some(Ok(SubscriptionItem::Data(u))) => s.update(u).await,
                    Some(Ok(SubscriptionItem::Notice(n))) => s.notice(n.request_id, n.code, &n.message).await,
                    Some(Err(e)) => {
                        if e.is_connection_lost() {
                            let _ = s.tx.send(OrderEvent::Disconnected).await;
                        }
                        if !s.wait_after(&e, &shutdown).await {
                            return;
                        }
                        break;
                    }
                    None => {
                        if !s.wait_after(&ibapi::Error::EndOfStream, &shutdown).await {
                            return;
                        }
                        break;
                    }
                },
            }
        }
    }
}

impl Session {
    /// After a failure: waits for the connection (or a moment); `false` when the session must end.
    async fn wait_after(&self, e: &ibapi::Error, shutdown: &CancellationToken) -> bool {
        if matches!(e, ibapi::Error::Shutdown | ibapi::Error::ConnectionFailed) {
            tracing::error!(error = %e, "IBKR order session ended.");
            return false;
        }
        tracing::warn!(error = %e, "IBKR order stream interrupted; reconnecting.");
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                tokio::select! {
                    () = shutdown.cancelled() => false,
                    w = self.client.wait_connected() => w.is_ok(),
                }
            }
        }
    }

    async fn emit(&self, events: Vec<OrderEvent>) {
        for ev in events {
            let _ = self.tx.send(ev).await;
        }
    }

    fn learn(&mut self, order_id: i32, order_ref: &str) {
        if !order_ref.is_empty() {
            self.refs.insert(order_id, order_ref.into());
            self.ids.insert(order_ref.into(), order_id);
        }
    }

    async fn reconcile(&mut self) -> Result<(), ibapi::Error> {
        // Open orders first, then executions: an order that fills between the two requests is
        // then open in the first and filled in the second, never in neither.
        let mut orders = self.client.open_orders().await?;
        let items = orders.collect_to_end_within(self.timeout).await?;
        let mut open = Vec::new();
        let mut seen: HashMap<String, Seen> = HashMap::new();
        for item in items {
            if let Orders::OrderData(o) = item {
                let order_ref = o.order.order_ref.clone();
                self.learn(o.order_id, &order_ref);
                if order_ref.is_empty() {
                    continue;
                }
                let buy = matches!(o.order.action, Action::Buy);
                let qty = decimal(o.order.total_quantity).unwrap_or_default();
                seen.insert(order_ref.clone(), (o.order_id, o.contract.symbol.to_string(), buy, qty));
                if !o.order_state.status.is_terminal() {
                    open.push(order_ref);
                }
            }
        }
        let filter = ExecutionFilter {
            client_id: Some(self.client.client_id()),
            last_n_days: EXECUTION_DAYS,
            ..ExecutionFilter::default()
        };
        let mut execs = self.client.executions(filter).await?;
        let items = execs.collect_to_end_within(self.timeout).await?;
        let mut fills = Vec::new();
        let mut executed: HashMap<String, Seen> = HashMap::new();
        for item in items {
            match item {
                Executions::ExecutionData(d) => {
                    if let Some(order_ref) = self.execution(&d, &mut fills) {
                        let e = &d.execution;
                        let buy = matches!(e.side, ibapi::orders::ExecutionSide::Bought);
                        let symbol = d.contract.symbol.to_string();
                        let entry = executed.entry(order_ref).or_insert((e.order_id, symbol, buy, Decimal::ZERO));
                        entry.3 += decimal(e.shares).unwrap_or_default();
                    }
                }
                Executions::CommissionReport(c) => self.commission(&c, &mut fills),
            }
        }
        // An open order's own quantity wins over what has executed of it.
        for (order_ref, known) in executed {
            seen.entry(order_ref).or_insert(known);
        }
        // An execution still waiting for its commission: its order is not finished yet.
        open.extend(self.joiner.pending_refs().map(str::to_owned));
        open.sort();
        open.dedup();
        // Announcements first, so an order is known before its fills.
        let mut out = Vec::new();
        let mut found: Vec<_> = seen.into_iter().filter(|(r, _)| !self.announced.contains(r)).collect();
        found.sort();
        for (order_ref, (order_id, symbol, buy, qty)) in found {
            self.announced.insert(order_ref.clone());
            self.in_doubt.remove(&order_ref);
            out.push(OrderEvent::Found { order_ref, order_id, symbol, buy, qty });
        }
        out.append(&mut fills);
        let mut lost: Vec<String> = self.in_doubt.drain().collect();
        lost.sort();
        for order_ref in lost {
            if self.done.insert(order_ref.clone()) {
                let detail = "the order did not reach IBKR (connection lost while sending)".into();
                out.push(OrderEvent::Cancelled { order_ref, detail });
            }
        }
        tracing::info!(open = open.len(), "IBKR executions and open orders reconciled.");
        out.push(OrderEvent::Reconciled { open });
        self.emit(out).await;
        Ok(())
    }

    /// At shutdown: what the plane already handed over still goes out (a restart finds and
    /// adopts it), so no intent is acknowledged without reaching IB.
    async fn send_queued(&mut self, commands: &mut mpsc::UnboundedReceiver<OrderCommand>) {
        while let Ok(cmd) = commands.try_recv() {
            if matches!(cmd, OrderCommand::Place { .. }) && self.client.is_connected() {
                self.command(cmd).await;
            }
        }
    }

    /// Handles an execution; returns its order reference when it is one of ours.
    fn execution(&mut self, d: &ExecutionData, out: &mut Vec<OrderEvent>) -> Option<String> {
        let e = &d.execution;
        let order_ref = if e.order_reference.is_empty() {
            self.refs.get(&e.order_id).cloned().unwrap_or_default()
        } else {
            e.order_reference.clone()
        };
        self.learn(e.order_id, &order_ref);
        let (Some(px), Some(qty)) = (decimal(e.price), decimal(e.shares)) else {
            tracing::warn!(exec_id = %e.execution_id, "IBKR execution with a price or size that is not a number skipped.");
            return None;
        };
        if order_ref.is_empty() {
            tracing::info!(exec_id = %e.execution_id, order_id = e.order_id, "IBKR execution of an order we did not place ignored.");
            return None;
        }
        self.joiner.on_execution(&order_ref, &e.execution_id, px, qty, out);
        Some(order_ref)
    }

    fn commission(&mut self, c: &CommissionReport, out: &mut Vec<OrderEvent>) {
        let Some(fee) = decimal(c.commission) else { return };
        self.joiner.on_commission(&c.execution_id, fee, out);
    }

    async fn command(&mut self, cmd: OrderCommand) {
        match cmd {
            OrderCommand::Place { order_ref, contract, buy, qty, limit, tif, account } => {
                if let Some(&order_id) = self.ids.get(&order_ref) {
                    // IB already holds an order for this intent: announce it, never send twice.
                    tracing::warn!(%order_ref, order_id, "IBKR already holds this order; not sent again.");
                    self.announced.insert(order_ref.clone());
                    self.emit(vec![OrderEvent::Submitted { order_ref, order_id }]).await;
                    return;
                }
                if self.in_doubt.contains(&order_ref) {
                    tracing::warn!(%order_ref, "Order awaits reconciliation after a lost connection; not sent again.");
                    return;
                }
                let order_id = self.client.next_order_id();
                let (order_type, limit_price) = match limit {
                    Some(px) => ("LMT", px.to_f64()),
                    None => ("MKT", None),
                };
                let order = Order {
                    order_id,
                    action: if buy { Action::Buy } else { Action::Sell },
                    total_quantity: qty.to_f64().unwrap_or(0.0),
                    order_type: order_type.into(),
                    limit_price,
                    tif,
                    account,
                    order_ref: order_ref.clone(),
                    transmit: true,
                    ..Order::default()
                };
                self.learn(order_id, &order_ref);
                match self.client.submit_order(order_id, &contract, &order).await {
                    Ok(()) => {
                        self.announced.insert(order_ref.clone());
                        self.emit(vec![OrderEvent::Submitted { order_ref, order_id }]).await;
                    }
                    Err(e) => {
                        tracing::warn!(order_id, error = %e, "IBKR order submission failed.");
                        // Only IB's own answer may map this reference from now on.
                        self.refs.remove(&order_id);
                        self.ids.remove(&order_ref);
                        if e.is_connection_lost() {
                            // It may or may not have reached the gateway: the next
                            // reconciliation settles it.
                            self.in_doubt.insert(order_ref);
                        } else {
                            self.done.insert(order_ref.clone());
                            self.emit(vec![OrderEvent::Rejected { order_ref, detail: e.to_string() }]).await;
                        }
                    }
                }
            }
            OrderCommand::Cancel { order_ref } => {
                let Some(&order_id) = self.ids.get(&order_ref) else {
                    tracing::warn!(%order_ref, "Cancel for an order the IBKR session does not know.");
                    return;
                };
                // The confirmation comes back on the update stream (error 202 + Cancelled).
                if let Err(e) = self.client.cancel_order(order_id, "").await {
                    tracing::warn!(order_id, error = %e, "IBKR cancel failed.");
                }
            }
        }
    }

    async fn update(&mut self, u: OrderUpdate) {
        let mut out = Vec::new();
        match u {
            OrderUpdate::ExecutionData(d) => {
                self.execution(&d, &mut out);
            }
            OrderUpdate::CommissionReport(c) => self.commission(&c, &mut out),
            OrderUpdate::OpenOrder(o) => self.learn(o.order_id, &o.order.order_ref),
            OrderUpdate::OrderStatus(st) => {
                let Some(order_ref) = self.refs.get(&st.order_id).cloned() else { return };
                let ev = match st.status {
                    OrderStatusKind::Cancelled | OrderStatusKind::ApiCancelled => {
                        OrderEvent::Cancelled { order_ref: order_ref.clone(), detail: "cancelled at IBKR".into() }
                    }
                    OrderStatusKind::Inactive => {
                        OrderEvent::Rejected { order_ref: order_ref.clone(), detail: "order inactive at IBKR".into() }
                    }
                    _ => return,
                };
                if self.done.insert(order_ref.clone()) {
                    self.joiner.on_terminal(&order_ref, ev, &mut out);
                }
            }
            OrderUpdate::OrderBound(_) => {}
        }
        self.emit(out).await;
    }

    async fn notice(&mut self, id: Option<i32>, code: i32, message: &str) {
        let order_ref = id.and_then(|id| self.refs.get(&id).cloned());
        match (codes::reaction(code), order_ref) {
            (Reaction::OrderRejected, Some(order_ref)) => {
                tracing::warn!(code, message, %order_ref, "IBKR rejected the order.");
                if self.done.insert(order_ref.clone()) {
                    let mut out = Vec::new();
                    let ev =
                        OrderEvent::Rejected { order_ref: order_ref.clone(), detail: format!("IB {code}: {message}") };
                    self.joiner.on_terminal(&order_ref, ev, &mut out);
                    self.emit(out).await;
                }
            }
            (Reaction::OrderCancelled, _) | (Reaction::Informational, _) => {
                tracing::info!(code, message, "IBKR order notice.")
            }
            _ => tracing::warn!(code, message, remedy = codes::remedy(code), "IBKR order notice."),
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::dec;

    use super::*;

    fn fills(out: &[OrderEvent]) -> Vec<(String, Decimal, Decimal)> {
        out.iter()
            .filter_map(|e| match e {
                OrderEvent::Fill { exec_id, qty, commission, .. } => Some((exec_id.clone(), *qty, *commission)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_fill_waits_for_its_commission_and_is_reported_once() {
        let mut j = FillJoiner::default();
        let mut out = Vec::new();
        j.on_execution("i1", "e1", dec!(10), dec!(40), &mut out);
        assert!(out.is_empty());
        j.on_commission("e1", dec!(1.00), &mut out);
        assert_eq!(fills(&out), vec![("e1".into(), dec!(40), dec!(1.00))]);
        // The same execution again (reconciliation after a reconnect): nothing new.
        j.on_execution("i1", "e1", dec!(10), dec!(40), &mut out);
        j.on_commission("e1", dec!(1.00), &mut out);
        assert_eq!(out.len(), 1);
        // Commission first works too.
        j.on_commission("e2", dec!(0.5), &mut out);
        j.on_execution("i1", "e2", dec!(10), dec!(60), &mut out);
        assert_eq!(fills(&out).len(), 2);
    }

    #[test]
    fn terminal_events_wait_for_pending_fills() {
        let mut j = FillJoiner::default();
        let mut out = Vec::new();
        j.on_execution("i1", "e1", dec!(10), dec!(40), &mut out);
        let cancel = OrderEvent::Cancelled { order_ref: "i1".into(), detail: "x".into() };
        j.on_terminal("i1", cancel.clone(), &mut out);
        assert!(out.is_empty());
        j.on_commission("e1", dec!(1), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], cancel);
        // Another order's terminal event is not held.
        j.on_terminal("i2", OrderEvent::Cancelled { order_ref: "i2".into(), detail: "y".into() }, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn executions_without_an_order_ref_are_ignored() {
        let mut j = FillJoiner::default();
        let mut out = Vec::new();
        j.on_execution("", "e9", dec!(1), dec!(1), &mut out);
        j.on_commission("e9", dec!(1), &mut out);
        assert!(out.is_empty());
    }
}
