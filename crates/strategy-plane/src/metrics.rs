//! The Strategy Plane's Prometheus metrics, in a registry of their own. Per-symbol series are
//! bounded by the configured instruments, and exported only for the symbols this instance owns
//! ([`crate::ownership`]): summed over the instances, each symbol counts once.

use common::kafka::shell::ConsumerMetrics;
use prometheus::{Gauge, GaugeVec, IntCounter, IntGauge, Opts, Registry};

/// Every metric the Strategy Plane exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// What every consuming plane exports: records consumed, decode errors, duplicates, the
    /// assignment and the lag.
    pub consumer: ConsumerMetrics,
    /// Forecasts produced.
    pub signals_generated: IntCounter,
    /// Portfolio decisions.
    pub decisions: IntCounter,
    /// Intents published.
    pub intents_published: IntCounter,
    /// Decisions the solver could not finish.
    pub solver_failures: IntCounter,
    /// Events about symbols outside the instruments.
    pub unknown_symbol: IntCounter,
    /// Exec reports for intents this plane did not issue.
    pub unknown_intent: IntCounter,
    /// Realized + unrealized − fees, over the symbols this instance owns.
    pub pnl_total: Gauge,
    /// Position (quantity), by symbol.
    pub position: GaugeVec,
    /// PnL, by symbol.
    pub pnl: GaugeVec,
    /// Fees paid, by symbol.
    pub fees: GaugeVec,
    /// R² of the contemporaneous OFI fit, by symbol.
    pub r2_contemporaneous: GaugeVec,
    /// R² of the predictive (next window) OFI fit, by symbol.
    pub r2_predictive: GaugeVec,
    /// Coefficient of each signal in the traded forecast, by symbol and signal.
    pub signal_coefficient: GaugeVec,
    /// 1 while trading is halted.
    pub halted: IntGauge,
    /// Start-up snapshots of `exec_reports`: rejected, written, and the ledger records read.
    pub snapshots: common::kafka::SnapshotMetrics,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let vec = |name: &str, help: &str, labels: &[&str]| GaugeVec::new(Opts::new(name, help), labels);
        let registry = common::http::registry()?;
        let snapshots = common::kafka::SnapshotMetrics::register(&registry, "strategy_plane")?;
        let m = Self {
            consumer: ConsumerMetrics::new("strategy_plane", &registry, false)?,
            registry,
            snapshots,
            signals_generated: IntCounter::new("strategy_plane_signals_generated_total", "Forecasts produced.")?,
            decisions: IntCounter::new("strategy_plane_decisions_total", "Portfolio decisions.")?,
            intents_published: IntCounter::new("strategy_plane_intents_published_total", "Order intents published.")?,
            solver_failures: IntCounter::new(
                "strategy_plane_solver_failures_total",
                "Decisions the optimizer could not finish.",
            )?,
            unknown_symbol: IntCounter::new(
                "strategy_plane_unknown_symbol_total",
                "Events about symbols outside the configured instruments.",
            )?,
            unknown_intent: IntCounter::new(
                "strategy_plane_unknown_intent_total",
                "Exec reports for intents this plane did not issue.",
            )?,
            pnl_total: Gauge::new(
                "strategy_plane_pnl_total",
                "Realized plus unrealized PnL minus fees, over the symbols this instance owns.",
            )?,
            position: vec("strategy_plane_position", "Position quantity, by symbol this instance owns.", &["symbol"])?,
            pnl: vec("strategy_plane_pnl", "PnL by symbol.", &["symbol"])?,
            fees: vec("strategy_plane_fees", "Fees paid by symbol.", &["symbol"])?,
            r2_contemporaneous: vec(
                "strategy_plane_ofi_r2_contemporaneous",
                "R² of window mid change on the same window's OFI.",
                &["symbol"],
            )?,
            r2_predictive: vec(
                "strategy_plane_ofi_r2_predictive",
                "R² of the next window's mid change on this window's OFI.",
                &["symbol"],
            )?,
            signal_coefficient: vec(
                "strategy_plane_signal_coefficient",
                "Weight of each signal in the traded forecast.",
                &["symbol", "signal"],
            )?,
            halted: IntGauge::new("strategy_plane_halted", "1 while trading is halted.")?,
        };
        let r = &m.registry;
        r.register(Box::new(m.signals_generated.clone()))?;
        r.register(Box::new(m.decisions.clone()))?;
        r.register(Box::new(m.intents_published.clone()))?;
        r.register(Box::new(m.solver_failures.clone()))?;
        r.register(Box::new(m.unknown_symbol.clone()))?;
        r.register(Box::new(m.unknown_intent.clone()))?;
        r.register(Box::new(m.pnl_total.clone()))?;
        r.register(Box::new(m.position.clone()))?;
        r.register(Box::new(m.pnl.clone()))?;
        r.register(Box::new(m.fees.clone()))?;
        r.register(Box::new(m.r2_contemporaneous.clone()))?;
        r.register(Box::new(m.r2_predictive.clone()))?;
        r.register(Box::new(m.signal_coefficient.clone()))?;
        r.register(Box::new(m.halted.clone()))?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    /// The names a scrape of this plane's `/metrics` shows, from the `# TYPE` lines.
    fn exported_names(metrics: &Metrics) -> Vec<String> {
        let body = String::from_utf8(common::http::render(&metrics.registry).unwrap()).unwrap();
        body.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next().map(str::to_owned)).collect()
    }

    #[test]
    fn the_portfolio_pnl_has_the_specifications_name() {
        let names = exported_names(&Metrics::new().unwrap());
        assert!(names.iter().any(|n| n == "strategy_plane_pnl_total"), "{names:?}");
        assert!(!names.iter().any(|n| n == "strategy_plane_portfolio_pnl"), "one name for one gauge: {names:?}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_plane_exports_its_process_metrics() {
        let names = exported_names(&Metrics::new().unwrap());
        assert!(names.iter().any(|n| n == "process_resident_memory_bytes"), "{names:?}");
    }
}
