//! Kafka plumbing every plane uses the same way.
//!
//! - [`tracked_producer`] (under [`Publisher`]) and [`producer`] (tools and tests): idempotent,
//!   `acks=all`, compressed, bounded linger.
//! - [`consumer`]: at-least-once. Offsets are *stored* only by [`AckQueue`] once every output of
//!   a message is acknowledged by the broker, and auto-commit only ever commits stored offsets.
//! - [`ensure_topics`]: creates missing topics at start-up.
//! - [`Publisher`]: encodes envelopes, keys them by symbol, and broadcasts unkeyed ones to every
//!   partition; [`Deliveries`] says what of it the broker has acknowledged.
//! - [`shell`]: the consumer loop the Strategy and Order Planes share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::task::JoinHandle;

use crate::config::KafkaConfig;

mod publish;
pub mod shell;
mod snapshots;

pub use publish::{
    AckQueue, Deliveries, OnAck, Publisher, Sent, TrackedProducer, Tracking, send_untracked, tracked_producer,
};
pub use snapshots::{Loaded, SnapshotMetrics, SnapshotWriter, load_folds};

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A client could not be created (bad settings).
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    /// The broker did not answer.
    #[error("Kafka broker at {servers} unreachable: {source}")]
    Unreachable {
        /// Configured bootstrap servers.
        servers: String,
        /// Underlying error.
        #[source]
        source: KafkaError,
    },
    /// Creating a topic failed.
    #[error("cannot create topic {topic}: {code:?}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
    /// The topics' replication factor exceeds the brokers the cluster has (yet).
    #[error(
        "cannot create topic {topic} with kafka.replication_factor = {replication_factor}: the cluster has \
         {brokers} broker(s); start more brokers or lower KAFKA_REPLICATION_FACTOR"
    )]
    TooFewBrokers {
        /// The topic.
        topic: String,
        /// `kafka.replication_factor`.
        replication_factor: i32,
        /// Brokers in the cluster's metadata.
        brokers: usize,
    },
    /// A record was not delivered (after librdkafka's own retries).
    #[error("delivery to Kafka failed: {0}")]
    Delivery(#[source] KafkaError),
    /// A task waiting for deliveries or reading the broker ended without an answer (it panicked
    /// or was cancelled).
    #[error("a Kafka task ended without an answer (panicked or cancelled)")]
    TaskLost,
    /// The client hit an error it cannot recover from.
    #[error("Kafka client failed for good ({code:?}): {reason}{hint}")]
    Fatal {
        /// librdkafka's code.
        code: RDKafkaErrorCode,
        /// librdkafka's explanation.
        reason: String,
        /// What to do about it, when we know.
        hint: &'static str,
    },
}

fn base(cfg: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("client.id", client_id)
        // One box, often just started: find the broker quickly again after it restarts.
        .set("reconnect.backoff.max.ms", "2000")
        // A small request is sent at once, not held by Nagle's algorithm until the previous one
        // is acknowledged: librdkafka leaves Nagle on by default, which delays records that are
        // already batched (linger) by up to a round of delayed ACKs (BENCHMARKS.md).
        .set("socket.nagle.disable", "true")
        .set("log_level", "4");
    c
}

/// The planes' producer settings: idempotent, `acks=all`, ordered retries, compression and
/// linger from config. Public so that a benchmark's bare client produces exactly as the planes do.
pub fn producer_config(cfg: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = base(cfg, client_id);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &cfg.compression)
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("batch.size", cfg.batch_size.to_string())
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        // What waits for a broker that does not answer is bounded (64 MiB): past it, sending
        // waits, and the plane stops reading its input instead of growing without limit.
        .set("queue.buffering.max.kbytes", "65536");
    c
}

/// A producer with the planes' settings whose sends are awaited one by one: for tools and tests.
/// The planes publish through [`Publisher`], which tracks deliveries without a future per record.
pub fn producer(cfg: &KafkaConfig, client_id: &str) -> Result<FutureProducer, BrokerError> {
    producer_config(cfg, client_id).create().map_err(BrokerError::Client)
}

/// How much a consumer asks for per partition and fetch: librdkafka's default, 1 MiB. Kafka
/// returns a first batch larger than this anyway, so an oversized record (which the decoder then
/// refuses) is fetched and skipped rather than stalling its partition. Each fetched megabyte is
/// held in memory until processed: 16 MiB (what tansu 0.6 needed) let a plane catching up on a
/// backlog reach ~190 MiB (BENCHMARKS.md).
const MAX_FETCH_BYTES: &str = "1048576";

/// An at-least-once consumer in `group_id`: offsets are stored explicitly (see [`AckQueue`]) and
/// committed in the background; a new group starts at the beginning of each topic.
pub fn consumer(cfg: &KafkaConfig, group_id: &str, client_id: &str) -> Result<StreamConsumer, BrokerError> {
    base(cfg, client_id)
        .set("group.id", group_id)
        // Static membership: a plane restarted after a crash takes its old place in the group at
        // once, with its old partitions and no rebalance. A dynamic member would first wait for
        // the group to evict its dead predecessor (session.timeout.ms) and then rebalance every
        // member. The client id holds INSTANCE_ID, which must therefore differ between running
        // instances (docs/architecture.md).
        .set("group.instance.id", client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set("max.poll.interval.ms", cfg.max_poll_interval_ms.to_string())
        .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string())
        // librdkafka prefetches up to 64 MiB per consumer by default, which alone would exceed a
        // plane's memory budget when it lags; 16 MiB still covers many fetches at full speed.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.message.max.bytes", MAX_FETCH_BYTES)
        .create()
        .map_err(BrokerError::Client)
}

/// How long a stopping plane waits for its consumer to leave the group.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A plane's group consumer ([`consumer`]) whose close cannot hold its shutdown for good.
///
/// Dropping a consumer leaves its group, and librdkafka can block there forever when a rebalance
/// is served during the close (`rd_kafka_rebalance_protocol` waits for a reply that never comes,
/// confluentinc/librdkafka#4041; seen here when a plane stopped while its group was assigning it
/// partitions). So the close runs on a thread of its own and is given up after [`CLOSE_GRACE`]:
/// the group then reassigns the partitions once the member's session times out, as after a crash,
/// and nothing is lost (the offsets were committed before, by [`drain`]).
pub struct GroupConsumer(Option<StreamConsumer>);

impl GroupConsumer {
    /// A plane's consumer in `group_id`; see [`consumer`].
    pub fn new(cfg: &KafkaConfig, group_id: &str, client_id: &str) -> Result<Self, BrokerError> {
        consumer(cfg, group_id, client_id).map(|c| Self(Some(c)))
    }
}

impl std::ops::Deref for GroupConsumer {
    type Target = StreamConsumer;
    fn deref(&self) -> &StreamConsumer {
        // Empty only inside `drop`.
        self.0.as_ref().expect("the consumer is taken only when dropped")
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else { return };
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        let closing = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
            drop(consumer);
            let _ = closed_tx.send(());
        });
        if closing.is_ok() && closed_rx.recv_timeout(CLOSE_GRACE).is_err() {
            tracing::warn!(
                grace_s = CLOSE_GRACE.as_secs(),
                "The Kafka consumer did not leave its group in time (librdkafka#4041); stopping without it: \
                 the group reassigns its partitions after kafka.session_timeout_ms."
            );
        }
    }
}

/// Creates each of `topics` (full names) that does not exist yet, and returns every topic's
/// partition count.
pub async fn ensure_topics(cfg: &KafkaConfig, topics: &[String]) -> Result<HashMap<String, i32>, BrokerError> {
    let admin: AdminClient<DefaultClientContext> =
        base(cfg, "algotrader-admin").create().map_err(BrokerError::Client)?;
    let ledger = cfg.topic(crate::topics::EXEC_REPORTS);
    let compacted: Vec<String> = crate::topics::COMPACTED.iter().map(|t| cfg.topic(t)).collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(t, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor));
            // exec_reports is the ledger planes rebuild from: deleting old reports would forget
            // fills and executed intents, so it is kept forever.
            if *t == ledger {
                topic.set("retention.ms", "-1")
            } else if compacted.contains(t) {
                // Only the latest snapshot of each partition matters. Segments roll hourly so
                // the cleaner can drop superseded ones (it never touches the active segment),
                // and a start-up reads about an hour of snapshots at most.
                topic.set("cleanup.policy", "compact").set("segment.ms", "3600000")
            } else {
                topic
            }
        })
        .collect();
    let min_isr = cfg.min_insync_replicas.to_string();
    let new: Vec<NewTopic<'_>> = new.into_iter().map(|t| t.set("min.insync.replicas", &min_isr)).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(|source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions = cfg.partitions, "Topic created."),
            Err((_, Code::TopicAlreadyExists)) => {}
            Err((topic, Code::InvalidReplicationFactor)) => {
                let brokers = admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(5))
                    .map_err(|source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source })?
                    .brokers()
                    .len();
                return Err(BrokerError::TooFewBrokers { topic, replication_factor: cfg.replication_factor, brokers });
            }
            Err((topic, code)) => return Err(BrokerError::CreateTopic { topic, code }),
        }
    }
    partition_counts(admin.inner(), cfg, topics)
}

fn partition_counts<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    cfg: &KafkaConfig,
    topics: &[String],
) -> Result<HashMap<String, i32>, BrokerError> {
    let unreachable = |source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source };
    let mut counts = HashMap::new();
    for topic in topics {
        // Metadata may lag creation by a moment; ask until the partitions are there.
        let mut tries = 0;
        loop {
            let md = client.fetch_metadata(Some(topic), Duration::from_secs(5)).map_err(unreachable)?;
            let n = md.topics().first().map_or(0, |t| t.partitions().len());
            if n > 0 {
                counts.insert(topic.clone(), i32::try_from(n).unwrap_or(i32::MAX));
                break;
            }
            tries += 1;
            if tries > 50 {
                return Err(BrokerError::CreateTopic { topic: topic.clone(), code: Code::UnknownTopicOrPartition });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(counts)
}

/// Whether the broker answers a metadata request within `timeout`. Blocking: call it from
/// `spawn_blocking`.
pub fn broker_reachable<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    timeout: Duration,
) -> bool {
    client.fetch_metadata(None, timeout).is_ok()
}

/// Where one consumed message came from; the token to hand [`AckQueue`] for a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Topic. Shared: a consumer names the same few topics millions of times.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset of the message.
    pub offset: i64,
}

impl Consumed {
    /// The position of `msg`.
    pub fn of<M: rdkafka::Message>(msg: &M) -> Self {
        Self { topic: Arc::from(msg.topic()), partition: msg.partition(), offset: msg.offset() }
    }

    /// The position of `msg`, which came from `topic`: no allocation.
    pub fn on<M: rdkafka::Message>(topic: &Arc<str>, msg: &M) -> Self {
        Self { topic: Arc::clone(topic), partition: msg.partition(), offset: msg.offset() }
    }
}

/// The [`OnAck`] of a consumer's [`AckQueue`]: stores the offset after each acknowledged message,
/// which the background auto-commit then commits. Until then a restart re-reads the message.
///
/// Only the newest acknowledged message of each partition of a batch is stored: the earlier ones
/// are covered by it (an offset stands for everything before it), and a store costs a lookup of
/// the topic in librdkafka.
pub struct StoreOffsets {
    consumer: Arc<GroupConsumer>,
    newest: Vec<Consumed>,
}

/// [`StoreOffsets`] for `consumer`.
pub fn store_offsets(consumer: Arc<GroupConsumer>) -> StoreOffsets {
    StoreOffsets { consumer, newest: Vec::new() }
}

impl OnAck<Consumed> for StoreOffsets {
    fn acked(&mut self, c: Consumed) {
        // The later message wins even at a lower offset (re-read after a rebalance), as storing
        // each in turn would have left it.
        match self.newest.iter_mut().find(|n| n.partition == c.partition && n.topic == c.topic) {
            Some(n) => n.offset = c.offset,
            None => self.newest.push(c),
        }
    }

    fn settled(&mut self) {
        for c in self.newest.drain(..) {
            // rd_kafka_offset_store stores `offset + 1` itself: pass the message's own offset.
            if let Err(e) = self.consumer.store_offset(&c.topic, c.partition, c.offset) {
                tracing::warn!(topic = %c.topic, partition = c.partition, offset = c.offset, error = %e, "Cannot store offset; the message will be re-read after a restart.");
            }
        }
    }
}

/// Handles an error from a consumer's `recv`: transient ones (a broker restarting, say) are logged
/// and the caller carries on; a fatal one, such as another running instance with the same
/// `INSTANCE_ID` fencing this one out of its group, ends the plane instead of leaving it alive but
/// idle behind a green health check.
pub fn consumer_error(consumer: &StreamConsumer, e: &KafkaError) -> Result<(), BrokerError> {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        let hint = if code == RDKafkaErrorCode::FencedInstanceId {
            " (another instance of this plane runs with the same INSTANCE_ID; give each its own)"
        } else {
            ""
        };
        return Err(BrokerError::Fatal { code, reason, hint });
    }
    tracing::warn!(error = %e, "Consumer error; continuing.");
    Ok(())
}

/// Commits the stored offsets now (at shutdown, after the [`AckQueue`] has drained).
pub fn commit_stored(consumer: &StreamConsumer) {
    use rdkafka::consumer::CommitMode;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is not a failure.
        if !matches!(e, KafkaError::ConsumerCommit(Code::NoOffset)) {
            tracing::warn!(error = %e, "Final offset commit failed; the last messages will be re-read after a restart.");
        }
    }
}

/// One record read back by [`read_to_end`].
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (empty when it has none).
    pub key: Vec<u8>,
    /// Value (empty for a tombstone).
    pub payload: Vec<u8>,
}

/// Reads every partition of `topic` from its first record to the end it has now, outside any
/// consumer group (nothing is committed): how a plane rebuilds its state at start-up. Fails when
/// no record arrives for `timeout` before the reported ends are reached (a long history is fine
/// as long as it keeps coming). Blocking: call it from `spawn_blocking`.
///
/// The end is each partition's high watermark when the read starts: every record the broker had
/// acknowledged to an `acks=all` producer by then lies below it.
pub fn read_to_end(cfg: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Vec<Record>, BrokerError> {
    let unreachable = |source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source };
    let group = format!("rebuild-{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let consumer = reader(cfg, &group)?;
    let mut ranges = HashMap::new();
    for p in partition_ids(&consumer, topic, timeout).map_err(unreachable)? {
        let (low, high) = watermarks(&consumer, topic, p, timeout).map_err(unreachable)?;
        ranges.insert(p, (low, high));
    }
    read_ranges(cfg, &consumer, topic, ranges, timeout)
}

/// Reads partition `partition` of `topic` from its first record up to offset `end` (excluded),
/// outside any consumer group: a plane taking over a partition that another instance handled
/// rebuilds what it had from it. Blocking: call it from `spawn_blocking`.
pub fn read_partition(
    cfg: &KafkaConfig,
    topic: &str,
    partition: i32,
    end: i64,
    timeout: Duration,
) -> Result<Vec<Record>, BrokerError> {
    let unreachable = |source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source };
    let group = format!("rebuild-{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let consumer = reader(cfg, &group)?;
    let (low, _) = watermarks(&consumer, topic, partition, timeout).map_err(unreachable)?;
    read_ranges(cfg, &consumer, topic, HashMap::from([(partition, (low, end))]), timeout)
}

/// Reads, from each partition of `topic`, the last `per_partition` records before the offset
/// `group` has committed there (nothing where it has not committed): what a plane's learned
/// state was last built from, to take it up again after a restart. Outside the group: nothing is
/// joined or committed. Blocking: call it from `spawn_blocking`.
pub fn read_before_committed(
    cfg: &KafkaConfig,
    topic: &str,
    group: &str,
    per_partition: u64,
    timeout: Duration,
) -> Result<Vec<Record>, BrokerError> {
    let unreachable = |source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source };
    let consumer = reader(cfg, group)?;
    let mut tpl = TopicPartitionList::new();
    for p in partition_ids(&consumer, topic, timeout).map_err(unreachable)? {
        tpl.add_partition(topic, p);
    }
    // A group's coordinator is found (or, for a group new to the cluster, its offsets topic
    // created) while the first requests fail with a retriable code: asked again until `timeout`.
    let deadline = std::time::Instant::now() + timeout;
    let committed = loop {
        match consumer.committed_offsets(tpl.clone(), timeout) {
            Err(e) if coordinator_pending(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            answer => break answer.map_err(unreachable)?,
        }
    };
    let back = i64::try_from(per_partition).unwrap_or(i64::MAX);
    let mut ranges = HashMap::new();
    for e in committed.elements() {
        if let Offset::Offset(end) = e.offset() {
            let (low, _) = watermarks(&consumer, topic, e.partition(), timeout).map_err(unreachable)?;
            ranges.insert(e.partition(), (low.max(end.saturating_sub(back)), end));
        }
    }
    read_ranges(cfg, &consumer, topic, ranges, timeout)
}

fn coordinator_pending(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(Code::NotCoordinator | Code::CoordinatorNotAvailable | Code::CoordinatorLoadInProgress)
    )
}

/// A consumer that reads by assignment, never commits, and takes the largest records.
fn reader(cfg: &KafkaConfig, group: &str) -> Result<BaseConsumer, BrokerError> {
    base(cfg, "algotrader-rebuild")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.message.max.bytes", MAX_FETCH_BYTES)
        .create()
        .map_err(BrokerError::Client)
}

fn partition_ids(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>, KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default())
}

/// Reads offsets `[start, end)` of each partition. Fails when no record arrives for `timeout`
/// before every range is read (a long history is fine as long as it keeps coming).
fn read_ranges(
    cfg: &KafkaConfig,
    consumer: &BaseConsumer,
    topic: &str,
    ranges: HashMap<i32, (i64, i64)>,
    timeout: Duration,
) -> Result<Vec<Record>, BrokerError> {
    let mut records = Vec::new();
    each_in_ranges(cfg, consumer, topic, ranges, timeout, |r| records.push(r))?;
    Ok(records)
}

/// [`read_ranges`] handing each record to `f` as it comes instead of collecting them.
fn each_in_ranges(
    cfg: &KafkaConfig,
    consumer: &BaseConsumer,
    topic: &str,
    ranges: HashMap<i32, (i64, i64)>,
    timeout: Duration,
    mut f: impl FnMut(Record),
) -> Result<(), BrokerError> {
    let unreachable = |source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source };
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, (start, end)) in ranges.into_iter().filter(|(_, (start, end))| start < end) {
        ends.insert(p, end);
        tpl.add_partition_offset(topic, p, Offset::Offset(start)).map_err(BrokerError::Client)?;
    }
    if tpl.count() == 0 {
        return Ok(());
    }
    consumer.assign(&tpl).map_err(BrokerError::Client)?;
    let mut deadline = std::time::Instant::now() + timeout;
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(unreachable(KafkaError::MessageConsumption(Code::OperationTimedOut)));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                deadline = std::time::Instant::now() + timeout;
                let (p, offset) = (msg.partition(), msg.offset());
                let Some(end) = ends.get(&p).copied() else { continue };
                if offset < end {
                    f(Record {
                        partition: p,
                        offset,
                        key: msg.key().unwrap_or_default().to_vec(),
                        payload: msg.payload().unwrap_or_default().to_vec(),
                    });
                }
                if offset + 1 >= end {
                    ends.remove(&p);
                }
            }
            Some(Err(e)) => return Err(unreachable(e)),
            None => {}
        }
    }
    Ok(())
}

/// One assigned partition's offsets, as [`partition_offsets`] measured them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Topic (full name).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The partition's first offset on the broker.
    pub low: i64,
    /// The partition's end offset (high watermark): the next record's offset.
    pub high: i64,
    /// Where the consumer reads next; `None` until it has read a record there.
    pub position: Option<i64>,
    /// What the group has committed on the broker; `None` when it never committed there.
    pub committed: Option<i64>,
}

impl PartitionOffsets {
    /// Records the consumer has not read yet: the end less its position (its committed offset
    /// until it reads a record there, the partition's start without one). Unlike [`lag`](Self::lag),
    /// what the plane still has to *process*: a plane may commit behind its position on purpose,
    /// as the Order Plane does with market data (docs/architecture.md, "Restarts").
    pub fn backlog(&self) -> i64 {
        let at = self.position.or(self.committed).unwrap_or(self.low);
        self.high.saturating_sub(at).max(0)
    }

    /// The group's consumer lag, as Kafka's tools show it: the end less the committed offset.
    /// With nothing committed the whole partition is counted, since a restart would read it all.
    pub fn lag(&self) -> i64 {
        self.high.saturating_sub(self.committed.unwrap_or(self.low)).max(0)
    }
}

/// The offsets of every partition assigned to `consumer`: the watermarks and the group's
/// committed offsets are asked of the broker (the committed ones of the group coordinator, so a
/// commit another member made counts), the position is the consumer's own. Blocking (one
/// request for the committed offsets, one watermark request per partition): call it from
/// `spawn_blocking`.
pub fn partition_offsets(consumer: &StreamConsumer, timeout: Duration) -> Result<Vec<PartitionOffsets>, KafkaError> {
    let offset = |o: Offset| match o {
        Offset::Offset(at) => Some(at),
        _ => None,
    };
    let positions = consumer.position()?;
    if positions.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed(timeout)?;
    let mut measured = Vec::with_capacity(positions.count());
    for p in positions.elements() {
        let (topic, partition) = (p.topic(), p.partition());
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        measured.push(PartitionOffsets {
            topic: topic.to_owned(),
            partition,
            low,
            high,
            position: offset(p.offset()),
            committed: committed.find_partition(topic, partition).and_then(|c| offset(c.offset())),
        });
    }
    Ok(measured)
}

/// Records on the broker that `consumer` has not read yet, per assigned topic: the sum of
/// [`PartitionOffsets::backlog`]. Blocking: call it from `spawn_blocking`.
pub fn backlog(consumer: &StreamConsumer, timeout: Duration) -> Result<HashMap<String, i64>, KafkaError> {
    let mut behind: HashMap<String, i64> = HashMap::new();
    for p in partition_offsets(consumer, timeout)? {
        *behind.entry(p.topic.clone()).or_default() += p.backlog();
    }
    Ok(behind)
}

/// The gauges [`spawn_offset_gauges`] keeps.
pub struct OffsetGauges {
    /// `<plane>_consumer_lag_records{topic, partition}`: [`PartitionOffsets::lag`].
    pub lag: prometheus::IntGaugeVec,
    /// `<plane>_input_backlog_records{topic}`, when the plane exports it:
    /// [`PartitionOffsets::backlog`] summed per topic.
    pub backlog: Option<prometheus::IntGaugeVec>,
}

/// Measures [`partition_offsets`] every `every` and sets the [`OffsetGauges`], for the
/// partitions of each `(full topic name, label)` of `topics` assigned to `consumer`. A partition
/// no longer assigned loses its series (another instance of the plane now exports it: summing the
/// instances counts each partition once), and so does a topic with no partition assigned (during
/// a rebalance nothing is known, and 0 would read as "all read"). A failed measurement leaves the
/// last values and is logged at debug level.
pub fn spawn_offset_gauges(
    consumer: Arc<GroupConsumer>,
    gauges: OffsetGauges,
    topics: Vec<(String, &'static str)>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut exported: Vec<(&'static str, String)> = Vec::new();
        loop {
            tokio::time::sleep(every).await;
            let c = Arc::clone(&consumer);
            let measured = tokio::task::spawn_blocking(move || partition_offsets(&c, Duration::from_secs(3))).await;
            let offsets = match measured {
                Ok(Ok(offsets)) => offsets,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "Consumer offsets not measured this time.");
                    continue;
                }
                Err(_) => return,
            };
            let mut now = Vec::new();
            for (topic, label) in &topics {
                let mut behind = None;
                for p in offsets.iter().filter(|p| p.topic == *topic) {
                    let partition = p.partition.to_string();
                    gauges.lag.with_label_values(&[*label, &partition]).set(p.lag());
                    *behind.get_or_insert(0) += p.backlog();
                    now.push((*label, partition));
                }
                if let Some(backlog) = &gauges.backlog {
                    match behind {
                        Some(records) => backlog.with_label_values(&[*label]).set(records),
                        None => {
                            let _ = backlog.remove_label_values(&[*label]);
                        }
                    }
                }
            }
            for (label, partition) in exported.iter().filter(|e| !now.contains(e)) {
                let _ = gauges.lag.remove_label_values(&[*label, partition]);
            }
            exported = now;
        }
    })
}

/// A partition's low and high watermarks, asked again until `timeout` while the broker cannot
/// answer yet: right after a topic is created, or while its leader moves to another broker, the
/// answer is an error for a moment.
fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(marks) => return Ok(marks),
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(topic, partition, error = %e, "Watermarks not available yet; asking again.");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates the producer and the missing `topics` (base names), retrying every 2 s until the
/// broker answers; `None` when `shutdown` fires first.
pub async fn connect(
    cfg: &KafkaConfig,
    client_id: &str,
    topics: &[&str],
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<Publisher>, BrokerError> {
    let producer = tracked_producer(cfg, client_id)?;
    let names: Vec<String> = topics.iter().map(|t| cfg.topic(t)).collect();
    let mut attempt = 0u32;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            result = ensure_topics(cfg, &names) => match result {
                Ok(partitions) => return Ok(Some(Publisher::new(producer, cfg, partitions))),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Kafka not ready; retrying in 2 s.");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// How long a stopping plane waits for its in-flight deliveries. With [`COMMIT_GRACE`],
/// [`FLUSH_GRACE`], [`CLOSE_GRACE`] and the HTTP server's grace, a plane stops within 30 s of
/// being told to, whatever the broker does (a broker that hangs answers none of them).
pub const DRAIN_GRACE: Duration = Duration::from_secs(8);
/// How long a stopping consumer waits for its final offset commit.
pub const COMMIT_GRACE: Duration = Duration::from_secs(4);
/// How long a stopping plane waits for the producer's last records.
pub const FLUSH_GRACE: Duration = Duration::from_secs(4);

/// Stops a consumer plane's pipeline in order, each step bounded: wait (at most [`DRAIN_GRACE`])
/// for every produced output to be acknowledged, which stores the inputs' offsets, commit them
/// (at most [`COMMIT_GRACE`]), flush the producer (at most [`FLUSH_GRACE`]). What a step did not
/// finish is not lost: inputs whose offsets were not committed are read again after a restart,
/// and their outputs published again (consumers drop the repeats by event id).
pub async fn drain(
    acks: AckQueue<Consumed>,
    ack_task: JoinHandle<Result<u64, BrokerError>>,
    consumer: &Arc<GroupConsumer>,
    publisher: &Publisher,
) -> Result<(), BrokerError> {
    drop(acks);
    match tokio::time::timeout(DRAIN_GRACE, ack_task).await {
        Ok(joined) => {
            joined.map_err(|_| BrokerError::TaskLost)??;
        }
        Err(_) => tracing::warn!("In-flight outputs not acknowledged in time; their inputs will be re-read."),
    }
    // A synchronous commit waits for the coordinator however long it takes: on a thread of its
    // own (not the runtime's blocking pool, whose threads the runtime waits for when it stops).
    let (consumer, (done_tx, done_rx)) = (Arc::clone(consumer), tokio::sync::oneshot::channel());
    let committing = std::thread::Builder::new().name("kafka-commit".into()).spawn(move || {
        commit_stored(&consumer);
        let _ = done_tx.send(());
    });
    if committing.is_ok() && tokio::time::timeout(COMMIT_GRACE, done_rx).await.is_err() {
        tracing::warn!(
            "The final offset commit did not finish in time; the last inputs will be re-read after a restart."
        );
    }
    publisher.flush_at_stop();
    Ok(())
}
