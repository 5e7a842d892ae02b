//! Plane tests on the real sample data, through the core, with no broker.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::clock::ManualClock;
use common::config::DataPlaneConfig;
use common::events::{MarketEvent, OfiEvent, OfiWindow, Source};
use common::types::UnixNanos;
use data_plane::core::{DataCore, Output};
use data_plane::source::Replay;
use rust_decimal::prelude::ToPrimitive;

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(file)
}

const SPOT: &str = "binance-spot-btcusdt-ethusdt-2024-08-09.csv";
const USDM: &str = "binance-usdm-btcusdt-2024-08-08.csv";

#[derive(Default)]
struct Run {
    quotes: BTreeMap<String, u64>,
    trades: BTreeMap<String, u64>,
    rejected: BTreeMap<&'static str, u64>,
    malformed: u64,
    windows: Vec<OfiWindow>,
    outputs: Vec<Output>,
}

fn replay(path: &Path) -> Run {
    replay_passes(path, 1)
}

fn replay_passes(path: &Path, passes: u32) -> Run {
    let cfg = DataPlaneConfig::default();
    let source = Arc::new(Source { plane: "data-plane".into(), instance: "test".into() });
    let mut core = DataCore::new(&cfg, "replay:test", source, ManualClock::new(UnixNanos(1)));
    let mut run = Run::default();
    let mut out = Vec::new();
    for item in Replay::open(path, passes).unwrap() {
        match item {
            Ok(ev) => core.process(ev, &mut out),
            Err(_) => run.malformed += 1,
        }
    }
    core.finish(&mut out);
    for o in &out {
        match o {
            Output::Market(e) => match &e.payload {
                MarketEvent::Quote(q) => *run.quotes.entry(q.symbol.to_string()).or_default() += 1,
                MarketEvent::Trade(t) => *run.trades.entry(t.symbol.to_string()).or_default() += 1,
                _ => {}
            },
            Output::Ofi(e) => {
                let OfiEvent::Window(w) = &e.payload;
                run.windows.push(w.clone());
            }
            Output::Rejected { reason, .. } => *run.rejected.entry(reason.as_str()).or_default() += 1,
        }
    }
    run.outputs = out;
    run
}

/// R² of the OLS fit y = a + b·x.
fn r_squared(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    (sxy * sxy / (sxx * syy), sxy / sxx)
}

fn fit(windows: &[OfiWindow], symbol: &str) -> (f64, f64, usize) {
    let w: Vec<&OfiWindow> = windows.iter().filter(|w| w.symbol.as_str() == symbol).collect();
    let x: Vec<f64> = w.iter().map(|w| w.ofi.to_f64().unwrap()).collect();
    let y: Vec<f64> = w.iter().map(|w| w.mid_change.to_f64().unwrap() / 0.01).collect();
    let (r2, slope) = r_squared(&x, &y);
    (r2, slope, w.len())
}

#[test]
fn spot_file_replays_completely_and_reproduces_the_published_ofi_fit() {
    let run = replay(&data(SPOT));
    assert_eq!(run.malformed, 0);
    let quotes: u64 = run.quotes.values().sum();
    let trades: u64 = run.trades.values().sum();
    let rejected: u64 = run.rejected.values().sum();
    // data/README.md: 79,815 quotes and 18,556 trades; each is published or rejected with a reason.
    assert_eq!(quotes + trades + rejected, 79_815 + 18_556, "rejections: {:?}", run.rejected);
    assert!(rejected < 10, "real exchange data should pass the checks: {:?}", run.rejected);

    let (r2, slope, n) = fit(&run.windows, "BTCUSDT");
    println!("spot BTCUSDT: {n} windows, R² = {r2:.3}, slope = {slope:.3} ticks per unit OFI");
    assert!((0.7..=0.8).contains(&r2), "R² {r2}");
    assert!(slope > 0.0);
    assert!(n > 250 && n <= 305, "one window per second with quotes over ~5 minutes: {n}");
    let (r2_eth, _, _) = fit(&run.windows, "ETHUSDT");
    println!("spot ETHUSDT: R² = {r2_eth:.3}");
    assert!(r2_eth > 0.3);
}

#[test]
fn usdm_file_reproduces_the_published_ofi_fit() {
    let run = replay(&data(USDM));
    let (r2, slope, n) = fit(&run.windows, "BTCUSDT");
    println!("usdm BTCUSDT: {n} windows, R² = {r2:.3}, slope = {slope:.3}; rejections {:?}", run.rejected);
    assert!((0.3..=0.5).contains(&r2), "R² {r2}");
    assert!(slope > 0.0);
}

#[test]
fn windows_partition_the_quotes_and_mids_chain() {
    let run = replay(&data(SPOT));
    for symbol in ["BTCUSDT", "ETHUSDT"] {
        let w: Vec<&OfiWindow> = run.windows.iter().filter(|w| w.symbol.as_str() == symbol).collect();
        let n_quotes: u64 = w.iter().map(|w| u64::from(w.n_quotes)).sum();
        assert_eq!(n_quotes, run.quotes[symbol], "every accepted quote is in exactly one window");
        for pair in w.windows(2) {
            assert!(pair[0].window_end <= pair[1].window_start);
            assert_eq!(pair[1].mid_open, pair[0].mid_close, "a window opens where the last one closed");
        }
    }
}

#[test]
fn replay_is_deterministic() {
    let a = replay(&data(USDM));
    let b = replay(&data(USDM));
    assert_eq!(a.outputs, b.outputs);
}

#[test]
fn parquet_sample_replays_to_the_same_events_as_its_csv() {
    let csv = replay(&data(USDM));
    let parquet = replay(&data("parquet/binance-usdm-btcusdt-2024-08-08.parquet"));
    assert_eq!(csv.windows, parquet.windows);
    assert_eq!((csv.quotes, csv.trades), (parquet.quotes, parquet.trades));
}

#[test]
fn each_looped_pass_yields_a_clean_runs_windows() {
    let once = replay(&data(USDM));
    let twice = replay_passes(&data(USDM), 2);
    assert!(twice.rejected.is_empty(), "{:?}", twice.rejected);
    assert_eq!(twice.windows.len(), 2 * once.windows.len());
    let (first, second) = twice.windows.split_at(once.windows.len());
    assert_eq!(first, &once.windows[..]);
    let shift = second[0].window_start.0 - first[0].window_start.0;
    for (a, b) in first.iter().zip(second) {
        assert_eq!((a.ofi, a.n_quotes, a.mid_change), (b.ofi, b.n_quotes, b.mid_change));
        assert_eq!(b.window_start.0 - a.window_start.0, shift);
    }
}

/// The spot sample as a millisecond feed delivers it (Bitstamp's, say): timestamps cut to the
/// millisecond, so a book can go A → B → A within one timestamp, and one order's fills print as
/// equal trades. Only a quote that repeats the symbol's previous event exactly is a duplicate;
/// after every row the checked stream's book is the feed's book, every trade is kept, and no real
/// quote is refused as a price jump. (Refusing any event equal to an earlier one at the same time left the book at B
/// while the market was at A.)
#[test]
fn a_millisecond_feed_keeps_the_book_true_through_same_timestamp_revisits() {
    use data_plane::quality::{Accepted, QualityChecker, Rejection};
    use data_plane::source::RawBody;
    let mut checker = QualityChecker::new(common::config::QualityConfig::default());
    let (mut feed, mut ours) = (BTreeMap::new(), BTreeMap::new());
    // Per symbol: the bodies seen at the current millisecond, to count the revisits.
    let mut at_ms: BTreeMap<String, (u64, Vec<RawBody>)> = BTreeMap::new();
    let (mut revisits, mut duplicates, mut other) = (0u32, 0u32, BTreeMap::new());
    let (mut trades, mut trades_kept) = (0u32, 0u32);
    for item in Replay::open(&data(SPOT), 1).unwrap() {
        let mut ev = item.unwrap();
        ev.ts = UnixNanos(ev.ts.0 / 1_000_000 * 1_000_000);
        let symbol = ev.symbol.as_str().to_owned();
        let (ms, seen) = at_ms.entry(symbol.clone()).or_default();
        if *ms != ev.ts.0 {
            (*ms, *seen) = (ev.ts.0, Vec::new());
        }
        if seen.last() != Some(&ev.body) && seen.contains(&ev.body) {
            revisits += 1;
        }
        seen.push(ev.body);
        let quote = matches!(ev.body, RawBody::Quote { .. });
        if quote {
            feed.insert(symbol.clone(), ev.body);
        } else {
            trades += 1;
        }
        match checker.check(&ev).verdict {
            Ok(Accepted::Quote(_)) => {
                ours.insert(symbol.clone(), ev.body);
            }
            Ok(Accepted::Trade(_)) => trades_kept += 1,
            Err(Rejection::Duplicate) => duplicates += 1,
            Err(r) => *other.entry(r.as_str()).or_insert(0u32) += 1,
        }
        if other.is_empty() && quote {
            assert_eq!(ours.get(&symbol), feed.get(&symbol), "the book left the market at {}", ev.ts.0);
        }
    }
    println!(
        "millisecond spot feed: {revisits} same-timestamp revisits kept, {duplicates} repeated quotes dropped, {trades_kept} of {trades} trades kept"
    );
    // 2,884 of them repeat the trade before in the same millisecond: each is a trade of its own.
    assert_eq!(trades_kept, trades, "every trade is kept");
    assert!(other.is_empty(), "the real feed passes every other check: {other:?}");
    assert!(revisits > 100, "the cut feed must revisit states within a millisecond: {revisits}");
}
