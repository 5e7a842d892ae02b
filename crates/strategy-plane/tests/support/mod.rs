//! What the tests that run the cores together share: the configuration that trades, the cores
//! wired as the planes wire them, and the Data Plane core's outputs for a sample.

#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::sync::Arc;

use common::clock::ManualClock;
use common::config::AppConfig;
use common::events::*;
use common::types::{Symbol, UnixNanos};
use data_plane::core::{DataCore, Output};
use data_plane::source::Replay;
use order_plane::engine::OrderEngine;
use order_plane::simulated::{SimulatedConfig, SimulatedVenue};
use strategy_plane::engine::StrategyEngine;

pub const SPOT: &str = "binance-spot-btcusdt-ethusdt-2024-08-09.csv";

/// The shipped configuration with the trading costs left out of decisions. Binance's 10 bp fee is
/// more than any forecast of the samples (the largest is 0.11 bp), so with the costs weighed
/// nothing trades (`the_shipped_fees_exceed_every_forecast_of_the_samples`); the tests that use
/// this one check what happens to trades, not whether they pay.
pub fn trading() -> AppConfig {
    let mut cfg = AppConfig::default();
    cfg.strategy_plane.cost_aversion = 0.0;
    cfg
}

pub fn source(plane: &str) -> Arc<Source> {
    Arc::new(Source { plane: plane.into(), instance: "t".into() })
}

/// The Strategy and Order cores wired together, fed the Data Plane core's outputs.
pub struct Cores {
    pub last_event: UnixNanos,
    pub intents: Vec<Envelope<IntentEvent>>,
    pub reports: Vec<ExecReport>,
    /// Every `exec_reports` record, in the order the Order core made them.
    pub exec: Vec<Envelope<ExecEvent>>,
    pub strategy: StrategyEngine<ManualClock>,
    pub order: OrderEngine<SimulatedVenue, ManualClock>,
}

impl Cores {
    pub fn new(cfg: &AppConfig) -> Self {
        let strategy = StrategyEngine::new(cfg, source("strategy-plane"), ManualClock::new(UnixNanos(2)));
        let ticks = cfg.instruments.iter().map(|i| (Symbol::new(&i.symbol).unwrap(), i.tick_size)).collect();
        let venue = SimulatedVenue::new(SimulatedConfig::new(&cfg.order_plane, ticks));
        let order = OrderEngine::new(
            &cfg.risk,
            &cfg.order_plane,
            &cfg.instruments,
            venue,
            source("order-plane"),
            ManualClock::new(UnixNanos(3)),
        );
        Self { last_event: UnixNanos(0), intents: Vec::new(), reports: Vec::new(), exec: Vec::new(), strategy, order }
    }

    pub fn feed(&mut self, outputs: &mut Vec<Output>) {
        for o in outputs.drain(..) {
            let (mut new_intents, mut exec) = (Vec::new(), Vec::new());
            match o {
                Output::Market(env) => {
                    self.last_event = self.last_event.max(env.ts_event);
                    self.strategy.on_market(&env);
                    self.order.on_market(&env, &mut exec);
                }
                Output::Ofi(env) => self.strategy.on_ofi(&env, &mut new_intents),
                Output::Rejected { .. } => {}
            }
            self.settle(new_intents, exec);
        }
    }

    /// Hands intents to the Order core and its reports to the Strategy core until neither has
    /// more: a final report can let a waiting decision run, whose intents report in turn.
    pub fn settle(&mut self, mut new_intents: Vec<Envelope<IntentEvent>>, mut exec: Vec<Envelope<ExecEvent>>) {
        loop {
            for i in new_intents.drain(..) {
                self.order.on_intent(&i, &mut exec);
                if matches!(i.payload, IntentEvent::Intent(_)) {
                    self.intents.push(i);
                }
            }
            if exec.is_empty() {
                break;
            }
            for e in std::mem::take(&mut exec) {
                self.strategy.on_exec(&e, true, &mut new_intents);
                if let ExecEvent::Report(r) = &e.payload {
                    self.reports.push(r.clone());
                }
                self.exec.push(e);
            }
        }
    }
}

/// The Data Plane core's outputs for the sample `file`.
pub fn data_outputs(file: &str, cfg: &AppConfig) -> Vec<Output> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(file);
    let mut data = DataCore::new(&cfg.data_plane, "replay:t", source("data-plane"), ManualClock::new(UnixNanos(1)))
        .expecting(&data_plane::run::instruments(cfg));
    let mut outputs = Vec::new();
    for item in Replay::open(&path, 1).unwrap() {
        data.process(item.unwrap(), &mut outputs);
    }
    data.end(&mut outputs);
    outputs
}
