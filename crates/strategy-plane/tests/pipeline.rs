//! The three cores wired together on the real sample data, with no broker: Data Plane core →
//! Strategy core → Order core → exec reports back to the Strategy core.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashMap;
use std::path::Path;

use common::clock::ManualClock;
use common::codec;
use common::config::AppConfig;
use common::events::*;
use common::types::{Symbol, UnixNanos};
use data_plane::core::{DataCore, Output};
use data_plane::source::Replay;
use order_plane::engine::OrderEngine;
use order_plane::simulated::SimulatedVenue;
use rust_decimal::Decimal;
use strategy_plane::engine::StrategyEngine;

mod support;
use support::{Cores, SPOT, data_outputs, source, trading};

struct Run {
    last_event: UnixNanos,
    intents: Vec<Envelope<IntentEvent>>,
    reports: Vec<ExecReport>,
    strategy: StrategyEngine<ManualClock>,
    order: OrderEngine<SimulatedVenue, ManualClock>,
}

fn run(cfg: &AppConfig, halt_first: bool) -> Run {
    run_redelivering(cfg, halt_first, None)
}

/// Runs the cores; with `redeliver = Some(n)`, every n rows the last few hundred Data Plane
/// outputs are delivered again, as after a Data Plane restart from an older checkpoint.
fn run_redelivering(cfg: &AppConfig, halt_first: bool, redeliver: Option<usize>) -> Run {
    run_changed(SPOT, cfg, halt_first, redeliver, &|_| {})
}

/// [`run_redelivering`] of the sample `file`, with every input row changed by `change` first.
fn run_changed(
    file: &str,
    cfg: &AppConfig,
    halt_first: bool,
    redeliver: Option<usize>,
    change: &dyn Fn(&mut data_plane::source::RawEvent),
) -> Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(file);
    let mut data = DataCore::new(&cfg.data_plane, "replay:t", source("data-plane"), ManualClock::new(UnixNanos(1)))
        .expecting(&data_plane::run::instruments(cfg));
    let mut cores = Cores::new(cfg);
    let mut outputs = Vec::new();
    if halt_first {
        let mut halt = Vec::new();
        cores.order.set_halt(true, "test", None, UnixNanos(0), &mut halt);
        for e in &halt {
            cores.strategy.on_exec(e, true, &mut Vec::new());
        }
    }
    let mut recent = std::collections::VecDeque::new();
    for (row, item) in Replay::open(&path, 1).unwrap().enumerate() {
        let mut ev = item.unwrap();
        change(&mut ev);
        data.process(ev, &mut outputs);
        if redeliver.is_some() {
            recent.extend(outputs.iter().cloned());
            while recent.len() > 300 {
                recent.pop_front();
            }
        }
        cores.feed(&mut outputs);
        if redeliver.is_some_and(|n| row % n == n - 1) {
            let mut again: Vec<Output> = recent.iter().cloned().collect();
            cores.feed(&mut again);
        }
    }
    data.end(&mut outputs);
    cores.feed(&mut outputs);
    let Cores { last_event, intents, reports, strategy, order, .. } = cores;
    Run { last_event, intents, reports, strategy, order }
}

/// A restarted Strategy Plane reads back the windows before where its group resumes
/// (`StrategyEngine::warm`): it trades at its first decision, where a cold one warms up for
/// `warmup_windows` of event time first.
#[test]
fn a_core_warmed_on_the_windows_before_a_restart_trades_at_its_first_decision() {
    let cfg = trading();
    let outputs = data_outputs(SPOT, &cfg);
    let ofi_end = |o: &Output| match o {
        Output::Ofi(env) => {
            let OfiEvent::Window(w) = &env.payload;
            Some(w.window_end)
        }
        _ => None,
    };
    // The restart: half way through the sample, at an OFI window.
    let cut = (outputs.len() / 2..outputs.len()).find(|&i| ofi_end(&outputs[i]).is_some()).unwrap();
    let resumed_at = ofi_end(&outputs[cut]).unwrap();
    let first_intent = |warm: bool| {
        let mut cores = Cores::new(&cfg);
        if warm {
            for o in &outputs[..cut] {
                if let Output::Ofi(env) = o {
                    cores.strategy.warm(env);
                }
            }
        }
        cores.feed(&mut outputs[cut..].to_vec());
        assert!(!cores.intents.is_empty(), "warm: {warm}");
        cores.intents[0].ts_event.0 - resumed_at.0
    };
    let interval = cfg.strategy_plane.decision_interval_ms * 1_000_000;
    let (warm, cold) = (first_intent(true), first_intent(false));
    println!("first intent after the restart: warmed {warm} ns, cold {cold} ns");
    assert!(warm <= interval, "warmed: {warm} ns");
    assert!(cold >= cfg.strategy_plane.warmup_windows * 1_000_000_000, "cold: {cold} ns");
}

/// The sample with every price times 10^-26 passes the quality checks (positive, in range), and
/// the Strategy Plane sized its trades with unchecked decimals: `Division overflowed`, at every
/// restart of a replay. Such a market now makes no trade, and nothing panics.
#[test]
fn prices_far_below_any_market_make_no_trade_and_no_panic() {
    use data_plane::source::{Num, RawBody};
    let tiny = |n: &mut Num| {
        if let Num::Value(d) = n {
            *d *= Decimal::new(1, 26);
        }
    };
    let r = run_changed(SPOT, &trading(), false, None, &|ev| match &mut ev.body {
        RawBody::Quote { bid_px, ask_px, .. } => {
            tiny(bid_px);
            tiny(ask_px);
        }
        RawBody::Trade { price, .. } => tiny(price),
    });
    assert!(r.strategy.counters().decisions > 0, "the strategy decided on that market");
    assert!(r.intents.is_empty(), "but no quantity of it is an exact decimal: {}", r.intents.len());
}

#[test]
fn the_cores_trade_the_sample_within_every_rule() {
    let cfg = trading();
    let r = run(&cfg, false);
    assert!(r.intents.len() > 10, "only {} intents", r.intents.len());
    assert!(r.strategy.counters().signals > 0);
    let lots: HashMap<String, Decimal> = cfg.instruments.iter().map(|i| (i.symbol.clone(), i.lot_size)).collect();
    for env in &r.intents {
        let IntentEvent::Intent(i) = &env.payload else { panic!("only new orders") };
        assert!(i.quantity > Decimal::ZERO && (i.quantity % lots[i.symbol.as_str()]).is_zero(), "{i:?}");
        assert!(i.quantity * i.arrival_mid >= Decimal::from(10));
        assert!(i.quantity * i.arrival_mid <= cfg.risk.max_position_size * Decimal::TWO, "{i:?}");
        assert!(i.signals.iter().all(|s| s.value.is_finite()));
        assert!(env.causation_id.is_some(), "caused by an OFI window");
        assert_eq!(codec::decode::<IntentEvent>(&codec::encode(env)).unwrap(), *env, "a valid record");
    }
    // Every intent ends exactly once.
    let mut terminal: HashMap<IntentId, usize> = HashMap::new();
    for rep in r.reports.iter().filter(|x| x.status.is_terminal()) {
        *terminal.entry(rep.intent_id).or_default() += 1;
    }
    let latency = cfg.order_plane.latency_ms * 1_000_000;
    for env in &r.intents {
        let IntentEvent::Intent(i) = &env.payload else { continue };
        let ends = terminal.get(&i.intent_id).copied().unwrap_or(0);
        if env.ts_event.0 + latency < r.last_event.0 {
            assert_eq!(ends, 1, "{}", i.intent_id);
        } else {
            // Decided after the last quote (a final window flushed at the end): only risk can
            // answer it, and never twice.
            assert!(ends <= 1, "{}", i.intent_id);
        }
    }
    // Positions: the Strategy's book equals the Order Plane's and the sum of the fills.
    for inst in &cfg.instruments {
        let s = Symbol::new(&inst.symbol).unwrap();
        let fills: Decimal = r.reports.iter().filter(|x| x.symbol == s).map(|x| x.side.sign() * x.last_qty).sum();
        assert_eq!(r.strategy.book().position(&s).qty, fills, "{s}");
        assert_eq!(r.order.risk().exposure(&s).position, fills, "{s}");
    }
    assert!(r.reports.iter().any(|x| x.status == ExecStatus::Filled), "something traded");
    println!("{} intents, {} reports, PnL {}", r.intents.len(), r.reports.len(), r.strategy.book().total_pnl());
}

/// The Order Plane refused 8 of 177 intents of the default run for `max_order_notional`, and a
/// refused rebalance was asked for again at the next decision. Intents are now sized to the static
/// limits risk checks, so on both shipped samples none is refused for one, even with the costs
/// left out (the most trading the limits allow).
#[test]
fn no_intent_of_the_default_run_is_refused_for_a_static_limit() {
    use common::events::RejectReason as R;
    let statics = [R::MaxOrderNotional, R::MaxPositionSize, R::MaxGrossExposure, R::MaxNetExposure];
    for file in [SPOT, "binance-usdm-btcusdt-2024-08-08.csv"] {
        let r = run_changed(file, &trading(), false, None, &|_| {});
        let refused: Vec<_> = r.reports.iter().filter(|x| x.reason.is_some_and(|why| statics.contains(&why))).collect();
        let fills = r.reports.iter().filter(|x| x.last_qty > Decimal::ZERO).count();
        println!("{file}: {} intents, {fills} fills, {} refused for a static limit", r.intents.len(), refused.len());
        assert!(!r.intents.is_empty() && fills > 0, "{file} trades");
        assert!(refused.is_empty(), "{file}: {:?}", refused.iter().map(|x| (x.reason, &x.detail)).collect::<Vec<_>>());
    }
}

/// With the costs weighed, a trade is made only when its expected gain pays them. Binance spot
/// charges 10 bp; no forecast of either sample reaches 0.11 bp: nothing trades, though the
/// strategy decides all along.
#[test]
fn the_shipped_fees_exceed_every_forecast_of_the_samples() {
    for file in [SPOT, "binance-usdm-btcusdt-2024-08-08.csv"] {
        let r = run_changed(file, &AppConfig::default(), false, None, &|_| {});
        assert!(r.strategy.counters().decisions > 100, "{file}: {}", r.strategy.counters().decisions);
        assert!(r.intents.is_empty(), "{file}: {} intents", r.intents.len());
    }
}

/// The fee is a cost the optimizer weighs like the others: the dearer it is, the fewer the trades
/// and the less paid in fees; at 0 (only the spread weighed), the forecasts trade.
#[test]
fn the_dearer_the_fee_the_fewer_the_trades() {
    use common::config::FeeSchedule;
    let mut seen = Vec::new();
    for bps in [0, 1, 10] {
        let mut cfg = AppConfig::default();
        for inst in &mut cfg.instruments {
            inst.fees = FeeSchedule::Bps { maker_bps: Decimal::from(bps), taker_bps: Decimal::from(bps) };
        }
        let r = run(&cfg, false);
        let paid: Decimal = r.reports.iter().map(|x| x.commission).sum();
        println!("{bps} bp: {} intents, fees {paid}", r.intents.len());
        seen.push((r.intents.len(), paid));
    }
    assert!(seen[0].0 > 10, "with no fee, the forecasts trade: {seen:?}");
    assert!(seen[1].0 < seen[0].0 && seen[2].0 <= seen[1].0, "{seen:?}");
    assert_eq!(seen[2].0, 0, "{seen:?}");
}

/// IBKR's tiered schedule is 0.0035 USD a share (0.0006 bp of BTC at 61,000) but at least USD 0.35
/// an order: the rate alone would let the optimizer trade as if fees were 0. An order that adds
/// exposure is made only if its gain pays the minimum, and its gain is at most `|μ| × value`.
#[test]
fn the_tiered_minimum_stops_orders_whose_gain_does_not_pay_it() {
    use common::config::FeeSchedule;
    let mut cfg = AppConfig::default();
    // Less averse to risk than the default: larger trades, a few of whose gains pay the minimum
    // (2 of the 10 made with no fee).
    cfg.strategy_plane.risk_aversion = 6_000.0;
    for inst in &mut cfg.instruments {
        inst.fees = FeeSchedule::IbkrTiered;
    }
    let tiered = run(&cfg, false);
    for inst in &mut cfg.instruments {
        inst.fees = FeeSchedule::Bps { maker_bps: Decimal::ZERO, taker_bps: Decimal::ZERO };
    }
    let free = run(&cfg, false);
    println!("tiered: {} intents; no fee: {}", tiered.intents.len(), free.intents.len());
    assert!(!tiered.intents.is_empty(), "some gains pay the minimum");
    assert!(tiered.intents.len() < free.intents.len() / 2, "{} of {}", tiered.intents.len(), free.intents.len());
    // Every intent of a decision is settled before the next: an intent finds its symbol's position
    // at the sum of the fills of the symbol's earlier intents.
    let mut filled: HashMap<IntentId, Decimal> = HashMap::new();
    for r in &tiered.reports {
        *filled.entry(r.intent_id).or_default() += r.side.sign() * r.last_qty;
    }
    let mut position: HashMap<Symbol, Decimal> = HashMap::new();
    for env in &tiered.intents {
        let IntentEvent::Intent(i) = &env.payload else { continue };
        let held = position.entry(i.symbol.clone()).or_default();
        if (*held + i.side.sign() * i.quantity).abs() > held.abs() {
            let mu = i.signals.iter().find(|s| s.name == "expected_return").unwrap().value.abs();
            let value = (i.quantity * i.arrival_mid).to_string().parse::<f64>().unwrap();
            assert!(mu * value >= 0.35, "{i:?}");
        }
        *held += filled.get(&i.intent_id).copied().unwrap_or_default();
    }
}

#[test]
fn the_same_input_gives_byte_identical_intents() {
    let cfg = trading();
    let (a, b) = (run(&cfg, false), run(&cfg, false));
    let bytes = |r: &Run| r.intents.iter().map(codec::encode).collect::<Vec<_>>();
    assert_eq!(bytes(&a), bytes(&b));
}

#[test]
fn redelivered_market_data_changes_nothing() {
    let cfg = trading();
    let (clean, redelivered) = (run(&cfg, false), run_redelivering(&cfg, false, Some(7_919)));
    let bytes = |r: &Run| r.intents.iter().map(codec::encode).collect::<Vec<_>>();
    assert_eq!(bytes(&clean), bytes(&redelivered));
    assert_eq!(clean.reports, redelivered.reports);
    let c = redelivered.strategy.counters();
    assert!(c.duplicate_market > 1_000 && c.duplicate_ofi > 0, "{c:?}");
    assert_eq!(clean.strategy.counters().duplicate_market, 0);
}

#[test]
fn no_intents_while_halted() {
    let r = run(&trading(), true);
    assert!(r.intents.is_empty());
    assert!(r.strategy.counters().halted_decisions > 0);
}

#[test]
fn an_unknown_symbol_is_counted_and_never_traded() {
    let mut cfg = trading();
    cfg.instruments.retain(|i| i.symbol == "BTCUSDT");
    let r = run(&cfg, false);
    assert!(r.strategy.counters().unknown_symbol > 0);
    assert!(r.intents.iter().all(|e| e.payload.key() == Some("BTCUSDT")));
}

#[test]
fn intents_do_not_depend_on_how_symbols_interleave() {
    let cfg = trading();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(SPOT);
    let mut data = DataCore::new(&cfg.data_plane, "replay:t", source("data-plane"), ManualClock::new(UnixNanos(1)))
        .expecting(&data_plane::run::instruments(&cfg));
    let mut out = Vec::new();
    for item in Replay::open(&path, 1).unwrap() {
        data.process(item.unwrap(), &mut out);
    }
    data.end(&mut out);
    let windows: Vec<Envelope<OfiEvent>> = out
        .into_iter()
        .filter_map(|o| match o {
            Output::Ofi(e) => Some(e),
            _ => None,
        })
        .collect();
    let decide = |order: Vec<&Envelope<OfiEvent>>| {
        let mut s = StrategyEngine::new(&cfg, source("s"), ManualClock::new(UnixNanos(2)));
        let mut intents = Vec::new();
        for w in order {
            s.on_ofi(w, &mut intents);
        }
        let mut bytes: Vec<Vec<u8>> = intents.iter().map(codec::encode).collect();
        bytes.sort();
        bytes
    };
    let file_order = decide(windows.iter().collect());
    // ETHUSDT's stream delivered 3 s of event time behind BTCUSDT's (within the 5 s staleness
    // limit), as two partitions fetched at different paces would.
    let skewed = {
        let mut v: Vec<&Envelope<OfiEvent>> = windows.iter().collect();
        let lag = 3_000_000_000;
        v.sort_by_key(|e| {
            let OfiEvent::Window(w) = &e.payload;
            let delay = if w.symbol.as_str() == "ETHUSDT" { lag } else { 0 };
            (w.window_end.0 + delay, w.symbol.to_string())
        });
        decide(v)
    };
    assert!(!file_order.is_empty());
    let text = |v: &[Vec<u8>]| v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>();
    let (a, b) = (text(&file_order), text(&skewed));
    let first_difference = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a.len() == b.len() && first_difference.is_none(),
        "{} vs {} intents; first difference at {first_difference:?}",
        a.len(),
        b.len()
    );
}

#[test]
fn bad_exec_reports_are_counted_and_never_move_positions() {
    let cfg = trading();
    let mut s = StrategyEngine::new(&cfg, source("s"), ManualClock::new(UnixNanos(2)));
    let btc = Symbol::new("BTCUSDT").unwrap();
    let report = |qty: Decimal, exec_id: &str| Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: common::types::EventId(uuid::Uuid::from_u128(9)),
        source: source("order-plane"),
        ts_event: UnixNanos(1),
        ts_init: UnixNanos(1),
        causation_id: None,
        payload: ExecEvent::Report(ExecReport {
            intent_id: IntentId(uuid::Uuid::from_u128(12345)),
            order_id: "SIM-x".into(),
            symbol: btc.clone(),
            side: common::types::Side::Buy,
            status: ExecStatus::Filled,
            reason: None,
            detail: None,
            venue: "simulated".into(),
            order_qty: qty,
            exec_id: Some(exec_id.into()),
            last_px: Some(Decimal::from(60_000)),
            last_qty: qty,
            cum_qty: qty,
            avg_px: Some(Decimal::from(60_000)),
            leaves_qty: Decimal::ZERO,
            commission: Decimal::ZERO,
            cum_commission: Decimal::ZERO,
            arrival_mid: Decimal::from(60_000),
            slippage_bps: None,
            venue_mid: None,
        }),
    };
    s.on_exec(&report(Decimal::from(-3), "neg"), true, &mut Vec::new());
    assert_eq!(s.counters().unknown_intent, 1, "a report for an intent this plane never issued");
    assert!(s.book().position(&btc).qty.is_zero(), "a negative fill quantity moves nothing");
    // A fill the plane did not ask for still happened: positions follow the ledger.
    s.on_exec(&report(Decimal::ONE, "real"), true, &mut Vec::new());
    s.on_exec(&report(Decimal::ONE, "real"), true, &mut Vec::new());
    assert_eq!(s.book().position(&btc).qty, Decimal::ONE, "counted once");
    // Market data for an unknown symbol is counted, not used.
    let quote = Quote {
        symbol: Symbol::new("DOGEUSDT").unwrap(),
        bid_px: common::types::Price::new(Decimal::ONE).unwrap(),
        bid_sz: common::types::Quantity::new(Decimal::ONE).unwrap(),
        ask_px: common::types::Price::new(Decimal::TWO).unwrap(),
        ask_sz: common::types::Quantity::new(Decimal::ONE).unwrap(),
    };
    let env = Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: common::types::EventId(uuid::Uuid::from_u128(10)),
        source: source("data-plane"),
        ts_event: UnixNanos(1),
        ts_init: UnixNanos(1),
        causation_id: None,
        payload: MarketEvent::Quote(quote),
    };
    s.on_market(&env);
    assert_eq!(s.counters().unknown_symbol, 1);
}

/// Every position counts in the limits, one the strategy cannot trade too: 990 of ZZZ bought at
/// 1,000 (an instrument no longer configured, held where it is) take 990,000 of the 1,000,000
/// gross, so what the sample's two symbols hold together stays within the 10,000 left; and
/// they are beyond the 500,000 net limit alone, so the others may only offset them (be short).
/// Before, only the symbols ready to trade counted, and they were sized to the whole limit.
#[test]
fn a_position_the_strategy_cannot_trade_still_counts_in_its_limits() {
    let cfg = trading();
    let mut cores = Cores::new(&cfg);
    let held = ExecReport {
        intent_id: IntentId(uuid::Uuid::from_u128(1)),
        order_id: "SIM-old".into(),
        symbol: Symbol::new("ZZZ").unwrap(),
        side: common::types::Side::Buy,
        status: ExecStatus::Filled,
        reason: None,
        detail: None,
        venue: "simulated".into(),
        order_qty: Decimal::from(990),
        exec_id: Some("SIM-old-1".into()),
        last_px: Some(Decimal::from(1000)),
        last_qty: Decimal::from(990),
        cum_qty: Decimal::from(990),
        avg_px: Some(Decimal::from(1000)),
        leaves_qty: Decimal::ZERO,
        commission: Decimal::ZERO,
        cum_commission: Decimal::ZERO,
        arrival_mid: Decimal::from(1000),
        slippage_bps: None,
        venue_mid: None,
    };
    let env = Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: common::types::EventId(uuid::Uuid::from_u128(2)),
        source: source("order-plane"),
        ts_event: UnixNanos(1),
        ts_init: UnixNanos(1),
        causation_id: None,
        payload: ExecEvent::Report(held),
    };
    cores.strategy.on_exec(&env, false, &mut Vec::new());
    cores.feed(&mut data_outputs(SPOT, &cfg));
    // Each decision's book as it asked for it: the fills of the decisions before, plus its own
    // intents, filled in full, valued at the decision's mids. (An IOC reduction that fills only
    // in part can leave the book beyond that for a moment; the Order Plane's risk is the guard.)
    let mut filled: HashMap<IntentId, Decimal> = HashMap::new();
    for r in &cores.reports {
        *filled.entry(r.intent_id).or_default() += r.side.sign() * r.last_qty;
    }
    let (mut held, mut mids): (HashMap<Symbol, Decimal>, HashMap<Symbol, Decimal>) = Default::default();
    let (mut most, mut longest) = (Decimal::ZERO, Decimal::MIN);
    for decision in cores.intents.chunk_by(|a, b| a.ts_event == b.ts_event) {
        let mut asked = held.clone();
        for env in decision {
            let IntentEvent::Intent(i) = &env.payload else { continue };
            *asked.entry(i.symbol.clone()).or_default() += i.side.sign() * i.quantity;
            mids.insert(i.symbol.clone(), i.arrival_mid);
            *held.entry(i.symbol.clone()).or_default() += filled.get(&i.intent_id).copied().unwrap_or_default();
        }
        let gross: Decimal = asked.iter().map(|(s, q)| (q * mids[s]).abs()).sum();
        let net: Decimal = asked.iter().map(|(s, q)| q * mids[s]).sum();
        (most, longest) = (most.max(gross), longest.max(net));
    }
    println!("{} intents; the two symbols asked for at most {most} gross, {longest} net", cores.intents.len());
    assert!(cores.intents.len() > 10, "{} intents", cores.intents.len());
    // The mids of a symbol's latest intent value it: 1 % of margin.
    assert!(most <= Decimal::from(10_100), "gross {most}");
    assert!(longest <= Decimal::from(100), "net {longest}");
    assert!(longest <= Decimal::from(100), "net {longest}");
}
