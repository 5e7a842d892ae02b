//! The Order Plane's core without a broker: risk limits, simulated venue, idempotency, rebuild,
//! kill switch, bad input.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::sync::Arc;

use common::clock::ManualClock;
use common::config::{FeeSchedule, InstrumentConfig, OrderPlaneConfig, RiskConfig};
use common::events::*;
use common::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};
use order_plane::engine::{IntentOutcome, OrderEngine, SymbolsHeld};
use order_plane::simulated::{SimulatedConfig, SimulatedVenue};
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
            fees: Default::default(),
        })
        .to_vec()
}

fn cfg() -> (RiskConfig, OrderPlaneConfig) {
    let risk = RiskConfig { max_gross_exposure: dec!(1000), max_net_exposure: dec!(800), max_position_size: dec!(500) };
    let order = OrderPlaneConfig {
        latency_ms: 0,
        latency_jitter_ms: 0.0,
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
    let venue = SimulatedVenue::new(SimulatedConfig::new(order, ticks));
    let source = Arc::new(Source { plane: "order-plane".into(), instance: "test".into() });
    OrderEngine::new(risk, order, &instruments, venue, source, ManualClock::new(UnixNanos(1)))
}

fn engine() -> Engine {
    let (r, o) = cfg();
    engine_with(&r, &o)
}

fn engine_with_fees(fees: FeeSchedule) -> Engine {
    let (r, o) = cfg();
    let instruments: Vec<InstrumentConfig> =
        instruments().into_iter().map(|i| InstrumentConfig { fees: fees.clone(), ..i }).collect();
    let ticks: HashMap<Symbol, Decimal> = instruments.iter().map(|i| (sym(&i.symbol), i.tick_size)).collect();
    let venue = SimulatedVenue::new(SimulatedConfig::new(&o, ticks));
    let source = Arc::new(Source { plane: "order-plane".into(), instance: "test".into() });
    OrderEngine::new(&r, &o, &instruments, venue, source, ManualClock::new(UnixNanos(1)))
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

/// Sends an intent decided at `ts`. The simulated venue executes in event time, so an intent
/// waits until its symbol's market data has passed `ts`: a status event one nanosecond later
/// moves it on without changing the book, and the outcome is then read from the reports.
fn send(e: &mut Engine, ts: u64, i: &OrderIntent) -> (IntentOutcome, Vec<ExecReport>) {
    let mut out = Vec::new();
    let mut outcome = e.on_intent(&envelope(ts, IntentEvent::Intent(i.clone())), &mut out);
    if outcome == IntentOutcome::Held {
        pass(e, ts + 1, &i.symbol, &mut out);
        let mine: Vec<ExecReport> = reports(&out).into_iter().filter(|r| r.intent_id == i.intent_id).collect();
        outcome = match mine.first() {
            Some(r) if r.status == ExecStatus::Rejected && r.venue == "risk" => {
                IntentOutcome::Rejected(r.reason.unwrap())
            }
            Some(_) => IntentOutcome::Placed,
            None => IntentOutcome::Held,
        };
    }
    (outcome, reports(&out))
}

/// Hands `env` to the engine; a held intent is moved on as in [`send`], into the same `out`.
fn take(e: &mut Engine, env: &Envelope<IntentEvent>, out: &mut Vec<Envelope<ExecEvent>>) -> IntentOutcome {
    let outcome = e.on_intent(env, out);
    if outcome == IntentOutcome::Held
        && let IntentEvent::Intent(i) = &env.payload
    {
        pass(e, env.ts_event.0 + 1, &i.symbol, out);
    }
    outcome
}

/// `symbol`'s market data reaches `ts` with no change to its book.
fn pass(e: &mut Engine, ts: u64, symbol: &Symbol, out: &mut Vec<Envelope<ExecEvent>>) {
    let status = SymbolStatus { symbol: symbol.clone(), status: FeedStatus::Active, last_update: UnixNanos(ts) };
    let mut env = envelope(ts, MarketEvent::Status(status));
    env.event_id = EventId(Uuid::from_u128(u128::from(ts) << 16 | 9));
    e.on_market(&env, out);
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

fn trade(e: &mut Engine, ts: u64, s: &str, px: Decimal, size: Decimal, aggressor: Side) -> Vec<Envelope<ExecEvent>> {
    let t = Trade { symbol: sym(s), price: Price::new(px).unwrap(), size: Quantity::new(size).unwrap(), aggressor };
    let mut out = Vec::new();
    e.on_market(&envelope(ts, MarketEvent::Trade(t)), &mut out);
    out
}

/// X quoted at 1 s (mid 100, size 1 each side), 4 traded at 1.5 s, quoted at 2 s at mid 100.1:
/// one one-second return ln(100.1 / 100), so σ = 9.995 bps, and a volume of 4.
fn with_history() -> Engine {
    let mut e = engine();
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    trade(&mut e, SEC + SEC / 2, "X", dec!(100.01), dec!(4), Side::Buy);
    quote(&mut e, 2 * SEC, "X", dec!(100.09), dec!(100.11), dec!(1));
    e
}

#[test]
fn a_market_order_takes_the_displayed_size_then_pays_square_root_impact() {
    let mut e = with_history();
    let (_, r) = send(&mut e, 2 * SEC, &intent("X", Side::Buy, dec!(2.5), None, TimeInForce::Ioc));
    let statuses: Vec<ExecStatus> = r.iter().map(|r| r.status).collect();
    use ExecStatus::*;
    assert_eq!(statuses, vec![Accepted, PartiallyFilled, Filled]);
    // 1 at the ask; the other 1.5 at 9.995 · sqrt(1.5 / 4) = 6.1207 bps past it:
    // 100.11 · 1.000612 = 100.1713, rounded up to the tick: 100.18.
    let fills: Vec<(Decimal, Decimal)> = r[1..].iter().map(|r| (r.last_px.unwrap(), r.last_qty)).collect();
    assert_eq!(fills, vec![(dec!(100.11), dec!(1)), (dec!(100.18), dec!(1.5))]);
    let last = r.last().unwrap();
    assert_eq!(last.avg_px, Some(dec!(100.152)), "(100.11 + 1.5 · 100.18) / 2.5");
    // IBKR tiered: 2.5 shares pay the 0.35 minimum, on the first fill.
    assert_eq!((r[1].commission, r[2].commission, last.cum_commission), (dec!(0.35), dec!(0), dec!(0.35)));
    // Against the intent's decision mid (100): 15.2 bps; the venue's mid at arrival was 100.1.
    assert_eq!(last.arrival_mid, dec!(100));
    assert_eq!(last.slippage_bps, Some(dec!(15.2)));
    assert_eq!(last.venue_mid, Some(dec!(100.1)));
    assert_eq!(e.risk().exposure(&sym("X")).position, dec!(2.5));
}

#[test]
fn what_one_order_takes_from_a_quote_is_gone_for_the_next() {
    let mut e = engine();
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    let (_, first) = send(&mut e, SEC, &intent("X", Side::Buy, dec!(0.6), None, TimeInForce::Ioc));
    assert_eq!(
        (first[1].last_px, first[1].last_qty, first[1].status),
        (Some(dec!(100.01)), dec!(0.6), ExecStatus::Filled)
    );
    // 0.4 is left at the ask; without traded volume nothing prices the rest, which is cancelled.
    let (_, second) = send(&mut e, SEC, &intent("X", Side::Buy, dec!(0.6), None, TimeInForce::Ioc));
    let statuses: Vec<ExecStatus> = second.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![ExecStatus::Accepted, ExecStatus::PartiallyFilled, ExecStatus::Cancelled]);
    assert_eq!(second[1].last_qty, dec!(0.4));
    assert!(second[2].detail.as_deref().unwrap().starts_with("no liquidity beyond the displayed size"));
    // A new quote shows the size again.
    quote(&mut e, 2 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    let (_, third) = send(&mut e, 2 * SEC, &intent("X", Side::Buy, dec!(0.6), None, TimeInForce::Ioc));
    assert_eq!(third.last().unwrap().status, ExecStatus::Filled);
}

#[test]
fn a_market_order_fills_only_inside_the_collar() {
    let mut e = engine();
    // Mid 100 with the ask 5 % away: the collar (100 bps) caps a buy at 101.
    quote(&mut e, SEC, "X", dec!(95), dec!(105), dec!(10));
    let (_, r) = send(&mut e, SEC, &intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc));
    let statuses: Vec<ExecStatus> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![ExecStatus::Accepted, ExecStatus::Cancelled]);
    assert_eq!(r[1].detail.as_deref(), Some("price collar: the rest is not fillable within 100 bps of mark 100"));
    assert!(e.risk().exposure(&sym("X")).worst().is_zero());
    // A square-root price beyond the collar is refused the same way. With 20 times the impact,
    // the 1.5 past the ask of `with_history` costs 122.4 bps: 100.11 → 101.34 > 100.1 + 1 %.
    let (r, mut o) = cfg();
    o.impact_coefficient = 20.0;
    let mut e = engine_with(&r, &o);
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    trade(&mut e, SEC + SEC / 2, "X", dec!(100.01), dec!(4), Side::Buy);
    quote(&mut e, 2 * SEC, "X", dec!(100.09), dec!(100.11), dec!(1));
    let (_, r) = send(&mut e, 2 * SEC, &intent("X", Side::Buy, dec!(2.5), None, TimeInForce::Ioc));
    let statuses: Vec<ExecStatus> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![ExecStatus::Accepted, ExecStatus::PartiallyFilled, ExecStatus::Cancelled]);
    assert_eq!((r[1].last_px, r[2].cum_qty), (Some(dec!(100.11)), dec!(1)));
    assert!(r[2].detail.as_deref().unwrap().starts_with("price collar"));
}

#[test]
fn a_resting_order_fills_only_after_the_queue_ahead_has_traded() {
    let mut e = engine_with_fees(FeeSchedule::Bps { maker_bps: dec!(2), taker_bps: dec!(5) });
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    // Joins the bid at 99.99 behind the 1 displayed there.
    let (_, r) = send(&mut e, SEC, &intent("X", Side::Buy, dec!(0.5), Some(dec!(99.99)), TimeInForce::Gtc));
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), vec![ExecStatus::Accepted]);
    // Sells of 0.6 at 99.99 use up 0.6 of the queue; a buy at the ask does not reach it.
    assert!(reports(&trade(&mut e, 2 * SEC, "X", dec!(99.99), dec!(0.6), Side::Sell)).is_empty());
    assert!(reports(&trade(&mut e, 3 * SEC, "X", dec!(100.01), dec!(5), Side::Buy)).is_empty());
    // 0.6 more: 0.4 finishes the queue, 0.2 fills the order, at its limit, as a maker:
    // 0.2 · 99.99 = 19.998, 2 bps of it 0.0039996.
    let r = reports(&trade(&mut e, 4 * SEC, "X", dec!(99.99), dec!(0.6), Side::Sell));
    assert_eq!((r[0].status, r[0].last_px, r[0].last_qty), (ExecStatus::PartiallyFilled, Some(dec!(99.99)), dec!(0.2)));
    assert_eq!(r[0].commission, dec!(0.0039996));
    // A trade through the price fills the rest at once.
    let r = reports(&trade(&mut e, 5 * SEC, "X", dec!(99.98), dec!(1), Side::Sell));
    assert_eq!((r[0].status, r[0].last_px, r[0].cum_qty), (ExecStatus::Filled, Some(dec!(99.99)), dec!(0.5)));
}

#[test]
fn an_order_that_arrives_after_the_plane_moved_on_meets_the_book_of_its_arrival() {
    let (r, mut o) = cfg();
    o.latency_ms = 10;
    o.latency_max_ms = 10;
    let mut e = engine_with(&r, &o);
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    // Arrival at 1.010 s: the quote of 1.005 s is in effect, not the later ones.
    quote(&mut e, SEC + 5_000_000, "X", dec!(100.19), dec!(100.21), dec!(1));
    quote(&mut e, SEC + 10_000_001, "X", dec!(100.49), dec!(100.51), dec!(1));
    quote(&mut e, 3 * SEC, "X", dec!(101.99), dec!(102.01), dec!(1));
    let (_, late) = send(&mut e, SEC, &intent("X", Side::Buy, dec!(0.5), None, TimeInForce::Ioc));
    assert_eq!(late.last().unwrap().last_px, Some(dec!(100.21)));
    assert_eq!(late[0].venue_mid, Some(dec!(100.2)));
    // The same order on a plane whose market data has not got there yet waits for it.
    let mut e = engine_with(&r, &o);
    quote(&mut e, SEC, "X", dec!(99.99), dec!(100.01), dec!(1));
    let mut out = Vec::new();
    let i = intent("X", Side::Buy, dec!(0.5), None, TimeInForce::Ioc);
    assert_eq!(e.on_intent(&envelope(SEC, IntentEvent::Intent(i)), &mut out), IntentOutcome::Held);
    assert!(reports(&quote(&mut e, SEC + 5_000_000, "X", dec!(100.19), dec!(100.21), dec!(1))).is_empty());
    let r = reports(&quote(&mut e, SEC + 10_000_001, "X", dec!(100.49), dec!(100.51), dec!(1)));
    assert_eq!(r.last().unwrap().last_px, Some(dec!(100.21)), "the book of 1.005 s, as above");
}

#[test]
fn the_end_of_the_input_executes_what_waits_against_the_last_quote() {
    let mut e = marked();
    let mut out = Vec::new();
    let i = intent("X", Side::Sell, dec!(1), None, TimeInForce::Ioc);
    assert_eq!(e.on_intent(&envelope(2 * SEC, IntentEvent::Intent(i)), &mut out), IntentOutcome::Held);
    let ended = SymbolStatus { symbol: sym("X"), status: FeedStatus::Ended, last_update: UnixNanos(SEC) };
    let mut env = envelope(SEC, MarketEvent::Status(ended));
    env.event_id = EventId(Uuid::from_u128(99));
    e.on_market(&env, &mut out);
    let r = reports(&out);
    assert_eq!((r.last().unwrap().status, r.last().unwrap().last_px), (ExecStatus::Filled, Some(dec!(99.99))));
}

#[test]
fn the_latency_of_an_order_depends_on_the_seed_and_its_id_only() {
    use order_plane::simulated::LatencyModel;
    let cfg = OrderPlaneConfig {
        latency_ms: 5,
        latency_jitter_ms: 2.0,
        latency_jitter_sigma: 0.5,
        ..OrderPlaneConfig::default()
    };
    let model = LatencyModel::new(&cfg);
    let ids: Vec<IntentId> = (0..2000u64).map(|n| IntentId(Uuid::from_u64_pair(7, n))).collect();
    let delays: Vec<u64> = ids.iter().map(|i| model.delay_ns(*i)).collect();
    let again: Vec<u64> = ids.iter().rev().map(|i| model.delay_ns(*i)).collect();
    assert!(delays.iter().eq(again.iter().rev()), "order of asking changes nothing");
    assert!(delays.iter().all(|d| (5_000_000..=500_000_000).contains(d)));
    // Log-normal around 2 ms: the median of the random part is within 5 % of it.
    let mut jitter: Vec<u64> = delays.iter().map(|d| d - 5_000_000).collect();
    jitter.sort_unstable();
    let median = jitter[jitter.len() / 2] as f64;
    assert!((median - 2e6).abs() < 1e5, "median {median}");
    let other = LatencyModel::new(&OrderPlaneConfig { latency_seed: 2, ..cfg });
    assert_ne!(ids.iter().map(|i| other.delay_ns(*i)).collect::<Vec<_>>(), delays, "another seed");
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

    // Decided at 5 s, after the last quote (4 s): it waits until the market shows that 5 s has
    // passed, then executes against the book in effect at 5 s (bid 99.8 × 1), not a later one.
    let ioc = intent("X", Side::Sell, dec!(2), Some(dec!(99.8)), TimeInForce::Ioc);
    let (_, r) = send(&mut e, 5 * SEC, &ioc);
    let statuses: Vec<ExecStatus> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![ExecStatus::Accepted, ExecStatus::PartiallyFilled, ExecStatus::Cancelled]);
    assert_eq!((r[1].last_px, r[1].last_qty), (Some(dec!(99.8)), dec!(1)));
    assert_eq!((r[2].leaves_qty, r[2].cum_qty), (dec!(0), dec!(1)));
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
        take(&mut a, &envelope(SEC, IntentEvent::Intent(i.clone())), &mut log);
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

/// A ledger fill of a name no instrument has, without a price to value it by, held every later
/// intent at `stale_market_data` ("holds exposure but has no quote yet") for good, at every
/// restart: the ledger is kept forever.
#[test]
fn a_ledger_fill_of_an_unconfigured_symbol_blocks_nothing_after_a_restart() {
    let fill = ExecReport {
        intent_id: IntentId(Uuid::from_u128(99)),
        order_id: "SIM-99".into(),
        symbol: sym("NOPE"),
        side: Side::Buy,
        status: ExecStatus::PartiallyFilled,
        reason: None,
        detail: None,
        venue: "simulated".into(),
        order_qty: dec!(5),
        exec_id: Some("SIM-99-1".into()),
        last_px: None,
        last_qty: dec!(1),
        cum_qty: dec!(1),
        avg_px: None,
        leaves_qty: dec!(4),
        commission: dec!(0),
        cum_commission: dec!(0),
        arrival_mid: dec!(0),
        slippage_bps: None,
        venue_mid: None,
    };
    let mut e = marked();
    e.restore(&envelope(SEC / 2, ExecEvent::Report(fill.clone())));
    let mut out = Vec::new();
    e.finish_restore(UnixNanos(SEC), &mut out);
    assert_eq!(quoted_intent(&mut e, 2 * SEC, "X", Side::Buy).1, IntentOutcome::Placed, "nothing blocks");

    // With a price, the same position is real exposure (an instrument since removed from the
    // configuration, still held at the broker) and counts in the limits: 5 × 150 = 750 of the
    // 800 net limit leaves room for 0.4 of X at 100, not for 0.6.
    let priced = ExecReport { last_px: Some(dec!(150)), last_qty: dec!(5), cum_qty: dec!(5), ..fill };
    let mut e = marked();
    e.restore(&envelope(SEC / 2, ExecEvent::Report(priced)));
    e.finish_restore(UnixNanos(SEC), &mut out);
    let buy = |qty| intent("X", Side::Buy, qty, None, TimeInForce::Ioc);
    assert_eq!(send(&mut e, 2 * SEC, &buy(dec!(0.6))).0, rejected(RejectReason::MaxNetExposure));
    assert_eq!(send(&mut e, 2 * SEC, &buy(dec!(0.4))).0, IntentOutcome::Placed);
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
        take(
            &mut a,
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
fn an_intent_is_judged_on_the_market_of_its_decision_time() {
    let mut e = marked();
    quote(&mut e, 100 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
    // At 41 s the book in effect was the quote of 1 s: 40 s old, stale (stale_after_ms is 5 s),
    // although the plane's latest quote is fresh.
    let early = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    let (outcome, r) = send(&mut e, 41 * SEC, &early);
    assert_eq!(outcome, rejected(RejectReason::StaleMarketData));
    assert_eq!(r[0].detail.as_deref(), Some("last quote 40000 ms old"));
    let fresh = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    assert_eq!(send(&mut e, 100 * SEC, &fresh).0, IntentOutcome::Placed);
    // Once an intent has moved the mark to 100 s, one decided 61 s before it is a backlog.
    let old = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    let (outcome, r) = send(&mut e, 39 * SEC, &old);
    assert_eq!(outcome, rejected(RejectReason::StaleMarketData));
    assert_eq!(r[0].detail.as_deref(), Some("intent decided 61000 ms before the latest quote"));
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
    take(
        &mut e,
        &envelope(SEC, IntentEvent::Intent(intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc))),
        &mut out,
    );
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

/// A hostile or buggy producer's valid intent for a name no instrument has (chaos writes such
/// records) was held for market data that never passes its time: its partition stayed paused for
/// good, and nothing behind it was read.
#[test]
fn an_intent_of_an_unconfigured_symbol_is_refused_at_once_never_held_even_after_a_quote_of_it() {
    let mut e = marked();
    quote(&mut e, 2 * SEC, "NOPE", dec!(99.99), dec!(100.01), dec!(1000));
    let mut out = Vec::new();
    let mark = envelope(9 * SEC, IntentEvent::Decided(DecisionMark { symbol: sym("NOPE") }));
    assert_eq!(e.on_intent(&mark, &mut out), IntentOutcome::Marked);
    let unknown = intent("NOPE", Side::Buy, dec!(0.1), None, TimeInForce::Ioc);
    let outcome = e.on_intent(&envelope(10 * SEC, IntentEvent::Intent(unknown.clone())), &mut out);
    assert_eq!(outcome, rejected(RejectReason::UnknownSymbol), "judged on arrival, with no market data past it");
    assert_eq!((e.held_intents(), e.restart_position(&sym("NOPE"))), (0, None), "the venue keeps nothing of it");
    let r = reports(&out);
    assert_eq!((r.len(), r[0].intent_id, r[0].status), (1, unknown.intent_id, ExecStatus::Rejected));
}

/// Anyone who can write to a topic chooses the names in it. A core that kept a market, a book, a
/// dedup entry, a cost model or a remembered id for each would grow with every name written, and
/// a symbol nobody trades needs none of them.
#[test]
fn names_no_instrument_has_leave_no_per_symbol_state_behind() {
    let mut e = engine();
    let mut out = Vec::new();
    for n in 0..5_000u64 {
        let model = CostModelUpdate {
            intercept_bps: 0.0,
            half_spread_coef: 1.0,
            impact_coef: 0.0,
            intercept_stderr: 0.0,
            half_spread_stderr: 0.0,
            impact_stderr: 0.0,
            residual_scale_bps: 0.0,
            residual_std_bps: 0.0,
            n_fills: 1,
            symbol: Some(sym(&format!("NOPE{n}"))),
            state: None,
        };
        e.restore(&envelope(n + 1, ExecEvent::CostModel(model)));
    }
    e.finish_restore(UnixNanos(SEC / 2), &mut out);
    let mut refused = 0;
    for n in 0..5_000u64 {
        let s = format!("NOPE{n}");
        let ts = (n + 1) * SEC;
        out.extend(quote(&mut e, ts, &s, dec!(99.99), dec!(100.01), dec!(1000)));
        out.extend(trade(&mut e, ts + 1, &s, dec!(100), dec!(1), Side::Buy));
        pass(&mut e, ts + 2, &sym(&s), &mut out);
        let mark = envelope(ts + 3, IntentEvent::Decided(DecisionMark { symbol: sym(&s) }));
        assert_eq!(e.on_intent(&mark, &mut out), IntentOutcome::Marked);
        let unknown = intent(&s, Side::Buy, dec!(0.1), None, TimeInForce::Ioc);
        let outcome = e.on_intent(&envelope(ts + 3, IntentEvent::Intent(unknown)), &mut out);
        refused += usize::from(outcome == rejected(RejectReason::UnknownSymbol));
    }
    assert_eq!((refused, reports(&out).len()), (5_000, 5_000), "each intent refused once, nothing else reported");
    assert_eq!(e.symbols_held(), SymbolsHeld::default());
    assert_eq!((e.venue().symbols(), e.venue().history_len(&sym("NOPE0"))), (0, 0), "the venue keeps no book");
    assert_eq!((e.tracked_orders(), e.remembered_intents(), e.held_intents()), (0, 0, 0));
}

/// An order's first report is made at its arrival, milliseconds after its decision. A copy of the
/// intent read after its id was forgotten (past the risk horizon: a re-delivery from long ago, or
/// a producer's bad copy) is refused, and that refusal must carry the first report's event id, or
/// the intent has two terminal reports for every consumer.
#[test]
fn a_refused_late_copy_of_an_executed_intent_is_its_first_report_again_by_event_id() {
    let (r, o) = cfg();
    let mut e = engine_with(&r, &OrderPlaneConfig { latency_ms: 7, ..o });
    quote(&mut e, 10 * SEC, "X", dec!(99.99), dec!(100.01), dec!(1000));
    let first = intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc);
    let decided = envelope(10 * SEC + 500_000_000, IntentEvent::Intent(first.clone()));
    let mut out = Vec::new();
    assert_eq!(e.on_intent(&decided, &mut out), IntentOutcome::Held);
    pass(&mut e, 10 * SEC + 508_000_000, &sym("X"), &mut out);
    let made: Vec<&Envelope<ExecEvent>> = out.iter().filter(|e| matches!(e.payload, ExecEvent::Report(_))).collect();
    assert_eq!(made.len(), 2, "accepted, filled");
    let (accepted, arrival) = (made[0].event_id, made[0].ts_event);
    assert_eq!(arrival.0, 10 * SEC + 507_000_000, "reported at the arrival, 7 ms after the decision");
    // 61 s later X's mark has moved past the horizon (60 s): the id is forgotten.
    quoted_intent(&mut e, 71 * SEC + 600_000_000, "X", Side::Sell);
    let refusal = |out: &[Envelope<ExecEvent>]| {
        let mine: Vec<_> = out
            .iter()
            .filter(|e| matches!(&e.payload, ExecEvent::Report(r) if r.intent_id == first.intent_id))
            .collect();
        assert_eq!(mine.len(), 1);
        assert!(matches!(&mine[0].payload, ExecEvent::Report(r) if r.status == ExecStatus::Rejected));
        mine[0].event_id
    };
    let mut again = Vec::new();
    assert_eq!(e.on_intent(&decided, &mut again), rejected(RejectReason::StaleMarketData));
    assert_eq!(refusal(&again), accepted, "a copy of the accepted report by event id");
    let mut bad = serde_json::to_value(&decided).unwrap();
    bad["schema_version"] = serde_json::json!(99);
    let mut malformed = Vec::new();
    let mut fresh = engine_with(&r, &OrderPlaneConfig { latency_ms: 7, ..cfg().1 });
    assert!(fresh.reject_undecodable(
        &serde_json::to_vec(&bad).unwrap(),
        "unknown schema_version",
        UnixNanos(1),
        &mut malformed
    ));
    assert_eq!(refusal(&malformed), accepted, "an undecodable copy is answered under the same id");
}

/// The decoder leaves an intent's quantity for risk to refuse by name; the refusal must still be a
/// record its readers decode (every decimal of a report within ±10^12), and its slippage too.
#[test]
fn refusals_and_fills_of_out_of_bound_intents_are_valid_reports() {
    let mut e = marked();
    let huge = intent("X", Side::Buy, dec!(100000000000000000000), None, TimeInForce::Ioc);
    let mut out = Vec::new();
    take(&mut e, &envelope(2 * SEC, IntentEvent::Intent(huge)), &mut out);
    assert_eq!(reports(&out)[0].reason, Some(RejectReason::InvalidQuantity));
    // A positive but absurd decision mid: the fill's slippage against it is no exact decimal.
    let tiny_mid = OrderIntent {
        arrival_mid: dec!(0.000000000000000000001),
        ..intent("X", Side::Buy, dec!(1), None, TimeInForce::Ioc)
    };
    take(&mut e, &envelope(3 * SEC, IntentEvent::Intent(tiny_mid)), &mut out);
    let reports = reports(&out);
    assert!(reports.iter().any(|r| r.status == ExecStatus::Filled && r.slippage_bps.is_none()), "{reports:?}");
    for env in &out {
        let decoded = common::codec::decode::<ExecEvent>(&common::codec::encode(env));
        assert!(decoded.is_ok(), "{decoded:?}");
    }
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
    assert_eq!(take(&mut e, &record, &mut taken), IntentOutcome::Held);
    assert_eq!(reports(&taken).last().unwrap().status, ExecStatus::Filled);
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

/// The cost model identifies the square-root impact once the venue charges it: orders of 1.5 to 6
/// against 1 displayed at each touch take the rest at `k · σ_bps · sqrt(rest / volume)` past the
/// touch. With `k = 1` the learned impact coefficient is clearly positive; with `k = 0` the same
/// orders pay only the spread and it stays near 0.
#[test]
fn the_cost_model_identifies_impact_once_the_venue_charges_it() {
    let learned = |k: f64| {
        let (mut r, mut o) = cfg();
        r.max_gross_exposure = dec!(1000000);
        r.max_net_exposure = dec!(1000000);
        r.max_position_size = dec!(1000000);
        o.max_order_notional = dec!(1000000);
        o.max_orders_per_second = 1_000;
        o.impact_coefficient = k;
        let mut e = engine_with(&r, &o);
        let sizes = [dec!(1.5), dec!(2), dec!(3), dec!(4), dec!(6)];
        let mut last = None;
        for i in 0..400u64 {
            let t = SEC * (2 + 2 * i);
            // The mid moves by 1 bp a second, up and down: σ about 10 bps.
            let mid = if i % 2 == 0 { dec!(100) } else { dec!(100.1) };
            quote(&mut e, t - SEC, "X", mid - dec!(0.01), mid + dec!(0.01), dec!(1));
            trade(&mut e, t - SEC / 2, "X", mid, dec!(4), Side::Buy);
            quote(&mut e, t, "X", mid - dec!(0.01), mid + dec!(0.01), dec!(1));
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            let mut order = intent("X", side, sizes[(i as usize / 2) % sizes.len()], None, TimeInForce::Ioc);
            order.arrival_mid = mid;
            let mut out = Vec::new();
            take(&mut e, &envelope(t, IntentEvent::Intent(order)), &mut out);
            last = out.iter().rev().find_map(|env| match &env.payload {
                ExecEvent::CostModel(c) => Some(c.clone()),
                _ => None,
            });
        }
        last.expect("a cost model after the last order")
    };
    let (charged, free) = (learned(1.0), learned(0.0));
    println!("k = 1: {charged:?}\nk = 0: {free:?}");
    assert!(charged.impact_coef > 0.3 && charged.impact_coef > 3.0 * charged.impact_stderr, "{charged:?}");
    assert!(free.impact_coef < 0.05, "{free:?}");
}
