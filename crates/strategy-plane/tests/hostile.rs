//! Hostile records through the engines, not only the decoder: real records of every topic (from
//! the cores run on the spot sample) with one field at a time replaced by a value an attacker or
//! a broken producer could write, decoded as a plane decodes them, and fed to every core entry
//! that would see them: the Strategy core live, at its restart and at a partition takeover, the
//! Order core live and at its restart. A panic anywhere fails with the record that caused it.
//! Deterministic (a fixed seed), so a failure reproduces.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::clock::ManualClock;
use common::codec;
use common::events::*;
use common::types::UnixNanos;
use data_plane::core::Output;
use order_plane::engine::OrderEngine;
use order_plane::simulated::{SimulatedConfig, SimulatedVenue};
use serde_json::Value;

mod support;
use support::{Cores, SPOT, data_outputs, source, trading};

/// SplitMix64: reproducible choices.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values for a decimal string, a number or a name: bounds, their neighbours, and nonsense.
fn hostile(rng: &mut Rng) -> Value {
    let strings = [
        "0",
        "-0",
        "-1",
        "1e20",
        "100000000000000000000",
        "999999999999",
        "1000000000000",
        "-1000000000000",
        "0.0000000000000000000000000001",
        "79228162514264337593543950335",
        "-79228162514264337593543950335",
        "NaN",
        "",
        "ZZZCHAOS",
        "BTCUSDT",
        "ETHUSDT",
        "filled",
        "rejected",
        "buy",
    ];
    let numbers = [
        Value::from(0),
        Value::from(-1),
        Value::from(u64::MAX),
        Value::from(i64::MIN),
        Value::from(u32::MAX),
        Value::from(1e300),
        Value::from(0.5),
        Value::Null,
        Value::Bool(true),
    ];
    match rng.below(4) {
        0 | 1 => Value::from(strings[rng.below(strings.len())]),
        2 => numbers[rng.below(numbers.len())].clone(),
        _ => Value::from("7".repeat(1 + rng.below(40))),
    }
}

/// Every leaf of `v`, as JSON pointers.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| leaves(c, format!("{at}/{k}"), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| leaves(c, format!("{at}/{i}"), out)),
        _ => out.push(at),
    }
}

fn order_engine(cfg: &common::config::AppConfig) -> OrderEngine<SimulatedVenue, ManualClock> {
    let ticks = cfg.instruments.iter().map(|i| (common::types::Symbol::new(&i.symbol).unwrap(), i.tick_size)).collect();
    let venue = SimulatedVenue::new(SimulatedConfig::new(&cfg.order_plane, ticks));
    OrderEngine::new(&cfg.risk, &cfg.order_plane, &cfg.instruments, venue, source("o"), ManualClock::new(UnixNanos(3)))
}

#[test]
fn mutated_records_of_every_topic_never_panic_an_engine() {
    let cfg = trading();
    // Real records of the four topics, and cores that have traded on them.
    let mut outputs = data_outputs(SPOT, &cfg);
    outputs.truncate(40_000);
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    for o in &outputs {
        match o {
            Output::Market(env) => seeds.push(("market", codec::encode(env))),
            Output::Ofi(env) => seeds.push(("ofi", codec::encode(env))),
            Output::Rejected { .. } => {}
        }
    }
    let mut cores = Cores::new(&cfg);
    cores.feed(&mut outputs);
    seeds.extend(cores.intents.iter().map(|env| ("intent", codec::encode(env))));
    assert!(!cores.intents.is_empty() && !cores.reports.is_empty(), "the seeds hold trades");
    // The Order core's records (reports, fills among them, cost models), as the ledger holds
    // them: its intents replayed on a fresh core with the market data before them.
    let mut exec_seeds = Vec::new();
    let mut fills = Vec::new();
    let mut replay = order_engine(&cfg);
    for o in data_outputs(SPOT, &cfg).into_iter().take(40_000) {
        if let Output::Market(env) = o {
            replay.on_market(&env, &mut fills);
        }
        if fills.len() > 50 {
            break;
        }
    }
    for env in cores.intents.iter().take(200) {
        replay.on_intent(env, &mut fills);
    }
    exec_seeds.extend(fills.iter().map(codec::encode));
    seeds.extend(exec_seeds.into_iter().map(|b| ("exec", b)));
    // Each topic as often as the others, whatever its number of seeds.
    let topics = ["market", "ofi", "intent", "exec"];
    let by_topic: Vec<Vec<&Vec<u8>>> =
        topics.iter().map(|t| seeds.iter().filter(|(s, _)| s == t).map(|(_, b)| b).collect()).collect();
    println!("seed records per topic: {:?}", by_topic.iter().map(Vec::len).collect::<Vec<_>>());

    let mut restoring = order_engine(&cfg);
    let mut rng = Rng(20_261_207);
    let (mut decoded, mut refused) = (0u64, 0u64);
    for case in 0..30_000 {
        let t = rng.below(topics.len());
        let (topic, bytes) = (&topics[t], by_topic[t][rng.below(by_topic[t].len())]);
        let mut json: Value = serde_json::from_slice(bytes).unwrap();
        let mut points = Vec::new();
        leaves(&json, String::new(), &mut points);
        for _ in 0..1 + rng.below(3) {
            let at = &points[rng.below(points.len())];
            *json.pointer_mut(at).unwrap() = hostile(&mut rng);
        }
        let bytes = serde_json::to_vec(&json).unwrap();
        let fed = catch_unwind(AssertUnwindSafe(|| match *topic {
            "market" => codec::decode::<MarketEvent>(&bytes).map(|env| {
                let mut exec = Vec::new();
                cores.strategy.on_market(&env);
                cores.order.on_market(&env, &mut exec);
                cores.settle(Vec::new(), exec);
            }),
            "ofi" => codec::decode::<OfiEvent>(&bytes).map(|env| {
                let mut intents = Vec::new();
                cores.strategy.warm(&env);
                cores.strategy.on_ofi(&env, &mut intents);
                cores.settle(intents, Vec::new());
            }),
            "intent" => codec::decode::<IntentEvent>(&bytes).map(|env| cores.settle(vec![env], Vec::new())),
            _ => codec::decode::<ExecEvent>(&bytes).map(|env| {
                let mut intents = Vec::new();
                cores.strategy.on_exec(&env, false, &mut intents);
                cores.strategy.on_exec(&env, true, &mut intents);
                cores.strategy.take_over(std::slice::from_ref(&env));
                restoring.restore(&env);
                cores.settle(intents, Vec::new());
            }),
        }));
        match fed {
            Ok(Ok(())) => decoded += 1,
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("case {case}: a {topic} record panicked an engine: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    let mut out = Vec::new();
    restoring.finish_restore(UnixNanos(u64::MAX / 2), &mut out);
    println!("{decoded} mutated records decoded and fed to the engines, {refused} refused by the decoder");
    // Most replacements break a type the decoder checks; thousands still reach the engines.
    assert!(decoded > 2_000 && refused > 2_000, "{decoded} decoded, {refused} refused");
}
