//! The whole backtest on one core — parse → quality checks → OFI → signals → optimizer → risk →
//! simulated venue → report data — over the spot sample looped to about one million events, and
//! to ten million to show that memory stays flat as the input grows. Prints events/s (wall and
//! CPU time) and the peak resident memory after each size.
//!
//! `cargo bench -p backtest --bench throughput` (the `bench` profile, as the release binary is
//! built); `cargo bench -p backtest --bench throughput --profile backtest` for the LTO build.
//! Env `BENCH_PASSES` (default `10,100`): the sizes, in passes of the 98,371-row sample.
//! Each run writes what the binary writes by default (the tables as the run goes,
//! then the page and the report) into a temporary folder, removed after it: the rows of the
//! tables are only ever held on their way to the files, so the files are part of the run.

#![allow(clippy::unwrap_used)] // benchmark code: a panic is the failure report

use std::path::Path;
use std::time::Instant;

use backtest::output;
use common::config::AppConfig;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const RUNS: usize = 5;

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name is in parentheses and may hold spaces: fields are counted after it.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Peak resident memory of this process so far, MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let sizes: Vec<u32> = std::env::var("BENCH_PASSES")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let mut cfg = AppConfig::default();
    cfg.data_plane.replay.path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/binance-spot-btcusdt-ethusdt-2024-08-09.csv");
    // The samples' forecasts never pay the shipped fees: left weighed, nothing would trade and the
    // optimizer, risk and the venue's fills would go unmeasured.
    cfg.strategy_plane.cost_aversion = 0.0;
    println!("backtest throughput: spot sample, cost_aversion 0, {RUNS} runs per size (1 beyond 1M rows), median");
    for passes in sizes {
        cfg.data_plane.replay.loop_count = passes;
        let runs = if passes <= 10 { RUNS } else { 1 };
        let (mut wall, mut cpu, mut rows, mut net) = (Vec::new(), Vec::new(), 0, None);
        for _ in 0..runs {
            let out = tempfile::tempdir().unwrap();
            let (t, c) = (Instant::now(), cpu_seconds());
            output::prepare(out.path()).unwrap();
            let (outcome, _) = output::run_into(&cfg, out.path(), output::Options::default(), &mut |_| {}).unwrap();
            wall.push(t.elapsed().as_secs_f64());
            cpu.push(cpu_seconds() - c);
            rows = outcome.report.input.rows;
            let this = outcome.report.pnl.net.clone();
            assert!(net.as_ref().is_none_or(|n| *n == this), "a run's figures moved between runs");
            net = Some(this);
        }
        let (wall, cpu) = (median(wall), median(cpu));
        println!(
            "{rows:>11} rows: {:>9.0} events/s wall ({wall:.2} s), {:>9.0} events/s CPU ({cpu:.2} s), {:>6.0} ns/event CPU; peak RSS so far {:.1} MiB; net PnL {}",
            rows as f64 / wall,
            rows as f64 / cpu,
            cpu * 1e9 / rows as f64,
            peak_rss_mib(),
            net.unwrap_or_default(),
        );
    }
}
