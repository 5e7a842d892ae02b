//! Event-time execution end to end: the three planes through a real Kafka broker publish the same
//! `order_intents` and `exec_reports` (every field of every record but `ts_init`) at replay speeds
//! `max`, `10x` and `realtime`, with one partition and with three, and after the Order Plane
//! crashed in the middle of a replay, and exactly what `backtest::engine` (the three cores wired
//! together in one process, with no broker) publishes for the same input. `parity.rs` holds the
//! whole shipped samples, all four topics, to the same standard at `max`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod services;

use std::path::Path;

use common::config::AppConfig;
use services::{Topics, difference, expected, through_the_broker};
use test_support::{Broker, spot_fixture, unique};

/// The first 124 s of the spot sample (both symbols): a realtime run takes two minutes.
const ROWS: usize = 40_000;

fn config(broker: &Broker, fixture: &Path, speed: &str, partitions: i32) -> AppConfig {
    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.app.instance_id = "determinism".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique("det_");
    cfg.kafka.partitions = partitions;
    cfg.data_plane.replay.path = fixture.to_owned();
    cfg.data_plane.replay.speed = speed.into();
    cfg.data_plane.replay.exit_when_done = true;
    // The shipped fees exceed every forecast of the samples: with them weighed nothing trades.
    cfg.strategy_plane.cost_aversion = 0.0;
    // Trading starts after 10 windows, so two minutes of data make about a hundred decisions.
    cfg.strategy_plane.warmup_windows = 10;
    cfg
}

/// The topics this test compares; `parity.rs` compares the other two.
fn intents_and_reports(topics: Topics) -> Topics {
    Topics { intents: topics.intents, reports: topics.reports, ..Topics::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_input_gives_the_same_intents_and_fills_at_any_speed_and_partition_count() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (fixture, _) = spot_fixture(dir.path(), ROWS);
    let runs = [("max", 1, None), ("max", 3, None), ("10x", 3, None), ("realtime", 1, None), ("10x", 3, Some(20))];
    let mut want_by_partitions = std::collections::BTreeMap::new();
    for (speed, partitions, crash_after) in runs {
        let cfg = config(broker, &fixture, speed, partitions);
        let want = want_by_partitions.entry(partitions).or_insert_with(|| intents_and_reports(expected(&cfg)));
        let (orders, fills) = (want.orders(), want.fills());
        assert!(orders >= 10 && fills >= 10, "the fixture should trade: {orders} intents, {fills} fills");
        let got = intents_and_reports(through_the_broker(&cfg, want, crash_after).await);
        let crashed = if crash_after.is_some() { ", the Order Plane crashed and restarted" } else { "" };
        let diff = difference(want, &got);
        assert!(diff.is_none(), "at {speed}, {partitions} partition(s){crashed}:\n{}", diff.unwrap_or_default());
    }
}
