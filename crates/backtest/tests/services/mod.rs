//! What the system tests that hold the backtest against the three services share: the records
//! `backtest::engine` publishes for a configuration, the three planes run through a real Kafka
//! broker over the same input, the four topics read back, and the first difference between the
//! two.
//!
//! Records are compared as the bytes the planes publish with `ts_init` set to 0 (the one field a
//! replay cannot reproduce: the wall-clock time a record was made), per stream in log order. A
//! stream is one symbol's records, which Kafka keeps in order on one partition; a record with no
//! key goes to every partition, so each partition's copy is a stream of its own.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use backtest::engine::{self, Published};
use common::codec;
use common::config::AppConfig;
use common::events::{Envelope, ExecEvent, IntentEvent, MarketEvent, OfiEvent, Payload};
use common::topics::{EXEC_REPORTS, MARKET_EVENTS, OFI_EVENTS, ORDER_INTENTS};
use common::types::UnixNanos;
use data_plane::source::Replay;
use test_support::{http_get, wait_for};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Each stream's records of one topic, in log order, as published but with `ts_init` set to 0.
pub type Streams = BTreeMap<String, Vec<String>>;

/// The four topics' records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Topics {
    pub market: Streams,
    pub ofi: Streams,
    pub intents: Streams,
    pub reports: Streams,
}

impl Topics {
    fn all(&self) -> [(&'static str, &Streams); 4] {
        [
            (MARKET_EVENTS, &self.market),
            (OFI_EVENTS, &self.ofi),
            (ORDER_INTENTS, &self.intents),
            (EXEC_REPORTS, &self.reports),
        ]
    }

    /// `order_intents` records of type `order_intent`.
    pub fn orders(&self) -> usize {
        self.intents.values().flatten().filter(|i| i.contains("\"event_type\":\"order_intent\"")).count()
    }

    /// `decision` records.
    pub fn decision_marks(&self) -> usize {
        self.intents.values().flatten().filter(|i| i.contains("\"event_type\":\"decision\"")).count()
    }

    /// Exec reports of a simulated fill.
    pub fn fills(&self) -> usize {
        self.reports.values().flatten().filter(|r| r.contains("\"exec_id\":\"SIM-")).count()
    }

    /// Records per topic, for a failure message.
    pub fn counts(&self) -> String {
        self.all().map(|(topic, s)| format!("{topic} {}", count(s))).join(", ")
    }
}

fn count(streams: &Streams) -> usize {
    streams.values().map(Vec::len).sum()
}

/// The stream a record belongs to: its symbol, or for a record with no key (a halt, a cost model
/// of every symbol) the partition it was read from.
fn stream<P: Payload>(env: &Envelope<P>, partition: i32) -> String {
    env.payload.key().map_or_else(|| format!("(no key) partition {partition}"), str::to_owned)
}

fn canonical<P: Payload + Clone + 'static>(env: &Envelope<P>) -> String {
    let mut env = env.clone();
    env.ts_init = UnixNanos(0);
    String::from_utf8(codec::encode(&env)).unwrap()
}

/// What `backtest::engine` publishes for `cfg`'s input, placed as the planes' producers place it
/// on `cfg.kafka.partitions` partitions.
pub fn expected(cfg: &AppConfig) -> Topics {
    let replay_cfg = &cfg.data_plane.replay;
    let replay = Replay::open(&replay_cfg.path, replay_cfg.loop_count).unwrap();
    let stream_name = data_plane::run::stream_name(replay.files(), &cfg.data_plane);
    let mut topics = Topics::default();
    let partitions = cfg.kafka.partitions;
    fn add<P: Payload + Clone + 'static>(streams: &mut Streams, env: &Envelope<P>, partitions: i32) {
        let record = canonical(env);
        if env.payload.key().is_some() {
            streams.entry(stream(env, 0)).or_default().push(record);
        } else {
            for p in 0..partitions {
                streams.entry(stream(env, p)).or_default().push(record.clone());
            }
        }
    }
    engine::run(cfg, &stream_name, replay, &mut |p| match p {
        Published::Market(env) => add(&mut topics.market, env, partitions),
        Published::Ofi(env) => add(&mut topics.ofi, env, partitions),
        Published::Intent(env) => add(&mut topics.intents, env, partitions),
        Published::Exec(env) => add(&mut topics.reports, env, partitions),
        Published::Refused { .. } | Published::Malformed(_) => {}
    });
    topics
}

/// Reads `topic` of `cfg` into streams, checking that each record, decoded and encoded again, is
/// the bytes the plane published: the canonical form then differs from them in `ts_init` only.
pub async fn read<P: Payload + Clone + Send + 'static>(cfg: &AppConfig, topic: &str) -> Streams {
    let (kafka, name) = (cfg.kafka.clone(), cfg.kafka.topic(topic));
    let records =
        tokio::task::spawn_blocking(move || common::kafka::read_to_end(&kafka, &name, Duration::from_secs(30)))
            .await
            .unwrap()
            .unwrap();
    let mut streams = Streams::new();
    for r in records {
        let at = format!("{topic} partition {} offset {}", r.partition, r.offset);
        let env = codec::decode::<P>(&r.payload).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert!(
            codec::encode(&env) == r.payload,
            "{at}: the record does not encode back to its bytes:\n  {}",
            String::from_utf8_lossy(&r.payload)
        );
        streams.entry(stream(&env, r.partition)).or_default().push(canonical(&env));
    }
    streams
}

/// Whether every order intent in `intents` has a final report in `reports`.
fn settled(intents: &Streams, reports: &Streams) -> bool {
    let finals: BTreeSet<String> = reports
        .values()
        .flatten()
        .filter_map(|r| match codec::decode::<ExecEvent>(r.as_bytes()).ok()?.payload {
            ExecEvent::Report(r) if r.status.is_terminal() => Some(r.intent_id.to_string()),
            _ => None,
        })
        .collect();
    intents.values().flatten().all(|i| match codec::decode::<IntentEvent>(i.as_bytes()).unwrap().payload {
        IntentEvent::Intent(i) => finals.contains(&i.intent_id.to_string()),
        _ => true,
    })
}

type Plane = fn(AppConfig, TcpListener, CancellationToken) -> JoinHandle<Result<(), String>>;

/// The Strategy Plane service.
pub fn strategy(cfg: AppConfig, l: TcpListener, s: CancellationToken) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move { strategy_plane::run::run(cfg, l, s).await.map_err(|e| e.to_string()) })
}

/// The Order Plane service.
pub fn order(cfg: AppConfig, l: TcpListener, s: CancellationToken) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move { order_plane::run::run(cfg, l, s).await.map_err(|e| e.to_string()) })
}

/// Starts `plane` and waits until it says it is ready.
pub async fn start(cfg: &AppConfig, plane: Plane) -> (CancellationToken, JoinHandle<Result<(), String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = plane(cfg.clone(), listener, stop.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(60), "plane ready", || {
            (http_get(addr, "/health/ready").ok()?.0 == 200).then_some(())
        })
    })
    .await
    .unwrap();
    (stop, task)
}

/// How long the planes may publish nothing new, the input all published, before the test takes
/// what is there as their answer (and reports how it differs from what was expected). Only a
/// run that is going to fail waits this long.
const QUIET: Duration = Duration::from_secs(60);

/// Runs the three planes over `cfg`'s input and returns what they published once the input is
/// published, every intent has its final report and `order_intents` and `exec_reports` hold as
/// many records as `want` (or nothing new came for [`QUIET`]). With `crash_after = Some(n)`, the
/// Order Plane's task is aborted once `n` exec reports are on the broker (its consumer and
/// producer dropped, no shutdown: what it had not acknowledged is lost, as in a crash) and a new
/// one started.
pub async fn through_the_broker(cfg: &AppConfig, want: &Topics, crash_after: Option<usize>) -> Topics {
    let (mut order_stop, mut order_task) = start(cfg, order).await;
    let (strategy_stop, strategy_task) = start(cfg, strategy).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data = tokio::spawn(data_plane::run(cfg.clone(), listener, CancellationToken::new()));
    if let Some(n) = crash_after {
        for _ in 0..600 {
            if count(&read::<ExecEvent>(cfg, EXEC_REPORTS).await) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        order_task.abort();
        assert!(order_task.await.unwrap_err().is_cancelled());
        (order_stop, order_task) = start(cfg, order).await;
    }
    // The Data Plane returns once the broker acknowledged every record it published.
    data.await.unwrap().unwrap();
    let market = read::<MarketEvent>(cfg, MARKET_EVENTS).await;
    let ofi = read::<OfiEvent>(cfg, OFI_EVENTS).await;
    let (want_intents, want_reports) = (count(&want.intents), count(&want.reports));
    let (mut intents, mut reports) = (Streams::new(), Streams::new());
    let mut changed = Instant::now();
    loop {
        let now = (read::<IntentEvent>(cfg, ORDER_INTENTS).await, read::<ExecEvent>(cfg, EXEC_REPORTS).await);
        let complete = count(&now.0) == want_intents && count(&now.1) == want_reports && settled(&now.0, &now.1);
        // Complete and the same as a second ago: a record that was still coming would show.
        let same = now.0 == intents && now.1 == reports;
        let done = complete && same;
        if !same {
            changed = Instant::now();
        }
        (intents, reports) = now;
        if done || changed.elapsed() > QUIET {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    strategy_stop.cancel();
    order_stop.cancel();
    strategy_task.await.unwrap().unwrap();
    order_task.await.unwrap().unwrap();
    // Read again once the planes have stopped (a stop flushes what they produced): a record they
    // published after the last poll is compared too.
    let (intents, reports) =
        (read::<IntentEvent>(cfg, ORDER_INTENTS).await, read::<ExecEvent>(cfg, EXEC_REPORTS).await);
    Topics { market, ofi, intents, reports }
}

/// Where `got` differs from `want`: per topic, the counts and each stream's first differing
/// record pair, in full.
pub fn difference(want: &Topics, got: &Topics) -> Option<String> {
    let mut found = Vec::new();
    for ((topic, a), (_, b)) in want.all().into_iter().zip(got.all()) {
        for s in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
            let (x, y) = (a.get(s).map_or(&[][..], Vec::as_slice), b.get(s).map_or(&[][..], Vec::as_slice));
            if let Some(i) = (0..x.len().max(y.len())).find(|&i| x.get(i) != y.get(i)) {
                let show = |r: Option<&String>| r.map_or("(none)", String::as_str).to_owned();
                found.push(format!(
                    "{topic} {s}: record {i} of {} expected / {} published differs:\n  backtest: {}\n  services: {}",
                    x.len(),
                    y.len(),
                    show(x.get(i)),
                    show(y.get(i)),
                ));
            }
        }
    }
    (!found.is_empty())
        .then(|| format!("backtest: {}\nservices: {}\n{}", want.counts(), got.counts(), found.join("\n")))
}
