//! Start-up snapshots on a real `exec_reports` stream (the three cores over the spot sample,
//! costs left out so they trade): for both consumer planes, restoring a partition's snapshot
//! taken after k of its records, then its records from k on, gives the state a rebuild from the
//! whole ledger gives, for several k.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::sync::OnceLock;

use common::clock::ManualClock;
use common::config::AppConfig;
use common::events::*;
use common::snapshot::{self, LedgerFold, PartitionFold};
use common::types::{EventId, Symbol, UnixNanos};
use order_plane::engine::OrderEngine;
use order_plane::simulated::{SimulatedConfig, SimulatedVenue};
use order_plane::snapshot::OrderLedger;
use strategy_plane::engine::StrategyEngine;
use strategy_plane::snapshot::StrategyLedger;

mod support;
use support::{Cores, SPOT, data_outputs, source, trading};

const PARTITIONS: i32 = 2;

/// The ledger's records by partition, in offset order, as the Order Plane would publish them:
/// each symbol's on the partition of its place in the instruments, unkeyed ones (halts) on every
/// partition. A halt and a resume are added, the resume cut off at the end for one partition's
/// sake of a halted end state, and the ledger ends with an order still working.
fn ledger() -> &'static (AppConfig, Vec<Vec<Envelope<ExecEvent>>>) {
    static LEDGER: OnceLock<(AppConfig, Vec<Vec<Envelope<ExecEvent>>>)> = OnceLock::new();
    LEDGER.get_or_init(|| {
        let cfg = trading();
        let mut cores = Cores::new(&cfg);
        let mut outputs = data_outputs(SPOT, &cfg);
        cores.feed(&mut outputs);
        let mut exec = std::mem::take(&mut cores.exec);
        assert!(exec.len() > 100, "the sample trades: {} records", exec.len());
        // End right after an order is accepted: it is still working when the ledger stops.
        let working = exec
            .iter()
            .rposition(|e| matches!(&e.payload, ExecEvent::Report(r) if r.status == ExecStatus::Accepted))
            .unwrap();
        exec.truncate(working + 1);
        let halt = |n: u128, halted: bool, ts: UnixNanos| Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: EventId(uuid::Uuid::from_u128(n)),
            source: source("order-plane"),
            ts_event: ts,
            ts_init: ts,
            causation_id: None,
            payload: ExecEvent::Halt(TradingHalt { halted, reason: format!("test {n}"), cancel_open: false }),
        };
        let at = exec.len() / 3;
        let ts = exec[at].ts_event;
        exec.insert(at, halt(1, true, ts));
        exec.insert(2 * at, halt(2, false, exec[2 * at].ts_event));
        exec.insert(exec.len() - 5, halt(3, true, exec[exec.len() - 5].ts_event));
        let place =
            |s: &Symbol| cfg.instruments.iter().position(|i| i.symbol == s.as_str()).unwrap() as i32 % PARTITIONS;
        let mut partitions = vec![Vec::new(); PARTITIONS as usize];
        for e in exec {
            match &e.payload {
                ExecEvent::Report(r) => partitions[place(&r.symbol) as usize].push(e.clone()),
                ExecEvent::CostModel(c) => partitions[place(c.symbol.as_ref().unwrap()) as usize].push(e.clone()),
                ExecEvent::Halt(_) => partitions.iter_mut().for_each(|p| p.push(e.clone())),
            }
        }
        assert!(partitions.iter().all(|p| p.iter().any(|e| matches!(e.payload, ExecEvent::Report(_)))));
        (cfg, partitions)
    })
}

/// The fold of `records[..k]` written as a snapshot, read back, and given `records[k..]`.
fn from_snapshot<S: LedgerFold + Clone>(
    partition: i32,
    records: &[Envelope<ExecEvent>],
    k: usize,
    fresh: &S,
) -> PartitionFold<S> {
    let mut fold = PartitionFold { partition, next_offset: 0, unsaved: 0, state: fresh.clone() };
    for (offset, env) in records[..k].iter().enumerate() {
        fold.apply(offset as i64, Some(env));
    }
    let end = records.len() as i64;
    let mut back = snapshot::decode(&snapshot::key(partition), &fold.encode(), end, fresh).unwrap();
    assert_eq!(back.next_offset, k as i64);
    for (offset, env) in records.iter().enumerate().skip(k) {
        back.apply(offset as i64, Some(env));
    }
    back
}

/// Cut points: none, one record, a third, a half, all but one, all.
fn cuts(len: usize) -> BTreeSet<usize> {
    [0, 1, len / 3, len / 2, len - 1, len].into()
}

fn symbols(cfg: &AppConfig) -> Vec<Symbol> {
    cfg.instruments.iter().map(|i| Symbol::new(&i.symbol).unwrap()).collect()
}

#[test]
fn a_strategy_snapshot_and_its_tail_restore_what_the_whole_ledger_does() {
    let (cfg, partitions) = ledger();
    let fresh = StrategyLedger::default();
    let mut whole = StrategyEngine::new(cfg, source("s"), ManualClock::new(UnixNanos(5)));
    for records in partitions {
        for env in records {
            whole.on_exec(env, false, &mut Vec::new());
        }
    }
    assert!(whole.halted(), "the ledger ends halted");
    assert!(symbols(cfg).iter().all(|s| !whole.book().position(s).qty.is_zero()), "every symbol holds a position");
    for k in cuts(partitions[0].len().min(partitions[1].len())) {
        let mut restored = StrategyEngine::new(cfg, source("s"), ManualClock::new(UnixNanos(5)));
        for (p, records) in partitions.iter().enumerate() {
            let fold = from_snapshot(p as i32, records, k, &fresh);
            let mut reference = PartitionFold { partition: p as i32, next_offset: 0, unsaved: 0, state: fresh.clone() };
            for (offset, env) in records.iter().enumerate() {
                reference.apply(offset as i64, Some(env));
            }
            assert_eq!(fold.state, reference.state, "partition {p}, snapshot after {k}");
            restored.restore_partition(&fold.state, true);
        }
        for s in symbols(cfg) {
            assert_eq!(restored.book().position(&s), whole.book().position(&s), "{s} after {k}");
            assert_eq!(restored.book().pnl(&s), whole.book().pnl(&s), "{s} after {k}");
            assert_eq!(restored.cost_model(&s), whole.cost_model(&s), "{s} after {k}");
            assert!(restored.cost_model(&s).is_some());
        }
        assert_eq!(restored.halted(), whole.halted(), "after {k}");
        // A fill of the ledger delivered again is known: it does not move the position.
        let (_, last) = partitions[0]
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| matches!(&e.payload, ExecEvent::Report(r) if r.exec_id.is_some()))
            .unwrap();
        let before = restored.book().total_pnl();
        restored.on_exec(last, true, &mut Vec::new());
        assert_eq!(restored.book().total_pnl(), before, "after {k}");
    }
}

type Engine = OrderEngine<SimulatedVenue, ManualClock>;

fn order_engine(cfg: &AppConfig) -> Engine {
    let ticks = cfg.instruments.iter().map(|i| (Symbol::new(&i.symbol).unwrap(), i.tick_size)).collect();
    let venue = SimulatedVenue::new(SimulatedConfig::new(&cfg.order_plane, ticks));
    OrderEngine::new(&cfg.risk, &cfg.order_plane, &cfg.instruments, venue, source("o"), ManualClock::new(UnixNanos(7)))
}

#[test]
fn an_order_snapshot_and_its_tail_restore_what_the_whole_ledger_does() {
    let (cfg, partitions) = ledger();
    let fresh = OrderLedger::new(cfg.order_plane.max_intent_lag_ms * 1_000_000);
    let now = partitions.iter().flatten().map(|e| e.ts_event).max().unwrap();
    let intents: BTreeSet<IntentId> = partitions
        .iter()
        .flatten()
        .filter_map(|e| if let ExecEvent::Report(r) = &e.payload { Some(r.intent_id) } else { None })
        .collect();
    let mut whole = order_engine(cfg);
    // As the shell read it before snapshots: every partition, one after the other.
    for env in partitions.iter().flatten() {
        whole.restore(env);
    }
    let mut whole_out = Vec::new();
    whole.finish_restore(now, &mut whole_out);
    assert!(whole.halted());
    assert!(
        whole_out.iter().any(|e| matches!(&e.payload, ExecEvent::Report(r) if r.status == ExecStatus::Cancelled)),
        "the working order is closed"
    );
    let remembered = intents.iter().filter(|id| whole.remembers(id)).count();
    assert!(
        remembered > 0 && remembered < intents.len(),
        "some ids are remembered, older ones forgotten: {remembered}"
    );
    for k in cuts(partitions[0].len().min(partitions[1].len())) {
        let mut restored = order_engine(cfg);
        for (p, records) in partitions.iter().enumerate() {
            let fold = from_snapshot(p as i32, records, k, &fresh);
            restored.restore_snapshot(&fold.state);
        }
        let mut out = Vec::new();
        restored.finish_restore(now, &mut out);
        assert_eq!(out, whole_out, "reports at the rebuild's end, snapshot after {k}");
        assert_eq!(restored.halted(), whole.halted());
        assert_eq!(restored.tracked_orders(), whole.tracked_orders(), "after {k}");
        assert_eq!(restored.remembered_intents(), whole.remembered_intents(), "after {k}");
        for id in &intents {
            assert_eq!(restored.remembers(id), whole.remembers(id), "{id} after {k}");
        }
        for s in symbols(cfg) {
            assert_eq!(restored.risk().exposure(&s), whole.risk().exposure(&s), "{s} after {k}");
            assert_eq!(restored.risk().mark(&s), whole.risk().mark(&s), "{s} after {k}");
            assert_eq!(restored.cost_model(&s), whole.cost_model(&s), "{s} after {k}");
        }
    }
}

#[test]
fn an_order_snapshot_stays_small_and_is_refused_when_the_lag_grew() {
    let (cfg, partitions) = ledger();
    let lag = cfg.order_plane.max_intent_lag_ms * 1_000_000;
    let fold = from_snapshot(0, &partitions[0], partitions[0].len(), &OrderLedger::new(lag));
    let bytes = fold.encode();
    // The whole partition's records against its snapshot.
    let ledger_bytes: usize = partitions[0].iter().map(|e| common::codec::encode(e).len()).sum();
    println!("partition 0: {} records, {ledger_bytes} bytes; snapshot {} bytes", partitions[0].len(), bytes.len());
    assert!(bytes.len() < ledger_bytes / 4, "{} of {ledger_bytes}", bytes.len());
    let longer = OrderLedger::new(2 * lag);
    let refused = snapshot::decode(&snapshot::key(0), &bytes, fold.next_offset, &longer).unwrap_err();
    assert_eq!(refused.reason(), "unusable");
    let shorter = OrderLedger::new(lag / 2);
    assert!(snapshot::decode(&snapshot::key(0), &bytes, fold.next_offset, &shorter).is_ok());
}

/// The spot sample's ledger written `copies` times one after the other (ids made unique, times
/// moved on by the sample's span each time), as the Order Plane publishes it on `partitions`
/// partitions; returns the records written.
async fn write_ledger(publisher: &mut common::kafka::Publisher, partition_count: u64, copies: u64, first: u64) -> u64 {
    let (_, partitions) = ledger();
    let mut records: Vec<&Envelope<ExecEvent>> = partitions.iter().flatten().collect();
    let mut once = std::collections::HashSet::new();
    records.retain(|e| once.insert(e.event_id));
    records.sort_by_key(|e| e.ts_event);
    let span = records.last().unwrap().ts_event.0 - records[0].ts_event.0 + 1_000_000_000;
    let mut n = 0;
    for copy in first..first + copies {
        for (i, original) in records.iter().enumerate() {
            let mut env = (*original).clone();
            env.event_id = EventId(uuid::Uuid::from_u64_pair(copy, i as u64));
            env.ts_event = UnixNanos(env.ts_event.0 + copy * span);
            if let ExecEvent::Report(r) = &mut env.payload {
                r.intent_id = IntentId(uuid::Uuid::from_u128(r.intent_id.0.as_u128() ^ (u128::from(copy) << 64)));
                r.exec_id = r.exec_id.as_ref().map(|e| format!("{copy}-{e}"));
            }
            publisher.publish(&env).await.unwrap();
            // A halt goes to every partition.
            n += if matches!(env.payload, ExecEvent::Halt(_)) { partition_count } else { 1 };
        }
    }
    publisher.delivered().await.unwrap();
    n
}

/// Start-up reads with and without snapshots, on a ledger of 100 copies of the spot sample's:
/// `cargo test --release -p strategy-plane --test snapshot -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints figures, asserts nothing about time"]
fn start_up_with_and_without_snapshots() {
    use common::kafka::{self, SnapshotMetrics, SnapshotWriter, load_folds};
    use common::topics::{EXEC_REPORTS, ORDER_SNAPSHOTS, STRATEGY_SNAPSHOTS};
    use std::time::{Duration, Instant};

    const COPIES: u64 = 100;
    let (base, _) = ledger();
    let mut cfg = base.clone();
    cfg.kafka.bootstrap_servers = test_support::Broker::shared().bootstrap();
    cfg.kafka.topic_prefix = test_support::unique("measure_");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut publisher = runtime
        .block_on(kafka::connect(&cfg.kafka, "measure", &[EXEC_REPORTS, STRATEGY_SNAPSHOTS, ORDER_SNAPSHOTS], &stop))
        .unwrap()
        .unwrap();
    let written = runtime.block_on(write_ledger(&mut publisher, cfg.kafka.partitions as u64, COPIES, 0));
    let (ledger_topic, s_topic, o_topic) =
        (cfg.kafka.topic(EXEC_REPORTS), cfg.kafka.topic(STRATEGY_SNAPSHOTS), cfg.kafka.topic(ORDER_SNAPSHOTS));
    let registry = prometheus::Registry::new();
    let (sm, om) =
        (SnapshotMetrics::register(&registry, "s").unwrap(), SnapshotMetrics::register(&registry, "o").unwrap());
    let lag = cfg.order_plane.max_intent_lag_ms * 1_000_000;
    println!("ledger: {written} records ({COPIES} copies of the spot sample's), {} partitions", cfg.kafka.partitions);

    // Before: the whole ledger collected, then handed to the engines record by record.
    let t = Instant::now();
    let all = kafka::read_to_end(&cfg.kafka, &ledger_topic, Duration::from_secs(60)).unwrap();
    let bytes: usize = all.iter().map(|r| r.payload.len()).sum();
    let mut strategy = StrategyEngine::new(&cfg, source("s"), ManualClock::new(UnixNanos(1)));
    let mut order = order_engine(&cfg);
    for r in &all {
        let env = common::codec::decode::<ExecEvent>(&r.payload).unwrap();
        strategy.on_exec(&env, false, &mut Vec::new());
        order.restore(&env);
    }
    println!("whole ledger, both engines: {} records read, {bytes} bytes held at once, {:?}", all.len(), t.elapsed());
    drop(all);

    // After, with no snapshot yet: the same records, streamed into the folds.
    let t = Instant::now();
    let s = load_folds(&cfg.kafka, &s_topic, &ledger_topic, None, StrategyLedger::default, &sm, |_, _| {}).unwrap();
    println!("strategy folds, no snapshot: {} records read, {:?}", s.records, t.elapsed());
    let t = Instant::now();
    let o = load_folds(&cfg.kafka, &o_topic, &ledger_topic, None, || OrderLedger::new(lag), &om, |_, _| {}).unwrap();
    println!("order folds, no snapshot: {} records read, {:?}", o.records, t.elapsed());

    // The snapshots of both planes, then one more copy of the sample's ledger after them.
    runtime.block_on(async {
        for writer in [
            SnapshotWriter::spawn(&cfg.kafka, s_topic.clone(), ledger_topic.clone(), s.folds, 1, &sm).unwrap(),
            SnapshotWriter::spawn(&cfg.kafka, o_topic.clone(), ledger_topic.clone(), o.folds, 1, &om).unwrap(),
        ]
        .into_iter()
        .flatten()
        {
            writer.stop().await;
        }
    });
    let tail = runtime.block_on(write_ledger(&mut publisher, cfg.kafka.partitions as u64, 1, COPIES));
    let t = Instant::now();
    let s = load_folds(&cfg.kafka, &s_topic, &ledger_topic, None, StrategyLedger::default, &sm, |_, _| {}).unwrap();
    let sizes: Vec<usize> = s.folds.iter().map(|f| f.encode().len()).collect();
    println!(
        "strategy folds from {} snapshots ({sizes:?} bytes): {} records read of {tail} appended, {:?}",
        s.from_snapshots,
        s.records,
        t.elapsed()
    );
    let t = Instant::now();
    let o = load_folds(&cfg.kafka, &o_topic, &ledger_topic, None, || OrderLedger::new(lag), &om, |_, _| {}).unwrap();
    let sizes: Vec<usize> = o.folds.iter().map(|f| f.encode().len()).collect();
    println!(
        "order folds from {} snapshots ({sizes:?} bytes): {} records read of {tail} appended, {:?}",
        o.from_snapshots,
        o.records,
        t.elapsed()
    );
    assert_eq!((s.records, o.records), (tail, tail));
}

/// A copy of a finished order's first report, read far behind its original (a restart that
/// re-executed the intents of a broker freeze re-publishes them: chaos saw copies 1,781 records
/// back), is dropped as a copy: the order stays finished and the start reports nothing for it.
/// With a window of 1,024 event ids the copy reopened the order, and the start reported it
/// cancelled ("venue state lost at restart"), a second terminal report.
#[test]
fn a_late_copy_of_a_finished_orders_report_does_not_reopen_it() {
    let (cfg, partitions) = ledger();
    let records = &partitions[0];
    let first_filled = records
        .iter()
        .find_map(|e| match &e.payload {
            ExecEvent::Report(r) if r.status == ExecStatus::Filled => Some(r.intent_id),
            _ => None,
        })
        .unwrap();
    let accepted = records
        .iter()
        .find(|e| matches!(&e.payload, ExecEvent::Report(r) if r.intent_id == first_filled && r.status == ExecStatus::Accepted))
        .unwrap()
        .clone();
    // The partition's records, then more of its kind (ids made unique, later in time) until
    // 2,000 records stand between the original and its copy.
    let span = records.last().unwrap().ts_event.0 - records[0].ts_event.0 + 1_000_000_000;
    let mut stream: Vec<Envelope<ExecEvent>> = records.clone();
    let mut copy = 1u64;
    while stream.len() < 2_000 {
        for (i, original) in records.iter().enumerate() {
            let mut env = original.clone();
            env.event_id = EventId(uuid::Uuid::from_u64_pair(copy, i as u64));
            env.ts_event = UnixNanos(env.ts_event.0 + copy * span);
            if let ExecEvent::Report(r) = &mut env.payload {
                r.intent_id = IntentId(uuid::Uuid::from_u128(r.intent_id.0.as_u128() ^ (u128::from(copy) << 64)));
                r.exec_id = r.exec_id.as_ref().map(|e| format!("{copy}-{e}"));
            }
            stream.push(env);
        }
        copy += 1;
    }
    stream.push(accepted);
    let now = stream.iter().map(|e| e.ts_event).max().unwrap();
    let cancels = |out: &[Envelope<ExecEvent>]| {
        out.iter().filter(|e| matches!(&e.payload, ExecEvent::Report(r) if r.intent_id == first_filled)).count()
    };
    let fresh = OrderLedger::new(cfg.order_plane.max_intent_lag_ms * 1_000_000);
    for k in [0, stream.len() / 2, stream.len()] {
        let fold = from_snapshot(0, &stream, k, &fresh);
        let mut restored = order_engine(cfg);
        restored.restore_snapshot(&fold.state);
        let mut out = Vec::new();
        restored.finish_restore(now, &mut out);
        assert_eq!(cancels(&out), 0, "the copy reopened {first_filled} (snapshot after {k}): {out:?}");
    }
}
