//! Parity of the backtest with the services (issue #20): for each shipped sample, the records
//! `backtest::engine` publishes — `market_events`, `ofi_events`, `order_intents` and
//! `exec_reports` — are byte for byte, `ts_init` aside, what the three planes publish through a
//! real Kafka broker for the same input and configuration, per symbol in log order.
//!
//! The cases run side by side on one broker (distinct topic prefixes), a pair at a time.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod services;

use std::path::{Path, PathBuf};

use common::config::{AppConfig, load_from, override_var};
use services::{difference, expected, through_the_broker};
use test_support::{Broker, unique};

const SPOT: &str = "binance-spot-btcusdt-ethusdt-2024-08-09.csv";
const USDM: &str = "binance-usdm-btcusdt-2024-08-08.csv";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped configuration for `sample` at replay speed `max` with `sets` over it, on a broker
/// topic prefix of its own; neither `.env` nor the process environment is read. `source.instance`
/// is set, since the services would otherwise use the host name and the backtest `backtest`.
fn config(sample: &str, partitions: i32, sets: &[(&str, &str)]) -> AppConfig {
    let path = root().join("data").join(sample);
    let mut vars = vec![
        override_var("data_plane.replay.path", path.to_str().unwrap()),
        override_var("data_plane.replay.speed", "max"),
        override_var("data_plane.replay.exit_when_done", "true"),
        override_var("app.instance_id", "parity"),
    ];
    vars.extend(sets.iter().map(|(k, v)| override_var(k, v)));
    let mut cfg = load_from(&root().join("config"), &vars).unwrap();
    cfg.kafka.bootstrap_servers = Broker::shared().bootstrap();
    cfg.kafka.topic_prefix = unique("parity_");
    cfg.kafka.partitions = partitions;
    cfg
}

/// With the shipped 10 bp fee weighed no forecast of the samples pays for a trade; with the costs
/// left out they trade (the golden masters' setting).
const TRADING: &[(&str, &str)] = &[("strategy_plane.cost_aversion", "0")];

/// Runs `cfg` through the backtest and through the services and fails, with the first
/// differing records, unless they published the same.
async fn parity(cfg: AppConfig, trades: bool) {
    let want = expected(&cfg);
    let (orders, fills, marks) = (want.orders(), want.fills(), want.decision_marks());
    if trades {
        assert!(orders >= 10 && fills >= 10, "the sample should trade: {orders} intents, {fills} fills");
    } else {
        assert!(orders == 0 && marks > 0, "the sample should decide without trading: {orders} intents, {marks} marks");
    }
    let got = through_the_broker(&cfg, &want, None).await;
    let sample = cfg.data_plane.replay.path.file_name().unwrap().to_string_lossy();
    eprintln!("{sample}, {} partition(s): {}", cfg.kafka.partitions, got.counts());
    let diff = difference(&want, &got);
    assert!(diff.is_none(), "the services differ from the backtest:\n{}", diff.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spot_sample_publishes_what_the_backtest_publishes() {
    parity(config(SPOT, 1, TRADING), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usdm_sample_publishes_what_the_backtest_publishes() {
    parity(config(USDM, 1, TRADING), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spot_sample_publishes_what_the_backtest_publishes_on_three_partitions() {
    parity(config(SPOT, 3, TRADING), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usdm_sample_under_the_shipped_configuration_publishes_what_the_backtest_publishes() {
    parity(config(USDM, 1, &[]), false).await;
}
