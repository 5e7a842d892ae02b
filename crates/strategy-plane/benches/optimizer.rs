//! Optimizer solve time for 2, 10 and 50 symbols (median of 200 solves each).
//! `cargo bench -p strategy-plane --bench optimizer`

use std::hint::black_box;
use std::time::Instant;

use strategy_plane::optimizer::{Asset, Problem, optimize};

/// SplitMix64, so every run solves the same problems.
fn rng(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A one-factor covariance (market beta plus idiosyncratic variance) and random views.
fn problem(n: usize, seed: u64) -> Problem {
    let mut s = seed;
    let betas: Vec<f64> = (0..n).map(|_| 0.5 + rng(&mut s)).collect();
    let idio: Vec<f64> = (0..n).map(|_| (0.5 + rng(&mut s)) * 1e-8).collect();
    let market = 1e-8;
    let covariance = (0..n)
        .map(|i| (0..n).map(|j| betas[i] * betas[j] * market + if i == j { idio[i] } else { 0.0 }).collect())
        .collect();
    let assets = (0..n)
        .map(|_| Asset {
            mu: (rng(&mut s) - 0.5) * 2e-4,
            cost: 2e-5 * rng(&mut s),
            impact: 1e-9 * rng(&mut s),
            current: (rng(&mut s) - 0.5) * 20_000.0,
            max_position: 100_000.0,
            ..Asset::default()
        })
        .collect();
    Problem { assets, covariance, risk_aversion: 1e-4, max_gross: 1_000_000.0, max_net: 500_000.0 }
}

fn main() {
    for n in [2usize, 10, 50] {
        let problems: Vec<Problem> = (0..200).map(|k| problem(n, k as u64 + 1)).collect();
        let mut times: Vec<f64> = problems
            .iter()
            .map(|p| {
                let t = Instant::now();
                black_box(optimize(p).expect("solvable"));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "optimizer {n:>2} symbols: median {:>8.1} µs, p99 {:>8.1} µs (200 solves)",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
}
