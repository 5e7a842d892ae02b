//! The backtest's loop: replay rows through `DataCore` → `StrategyEngine` → `OrderEngine` with
//! the simulated venue, wired as the planes wire them through Kafka, and every record they would
//! publish handed to a callback in the order they produce it. The Strategy and Order cores are
//! driven through [`Core`], the interface the services' consumer shell (`common::kafka::shell`)
//! drives them through, each handed the records of the topics its plane reads.
//!
//! Its records equal, `ts_init` aside, what the three services publish through Kafka for the
//! same input and configuration: `tests/parity.rs` (both samples, all four topics) and
//! `tests/determinism.rs` (any replay speed, partition count, an Order Plane crash) hold the
//! services to this wiring. Nothing here reads a clock or does IO: the same rows and
//! configuration give the same records.

use std::sync::Arc;

use common::clock::ManualClock;
use common::config::AppConfig;
use common::core::{Core, Event};
use common::events::{Envelope, ExecEvent, IntentEvent, MarketEvent, OfiEvent, Source};
use common::types::{Symbol, UnixNanos};
use data_plane::core::{DataCore, Output};
use data_plane::quality::Rejection;
use data_plane::source::{Item, RowError};
use order_plane::engine::OrderEngine;
use order_plane::simulated::{SimulatedConfig, SimulatedVenue};
use strategy_plane::engine::{Counters, StrategyEngine};

/// One thing the cores produced, in production order.
#[derive(Debug)]
pub enum Published<'a> {
    /// A `market_events` record.
    Market(&'a Envelope<MarketEvent>),
    /// An `ofi_events` record.
    Ofi(&'a Envelope<OfiEvent>),
    /// An `order_intents` record (orders, cancels and decision marks).
    Intent(&'a Envelope<IntentEvent>),
    /// An `exec_reports` record.
    Exec(&'a Envelope<ExecEvent>),
    /// A row the Data Plane's quality checks refused.
    Refused {
        /// Why.
        reason: Rejection,
        /// Its symbol.
        symbol: &'a Symbol,
    },
    /// A row that could not be parsed.
    Malformed(&'a RowError),
}

/// The instance name the records carry when `app.instance_id` is empty. The services use the
/// host name then; a backtest's records (and the hash of its `exec_reports`) must not depend on
/// the machine it ran on.
pub const INSTANCE: &str = "backtest";

/// The Order core with the simulated venue.
type OrderCore = OrderEngine<SimulatedVenue, ManualClock>;

/// The three cores and their scratch buffers.
pub struct Cores {
    data: DataCore<ManualClock>,
    strategy: StrategyEngine<ManualClock>,
    order: OrderCore,
    outputs: Vec<Output>,
    intents: Vec<Envelope<IntentEvent>>,
    exec: Vec<Envelope<ExecEvent>>,
}

impl Cores {
    /// Cores for `cfg`, reading the replay stream named `stream` (event ids derive from it; see
    /// `data_plane::run::stream_name`). `ts_init` is 0 on every record: a backtest has no
    /// creation time worth recording, and it keeps the output reproducible.
    pub fn new(cfg: &AppConfig, stream: &str) -> Self {
        let instance: Arc<str> =
            if cfg.app.instance_id.is_empty() { INSTANCE.into() } else { cfg.app.instance_id.as_str().into() };
        let source = |plane: &str| Arc::new(Source { plane: plane.into(), instance: Arc::clone(&instance) });
        let clock = || ManualClock::new(UnixNanos(0));
        let data = DataCore::new(&cfg.data_plane, stream, source("data-plane"), clock())
            .expecting(&data_plane::run::instruments(cfg));
        let strategy = StrategyEngine::new(cfg, source("strategy-plane"), clock());
        let ticks = cfg.instruments.iter().filter_map(|i| Some((Symbol::new(&i.symbol).ok()?, i.tick_size))).collect();
        let venue = SimulatedVenue::new(SimulatedConfig::new(&cfg.order_plane, ticks));
        let order =
            OrderEngine::new(&cfg.risk, &cfg.order_plane, &cfg.instruments, venue, source("order-plane"), clock());
        Self { data, strategy, order, outputs: Vec::new(), intents: Vec::new(), exec: Vec::new() }
    }

    /// Feeds one replay row.
    pub fn step(&mut self, item: Item, on: &mut impl FnMut(Published<'_>)) {
        match item {
            Ok(event) => {
                self.data.process(event, &mut self.outputs);
                self.feed(on);
            }
            Err(row) => on(Published::Malformed(&row)),
        }
    }

    /// Ends the input: the last windows close and every symbol's feed is marked ended, which
    /// lets the simulated venue execute what still waits for a quote.
    pub fn end(&mut self, on: &mut impl FnMut(Published<'_>)) {
        self.data.end(&mut self.outputs);
        self.feed(on);
    }

    /// The Strategy core's counters (decisions among them).
    pub fn strategy_counters(&self) -> Counters {
        self.strategy.counters()
    }

    fn feed(&mut self, on: &mut impl FnMut(Published<'_>)) {
        let mut outputs = std::mem::take(&mut self.outputs);
        for output in outputs.drain(..) {
            let event = match output {
                Output::Market(env) => Event::Market(env),
                Output::Ofi(env) => Event::Ofi(env),
                Output::Rejected { reason, symbol, .. } => {
                    on(Published::Refused { reason, symbol: &symbol });
                    continue;
                }
            };
            on(published(&event));
            // Each core takes what its plane subscribes to, as the consumer shell hands it.
            if StrategyEngine::<ManualClock>::INPUTS.contains(&event.topic()) {
                self.strategy.handle(&event, 0, &mut self.intents);
            }
            if OrderCore::INPUTS.contains(&event.topic()) {
                self.order.handle(&event, 0, &mut self.exec);
            }
            self.settle(on);
        }
        self.outputs = outputs;
    }

    /// Hands intents to the Order core and its reports to the Strategy core until neither has
    /// more: a final report can let a waiting decision run, whose intents report in turn.
    fn settle(&mut self, on: &mut impl FnMut(Published<'_>)) {
        loop {
            for intent in std::mem::take(&mut self.intents) {
                let event = Event::Intent(intent);
                self.order.handle(&event, 0, &mut self.exec);
                on(published(&event));
            }
            if self.exec.is_empty() {
                break;
            }
            for report in std::mem::take(&mut self.exec) {
                let event = Event::Exec(report);
                self.strategy.handle(&event, 0, &mut self.intents);
                on(published(&event));
            }
        }
    }
}

/// `event` as the callback sees it.
fn published(event: &Event) -> Published<'_> {
    match event {
        Event::Market(env) => Published::Market(env),
        Event::Ofi(env) => Published::Ofi(env),
        Event::Intent(env) => Published::Intent(env),
        Event::Exec(env) => Published::Exec(env),
    }
}

/// Runs `rows` through fresh cores to the end of the input; returns the Strategy core's
/// counters.
pub fn run(
    cfg: &AppConfig,
    stream: &str,
    rows: impl IntoIterator<Item = Item>,
    on: &mut impl FnMut(Published<'_>),
) -> Counters {
    let mut cores = Cores::new(cfg, stream);
    for item in rows {
        cores.step(item, on);
    }
    cores.end(on);
    cores.strategy_counters()
}
