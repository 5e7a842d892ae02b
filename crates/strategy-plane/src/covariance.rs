//! EWMA covariance of per-window returns across symbols, positive semi-definite by construction.
//!
//! Each window's returns form one joint vector `r` (0 for a symbol without a return in that
//! window: a quiet symbol's mid did not move), and the estimate is `Σ ← (1 − α)·Σ + α·r·rᵀ`: a
//! weighted sum of outer products, so every variance and covariance comes from one common sample
//! of windows and the matrix is positive semi-definite whatever the data. Estimating each pair
//! from its own windows, and clamping correlations, as before, guaranteed neither for three or
//! more symbols, and the optimizer's problem was then not convex. [`EwmaCovariance::matrix`]
//! shrinks the estimate toward its diagonal (a convex combination of two PSD matrices) and puts a
//! floor under each variance (adding a non-negative diagonal): both keep it PSD.

use common::types::{Symbol, SymbolMap};

/// Variance floor per window (0.01 bp²): a symbol that has not moved still carries some risk.
const VARIANCE_FLOOR: f64 = 1e-10;
/// Weight of the diagonal in the shrunk estimate: a few hundred windows of two or three symbols
/// estimate correlations noisily, and pulling them toward 0 steadies the optimizer's hedges.
const SHRINKAGE: f64 = 0.1;

/// The estimator.
#[derive(Debug, Clone)]
pub struct EwmaCovariance {
    alpha: f64,
    index: SymbolMap<usize>,
    /// The EWMA of `r·rᵀ`, symmetric, one row per symbol seen (in the order first seen).
    cov: Vec<Vec<f64>>,
    /// Whether any window has been added (the first sets the estimate outright).
    started: bool,
}

impl EwmaCovariance {
    /// `alpha` is the weight of the latest window.
    pub fn new(alpha: f64) -> Self {
        Self { alpha, index: SymbolMap::default(), cov: Vec::new(), started: false }
    }

    fn slot(&mut self, symbol: &Symbol) -> usize {
        if let Some(i) = self.index.get(symbol) {
            return *i;
        }
        let i = self.cov.len();
        for row in &mut self.cov {
            row.push(0.0);
        }
        self.cov.push(vec![0.0; i + 1]);
        self.index.insert(symbol.clone(), i);
        i
    }

    /// Adds one window's returns, one per symbol that has one (the others count as 0). Returns
    /// that are not finite are left out, as if the symbol had none.
    pub fn update_window(&mut self, returns: &[(Symbol, f64)]) {
        let mut r = Vec::new();
        for (symbol, ret) in returns.iter().filter(|(_, ret)| ret.is_finite()) {
            r.push((self.slot(symbol), *ret));
        }
        if r.is_empty() {
            return;
        }
        let mut joint = vec![0.0; self.cov.len()];
        for (i, ret) in r {
            joint[i] = ret;
        }
        let (keep, add) = if self.started { (1.0 - self.alpha, self.alpha) } else { (0.0, 1.0) };
        self.started = true;
        // The product first: the same bits at [i][j] and [j][i], so the matrix stays exactly
        // symmetric (a property test caught `add * r_i * r_j` differing in the last bit).
        for (i, row) in self.cov.iter_mut().enumerate() {
            for (j, c) in row.iter_mut().enumerate() {
                *c = keep * *c + add * (joint[i] * joint[j]);
            }
        }
    }

    /// The covariance of `symbols`, in that order: shrunk toward the diagonal, every variance at
    /// least the floor (a symbol never seen has the floor and no covariance).
    pub fn matrix(&self, symbols: &[Symbol]) -> Vec<Vec<f64>> {
        let at = |a: &Symbol, b: &Symbol| match (self.index.get(a), self.index.get(b)) {
            (Some(&i), Some(&j)) => self.cov[i][j],
            _ => 0.0,
        };
        symbols
            .iter()
            .map(|a| {
                symbols
                    .iter()
                    .map(|b| if a == b { at(a, a).max(VARIANCE_FLOOR) } else { (1.0 - SHRINKAGE) * at(a, b) })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // matrix algebra reads better with indices
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    #[test]
    fn joint_ewma_by_hand() {
        let (x, y) = (sym("X"), sym("Y"));
        let mut c = EwmaCovariance::new(0.5);
        c.update_window(&[(x.clone(), 0.01), (y.clone(), 0.02)]);
        // Y quiet in the second window: its return counts as 0.
        c.update_window(&[(x.clone(), -0.01)]);
        let m = c.matrix(&[x.clone(), y.clone()]);
        // var X = 0.5·1e-4 + 0.5·1e-4; var Y = 0.5·4e-4 + 0; cov = 0.5·2e-4 + 0.5·(−0.01·0).
        assert!((m[0][0] - 1e-4).abs() < 1e-15, "{m:?}");
        assert!((m[1][1] - 2e-4).abs() < 1e-15, "{m:?}");
        // Shrunk by 10 % toward the diagonal: 0.9 · 1e-4.
        assert!((m[0][1] - 0.9e-4).abs() < 1e-15, "{m:?}");
        assert_eq!(m[0][1], m[1][0]);
        assert_eq!(c.matrix(&[sym("Z")]), vec![vec![VARIANCE_FLOOR]], "a symbol never seen");
    }

    #[test]
    fn a_symbol_seen_late_joins_with_no_history() {
        let (x, y) = (sym("X"), sym("Y"));
        let mut c = EwmaCovariance::new(0.5);
        c.update_window(&[(x.clone(), 0.01)]);
        c.update_window(&[(x.clone(), 0.01), (y.clone(), 0.01)]);
        let m = c.matrix(&[x, y]);
        assert!((m[1][1] - 0.5e-4).abs() < 1e-15 && (m[0][1] - 0.9 * 0.5e-4).abs() < 1e-15, "{m:?}");
    }

    /// Smallest eigenvalue of a symmetric matrix, by Jacobi rotations (small matrices only).
    fn smallest_eigenvalue(mut a: Vec<Vec<f64>>) -> f64 {
        let n = a.len();
        for _ in 0..100 {
            let mut off = 0.0;
            for p in 0..n {
                for q in (p + 1)..n {
                    off += a[p][q] * a[p][q];
                    if a[p][q].abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                    for k in 0..n {
                        let (akp, akq) = (a[k][p], a[k][q]);
                        a[k][p] = c * akp - s * akq;
                        a[k][q] = s * akp + c * akq;
                    }
                    for k in 0..n {
                        let (apk, aqk) = (a[p][k], a[q][k]);
                        a[p][k] = c * apk - s * aqk;
                        a[q][k] = s * apk + c * aqk;
                    }
                }
            }
            if off < 1e-40 {
                break;
            }
        }
        (0..n).map(|i| a[i][i]).fold(f64::INFINITY, f64::min)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random returns for 2 to 20 symbols, each window holding a random subset of them: the
        /// matrix is symmetric and positive semi-definite, and the optimizer solves with it.
        #[test]
        fn the_estimate_is_psd_and_the_optimizer_solves_with_it(
            n in 2usize..=20,
            windows in prop::collection::vec(prop::collection::vec((any::<bool>(), -0.01f64..0.01), 20), 1..40),
            alpha in 0.01f64..0.5,
        ) {
            let symbols: Vec<Symbol> = (0..n).map(|i| sym(&format!("S{i}"))).collect();
            let mut c = EwmaCovariance::new(alpha);
            for w in &windows {
                let returns: Vec<(Symbol, f64)> = symbols
                    .iter()
                    .zip(w)
                    .filter(|(_, (present, _))| *present)
                    .map(|(s, (_, r))| (s.clone(), *r))
                    .collect();
                c.update_window(&returns);
            }
            let m = c.matrix(&symbols);
            for i in 0..n {
                for j in 0..n {
                    prop_assert_eq!(m[i][j], m[j][i]);
                }
            }
            // Relative to the largest variance: rounding leaves a tiny negative at worst.
            let largest = (0..n).map(|i| m[i][i]).fold(0.0, f64::max);
            let lowest = smallest_eigenvalue(m.clone());
            prop_assert!(lowest >= -1e-12 * largest, "smallest eigenvalue {} of {:?}", lowest, m);

            let problem = crate::optimizer::Problem {
                assets: (0..n)
                    .map(|i| crate::optimizer::Asset {
                        mu: if i % 2 == 0 { 1e-5 } else { -1e-5 },
                        cost: 1e-6,
                        impact: if i % 3 == 0 { 1e-9 } else { 0.0 },
                        max_position: 1_000.0,
                        ..crate::optimizer::Asset::default()
                    })
                    .collect(),
                covariance: m,
                risk_aversion: 0.01,
                max_gross: 10_000.0,
                max_net: 5_000.0,
            };
            let solved = crate::optimizer::optimize(&problem);
            prop_assert!(solved.is_ok(), "{:?}", solved);
        }
    }
}
