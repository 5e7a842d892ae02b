//! Order Plane core benchmark, one core, no broker: a pre-trade risk check, a simulated fill, a
//! cost-model update, and the whole core per intent and per quote. Prints ns/op and ops/s
//! (median of several runs).
//!
//! `cargo bench -p order-plane --bench core`

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use common::clock::ManualClock;
use common::config::{InstrumentConfig, OrderPlaneConfig, RiskConfig};
use common::events::*;
use common::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};
use order_plane::cost_model::CostModel;
use order_plane::engine::OrderEngine;
use order_plane::risk::{Mark, RiskEngine};
use order_plane::simulated::SimulatedVenue;
use order_plane::venue::Venue;
use rust_decimal::Decimal;
use rust_decimal::dec;
use uuid::Uuid;

const RUNS: usize = 5;
const N: usize = 200_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_723_161_600_000_000_000;

fn report(what: &str, n: usize, mut secs: Vec<f64>) {
    secs.sort_by(f64::total_cmp);
    let s = secs[secs.len() / 2];
    println!("{what:<48} {:>12.0} ops/s {:>9.1} ns/op", n as f64 / s, s * 1e9 / n as f64);
}

fn runs(mut one: impl FnMut() -> f64) -> Vec<f64> {
    (0..RUNS).map(|_| one()).collect()
}

fn symbol() -> Symbol {
    Symbol::new("BTCUSDT").unwrap()
}

fn instruments() -> Vec<InstrumentConfig> {
    vec![InstrumentConfig {
        symbol: "BTCUSDT".into(),
        tick_size: dec!(0.01),
        lot_size: dec!(0.00001),
        min_qty: dec!(0.00001),
        min_notional: dec!(5),
        fees: Default::default(),
    }]
}

/// Limits no benchmark order reaches, and a throttle above the benchmark's order rate.
fn config() -> (RiskConfig, OrderPlaneConfig) {
    let order = OrderPlaneConfig { latency_ms: 0, max_orders_per_second: 1_000_000, ..OrderPlaneConfig::default() };
    (RiskConfig::default(), order)
}

fn quote(bid: Decimal) -> Quote {
    Quote {
        symbol: symbol(),
        bid_px: Price::new(bid).unwrap(),
        bid_sz: Quantity::new(dec!(1.5)).unwrap(),
        ask_px: Price::new(bid + dec!(0.01)).unwrap(),
        ask_sz: Quantity::new(dec!(2.25)).unwrap(),
    }
}

/// A market IOC intent of 0.01 BTC, alternately buying and selling.
fn intent(i: usize) -> OrderIntent {
    OrderIntent {
        intent_id: IntentId(Uuid::from_u64_pair(7, i as u64)),
        symbol: symbol(),
        side: if i.is_multiple_of(2) { Side::Buy } else { Side::Sell },
        quantity: dec!(0.01),
        order_type: OrderType::Market,
        limit_price: None,
        time_in_force: TimeInForce::Ioc,
        arrival_mid: dec!(61686),
        expected_cost_bps: dec!(0.1),
        signals: vec![SignalValue { name: "ofi".into(), value: 0.4 }],
    }
}

fn envelope<P>(i: usize, ts: u64, payload: P) -> Envelope<P> {
    Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(Uuid::from_u64_pair(9, i as u64)),
        source: Arc::new(Source { plane: "strategy-plane".into(), instance: "bench".into() }),
        ts_event: UnixNanos(ts),
        ts_init: UnixNanos(ts),
        causation_id: None,
        payload,
    }
}

fn main() {
    let (limits, cfg) = config();
    let sym = symbol();
    let intents: Vec<OrderIntent> = (0..N).map(intent).collect();

    // Risk check: approve, then release the working quantity as an IOC remainder would, so
    // exposure stays put and every check walks the same path.
    let risk = runs(|| {
        let mut r = RiskEngine::new(&limits, &cfg, &instruments());
        let t = Instant::now();
        for (i, intent) in intents.iter().enumerate() {
            let now = UnixNanos(T0 + i as u64 * MS);
            if i.is_multiple_of(1000) {
                r.set_mark(&sym, Mark { mid: dec!(61686.005), ts: now });
            }
            let order = r.check(intent, now).unwrap();
            r.on_done(&sym, intent.side, order.get().qty);
            black_box(&order);
        }
        t.elapsed().as_secs_f64()
    });
    report("risk check (approve + release)", N, risk);

    // Simulated fill: a risk-approved market order placed into a venue whose book is already
    // past its arrival, so it is accepted and filled at once.
    let fill = runs(|| {
        let mut r = RiskEngine::new(&limits, &cfg, &instruments());
        let mut approved = Vec::with_capacity(N);
        for (i, intent) in intents.iter().enumerate() {
            let now = UnixNanos(T0 + i as u64 * MS);
            if i.is_multiple_of(1000) {
                r.set_mark(&sym, Mark { mid: dec!(61686.005), ts: now });
            }
            let order = r.check(intent, now).unwrap();
            r.on_done(&sym, intent.side, order.get().qty);
            approved.push(order);
        }
        let ticks = HashMap::from([(sym.clone(), dec!(0.01))]);
        let mut venue = SimulatedVenue::with_latency(0, ticks);
        let mut out = Vec::with_capacity(4);
        venue.on_quote(UnixNanos(T0 + N as u64 * MS), &quote(dec!(61686)), &mut out);
        let t = Instant::now();
        for order in approved {
            out.clear();
            venue.place(order, &mut out);
            black_box(&out);
        }
        t.elapsed().as_secs_f64()
    });
    report("simulated fill (place: accept + fill)", N, fill);

    let mut s = 1u64;
    let mut rng = move || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let samples: Vec<(f64, f64, f64)> =
        (0..N).map(|_| (0.5 + rng(), rng() * 0.1, 0.8 + rng() + (rng() - 0.5) * 0.2)).collect();
    let cost = runs(|| {
        let mut m = CostModel::new(cfg.cost_forgetting, cfg.cost_huber_k);
        let t = Instant::now();
        for &(half_spread, impact, realized) in &samples {
            m.update(half_spread, impact, realized);
        }
        black_box(m.predict(1.0, 0.01));
        t.elapsed().as_secs_f64()
    });
    report("cost-model update (robust RLS)", N, cost);

    // The whole core: a quote (marks, venue book), then an intent through risk, the venue and
    // the cost model to its exec reports.
    let (quotes, envs): (Vec<_>, Vec<_>) = intents
        .iter()
        .enumerate()
        .map(|(i, intent)| {
            let ts = T0 + i as u64 * MS;
            let bid = dec!(61686) + Decimal::new(i as i64 % 7, 2);
            (
                envelope(i, ts, MarketEvent::Quote(quote(bid))),
                envelope(i, ts + MS / 2, IntentEvent::Intent(intent.clone())),
            )
        })
        .unzip();
    let mut quote_times = Vec::new();
    let mut intent_times = Vec::new();
    for _ in 0..RUNS {
        let ticks = HashMap::from([(sym.clone(), dec!(0.01))]);
        let source = Arc::new(Source { plane: "order-plane".into(), instance: "bench".into() });
        let clock = ManualClock::new(UnixNanos(T0));
        let mut engine =
            OrderEngine::new(&limits, &cfg, &instruments(), SimulatedVenue::with_latency(0, ticks), source, clock);
        let mut out = Vec::with_capacity(8);
        let (mut on_quote, mut on_intent) = (0.0, 0.0);
        for (q, i) in quotes.iter().zip(&envs) {
            let t = Instant::now();
            engine.on_market(q, &mut out);
            on_quote += t.elapsed().as_secs_f64();
            out.clear();
            let t = Instant::now();
            black_box(engine.on_intent(i, &mut out));
            on_intent += t.elapsed().as_secs_f64();
            out.clear();
        }
        quote_times.push(on_quote);
        intent_times.push(on_intent);
    }
    report("core: quote in (marks, venue book)", N, quote_times);
    report("core: intent in → exec reports (risk + fill + cost)", N, intent_times);
}
