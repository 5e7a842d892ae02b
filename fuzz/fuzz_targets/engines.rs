//! Any records of any topic through the engines, not only the decoder: whatever the planes'
//! strict decoder accepts must be taken by every core entry that would see it, live and at a
//! restart, without a panic; state carries from one record to the next, so sequences count.
//!
//! The input is lines, one record each: a letter naming where the record comes in, then its bytes
//! as on the topic.
//!
//! - `m` `market_events`, `o` `ofi_events`, `i` `order_intents`, `e` `exec_reports`: read live by
//!   the Strategy and Order cores, their outputs handed to each other as the topics would.
//! - `E` an `exec_reports` record of the ledger the cores restart from (`on_exec` not live, and
//!   the Order core's `restore`), `O` an `ofi_events` window read back to warm the signals. Every
//!   such record comes first, whatever its line; the rebuild then ends (`finish_restore`).
//! - `t` an `exec_reports` record of a partition another instance traded: a run of them is the
//!   history the Strategy core takes over.
//!
//! Engines are the shipped configuration's (`AppConfig::default()`), as the planes build them.
#![no_main]

use std::sync::Arc;

use common::clock::ManualClock;
use common::codec;
use common::config::AppConfig;
use common::events::{Envelope, ExecEvent, IntentEvent, MarketEvent, OfiEvent, Source};
use common::types::{Symbol, UnixNanos};
use libfuzzer_sys::fuzz_target;
use order_plane::engine::OrderEngine;
use order_plane::simulated::{SimulatedConfig, SimulatedVenue};
use strategy_plane::engine::StrategyEngine;

struct Cores {
    strategy: StrategyEngine<ManualClock>,
    order: OrderEngine<SimulatedVenue, ManualClock>,
    /// The newest event time read: "now" for the calls that take one from the shell's clock.
    now: UnixNanos,
}

impl Cores {
    fn new(cfg: &AppConfig) -> Self {
        let source = |plane: &str| Arc::new(Source { plane: plane.into(), instance: "fuzz".into() });
        let strategy = StrategyEngine::new(cfg, source("strategy-plane"), ManualClock::new(UnixNanos(2)));
        let ticks =
            cfg.instruments.iter().filter_map(|i| Symbol::new(&i.symbol).ok().map(|s| (s, i.tick_size))).collect();
        let venue = SimulatedVenue::new(SimulatedConfig::new(&cfg.order_plane, ticks));
        let order = OrderEngine::new(
            &cfg.risk,
            &cfg.order_plane,
            &cfg.instruments,
            venue,
            source("order-plane"),
            ManualClock::new(UnixNanos(3)),
        );
        Self { strategy, order, now: UnixNanos(0) }
    }

    /// Hands intents to the Order core and its reports to the Strategy core until neither has
    /// more, as the topics between the planes would.
    fn settle(&mut self, mut intents: Vec<Envelope<IntentEvent>>, mut exec: Vec<Envelope<ExecEvent>>) {
        loop {
            for i in intents.drain(..) {
                self.order.on_intent(&i, &mut exec);
            }
            if exec.is_empty() {
                return;
            }
            for e in std::mem::take(&mut exec) {
                self.strategy.on_exec(&e, true, &mut intents);
            }
        }
    }

    fn saw<P>(&mut self, env: &Envelope<P>) {
        self.now = self.now.max(env.ts_event);
    }

    fn live(&mut self, topic: u8, position: u64, bytes: &[u8]) {
        let (mut intents, mut exec) = (Vec::new(), Vec::new());
        match topic {
            b'm' | b'M' => {
                let Ok(env) = codec::decode::<MarketEvent>(bytes) else { return };
                self.saw(&env);
                self.strategy.on_market(&env);
                self.order.on_market_at(&env, position, &mut exec);
            }
            b'o' => {
                let Ok(env) = codec::decode::<OfiEvent>(bytes) else { return };
                self.saw(&env);
                self.strategy.on_ofi(&env, &mut intents);
            }
            b'i' | b'I' => match codec::decode::<IntentEvent>(bytes) {
                Ok(env) => {
                    self.saw(&env);
                    intents.push(env);
                }
                Err(e) => {
                    self.order.reject_undecodable(bytes, &e.to_string(), self.now, &mut exec);
                }
            },
            b'e' => {
                let Ok(env) = codec::decode::<ExecEvent>(bytes) else { return };
                self.saw(&env);
                self.strategy.on_exec(&env, true, &mut intents);
            }
            _ => return,
        }
        self.settle(intents, exec);
    }
}

fuzz_target!(|data: &[u8]| {
    let cfg = AppConfig::default();
    let mut cores = Cores::new(&cfg);
    let lines: Vec<(u8, &[u8])> =
        data.split(|b| *b == b'\n').filter_map(|line| line.split_first().map(|(t, rest)| (*t, rest))).collect();

    // The restart: the ledger and the warm-up windows, then the rebuild's end.
    for (topic, bytes) in &lines {
        match topic {
            b'E' => {
                let Ok(env) = codec::decode::<ExecEvent>(bytes) else { continue };
                cores.saw(&env);
                cores.strategy.on_exec(&env, false, &mut Vec::new());
                cores.order.restore(&env);
            }
            b'O' => {
                let Ok(env) = codec::decode::<OfiEvent>(bytes) else { continue };
                cores.saw(&env);
                cores.strategy.warm(&env);
            }
            _ => {}
        }
    }
    let mut exec = Vec::new();
    cores.order.finish_restore(cores.now, &mut exec);
    cores.settle(Vec::new(), exec);

    // Live, in input order.
    let mut taken_over = Vec::new();
    for (position, (topic, bytes)) in lines.iter().enumerate() {
        if matches!(topic, b't' | b'T') {
            if let Ok(env) = codec::decode::<ExecEvent>(bytes) {
                taken_over.push(env);
            }
            continue;
        }
        if !taken_over.is_empty() {
            cores.strategy.take_over(&std::mem::take(&mut taken_over));
        }
        cores.live(*topic, position as u64, bytes);
    }
    if !taken_over.is_empty() {
        cores.strategy.take_over(&taken_over);
    }
});
