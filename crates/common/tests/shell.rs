//! The shared consumer shell against a real broker: each input's outputs are published, a record
//! that does not decode is counted and skipped with its offset stored like any other, and a
//! restarted consumer goes on after the last input, never back to the undecodable one.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clock::{Clock, SystemClock};
use common::codec::{self, DecodeError};
use common::config::KafkaConfig;
use common::core::{Core, Event, Topic};
use common::events::{CancelIntent, Envelope, ExecEvent, IntentEvent, IntentId, SCHEMA_VERSION, Source, TradingHalt};
use common::http::Health;
use common::kafka::shell::{ConsumerMetrics, Plane, Shell};
use common::kafka::{self, BrokerError, Publisher};
use common::service::ServiceError;
use common::topics::{EXEC_REPORTS, ORDER_INTENTS};
use common::types::{EventId, Symbol, UnixNanos};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use test_support::{Broker, unique};
use tokio_util::sync::CancellationToken;

fn source() -> Arc<Source> {
    Arc::new(Source { plane: "test".into(), instance: "test".into() })
}

/// Input record `n`: a cancel intent.
fn cancel(n: u64) -> Vec<u8> {
    let env = Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(uuid::Uuid::from_u64_pair(1, n)),
        source: source(),
        ts_event: UnixNanos(n),
        ts_init: UnixNanos(n),
        causation_id: None,
        payload: IntentEvent::Cancel(CancelIntent {
            intent_id: IntentId(uuid::Uuid::from_u64_pair(2, n)),
            symbol: Symbol::new("BTCUSDT").unwrap(),
        }),
    };
    let mut record = Vec::new();
    codec::encode_into(&env, &mut record);
    record
}

/// A halt whose reason says what caused it: the output of [`Echo`], made at `ts_init` (the
/// record's Kafka timestamp).
fn halt(n: u64, reason: String, ts_init: UnixNanos) -> Envelope<ExecEvent> {
    Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(uuid::Uuid::from_u64_pair(3, n)),
        source: source(),
        ts_event: UnixNanos(n),
        ts_init,
        causation_id: None,
        payload: ExecEvent::Halt(TradingHalt { halted: true, reason, cancel_open: false }),
    }
}

/// A core that answers each intent with one halt naming the intent's event, and each record the
/// decoder refused with one halt naming the reason. The answer to the input at `refused_at` is
/// stamped a day ahead, which the broker refuses (`InvalidTimestamp`: Kafka 4 takes records at
/// most `log.message.timestamp.after.max.ms`, an hour, ahead): its delivery fails.
#[derive(Default)]
struct Echo {
    handled: Vec<EventId>,
    refused_at: Option<u64>,
}

impl Echo {
    fn made(&self, position: u64) -> UnixNanos {
        let now = SystemClock.now();
        if self.refused_at == Some(position) { UnixNanos(now.0 + 86_400 * 1_000_000_000) } else { now }
    }
}

impl Core for Echo {
    const INPUTS: &'static [Topic] = &[Topic::Intent];
    type Output = ExecEvent;
    type Outcome = ();

    fn handle(&mut self, input: &Event, position: u64, out: &mut Vec<Envelope<ExecEvent>>) {
        if let Event::Intent(env) = input {
            self.handled.push(env.event_id);
            out.push(halt(position, env.event_id.to_string(), self.made(position)));
        }
    }

    fn refused(&mut self, _: Topic, _: &[u8], error: &DecodeError, out: &mut Vec<Envelope<ExecEvent>>) -> bool {
        out.push(halt(u64::MAX, format!("refused: {}", error.reason()), SystemClock.now()));
        true
    }
}

/// A plane that adds nothing to the loop.
#[derive(Default)]
struct Bare(Echo);

impl Plane for Bare {
    type Core = Echo;
    type Outside = std::convert::Infallible;

    fn core(&mut self) -> &mut Echo {
        &mut self.0
    }
}

/// The offset `group` has committed on partition 0 of `topic`.
async fn committed(cfg: &KafkaConfig, group: &str, topic: &str) -> Option<i64> {
    let (cfg, group, topic) = (cfg.clone(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let probe = kafka::consumer(&cfg, &group, "probe").unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        let at = probe.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
        match at.find_partition(&topic, 0)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    })
    .await
    .unwrap()
}

/// Runs a shell over `plane` until `group` has committed `upto` on the input; returns the
/// plane and the metrics.
async fn consume_until(
    cfg: &KafkaConfig,
    group: &str,
    publisher: &mut Publisher,
    mut plane: Bare,
    upto: i64,
) -> (Bare, ConsumerMetrics) {
    let metrics = ConsumerMetrics::new("test", &prometheus::Registry::new(), false).unwrap();
    let health = Health::new();
    let shell = Shell::<Echo>::start(cfg, group, "shell-test", publisher, &metrics, &health).unwrap();
    let shutdown = CancellationToken::new();
    let stop = {
        let (cfg, group, input, shutdown) = (cfg.clone(), group.to_owned(), cfg.topic(ORDER_INTENTS), shutdown.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut at = None;
            while at != Some(upto) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                at = committed(&cfg, &group, &input).await;
            }
            shutdown.cancel();
            at
        })
    };
    shell.run(&mut plane, publisher, &shutdown).await.unwrap();
    assert_eq!(stop.await.unwrap(), Some(upto), "the group committed every input within a minute");
    (plane, metrics)
}

/// Topics for one test, under a prefix of its own, with `inputs` on `order_intents`.
async fn setup(inputs: &[Vec<u8>]) -> (KafkaConfig, Publisher) {
    let cfg = KafkaConfig {
        bootstrap_servers: Broker::shared().bootstrap(),
        topic_prefix: unique("shell_"),
        partitions: 1,
        ..KafkaConfig::default()
    };
    let partitions = kafka::ensure_topics(&cfg, &[cfg.topic(ORDER_INTENTS), cfg.topic(EXEC_REPORTS)]).await.unwrap();
    let publisher = Publisher::new(kafka::tracked_producer(&cfg, "test").unwrap(), &cfg, partitions);
    for payload in inputs {
        send(&cfg, payload).await;
    }
    (cfg, publisher)
}

/// Produces `payload` on `order_intents`.
async fn send(cfg: &KafkaConfig, payload: &[u8]) {
    let producer = kafka::producer(cfg, "test").unwrap();
    let topic = cfg.topic(ORDER_INTENTS);
    let record = FutureRecord::<str, [u8]>::to(&topic).key("BTCUSDT").payload(payload);
    producer.send(record, Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_counted_skipped_and_never_read_again() {
    // The undecodable record last: no later offset stored would cover it.
    let (cfg, mut publisher) = setup(&[cancel(0), cancel(1), b"not json".to_vec()]).await;
    let (input, output) = (cfg.topic(ORDER_INTENTS), cfg.topic(EXEC_REPORTS));
    let group = unique("group_");

    let (plane, metrics) = consume_until(&cfg, &group, &mut publisher, Bare::default(), 3).await;
    let intents = [EventId(uuid::Uuid::from_u64_pair(1, 0)), EventId(uuid::Uuid::from_u64_pair(1, 1))];
    assert_eq!(plane.0.handled, intents, "the two intents reached the core, in order");
    assert_eq!(metrics.messages_processed.with_label_values(&[ORDER_INTENTS]).get(), 3);
    assert_eq!(metrics.decode_errors.with_label_values(&[&input, "invalid_json"]).get(), 1);
    let (c, o) = (cfg.clone(), output.clone());
    let published = tokio::task::spawn_blocking(move || kafka::read_to_end(&c, &o, Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap();
    let reasons: Vec<String> = published
        .iter()
        .map(|r| match codec::decode::<ExecEvent>(&r.payload).unwrap().payload {
            ExecEvent::Halt(h) => h.reason,
            other => panic!("not an output of Echo: {other:?}"),
        })
        .collect();
    let want = [intents[0].to_string(), intents[1].to_string(), "refused: invalid_json".to_owned()];
    assert_eq!(reasons, want, "every input's outputs, the refused record's answer among them, in input order");

    // Restarted, the consumer takes only what came since: nothing before offset 3 again.
    send(&cfg, &cancel(3)).await;
    let (plane, metrics) = consume_until(&cfg, &group, &mut publisher, Bare::default(), 4).await;
    assert_eq!(plane.0.handled, [EventId(uuid::Uuid::from_u64_pair(1, 3))]);
    assert_eq!(metrics.messages_processed.with_label_values(&[ORDER_INTENTS]).get(), 1);
    assert_eq!(metrics.decode_errors.with_label_values(&[&input, "invalid_json"]).get(), 0);
}

/// The at-least-once rule: the output of input 2 is refused by the broker, so neither its offset
/// nor any later one is stored, and the loop stops with the delivery's error even though no
/// input follows the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_offset_is_stored_from_an_input_whose_output_was_not_delivered() {
    let (cfg, mut publisher) = setup(&[cancel(0), cancel(1), cancel(2), cancel(3)]).await;
    let group = unique("group_");
    let metrics = ConsumerMetrics::new("test", &prometheus::Registry::new(), false).unwrap();
    let shell = Shell::<Echo>::start(&cfg, &group, "shell-test", &publisher, &metrics, &Health::new()).unwrap();
    let mut plane = Bare(Echo { refused_at: Some(2), ..Echo::default() });
    // The failed delivery ends the loop by itself; the stop after a minute only keeps a
    // regression from hanging the test (which then fails: the loop had to be told to stop).
    let shutdown = CancellationToken::new();
    let bound = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            shutdown.cancel();
        }
    });
    let ended = shell.run(&mut plane, &mut publisher, &shutdown).await;
    bound.abort();
    assert!(!shutdown.is_cancelled(), "the loop waited for an input after the failed delivery");
    assert!(matches!(ended, Err(ServiceError::Broker(BrokerError::Delivery(_)))), "{ended:?}");
    let at = committed(&cfg, &group, &cfg.topic(ORDER_INTENTS)).await;
    assert!(at.is_none_or(|offset| offset <= 2), "committed {at:?}: input 2 must be read again");
}
