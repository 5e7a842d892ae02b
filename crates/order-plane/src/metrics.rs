//! The Order Plane's Prometheus metrics, in a registry of their own.

use common::events::RejectReason;
use common::kafka::shell::ConsumerMetrics;
use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Every metric the Order Plane exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// What every consuming plane exports: records consumed, decode errors, duplicates, the
    /// assignment, lag and backlog. The group's committed market offsets stay behind the backlog
    /// on purpose: see docs/architecture.md.
    pub consumer: ConsumerMetrics,
    /// Orders sent to a venue.
    pub orders_placed: IntCounter,
    /// Orders refused, by reason.
    pub rejections: IntCounterVec,
    /// Fills.
    pub fills: IntCounter,
    /// Orders cancelled.
    pub cancels: IntCounter,
    /// Σ price × size of fills.
    pub notional_traded: Counter,
    /// Σ commissions.
    pub commission: Counter,
    /// Slippage of completed orders versus arrival mid, bps.
    pub slippage_bps: Histogram,
    /// From the intent's creation to its first exec report.
    pub intent_to_ack: Histogram,
    /// From the intent's creation to its `filled` report.
    pub intent_to_fill: Histogram,
    /// Intents seen before (redelivered or repeated): no new order.
    pub duplicate_intents: IntCounter,
    /// Cancel requests for orders not working.
    pub cancels_ignored: IntCounter,
    /// Filled gross exposure at the latest marks.
    pub gross_exposure: Gauge,
    /// Filled net exposure at the latest marks.
    pub net_exposure: Gauge,
    /// Cost-model coefficients, by term (`half_spread`, `impact`).
    pub cost_coefficient: GaugeVec,
    /// Standard errors of the cost-model coefficients, by term.
    pub cost_stderr: GaugeVec,
    /// 1 while trading is halted.
    pub kill_switch: IntGauge,
    /// 1 while a broker venue (IBKR) is connected and reconciled; always 1 for the simulated one.
    pub venue_connected: IntGauge,
    /// Venue events dropped, by why (`unknown_order`, `repeated_execution`).
    pub venue_events_dropped: IntCounterVec,
    /// Orders held in memory: working ones (and a broker venue's finished ones).
    pub tracked_orders: IntGauge,
    /// Intent ids held in memory to refuse a repeat (until risk would refuse it anyway).
    pub remembered_intents: IntGauge,
    /// Intents waiting for their symbol's market data to reach their decision time.
    pub held_intents: IntGauge,
    /// Start-up snapshots of `exec_reports`: rejected, written, and the ledger records read.
    pub snapshots: common::kafka::SnapshotMetrics,
    /// What the fills cost so far, quote currency, by symbol and component (`delay`,
    /// `spread_impact`, `fees`); signed, so a gauge.
    pub execution_cost: GaugeVec,
}

fn latency(name: &str, help: &str) -> Result<Histogram, prometheus::Error> {
    Histogram::with_opts(
        HistogramOpts::new(name, help).buckets(vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]),
    )
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = common::http::registry()?;
        let snapshots = common::kafka::SnapshotMetrics::register(&registry, "order_plane")?;
        let m = Self {
            consumer: ConsumerMetrics::new("order_plane", &registry, true)?,
            registry,
            snapshots,
            orders_placed: IntCounter::new("order_plane_orders_placed_total", "Orders sent to a venue.")?,
            rejections: IntCounterVec::new(
                Opts::new("order_plane_rejections_total", "Orders refused by risk or the venue."),
                &["reason"],
            )?,
            fills: IntCounter::new("order_plane_fills_total", "Fills.")?,
            cancels: IntCounter::new("order_plane_cancels_total", "Orders cancelled.")?,
            notional_traded: Counter::new("order_plane_notional_traded_total", "Sum of price times size of fills.")?,
            commission: Counter::new("order_plane_commission_total", "Sum of commissions.")?,
            slippage_bps: Histogram::with_opts(
                HistogramOpts::new("order_plane_slippage_bps", "Slippage of completed orders versus arrival mid, bps.")
                    .buckets(vec![-20.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
            )?,
            intent_to_ack: latency(
                "order_plane_intent_to_ack_seconds",
                "From intent creation to its first exec report.",
            )?,
            intent_to_fill: latency(
                "order_plane_intent_to_fill_seconds",
                "From intent creation to its filled report.",
            )?,
            duplicate_intents: IntCounter::new(
                "order_plane_duplicate_intents_total",
                "Intents seen before: no new order was placed.",
            )?,
            cancels_ignored: IntCounter::new(
                "order_plane_cancels_ignored_total",
                "Cancel requests for orders that were not working.",
            )?,
            gross_exposure: Gauge::new("order_plane_gross_exposure", "Filled gross exposure at the latest marks.")?,
            net_exposure: Gauge::new("order_plane_net_exposure", "Filled net exposure at the latest marks.")?,
            cost_coefficient: GaugeVec::new(
                Opts::new("order_plane_cost_model_coefficient", "Learned transaction-cost coefficients."),
                &["symbol", "term"],
            )?,
            cost_stderr: GaugeVec::new(
                Opts::new("order_plane_cost_model_stderr", "Standard errors of the cost coefficients."),
                &["symbol", "term"],
            )?,
            kill_switch: IntGauge::new("order_plane_kill_switch", "1 while trading is halted.")?,
            venue_connected: IntGauge::new(
                "order_plane_venue_connected",
                "1 while the venue is connected and reconciled (always 1 for the simulated venue).",
            )?,
            tracked_orders: IntGauge::new(
                "order_plane_tracked_orders",
                "Orders held in memory: working ones, and a broker venue's finished ones.",
            )?,
            execution_cost: GaugeVec::new(
                Opts::new(
                    "order_plane_execution_cost",
                    "What the fills cost since start, quote currency, positive = paid: delay (decision to arrival mid), spread_impact (arrival mid to fill), fees.",
                ),
                &["symbol", "component"],
            )?,
            held_intents: IntGauge::new(
                "order_plane_held_intents",
                "Intents waiting for their symbol's market data to reach their decision time",
            )?,
            remembered_intents: IntGauge::new(
                "order_plane_remembered_intents",
                "Intent ids held in memory to refuse a repeat, until risk would refuse one anyway.",
            )?,
            venue_events_dropped: IntCounterVec::new(
                Opts::new(
                    "order_plane_venue_events_dropped_total",
                    "Venue events dropped: for an order this plane does not know, or an execution reported before.",
                ),
                &["why"],
            )?,
        };
        let r = &m.registry;
        r.register(Box::new(m.orders_placed.clone()))?;
        r.register(Box::new(m.rejections.clone()))?;
        r.register(Box::new(m.fills.clone()))?;
        r.register(Box::new(m.cancels.clone()))?;
        r.register(Box::new(m.notional_traded.clone()))?;
        r.register(Box::new(m.commission.clone()))?;
        r.register(Box::new(m.slippage_bps.clone()))?;
        r.register(Box::new(m.intent_to_ack.clone()))?;
        r.register(Box::new(m.intent_to_fill.clone()))?;
        r.register(Box::new(m.duplicate_intents.clone()))?;
        r.register(Box::new(m.cancels_ignored.clone()))?;
        r.register(Box::new(m.gross_exposure.clone()))?;
        r.register(Box::new(m.net_exposure.clone()))?;
        r.register(Box::new(m.cost_coefficient.clone()))?;
        r.register(Box::new(m.cost_stderr.clone()))?;
        r.register(Box::new(m.kill_switch.clone()))?;
        r.register(Box::new(m.venue_connected.clone()))?;
        r.register(Box::new(m.venue_events_dropped.clone()))?;
        r.register(Box::new(m.tracked_orders.clone()))?;
        r.register(Box::new(m.remembered_intents.clone()))?;
        r.register(Box::new(m.held_intents.clone()))?;
        r.register(Box::new(m.execution_cost.clone()))?;
        // Series exist from the start, so dashboards show 0 rather than "no data".
        m.consumer.duplicates.with_label_values(&[common::topics::MARKET_EVENTS]);
        for why in ["unknown_order", "repeated_execution"] {
            m.venue_events_dropped.with_label_values(&[why]);
        }
        for reason in ALL_REASONS {
            m.rejections.with_label_values(&[reason.as_str()]);
        }
        Ok(m)
    }
}

/// Every rejection reason, so each has a series from the start.
const ALL_REASONS: [RejectReason; 15] = [
    RejectReason::MaxGrossExposure,
    RejectReason::MaxNetExposure,
    RejectReason::MaxPositionSize,
    RejectReason::MaxOrderNotional,
    RejectReason::PriceCollar,
    RejectReason::Throttled,
    RejectReason::BelowMinimum,
    RejectReason::LotSize,
    RejectReason::UnknownSymbol,
    RejectReason::StaleMarketData,
    RejectReason::KillSwitch,
    RejectReason::InvalidQuantity,
    RejectReason::InvalidPrice,
    RejectReason::VenueRejected,
    RejectReason::MalformedIntent,
];
