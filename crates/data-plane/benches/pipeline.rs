//! Data Plane core benchmark: replay parse → quality → OFI → envelope → JSON encode, on one core,
//! before Kafka. Prints events/s per stage (median of several runs).
//!
//! `cargo bench -p data-plane --bench pipeline` (env `BENCH_PASSES` = how many times the spot
//! sample is looped; default 10, ≈ 1M rows).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::clock::SystemClock;
use common::codec;
use common::config::DataPlaneConfig;
use common::events::{MarketEvent, Source};
use data_plane::core::{DataCore, Output};
use data_plane::source::{RawEvent, Replay};

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(stage: &str, events: usize, secs: Vec<f64>) {
    let s = median(secs);
    println!("{stage:<44} {:>12.0} events/s {:>9.1} ns/event", events as f64 / s, s * 1e9 / events as f64);
}

fn core() -> DataCore<SystemClock> {
    let source = Arc::new(Source { plane: "data-plane".into(), instance: "bench".into() });
    DataCore::new(&DataPlaneConfig::default(), "replay:bench", source, SystemClock)
}

fn main() {
    let passes: u32 = std::env::var("BENCH_PASSES").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/binance-spot-btcusdt-ethusdt-2024-08-09.csv");
    let events: Vec<RawEvent> = Replay::open(&path, passes).unwrap().map(|r| r.unwrap()).collect();
    let n = events.len();
    let quotes = events.iter().filter(|e| matches!(e.body, data_plane::source::RawBody::Quote { .. })).count();
    println!("input: {n} rows ({quotes} quotes) = spot sample x{passes}, {RUNS} runs each, median");

    let parse: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let count = Replay::open(&path, passes).unwrap().filter(|r| r.is_ok()).count();
            black_box(count);
            t.elapsed().as_secs_f64()
        })
        .collect();
    report("parse CSV", n, parse);

    let mut out = Vec::with_capacity(16);
    let core_only: Vec<f64> = (0..RUNS)
        .map(|_| {
            let mut c = core();
            let t = Instant::now();
            for e in events.iter().cloned() {
                c.process(e, &mut out);
                black_box(&out);
                out.clear();
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    report("quality + OFI + envelope", n, core_only);

    let no_encode: Vec<f64> = (0..RUNS)
        .map(|_| {
            let mut c = core();
            let t = Instant::now();
            for e in Replay::open(&path, passes).unwrap().flatten() {
                c.process(e, &mut out);
                black_box(&out);
                out.clear();
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    report("parse + quality + OFI + envelope (no encode)", n, no_encode);

    let mut buf = Vec::with_capacity(1 << 16);
    let mut encoded: Vec<Vec<u8>> = Vec::new();
    let full: Vec<f64> = (0..RUNS)
        .map(|_| {
            let mut c = core();
            let t = Instant::now();
            for item in Replay::open(&path, passes).unwrap() {
                let Ok(e) = item else { continue };
                c.process(e, &mut out);
                for o in out.drain(..) {
                    buf.clear();
                    match o {
                        Output::Market(env) => codec::encode_into(&env, &mut buf),
                        Output::Ofi(env) => codec::encode_into(&env, &mut buf),
                        Output::Rejected { .. } => {}
                    }
                    black_box(&buf);
                }
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    report("parse + quality + OFI + encode (whole path)", n, full);

    let mut c = core();
    for e in events.iter().take(200_000).cloned() {
        c.process(e, &mut out);
        for o in out.drain(..) {
            if let Output::Market(env) = o {
                encoded.push(codec::encode(&env));
            }
        }
    }
    let envelopes: Vec<_> = encoded.iter().map(|b| codec::decode::<MarketEvent>(b).unwrap()).collect();
    let encode: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for env in &envelopes {
                buf.clear();
                codec::encode_into(env, &mut buf);
                black_box(&buf);
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    report("encode market_events", envelopes.len(), encode);

    let decode: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for bytes in &encoded {
                black_box(codec::decode::<MarketEvent>(bytes).unwrap());
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    report("decode market_events (strict)", encoded.len(), decode);
}
