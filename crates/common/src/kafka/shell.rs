//! The one consumer loop of the Strategy and Order Planes: receive → decode → [`Core`] →
//! publish → acknowledge → store offset, with the consumer metrics defined once.
//!
//! The at-least-once rule lives here: an input's offset is handed to the [`AckQueue`] with the
//! publisher's position after its outputs, and is stored only once all of them are on the broker.
//! A record that does not decode is counted (`<plane>_decode_errors_total`), logged and skipped,
//! and its offset is acknowledged like any other, so it is not read again forever.
//!
//! What differs between the planes goes through [`Plane`]'s hooks: taking over a partition before
//! its record is read, what an outcome means for metrics and held records, which offsets may be
//! stored, the periodic tick, and events that do not come from the consumer (an IBKR session,
//! admin commands).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AckQueue, BrokerError, Consumed, GroupConsumer, OffsetGauges, Publisher};
use crate::codec::DecodeError;
use crate::config::KafkaConfig;
use crate::core::{Core, Event, Topic};
use crate::events::Envelope;
use crate::http::{self, Health};
use crate::service::ServiceError;

/// Inputs whose outputs may wait for the broker at once; [`AckQueue::push`] waits beyond it.
const IN_FLIGHT: usize = 4096;
/// How often the assignment is looked at (and [`Plane::tick`] runs).
const TICK: Duration = Duration::from_secs(1);
/// How often the lag and backlog gauges are measured.
const OFFSETS_EVERY: Duration = Duration::from_secs(2);

/// The metrics every consuming plane exports, named `<plane>_…`.
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// `<plane>_messages_processed_total{topic}`: records consumed, by input topic.
    pub messages_processed: IntCounterVec,
    /// `<plane>_decode_errors_total{topic, reason}`: records skipped because they did not decode.
    pub decode_errors: IntCounterVec,
    /// `<plane>_duplicates_total{topic}`: re-delivered records dropped by event id.
    pub duplicates: IntCounterVec,
    /// `<plane>_assigned_partitions`: input partitions the group assigned to this instance.
    pub assigned_partitions: IntGauge,
    /// `<plane>_consumer_lag_records{topic, partition}`: the group's lag (end less committed).
    pub consumer_lag: IntGaugeVec,
    /// `<plane>_input_backlog_records{topic}`: records not read yet (end less position), for a
    /// plane that commits behind its position on purpose (the Order Plane).
    pub input_backlog: Option<IntGaugeVec>,
}

impl ConsumerMetrics {
    /// The metrics of `plane` (`order_plane`, `strategy_plane`), registered in `registry`; with
    /// the backlog gauge when `backlog`.
    pub fn new(plane: &str, registry: &Registry, backlog: bool) -> Result<Self, prometheus::Error> {
        let name = |what: &str| format!("{plane}_{what}");
        let m = Self {
            messages_processed: IntCounterVec::new(
                Opts::new(name("messages_processed_total"), "Records consumed."),
                &["topic"],
            )?,
            decode_errors: IntCounterVec::new(
                Opts::new(name("decode_errors_total"), "Records skipped because they could not be decoded."),
                &["topic", "reason"],
            )?,
            duplicates: IntCounterVec::new(
                Opts::new(name("duplicates_total"), "Re-delivered records dropped by event id."),
                &["topic"],
            )?,
            assigned_partitions: IntGauge::new(
                name("assigned_partitions"),
                "Input partitions assigned to this instance by the consumer group.",
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    name("consumer_lag_records"),
                    "The consumer group's lag: end offset less committed offset, by input topic and assigned partition.",
                ),
                &["topic", "partition"],
            )?,
            input_backlog: if backlog {
                Some(IntGaugeVec::new(
                    Opts::new(
                        name("input_backlog_records"),
                        "Records on the broker this plane has not read yet (end offset less position), by input topic.",
                    ),
                    &["topic"],
                )?)
            } else {
                None
            },
        };
        registry.register(Box::new(m.messages_processed.clone()))?;
        registry.register(Box::new(m.decode_errors.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        registry.register(Box::new(m.assigned_partitions.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        if let Some(backlog) = &m.input_backlog {
            registry.register(Box::new(backlog.clone()))?;
        }
        Ok(m)
    }

    /// Counts and logs a record of `topic` (its full name) that did not decode; the caller skips
    /// it.
    pub fn decode_error(&self, topic: &str, partition: i32, offset: i64, e: &DecodeError) {
        self.decode_errors.with_label_values(&[topic, e.reason()]).inc();
        tracing::warn!(topic, partition, offset, reason = e.reason(), error = %e, "Undecodable record skipped.");
    }
}

/// Whether the loop goes on after a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Carry on.
    Continue,
    /// Stop consuming (told to stop meanwhile, or the plane cannot go on); the loop then drains
    /// and commits as at a shutdown.
    Stop,
}

/// What a hook may use of the loop's IO.
pub struct Io<'a> {
    /// The plane's group consumer.
    pub consumer: &'a Arc<GroupConsumer>,
    /// The plane's publisher.
    pub publisher: &'a mut Publisher,
    /// Fires when the plane is told to stop.
    pub shutdown: &'a CancellationToken,
}

/// What a plane adds to the shared loop. Every hook but [`core`](Plane::core) has a default that
/// does nothing.
pub trait Plane: Send {
    /// The plane's core.
    type Core: Core;
    /// Something the plane waits for besides its records (an IBKR session's event, an admin
    /// command).
    type Outside: Send;

    /// The core the loop hands each decoded record.
    fn core(&mut self) -> &mut Self::Core;

    /// Runs before the record at `at` of `topic` is decoded (the Strategy Plane takes over an
    /// `exec_reports` partition that another instance handled up to it).
    fn before(
        &mut self,
        topic: Topic,
        at: &Consumed,
        io: &Io<'_>,
    ) -> impl Future<Output = Result<Flow, ServiceError>> + Send {
        let _ = (topic, at, io);
        async { Ok(Flow::Continue) }
    }

    /// Hands `input`, read at `position`, to the core. Overridden only where the plane's shell
    /// knows something about a record that the core must be told with it (the Strategy Plane: a
    /// report its book already holds, read at start-up or at a take-over).
    fn handle(
        &mut self,
        input: &Event,
        position: u64,
        out: &mut Vec<Envelope<<Self::Core as Core>::Output>>,
    ) -> <Self::Core as Core>::Outcome {
        self.core().handle(input, position, out)
    }

    /// Takes the core's `outcome` for `input`, read at `at`, before its outputs are published.
    fn handled(
        &mut self,
        input: &Event,
        outcome: <Self::Core as Core>::Outcome,
        at: &Consumed,
        consumer: &GroupConsumer,
    ) {
        let _ = (input, outcome, at, consumer);
    }

    /// One output was handed to the producer.
    fn published(&mut self, record: &Envelope<<Self::Core as Core>::Output>) {
        let _ = record;
    }

    /// Whether [`release`](Plane::release) must run after every input, outputs or not.
    fn releases(&self) -> bool {
        false
    }

    /// Runs after an input's outputs are handed to the producer (the Order Plane sends the IBKR
    /// commands its core queued once the records before them are delivered).
    fn release(&mut self, publisher: &Publisher) -> impl Future<Output = Result<(), BrokerError>> + Send {
        let _ = publisher;
        async { Ok(()) }
    }

    /// Runs once the input read at `at` is handled and its outputs (if `produced`) published:
    /// pushes to `done`, in order, the positions to acknowledge now. The default acknowledges
    /// `at`; a plane that must read a record again after a restart holds it back instead.
    fn done(&mut self, topic: Topic, at: Consumed, produced: bool, consumer: &GroupConsumer, done: &mut Vec<Consumed>) {
        let _ = (topic, produced, consumer);
        done.push(at);
    }

    /// Runs every second, before `<plane>_assigned_partitions` is set (the Strategy Plane follows
    /// its assignment here).
    fn tick(&mut self, io: &Io<'_>) -> impl Future<Output = Result<Flow, ServiceError>> + Send {
        let _ = io;
        async { Ok(Flow::Continue) }
    }

    /// The next event from outside the consumer; never, by default.
    fn next_outside(&mut self) -> impl Future<Output = Self::Outside> + Send {
        std::future::pending()
    }

    /// Handles an event from outside the consumer.
    fn outside(
        &mut self,
        event: Self::Outside,
        io: &mut Io<'_>,
    ) -> impl Future<Output = Result<Flow, ServiceError>> + Send {
        let _ = (event, io);
        async { Ok(Flow::Continue) }
    }
}

/// One subscribed topic.
struct Input {
    topic: Topic,
    /// The full name (with the deployment's prefix).
    name: Arc<str>,
    /// `<plane>_messages_processed_total{topic}`, resolved once: looking a label up costs a hash
    /// and a lock, per message.
    processed: IntCounter,
}

/// A plane's consumer, subscribed to its core's inputs, with the tasks around it: the
/// acknowledgement queue that stores offsets, the broker check behind `/health/ready` and the lag
/// gauges. Made by [`Shell::start`], run by [`Shell::run`].
pub struct Shell<C> {
    consumer: Arc<GroupConsumer>,
    inputs: Vec<Input>,
    metrics: ConsumerMetrics,
    health: Arc<Health>,
    acks: AckQueue<Consumed>,
    ack_task: JoinHandle<Result<u64, BrokerError>>,
    checker: JoinHandle<()>,
    offsets: JoinHandle<()>,
    core: std::marker::PhantomData<fn() -> C>,
}

impl<C: Core> Shell<C> {
    /// Joins `group` as `client_id`, subscribes to the inputs of core `C` and starts the tasks
    /// around the consumer; the plane is ready (`/health/ready`) from here on.
    pub fn start(
        cfg: &KafkaConfig,
        group: &str,
        client_id: &str,
        publisher: &Publisher,
        metrics: &ConsumerMetrics,
        health: &Arc<Health>,
    ) -> Result<Self, BrokerError> {
        let consumer = Arc::new(GroupConsumer::new(cfg, group, client_id)?);
        let inputs: Vec<Input> = C::INPUTS
            .iter()
            .map(|&topic| Input {
                topic,
                name: Arc::from(cfg.topic(topic.name())),
                processed: metrics.messages_processed.with_label_values(&[topic.name()]),
            })
            .collect();
        let names: Vec<&str> = inputs.iter().map(|i| &*i.name).collect();
        consumer.subscribe(&names).map_err(BrokerError::Client)?;
        let (acks, ack_task) =
            AckQueue::spawn(IN_FLIGHT, publisher.deliveries().clone(), super::store_offsets(Arc::clone(&consumer)));
        health.set_working(true);
        let checker = http::spawn_broker_check(Arc::clone(publisher.producer()), Arc::clone(health));
        let offsets = super::spawn_offset_gauges(
            Arc::clone(&consumer),
            OffsetGauges { lag: metrics.consumer_lag.clone(), backlog: metrics.input_backlog.clone() },
            inputs.iter().map(|i| (i.name.to_string(), i.topic.name())).collect(),
            OFFSETS_EVERY,
        );
        Ok(Self {
            consumer,
            inputs,
            metrics: metrics.clone(),
            health: Arc::clone(health),
            acks,
            ack_task,
            checker,
            offsets,
            core: std::marker::PhantomData,
        })
    }

    /// The consumer (for what a plane asks of its group before the loop runs).
    pub fn consumer(&self) -> &Arc<GroupConsumer> {
        &self.consumer
    }

    /// Consumes until `shutdown` fires or a hook says [`Flow::Stop`], then drains: waits for the
    /// outputs in flight, commits the stored offsets and flushes the producer, each step bounded
    /// ([`drain`](super::drain)). An error from the broker or a hook ends it at once.
    pub async fn run<P: Plane<Core = C>>(
        self,
        plane: &mut P,
        publisher: &mut Publisher,
        shutdown: &CancellationToken,
    ) -> Result<(), ServiceError> {
        let Self { consumer, inputs, metrics, health, acks, ack_task, checker, offsets, .. } = self;
        let mut out: Vec<Envelope<C::Output>> = Vec::new();
        let mut done: Vec<Consumed> = Vec::new();
        let mut tick = tokio::time::interval(TICK);
        loop {
            // Asked here, and polled in the selects only after the work they wait for: polling a
            // cancellation future registers a waiter under a lock, which per message is a cost.
            if shutdown.is_cancelled() {
                break;
            }
            tokio::select! {
                biased;
                _ = tick.tick() => {
                    let io = Io { consumer: &consumer, publisher: &mut *publisher, shutdown };
                    let flow = plane.tick(&io).await?;
                    let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                    metrics.assigned_partitions.set(i64::try_from(assigned).unwrap_or(i64::MAX));
                    if flow == Flow::Stop {
                        break;
                    }
                }
                event = plane.next_outside() => {
                    let mut io = Io { consumer: &consumer, publisher: &mut *publisher, shutdown };
                    if plane.outside(event, &mut io).await? == Flow::Stop {
                        break;
                    }
                }
                msg = consumer.recv() => {
                    let msg = match msg {
                        Ok(msg) => msg,
                        Err(e) => {
                            super::consumer_error(&consumer, &e)?;
                            continue;
                        }
                    };
                    let Some(input) = inputs.iter().find(|i| *i.name == *msg.topic()) else {
                        tracing::warn!(topic = msg.topic(), "Record of a topic not subscribed to; ignored.");
                        continue;
                    };
                    let (topic, at) = (input.topic, Consumed::on(&input.name, &msg));
                    input.processed.inc();
                    let io = Io { consumer: &consumer, publisher: &mut *publisher, shutdown };
                    if plane.before(topic, &at, &io).await? == Flow::Stop {
                        break;
                    }
                    let payload = msg.payload().unwrap_or_default();
                    match topic.decode(payload) {
                        Ok(event) => {
                            let position = u64::try_from(at.offset).unwrap_or_default();
                            let outcome = plane.handle(&event, position, &mut out);
                            plane.handled(&event, outcome, &at, &consumer);
                        }
                        Err(e) => {
                            metrics.decode_error(&at.topic, at.partition, at.offset, &e);
                            if plane.core().refused(topic, payload, &e, &mut out) {
                                tracing::info!(topic = %at.topic, offset = at.offset, "Undecodable record answered.");
                            }
                        }
                    }
                    let produced = !out.is_empty();
                    if produced || plane.releases() {
                        let published = async {
                            for record in &out {
                                publisher.publish(record).await?;
                                plane.published(record);
                            }
                            plane.release(publisher).await
                        };
                        tokio::select! {
                            biased;
                            () = shutdown.cancelled() => break,
                            published = published => published?,
                        }
                        out.clear();
                    }
                    plane.done(topic, at, produced, &consumer, &mut done);
                    let sent = publisher.sent();
                    let mut stopped = false;
                    for token in done.drain(..) {
                        let pushed = tokio::select! {
                            biased;
                            pushed = acks.push(token, sent) => pushed,
                            () = shutdown.cancelled() => false,
                        };
                        if !pushed {
                            stopped = true;
                            break;
                        }
                    }
                    if stopped {
                        break;
                    }
                }
                // A delivery failed while no input came: the drain below returns its error.
                () = acks.stopped() => break,
                () = shutdown.cancelled() => break,
            }
        }
        health.set_working(false);
        offsets.abort();
        super::drain(acks, ack_task, &consumer, publisher).await?;
        checker.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    fn names(registry: &Registry) -> Vec<String> {
        registry.gather().iter().map(|f| f.name().to_owned()).collect()
    }

    #[test]
    fn the_consumer_metrics_carry_the_planes_name_and_the_backlog_only_when_asked() {
        let registry = Registry::new();
        let m = ConsumerMetrics::new("order_plane", &registry, true).unwrap();
        // A vector shows only once it has a series.
        m.messages_processed.with_label_values(&["order_intents"]).inc();
        m.duplicates.with_label_values(&["market_events"]).inc();
        m.consumer_lag.with_label_values(&["order_intents", "0"]).set(1);
        m.input_backlog.as_ref().unwrap().with_label_values(&["order_intents"]).set(1);
        m.decode_error("prefix.order_intents", 0, 7, &DecodeError::Empty);
        m.decode_error("prefix.order_intents", 0, 8, &DecodeError::Empty);
        assert_eq!(
            names(&registry),
            [
                "order_plane_assigned_partitions",
                "order_plane_consumer_lag_records",
                "order_plane_decode_errors_total",
                "order_plane_duplicates_total",
                "order_plane_input_backlog_records",
                "order_plane_messages_processed_total",
            ]
        );
        assert_eq!(m.decode_errors.with_label_values(&["prefix.order_intents", "empty"]).get(), 2);

        let registry = Registry::new();
        let m = ConsumerMetrics::new("strategy_plane", &registry, false).unwrap();
        assert!(m.input_backlog.is_none());
        assert_eq!(names(&registry), ["strategy_plane_assigned_partitions"]);
    }
}
