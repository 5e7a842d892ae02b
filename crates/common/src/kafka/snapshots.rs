//! Reading and writing the planes' ledger snapshots ([`crate::snapshot`]): [`load_folds`]
//! rebuilds each `exec_reports` partition's fold from its latest snapshot and the records after
//! it; [`SnapshotWriter`] keeps folding the ledger as it grows and writes a partition's snapshot
//! every so many records, and once more when the plane stops.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::{BrokerError, Record, each_in_ranges, partition_ids, producer_config, reader, watermarks};
use crate::codec::{self, DecodeError};
use crate::config::KafkaConfig;
use crate::events::ExecEvent;
use crate::snapshot::{self, LedgerFold, PartitionFold};

/// How long a rebuild waits for the next record before it gives up (a long ledger is fine as
/// long as it keeps coming).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping writer reads on to reach the ledger's end, and then waits for its last
/// snapshots: part of the plane's bounded shutdown.
const FINAL_READ: Duration = Duration::from_secs(3);
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// The metrics of a plane's snapshots.
#[derive(Clone)]
pub struct SnapshotMetrics {
    /// Snapshot records not used by a rebuild, by reason (`undecodable`, `version`, `kind`,
    /// `partition`, `beyond_end`, `unusable`).
    pub rejected: IntCounterVec,
    /// Snapshots written, by result (`ok`, `failed`).
    pub writes: IntCounterVec,
    /// `exec_reports` records read to rebuild state (at start-up and at partition take-overs).
    pub rebuild_records: IntCounter,
}

impl SnapshotMetrics {
    /// Creates the metrics of plane `plane` (`strategy_plane`, `order_plane`) in `registry`.
    pub fn register(registry: &Registry, plane: &str) -> Result<Self, prometheus::Error> {
        let m = Self {
            rejected: IntCounterVec::new(
                Opts::new(
                    format!("{plane}_snapshots_rejected_total"),
                    "Snapshot records a rebuild did not use (their partition was read from its start).",
                ),
                &["reason"],
            )?,
            writes: IntCounterVec::new(
                Opts::new(format!("{plane}_snapshot_writes_total"), "Snapshots written, by result."),
                &["result"],
            )?,
            rebuild_records: IntCounter::new(
                format!("{plane}_rebuild_records_total"),
                "exec_reports records read to rebuild state (start-up and partition take-overs).",
            )?,
        };
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.writes.clone()))?;
        registry.register(Box::new(m.rebuild_records.clone()))?;
        Ok(m)
    }
}

/// What [`load_folds`] rebuilt.
#[derive(Debug)]
pub struct Loaded<S> {
    /// Each partition's fold, up to the partition's end when the read started.
    pub folds: Vec<PartitionFold<S>>,
    /// `exec_reports` records read.
    pub records: u64,
    /// Partitions whose fold started from a snapshot.
    pub from_snapshots: usize,
}

/// Rebuilds the fold of each `exec_reports` partition (`ledger`, full name; only partition `only`
/// when given) up to its end (the high watermark when the read starts): from the partition's
/// latest snapshot in `snapshots` (full name) and the records after it, or, without a usable
/// snapshot, from its first record. A snapshot that cannot be used is counted, logged and left
/// out. Records are folded as they arrive, never collected; an undecodable one is handed to
/// `undecodable` and skipped. `fresh` makes an empty fold. Blocking: call it from
/// `spawn_blocking`.
pub fn load_folds<S: LedgerFold>(
    cfg: &KafkaConfig,
    snapshots: &str,
    ledger: &str,
    only: Option<i32>,
    fresh: impl Fn() -> S,
    metrics: &SnapshotMetrics,
    mut undecodable: impl FnMut(&Record, &DecodeError),
) -> Result<Loaded<S>, BrokerError> {
    let unreachable = |source| BrokerError::Unreachable { servers: cfg.bootstrap_servers.clone(), source };
    let timeout = READ_TIMEOUT;
    let consumer = reader(cfg, &unique_group("rebuild"))?;
    let partitions = match only {
        Some(p) => vec![p],
        None => partition_ids(&consumer, ledger, timeout).map_err(unreachable)?,
    };
    let mut ends = HashMap::new();
    for &p in &partitions {
        ends.insert(p, watermarks(&consumer, ledger, p, timeout).map_err(unreachable)?);
    }

    // The latest record of each key: a key's records share one partition, read in order.
    let mut latest: HashMap<Vec<u8>, Record> = HashMap::new();
    let mut ranges = HashMap::new();
    for p in partition_ids(&consumer, snapshots, timeout).map_err(unreachable)? {
        ranges.insert(p, watermarks(&consumer, snapshots, p, timeout).map_err(unreachable)?);
    }
    each_in_ranges(cfg, &consumer, snapshots, ranges, timeout, |r| {
        latest.insert(r.key.clone(), r);
    })?;

    let empty = fresh();
    let mut folds: HashMap<i32, PartitionFold<S>> = HashMap::new();
    let mut ranges = HashMap::new();
    let mut from_snapshots = 0;
    for &p in &partitions {
        let (low, high) = ends[&p];
        let key = snapshot::key(p);
        let found = latest.remove(key.as_bytes()).filter(|r| !r.payload.is_empty());
        let fold = match found.map(|r| snapshot::decode(&key, &r.payload, high, &empty)) {
            Some(Ok(fold)) => {
                from_snapshots += 1;
                fold
            }
            Some(Err(e)) => {
                metrics.rejected.with_label_values(&[e.reason()]).inc();
                tracing::warn!(topic = snapshots, partition = p, reason = e.reason(), error = %e,
                    "Snapshot not used; the partition is read from its start.");
                PartitionFold { partition: p, next_offset: 0, unsaved: 0, state: fresh() }
            }
            None => PartitionFold { partition: p, next_offset: 0, unsaved: 0, state: fresh() },
        };
        ranges.insert(p, (fold.next_offset.max(low), high));
        folds.insert(p, fold);
    }
    let mut records = 0u64;
    each_in_ranges(cfg, &consumer, ledger, ranges, timeout, |r| {
        records += 1;
        let env = match codec::decode::<ExecEvent>(&r.payload) {
            Ok(env) => Some(env),
            Err(e) => {
                undecodable(&r, &e);
                None
            }
        };
        if let Some(fold) = folds.get_mut(&r.partition) {
            fold.apply(r.offset, env.as_ref());
        }
    })?;
    metrics.rebuild_records.inc_by(records);
    let mut folds: Vec<PartitionFold<S>> = folds.into_values().collect();
    folds.sort_by_key(|f| f.partition);
    // Where a fold did not get to (the partition's end was a transaction marker, say), it still
    // covers everything the partition holds below its end.
    for f in &mut folds {
        f.next_offset = f.next_offset.max(ends[&f.partition].1);
    }
    Ok(Loaded { folds, records, from_snapshots })
}

fn unique_group(what: &str) -> String {
    format!("{what}-{}-{:?}", std::process::id(), std::time::SystemTime::now())
}

/// Counts the snapshot writes the broker acknowledged or refused.
struct WriteContext {
    writes: IntCounterVec,
}

impl ClientContext for WriteContext {}

impl ProducerContext for WriteContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => self.writes.with_label_values(&["ok"]).inc(),
            Err((e, _)) => {
                self.writes.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %e, "Snapshot not written; the next one, or the ledger, covers it.");
            }
        }
    }
}

/// Folds the ledger as it grows, on a thread of its own, and writes each partition's snapshot
/// every `every` records and once more at [`stop`](Self::stop). It reads `exec_reports` back from
/// the broker rather than taking a plane's own state: a snapshot then holds exactly the records
/// below its offset, all of which are in the log (the Order Plane's own reports only once the
/// broker has them), and the plane's hot path is left alone.
pub struct SnapshotWriter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SnapshotWriter {
    /// Starts folding `folds` on from their offsets; `None` when `every` is 0 (none written).
    pub fn spawn<S: LedgerFold>(
        cfg: &KafkaConfig,
        snapshots: String,
        ledger: String,
        folds: Vec<PartitionFold<S>>,
        every: u64,
        metrics: &SnapshotMetrics,
    ) -> Result<Option<Self>, BrokerError> {
        if every == 0 {
            return Ok(None);
        }
        let consumer = reader(cfg, &unique_group("snapshots"))?;
        let mut tpl = TopicPartitionList::new();
        for f in &folds {
            tpl.add_partition_offset(&ledger, f.partition, Offset::Offset(f.next_offset))
                .map_err(BrokerError::Client)?;
        }
        consumer.assign(&tpl).map_err(BrokerError::Client)?;
        let producer: BaseProducer<WriteContext> = producer_config(cfg, "algotrader-snapshots")
            .create_with_context(WriteContext { writes: metrics.writes.clone() })
            .map_err(BrokerError::Client)?;
        let stop = Arc::new(AtomicBool::new(false));
        let task =
            Task { consumer, producer, snapshots, ledger, every, stop: Arc::clone(&stop), metrics: metrics.clone() };
        let thread = std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || task.run(folds))
            .map_err(|e| BrokerError::Client(KafkaError::ClientCreation(e.to_string())))?;
        Ok(Some(Self { stop, thread: Some(thread) }))
    }

    /// Reads on to the ledger's end (at most a few seconds), writes the snapshot of every
    /// partition with records not in one yet, and waits for them.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Joined off the runtime: the final read and flush take up to a few seconds.
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for SnapshotWriter {
    /// A writer dropped without [`stop`](Self::stop) (the plane returned early) still ends: its
    /// thread writes its last snapshots and exits on its own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Task {
    consumer: BaseConsumer,
    producer: BaseProducer<WriteContext>,
    snapshots: String,
    ledger: String,
    every: u64,
    stop: Arc<AtomicBool>,
    metrics: SnapshotMetrics,
}

impl Task {
    fn run<S: LedgerFold>(self, folds: Vec<PartitionFold<S>>) {
        let mut folds: HashMap<i32, PartitionFold<S>> = folds.into_iter().map(|f| (f.partition, f)).collect();
        // A start-up that read many records writes their snapshot at once.
        for fold in folds.values_mut() {
            if fold.unsaved >= self.every {
                self.write(fold);
            }
        }
        while !self.stop.load(Ordering::Relaxed) {
            self.next(&mut folds, Duration::from_millis(100));
            self.producer.poll(Duration::ZERO);
        }
        let deadline = Instant::now() + FINAL_READ;
        let mut ends = HashMap::new();
        for &p in folds.keys() {
            if let Ok((_, high)) = self.consumer.fetch_watermarks(&self.ledger, p, FINAL_READ) {
                ends.insert(p, high);
            }
        }
        while Instant::now() < deadline
            && ends.iter().any(|(p, end)| folds.get(p).is_some_and(|f| f.next_offset < *end))
        {
            self.next(&mut folds, Duration::from_millis(50));
        }
        for fold in folds.values_mut().filter(|f| f.unsaved > 0) {
            self.write(fold);
        }
        if let Err(e) = self.producer.flush(FINAL_FLUSH) {
            tracing::warn!(error = %e, "Last snapshots not all written; a start reads more of the ledger.");
        }
    }

    /// Folds in the next record, if one comes within `wait`.
    fn next<S: LedgerFold>(&self, folds: &mut HashMap<i32, PartitionFold<S>>, wait: Duration) {
        match self.consumer.poll(wait) {
            Some(Ok(msg)) => {
                let Some(fold) = folds.get_mut(&msg.partition()) else { return };
                let env = codec::decode::<ExecEvent>(msg.payload().unwrap_or_default()).ok();
                fold.apply(msg.offset(), env.as_ref());
                if fold.unsaved >= self.every {
                    self.write(fold);
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "Snapshot writer: ledger read error (retried)."),
            None => {}
        }
    }

    fn write<S: LedgerFold>(&self, fold: &mut PartitionFold<S>) {
        let (key, payload) = (snapshot::key(fold.partition), fold.encode());
        let record = BaseRecord::to(&self.snapshots).key(&key).payload(&payload);
        match self.producer.send(record) {
            Ok(()) => {
                fold.unsaved = 0;
                tracing::debug!(
                    partition = fold.partition,
                    next_offset = fold.next_offset,
                    bytes = payload.len(),
                    "Snapshot written."
                );
            }
            Err((e, _)) => {
                self.metrics.writes.with_label_values(&["failed"]).inc();
                tracing::warn!(partition = fold.partition, error = %e, "Snapshot not written; tried again later.");
            }
        }
    }
}
