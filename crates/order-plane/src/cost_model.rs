//! Transaction-cost learning from the Order Plane's own fills, one model per symbol.
//!
//! Model (square-root law, Almgren et al. 2005): the implementation shortfall of an order versus
//! its arrival mid, in basis points, is
//! `cost_bps = c + a · half_spread_bps + b · σ_bps · sqrt(qty / volume)`.
//! The intercept `c` holds what every order pays whatever its spread and size (the mid's drift
//! between decision and arrival, say), which `a` absorbed before. `c`, `a` and `b` are estimated
//! online by recursive least squares with exponential forgetting `λ`. Robustness: a residual
//! beyond `k` robust standard deviations (an EWMA of absolute residuals) gets Huber weight
//! `k·s/|e|`, so one freak fill cannot drag the fit. `a` and `b` are projected onto `≥ 0` after
//! each step: paying to cross the spread and to move the price is never negative; `c` may be
//! either sign (a venue that fills better than the arrival mid on average).

use common::events::CostModelUpdate;
use common::types::Symbol;

/// Updates before outliers are down-weighted (the residual scale needs a few samples).
const WARMUP: u64 = 10;
/// Weight of the latest residual in the scale and variance estimates.
const SCALE_ALPHA: f64 = 0.05;
/// Coefficients: intercept, half spread, impact.
const K: usize = 3;
/// The prior variance of each coefficient: wide, so the first fills decide.
const PRIOR: f64 = 100.0;

/// Online cost model.
#[derive(Debug, Clone)]
pub struct CostModel {
    theta: [f64; K],
    p: [[f64; K]; K],
    lambda: f64,
    huber_k: f64,
    scale: f64,
    resid_var: f64,
    n: u64,
}

fn prior() -> [[f64; K]; K] {
    let mut p = [[0.0; K]; K];
    for (i, row) in p.iter_mut().enumerate() {
        row[i] = PRIOR;
    }
    p
}

impl CostModel {
    /// Starts at `c = 0`, `a = 1` (pay the half spread), `b = 0`, with wide uncertainty.
    pub fn new(lambda: f64, huber_k: f64) -> Self {
        Self { theta: [0.0, 1.0, 0.0], p: prior(), lambda, huber_k, scale: 0.0, resid_var: 0.0, n: 0 }
    }

    /// Expected cost in bps for the given features.
    pub fn predict(&self, half_spread_bps: f64, impact_feature: f64) -> f64 {
        self.theta[0] + self.theta[1] * half_spread_bps + self.theta[2] * impact_feature
    }

    /// Learns from one completed order. Non-finite inputs are ignored.
    pub fn update(&mut self, half_spread_bps: f64, impact_feature: f64, cost_bps: f64) {
        let x = [1.0, half_spread_bps, impact_feature];
        if !(x.iter().all(|v| v.is_finite()) && cost_bps.is_finite()) {
            return;
        }
        let e = cost_bps - self.predict(x[1], x[2]);
        let limit = self.huber_k * self.scale;
        let w = if self.n >= WARMUP && limit > 0.0 && e.abs() > limit { limit / e.abs() } else { 1.0 };
        let px: [f64; K] = std::array::from_fn(|i| (0..K).map(|j| self.p[i][j] * x[j]).sum());
        let denom = self.lambda / w + (0..K).map(|i| x[i] * px[i]).sum::<f64>();
        if denom.abs() < 1e-12 {
            return;
        }
        let k: [f64; K] = std::array::from_fn(|i| px[i] / denom);
        for (i, ki) in k.iter().enumerate() {
            self.theta[i] += ki * e;
        }
        self.theta[1] = self.theta[1].max(0.0);
        self.theta[2] = self.theta[2].max(0.0);
        for (row, ki) in self.p.iter_mut().zip(k) {
            for (cell, pxj) in row.iter_mut().zip(px) {
                *cell = (*cell - ki * pxj) / self.lambda;
            }
        }
        let clipped = e.abs().min(if limit > 0.0 { limit } else { e.abs() });
        self.scale = if self.n == 0 { e.abs() } else { (1.0 - SCALE_ALPHA) * self.scale + SCALE_ALPHA * clipped };
        self.resid_var = (1.0 - SCALE_ALPHA) * self.resid_var + SCALE_ALPHA * (w * e) * (w * e);
        self.n += 1;
    }

    /// The coefficients and their standard errors, for `exec_reports` and metrics.
    pub fn snapshot(&self, symbol: &Symbol) -> CostModelUpdate {
        let se = |i: usize| (self.p[i][i].max(0.0) * self.resid_var).sqrt();
        let mut state: Vec<f64> = self.p.iter().flatten().copied().collect();
        state.push(self.resid_var);
        CostModelUpdate {
            intercept_bps: self.theta[0],
            half_spread_coef: self.theta[1],
            impact_coef: self.theta[2],
            intercept_stderr: se(0),
            half_spread_stderr: se(1),
            impact_stderr: se(2),
            residual_scale_bps: self.scale,
            residual_std_bps: self.resid_var.sqrt(),
            n_fills: self.n,
            symbol: Some(symbol.clone()),
            state: Some(state),
        }
    }

    /// Whether [`restore`](Self::restore) takes `s` (finite values, no negative coefficient or
    /// error); one it does not take leaves the model as it was.
    pub fn restorable(s: &CostModelUpdate) -> bool {
        let values = [
            s.half_spread_coef,
            s.impact_coef,
            s.half_spread_stderr,
            s.impact_stderr,
            s.intercept_stderr,
            s.residual_scale_bps,
            s.residual_std_bps,
        ];
        values.iter().all(|v| v.is_finite() && *v >= 0.0) && s.intercept_bps.is_finite()
    }

    /// Continues from a published snapshot after a restart: exactly, from its `state`; from a
    /// record without one, the coefficients, their variances (`P_ii = stderr² / residual
    /// variance`) and the residual scale, so the first fills after a restart move the model no
    /// more than they would have before it. A record from before the intercept (a 2 × 2 state)
    /// keeps its two coefficients and starts the intercept at 0 with the prior's uncertainty.
    pub fn restore(&mut self, s: &CostModelUpdate) {
        if !Self::restorable(s) {
            return;
        }
        self.theta = [s.intercept_bps, s.half_spread_coef, s.impact_coef];
        self.n = s.n_fills;
        self.scale = s.residual_scale_bps;
        self.resid_var = s.residual_std_bps * s.residual_std_bps;
        let state = s.state.as_deref().filter(|v| v.iter().all(|x| x.is_finite()));
        match state {
            Some(v) if v.len() == K * K + 1 => {
                for (i, row) in self.p.iter_mut().enumerate() {
                    row.copy_from_slice(&v[i * K..(i + 1) * K]);
                }
                self.resid_var = v[K * K];
            }
            Some(&[p00, p01, p10, p11, resid_var]) => {
                self.p = prior();
                self.p[1][1] = p00;
                self.p[1][2] = p01;
                self.p[2][1] = p10;
                self.p[2][2] = p11;
                self.resid_var = resid_var;
            }
            _ if self.resid_var > 0.0 => {
                let stderrs = [s.intercept_stderr, s.half_spread_stderr, s.impact_stderr];
                self.p = [[0.0; K]; K];
                for (i, se) in stderrs.iter().enumerate() {
                    self.p[i][i] = if *se > 0.0 { se * se / self.resid_var } else { PRIOR };
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a seeded, reproducible stream for the simulation.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.next().max(1e-12), self.next());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    #[test]
    fn converges_to_the_true_impact_despite_outliers() {
        let (true_a, true_b) = (1.0, 0.7);
        let mut rng = Rng(42);
        let mut model = CostModel::new(0.995, 3.0);
        for i in 0..3_000 {
            let half_spread = 0.5 + 4.5 * rng.next();
            let impact = 20.0 * rng.next();
            let mut cost = true_a * half_spread + true_b * impact + rng.normal();
            if i % 20 == 7 {
                cost += 80.0; // a freak fill every 20
            }
            model.update(half_spread, impact, cost);
        }
        let s = model.snapshot(&Symbol::new("X").unwrap());
        assert!((s.impact_coef - true_b).abs() < 0.05, "impact {} vs {true_b}", s.impact_coef);
        assert!((s.half_spread_coef - true_a).abs() < 0.15, "half spread {} vs {true_a}", s.half_spread_coef);
        assert!(s.impact_stderr > 0.0 && s.impact_stderr < 0.1, "stderr {}", s.impact_stderr);
        assert_eq!(s.n_fills, 3_000);
    }

    #[test]
    fn a_fixed_cost_per_order_is_the_intercept_not_the_spread_coefficient() {
        // Every order pays 2 bp whatever its spread (a drift between decision and arrival), plus
        // the half spread: c = 2, a = 1. Without an intercept, a soaked it up.
        let mut rng = Rng(5);
        let mut model = CostModel::new(0.995, 3.0);
        for _ in 0..3_000 {
            let half_spread = 0.5 + 4.5 * rng.next();
            model.update(half_spread, 20.0 * rng.next(), 2.0 + half_spread + 0.3 * rng.normal());
        }
        let s = model.snapshot(&Symbol::new("X").unwrap());
        assert!((s.intercept_bps - 2.0).abs() < 0.1, "{s:?}");
        assert!((s.half_spread_coef - 1.0).abs() < 0.05 && s.impact_coef < 0.02, "{s:?}");
        assert!(s.intercept_stderr > 0.0 && s.intercept_stderr < 0.1, "{s:?}");
    }

    #[test]
    fn a_record_from_before_the_intercept_restores_its_two_coefficients() {
        let old = r#"{"half_spread_coef":0.9,"impact_coef":0.6,"half_spread_stderr":0.04,"impact_stderr":0.1,"residual_scale_bps":1.5,"residual_std_bps":2.0,"n_fills":40,"symbol":"X","state":[0.0004,0.0,0.0,0.0025,4.0]}"#;
        let mut model = CostModel::new(0.995, 3.0);
        model.restore(&serde_json::from_str(old).unwrap());
        let s = model.snapshot(&Symbol::new("X").unwrap());
        assert_eq!((s.intercept_bps, s.half_spread_coef, s.impact_coef, s.n_fills), (0.0, 0.9, 0.6, 40));
        // The intercept starts with the prior's uncertainty: sqrt(100 × 4) = 20 bp.
        assert_eq!(s.intercept_stderr, 20.0);
        assert!((s.half_spread_stderr - 0.04).abs() < 1e-12, "{s:?}");
        assert_eq!(s.state.as_ref().map(Vec::len), Some(10));
    }

    #[test]
    fn coefficients_never_go_negative() {
        let mut model = CostModel::new(0.99, 3.0);
        for _ in 0..200 {
            model.update(2.0, 10.0, -30.0);
        }
        let s = model.snapshot(&Symbol::new("X").unwrap());
        assert!(s.half_spread_coef >= 0.0 && s.impact_coef >= 0.0);
    }

    #[test]
    fn a_restored_model_is_as_robust_as_before_the_restart() {
        let mut rng = Rng(7);
        let mut model = CostModel::new(0.995, 3.0);
        for _ in 0..500 {
            let (h, i) = (0.5 + 4.5 * rng.next(), 20.0 * rng.next());
            model.update(h, i, h + 0.7 * i + rng.normal());
        }
        let mut restored = CostModel::new(0.995, 3.0);
        restored.restore(&model.snapshot(&Symbol::new("X").unwrap()));
        // One freak fill right after the restart barely moves either model.
        for m in [&mut model, &mut restored] {
            m.update(2.0, 5.0, 200.0);
            let s = m.snapshot(&Symbol::new("X").unwrap());
            assert!((s.half_spread_coef - 1.0).abs() < 0.2 && (s.impact_coef - 0.7).abs() < 0.1, "{s:?}");
        }
    }

    #[test]
    fn a_model_restored_from_its_snapshot_continues_exactly() {
        let mut rng = Rng(11);
        let x = Symbol::new("X").unwrap();
        let mut model = CostModel::new(0.995, 3.0);
        let fill = |m: &mut CostModel, rng: &mut Rng| {
            let (h, i) = (0.5 + 4.5 * rng.next(), 20.0 * rng.next());
            m.update(h, i, h + 0.7 * i + rng.normal());
        };
        for _ in 0..50 {
            fill(&mut model, &mut rng);
        }
        // Through JSON, as a restarted plane reads it from the ledger.
        let text = serde_json::to_string(&model.snapshot(&x)).unwrap();
        let mut restored = CostModel::new(0.995, 3.0);
        restored.restore(&serde_json::from_str(&text).unwrap());
        let mut again = Rng(99);
        let mut other = Rng(99);
        for _ in 0..50 {
            fill(&mut model, &mut again);
            fill(&mut restored, &mut other);
        }
        assert_eq!(model.snapshot(&x), restored.snapshot(&x));
    }

    #[test]
    fn non_finite_inputs_are_ignored() {
        let mut model = CostModel::new(0.99, 3.0);
        model.update(f64::NAN, 1.0, 1.0);
        model.update(1.0, f64::INFINITY, 1.0);
        assert_eq!(model.snapshot(&Symbol::new("X").unwrap()).n_fills, 0);
    }
}
