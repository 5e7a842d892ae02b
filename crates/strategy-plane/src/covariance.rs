//! EWMA covariance of per-window returns across symbols. Cross terms are updated only from
//! returns of the same window, so symbols whose windows close at different moments still line up.

use std::collections::HashMap;

use common::types::Symbol;

/// Variance floor per window (0.01 bp²): a symbol that has not moved still carries some risk.
const VARIANCE_FLOOR: f64 = 1e-10;
/// Correlations are kept inside ±this, so the matrix stays positive definite.
const MAX_CORRELATION: f64 = 0.99;

/// The estimator.
#[derive(Debug, Clone)]
pub struct EwmaCovariance {
    alpha: f64,
    index: HashMap<Symbol, usize>,
    cov: Vec<Vec<f64>>,
    last: Vec<Option<(u64, f64)>>,
}

impl EwmaCovariance {
    /// `alpha` is the weight of the latest window.
    pub fn new(alpha: f64) -> Self {
        Self { alpha, index: HashMap::new(), cov: Vec::new(), last: Vec::new() }
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
        self.last.push(None);
        self.index.insert(symbol.clone(), i);
        i
    }

    /// Adds `symbol`'s return over the window starting at `window_start`.
    pub fn update(&mut self, symbol: &Symbol, window_start: u64, ret: f64) {
        if !ret.is_finite() {
            return;
        }
        let a = self.alpha;
        let i = self.slot(symbol);
        self.cov[i][i] = if self.last[i].is_none() { ret * ret } else { (1.0 - a) * self.cov[i][i] + a * ret * ret };
        for j in 0..self.cov.len() {
            if let Some((ws, rj)) = self.last[j]
                && j != i
                && ws == window_start
            {
                let c = (1.0 - a) * self.cov[i][j] + a * ret * rj;
                self.cov[i][j] = c;
                self.cov[j][i] = c;
            }
        }
        self.last[i] = Some((window_start, ret));
    }

    /// The covariance of `symbols`, in that order (unknown symbols get the floor variance).
    pub fn matrix(&self, symbols: &[Symbol]) -> Vec<Vec<f64>> {
        let var = |s: &Symbol| self.index.get(s).map_or(VARIANCE_FLOOR, |&i| self.cov[i][i].max(VARIANCE_FLOOR));
        symbols
            .iter()
            .map(|a| {
                symbols
                    .iter()
                    .map(|b| {
                        if a == b {
                            return var(a);
                        }
                        let (Some(&i), Some(&j)) = (self.index.get(a), self.index.get(b)) else { return 0.0 };
                        let bound = MAX_CORRELATION * (var(a) * var(b)).sqrt();
                        self.cov[i][j].clamp(-bound, bound)
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_variance_and_same_window_covariance() {
        let (x, y) = (Symbol::new("X").unwrap(), Symbol::new("Y").unwrap());
        let mut c = EwmaCovariance::new(0.5);
        c.update(&x, 0, 0.01);
        c.update(&y, 0, 0.02);
        c.update(&x, 1, -0.01);
        c.update(&y, 1, -0.02);
        let m = c.matrix(&[x.clone(), y.clone()]);
        assert!((m[0][0] - 1e-4).abs() < 1e-12);
        assert!((m[1][1] - 4e-4).abs() < 1e-12);
        // Cross: 0.5·(0.5·0 + 0.5·2e-4) + 0.5·2e-4, clamped below the 0.99-correlation bound.
        assert!(m[0][1] > 1e-4 && m[0][1] <= 0.99 * 2e-4 + 1e-12, "{m:?}");
        assert_eq!(m[0][1], m[1][0]);
        let unknown = c.matrix(&[Symbol::new("Z").unwrap()]);
        assert_eq!(unknown[0][0], VARIANCE_FLOOR);
    }
}
