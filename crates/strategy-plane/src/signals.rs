//! Signals per symbol, from each closed OFI window.
//!
//! Two fits are kept apart on purpose:
//! - **Contemporaneous** (Cont, Kukanov & Stoikov 2014): a window's mid change on the same
//!   window's OFI. It explains most of the price move (R² ≈ 0.77 on the spot BTCUSDT sample) but
//!   cannot be traded: the OFI is only known when the move has happened.
//! - **Predictive**: the *next* window's return on this window's features. This is what the
//!   Strategy Plane trades, and it is far weaker (R² ≈ 0.07 on the same data, README of `data/`).
//!
//! The traded forecast combines three well-known signals in one regression, re-estimated online by
//! recursive least squares with forgetting: depth-normalized OFI, trade-flow imbalance (aggressive
//! buy − sell size over mean depth) and short-horizon mean reversion (distance of the mid from its
//! EWMA, bps). The combination *is* the regression: each signal's weight is its RLS coefficient,
//! so a signal that stops predicting loses its weight, and each signal's contribution `βᵢxᵢ` is
//! published with the intent.

use common::events::OfiWindow;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Signal names, in feature order.
pub const SIGNALS: [&str; 3] = ["ofi", "trade_flow", "mean_reversion"];

/// Running OLS of y on x (with intercept) from sufficient statistics: the honest R² of a fit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ols {
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl Ols {
    /// Adds one observation.
    pub fn add(&mut self, x: f64, y: f64) {
        if x.is_finite() && y.is_finite() {
            self.n += 1.0;
            self.sx += x;
            self.sy += y;
            self.sxx += x * x;
            self.syy += y * y;
            self.sxy += x * y;
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.n as u64
    }

    /// Slope of the fit.
    pub fn slope(&self) -> f64 {
        let vx = self.sxx - self.sx * self.sx / self.n;
        if self.n < 2.0 || vx <= 0.0 { 0.0 } else { (self.sxy - self.sx * self.sy / self.n) / vx }
    }

    /// Coefficient of determination.
    pub fn r_squared(&self) -> f64 {
        if self.n < 3.0 {
            return 0.0;
        }
        let cxy = self.sxy - self.sx * self.sy / self.n;
        let vx = self.sxx - self.sx * self.sx / self.n;
        let vy = self.syy - self.sy * self.sy / self.n;
        if vx <= 0.0 || vy <= 0.0 { 0.0 } else { cxy * cxy / (vx * vy) }
    }
}

/// Recursive least squares with exponential forgetting over `N` features.
#[derive(Debug, Clone, PartialEq)]
pub struct Rls<const N: usize> {
    theta: [f64; N],
    p: [[f64; N]; N],
    lambda: f64,
    resid_var: f64,
    n: u64,
}

impl<const N: usize> Rls<N> {
    /// Coefficients start at 0 with variance `prior` each.
    pub fn new(lambda: f64, prior: f64) -> Self {
        let mut p = [[0.0; N]; N];
        for (i, row) in p.iter_mut().enumerate() {
            row[i] = prior;
        }
        Self { theta: [0.0; N], p, lambda, resid_var: 0.0, n: 0 }
    }

    /// `θ·x`.
    pub fn predict(&self, x: &[f64; N]) -> f64 {
        self.theta.iter().zip(x).map(|(t, v)| t * v).sum()
    }

    /// Learns `y ≈ θ·x`. Non-finite inputs are ignored.
    pub fn update(&mut self, x: &[f64; N], y: f64) {
        if !(x.iter().all(|v| v.is_finite()) && y.is_finite()) {
            return;
        }
        let e = y - self.predict(x);
        let mut px = [0.0; N];
        for (pxi, row) in px.iter_mut().zip(&self.p) {
            *pxi = row.iter().zip(x).map(|(a, b)| a * b).sum();
        }
        let denom = self.lambda + x.iter().zip(&px).map(|(a, b)| a * b).sum::<f64>();
        if denom.abs() < 1e-300 {
            return;
        }
        let k: Vec<f64> = px.iter().map(|v| v / denom).collect();
        for (t, ki) in self.theta.iter_mut().zip(&k) {
            *t += ki * e;
        }
        for (row, ki) in self.p.iter_mut().zip(&k) {
            for (cell, pxj) in row.iter_mut().zip(&px) {
                *cell = (*cell - ki * pxj) / self.lambda;
            }
        }
        self.resid_var = if self.n == 0 { e * e } else { 0.98 * self.resid_var + 0.02 * e * e };
        self.n += 1;
    }

    /// Coefficients.
    pub fn coefficients(&self) -> [f64; N] {
        self.theta
    }

    /// Standard errors of the coefficients.
    pub fn stderr(&self) -> [f64; N] {
        let mut se = [0.0; N];
        for (i, s) in se.iter_mut().enumerate() {
            *s = (self.p[i][i].max(0.0) * self.resid_var).sqrt();
        }
        se
    }

    /// Updates so far.
    pub fn updates(&self) -> u64 {
        self.n
    }
}

/// A forecast for the next window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forecast {
    /// Expected return of the mid over the next window (fraction).
    pub expected_return: f64,
    /// Each signal's contribution `βᵢxᵢ`, in [`SIGNALS`] order.
    pub contributions: [f64; 3],
}

/// Signal state of one symbol.
#[derive(Debug, Clone)]
pub struct SymbolSignals {
    /// Window mid change on the same window's OFI.
    pub contemporaneous: Ols,
    /// Next window's mid change on this window's OFI (the single-signal predictive fit).
    pub predictive: Ols,
    /// The traded forecast.
    pub model: Rls<3>,
    warmup: u64,
    ewma_mid: Option<f64>,
    previous: Option<([f64; 3], f64)>,
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

impl SymbolSignals {
    /// No forecast before `warmup` windows have trained the model.
    pub fn new(warmup: u64, forgetting: f64) -> Self {
        Self {
            contemporaneous: Ols::default(),
            predictive: Ols::default(),
            model: Rls::new(forgetting, 1e-6),
            warmup,
            ewma_mid: None,
            previous: None,
        }
    }

    /// Learns from a closed window and forecasts the next one (`None` during warm-up).
    pub fn on_window(&mut self, w: &OfiWindow) -> Option<Forecast> {
        let (mid_open, mid_close) = (f(w.mid_open), f(w.mid_close));
        let mid_change = f(w.mid_change);
        let ofi = f(w.ofi);
        let ret = if mid_open > 0.0 { mid_change / mid_open } else { f64::NAN };
        self.contemporaneous.add(ofi, mid_change);
        if let Some((x, prev_ofi)) = self.previous {
            self.model.update(&x, ret);
            self.predictive.add(prev_ofi, mid_change);
        }
        let depth = f(w.mean_depth);
        let ewma = *self.ewma_mid.get_or_insert(mid_close);
        let x = [
            f(w.ofi_normalized),
            if depth > 0.0 { f(w.trade_imbalance) / depth } else { 0.0 },
            if mid_close > 0.0 { (ewma - mid_close) / mid_close * 1e4 } else { 0.0 },
        ];
        self.ewma_mid = Some(0.9 * ewma + 0.1 * mid_close);
        self.previous = Some((x, ofi));
        if self.model.updates() < self.warmup || x.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let beta = self.model.coefficients();
        let contributions = [beta[0] * x[0], beta[1] * x[1], beta[2] * x[2]];
        Some(Forecast { expected_return: contributions.iter().sum(), contributions })
    }
}
