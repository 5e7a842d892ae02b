//! The consumer plumbing against a real broker: offsets move only once a message's outputs are
//! acknowledged, so a restarted consumer resumes right after the last fully processed message.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use common::config::KafkaConfig;
use common::events::{CancelIntent, Envelope, IntentEvent, IntentId, SCHEMA_VERSION, Source};
use common::kafka::{self, AckQueue, Consumed, Publisher};
use common::topics::ORDER_INTENTS;
use common::types::{EventId, Symbol, UnixNanos};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureRecord;
use test_support::{Broker, unique};

async fn next(consumer: &StreamConsumer) -> rdkafka::message::OwnedMessage {
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 s")
        .unwrap()
        .detach()
}

/// An output record: a cancel intent, the smallest payload a plane publishes.
fn cancel(n: i64) -> Envelope<IntentEvent> {
    Envelope {
        schema_version: SCHEMA_VERSION,
        event_id: EventId(uuid::Uuid::from_u64_pair(1, n.unsigned_abs())),
        source: Arc::new(Source { plane: "test".into(), instance: "test".into() }),
        ts_event: UnixNanos(1),
        ts_init: UnixNanos(1),
        causation_id: None,
        payload: IntentEvent::Cancel(CancelIntent {
            intent_id: IntentId(uuid::Uuid::from_u64_pair(2, n.unsigned_abs())),
            symbol: Symbol::new("BTCUSDT").unwrap(),
        }),
    }
}

/// A new topic (named from `prefix`) holding `n` records, "0" to "n-1", on one key.
async fn numbered_topic(cfg: &KafkaConfig, prefix: &str, n: u32) -> String {
    let topic = unique(prefix);
    kafka::ensure_topics(cfg, std::slice::from_ref(&topic)).await.unwrap();
    let producer = kafka::producer(cfg, "test").unwrap();
    for i in 0..n {
        let payload = i.to_string();
        producer
            .send(FutureRecord::<str, str>::to(&topic).key("k").payload(&payload), Duration::from_secs(10))
            .await
            .unwrap();
    }
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_after_the_last_acknowledged_message() {
    let broker = Broker::shared();
    let cfg = KafkaConfig { bootstrap_servers: broker.bootstrap(), partitions: 1, ..KafkaConfig::default() };
    let input = numbered_topic(&cfg, "in_", 100).await;

    // The outputs go through a plane's publisher (order_intents under their own prefix).
    let out_cfg = KafkaConfig { topic_prefix: unique("out_"), ..cfg.clone() };
    let output = out_cfg.topic(ORDER_INTENTS);
    let partitions = kafka::ensure_topics(&out_cfg, std::slice::from_ref(&output)).await.unwrap();
    let mut publisher = Publisher::new(kafka::tracked_producer(&out_cfg, "test").unwrap(), &out_cfg, partitions);

    let group = unique("group_");
    let consumer = Arc::new(kafka::GroupConsumer::new(&cfg, &group, "first").unwrap());
    consumer.subscribe(&[&input]).unwrap();
    let (acks, task) = AckQueue::spawn(16, publisher.deliveries().clone(), kafka::store_offsets(Arc::clone(&consumer)));
    for expected in 0..60 {
        let msg = next(&consumer).await;
        assert_eq!(msg.offset(), expected);
        // "Process": one output per input, acknowledged by the broker before the offset moves.
        publisher.publish(&cancel(expected)).await.unwrap();
        assert!(acks.push(Consumed::of(&msg), publisher.sent()).await);
    }
    // A message taken but never processed (the plane crashed mid-way) must come back.
    let _taken = next(&consumer).await;
    drop(acks);
    assert_eq!(task.await.unwrap().unwrap(), 60);
    kafka::commit_stored(&consumer);
    drop(consumer);

    // The same instance (same client id, hence the same static group member) comes back.
    let resumed = kafka::consumer(&cfg, &group, "first").unwrap();
    resumed.subscribe(&[&input]).unwrap();
    assert_eq!(next(&resumed).await.offset(), 60, "resumes right after the last acknowledged message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_to_end_sees_the_newest_batch() {
    // A rebuild must read up to the newest batch (tansu 0.6, the broker before Kafka, reported a
    // high watermark without it).
    let broker = Broker::shared();
    let cfg = KafkaConfig { bootstrap_servers: broker.bootstrap(), partitions: 2, ..KafkaConfig::default() };
    let topic = unique("ledger_");
    kafka::ensure_topics(&cfg, std::slice::from_ref(&topic)).await.unwrap();
    let producer = kafka::producer(&cfg, "test").unwrap();
    let mut sent = 0;
    for batch in 1..=3 {
        for i in 0..batch {
            let (key, payload) = (format!("k{i}"), format!("{batch}-{i}"));
            producer
                .send(FutureRecord::<str, str>::to(&topic).key(&key).payload(&payload), Duration::from_secs(10))
                .await
                .unwrap();
            sent += 1;
        }
        let (c, t) = (cfg.clone(), topic.clone());
        let read = tokio::task::spawn_blocking(move || kafka::read_to_end(&c, &t, Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.len(), sent, "after batch {batch}");
    }
}

/// A record larger than the decoder takes (a poison message) must reach the consumer, to be
/// counted and skipped, and must not stall the records behind it. Kafka refuses such a record
/// unless the topic allows it (`max.message.bytes`), as this one does: a topic configured so by
/// an operator, or a broker with a larger `message.max.bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_does_not_stall_the_partition() {
    let broker = Broker::shared();
    let cfg = KafkaConfig { bootstrap_servers: broker.bootstrap(), partitions: 1, ..KafkaConfig::default() };
    let topic = unique("big_");
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "4000000");
    for result in admin.create_topics(&[new], &AdminOptions::new()).await.unwrap() {
        result.unwrap();
    }
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("message.max.bytes", "4000000")
        .create()
        .unwrap();
    let consumer = kafka::consumer(&cfg, &unique("group_"), "big").unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let big = vec![b'x'; common::codec::MAX_RECORD_BYTES + 200_000];
    for round in 0..2 {
        for payload in [b"before".to_vec(), big.clone(), b"after".to_vec()] {
            producer
                .send(FutureRecord::<str, [u8]>::to(&topic).key("k").payload(&payload), Duration::from_secs(10))
                .await
                .unwrap();
        }
        for expected in [6, big.len(), 5] {
            assert_eq!(next(&consumer).await.payload().unwrap().len(), expected, "round {round}");
        }
    }
}

/// A replayed event happened long ago, but its record is stamped with when it was published:
/// Kafka's time-based retention counts from the record timestamp, and would otherwise delete a
/// replay of 2024 data at its next check, before any plane had read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_is_stamped_with_its_publication_time() {
    let broker = Broker::shared();
    let cfg =
        KafkaConfig { bootstrap_servers: broker.bootstrap(), topic_prefix: unique("ts_"), ..KafkaConfig::default() };
    let topic = cfg.topic(ORDER_INTENTS);
    let partitions = kafka::ensure_topics(&cfg, std::slice::from_ref(&topic)).await.unwrap();
    let mut publisher = Publisher::new(kafka::tracked_producer(&cfg, "test").unwrap(), &cfg, partitions);
    let now_ms =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let mut event = cancel(1);
    event.ts_event = UnixNanos(1_723_161_600_000_000_000); // 2024-08-09, the sample data's day
    // An hour ago, so that a producer stamping the send time instead would fail too.
    let made_ms = now_ms - 3_600_000;
    event.ts_init = UnixNanos(u64::try_from(made_ms).unwrap() * 1_000_000);
    publisher.publish(&event).await.unwrap();
    publisher.delivered().await.unwrap();

    let consumer = kafka::consumer(&cfg, &unique("group_"), "ts").unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let msg = next(&consumer).await;
    assert_eq!(msg.timestamp().to_millis(), Some(made_ms), "the record carries ts_init, not ts_event");
}

/// The backlog is what the consumer has not read, whatever it committed: after reading 20 of 50
/// records and committing nothing (Kafka's lag would say 50), it is 30, then 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_counts_what_is_not_read_yet_not_what_is_committed() {
    let broker = Broker::shared();
    let cfg = KafkaConfig { bootstrap_servers: broker.bootstrap(), partitions: 1, ..KafkaConfig::default() };
    let input = numbered_topic(&cfg, "backlog_", 50).await;
    let consumer = Arc::new(kafka::GroupConsumer::new(&cfg, &unique("group_"), "backlog").unwrap());
    consumer.subscribe(&[&input]).unwrap();
    let backlog = |c: Arc<kafka::GroupConsumer>| async move {
        tokio::task::spawn_blocking(move || kafka::backlog(&c, Duration::from_secs(10)).unwrap()).await.unwrap()
    };
    for _ in 0..20 {
        next(&consumer).await;
    }
    assert_eq!(backlog(Arc::clone(&consumer)).await.get(&input), Some(&30));
    for _ in 0..30 {
        next(&consumer).await;
    }
    assert_eq!(backlog(Arc::clone(&consumer)).await.get(&input), Some(&0));
}

/// Consumer lag is the broker's end offset less the group's committed offset, per partition,
/// whatever the consumer has read beyond it: with 50 records on the partition, 40 read and 20
/// committed, the gauge shows 30 (and the backlog 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_gauge_is_the_end_less_the_committed_offset() {
    let broker = Broker::shared();
    let cfg = KafkaConfig { bootstrap_servers: broker.bootstrap(), partitions: 1, ..KafkaConfig::default() };
    let input = numbered_topic(&cfg, "lag_", 50).await;
    let consumer = Arc::new(kafka::GroupConsumer::new(&cfg, &unique("group_"), "lag").unwrap());
    consumer.subscribe(&[&input]).unwrap();
    for _ in 0..40 {
        next(&consumer).await;
    }
    // Everything up to offset 19 processed: the group commits 20.
    consumer.store_offset(&input, 0, 19).unwrap();
    kafka::commit_stored(&consumer);

    let lag = prometheus::IntGaugeVec::new(prometheus::Opts::new("lag", "lag"), &["topic", "partition"]).unwrap();
    let backlog = prometheus::IntGaugeVec::new(prometheus::Opts::new("backlog", "backlog"), &["topic"]).unwrap();
    let gauges = kafka::OffsetGauges { lag: lag.clone(), backlog: Some(backlog.clone()) };
    let task = kafka::spawn_offset_gauges(
        Arc::clone(&consumer),
        gauges,
        vec![(input.clone(), "input")],
        Duration::from_millis(100),
    );
    let measured = tokio::task::spawn_blocking(move || {
        test_support::wait_for(Duration::from_secs(30), "the lag gauge", || {
            let at = lag.get_metric_with_label_values(&["input", "0"]).ok()?.get();
            (at != 0).then_some(at)
        })
    })
    .await
    .unwrap();
    assert_eq!(measured, 30, "end 50 less committed 20");
    assert_eq!(backlog.with_label_values(&["input"]).get(), 10, "end 50 less position 40");
    task.abort();
}

/// A restarted plane reads back the records just before where its group resumes, partition by
/// partition, to rebuild what it had learned; nothing of the group moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_before_the_committed_offsets_are_read_back() {
    use rdkafka::{Offset, TopicPartitionList};
    let broker = Broker::shared();
    let cfg = KafkaConfig { bootstrap_servers: broker.bootstrap(), partitions: 2, ..KafkaConfig::default() };
    let topic = unique("hist_");
    kafka::ensure_topics(&cfg, std::slice::from_ref(&topic)).await.unwrap();
    let producer = kafka::producer(&cfg, "test").unwrap();
    for i in 0..100 {
        let payload = i.to_string();
        let record = FutureRecord::<str, str>::to(&topic).partition(i % 2).payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let group = unique("group_");
    let read = |per_partition: u64| {
        let (cfg, topic, group) = (cfg.clone(), topic.clone(), group.clone());
        tokio::task::spawn_blocking(move || {
            let mut records =
                kafka::read_before_committed(&cfg, &topic, &group, per_partition, Duration::from_secs(30))
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.partition, r.offset, String::from_utf8(r.payload).unwrap()))
                    .collect::<Vec<_>>();
            records.sort();
            records
        })
    };
    assert!(read(10).await.unwrap().is_empty(), "a group that never committed has nothing to rebuild");

    // Partition 0 (even payloads) committed at 30, partition 1 (odd) at 4.
    let consumer = kafka::consumer(&cfg, &group, "test").unwrap();
    let mut committed = TopicPartitionList::new();
    committed.add_partition_offset(&topic, 0, Offset::Offset(30)).unwrap();
    committed.add_partition_offset(&topic, 1, Offset::Offset(4)).unwrap();
    consumer.commit(&committed, rdkafka::consumer::CommitMode::Sync).unwrap();
    drop(consumer);

    let records = read(10).await.unwrap();
    let want: Vec<(i32, i64, String)> =
        (20..30).map(|o| (0, o, (2 * o).to_string())).chain((0..4).map(|o| (1, o, (2 * o + 1).to_string()))).collect();
    assert_eq!(records, want);
    assert_eq!(read(10).await.unwrap(), want, "reading changed nothing of the group");
}
