//! The Order Plane's core with the IBKR venue, without a broker or a gateway: the venue's
//! commands, and what the engine makes of the session's late, repeated and reconciled events.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashSet;
use std::sync::Arc;

use common::clock::ManualClock;
use common::config::{InstrumentConfig, OrderPlaneConfig, RiskConfig};
use common::events::*;
use common::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};
use ibkr::orders::OrderCommand;
use order_plane::engine::{IntentOutcome, OrderEngine, VenueApplied};
use order_plane::ibkr_venue::IbkrVenue;
use order_plane::venue::{Execution, VenueEvent};
use rust_decimal::{Decimal, dec};
use tokio::sync::mpsc;
use uuid::Uuid;

const SEC: u64 = 1_000_000_000;

type Engine = OrderEngine<IbkrVenue, ManualClock>;

fn aapl() -> Symbol {
    Symbol::new("AAPL").unwrap()
}

fn engine() -> (Engine, mpsc::UnboundedReceiver<OrderCommand>) {
    let risk = RiskConfig {
        max_gross_exposure: dec!(100000),
        max_net_exposure: dec!(100000),
        max_position_size: dec!(100000),
    };
    let order = OrderPlaneConfig { venue: "ibkr".into(), ..OrderPlaneConfig::default() };
    let instruments = [InstrumentConfig {
        symbol: "AAPL".into(),
        tick_size: dec!(0.01),
        lot_size: dec!(1),
        min_qty: dec!(1),
        min_notional: dec!(0),
        fees: Default::default(),
    }];
    let (tx, rx) = mpsc::unbounded_channel();
    let venue = IbkrVenue::new(tx, &[], "DU1".into());
    let source = Arc::new(Source { plane: "order-plane".into(), instance: "test".into() });
    let mut e = OrderEngine::new(&risk, &order, &instruments, venue, source, ManualClock::new(UnixNanos(1)));
    let q = Quote {
        symbol: aapl(),
        bid_px: Price::new(dec!(99.99)).unwrap(),
        bid_sz: Quantity::new(dec!(100)).unwrap(),
        ask_px: Price::new(dec!(100.01)).unwrap(),
        ask_sz: Quantity::new(dec!(100)).unwrap(),
    };
    let mut out = Vec::new();
    e.on_market(&envelope(SEC, 1, MarketEvent::Quote(q)), &mut out);
    assert!(out.is_empty());
    (e, rx)
}

fn envelope<P>(ts: u64, n: u64, payload: P) -> Envelope<P> {
    Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(Uuid::from_u64_pair(ts, n)),
        source: Arc::new(Source { plane: "test".into(), instance: "t".into() }),
        ts_event: UnixNanos(ts),
        ts_init: UnixNanos(ts),
        causation_id: None,
        payload,
    }
}

fn id(n: u64) -> IntentId {
    IntentId(Uuid::from_u64_pair(9, n))
}

fn intent(n: u64, qty: Decimal) -> IntentEvent {
    IntentEvent::Intent(OrderIntent {
        intent_id: id(n),
        symbol: aapl(),
        side: Side::Buy,
        quantity: qty,
        order_type: OrderType::Limit,
        limit_price: Some(dec!(100.01)),
        time_in_force: TimeInForce::Gtc,
        arrival_mid: dec!(100),
        expected_cost_bps: dec!(0),
        signals: vec![],
    })
}

fn reports(out: &[Envelope<ExecEvent>]) -> Vec<ExecReport> {
    out.iter()
        .filter_map(|e| match &e.payload {
            ExecEvent::Report(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn fill(n: u64, exec_id: &str, qty: Decimal, commission: Decimal) -> VenueEvent {
    let exec = Some(Execution { exec_id: exec_id.into(), commission });
    VenueEvent::Fill { intent_id: id(n), px: dec!(100.01), qty, ts: UnixNanos(2 * SEC), exec, maker: false }
}

fn accepted(n: u64, order_id: &str) -> VenueEvent {
    VenueEvent::Accepted { intent_id: id(n), order_id: order_id.into(), ts: UnixNanos(2 * SEC) }
}

#[test]
fn orders_go_out_as_commands_and_reports_follow_the_venue() {
    let (mut e, mut commands) = engine();
    let mut out = Vec::new();
    assert_eq!(e.on_intent(&envelope(SEC, 2, intent(1, dec!(10))), &mut out), IntentOutcome::Placed);
    // Reported as sent (the shell publishes this before the order leaves), without an order id.
    let sent = reports(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].status, sent[0].order_id.as_str()), (ExecStatus::Accepted, ""));
    out.clear();
    let Ok(OrderCommand::Place { order_ref, buy, qty, limit, .. }) = commands.try_recv() else { panic!("no order") };
    assert_eq!((order_ref, buy, qty, limit), (id(1).to_string(), true, dec!(10), Some(dec!(100.01))));

    // Accepted once, even when announced again; IB's execution id and commission are kept.
    e.on_venue(vec![accepted(1, "100"), accepted(1, "100")], &mut out);
    let applied = e.on_venue(vec![fill(1, "e1", dec!(4), dec!(1.05)), fill(1, "e1", dec!(4), dec!(1.05))], &mut out);
    assert_eq!(applied, VenueApplied { unknown: 0, repeated: 1 });
    let r = reports(&out);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [ExecStatus::Accepted, ExecStatus::PartiallyFilled]);
    assert_eq!((r[1].exec_id.as_deref(), r[1].commission, r[1].order_id.as_str()), (Some("e1"), dec!(1.05), "100"));

    // A cancel goes to IB; the report comes with IB's confirmation, once.
    let cancel = IntentEvent::Cancel(CancelIntent { intent_id: id(1), symbol: aapl() });
    out.clear();
    assert_eq!(e.on_intent(&envelope(SEC, 3, cancel), &mut out), IntentOutcome::Cancelled);
    assert!(matches!(commands.try_recv(), Ok(OrderCommand::Cancel { order_ref }) if order_ref == id(1).to_string()));
    assert!(out.is_empty());
    let cancelled =
        VenueEvent::Cancelled { intent_id: id(1), detail: "cancelled at IBKR".into(), ts: UnixNanos(3 * SEC) };
    e.on_venue(vec![cancelled.clone(), cancelled], &mut out);
    let r = reports(&out);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].status, r[0].cum_qty, r[0].leaves_qty), (ExecStatus::Cancelled, dec!(4), dec!(0)));
    // Events for an intent nobody sent are dropped and counted.
    let stray = e.on_venue(vec![fill(99, "e9", dec!(1), dec!(1))], &mut out);
    assert_eq!(stray, VenueApplied { unknown: 1, repeated: 0 });
}

#[test]
fn a_restart_keeps_working_orders_until_the_reconciliation_and_drops_repeated_executions() {
    let (mut e, _commands) = engine();
    let mut ledger = Vec::new();
    for n in [1, 2, 3, 4] {
        e.on_intent(&envelope(SEC, 10 + n, intent(n, dec!(10))), &mut ledger);
    }
    // Intent 4 was sent but the plane stopped before IB named it (and it never arrived).
    for n in [1, 2, 3] {
        e.on_venue(vec![accepted(n, &format!("10{n}"))], &mut ledger);
    }
    e.on_venue(vec![fill(1, "e1", dec!(10), dec!(1)), fill(2, "e2", dec!(3), dec!(0.35))], &mut ledger);

    let (mut again, mut commands) = engine();
    for r in &ledger {
        again.restore(r);
    }
    let mut out = Vec::new();
    again.finish_restore(UnixNanos(5 * SEC), &mut out);
    assert!(out.is_empty(), "IB's orders outlive the plane: {:?}", reports(&out));
    // IB announcing a restored order again reports nothing new.
    let found = VenueEvent::Found {
        intent_id: id(2),
        order_id: "102".into(),
        symbol: aapl(),
        side: Side::Buy,
        qty: dec!(10),
        ts: UnixNanos(5 * SEC),
    };
    again.on_venue(vec![found], &mut out);
    assert!(out.is_empty(), "{:?}", reports(&out));
    // Working quantity is restored: 10 of intent 1 filled, 7 + 10 + 10 still work.
    let exposure = again.risk().exposure(&aapl());
    assert_eq!((exposure.position, exposure.open_buy), (dec!(13), dec!(27)));
    // The reconciliation: every execution of the day again, one new; intent 3 is gone at IB.
    let applied = again.on_venue(
        vec![fill(1, "e1", dec!(10), dec!(1)), fill(2, "e2", dec!(3), dec!(0.35)), fill(2, "e2b", dec!(2), dec!(0.1))],
        &mut out,
    );
    assert_eq!(applied.repeated, 2);
    again.reconciled(&HashSet::from([id(2)]), UnixNanos(5 * SEC), &mut out);
    let r = reports(&out);
    assert_eq!(
        r.iter().map(|r| (r.intent_id, r.status, r.cum_qty)).collect::<Vec<_>>(),
        [
            (id(2), ExecStatus::PartiallyFilled, dec!(5)),
            (id(3), ExecStatus::Cancelled, dec!(0)),
            (id(4), ExecStatus::Cancelled, dec!(0))
        ]
    );
    assert_eq!(r[0].cum_commission, dec!(0.45));
    let exposure = again.risk().exposure(&aapl());
    assert_eq!((exposure.position, exposure.open_buy), (dec!(15), dec!(5)));
    // An execution of a closed order arriving late moves the position, not the working quantity.
    out.clear();
    again.on_venue(vec![fill(3, "e3", dec!(1), dec!(0.35))], &mut out);
    assert_eq!(reports(&out)[0].status, ExecStatus::Cancelled);
    let exposure = again.risk().exposure(&aapl());
    assert_eq!((exposure.position, exposure.open_buy), (dec!(16), dec!(5)));
    // A later reconciliation leaves intent 2 alone while IB works it.
    out.clear();
    again.reconciled(&HashSet::from([id(2)]), UnixNanos(6 * SEC), &mut out);
    assert!(out.is_empty());
    // Intents read again are not sent again; the one still working can be cancelled.
    for n in [1, 2, 3, 4] {
        assert_eq!(again.on_intent(&envelope(SEC, 10 + n, intent(n, dec!(10))), &mut out), IntentOutcome::Duplicate);
    }
    assert!(commands.try_recv().is_err());
    let halt_out = &mut out;
    again.set_halt(true, "test", Some(true), UnixNanos(6 * SEC), halt_out);
    let Ok(OrderCommand::Cancel { order_ref }) = commands.try_recv() else { panic!("no cancel") };
    assert_eq!(order_ref, id(2).to_string());
    assert!(commands.try_recv().is_err());
}

#[test]
fn an_order_found_at_ibkr_is_adopted_and_never_sent_again() {
    let (mut e, mut commands) = engine();
    let mut out = Vec::new();
    let found = VenueEvent::Found {
        intent_id: id(7),
        order_id: "105".into(),
        symbol: aapl(),
        side: Side::Buy,
        qty: dec!(3),
        ts: UnixNanos(2 * SEC),
    };
    e.on_venue(vec![found.clone(), fill(7, "e7", dec!(1), dec!(0.35)), found], &mut out);
    let r = reports(&out);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [ExecStatus::Accepted, ExecStatus::PartiallyFilled]);
    assert_eq!((r[0].order_id.as_str(), r[0].order_qty, r[0].venue.as_str()), ("105", dec!(3), "ibkr"));
    assert!(r[0].detail.as_deref().unwrap().contains("earlier run"));
    // Its quantity counts as working exposure: a later fill moves it to the position.
    assert_eq!(e.risk().exposure(&aapl()).open_buy, dec!(2));
    assert_eq!(e.on_intent(&envelope(SEC, 20, intent(7, dec!(3))), &mut out), IntentOutcome::Duplicate);
    assert!(commands.try_recv().is_err());
}

/// The IBKR venue kept every finished order for good. A finished order is kept as long as a
/// reconciliation can report an execution of it (`FINISHED_KEPT_NS`, 8 days), so a run of an
/// order an hour holds about 193 of them, not every one: a late execution within that time still
/// counts, one after it is dropped as unknown.
#[test]
fn finished_orders_are_kept_only_as_long_as_ib_can_report_a_late_execution() {
    let (mut e, _commands) = engine();
    let hour = 3600 * SEC;
    let quote = Quote {
        symbol: aapl(),
        bid_px: Price::new(dec!(99.99)).unwrap(),
        bid_sz: Quantity::new(dec!(100)).unwrap(),
        ask_px: Price::new(dec!(100.01)).unwrap(),
        ask_sz: Quantity::new(dec!(100)).unwrap(),
    };
    let execution = |n: u64, exec_id: String, ts: u64| VenueEvent::Fill {
        intent_id: id(n),
        px: dec!(100.01),
        qty: dec!(1),
        ts: UnixNanos(ts),
        exec: Some(Execution { exec_id, commission: dec!(1) }),
        maker: false,
    };
    let mut out = Vec::new();
    let mut most = 0;
    for n in 1..=400u64 {
        let ts = n * hour;
        e.on_market(&envelope(ts, 1, MarketEvent::Quote(quote.clone())), &mut out);
        assert_eq!(e.on_intent(&envelope(ts, 2, intent(n, dec!(1))), &mut out), IntentOutcome::Placed);
        let accepted = VenueEvent::Accepted { intent_id: id(n), order_id: n.to_string(), ts: UnixNanos(ts) };
        e.on_venue(vec![accepted, execution(n, format!("e{n}"), ts)], &mut out);
        most = most.max(e.tracked_orders());
    }
    assert_eq!(reports(&out).iter().filter(|r| r.status == ExecStatus::Filled).count(), 400);
    // Finished at 208 h..=400 h: within 8 days of the last.
    assert_eq!((e.tracked_orders(), most), (193, 193));
    out.clear();
    let late = e.on_venue(vec![execution(208, "late208".into(), 400 * hour)], &mut out);
    assert_eq!((late, reports(&out).len()), (VenueApplied::default(), 1), "a late execution within the window counts");
    let forgotten = e.on_venue(vec![execution(207, "late207".into(), 400 * hour)], &mut out);
    assert_eq!(forgotten.unknown, 1, "one past it is dropped");
    assert_eq!(reports(&out).len(), 1);
}
