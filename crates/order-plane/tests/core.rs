//! The Order Plane's core without a broker: risk limits, simulated venue, idempotency, rebuild,
//! kill switch, bad input.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::sync::Arc;

use common::clock::ManualClock;
use common::config::{InstrumentConfig, OrderPlaneConfig, RiskConfig};
use common::events::*;
use common::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};
use order_plane::engine::{IntentOutcome, OrderEngine};
use order_plane::venue::SimulatedVenue;
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal::dec;
use uuid::Uuid;

const SEC: u64 = 1_000_000_000;

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn instruments() -> Vec<InstrumentConfig> {
    ["X", "Y", "Z"]
        .map(|s| InstrumentConfig {
            symbol: s.into(),
            tick_size: dec!(0.01),
            lot_size: dec!(0.1),
            min_qty: dec!(0.1),
            min_notional: dec!(10),
        })
        .to_vec()
}

fn cfg() -> (RiskConfig, OrderPlaneConfig) {
    let risk = RiskConfig { max_gross_exposure: dec!(1000), max_net_exposure: dec!(800), max_position_size: dec!(500) };
    let order = OrderPlaneConfig {
        latency_ms: 0,
        max_order_notional: dec!(400),
        price_collar_bps: dec!(100),
        max_orders_per_second: 3,
        stale_after_ms: 5_000,
        ..OrderPlaneConfig::default()
    };
    (risk, order)
}

type Engine = OrderEngine<SimulatedVenue, ManualClock>;

fn engine_with(risk: &RiskConfig, order: &OrderPlaneConfig) -> Engine {
    let instruments = instruments();
    let ticks: HashMap<Symbol, Decimal> = instruments.iter().map(|i| (sym(&i.symbol), i.tick_size)).collect();
    let venue = SimulatedVenue::new(order.latency_ms, ticks);
    let source = Arc::new(Source { plane: "order-plane".into(), instance: "test".into() });
    OrderEngine::new(risk, order, &instruments, venue, source, ManualClock::new(UnixNanos(1)))
}

fn engine() -> Engine {
    let (r, o) = cfg();
    engine_with(&r, &o)
}

fn envelope<P>(ts: u64, payload: P) -> Envelope<P> {
    Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(Uuid::from_u128(u128::from(ts) << 16 | 7)),
        source: Arc::new(Source { plane: "test".into(), instance: "t".into() }),
        ts_event: UnixNanos(ts),
        ts_init: UnixNanos(ts),
        causation_id: None,
        payload,
    }
}

fn quote(e: &mut Engine, ts: u64, s: &str, bid: Decimal, ask: Decimal, size: Decimal) -> Vec<Envelope<ExecEvent>> {
    let q = Quote {
        symbol: sym(s),
        bid_px: Price::new(bid).unwrap(),
        bid_sz: Quantity::new(size).unwrap(),
        ask_px: Price::new(ask).unwrap(),
        ask_sz: Quantity::new(size).unwrap(),
    };
    let mut out = Vec::new();
    e.on_market(&envelope(ts, MarketEvent::Quote(q)), &mut out);
    out
}

/// Marks X, Y, Z at mid 100 (bid 99.99, ask 100.01) with deep books.
fn marked() -> Engine {
    let mut e = engine();
    for s in ["X", "Y", "Z"] {
        quote(&mut e, SEC, s, dec!(99.99), dec!(100.01), dec!(1000));
    }
    e
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn intent(s: &str, side: Side, qty: Decimal, limit: Option<Decimal>, tif: TimeInForce) -> OrderIntent {
    OrderIntent {
        intent_id: IntentId(Uuid::from_u64_pair(0, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))),
        symbol: sym(s),
        side,
        quantity: qty,
        order_type: if limit.is_some() { OrderType::Limit } else { OrderType::Market },
        limit_price: limit,
        time_in_force: tif,
        arrival_mid: dec!(100),
        expected_cost_bps: dec!(1),
        signals: vec![],
    }
}

fn send(e: &mut Engine, ts: u64, i: &OrderIntent) -> (IntentOutcome, Vec<ExecReport>) {
    let mut out = Vec::new();
    let outcome = e.on_intent(&envelope(ts, IntentEvent::Intent(i.clone())), &mut out);
    (outcome, reports(&out))
}

fn reports(out: &[Envelope<ExecEvent>]) -> Vec<ExecReport> {
    out.iter()
        .filter_map(|e| match &e.payload {
            ExecEvent::Report(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// A resting buy limit far below the market: counts as working exposure without filling.
fn rest(e: &mut Engine, s: &str, side: Side, qty: Decimal) -> IntentOutcome {
    let px = if side == Side::Buy { dec!(99.5) } else { dec!(100.5) };
    send(e, SEC, &intent(s, side, qty, Some(px), TimeInForce::Gtc)).0
}

fn rejected(reason: RejectReason) -> IntentOutcome {
    IntentOutcome::Rejected(reason)
}

#[test]
fn position_limit_at_under_over() {
    // Mid 100, limit 500: 4.9 and 5.0 fit, 5.1 does not (working orders count).
    for (qty, ok) in [(dec!(4.9), true), (dec!(5), true), (dec!(5.1), false)] {
        let (r, mut o) = cfg();
        o.max_order_notional = dec!(10000);
        let mut e = engine_with(&r, &o);
        quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
        let got = rest(&mut e, "X", Side::Buy, qty);
        assert_eq!(got == IntentOutcome::Placed, ok, "{qty}: {got:?}");
        if !ok {
            assert_eq!(got, rejected(RejectReason::MaxPositionSize));
        }
    }
}

#[test]
fn order_notional_at_under_over() {
    for (qty, expect) in [
        (dec!(3.9), IntentOutcome::Placed),
        (dec!(4), IntentOutcome::Placed),
        (dec!(4.1), rejected(RejectReason::MaxOrderNotional)),
    ] {
        let mut e = marked();
        let limit = Some(dec!(100));
        assert_eq!(send(&mut e, SEC, &intent("X", Side::Buy, qty, limit, TimeInForce::Gtc)).0, expect, "{qty}");
    }
}

#[test]
fn gross_limit_at_under_over_counting_working_orders() {
    let (r, mut o) = cfg();
    o.max_order_notional = dec!(10000);
    for (qty, expect) in [
        (dec!(1.9), IntentOutcome::Placed),
        (dec!(2), IntentOutcome::Placed),
        (dec!(2.1), rejected(RejectReason::MaxGrossExposure)),
    ] {
        let mut e = engine_with(&r, &o);
        for s in ["X", "Y", "Z"] {
            quote(&mut e, SEC, s, dec!(99.99), dec!(100.01), dec!(1000));
        }
        // 4 working in X (≈ 400) and 4 in Y (≈ 400): gross 800 before the tested order.
        assert_eq!(rest(&mut e, "X", Side::Buy, dec!(4)), IntentOutcome::Placed);
        assert_eq!(rest(&mut e, "Y", Side::Sell, dec!(4)), IntentOutcome::Placed);
        // The throttle (3/s) would bite first; a later second keeps it out of the way.
        let i = intent("Z", Side::Buy, qty, Some(dec!(99.5)), TimeInForce::Gtc);
        assert_eq!(send(&mut e, 2 * SEC, &i).0, expect, "{qty}");
    }
}

#[test]
fn net_limit_at_under_over_and_reducing_orders_pass() {
    let (mut r, o) = cfg();
    r.max_gross_exposure = dec!(5000);
    r.max_net_exposure = dec!(600);
    for (qty, expect) in [
        (dec!(1.9), IntentOutcome::Placed),
        (dec!(2), IntentOutcome::Placed),
        (dec!(2.1), rejected(RejectReason::MaxNetExposure)),
    ] {
        let mut e = engine_with(&r, &o);
        for s in ["X", "Y"] {
            quote(&mut e, SEC, s, dec!(99.99), dec!(100.01), dec!(1000));
        }
        assert_eq!(rest(&mut e, "X", Side::Buy, dec!(4)), IntentOutcome::Placed);
        let i = intent("Y", Side::Buy, qty, Some(dec!(99.5)), TimeInForce::Gtc);
        assert_eq!(send(&mut e, SEC, &i).0, expect, "{qty}");
        // Selling never makes the long-side worst case worse: allowed.
        let sell = intent("Y", Side::Sell, dec!(1), Some(dec!(100.5)), TimeInForce::Gtc);
        assert_eq!(send(&mut e, 2 * SEC, &sell).0, IntentOutcome::Placed);
    }
}

#[test]
fn price_collar_at_under_over() {
    for (px, expect) in [
        (dec!(100.99), IntentOutcome::Placed),
        (dec!(101), IntentOutcome::Placed),
        (dec!(101.01), rejected(RejectReason::PriceCollar)),
        (dec!(98.99), rejected(RejectReason::PriceCollar)),
    ] {
        let mut e = marked();
        assert_eq!(send(&mut e, SEC, &intent("X", Side::Buy, dec!(1), Some(px), TimeInForce::Ioc)).0, expect, "{px}");
    }
}

#[test]
fn throttle_at_under_over() {
    let mut e = marked();
    for i in 0..3 {
        assert_eq!(rest(&mut e, "X", Side::Buy, dec!(0.2)), IntentOutcome::Placed, "order {i}");
    }
    assert_eq!(rest(&mut e, "X", Side::Buy, dec!(0.2)), rejected(RejectReason::Throttled));
    let later = intent("X", Side::Buy, dec!(0.2), Some(dec!(99.5)), TimeInForce::Gtc);
    assert_eq!(send(&mut e, 2 * SEC + 1, &later).0, IntentOutcome::Placed, "a second later");
}

#[test]
fn minimums_lots_ticks_symbols_staleness() {
    let mut e = marked();
    let mut check = |ts: u64, i: OrderIntent| send(&mut e, ts, &i).0;
    let ioc = TimeInForce::Ioc;
    assert_eq!(
        check(SEC, intent("X", Side::Buy, dec!(0.1), Some(dec!(100)), ioc)),
        IntentOutcome::Placed,
        "notional 10 = minimum"
    );
    assert_eq!(
        check(SEC, intent("X", Side::Buy, dec!(0.1), Some(dec!(99.99)), ioc)),
        rejected(RejectReason::BelowMinimum)
    );
    assert_eq!(check(SEC, intent("X", Side::Buy, dec!(0.15), None, ioc)), rejected(RejectReason::LotSize));
    assert_eq!(
        check(SEC, intent("X", Side::Buy, dec!(1), Some(dec!(100.005)), ioc)),
        rejected(RejectReason::InvalidPrice)
    );
    assert_eq!(check(SEC, intent("Q", Side::Buy, dec!(1), None, ioc)), rejected(RejectReason::UnknownSymbol));
    assert_eq!(check(6 * SEC, intent("Y", Side::Buy, dec!(1), None, ioc)), IntentOutcome::Placed, "5 s old: fresh");
    assert_eq!(check(6 * SEC + 1, intent("Y", Side::Buy, dec!(1), None, ioc)), rejected(RejectReason::StaleMarketData));
}

#[test]
fn bad_values_are_rejected_with_a_reason_never_an_order() {
    let mut e = marked();
    for (i, reason) in [
        (intent("X", Side::Buy, dec!(0), None, TimeInForce::Ioc), RejectReason::InvalidQuantity),
        (intent("X", Side::Buy, dec!(-1), None, TimeInForce::Ioc), RejectReason::InvalidQuantity),
        (intent("X", Side::Buy, dec!(1), Some(dec!(0)), TimeInForce::Ioc), RejectReason::InvalidPrice),
        (intent("X", Side::Buy, dec!(1), Some(dec!(-5)), TimeInForce::Ioc), RejectReason::InvalidPrice),
        (intent("X", Side::Buy, dec!(1), Some(dec!(150)), TimeInForce::Ioc), RejectReason::PriceCollar),
        (
            intent("X", Side::Buy, dec!(79228162514264337593543950335), None, TimeInForce::Ioc),
            RejectReason::InvalidQuantity,
        ),
        (
            intent("X", Side::Buy, dec!(1), Some(dec!(100000000000000000000000000)), TimeInForce::Ioc),
            RejectReason::InvalidPrice,
        ),
        (intent("X", Side::Buy, dec!(0.1), Some(dec!(999999999999)), TimeInForce::Ioc), RejectReason::MaxOrderNotional),
    ] {
        let (outcome, reports) = send(&mut e, SEC, &i);
        assert_eq!(outcome, rejected(reason), "{:?}", reports.first().and_then(|r| r.detail.clone()));
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!((r.status, r.reason, r.venue.as_str()), (ExecStatus::Rejected, Some(reason), "risk"));
        assert!(r.detail.is_some());
    }
    assert!(e.risk().exposure(&sym("X")).worst().is_zero());
}

#[test]
fn market_order_sweeps_levels_in_partial_fills() {
    let mut e = engine();
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    let (_, r) = send(&mut e, SEC, &intent("X", Side::Buy, dec!(2.5), None, TimeInForce::Day));
    let statuses: Vec<ExecStatus> = r.iter().map(|r| r.status).collect();
    use ExecStatus::*;
    assert_eq!(statuses, vec![Accepted, PartiallyFilled, PartiallyFilled, Filled]);
    let px: Vec<Decimal> = r[1..].iter().map(|r| r.last_px.unwrap()).collect();
    assert_eq!(px, vec![dec!(100.01), dec!(100.02), dec!(100.03)], "one tick per level");
    let last = r.last().unwrap();
    assert_eq!(last.cum_qty, dec!(2.5));
    assert_eq!(last.avg_px, Some((dec!(100.01) + dec!(100.02) + dec!(100.03) * dec!(0.5)) / dec!(2.5)));
    assert_eq!(last.leaves_qty, dec!(0));
    // IBKR minimum 0.35 on the first fill (cap 1 % of value is higher), nothing more after.
    assert_eq!(r[1].commission, dec!(0.35));
    assert_eq!(last.cum_commission, dec!(0.35));
    assert!(last.slippage_bps.unwrap() > dec!(0), "buying above the mid costs");
    assert_eq!(e.risk().exposure(&sym("X")).position, dec!(2.5));
}

#[test]
fn resting_limit_fills_when_the_market_comes_and_ioc_cancels_the_rest() {
    let mut e = engine();
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    let buy = intent("X", Side::Buy, dec!(1.5), Some(dec!(99.9)), TimeInForce::Gtc);
    let (_, r) = send(&mut e, SEC, &buy);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), vec![ExecStatus::Accepted]);
    assert!(reports(&quote(&mut e, 2 * SEC, "X", dec!(99.95), dec!(100), dec!(1))).is_empty(), "not reached");
    let fills = reports(&quote(&mut e, 3 * SEC, "X", dec!(99.8), dec!(99.85), dec!(1)));
    assert_eq!(
        (fills[0].status, fills[0].last_px, fills[0].last_qty),
        (ExecStatus::PartiallyFilled, Some(dec!(99.9)), dec!(1))
    );
    let fills = reports(&quote(&mut e, 4 * SEC, "X", dec!(99.8), dec!(99.85), dec!(1)));
    assert_eq!((fills[0].status, fills[0].cum_qty), (ExecStatus::Filled, dec!(1.5)));

    // Decided at 5 s, after the last quote (4 s): it waits until a later quote shows that 5 s
    // has passed, then executes against the book in effect at 5 s (bid 99.8 × 1), not the new one.
    let ioc = intent("X", Side::Sell, dec!(2), Some(dec!(99.8)), TimeInForce::Ioc);
    let (_, r) = send(&mut e, 5 * SEC, &ioc);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), vec![ExecStatus::Accepted]);
    let r = reports(&quote(&mut e, 6 * SEC, "X", dec!(99.9), dec!(99.95), dec!(5)));
    let statuses: Vec<ExecStatus> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![ExecStatus::PartiallyFilled, ExecStatus::Cancelled]);
    assert_eq!((r[0].last_px, r[0].last_qty), (Some(dec!(99.8)), dec!(1)));
    assert_eq!((r[1].leaves_qty, r[1].cum_qty), (dec!(0), dec!(1)));
}

#[test]
fn cancels_and_day_expiry() {
    let mut e = marked();
    let gtc = intent("X", Side::Buy, dec!(1), Some(dec!(99.5)), TimeInForce::Gtc);
    send(&mut e, SEC, &gtc);
    let mut out = Vec::new();
    let cancel = CancelIntent { intent_id: gtc.intent_id, symbol: sym("X") };
    assert_eq!(
        e.on_intent(&envelope(2 * SEC, IntentEvent::Cancel(cancel.clone())), &mut out),
        IntentOutcome::Cancelled
    );
    assert_eq!(reports(&out)[0].status, ExecStatus::Cancelled);
    out.clear();
    assert_eq!(e.on_intent(&envelope(3 * SEC, IntentEvent::Cancel(cancel)), &mut out), IntentOutcome::CancelIgnored);
    assert!(out.is_empty());
    assert!(e.risk().exposure(&sym("X")).worst().is_zero(), "a cancelled order no longer counts");

    let day = intent("Y", Side::Buy, dec!(1), Some(dec!(99.5)), TimeInForce::Day);
    send(&mut e, SEC, &day);
    let next_day = 86_400 * SEC + SEC;
    let r = reports(&quote(&mut e, next_day, "Y", dec!(99.99), dec!(100.01), dec!(5)));
    assert_eq!((r[0].status, r[0].detail.as_deref()), (ExecStatus::Cancelled, Some("day order expired")));
}

#[test]
fn a_repeated_intent_places_no_second_order() {
    let mut e = marked();
    let i = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    let (first, r) = send(&mut e, SEC, &i);
    assert_eq!(first, IntentOutcome::Placed);
    assert!(r.last().unwrap().status.is_terminal());
    let (again, r) = send(&mut e, SEC, &i);
    assert_eq!((again, r.len()), (IntentOutcome::Duplicate, 0));
    assert_eq!(e.risk().exposure(&sym("X")).position, dec!(1));
}

#[test]
fn rebuild_from_exec_reports_restores_seen_intents_positions_and_closes_orphans() {
    let mut a = marked();
    let mut log: Vec<Envelope<ExecEvent>> = Vec::new();
    let filled = intent("X", Side::Buy, dec!(2), None, TimeInForce::Ioc);
    let resting = intent("Y", Side::Sell, dec!(1), Some(dec!(100.5)), TimeInForce::Gtc);
    for i in [&filled, &resting] {
        a.on_intent(&envelope(SEC, IntentEvent::Intent(i.clone())), &mut log);
    }
    // The plane dies; a new one reads exec_reports back, where a producer retry or a hostile
    // writer left copies of records, one of them (an acceptance) after the order's fill.
    assert_eq!(reports(&log[..1])[0].status, ExecStatus::Accepted);
    let mut b = marked();
    for env in log.iter().chain(&log).chain(&log[..1]) {
        b.restore(env);
    }
    let mut out = Vec::new();
    b.finish_restore(UnixNanos(2 * SEC), &mut out);
    let r = reports(&out);
    assert_eq!(r.len(), 1, "the resting order is closed, exactly once");
    assert_eq!((r[0].intent_id, r[0].status), (resting.intent_id, ExecStatus::Cancelled));
    assert_eq!(b.risk().exposure(&sym("X")).position, dec!(2));
    assert_eq!(b.risk().exposure(&sym("Y")).worst(), dec!(0));
    for i in [&filled, &resting] {
        assert_eq!(send(&mut b, 3 * SEC, i).0, IntentOutcome::Duplicate, "redelivered after restart");
    }
}

#[test]
fn limits_still_hold_right_after_a_restart_before_quotes_return() {
    let (mut r, mut o) = cfg();
    o.max_order_notional = dec!(10000);
    r.max_net_exposure = dec!(1000);
    let mut a = engine_with(&r, &o);
    for s in ["X", "Y"] {
        quote(&mut a, SEC, s, dec!(99.99), dec!(100.01), dec!(1000));
    }
    let mut log = Vec::new();
    for s in ["X", "Y"] {
        a.on_intent(
            &envelope(SEC, IntentEvent::Intent(intent(s, Side::Buy, dec!(4.9), None, TimeInForce::Ioc))),
            &mut log,
        );
    }
    // Restart: positions come back from exec_reports; only Z is quoted so far.
    let mut b = engine_with(&r, &o);
    for env in &log {
        b.restore(env);
    }
    quote(&mut b, 2 * SEC, "Z", dec!(99.99), dec!(100.01), dec!(1000));
    let big = intent("Z", Side::Buy, dec!(4.9), None, TimeInForce::Ioc);
    assert_eq!(send(&mut b, 2 * SEC, &big).0, rejected(RejectReason::MaxGrossExposure), "X and Y still count");
}

#[test]
fn an_intent_decided_long_before_the_latest_quote_is_stale() {
    let mut e = marked();
    quote(&mut e, 100 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
    let late = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    assert_eq!(send(&mut e, 41 * SEC, &late).0, IntentOutcome::Placed, "59 s behind: within max_intent_lag_ms");
    let old = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    assert_eq!(send(&mut e, 39 * SEC, &old).0, rejected(RejectReason::StaleMarketData), "61 s behind");
}

#[test]
fn kill_switch_halts_publishes_and_cancels() {
    let mut e = marked();
    let resting = intent("X", Side::Buy, dec!(1), Some(dec!(99.5)), TimeInForce::Gtc);
    send(&mut e, SEC, &resting);
    let mut out = Vec::new();
    e.set_halt(true, "admin: test", Some(true), UnixNanos(2 * SEC), &mut out);
    assert!(matches!(&out[0].payload, ExecEvent::Halt(h) if h.halted && h.cancel_open));
    assert_eq!(reports(&out)[0].status, ExecStatus::Cancelled);
    let (outcome, r) = send(&mut e, 3 * SEC, &intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc));
    assert_eq!((outcome, r[0].reason), (rejected(RejectReason::KillSwitch), Some(RejectReason::KillSwitch)));
    out.clear();
    e.set_halt(false, "admin: resume", None, UnixNanos(4 * SEC), &mut out);
    assert!(matches!(&out[0].payload, ExecEvent::Halt(h) if !h.halted));
    assert!(!e.halted());
}

#[test]
fn learned_costs_are_published_after_each_completed_order() {
    let mut e = marked();
    let mut out = Vec::new();
    e.on_intent(&envelope(SEC, IntentEvent::Intent(intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc))), &mut out);
    let models: Vec<&CostModelUpdate> = out
        .iter()
        .filter_map(|e| match &e.payload {
            ExecEvent::CostModel(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].n_fills, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// With fixed marks, no sequence of intents and (partial) fills ends beyond a limit.
    #[test]
    fn no_sequence_of_intents_breaches_a_limit(
        steps in prop::collection::vec((0usize..3, any::<bool>(), 1u32..60, 0u32..=10, any::<bool>()), 1..60)
    ) {
        let (r, mut o) = cfg();
        o.max_orders_per_second = 1_000;
        let mut e = engine_with(&r, &o);
        let names = ["X", "Y", "Z"];
        for s in names {
            quote(&mut e, SEC, s, dec!(99.99), dec!(100.01), dec!(1000));
        }
        for (k, (si, buy, tenths, fill_tenths, limit)) in steps.into_iter().enumerate() {
            let side = if buy { Side::Buy } else { Side::Sell };
            let qty = Decimal::from(tenths) / dec!(10);
            let px = if limit { Some(if buy { dec!(99.5) } else { dec!(100.5) }) } else { None };
            let ts = SEC + k as u64;
            send(&mut e, ts, &intent(names[si], side, qty, px, TimeInForce::Gtc));
            // Sometimes the market comes to the resting orders.
            if fill_tenths > 5 {
                quote(&mut e, ts, names[si], dec!(99.4), dec!(99.45), Decimal::from(fill_tenths) / dec!(10));
                quote(&mut e, ts, names[si], dec!(100.55), dec!(100.6), Decimal::from(fill_tenths) / dec!(10));
                quote(&mut e, ts, names[si], dec!(99.99), dec!(100.01), dec!(1000));
            }
            let (mut gross, mut net) = (Decimal::ZERO, Decimal::ZERO);
            for s in names {
                let v = e.risk().exposure(&sym(s)).position * dec!(100);
                prop_assert!(v.abs() <= dec!(500), "{s} position value {v}");
                gross += v.abs();
                net += v;
            }
            prop_assert!(gross <= dec!(1000), "gross {gross}");
            prop_assert!(net.abs() <= dec!(800), "net {net}");
        }
    }
}

#[test]
fn finished_orders_are_not_kept_but_their_repeats_are_still_refused() {
    let mut e = engine();
    let mut first = None;
    for k in 1..=300u64 {
        quote(&mut e, k * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
        let side = if k % 2 == 0 { Side::Sell } else { Side::Buy };
        let i = intent("X", side, dec!(0.1), None, TimeInForce::Ioc);
        let (outcome, r) = send(&mut e, k * SEC, &i);
        assert_eq!(outcome, IntentOutcome::Placed);
        assert_eq!(r.last().unwrap().status, ExecStatus::Filled);
        // A refused one too.
        let (outcome, _) = send(&mut e, k * SEC, &intent("X", Side::Buy, dec!(-1), None, TimeInForce::Ioc));
        assert_eq!(outcome, rejected(RejectReason::InvalidQuantity));
        first.get_or_insert(i);
    }
    assert_eq!(e.tracked_orders(), 0, "600 finished orders must not stay in memory");
    // A repeat is the same record, decided when it was: the first one's id is forgotten by now,
    // and risk refuses it (300 s after it was decided) instead.
    let first = first.unwrap();
    let (outcome, r) = send(&mut e, SEC, &first);
    assert_eq!(outcome, rejected(RejectReason::StaleMarketData));
    assert!(r.iter().all(|r| r.status == ExecStatus::Rejected && r.last_qty.is_zero()));
    // A resting order is tracked until it ends.
    let resting = intent("X", Side::Buy, dec!(1), Some(dec!(99.5)), TimeInForce::Gtc);
    assert_eq!(send(&mut e, 300 * SEC, &resting).0, IntentOutcome::Placed);
    assert_eq!(e.tracked_orders(), 1);
}

/// Sends one intent of 0.1 on `s` decided at `ts`, quoting `s` at `ts` first.
fn quoted_intent(e: &mut Engine, ts: u64, s: &str, side: Side) -> (OrderIntent, IntentOutcome) {
    quote(e, ts, s, dec!(99.99), dec!(100.01), dec!(1000));
    let i = intent(s, side, dec!(0.1), None, TimeInForce::Ioc);
    let outcome = send(e, ts, &i).0;
    (i, outcome)
}

#[test]
fn remembered_intent_ids_stay_within_one_lag_window_as_quotes_advance() {
    let mut e = engine();
    let (mut taken, mut most) = (0, 0);
    for k in 1..=600u64 {
        let side = if k % 2 == 0 { Side::Sell } else { Side::Buy };
        for s in ["X", "Y"] {
            assert_eq!(quoted_intent(&mut e, k * SEC, s, side).1, IntentOutcome::Placed);
        }
        let refused = intent("X", Side::Buy, dec!(-1), None, TimeInForce::Ioc);
        assert_eq!(send(&mut e, k * SEC, &refused).0, rejected(RejectReason::InvalidQuantity));
        taken += 3;
        most = most.max(e.remembered_intents());
    }
    // max_intent_lag_ms is 60 s: the ids of the last 61 seconds (both ends included) stay.
    assert_eq!(taken, 1800);
    assert_eq!(most, 3 * 61, "not one per intent ever taken");
    assert_eq!(e.remembered_intents(), 3 * 61);
}

#[test]
fn intents_of_a_symbol_risk_does_not_trade_leave_no_id_behind_and_never_reach_the_venue() {
    let mut e = engine();
    let unknown = intent("NOPE", Side::Buy, dec!(0.1), None, TimeInForce::Ioc);
    for _ in 0..3 {
        let (outcome, r) = send(&mut e, 10 * SEC, &unknown);
        assert_eq!((outcome, r.len()), (rejected(RejectReason::UnknownSymbol), 1), "refused again, never placed");
    }
    assert_eq!((e.remembered_intents(), e.tracked_orders()), (0, 0));
}

#[test]
fn a_repeat_at_the_risk_horizon_is_a_duplicate_and_one_past_it_is_refused_by_risk() {
    let mut e = engine();
    let (first, _) = quoted_intent(&mut e, 10 * SEC, "X", Side::Buy);
    // The next id of X forgets what is past the horizon of X's mark: at it, 60 s, nothing.
    quoted_intent(&mut e, 70 * SEC, "X", Side::Sell);
    let (again, r) = send(&mut e, 10 * SEC, &first);
    assert_eq!((again, r.len()), (IntentOutcome::Duplicate, 0));
    quoted_intent(&mut e, 70 * SEC + 1, "X", Side::Buy);
    assert_eq!(e.remembered_intents(), 2, "one nanosecond past it, the first id is forgotten");
    let (again, r) = send(&mut e, 10 * SEC, &first);
    assert_eq!(again, rejected(RejectReason::StaleMarketData));
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].intent_id, r[0].status, r[0].exec_id.as_ref()), (first.intent_id, ExecStatus::Rejected, None));
}

#[test]
fn a_repeat_of_a_forgotten_intent_is_refused_by_risk_and_changes_nothing() {
    let mut e = engine();
    quote(&mut e, 10 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
    let first = intent("X", Side::Buy, dec!(0.1), None, TimeInForce::Ioc);
    let record = envelope(10 * SEC, IntentEvent::Intent(first.clone()));
    let mut taken = Vec::new();
    assert_eq!(e.on_intent(&record, &mut taken), IntentOutcome::Placed);
    quoted_intent(&mut e, 100 * SEC, "X", Side::Buy);
    let before = (e.risk().exposure(&sym("X")), e.risk().exposure_now(), e.tracked_orders());
    assert_eq!(before.0.position, dec!(0.2));
    let mut out = Vec::new();
    assert_eq!(e.on_intent(&record, &mut out), rejected(RejectReason::StaleMarketData));
    let r = reports(&out);
    assert!(r.iter().all(|r| r.status == ExecStatus::Rejected && r.exec_id.is_none() && r.last_qty.is_zero()));
    // Its event id is that of the intent's first report: consumers dropping known ids skip it.
    assert_eq!((out.len(), out[0].event_id), (1, taken[0].event_id));
    assert_eq!((e.risk().exposure(&sym("X")), e.risk().exposure_now(), e.tracked_orders()), before);
    // The market moving through its price fills no second order either.
    quote(&mut e, 101 * SEC, "X", dec!(99.00), dec!(99.02), dec!(1000));
    assert_eq!(e.risk().exposure(&sym("X")).position, dec!(0.2));
}

#[test]
fn a_working_order_whose_id_was_forgotten_is_still_found_by_a_repeat() {
    let mut e = engine();
    quote(&mut e, 10 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
    let resting = intent("X", Side::Buy, dec!(1), Some(dec!(99.5)), TimeInForce::Gtc);
    assert_eq!(send(&mut e, 10 * SEC, &resting).0, IntentOutcome::Placed);
    quoted_intent(&mut e, 100 * SEC, "X", Side::Sell);
    assert_eq!(e.remembered_intents(), 1, "the resting order's id is past the horizon");
    let (again, r) = send(&mut e, 10 * SEC, &resting);
    assert_eq!((again, r.len()), (IntentOutcome::Duplicate, 0), "found as a tracked order");
    assert_eq!(e.tracked_orders(), 1);
    assert_eq!(e.risk().exposure(&sym("X")).open_buy, dec!(1));
    // Still working, not overwritten by a rejection: the market comes and fills it.
    let out = quote(&mut e, 101 * SEC, "X", dec!(99.48), dec!(99.5), dec!(1000));
    let r = reports(&out);
    assert_eq!((r.len(), r[0].intent_id, r[0].status), (1, resting.intent_id, ExecStatus::Filled));
}

/// A plane that took `old` at 1 s and `recent` at 190 s (each bought 1 X, filled at 1 s and 200 s)
/// stops; a new one rebuilds from its `exec_reports` (no quotes yet) and finishes the rebuild at
/// 201 s.
fn restarted() -> (Engine, OrderIntent, OrderIntent) {
    let mut a = engine();
    let mut log = Vec::new();
    quote(&mut a, SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
    let old = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    a.on_intent(&envelope(SEC, IntentEvent::Intent(old.clone())), &mut log);
    let recent = intent("X", Side::Buy, dec!(1), Some(dec!(100.05)), TimeInForce::Gtc);
    log.extend(quote(&mut a, 189 * SEC, "X", dec!(100.09), dec!(100.11), dec!(1000)));
    a.on_intent(&envelope(190 * SEC, IntentEvent::Intent(recent.clone())), &mut log);
    log.extend(quote(&mut a, 200 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000)));
    assert_eq!(reports(&log).iter().filter(|r| r.status == ExecStatus::Filled).count(), 2);
    let mut b = engine();
    for env in &log {
        b.restore(env);
    }
    // Each id is forgotten as its symbol's next one arrives: `recent` came while the mark was
    // still `old`'s fill.
    assert_eq!(b.remembered_intents(), 2);
    b.finish_restore(UnixNanos(201 * SEC), &mut Vec::new());
    (b, old, recent)
}

#[test]
fn restored_ids_past_the_horizon_are_forgotten_when_the_rebuild_ends() {
    let (mut b, old, recent) = restarted();
    assert_eq!(b.remembered_intents(), 1, "the last fill marks X at 200 s: `old` is past it");
    let (again, r) = send(&mut b, 190 * SEC, &recent);
    assert_eq!((again, r.len()), (IntentOutcome::Duplicate, 0), "within the horizon");
    let before = b.risk().exposure(&sym("X"));
    assert_eq!(before.position, dec!(2));
    let (again, r) = send(&mut b, SEC, &old);
    assert_eq!(again, rejected(RejectReason::StaleMarketData));
    assert!(r.iter().all(|r| r.status == ExecStatus::Rejected && r.exec_id.is_none()));
    assert_eq!(b.risk().exposure(&sym("X")), before);
}

#[test]
fn a_quote_older_than_the_restored_mark_does_not_let_a_forgotten_intent_through() {
    let (mut b, old, _) = restarted();
    // Market data resumes from the last committed offset, before the restored fill.
    quote(&mut b, 30 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
    assert_eq!(send(&mut b, SEC, &old).0, rejected(RejectReason::StaleMarketData));
    assert_eq!(b.risk().exposure(&sym("X")).position, dec!(2));
}
