//! The portfolio problem, solved with Clarabel (an interior-point QP solver):
//!
//! maximize   μᵀw − γ·wᵀΣw − cᵀ|w − w₀| − Σ κᵢ·|wᵢ − w₀ᵢ|^{3/2}
//! subject to Σ|wᵢ| ≤ G (gross), |Σwᵢ| ≤ N (net), |wᵢ| ≤ Pᵢ (per position)
//!
//! `w` are target positions in account currency, `μ` expected returns over the decision horizon
//! (fractions), `Σ` their covariance, `c` the expected trading cost per unit traded that does not
//! depend on the size (fees, half spread: a fraction of notional), `κ` the square-root impact
//! (its cost grows as the traded notional to the power 3/2), `w₀` current positions. The absolute
//! values become auxiliary variables `t ≥ |w|` and `s ≥ |w − w₀|`, and the impact one more,
//! `u ≥ s^{3/2}`, held by a power cone `(u, 1, s) ∈ K_{2/3}`: the problem stays convex (Boyd et
//! al. 2017, "Multi-period trading via convex optimization", §3). Money is scaled by `G` inside,
//! so the solver sees numbers near 1 whatever the account size.

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettings, DefaultSolver, IPSolver, NonnegativeConeT, PowerConeT, SolverStatus};

/// What the optimizer may do with an asset's position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Trading {
    /// Anything within the limits.
    #[default]
    Free,
    /// Only toward zero: between 0 and the current position (a symbol whose model is not ready).
    ReduceOnly,
    /// Nothing: the position stays, and counts in the gross and net limits (a symbol without a
    /// fresh quote).
    Held,
}

/// One asset's inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Asset {
    /// Expected return over the horizon (fraction).
    pub mu: f64,
    /// Expected trading cost per unit of notional traded, whatever the size (fraction).
    pub cost: f64,
    /// Square-root impact: trading notional `d` costs `impact · d^{3/2}` (account currency^{-1/2}).
    pub impact: f64,
    /// Current position, account currency (signed).
    pub current: f64,
    /// Largest absolute position, account currency.
    pub max_position: f64,
    /// What may be traded.
    pub trading: Trading,
}

/// The problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Assets, in the order of `covariance`'s rows.
    pub assets: Vec<Asset>,
    /// Return covariance (n × n, symmetric, positive semi-definite).
    pub covariance: Vec<Vec<f64>>,
    /// Risk aversion γ (per unit of account currency).
    pub risk_aversion: f64,
    /// Gross limit G.
    pub max_gross: f64,
    /// Net limit N.
    pub max_net: f64,
}

impl Problem {
    /// The objective at positions `w` (account currency), as [`optimize`] maximizes it.
    pub fn objective(&self, w: &[f64]) -> f64 {
        let mut value = 0.0;
        for (i, a) in self.assets.iter().enumerate() {
            let traded = (w[i] - a.current).abs();
            value += a.mu * w[i] - a.cost * traded - a.impact * traded.powf(1.5);
            for (j, wj) in w.iter().enumerate() {
                value -= self.risk_aversion * w[i] * self.covariance[i][j] * wj;
            }
        }
        value
    }

    /// Whether positions `w` are within the gross and net limits (to a relative 1e-6: the solver's
    /// answers are that close).
    pub fn within_limits(&self, w: &[f64]) -> bool {
        let slack = 1e-6 * self.max_gross;
        let gross: f64 = w.iter().map(|x| x.abs()).sum();
        gross <= self.max_gross + slack && w.iter().sum::<f64>().abs() <= self.max_net + slack
    }

    /// What trading `traded` (account currency, signed) of asset `i` adds to the objective, the
    /// other assets at `w`.
    pub fn gain(&self, w: &[f64], i: usize, traded: f64) -> f64 {
        let mut with = w.to_vec();
        with[i] = self.assets[i].current + traded;
        let mut without = w.to_vec();
        without[i] = self.assets[i].current;
        self.objective(&with) - self.objective(&without)
    }
}

/// Why no portfolio came out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimizeError {
    /// Inputs of the wrong shape or not finite.
    #[error("invalid problem: {0}")]
    Invalid(&'static str),
    /// The solver did not reach an optimum.
    #[error("solver stopped: {0}")]
    Solver(String),
}

/// Solves the problem; returns target positions in account currency.
pub fn optimize(p: &Problem) -> Result<Vec<f64>, OptimizeError> {
    let n = p.assets.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.covariance.len() != n || p.covariance.iter().any(|r| r.len() != n) {
        return Err(OptimizeError::Invalid("covariance must be n × n"));
    }
    let finite =
        p.assets.iter().all(|a| [a.mu, a.cost, a.impact, a.current, a.max_position].iter().all(|v| v.is_finite()))
            && p.covariance.iter().flatten().all(|v| v.is_finite())
            && [p.risk_aversion, p.max_gross, p.max_net].iter().all(|v| v.is_finite());
    if !finite {
        return Err(OptimizeError::Invalid("non-finite input"));
    }
    if p.max_gross <= 0.0
        || p.max_net < 0.0
        || p.risk_aversion <= 0.0
        || p.assets.iter().any(|a| a.max_position < 0.0 || a.cost < 0.0 || a.impact < 0.0)
    {
        return Err(OptimizeError::Invalid("limits, risk aversion and costs must be positive"));
    }
    let scale = p.max_gross;
    // Variables x = [w (n), t (n), s (n), u (one per asset with impact)], money in units of G.
    let impacted: Vec<usize> = (0..n).filter(|&i| p.assets[i].impact > 0.0).collect();
    let nv = 3 * n + impacted.len();
    let (w, t, s, u) = (0, n, 2 * n, 3 * n);

    // P = 2γG²Σ on the w block, upper triangle, column by column.
    let mut colptr = vec![0usize];
    let (mut rowval, mut nzval) = (Vec::new(), Vec::new());
    for j in 0..nv {
        if j < n {
            for i in 0..=j {
                let v = 2.0 * p.risk_aversion * scale * scale * p.covariance[i][j];
                if v != 0.0 {
                    rowval.push(i);
                    nzval.push(v);
                }
            }
        }
        colptr.push(rowval.len());
    }
    let pm = CscMatrix::new(nv, nv, colptr, rowval, nzval);

    let mut q = vec![0.0; nv];
    for (i, a) in p.assets.iter().enumerate() {
        q[w + i] = -a.mu * scale;
        q[s + i] = a.cost * scale;
    }
    for (k, &i) in impacted.iter().enumerate() {
        q[u + k] = p.assets[i].impact * scale.powf(1.5);
    }

    // Rows of A x ≤ b, built densely by row (the problem is small), then converted.
    let mut rows: Vec<(Vec<(usize, f64)>, f64)> = Vec::new();
    for (i, a) in p.assets.iter().enumerate() {
        rows.push((vec![(w + i, 1.0), (t + i, -1.0)], 0.0));
        rows.push((vec![(w + i, -1.0), (t + i, -1.0)], 0.0));
        rows.push((vec![(t + i, 1.0)], a.max_position / scale));
        rows.push((vec![(w + i, 1.0), (s + i, -1.0)], a.current / scale));
        rows.push((vec![(w + i, -1.0), (s + i, -1.0)], -a.current / scale));
        let (low, high) = match a.trading {
            Trading::Free => continue,
            Trading::ReduceOnly => (a.current.min(0.0), a.current.max(0.0)),
            Trading::Held => (a.current, a.current),
        };
        rows.push((vec![(w + i, 1.0)], high / scale));
        rows.push((vec![(w + i, -1.0)], -low / scale));
    }
    rows.push(((0..n).map(|i| (t + i, 1.0)).collect(), 1.0));
    rows.push(((0..n).map(|i| (w + i, 1.0)).collect(), p.max_net / scale));
    rows.push(((0..n).map(|i| (w + i, -1.0)).collect(), p.max_net / scale));
    let m = rows.len();
    // Each impacted asset's power cone: the slack b − A·x is (u, 1, s).
    for (k, &i) in impacted.iter().enumerate() {
        rows.push((vec![(u + k, -1.0)], 0.0));
        rows.push((vec![], 1.0));
        rows.push((vec![(s + i, -1.0)], 0.0));
    }
    let mut columns: Vec<Vec<(usize, f64)>> = vec![Vec::new(); nv];
    for (r, (entries, _)) in rows.iter().enumerate() {
        for &(c, v) in entries {
            columns[c].push((r, v));
        }
    }
    let mut colptr = vec![0usize];
    let (mut rowval, mut nzval) = (Vec::new(), Vec::new());
    for col in &columns {
        for &(r, v) in col {
            rowval.push(r);
            nzval.push(v);
        }
        colptr.push(rowval.len());
    }
    let am = CscMatrix::new(rows.len(), nv, colptr, rowval, nzval);
    let b: Vec<f64> = rows.iter().map(|(_, b)| *b).collect();
    let mut cones = vec![NonnegativeConeT(m)];
    cones.extend(impacted.iter().map(|_| PowerConeT(2.0 / 3.0)));
    let settings = DefaultSettings { verbose: false, ..DefaultSettings::default() };
    let mut solver =
        DefaultSolver::new(&pm, &q, &am, &b, &cones, settings).map_err(|e| OptimizeError::Solver(format!("{e:?}")))?;
    solver.solve();
    match solver.solution.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => {
            Ok(solver.solution.x[..n].iter().map(|x| x * scale).collect())
        }
        other => Err(OptimizeError::Solver(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(mu: f64, cost: f64, current: f64, max_position: f64, var: f64, gamma: f64) -> Problem {
        Problem {
            assets: vec![Asset { mu, cost, current, max_position, ..Asset::default() }],
            covariance: vec![vec![var]],
            risk_aversion: gamma,
            max_gross: 1e6,
            max_net: 1e6,
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn one_asset_closed_form() {
        // w* = μ / (2γσ²) = 1e-4 / (2 · 1e-3 · 1e-6) = 50,000.
        let w = optimize(&one(1e-4, 0.0, 0.0, 1e6, 1e-6, 1e-3)).unwrap();
        assert!(close(w[0], 50_000.0, 1e-4), "{w:?}");
        let short = optimize(&one(-1e-4, 0.0, 0.0, 1e6, 1e-6, 1e-3)).unwrap();
        assert!(close(short[0], -50_000.0, 1e-4), "{short:?}");
    }

    #[test]
    fn linear_cost_shrinks_the_trade_and_opens_a_no_trade_zone() {
        // From flat: w* = (μ − c) / (2γσ²) = (1e-4 − 4e-5) / 2e-9 = 30,000.
        let w = optimize(&one(1e-4, 4e-5, 0.0, 1e6, 1e-6, 1e-3)).unwrap();
        assert!(close(w[0], 30_000.0, 1e-4), "{w:?}");
        // An expected return below the cost: stay where we are.
        let stay = optimize(&one(3e-5, 4e-5, 10_000.0, 1e6, 1e-6, 1e-3)).unwrap();
        assert!(close(stay[0], 10_000.0, 1e-3), "{stay:?}");
    }

    #[test]
    fn square_root_impact_shrinks_the_trade_to_where_its_marginal_cost_meets_the_gain() {
        // Without risk (γ tiny), the gain μ·d meets the impact κ·d^{3/2} at the margin:
        // μ = 1.5·κ·√d, so d = (μ / 1.5κ)². μ = 1e-4, κ = 1e-7: d = (1e-4 / 1.5e-7)² = 444,444.4.
        let mut p = one(1e-4, 0.0, 0.0, 1e7, 1e-6, 1e-12);
        p.max_gross = 1e7;
        p.max_net = 1e7;
        p.assets[0].impact = 1e-7;
        let w = optimize(&p).unwrap();
        assert!(close(w[0], 444_444.4, 1e-3), "{w:?}");
        // From a position already held, the impact is on the trade only: the same 444,444.4 more.
        p.assets[0].current = 100_000.0;
        let w = optimize(&p).unwrap();
        assert!(close(w[0], 544_444.4, 1e-3), "{w:?}");
    }

    #[test]
    fn a_position_that_may_only_shrink_or_must_stay_still_counts_in_the_limits() {
        // Twins with a strong forecast each, gross 60,000. B holds 40,000 and may not trade: A
        // gets the 20,000 left. May B only shrink, with no forecast of its own: the gross goes to
        // A, whose forecast pays, and B, which only adds risk, is cut to 0.
        let a = Asset { mu: 1e-4, max_position: 1e6, ..Asset::default() };
        let b = Asset { current: 40_000.0, max_position: 1e6, trading: Trading::Held, ..Asset::default() };
        let mut p = Problem {
            assets: vec![a, b],
            covariance: vec![vec![1e-6, 0.0], vec![0.0, 1e-6]],
            risk_aversion: 1e-3,
            max_gross: 60_000.0,
            max_net: 1e6,
        };
        let w = optimize(&p).unwrap();
        assert!(close(w[0], 20_000.0, 1e-3) && close(w[1], 40_000.0, 1e-3), "{w:?}");
        p.assets[1].trading = Trading::ReduceOnly;
        let w = optimize(&p).unwrap();
        assert!(close(w[0], 50_000.0, 1e-3) && w[1].abs() < 10.0, "{w:?}");
        // A short that may only shrink never turns long, however strong the forecast: it stops at 0.
        p.assets[1].current = -40_000.0;
        p.assets[1].mu = 1e-4;
        let w = optimize(&p).unwrap();
        assert!(w[1].abs() < 10.0, "{w:?}");
    }

    #[test]
    fn the_gain_of_a_trade_is_worked_out_by_hand() {
        // μ = 1e-4, c = 1e-5, κ = 1e-8, γσ² = 1e-3 · 1e-6, from 0 to 10,000:
        // 1 − 0.1 − 1e-8 · 10⁶ − 1e-9 · 10⁸ = 1 − 0.1 − 0.01 − 0.1 = 0.79.
        let mut p = one(1e-4, 1e-5, 0.0, 1e6, 1e-6, 1e-3);
        p.assets[0].impact = 1e-8;
        assert!(close(p.gain(&[10_000.0], 0, 10_000.0), 0.79, 1e-9), "{}", p.gain(&[10_000.0], 0, 10_000.0));
    }

    #[test]
    fn binding_position_limit() {
        let w = optimize(&one(1e-4, 0.0, 0.0, 20_000.0, 1e-6, 1e-3)).unwrap();
        assert!(close(w[0], 20_000.0, 1e-4), "{w:?}");
    }

    #[test]
    fn uncorrelated_assets_solve_separately() {
        let p = Problem {
            assets: vec![
                Asset { mu: 1e-4, max_position: 1e6, ..Asset::default() },
                Asset { mu: -2e-4, max_position: 1e6, ..Asset::default() },
            ],
            covariance: vec![vec![1e-6, 0.0], vec![0.0, 4e-6]],
            risk_aversion: 1e-3,
            max_gross: 1e6,
            max_net: 1e6,
        };
        let w = optimize(&p).unwrap();
        assert!(close(w[0], 50_000.0, 1e-4) && close(w[1], -25_000.0, 1e-4), "{w:?}");
    }

    #[test]
    fn binding_gross_and_net_limits() {
        let twin = Asset { mu: 1e-4, max_position: 1e6, ..Asset::default() };
        let mut p = Problem {
            assets: vec![twin.clone(), twin],
            covariance: vec![vec![1e-6, 0.0], vec![0.0, 1e-6]],
            risk_aversion: 1e-3,
            max_gross: 60_000.0,
            max_net: 1e6,
        };
        // Unconstrained each would hold 50,000; gross 60,000 splits evenly.
        let w = optimize(&p).unwrap();
        assert!(close(w[0], 30_000.0, 1e-3) && close(w[1], 30_000.0, 1e-3), "{w:?}");
        p.max_gross = 1e6;
        p.max_net = 40_000.0;
        let w = optimize(&p).unwrap();
        assert!(close(w[0] + w[1], 40_000.0, 1e-3) && close(w[0], w[1], 1e-3), "{w:?}");
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert!(matches!(optimize(&one(f64::NAN, 0.0, 0.0, 1.0, 1e-6, 1e-3)), Err(OptimizeError::Invalid(_))));
        let mut p = one(1e-4, 0.0, 0.0, 1.0, 1e-6, 1e-3);
        p.covariance = vec![];
        assert!(matches!(optimize(&p), Err(OptimizeError::Invalid(_))));
        assert_eq!(
            optimize(&Problem { assets: vec![], covariance: vec![], ..one(0.0, 0.0, 0.0, 1.0, 1.0, 1.0) }),
            Ok(vec![])
        );
    }
}
