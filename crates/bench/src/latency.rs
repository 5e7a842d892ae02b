//! Latency from the envelopes' own timestamps. Every plane stamps `ts_init` with the wall clock
//! when it creates a record, and all processes run on one machine, so differences of `ts_init`
//! across planes are latencies:
//!
//! - **tick-to-intent** = `intent.ts_init − window.ts_init`, where `window` is the `ofi_window`
//!   named by the intent's `causation_id`. The Data Plane creates that window while it processes
//!   the tick that closes it (the first event past the window's end), in the same call, so its
//!   `ts_init` is when that tick entered the core. The span covers Data Plane publish (encode,
//!   producer linger), the broker, the Strategy Plane's consumer, decode, signals, the optimizer
//!   and the intent's creation. (`ts_event` is exchange time from the replay file, not usable.)
//! - **intent-to-exec-report** = `report.ts_init − intent.ts_init`, where `report` is the first
//!   `exec_report` whose `causation_id` is the intent's `event_id` (its `accepted` or `rejected`
//!   answer). The span covers the intent's publish, the broker, the Order Plane's consumer,
//!   decode, risk, the simulated venue and the report's creation. It is what the Order Plane's
//!   own `order_plane_intent_to_ack_seconds` histogram measures.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use common::codec;
use common::config::KafkaConfig;
use common::events::{ExecEvent, IntentEvent, OfiEvent};
use common::topics::{EXEC_REPORTS, OFI_EVENTS, ORDER_INTENTS};
use common::types::{EventId, UnixNanos};

/// A latency distribution, microseconds.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    sorted_us: Vec<f64>,
}

impl Distribution {
    /// The distribution of `samples_ns`.
    pub fn new(mut samples_ns: Vec<u64>) -> Self {
        samples_ns.sort_unstable();
        Self { sorted_us: samples_ns.into_iter().map(|ns| ns as f64 / 1e3).collect() }
    }

    /// Number of samples.
    pub fn count(&self) -> usize {
        self.sorted_us.len()
    }

    /// The `q`-quantile (nearest rank), µs.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.sorted_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.sorted_us.len() as f64).ceil() as usize).clamp(1, self.sorted_us.len());
        self.sorted_us[rank - 1]
    }

    /// The largest sample, µs.
    pub fn max(&self) -> f64 {
        self.sorted_us.last().copied().unwrap_or(f64::NAN)
    }

    /// `{count, p50_us, p99_us, p999_us, max_us}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count(),
            "p50_us": round1(self.quantile(0.5)),
            "p99_us": round1(self.quantile(0.99)),
            "p999_us": round1(self.quantile(0.999)),
            "max_us": round1(self.max()),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Both latencies of one run.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// OFI window (tick) → order intent.
    pub tick_to_intent: Distribution,
    /// Order intent → its first exec report.
    pub intent_to_report: Distribution,
    /// Intents without their window or their report in the topics (should be 0).
    pub unmatched: usize,
}

/// Reads the run's `ofi_events`, `order_intents` and `exec_reports` back and pairs them.
pub fn collect(kafka: &KafkaConfig) -> Result<Latencies> {
    let read = |topic: &str| common::kafka::read_to_end(kafka, &kafka.topic(topic), Duration::from_secs(30));
    let mut windows: HashMap<EventId, UnixNanos> = HashMap::new();
    for r in read(OFI_EVENTS)? {
        if let Ok(env) = codec::decode::<OfiEvent>(&r.payload) {
            windows.insert(env.event_id, env.ts_init);
        }
    }
    let mut first_report: HashMap<EventId, UnixNanos> = HashMap::new();
    for r in read(EXEC_REPORTS)? {
        if let Ok(env) = codec::decode::<ExecEvent>(&r.payload)
            && matches!(env.payload, ExecEvent::Report(_))
            && let Some(cause) = env.causation_id
        {
            let t = first_report.entry(cause).or_insert(env.ts_init);
            *t = (*t).min(env.ts_init);
        }
    }
    let (mut tick, mut report, mut unmatched) = (Vec::new(), Vec::new(), 0);
    for r in read(ORDER_INTENTS)? {
        let Ok(env) = codec::decode::<IntentEvent>(&r.payload) else { continue };
        if !matches!(env.payload, IntentEvent::Intent(_)) {
            continue;
        }
        match env.causation_id.and_then(|c| windows.get(&c)) {
            Some(w) => tick.push(env.ts_init.saturating_sub(*w)),
            None => unmatched += 1,
        }
        match first_report.get(&env.event_id) {
            Some(t) => report.push(t.saturating_sub(env.ts_init)),
            None => unmatched += 1,
        }
    }
    Ok(Latencies { tick_to_intent: Distribution::new(tick), intent_to_report: Distribution::new(report), unmatched })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let d = Distribution::new((1..=1000).map(|i| i * 1000).collect());
        assert_eq!(d.quantile(0.5), 500.0);
        assert_eq!(d.quantile(0.99), 990.0);
        assert_eq!(d.quantile(0.999), 999.0);
        assert_eq!(d.max(), 1000.0);
        assert!(Distribution::default().quantile(0.5).is_nan());
    }
}
