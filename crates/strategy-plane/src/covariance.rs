//! EWMA covariance of per-window returns across symbols. Cross terms are updated only from
//! returns of the same window, so symbols whose windows close at different moments still line up.

use std::collections::{HashMap, VecDeque};

use common::types::Symbol;

/// Variance floor per window (0.01 bp²): a symbol that has not moved still carries some risk.
const VARIANCE_FLOOR: f64 = 1e-10;
/// Correlations are kept inside ±this, so the matrix stays positive definite.
const MAX_CORRELATION: f64 = 0.99;
/// Windows of history kept per symbol, so a pair's cross term is found however far one symbol's
/// stream runs ahead of the other's.
const HISTORY: usize = 64;

/// The estimator.
#[derive(Debug, Clone)]
pub struct EwmaCovariance {
    alpha: f64,
    index: HashMap<Symbol, usize>,
    cov: Vec<Vec<f64>>,
    history: Vec<VecDeque<(u64, f64)>>,
}

impl EwmaCovariance {
    /// `alpha` is the weight of the latest window.
    pub fn new(alpha: f64) -> Self {
        Self { alpha, index: HashMap::new(), cov: Vec::new(), history: Vec::new() }
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
        self.history.push(VecDeque::new());
        self.index.insert(symbol.clone(), i);
        i
    }

    /// Adds `symbol`'s return over the window starting at `window_start`. A pair's cross term is
    /// updated when the second of its two returns for a window arrives, whichever that is, so the
    /// result does not depend on how the symbols' streams interleave.
    pub fn update(&mut self, symbol: &Symbol, window_start: u64, ret: f64) {
        if !ret.is_finite() {
            return;
        }
        let a = self.alpha;
        let i = self.slot(symbol);
        self.cov[i][i] =
            if self.history[i].is_empty() { ret * ret } else { (1.0 - a) * self.cov[i][i] + a * ret * ret };
        for j in 0..self.cov.len() {
            if j == i {
                continue;
            }
            if let Some(&(_, rj)) = self.history[j].iter().find(|(ws, _)| *ws == window_start) {
                let c = (1.0 - a) * self.cov[i][j] + a * ret * rj;
                self.cov[i][j] = c;
                self.cov[j][i] = c;
            }
        }
        let h = &mut self.history[i];
        h.push_back((window_start, ret));
        if h.len() > HISTORY {
            h.pop_front();
        }
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
    fn interleaving_does_not_change_the_estimate() {
        let (x, y) = (Symbol::new("X").unwrap(), Symbol::new("Y").unwrap());
        let rx = [0.01, -0.02, 0.015, 0.0];
        let ry = [0.02, -0.01, 0.005, -0.01];
        let mut a = EwmaCovariance::new(0.2);
        for k in 0..4 {
            a.update(&x, k, rx[k as usize]);
            a.update(&y, k, ry[k as usize]);
        }
        let mut b = EwmaCovariance::new(0.2);
        for k in 0..4 {
            b.update(&x, k, rx[k as usize]);
        }
        for k in 0..4 {
            b.update(&y, k, ry[k as usize]);
        }
        assert_eq!(a.matrix(&[x.clone(), y.clone()]), b.matrix(&[x, y]));
    }

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
