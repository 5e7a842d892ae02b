//! The Order Plane's IO shell: rebuild from `exec_reports`, then consume `order_intents` and
//! `market_events`, run the core, publish `exec_reports`, store offsets once they are on the
//! broker. Also metrics, health, the admin kill switch and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::clock::{Clock, SystemClock};
use common::config::AppConfig;
use common::core::{Event, Topic};
use common::events::{Envelope, ExecEvent, ExecStatus, IntentEvent, IntentId, Source};
use common::http::{self, Health};
use common::kafka::shell::{Flow, Io, Plane, Shell};
use common::kafka::{self, BrokerError, Consumed, GroupConsumer, Loaded, Publisher};
use common::topics::{EXEC_REPORTS, MARKET_EVENTS, ORDER_INTENTS, ORDER_PLANE_GROUP, ORDER_SNAPSHOTS};
use common::types::{Symbol, UnixNanos};
use prometheus::IntCounter;
use rdkafka::consumer::Consumer;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, HaltCommand};
use crate::engine::{Handled, IntentOutcome, OrderEngine, VenueApplied};
use crate::ibkr_venue::{IbkrVenue, Translated, translate};
use crate::metrics::Metrics;
use crate::simulated::{SimulatedConfig, SimulatedVenue};
use crate::snapshot::OrderLedger;
use crate::venue::Venue;

/// Why the plane stopped with an error.
pub type RunError = common::service::ServiceError;

/// Starts a runtime, installs signal handlers, opens the HTTP port and runs until stopped.
pub fn main(cfg: AppConfig) -> Result<(), RunError> {
    let endpoint = common::service::Endpoint {
        plane: "order-plane",
        bind: cfg.http_bind(),
        port: cfg.order_plane.http_port,
        setting: "ORDER_PLANE_PORT",
    };
    common::service::serve(endpoint, |listener, shutdown| run(cfg, listener, shutdown))
}

type Engine = OrderEngine<Box<dyn Venue>, SystemClock>;

/// Runs the Order Plane until `shutdown` fires.
pub async fn run(cfg: AppConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    let health = Health::new();
    let (admin_tx, admin_rx) = mpsc::channel::<HaltCommand>(8);
    let mut app = http::router(metrics.registry.clone(), Arc::clone(&health));
    if cfg.order_plane.admin_enabled {
        tracing::warn!("Admin endpoint enabled: POST /admin/kill-switch (bearer token required).");
        app = app.merge(admin::router(cfg.order_plane.admin_token.expose().to_owned(), admin_tx));
    } else {
        drop(admin_tx);
    }
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(http::serve_router(listener, app, http_stop.clone()));
    let result = serve(&cfg, &metrics, &health, admin_rx, &shutdown).await;
    http_stop.cancel();
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "HTTP server ended with an error.");
    }
    result
}

/// The core and, for the IBKR venue, the commands it queues (see [`Outbox`]).
fn engine(cfg: &AppConfig) -> (Engine, Option<mpsc::UnboundedReceiver<::ibkr::orders::OrderCommand>>) {
    let o = &cfg.order_plane;
    let (venue, commands): (Box<dyn Venue>, _) = if o.venue == "ibkr" {
        let (tx, rx) = mpsc::unbounded_channel();
        let account = cfg.ibkr.account.expose().to_owned();
        (Box::new(IbkrVenue::new(tx, &cfg.ibkr.contracts, account)), Some(rx))
    } else {
        let ticks: HashMap<Symbol, Decimal> =
            cfg.instruments.iter().filter_map(|i| Symbol::new(&i.symbol).ok().map(|s| (s, i.tick_size))).collect();
        (Box::new(SimulatedVenue::new(SimulatedConfig::new(o, ticks))), None)
    };
    let source = Arc::new(Source { plane: "order-plane".into(), instance: cfg.instance_id().into() });
    tracing::info!(venue = venue.name(), paper = cfg.trading.enable_paper_trading, "Order Plane venue selected.");
    (OrderEngine::new(&cfg.risk, o, &cfg.instruments, venue, source, SystemClock), commands)
}

/// The IBKR order session's events, while one runs.
struct VenueSession {
    events: mpsc::Receiver<::ibkr::orders::OrderEvent>,
    commands: mpsc::UnboundedSender<::ibkr::orders::OrderCommand>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    client: Arc<ibapi::Client>,
}

/// Commands the IBKR venue queued, held back until what was published before them (the `Sent`
/// report of an order) is on the broker: a crash can then lose an order only together with its
/// record, never leave an order at IB that the ledger does not know of.
struct Outbox {
    queued: mpsc::UnboundedReceiver<::ibkr::orders::OrderCommand>,
    session: mpsc::UnboundedSender<::ibkr::orders::OrderCommand>,
}

impl Outbox {
    /// Forwards what is queued once everything `publisher` has sent is delivered.
    async fn release(&mut self, publisher: &Publisher) -> Result<(), BrokerError> {
        let mut commands = Vec::new();
        while let Ok(c) = self.queued.try_recv() {
            commands.push(c);
        }
        if commands.is_empty() {
            return Ok(());
        }
        publisher.delivered().await?;
        for c in commands {
            // A session that ended stops the plane at the next event; the restart reconciles.
            let _ = self.session.send(c);
        }
        Ok(())
    }
}

/// Releases the outbox, when there is one.
async fn release(outbox: &mut Option<Outbox>, publisher: &Publisher) -> Result<(), BrokerError> {
    match outbox {
        Some(o) => o.release(publisher).await,
        None => Ok(()),
    }
}

/// Connects to TWS / IB Gateway and starts the order session (it reconciles first).
async fn start_ibkr(cfg: &AppConfig, shutdown: &CancellationToken) -> Result<Option<VenueSession>, RunError> {
    ::ibkr::connect::log_trading_mode(cfg, "order-plane");
    // The feed (Data Plane) and the orders each need their own client id.
    let ibkr = common::config::IbkrConfig { client_id: cfg.ibkr.order_client_id, ..cfg.ibkr.clone() };
    let connected = tokio::select! {
        () = shutdown.cancelled() => return Ok(None),
        connected = ::ibkr::connect(&ibkr) => connected,
    };
    let (client, mut notices) = connected.map_err(|e| RunError::Venue { venue: "ibkr", message: e.to_string() })?;
    if let Err(e) = ::ibkr::connect::check_account(cfg, client.handshake_managed_accounts()) {
        tracing::error!(error = %e, "IBKR account refused; no order was sent.");
        client.disconnect().await;
        return Err(RunError::Refused { venue: "ibkr", message: e.to_string() });
    }
    let client = Arc::new(client);
    // Connection notices (1100/1101/1102) are for people; the session watches the connection.
    tokio::spawn(async move {
        while let Some(n) = notices.next().await {
            let remedy = ::ibkr::codes::remedy(n.code).unwrap_or("");
            tracing::info!(code = n.code, message = %n.message, remedy, "IBKR notice.");
        }
    });
    let (tx, events) = mpsc::channel(4096);
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let timeout = Duration::from_millis(cfg.ibkr.request_timeout_ms.max(1));
    // Stopped after the consumer loop, so the session still sends what was released to it.
    let stop = CancellationToken::new();
    let task = tokio::spawn(::ibkr::orders::run(Arc::clone(&client), commands_rx, tx, timeout, stop.clone()));
    Ok(Some(VenueSession { events, commands, task, stop, client }))
}

/// The next session event; never, without a session.
async fn next_venue_event(session: &mut Option<VenueSession>) -> Option<::ibkr::orders::OrderEvent> {
    match session {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

/// Hands one session event to the engine; `true` for the end of a reconciliation.
fn on_venue_event(
    engine: &mut Engine,
    event: ::ibkr::orders::OrderEvent,
    metrics: &Metrics,
    out: &mut Vec<Envelope<ExecEvent>>,
) -> bool {
    let now = SystemClock.now();
    match translate(event, now) {
        Translated::Events(events) => {
            let VenueApplied { unknown, repeated } = engine.on_venue(events, out);
            metrics.venue_events_dropped.with_label_values(&["unknown_order"]).inc_by(unknown);
            metrics.venue_events_dropped.with_label_values(&["repeated_execution"]).inc_by(repeated);
            false
        }
        Translated::Reconciled(open) => {
            engine.reconciled(&open, now, out);
            metrics.venue_connected.set(1);
            true
        }
        Translated::Disconnected => {
            tracing::warn!("IBKR connection lost; orders are reconciled once it is back.");
            metrics.venue_connected.set(0);
            false
        }
        Translated::Ignored => false,
    }
}

/// Rebuilds the engine from `exec_reports`: each partition's latest snapshot and the records
/// after it ([`OrderEngine::restore_snapshot`]). Returns the partitions' folds, to go on from.
async fn rebuild(cfg: &AppConfig, engine: &mut Engine, metrics: &Metrics) -> Result<Loaded<OrderLedger>, RunError> {
    let (kafka_cfg, snapshots, ledger) =
        (cfg.kafka.clone(), cfg.kafka.topic(ORDER_SNAPSHOTS), cfg.kafka.topic(EXEC_REPORTS));
    let max_lag_ns = cfg.order_plane.max_intent_lag_ms.saturating_mul(1_000_000);
    let m = metrics.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let fresh = || OrderLedger::new(max_lag_ns);
        kafka::load_folds(&kafka_cfg, &snapshots, &ledger, None, fresh, &m.snapshots, |r, e| {
            m.consumer.decode_error(&ledger, r.partition, r.offset, e);
        })
    })
    .await
    .map_err(|_| BrokerError::TaskLost)??;
    for fold in &loaded.folds {
        engine.restore_snapshot(&fold.state);
    }
    Ok(loaded)
}

async fn serve(
    cfg: &AppConfig,
    metrics: &Metrics,
    health: &Arc<Health>,
    admin_rx: mpsc::Receiver<HaltCommand>,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let client_id = format!("order-plane-{}", cfg.instance_id());
    let topics = [ORDER_INTENTS, MARKET_EVENTS, EXEC_REPORTS, ORDER_SNAPSHOTS];
    let Some(mut publisher) = kafka::connect(&cfg.kafka, &client_id, &topics, shutdown).await? else {
        return Ok(());
    };
    health.set_broker_reachable(true);
    let (mut engine, commands) = engine(cfg);
    let loaded = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        loaded = rebuild(cfg, &mut engine, metrics) => loaded?,
    };
    let now = SystemClock.now();
    let mut out = Vec::new();
    engine.finish_restore(now, &mut out);
    if cfg.order_plane.kill_switch && !engine.halted() {
        engine.set_halt(true, "config: KILL_SWITCH", None, now, &mut out);
    }
    let mut intents: HashMap<IntentId, UnixNanos> = HashMap::new();
    publish(&mut publisher, &out, metrics, &mut intents).await?;
    publisher.delivered().await?;
    out.clear();
    update_gauges(metrics, &engine);
    tracing::info!(
        restored = loaded.records,
        from_snapshots = loaded.from_snapshots,
        partitions = loaded.folds.len(),
        halted = engine.halted(),
        "State rebuilt from exec_reports."
    );
    // Reads back what this plane publishes: a snapshot then covers only reports on the broker.
    let snapshots = kafka::SnapshotWriter::spawn(
        &cfg.kafka,
        cfg.kafka.topic(ORDER_SNAPSHOTS),
        cfg.kafka.topic(EXEC_REPORTS),
        loaded.folds,
        cfg.order_plane.snapshot_every,
        &metrics.snapshots,
    )?;

    // A broker venue is reconciled before any intent is read: what it executed while this
    // plane was away is reported first, and an intent it already holds is never sent again.
    let (mut session, mut outbox) = match commands {
        Some(queued) => match start_ibkr(cfg, shutdown).await? {
            Some(s) => {
                let outbox = Outbox { queued, session: s.commands.clone() };
                (Some(s), Some(outbox))
            }
            None => return Ok(()),
        },
        None => {
            metrics.venue_connected.set(1);
            (None, None)
        }
    };
    if session.is_some() {
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => {
                    stop_session(session, &mut engine, metrics, &mut publisher, &mut intents).await?;
                    return Ok(());
                }
                event = next_venue_event(&mut session) => event,
            };
            let Some(event) = event else {
                return Err(RunError::Venue { venue: "ibkr", message: "the order session ended".into() });
            };
            let reconciled = on_venue_event(&mut engine, event, metrics, &mut out);
            deliver(&mut publisher, &out, metrics, &mut intents, &mut None).await?;
            out.clear();
            if reconciled {
                break;
            }
        }
        // Cancels the kill switch queued at start-up (its halt is already published).
        release(&mut outbox, &publisher).await?;
        update_gauges(metrics, &engine);
        tracing::info!("IBKR orders reconciled; taking intents.");
    }

    let group = cfg.kafka.group(ORDER_PLANE_GROUP);
    let shell = Shell::<Engine>::start(&cfg.kafka, &group, &client_id, &publisher, &metrics.consumer, health)?;
    let mut plane = OrderShell {
        metrics,
        market_duplicates: metrics.consumer.duplicates.with_label_values(&[MARKET_EVENTS]),
        engine,
        intents,
        held: HeldRecords::default(),
        session,
        outbox,
        admin_rx,
        failed: None,
    };
    shell.run(&mut plane, &mut publisher, shutdown).await?;
    let OrderShell { mut engine, mut intents, session, failed, .. } = plane;
    stop_session(session, &mut engine, metrics, &mut publisher, &mut intents).await?;
    // Last: every report is flushed by now, so the final snapshots cover them all.
    if let Some(s) = snapshots {
        s.stop().await;
    }
    tracing::info!("Order Plane stopped; offsets committed.");
    failed.map_or(Ok(()), Err)
}

/// What the Order Plane adds to the shared consumer loop ([`Plane`]).
struct OrderShell<'a> {
    metrics: &'a Metrics,
    /// `order_plane_duplicates_total{topic="market_events"}`, resolved once.
    market_duplicates: IntCounter,
    engine: Engine,
    /// When each intent not finished yet was created, for the latency histograms.
    intents: HashMap<IntentId, UnixNanos>,
    /// A held intent's record stays unacknowledged, and its partition paused, until the intent
    /// is judged: a restart reads it again instead of losing it.
    held: HeldRecords,
    session: Option<VenueSession>,
    outbox: Option<Outbox>,
    admin_rx: mpsc::Receiver<HaltCommand>,
    /// Why the plane stopped, when it could not go on (the IBKR session ended).
    failed: Option<RunError>,
}

/// What the Order Plane waits for besides its records.
enum Outside {
    /// An IBKR session event; `None` when the session ended.
    Venue(Option<::ibkr::orders::OrderEvent>),
    /// A kill-switch command from the admin endpoint.
    Admin(HaltCommand),
}

impl Plane for OrderShell<'_> {
    type Core = Engine;
    type Outside = Outside;

    fn core(&mut self) -> &mut Engine {
        &mut self.engine
    }

    fn handled(&mut self, input: &Event, outcome: Handled, at: &Consumed, consumer: &GroupConsumer) {
        match (input, outcome) {
            (Event::Intent(env), Handled::Intent(outcome)) => {
                // Latency is measured from the intent's creation; a repeat recognised as one is
                // not timed. A repeat of an intent past the risk horizon (its id forgotten) is
                // refused as stale and timed from its first creation.
                if let IntentEvent::Intent(i) = &env.payload
                    && outcome != IntentOutcome::Duplicate
                {
                    self.intents.insert(i.intent_id, env.ts_init);
                    if outcome == IntentOutcome::Held {
                        self.held.hold(consumer, i.intent_id, at.clone());
                    }
                }
                match outcome {
                    IntentOutcome::Duplicate => {
                        self.metrics.duplicate_intents.inc();
                        tracing::info!(event_id = %env.event_id, "Repeated intent ignored: it was executed before.");
                    }
                    IntentOutcome::CancelIgnored => self.metrics.cancels_ignored.inc(),
                    _ => {}
                }
            }
            (Event::Market(env), Handled::Market { fresh }) => {
                if !fresh {
                    self.market_duplicates.inc();
                }
                if self.engine.risk().tradable(env.payload.symbol()) {
                    self.held.market_symbol(at.partition, env.payload.symbol());
                }
            }
            _ => {}
        }
    }

    fn published(&mut self, record: &Envelope<ExecEvent>) {
        observe(self.metrics, record, &mut self.intents);
    }

    fn releases(&self) -> bool {
        self.outbox.is_some()
    }

    fn release(&mut self, publisher: &Publisher) -> impl Future<Output = Result<(), BrokerError>> + Send {
        release(&mut self.outbox, publisher)
    }

    fn done(&mut self, topic: Topic, at: Consumed, produced: bool, consumer: &GroupConsumer, done: &mut Vec<Consumed>) {
        let is_intent = topic == Topic::Intent;
        if produced || is_intent {
            update_gauges(self.metrics, &self.engine);
        }
        let released = self.held.release(consumer, self.engine.take_released());
        // The input's own position first, then those of the held intents it released.
        let token = if is_intent { Some(at) } else { self.held.restartable(&self.engine, at) };
        if let Some(token) = token.filter(|t| !self.held.holds(t)) {
            done.push(token);
        }
        done.extend(released);
    }

    async fn next_outside(&mut self) -> Outside {
        tokio::select! {
            biased;
            event = next_venue_event(&mut self.session) => Outside::Venue(event),
            Some(cmd) = self.admin_rx.recv() => Outside::Admin(cmd),
            else => std::future::pending().await,
        }
    }

    async fn outside(&mut self, event: Outside, io: &mut Io<'_>) -> Result<Flow, RunError> {
        let mut out = Vec::new();
        let applied = match event {
            Outside::Venue(None) => {
                tracing::error!("The IBKR order session ended; stopping.");
                self.failed = Some(RunError::Venue { venue: "ibkr", message: "the order session ended".into() });
                return Ok(Flow::Stop);
            }
            Outside::Venue(Some(event)) => {
                on_venue_event(&mut self.engine, event, self.metrics, &mut out);
                None
            }
            Outside::Admin(cmd) => {
                // The caller was already told "not applied"; applying it now would contradict that.
                if cmd.applied.is_closed() {
                    tracing::warn!(halted = cmd.halted, "Kill switch command dropped: its caller stopped waiting.");
                    return Ok(Flow::Continue);
                }
                tracing::warn!(halted = cmd.halted, reason = %cmd.reason, "Kill switch changed.");
                self.engine.set_halt(cmd.halted, &cmd.reason, cmd.cancel_open, SystemClock.now(), &mut out);
                update_gauges(self.metrics, &self.engine);
                let _ = cmd.applied.send(());
                Some(cmd.published)
            }
        };
        tokio::select! {
            biased;
            () = io.shutdown.cancelled() => return Ok(Flow::Stop),
            published = deliver(io.publisher, &out, self.metrics, &mut self.intents, &mut self.outbox) => published?,
        }
        match applied {
            Some(published) => {
                let _ = published.send(());
            }
            None => update_gauges(self.metrics, &self.engine),
        }
        Ok(Flow::Continue)
    }
}

/// The records the plane cannot let go of yet: those of intents held for market data (their
/// partitions paused), and the market data an event-time venue still holds in its history.
#[derive(Default)]
struct HeldRecords {
    records: HashMap<IntentId, Consumed>,
    /// The symbols seen on each `market_events` partition.
    market: HashMap<i32, Vec<Symbol>>,
}

impl HeldRecords {
    fn market_symbol(&mut self, partition: i32, symbol: &Symbol) {
        let symbols = self.market.entry(partition).or_default();
        if !symbols.contains(symbol) {
            symbols.push(symbol.clone());
        }
    }

    /// The position to store for market record `at`: no later than where its partition must be
    /// read again from after a restart for the venue to rebuild its history (so a restart gives
    /// the same fills); `None` when nothing may be stored yet.
    fn restartable(&self, engine: &Engine, at: Consumed) -> Option<Consumed> {
        let symbols = self.market.get(&at.partition).map_or(&[][..], Vec::as_slice);
        let Some(first) = symbols.iter().filter_map(|s| engine.restart_position(s)).min() else { return Some(at) };
        // A stored offset is the last one done with: reading resumes after it.
        let offset = i64::try_from(first).ok()?.checked_sub(1)?.min(at.offset);
        (offset >= 0).then_some(Consumed { offset, ..at })
    }

    fn holds(&self, at: &Consumed) -> bool {
        self.records.values().any(|c| c.partition == at.partition && c.offset == at.offset && c.topic == at.topic)
    }

    /// Keeps `at` unacknowledged and pauses its partition: nothing after it there is read (and so
    /// acknowledged past it) until it is released.
    fn hold(&mut self, consumer: &rdkafka::consumer::StreamConsumer, intent: IntentId, at: Consumed) {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(&at.topic, at.partition);
        if let Err(e) = consumer.pause(&tpl) {
            tracing::warn!(error = %e, partition = at.partition, "Cannot pause the intents partition.");
        }
        self.records.insert(intent, at);
    }

    /// The records of `released` intents, in the order they were held; resumes the partitions
    /// that hold nothing any more.
    fn release(&mut self, consumer: &rdkafka::consumer::StreamConsumer, released: Vec<IntentId>) -> Vec<Consumed> {
        let mut done: Vec<Consumed> = released.iter().filter_map(|id| self.records.remove(id)).collect();
        done.sort_by_key(|c| (c.partition, c.offset));
        for c in &done {
            if !self.records.values().any(|h| h.partition == c.partition && h.topic == c.topic) {
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition(&c.topic, c.partition);
                if let Err(e) = consumer.resume(&tpl) {
                    tracing::warn!(error = %e, partition = c.partition, "Cannot resume the intents partition.");
                }
            }
        }
        done
    }
}

/// Stops the IBKR session (it first sends what was released to it) and publishes what it
/// reported meanwhile. Orders stay at IB; the next start reconciles them.
async fn stop_session(
    session: Option<VenueSession>,
    engine: &mut Engine,
    metrics: &Metrics,
    publisher: &mut Publisher,
    intents: &mut HashMap<IntentId, UnixNanos>,
) -> Result<(), RunError> {
    let Some(mut s) = session else { return Ok(()) };
    s.stop.cancel();
    let _ = s.task.await;
    let mut out = Vec::new();
    while let Ok(event) = s.events.try_recv() {
        on_venue_event(engine, event, metrics, &mut out);
    }
    publish(publisher, &out, metrics, intents).await?;
    publisher.delivered().await?;
    if let Ok(client) = Arc::try_unwrap(s.client) {
        client.disconnect().await;
    }
    Ok(())
}

/// Produces `out`, then sends the venue's queued commands on, and waits until all of it is
/// delivered.
async fn deliver(
    publisher: &mut Publisher,
    out: &[Envelope<ExecEvent>],
    metrics: &Metrics,
    intents: &mut HashMap<IntentId, UnixNanos>,
    outbox: &mut Option<Outbox>,
) -> Result<(), BrokerError> {
    publish(publisher, out, metrics, intents).await?;
    release(outbox, publisher).await?;
    publisher.delivered().await
}

/// Produces `out` and records its metrics.
async fn publish(
    publisher: &mut Publisher,
    out: &[Envelope<ExecEvent>],
    metrics: &Metrics,
    intents: &mut HashMap<IntentId, UnixNanos>,
) -> Result<(), BrokerError> {
    for env in out {
        publisher.publish(env).await?;
        observe(metrics, env, intents);
    }
    Ok(())
}

fn seconds(from: UnixNanos, to: UnixNanos) -> f64 {
    to.saturating_sub(from) as f64 / 1e9
}

fn observe(metrics: &Metrics, env: &Envelope<ExecEvent>, intents: &mut HashMap<IntentId, UnixNanos>) {
    match &env.payload {
        ExecEvent::Report(r) => {
            let created = intents.get(&r.intent_id).copied();
            match r.status {
                ExecStatus::Accepted => {
                    // Counted when the venue names the order (an IBKR order is first reported
                    // as sent, without an id).
                    if !r.order_id.is_empty() {
                        metrics.orders_placed.inc();
                    }
                    if let Some(c) = created {
                        metrics.intent_to_ack.observe(seconds(c, env.ts_init));
                    }
                }
                ExecStatus::Rejected => {
                    if let Some(reason) = r.reason {
                        metrics.rejections.with_label_values(&[reason.as_str()]).inc();
                    }
                    if let Some(c) = created {
                        metrics.intent_to_ack.observe(seconds(c, env.ts_init));
                    }
                }
                ExecStatus::PartiallyFilled | ExecStatus::Filled => {
                    metrics.fills.inc();
                    record_costs(metrics, r);
                    let notional = r.last_px.unwrap_or_default() * r.last_qty;
                    metrics.notional_traded.inc_by(notional.to_f64().unwrap_or(0.0));
                    metrics.commission.inc_by(r.commission.to_f64().unwrap_or(0.0));
                    if r.status == ExecStatus::Filled
                        && let Some(c) = created
                    {
                        metrics.intent_to_fill.observe(seconds(c, env.ts_init));
                    }
                }
                ExecStatus::Cancelled => metrics.cancels.inc(),
            }
            if r.status.is_terminal() {
                if r.cum_qty > Decimal::ZERO
                    && let Some(s) = r.slippage_bps.and_then(|s| s.to_f64())
                {
                    metrics.slippage_bps.observe(s);
                }
                intents.remove(&r.intent_id);
            }
        }
        ExecEvent::CostModel(c) => {
            let symbol = c.symbol.as_ref().map_or("", Symbol::as_str);
            metrics.cost_coefficient.with_label_values(&[symbol, "intercept"]).set(c.intercept_bps);
            metrics.cost_coefficient.with_label_values(&[symbol, "half_spread"]).set(c.half_spread_coef);
            metrics.cost_coefficient.with_label_values(&[symbol, "impact"]).set(c.impact_coef);
            metrics.cost_stderr.with_label_values(&[symbol, "intercept"]).set(c.intercept_stderr);
            metrics.cost_stderr.with_label_values(&[symbol, "half_spread"]).set(c.half_spread_stderr);
            metrics.cost_stderr.with_label_values(&[symbol, "impact"]).set(c.impact_stderr);
        }
        ExecEvent::Halt(h) => metrics.kill_switch.set(i64::from(h.halted)),
    }
}

/// Splits one fill's cost: the mid moving from the decision to the venue's arrival (delay), the
/// fill against the arrival mid (spread and impact), and its commission.
fn record_costs(metrics: &Metrics, r: &common::events::ExecReport) {
    let cost = |name: &str, value: Option<Decimal>| {
        let value = value.and_then(|v| v.to_f64()).unwrap_or(0.0);
        metrics.execution_cost.with_label_values(&[r.symbol.as_str(), name]).add(value);
    };
    let moved = |from: Decimal, to: Decimal| to.checked_sub(from)?.checked_mul(r.side.sign())?.checked_mul(r.last_qty);
    if let (Some(px), Some(venue_mid)) = (r.last_px, r.venue_mid) {
        cost("delay", moved(r.arrival_mid, venue_mid));
        cost("spread_impact", moved(venue_mid, px));
    }
    cost("fees", Some(r.commission));
}

fn update_gauges(metrics: &Metrics, engine: &Engine) {
    let (gross, net) = engine.risk().exposure_now();
    metrics.gross_exposure.set(gross.to_f64().unwrap_or(0.0));
    metrics.net_exposure.set(net.to_f64().unwrap_or(0.0));
    metrics.kill_switch.set(i64::from(engine.halted()));
    metrics.tracked_orders.set(i64::try_from(engine.tracked_orders()).unwrap_or(i64::MAX));
    metrics.remembered_intents.set(i64::try_from(engine.remembered_intents()).unwrap_or(i64::MAX));
    metrics.held_intents.set(i64::try_from(engine.held_intents()).unwrap_or(i64::MAX));
}
