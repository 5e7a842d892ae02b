//! Publishing with delivery tracking: [`Publisher`] numbers the records it sends, the producer's
//! delivery reports move a [`Deliveries`] watermark, and [`AckQueue`] hands an input on once the
//! watermark has passed its outputs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode as Code;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::{BrokerError, producer_config};
use crate::codec;
use crate::config::KafkaConfig;
use crate::events::{Envelope, Payload};

/// The producer under a [`Publisher`]: its delivery reports move a [`Deliveries`] watermark.
pub type TrackedProducer = ThreadedProducer<Tracking>;

/// A [`TrackedProducer`] with the planes' settings, and the deliveries its reports advance.
pub fn tracked_producer(cfg: &KafkaConfig, client_id: &str) -> Result<(Arc<TrackedProducer>, Deliveries), BrokerError> {
    let deliveries = Deliveries::default();
    let producer = producer_config(cfg, client_id)
        .create_with_context(Tracking { deliveries: deliveries.clone() })
        .map_err(BrokerError::Client)?;
    Ok((Arc::new(producer), deliveries))
}

/// The opaque of a record nobody waits for (see [`send_untracked`]).
const UNTRACKED: usize = usize::MAX;

/// A position in the sequence of records a [`Publisher`] has sent: "every record sent before".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sent(usize);

/// What the broker has acknowledged of one producer's tracked records, as a watermark over their
/// send order (records are numbered as they are sent; reports come back in any order across
/// partitions). Cheap to clone: all clones share one state.
///
/// One record's report is a few integer operations under an uncontended lock, where a
/// `FutureProducer` allocates a channel per record, sends the report through it and wakes a task.
#[derive(Clone, Default)]
pub struct Deliveries(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<Watermark>,
    changed: Notify,
}

#[derive(Default)]
struct Watermark {
    /// Every record numbered below this is delivered.
    below: usize,
    /// Which of the records from `below` on are delivered (`done[i]`: record `below + i`).
    done: VecDeque<bool>,
    /// The lowest-numbered record that failed for good (after librdkafka's own retries).
    failed: Option<(usize, KafkaError)>,
}

impl Watermark {
    /// Records `ticket` as delivered; `true` when that moved the watermark.
    fn delivered(&mut self, ticket: usize) -> bool {
        let Some(i) = ticket.checked_sub(self.below) else { return false };
        // At most the producer's queue (queue.buffering.max.messages) is outstanding.
        if i >= self.done.len() {
            self.done.resize(i + 1, false);
        }
        self.done[i] = true;
        let before = self.below;
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.below += 1;
        }
        self.below != before
    }
}

impl Deliveries {
    /// Takes the broker's answer for record `ticket`.
    fn report(&self, ticket: usize, result: Result<(), &KafkaError>) {
        let shared = &self.0;
        let moved = {
            let mut w = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            match result {
                Ok(()) => w.delivered(ticket),
                Err(e) => {
                    if w.failed.as_ref().is_none_or(|(first, _)| ticket < *first) {
                        w.failed = Some((ticket, e.clone()));
                    }
                    true
                }
            }
        };
        if moved {
            shared.changed.notify_waiters();
        }
    }

    /// `true` when every record sent before `upto` is delivered; an error when one of them failed.
    fn reached(&self, upto: Sent) -> Result<bool, BrokerError> {
        let w = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        if w.below >= upto.0 {
            return Ok(true);
        }
        match &w.failed {
            Some((ticket, e)) if *ticket < upto.0 => Err(BrokerError::Delivery(e.clone())),
            _ => Ok(false),
        }
    }

    /// Waits until every record sent before `upto` is delivered; the first that failed is the
    /// error.
    pub async fn wait(&self, upto: Sent) -> Result<(), BrokerError> {
        loop {
            // Registered before looking, so that a report in between still wakes this wait.
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.reached(upto)? {
                return Ok(());
            }
            changed.await;
        }
    }
}

/// The producer context of a [`TrackedProducer`]: its delivery reports (on the producer's polling
/// thread) move the [`Deliveries`] watermark.
pub struct Tracking {
    deliveries: Deliveries,
}

impl ClientContext for Tracking {}

impl ProducerContext for Tracking {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        if ticket == UNTRACKED {
            if let Err((e, _)) = result {
                tracing::debug!(error = %e, "A record nobody waits for was not delivered.");
            }
            return;
        }
        self.deliveries.report(ticket, result.as_ref().map(|_| ()).map_err(|(e, _)| e));
    }
}

/// Enqueues a record whose delivery nobody waits for (a replay checkpoint: the next one supersedes
/// it); a failure is only logged.
pub fn send_untracked(producer: &TrackedProducer, topic: &str, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
    producer.send(BaseRecord::with_opaque_to(topic, UNTRACKED).key(key).payload(payload)).map_err(|(e, _)| e)
}

/// Encodes envelopes and hands them to the producer, numbering them for [`Deliveries`].
pub struct Publisher {
    producer: Arc<TrackedProducer>,
    deliveries: Deliveries,
    /// The number the next record gets.
    next: usize,
    partitions: HashMap<String, i32>,
    prefix: String,
    /// Full topic name of each payload family published so far, so a record does not format it.
    names: Vec<(&'static str, String)>,
    buf: Vec<u8>,
}

impl Publisher {
    /// A publisher over `producer` and its `deliveries` (from [`tracked_producer`]); `partitions`
    /// holds each topic's partition count (from [`ensure_topics`](super::ensure_topics)), needed
    /// to broadcast unkeyed events.
    pub fn new(
        (producer, deliveries): (Arc<TrackedProducer>, Deliveries),
        cfg: &KafkaConfig,
        partitions: HashMap<String, i32>,
    ) -> Self {
        Self {
            producer,
            deliveries,
            next: 0,
            partitions,
            prefix: cfg.topic_prefix.clone(),
            names: Vec::new(),
            buf: Vec::with_capacity(1024),
        }
    }

    /// The producer, for health checks and records nobody waits for.
    pub fn producer(&self) -> &Arc<TrackedProducer> {
        &self.producer
    }

    /// The delivery reports of what this publisher sends.
    pub fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    /// Everything published so far: [`Deliveries::wait`] on it, or hand it to [`AckQueue::push`].
    pub fn sent(&self) -> Sent {
        Sent(self.next)
    }

    /// Waits until everything published so far is delivered.
    pub async fn delivered(&self) -> Result<(), BrokerError> {
        self.deliveries.wait(self.sent()).await
    }

    /// Encodes `envelope` and enqueues it on its topic, keyed by symbol (or to every partition
    /// when it has no symbol). Waits while the producer's queue is full.
    pub async fn publish<P: Payload + 'static>(&mut self, envelope: &Envelope<P>) -> Result<(), BrokerError> {
        self.buf.clear();
        codec::encode_into(envelope, &mut self.buf);
        let index = self.name_index(P::TOPIC);
        // The record's Kafka timestamp is when it was made, not when its event happened: the
        // broker's time-based retention counts from it, and a replay of 2024 data stamped with
        // event time would be deleted at the next retention check.
        let ts = i64::try_from(envelope.ts_init.as_millis()).ok();
        match envelope.payload.key() {
            Some(key) => self.send(index, Some(key), None, ts).await,
            None => {
                let n = self.partitions.get(&self.names[index].1).copied().unwrap_or(1);
                for partition in 0..n {
                    self.send(index, None, Some(partition), ts).await?;
                }
                Ok(())
            }
        }
    }

    /// Where the full name of topic `base` is in `names`, added at its first use.
    fn name_index(&mut self, base: &'static str) -> usize {
        if let Some(i) = self.names.iter().position(|(b, _)| *b == base) {
            return i;
        }
        self.names.push((base, format!("{}{}", self.prefix, base)));
        self.names.len() - 1
    }

    /// Enqueues `buf` on topic `names[index]` as the next numbered record.
    async fn send(
        &mut self,
        index: usize,
        key: Option<&str>,
        partition: Option<i32>,
        ts: Option<i64>,
    ) -> Result<(), BrokerError> {
        let ticket = self.next;
        loop {
            let mut record: BaseRecord<'_, str, [u8], usize> =
                BaseRecord::with_opaque_to(&self.names[index].1, ticket).payload(&self.buf);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            if let Some(ts) = ts {
                record = record.timestamp(ts);
            }
            match self.producer.send(record) {
                Ok(()) => {
                    self.next += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(Code::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(BrokerError::Delivery(e)),
            }
        }
    }

    /// Waits until everything enqueued is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), BrokerError> {
        self.producer.flush(timeout).map_err(BrokerError::Delivery)
    }

    /// At a stop: waits at most [`FLUSH_GRACE`](super::FLUSH_GRACE) for what is enqueued. What
    /// is not delivered by then is not lost, since nothing after it was acknowledged: its inputs
    /// are read (or replayed from the checkpoint) again after a restart.
    pub fn flush_at_stop(&self) {
        if let Err(e) = self.flush(super::FLUSH_GRACE) {
            tracing::warn!(error = %e, "Records not delivered at the stop; they are published again after a restart.");
        }
    }
}

/// How long [`AckQueue`] lets inputs gather after handling what was there.
const ACK_GATHER: Duration = Duration::from_millis(1);
/// Most inputs [`AckQueue`] takes at once.
const ACK_BATCH: usize = 1024;

/// What [`AckQueue`] does with the inputs whose outputs are all on the broker.
///
/// Any `FnMut(T)` is one: it is called with each token and has nothing to do per batch.
pub trait OnAck<T>: Send + 'static {
    /// One input's outputs are all acknowledged, and so are those of every input before it.
    /// Called in the order the inputs were pushed.
    fn acked(&mut self, token: T);

    /// The inputs gathered at once are handled (also before the task stops on a failed
    /// delivery): where an effect needs only the newest token, it is cheaper to apply it here
    /// once than in [`acked`](Self::acked) for every input.
    fn settled(&mut self) {}
}

impl<T, F: FnMut(T) + Send + 'static> OnAck<T> for F {
    fn acked(&mut self, token: T) {
        self(token);
    }
}

/// Hands each input's token to its [`OnAck`], in the order the inputs were processed, once all of
/// that input's outputs are on the broker. This is what makes a consumer at-least-once without
/// making it wait for the broker on every message: the token is typically an offset to store, or
/// a replay position to checkpoint.
pub struct AckQueue<T> {
    tx: mpsc::Sender<(T, Sent)>,
}

impl<T: Send + 'static> AckQueue<T> {
    /// Starts the awaiting task over the `deliveries` of the publisher the outputs go through. At
    /// most `capacity` inputs wait at once; [`push`](Self::push) then waits, which is the
    /// pipeline's back-pressure.
    pub fn spawn<A: OnAck<T>>(
        capacity: usize,
        deliveries: Deliveries,
        mut on_ack: A,
    ) -> (Self, JoinHandle<Result<u64, BrokerError>>) {
        let (tx, mut rx) = mpsc::channel::<(T, Sent)>(capacity);
        let task = tokio::spawn(async move {
            let mut acked = 0u64;
            let mut batch = Vec::with_capacity(ACK_BATCH);
            while rx.recv_many(&mut batch, ACK_BATCH).await > 0 {
                for (token, upto) in batch.drain(..) {
                    let reached = match deliveries.reached(upto) {
                        Ok(true) => Ok(()),
                        // Settle what is acknowledged before waiting: a slow broker must not hold
                        // back the offsets of the inputs before it.
                        Ok(false) => {
                            on_ack.settled();
                            deliveries.wait(upto).await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = reached {
                        on_ack.settled();
                        return Err(e);
                    }
                    on_ack.acked(token);
                    acked += 1;
                }
                on_ack.settled();
                // Let inputs gather instead of waking this task for each one: at full speed that
                // wake-up (a thread switch per consumed message) cost a consumer plane about a
                // third of its CPU. Offsets and checkpoints are stored a millisecond later.
                tokio::time::sleep(ACK_GATHER).await;
            }
            Ok(acked)
        });
        (Self { tx }, task)
    }

    /// Queues one input, whose outputs are everything its publisher had sent at `upto`
    /// ([`Publisher::sent`] right after publishing them). Returns `false` when the awaiting task
    /// has stopped (a delivery failed); the caller should stop and read the task's error.
    pub async fn push(&self, token: T, upto: Sent) -> bool {
        // There is nearly always room: take it without the waiting machinery of `send`.
        match self.tx.try_send((token, upto)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(input)) => self.tx.send(input).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Resolves once the awaiting task has stopped (a delivery failed): a consumer waiting for
    /// its next input learns of it without one.
    pub async fn stopped(&self) {
        self.tx.closed().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    fn failure() -> KafkaError {
        KafkaError::MessageProduction(Code::MessageSizeTooLarge)
    }

    #[test]
    fn the_watermark_waits_for_every_earlier_record_and_stops_at_a_failure() {
        let d = Deliveries::default();
        // Reports come back out of order across partitions.
        d.report(1, Ok(()));
        assert!(!d.reached(Sent(1)).unwrap() && !d.reached(Sent(2)).unwrap());
        d.report(0, Ok(()));
        assert!(d.reached(Sent(2)).unwrap());
        d.report(3, Err(&failure()));
        d.report(4, Ok(()));
        assert!(!d.reached(Sent(3)).unwrap(), "record 2 is still out, and it is before the failure");
        d.report(2, Ok(()));
        assert!(d.reached(Sent(3)).unwrap(), "everything before the failed record is delivered");
        assert!(d.reached(Sent(4)).is_err(), "record 3 failed");
        assert!(d.reached(Sent(5)).is_err(), "a later success does not hide it");
    }

    #[tokio::test]
    async fn the_queue_acknowledges_in_order_up_to_a_failed_delivery_and_then_stops() {
        let d = Deliveries::default();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&acked);
        let (acks, task) = AckQueue::spawn(16, d.clone(), move |token: u32| seen.lock().unwrap().push(token));
        // Input 10 has records 0 and 1, input 11 none, input 12 record 2, input 13 record 3.
        for (token, upto) in [(10, 2), (11, 2), (12, 3), (13, 4)] {
            assert!(acks.push(token, Sent(upto)).await);
        }
        d.report(1, Ok(()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(acked.lock().unwrap().is_empty(), "input 10 waits for record 0");
        d.report(0, Ok(()));
        d.report(3, Ok(()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(*acked.lock().unwrap(), [10, 11], "input 12 waits for record 2");
        d.report(2, Err(&failure()));
        let stopped = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        assert!(matches!(stopped, Err(BrokerError::Delivery(_))));
        assert_eq!(*acked.lock().unwrap(), [10, 11], "nothing at or after the failure is acknowledged");
        tokio::time::timeout(Duration::from_secs(5), acks.stopped()).await.unwrap();
        assert!(!acks.push(14, Sent(4)).await, "the queue has stopped");
    }
}
