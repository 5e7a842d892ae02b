//! The portfolio problem, solved with Clarabel (an interior-point QP solver):
//!
//! maximize   μᵀw − γ·wᵀΣw − cᵀ|w − w₀|
//! subject to Σ|wᵢ| ≤ G (gross), |Σwᵢ| ≤ N (net), |wᵢ| ≤ Pᵢ (per position)
//!
//! `w` are target positions in account currency, `μ` expected returns over the decision horizon
//! (fractions), `Σ` their covariance, `c` the expected trading cost per unit traded (a fraction
//! of notional, from the Order Plane's cost model), `w₀` current positions. The absolute values
//! become auxiliary variables `t ≥ |w|` and `s ≥ |w − w₀|`, which keeps the problem a convex QP.
//! Money is scaled by `G` inside, so the solver sees numbers near 1 whatever the account size.

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettings, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus};

/// One asset's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// Expected return over the horizon (fraction).
    pub mu: f64,
    /// Expected trading cost per unit of notional traded (fraction).
    pub cost: f64,
    /// Current position, account currency (signed).
    pub current: f64,
    /// Largest absolute position, account currency.
    pub max_position: f64,
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
    let finite = p.assets.iter().all(|a| [a.mu, a.cost, a.current, a.max_position].iter().all(|v| v.is_finite()))
        && p.covariance.iter().flatten().all(|v| v.is_finite())
        && [p.risk_aversion, p.max_gross, p.max_net].iter().all(|v| v.is_finite());
    if !finite {
        return Err(OptimizeError::Invalid("non-finite input"));
    }
    if p.max_gross <= 0.0
        || p.max_net < 0.0
        || p.risk_aversion <= 0.0
        || p.assets.iter().any(|a| a.max_position < 0.0 || a.cost < 0.0)
    {
        return Err(OptimizeError::Invalid("limits, risk aversion and costs must be positive"));
    }
    let scale = p.max_gross;
    // Variables x = [w (n), t (n), s (n)], money in units of G.
    let nv = 3 * n;
    let (w, t, s) = (0, n, 2 * n);

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

    // Rows of A x ≤ b, built densely by row (the problem is small), then converted.
    let mut rows: Vec<(Vec<(usize, f64)>, f64)> = Vec::new();
    for (i, a) in p.assets.iter().enumerate() {
        rows.push((vec![(w + i, 1.0), (t + i, -1.0)], 0.0));
        rows.push((vec![(w + i, -1.0), (t + i, -1.0)], 0.0));
        rows.push((vec![(t + i, 1.0)], a.max_position / scale));
        rows.push((vec![(w + i, 1.0), (s + i, -1.0)], a.current / scale));
        rows.push((vec![(w + i, -1.0), (s + i, -1.0)], -a.current / scale));
    }
    rows.push(((0..n).map(|i| (t + i, 1.0)).collect(), 1.0));
    rows.push(((0..n).map(|i| (w + i, 1.0)).collect(), p.max_net / scale));
    rows.push(((0..n).map(|i| (w + i, -1.0)).collect(), p.max_net / scale));
    let m = rows.len();
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
    let am = CscMatrix::new(m, nv, colptr, rowval, nzval);
    let b: Vec<f64> = rows.iter().map(|(_, b)| *b).collect();
    let cones = [NonnegativeConeT(m)];
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
            assets: vec![Asset { mu, cost, current, max_position }],
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
    fn binding_position_limit() {
        let w = optimize(&one(1e-4, 0.0, 0.0, 20_000.0, 1e-6, 1e-3)).unwrap();
        assert!(close(w[0], 20_000.0, 1e-4), "{w:?}");
    }

    #[test]
    fn uncorrelated_assets_solve_separately() {
        let p = Problem {
            assets: vec![
                Asset { mu: 1e-4, cost: 0.0, current: 0.0, max_position: 1e6 },
                Asset { mu: -2e-4, cost: 0.0, current: 0.0, max_position: 1e6 },
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
        let twin = Asset { mu: 1e-4, cost: 0.0, current: 0.0, max_position: 1e6 };
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
