//! The broker's own one-hop latency for several producer linger / consumer fetch-wait settings,
//! measured with the bench's bare client (`raw::hop_latency`) on a fresh, warmed-up Kafka: how
//! low any latency that crosses this broker once can go, whatever the planes do.
//!
//! `cargo run --release -p bench --example hop_probe` (about 30 s per setting).

use bench::raw;
use bench::stack::Broker;
use common::config::KafkaConfig;

/// (linger.ms, fetch.wait.max.ms) pairs. Kafka answers a fetch once a record is there, so the
/// fetch wait should not matter; linger does. Two settings come twice, first and last: the broker
/// keeps getting faster for minutes (JIT), and only a setting measured at both ends shows how
/// much of a difference is just its place in the order.
const SETTINGS: [(u32, u32); 6] = [(1, 5), (1, 100), (0, 100), (5, 100), (1, 5), (1, 100)];
const RATE: f64 = 5_000.0;
const SAMPLES: usize = 20_000;
/// The mean encoded size of a `market_events` record of the sample data.
const RECORD_BYTES: usize = 325;

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hop-probe-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))?;
    let broker = Broker::start(&dir)?;
    // Kafka's JVM compiles its hot paths during the first seconds of traffic: a first round,
    // not reported, so that the settings are compared on a warm broker.
    let warm = KafkaConfig { bootstrap_servers: broker.bootstrap(), ..KafkaConfig::default() };
    raw::hop_latency(&warm, "probe_warm_up", RATE, SAMPLES, RECORD_BYTES)?;
    for (i, (linger_ms, fetch_wait_ms)) in SETTINGS.into_iter().enumerate() {
        let cfg =
            KafkaConfig { bootstrap_servers: broker.bootstrap(), linger_ms, fetch_wait_ms, ..KafkaConfig::default() };
        let hop = bench::latency::Distribution::new(raw::hop_latency(
            &cfg,
            &format!("probe_{i}"),
            RATE,
            SAMPLES,
            RECORD_BYTES,
        )?);
        println!(
            "linger.ms {linger_ms} fetch.wait.max.ms {fetch_wait_ms}: {} samples, p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
            hop.count(),
            hop.quantile(0.5),
            hop.quantile(0.99),
            hop.quantile(0.999),
            hop.max()
        );
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
