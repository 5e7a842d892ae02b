//! The Data Plane's Prometheus metrics, in a registry of their own.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::quality::Rejection;

/// Every metric the Data Plane exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// Rows read from the source, good or bad.
    pub messages_processed: IntCounter,
    /// Records acknowledged by the broker, by topic.
    pub events_published: IntCounterVec,
    /// Events refused by the quality checks, by reason.
    pub quality_rejections: IntCounterVec,
    /// Rows that could not be parsed.
    pub malformed_rows: IntCounter,
    /// OFI windows acknowledged by the broker.
    pub ofi_windows: IntCounter,
    /// From handing a row's outputs to the producer to the broker acknowledging all of them.
    pub publish_latency: Histogram,
    /// How far a paced replay is behind its schedule.
    pub replay_lag: Gauge,
    /// Replay rows whose outputs are all on the broker.
    pub replay_position: IntGauge,
    /// 1 once the whole input is published.
    pub replay_complete: IntGauge,
    /// Symbols with no update for longer than the staleness limit.
    pub stale_symbols: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = common::http::registry()?;
        let m = Self {
            messages_processed: IntCounter::new(
                "data_plane_messages_processed_total",
                "Market data rows read from the source.",
            )?,
            events_published: IntCounterVec::new(
                Opts::new("data_plane_events_published_total", "Records acknowledged by the broker."),
                &["topic"],
            )?,
            quality_rejections: IntCounterVec::new(
                Opts::new("data_plane_quality_rejections_total", "Events refused by the quality checks."),
                &["reason"],
            )?,
            malformed_rows: IntCounter::new(
                "data_plane_malformed_rows_total",
                "Source rows that could not be parsed.",
            )?,
            ofi_windows: IntCounter::new("data_plane_ofi_windows_total", "OFI windows published.")?,
            publish_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "data_plane_publish_latency_seconds",
                    "Time from producing a row's records to their broker acknowledgement.",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            )?,
            replay_lag: Gauge::new("data_plane_replay_lag_seconds", "How far a paced replay is behind its schedule.")?,
            replay_position: IntGauge::new(
                "data_plane_replay_position_rows",
                "Replay rows whose records are all acknowledged.",
            )?,
            replay_complete: IntGauge::new(
                "data_plane_replay_complete",
                "1 once the whole replay input is published.",
            )?,
            stale_symbols: IntGauge::new("data_plane_stale_symbols", "Symbols with no recent update.")?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.messages_processed.clone()))?;
        r.register(Box::new(m.events_published.clone()))?;
        r.register(Box::new(m.quality_rejections.clone()))?;
        r.register(Box::new(m.malformed_rows.clone()))?;
        r.register(Box::new(m.ofi_windows.clone()))?;
        r.register(Box::new(m.publish_latency.clone()))?;
        r.register(Box::new(m.replay_lag.clone()))?;
        r.register(Box::new(m.replay_position.clone()))?;
        r.register(Box::new(m.replay_complete.clone()))?;
        r.register(Box::new(m.stale_symbols.clone()))?;
        // Zero-valued series from the start, so dashboards and alerts see every reason.
        for reason in Rejection::ALL {
            m.quality_rejections.with_label_values(&[reason.as_str()]);
        }
        Ok(m)
    }
}
