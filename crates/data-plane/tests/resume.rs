//! Replay checkpoints through a real broker: a Data Plane that restarts resumes from its last
//! checkpoint and publishes exactly what an uninterrupted run would have published from there on,
//! with the same event ids; a finished replay publishes nothing more.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use common::codec;
use common::config::AppConfig;
use common::events::{MarketEvent, OfiEvent};
use common::kafka;
use common::topics::{MARKET_EVENTS, OFI_EVENTS, REPLAY_CHECKPOINTS};
use common::types::EventId;
use data_plane::checkpoint::{self, Checkpoint, Resume};
use data_plane::source::Replay;
use rdkafka::producer::FutureRecord;
use test_support::{Broker, spot_fixture, unique};
use tokio_util::sync::CancellationToken;

const ROWS: usize = 6_000;
const RESUME_AT: u64 = 2_500;

/// Every event of a topic, by event id, as JSON without `ts_init` (the wall-clock field).
type Events = BTreeMap<EventId, (u64, serde_json::Value)>;

fn read(cfg: &AppConfig, topic: &str) -> Events {
    let records = kafka::read_to_end(&cfg.kafka, &cfg.kafka.topic(topic), Duration::from_secs(30)).unwrap();
    let mut events = Events::new();
    for r in records {
        let (id, ts) = if topic == MARKET_EVENTS {
            let env = codec::decode::<MarketEvent>(&r.payload).unwrap();
            (env.event_id, env.ts_event.0)
        } else {
            let env = codec::decode::<OfiEvent>(&r.payload).unwrap();
            (env.event_id, env.ts_event.0)
        };
        let mut json: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        json.as_object_mut().unwrap().remove("ts_init");
        assert!(events.insert(id, (ts, json)).is_none(), "{topic}: {id} published twice");
    }
    events
}

async fn replay(cfg: &AppConfig) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = data_plane::run(cfg.clone(), listener, CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("replay finishes").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replay_resumes_at_its_checkpoint_with_the_same_events() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = spot_fixture(dir.path(), ROWS);

    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.partitions = 2;
    cfg.data_plane.replay.path = path.clone();
    cfg.data_plane.replay.speed = "max".into();
    cfg.data_plane.replay.exit_when_done = true;
    cfg.app.instance_id = "resume-test".into();
    cfg.validate().unwrap();
    let stream = data_plane::run::stream_name(Replay::open(&path, 1).unwrap().files(), &cfg.data_plane);

    // An uninterrupted run is the reference, and leaves a finished checkpoint.
    let mut clean = cfg.clone();
    clean.kafka.topic_prefix = unique("clean_");
    replay(&clean).await;
    let (all_market, all_ofi) = (read(&clean, MARKET_EVENTS), read(&clean, OFI_EVENTS));
    // One market event per row, and the end of the input for each of the fixture's two symbols.
    assert_eq!(all_market.len(), ROWS + 2, "one market event per row, and two `ended`");
    assert_eq!(
        tokio::task::spawn_blocking(move || checkpoint::load(&clean.kafka, &stream)).await.unwrap().unwrap(),
        Resume { position: ROWS as u64, finished: true }
    );

    // A run that stopped after RESUME_AT rows had its checkpoint written.
    let mut resumed = cfg.clone();
    resumed.kafka.topic_prefix = unique("resumed_");
    let topic = resumed.kafka.topic(REPLAY_CHECKPOINTS);
    kafka::ensure_topics(&resumed.kafka, std::slice::from_ref(&topic)).await.unwrap();
    let producer = kafka::producer(&resumed.kafka, "resume-test").unwrap();
    let stream = data_plane::run::stream_name(Replay::open(&path, 1).unwrap().files(), &cfg.data_plane);
    let cp = serde_json::to_vec(&Checkpoint { stream: stream.clone(), position: RESUME_AT, finished: false }).unwrap();
    // Under the key the Data Plane writes its checkpoints with: one stream's checkpoints share a
    // partition, the only order the topic keeps. (Under another key, this one could be read after
    // the resumed run's own, in whatever order the partitions come, and win.)
    let key = format!("{:016x}", common::ids::stream_hash(&stream));
    producer.send(FutureRecord::<str, _>::to(&topic).key(&key).payload(&cp), Duration::from_secs(5)).await.unwrap();
    replay(&resumed).await;

    let (market, ofi) = (read(&resumed, MARKET_EVENTS), read(&resumed, OFI_EVENTS));
    assert_eq!(market.len(), ROWS - RESUME_AT as usize + 2, "exactly the rows from the checkpoint on, and the end");
    for (id, event) in market.iter().chain(&ofi) {
        let reference = all_market.get(id).or_else(|| all_ofi.get(id));
        assert_eq!(reference, Some(event), "{id} is what the uninterrupted run published");
    }
    // A window is published by the first row at or after its end: the resumed run publishes
    // exactly the windows ending after the last row before the checkpoint.
    let before: u64 = lines[RESUME_AT as usize].split(',').next().unwrap().parse().unwrap();
    let expected: Vec<_> = all_ofi.iter().filter(|(_, (end, _))| *end > before).map(|(id, _)| *id).collect();
    assert_eq!(ofi.keys().copied().collect::<Vec<_>>(), expected);

    // Started again, a finished replay publishes nothing.
    replay(&resumed).await;
    assert_eq!(read(&resumed, MARKET_EVENTS).len(), market.len());
    assert_eq!(read(&resumed, OFI_EVENTS).len(), ofi.len());
}
