//! The Strategy Plane's IO shell: rebuild positions from `exec_reports` and the signals from the
//! latest `ofi_events` before where its group resumes, then consume
//! `ofi_events`, `market_events` and `exec_reports`, run the core, publish `order_intents`, and
//! store offsets once the intents are on the broker.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::clock::SystemClock;
use common::codec;
use common::config::AppConfig;
use common::core::{Core, Event, Topic};
use common::events::{Envelope, ExecEvent, IntentEvent, OfiEvent, Source};
use common::http::{self, Health};
use common::kafka::shell::{Flow, Io, Plane, Shell};
use common::kafka::{self, BrokerError, Consumed, GroupConsumer};
use common::snapshot::PartitionFold;
use common::topics::{
    EXEC_REPORTS, MARKET_EVENTS, OFI_EVENTS, ORDER_INTENTS, STRATEGY_PLANE_GROUP, STRATEGY_SNAPSHOTS,
};
use common::types::Symbol;
use prometheus::IntCounter;
use rdkafka::consumer::Consumer;
use rust_decimal::prelude::ToPrimitive;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::{Counters, StrategyEngine};
use crate::metrics::Metrics;
use crate::ownership::Ownership;
use crate::signals::SIGNALS;
use crate::snapshot::StrategyLedger;

/// Why the plane stopped with an error.
pub type RunError = common::service::ServiceError;

/// Starts a runtime, installs signal handlers, opens the HTTP port and runs until stopped.
pub fn main(cfg: AppConfig) -> Result<(), RunError> {
    let endpoint = common::service::Endpoint {
        plane: "strategy-plane",
        bind: cfg.http_bind(),
        port: cfg.strategy_plane.http_port,
        setting: "STRATEGY_PLANE_PORT",
    };
    common::service::serve(endpoint, |listener, shutdown| run(cfg, listener, shutdown))
}

type Engine = StrategyEngine<SystemClock>;

/// Runs the Strategy Plane until `shutdown` fires.
pub async fn run(cfg: AppConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    let health = Health::new();
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(http::serve(listener, metrics.registry.clone(), Arc::clone(&health), http_stop.clone()));
    let result = serve(&cfg, &metrics, &health, &shutdown).await;
    http_stop.cancel();
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "HTTP server ended with an error.");
    }
    result
}

async fn serve(
    cfg: &AppConfig,
    metrics: &Metrics,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let instance = cfg.instance_id();
    let client_id = format!("strategy-plane-{instance}");
    let topics = [OFI_EVENTS, MARKET_EVENTS, EXEC_REPORTS, ORDER_INTENTS, STRATEGY_SNAPSHOTS];
    let Some(mut publisher) = kafka::connect(&cfg.kafka, &client_id, &topics, shutdown).await? else {
        return Ok(());
    };
    health.set_broker_reachable(true);
    let source = Arc::new(Source { plane: "strategy-plane".into(), instance: instance.into() });
    let mut engine = StrategyEngine::new(cfg, source, SystemClock);
    let mut owned = Ownership::default();
    let mut exported = BTreeSet::new();

    // Positions first: no decision before every past fill is known. Each partition's latest
    // snapshot, then only the records after it.
    let loaded = {
        let (kafka_cfg, snapshots, ledger) =
            (cfg.kafka.clone(), cfg.kafka.topic(STRATEGY_SNAPSHOTS), cfg.kafka.topic(EXEC_REPORTS));
        let m = metrics.clone();
        let read = tokio::task::spawn_blocking(move || {
            kafka::load_folds(&kafka_cfg, &snapshots, &ledger, None, StrategyLedger::default, &m.snapshots, |r, e| {
                m.consumer.decode_error(&ledger, r.partition, r.offset, e);
            })
        });
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            loaded = read => loaded.map_err(|_| BrokerError::TaskLost)??,
        }
    };
    // Per partition, the offset up to which the book holds every fill.
    let mut complete: HashMap<i32, i64> = HashMap::new();
    for fold in &loaded.folds {
        restore(&mut engine, &mut owned, fold, true);
        complete.insert(fold.partition, fold.next_offset);
    }
    tracing::info!(
        restored = loaded.records,
        from_snapshots = loaded.from_snapshots,
        partitions = loaded.folds.len(),
        halted = engine.halted(),
        "Positions rebuilt from exec_reports."
    );
    let snapshots = kafka::SnapshotWriter::spawn(
        &cfg.kafka,
        cfg.kafka.topic(STRATEGY_SNAPSHOTS),
        cfg.kafka.topic(EXEC_REPORTS),
        loaded.folds,
        cfg.strategy_plane.snapshot_every,
        &metrics.snapshots,
    )?;

    // Then what the signals and the covariance had learned: the windows just before where the
    // group resumes.
    let group = cfg.kafka.group(STRATEGY_PLANE_GROUP);
    let per_partition = cfg.strategy_plane.rebuild_windows.saturating_mul(cfg.instruments.len().max(1) as u64);
    let (kafka_cfg, topic, from) = (cfg.kafka.clone(), cfg.kafka.topic(OFI_EVENTS), group.clone());
    let read = tokio::task::spawn_blocking(move || {
        kafka::read_before_committed(&kafka_cfg, &topic, &from, per_partition, Duration::from_secs(60))
    });
    let windows = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        records = read => records.map_err(|_| BrokerError::TaskLost)??,
    };
    for r in &windows {
        match codec::decode::<OfiEvent>(&r.payload) {
            Ok(env) => {
                let OfiEvent::Window(w) = &env.payload;
                owned.saw_ofi(&w.symbol, r.partition);
                engine.warm(&env);
            }
            Err(e) => metrics.consumer.decode_error(&cfg.kafka.topic(OFI_EVENTS), r.partition, r.offset, &e),
        }
    }
    update_gauges(metrics, cfg, &engine, &owned, &mut exported);
    tracing::info!(windows = windows.len(), "Signals and covariance rebuilt from ofi_events.");

    let shell = Shell::<Engine>::start(&cfg.kafka, &group, &client_id, &publisher, &metrics.consumer, health)?;
    // An instance that owns every partition waits for every configured instrument before each
    // decision, and exports every one; instances that share them wait for the symbols they see.
    let (ofi, ledger) =
        (Arc::<str>::from(cfg.kafka.topic(OFI_EVENTS)), Arc::<str>::from(cfg.kafka.topic(EXEC_REPORTS)));
    let partition_counts = {
        let (c, ofi, exec) = (Arc::clone(shell.consumer()), Arc::clone(&ofi), Arc::clone(&ledger));
        tokio::task::spawn_blocking(move || {
            let count = |topic: &str| {
                let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(10)).ok()?;
                metadata.topics().first().map(|t| t.partitions().len())
            };
            Some((count(&ofi)?, count(&exec)?))
        })
        .await
        .ok()
        .flatten()
    };
    let mut plane = StrategyShell {
        cfg,
        metrics,
        hot: HotCounters::new(metrics),
        seen: engine.counters(),
        engine,
        owned,
        checked: HashSet::new(),
        exported,
        complete,
        booked: false,
        ofi,
        ledger,
        partition_counts,
    };
    shell.run(&mut plane, &mut publisher, shutdown).await?;
    if let Some(s) = snapshots {
        s.stop().await;
    }
    tracing::info!("Strategy Plane stopped; offsets committed.");
    Ok(())
}

/// What the Strategy Plane adds to the shared consumer loop ([`Plane`]).
struct StrategyShell<'a> {
    cfg: &'a AppConfig,
    metrics: &'a Metrics,
    hot: HotCounters,
    /// The core's counters as last mirrored to the metrics.
    seen: Counters,
    engine: Engine,
    owned: Ownership,
    /// The exec_reports partitions assigned whose committed offset has been compared with the
    /// book.
    checked: HashSet<i32>,
    exported: BTreeSet<Symbol>,
    /// Per partition of `exec_reports`, the offset up to which the book holds every fill.
    complete: HashMap<i32, i64>,
    /// Whether the `exec_reports` record being read is one the book holds already (read at
    /// start-up or at a take-over, delivered again by the group).
    booked: bool,
    /// The full names of `ofi_events` and `exec_reports`.
    ofi: Arc<str>,
    ledger: Arc<str>,
    /// The partitions of `ofi_events` and `exec_reports`, when the broker said.
    partition_counts: Option<(usize, usize)>,
}

impl Plane for StrategyShell<'_> {
    type Core = Engine;
    type Outside = std::convert::Infallible;

    fn core(&mut self) -> &mut Engine {
        &mut self.engine
    }

    async fn before(&mut self, topic: Topic, at: &Consumed, io: &Io<'_>) -> Result<Flow, RunError> {
        if topic != Topic::Exec {
            return Ok(Flow::Continue);
        }
        // A partition this instance reads from further on than its book holds: another instance
        // handled the fills in between (a rebalance), so its history is read.
        let p = at.partition;
        if at.offset > self.complete.get(&p).copied().unwrap_or(0) {
            let (engine, owned) = (&mut self.engine, &mut self.owned);
            let Some(upto) = take_over(self.cfg, self.metrics, p, engine, owned, io.shutdown).await? else {
                return Ok(Flow::Stop);
            };
            self.complete.insert(p, upto);
        }
        // Read at start-up or at a take-over already: its fill is in the book.
        self.booked = at.offset < self.complete.get(&p).copied().unwrap_or(0);
        if !self.booked {
            self.complete.insert(p, at.offset + 1);
        }
        Ok(Flow::Continue)
    }

    fn handle(&mut self, input: &Event, position: u64, out: &mut Vec<Envelope<IntentEvent>>) {
        match input {
            Event::Exec(env) if self.booked => self.engine.on_exec_booked(env, out),
            _ => self.engine.handle(input, position, out),
        }
    }

    fn handled(&mut self, input: &Event, (): (), at: &Consumed, _: &GroupConsumer) {
        match input {
            Event::Ofi(env) => {
                let OfiEvent::Window(w) = &env.payload;
                self.owned.saw_ofi(&w.symbol, at.partition);
            }
            Event::Exec(env) => {
                if let ExecEvent::Report(report) = &env.payload {
                    self.owned.saw_exec(&report.symbol, at.partition);
                }
            }
            Event::Market(_) | Event::Intent(_) => {}
        }
    }

    fn published(&mut self, intent: &Envelope<IntentEvent>) {
        if let IntentEvent::Intent(i) = &intent.payload {
            self.metrics.intents_published.inc();
            tracing::info!(event_id = %intent.event_id, intent_id = %i.intent_id, "Order intent published.");
        }
    }

    fn done(&mut self, topic: Topic, at: Consumed, _: bool, _: &GroupConsumer, done: &mut Vec<Consumed>) {
        self.seen = self.hot.mirror(self.metrics, self.seen, self.engine.counters());
        if topic != Topic::Market {
            update_gauges(self.metrics, self.cfg, &self.engine, &self.owned, &mut self.exported);
        }
        done.push(at);
    }

    async fn tick(&mut self, io: &Io<'_>) -> Result<Flow, RunError> {
        // Which symbols this instance trades follows from its partitions; show it.
        let assignment = io.consumer.assignment().ok();
        let partitions = |topic: &str| -> Vec<i32> {
            assignment
                .as_ref()
                .map(|a| a.elements_for_topic(topic).iter().map(|e| e.partition()).collect())
                .unwrap_or_default()
        };
        let (ofi, exec) = (partitions(&self.ofi), partitions(&self.ledger));
        // A partition just assigned whose group has committed further on than this book holds:
        // rebuilt now, not at its next record, which may be long in coming (its symbol quiet, or
        // the other instance gone after its last fill).
        self.checked.retain(|p| exec.contains(p));
        let fresh: Vec<i32> = exec.iter().copied().filter(|p| !self.checked.contains(p)).collect();
        if !fresh.is_empty() {
            let c = Arc::clone(io.consumer);
            let asked = tokio::task::spawn_blocking(move || c.committed(Duration::from_secs(5))).await;
            match asked {
                Ok(Ok(committed)) => {
                    for p in fresh {
                        let at = committed.find_partition(&self.ledger, p).map(|e| e.offset());
                        if let Some(rdkafka::Offset::Offset(end)) = at
                            && end > self.complete.get(&p).copied().unwrap_or(0)
                        {
                            let (engine, owned) = (&mut self.engine, &mut self.owned);
                            let Some(upto) = take_over(self.cfg, self.metrics, p, engine, owned, io.shutdown).await?
                            else {
                                break;
                            };
                            self.complete.insert(p, upto.max(end));
                        }
                        self.checked.insert(p);
                    }
                }
                // Asked again at the next tick.
                Ok(Err(e)) => tracing::debug!(error = %e, "Committed offsets not read this time."),
                Err(_) => return Err(BrokerError::TaskLost.into()),
            }
        }
        let all = self.partition_counts.is_some_and(|(o, e)| ofi.len() >= o && exec.len() >= e);
        // Nothing is read without an assignment: keep the last answer until there is one.
        if let (Some((total, _)), Some(a)) = (self.partition_counts, &assignment)
            && a.count() > 0
        {
            self.engine.expect_all(ofi.len() >= total);
        }
        // Exported, unlike the above, as assigned now: while a rebalance hands partitions over,
        // no instance owns them, rather than two.
        self.owned.assign(ofi, exec, all);
        update_gauges(self.metrics, self.cfg, &self.engine, &self.owned, &mut self.exported);
        // The shell sets the assigned-partitions gauge after this: once it shows the partitions,
        // the positions they bring are exported too (reading the committed offsets above waits).
        Ok(Flow::Continue)
    }
}

/// Restores partition `fold.partition` of `exec_reports` into the engine from its fold (`halts`:
/// at start-up), and notes which symbols it holds.
fn restore(engine: &mut Engine, owned: &mut Ownership, fold: &PartitionFold<StrategyLedger>, halts: bool) {
    for symbol in fold.state.symbols() {
        owned.saw_exec(symbol, fold.partition);
    }
    engine.restore_partition(&fold.state, halts);
}

/// Takes over partition `partition` of `exec_reports`, which another instance handled: its
/// latest snapshot and the records after it, up to the partition's end now, give its symbols'
/// positions ([`StrategyEngine::restore_partition`]). Returns the offset up to which the book now
/// holds the partition; `None` when told to stop meanwhile.
async fn take_over(
    cfg: &AppConfig,
    metrics: &Metrics,
    partition: i32,
    engine: &mut Engine,
    owned: &mut Ownership,
    shutdown: &CancellationToken,
) -> Result<Option<i64>, RunError> {
    let (kafka_cfg, snapshots, ledger) =
        (cfg.kafka.clone(), cfg.kafka.topic(STRATEGY_SNAPSHOTS), cfg.kafka.topic(EXEC_REPORTS));
    let m = metrics.clone();
    let read = tokio::task::spawn_blocking(move || {
        kafka::load_folds(
            &kafka_cfg,
            &snapshots,
            &ledger,
            Some(partition),
            StrategyLedger::default,
            &m.snapshots,
            |_, _| {},
        )
    });
    let loaded = tokio::select! {
        () = shutdown.cancelled() => return Ok(None),
        loaded = read => loaded.map_err(|_| BrokerError::TaskLost)??,
    };
    let Some(fold) = loaded.folds.first() else { return Ok(Some(0)) };
    restore(engine, owned, fold, false);
    tracing::info!(
        partition,
        records = loaded.records,
        from_snapshot = loaded.from_snapshots > 0,
        "Took over an exec_reports partition; its positions rebuilt from its snapshot and history."
    );
    Ok(Some(fold.next_offset))
}

/// The labelled counters [`HotCounters::mirror`] moves, resolved once.
struct HotCounters {
    duplicate_ofi: IntCounter,
    duplicate_market: IntCounter,
}

impl HotCounters {
    fn new(metrics: &Metrics) -> Self {
        Self {
            duplicate_ofi: metrics.consumer.duplicates.with_label_values(&[OFI_EVENTS]),
            duplicate_market: metrics.consumer.duplicates.with_label_values(&[MARKET_EVENTS]),
        }
    }

    /// Adds what the core counted since `before` to the Prometheus counters.
    fn mirror(&self, metrics: &Metrics, before: Counters, now: Counters) -> Counters {
        // Most messages change no counter.
        if now == before {
            return now;
        }
        metrics.signals_generated.inc_by(now.signals - before.signals);
        metrics.decisions.inc_by(now.decisions - before.decisions);
        metrics.solver_failures.inc_by(now.solver_failures - before.solver_failures);
        metrics.unknown_symbol.inc_by(now.unknown_symbol - before.unknown_symbol);
        metrics.unknown_intent.inc_by(now.unknown_intent - before.unknown_intent);
        self.duplicate_ofi.inc_by(now.duplicate_ofi - before.duplicate_ofi);
        self.duplicate_market.inc_by(now.duplicate_market - before.duplicate_market);
        now
    }
}

/// Sets the per-symbol gauges of the symbols this instance owns, and the portfolio PnL as their
/// sum; removes the series of a symbol it no longer owns (`exported` holds those it has), since a
/// frozen copy beside the owner's would count the position twice in a sum over instances.
fn update_gauges(
    metrics: &Metrics,
    cfg: &AppConfig,
    engine: &Engine,
    owned: &Ownership,
    exported: &mut BTreeSet<Symbol>,
) {
    let f = |d: rust_decimal::Decimal| d.to_f64().unwrap_or(0.0);
    let book = engine.book();
    metrics.halted.set(i64::from(engine.halted()));
    let mut pnl_total = rust_decimal::Decimal::ZERO;
    for inst in &cfg.instruments {
        let Ok(symbol) = Symbol::new(&inst.symbol) else { continue };
        let label = [symbol.as_str()];
        if !owned.owns(&symbol) {
            if exported.remove(&symbol) {
                remove_symbol(metrics, &symbol);
            }
            continue;
        }
        if !exported.contains(&symbol) {
            exported.insert(symbol.clone());
        }
        let p = book.position(&symbol);
        let pnl = book.pnl(&symbol);
        pnl_total = pnl_total.saturating_add(pnl);
        metrics.position.with_label_values(&label).set(f(p.qty));
        metrics.pnl.with_label_values(&label).set(f(pnl));
        metrics.fees.with_label_values(&label).set(f(p.fees));
        if let Some(s) = engine.signals(&symbol) {
            metrics.r2_contemporaneous.with_label_values(&label).set(s.contemporaneous.r_squared());
            metrics.r2_predictive.with_label_values(&label).set(s.predictive.r_squared());
            for (name, beta) in SIGNALS.iter().zip(s.model.coefficients()) {
                metrics.signal_coefficient.with_label_values(&[symbol.as_str(), name]).set(beta);
            }
        }
    }
    metrics.pnl_total.set(f(pnl_total));
}

/// Removes every per-symbol series of `symbol`; a series never set is no error.
fn remove_symbol(metrics: &Metrics, symbol: &Symbol) {
    let label = [symbol.as_str()];
    for gauge in [&metrics.position, &metrics.pnl, &metrics.fees, &metrics.r2_contemporaneous, &metrics.r2_predictive] {
        let _ = gauge.remove_label_values(&label);
    }
    for name in SIGNALS {
        let _ = metrics.signal_coefficient.remove_label_values(&[symbol.as_str(), name]);
    }
}
