//! The invariants, checked by reading every topic back from the beginning with this tool's own
//! consumer, and by asking the Strategy Plane for its positions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::clock::SystemClock;
use common::codec;
use common::config::AppConfig;
use common::events::{Envelope, ExecEvent, ExecStatus, IntentEvent, IntentId, MarketEvent, OfiEvent, Source};
use common::kafka::{self, Record};
use common::topics::{EXEC_REPORTS, MARKET_EVENTS, OFI_EVENTS, ORDER_INTENTS, ORDER_PLANE_GROUP, STRATEGY_PLANE_GROUP};
use common::types::EventId;
use data_plane::core::{DataCore, Output};
use data_plane::source::Replay;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// One checked invariant.
#[derive(Debug)]
pub struct Row {
    /// What must hold.
    pub invariant: &'static str,
    /// How many things were checked.
    pub checked: usize,
    /// How many broke it.
    pub violations: usize,
    /// Examples of violations.
    pub detail: String,
}

/// Every invariant's result.
#[derive(Debug, Default)]
pub struct Report(pub Vec<Row>);

impl Report {
    /// Violations in all.
    pub fn violations(&self) -> usize {
        self.0.iter().map(|r| r.violations).sum()
    }

    fn add(&mut self, invariant: &'static str, checked: usize, failures: Vec<String>) {
        let detail = failures.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        self.0.push(Row { invariant, checked, violations: failures.len(), detail });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.0 {
            writeln!(f, "{:<58} {:>9} {:>10}  {}", r.invariant, r.checked, r.violations, r.detail)?;
        }
        Ok(())
    }
}

fn from_plane<P>(env: &Envelope<P>, plane: &str) -> bool {
    &*env.source.plane == plane
}

/// Reads everything and checks every invariant.
pub fn run(
    cfg: &AppConfig,
    strategy: Option<SocketAddr>,
    secrets: &[String],
    committed_only: bool,
) -> anyhow::Result<Report> {
    let read = |base: &str| {
        let topic = cfg.kafka.topic(base);
        kafka::read_to_end(&cfg.kafka, &topic, Duration::from_secs(60)).with_context(|| format!("reading {topic}"))
    };
    let topics: BTreeMap<&str, Vec<Record>> = [MARKET_EVENTS, OFI_EVENTS, ORDER_INTENTS, EXEC_REPORTS]
        .into_iter()
        .map(|t| Ok((t, read(t)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut report = Report::default();
    if committed_only {
        offsets(cfg, &topics, &mut report)?;
        return Ok(report);
    }
    data_plane_outputs(cfg, &topics, &mut report)?;
    orders(cfg, &topics, strategy, &mut report)?;
    if !secrets.is_empty() {
        let mut leaks = Vec::new();
        let mut records = 0;
        for (topic, recs) in &topics {
            for r in recs {
                records += 1;
                let text = String::from_utf8_lossy(&r.payload);
                leaks.extend(
                    secrets
                        .iter()
                        .filter(|s| !s.is_empty() && text.contains(s.as_str()))
                        .map(|_| format!("{topic}/{}@{}", r.partition, r.offset)),
                );
            }
        }
        report.add("no secret in any record", records, leaks);
    }
    Ok(report)
}

/// What an uninterrupted Data Plane publishes for this replay, next to what is in the topics.
fn data_plane_outputs(
    cfg: &AppConfig,
    topics: &BTreeMap<&str, Vec<Record>>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let replay_cfg = &cfg.data_plane.replay;
    let replay = Replay::open(&replay_cfg.path, replay_cfg.loop_count).context("opening the replay input")?;
    let stream = data_plane::run::stream_name(replay.files(), &cfg.data_plane);
    let source = Arc::new(Source { plane: "data-plane".into(), instance: "check".into() });
    let mut core =
        DataCore::new(&cfg.data_plane, &stream, source, SystemClock).expecting(&data_plane::run::instruments(cfg));
    let (mut out, mut market, mut ofi) = (Vec::new(), HashMap::new(), BTreeMap::new());
    let mut take = |out: &mut Vec<Output>| {
        for o in out.drain(..) {
            match o {
                Output::Market(env) => {
                    market.insert(env.event_id, env.payload);
                }
                Output::Ofi(env) => {
                    ofi.insert(env.event_id, env.payload);
                }
                Output::Rejected { .. } => {}
            }
        }
    };
    for item in replay.flatten() {
        core.process(item, &mut out);
        take(&mut out);
    }
    core.end(&mut out);
    take(&mut out);

    // The first copy of each id counts, as for every consumer.
    let mut published: HashMap<EventId, MarketEvent> = HashMap::new();
    for env in topics[MARKET_EVENTS].iter().filter_map(|r| codec::decode::<MarketEvent>(&r.payload).ok()) {
        if from_plane(&env, "data-plane") {
            published.entry(env.event_id).or_insert(env.payload);
        }
    }
    let mut failures: Vec<String> = Vec::new();
    for (id, event) in &market {
        match published.get(id) {
            None => failures.push(format!("missing {id}")),
            Some(p) if p != event => failures.push(format!("{id} differs")),
            Some(_) => {}
        }
    }
    failures.extend(published.keys().filter(|id| !market.contains_key(*id)).map(|id| format!("unexpected {id}")));
    report.add("market_events equal a clean run's (none missing, none extra)", market.len(), failures);

    let mut got: BTreeMap<EventId, OfiEvent> = BTreeMap::new();
    let mut failures = Vec::new();
    for env in topics[OFI_EVENTS].iter().filter_map(|r| codec::decode::<OfiEvent>(&r.payload).ok()) {
        if !from_plane(&env, "data-plane") {
            continue;
        }
        if let Some(before) = got.insert(env.event_id, env.payload.clone())
            && before != env.payload
        {
            failures.push(format!("{} published with two contents", env.event_id));
        }
    }
    for (id, w) in &ofi {
        match got.get(id) {
            None => failures.push(format!("missing window {id}")),
            Some(g) if g != w => failures.push(format!("window {id} differs")),
            Some(_) => {}
        }
    }
    failures.extend(got.keys().filter(|id| !ofi.contains_key(*id)).map(|id| format!("unexpected window {id}")));
    report.add("OFI windows equal a clean run's", ofi.len(), failures);
    Ok(())
}

/// No intent executed twice, every intent answered exactly once, positions equal the fills.
fn orders(
    cfg: &AppConfig,
    topics: &BTreeMap<&str, Vec<Record>>,
    strategy: Option<SocketAddr>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let intents: HashSet<IntentId> = topics[ORDER_INTENTS]
        .iter()
        .filter_map(|r| codec::decode::<IntentEvent>(&r.payload).ok())
        .filter(|e| from_plane(e, "strategy-plane"))
        .filter_map(|e| match e.payload {
            IntentEvent::Intent(i) => Some(i.intent_id),
            IntentEvent::Cancel(_) | IntentEvent::Decided(_) => None,
        })
        .collect();
    // Distinct reports: a re-delivered record (same event id) is one report, and the first
    // copy in log order is the one that counts (as for every consumer).
    let mut reports = BTreeMap::new();
    // Report ids are deterministic, so an intent executed twice produces the same acceptance id
    // again, but at another time: copies (retries, re-deliveries) keep the first one's `ts_init`.
    let mut first_made: HashMap<EventId, u64> = HashMap::new();
    let mut made_again: HashMap<IntentId, usize> = HashMap::new();
    for env in topics[EXEC_REPORTS].iter().filter_map(|r| codec::decode::<ExecEvent>(&r.payload).ok()) {
        if let ExecEvent::Report(r) = env.payload
            && &*env.source.plane == "order-plane"
        {
            let made = *first_made.entry(env.event_id).or_insert(env.ts_init.0);
            if made != env.ts_init.0 && r.status == ExecStatus::Accepted {
                *made_again.entry(r.intent_id).or_default() += 1;
            }
            reports.entry(env.event_id).or_insert(r);
        }
    }
    let mut accepted: HashMap<IntentId, usize> = HashMap::new();
    let mut terminal: HashMap<IntentId, usize> = HashMap::new();
    let mut fills: HashMap<String, Decimal> = HashMap::new();
    let mut exec_ids = HashSet::new();
    for r in reports.values() {
        if r.status == ExecStatus::Accepted {
            *accepted.entry(r.intent_id).or_default() += 1;
        }
        if r.status.is_terminal() {
            *terminal.entry(r.intent_id).or_default() += 1;
        }
        if let Some(exec_id) = &r.exec_id
            && r.last_qty > Decimal::ZERO
            && exec_ids.insert((r.intent_id, exec_id.clone()))
        {
            *fills.entry(r.symbol.as_str().to_owned()).or_default() += r.side.sign() * r.last_qty;
        }
    }
    let mut twice: Vec<String> =
        accepted.iter().filter(|(_, n)| **n > 1).map(|(id, n)| format!("{id} reached the venue {n} times")).collect();
    twice.extend(made_again.iter().map(|(id, n)| format!("{id} accepted again {n} time(s) later")));
    report.add("no intent reached the venue twice", intents.len(), twice);
    let answered: Vec<String> = intents
        .iter()
        .filter_map(|id| {
            let n = terminal.get(id).copied().unwrap_or(0);
            (n != 1).then(|| format!("{id} has {n} terminal reports"))
        })
        .collect();
    report.add("every intent has exactly one terminal report", intents.len(), answered);

    let Some(strategy) = strategy else { return Ok(()) };
    // The Strategy Plane may still be reading the last reports: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mismatches = loop {
        let (_, body) = test_support::http_get(strategy, "/metrics").context("reading the Strategy Plane's metrics")?;
        let mismatches: Vec<String> = cfg
            .instruments
            .iter()
            .filter_map(|inst| {
                let sum = fills.get(inst.symbol.as_str()).copied().unwrap_or_default().to_f64().unwrap_or(f64::NAN);
                let line = format!("strategy_plane_position{{symbol=\"{}\"}} ", inst.symbol);
                let held = body.lines().find_map(|l| l.strip_prefix(&line)).and_then(|v| v.trim().parse::<f64>().ok());
                let equal = held.is_some_and(|h| (h - sum).abs() <= 1e-9 * sum.abs().max(1.0));
                (!equal).then(|| format!("{}: Strategy Plane holds {held:?}, fills sum to {sum}", inst.symbol))
            })
            .collect();
        if mismatches.is_empty() || Instant::now() > deadline {
            break mismatches;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    report.add("Strategy Plane positions equal the sum of fills", cfg.instruments.len(), mismatches);
    Ok(())
}

/// Every consumer group has committed everything on its input topics (the suite waits for this),
/// except the Order Plane's market data: it commits no later than where a restart must read again
/// from for its venue to hold the same history (docs/architecture.md, "Restarts"), so there a
/// committed offset anywhere up to the end is right, and the suite asks the plane itself whether
/// it has read everything (`order_plane_input_backlog_records`).
fn offsets(cfg: &AppConfig, topics: &BTreeMap<&str, Vec<Record>>, report: &mut Report) -> anyhow::Result<()> {
    let groups = [
        (STRATEGY_PLANE_GROUP, &[OFI_EVENTS, MARKET_EVENTS, EXEC_REPORTS][..]),
        (ORDER_PLANE_GROUP, &[ORDER_INTENTS, MARKET_EVENTS][..]),
    ];
    let behind_by_design =
        |group: &str, topic: &str| group == ORDER_PLANE_GROUP && topic == cfg.kafka.topic(MARKET_EVENTS);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (group, inputs) in groups {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.kafka.bootstrap_servers)
            .set("group.id", cfg.kafka.group(group))
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the offset reader")?;
        let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for base in inputs {
            for r in &topics[base] {
                let end = ends.entry((cfg.kafka.topic(base), r.partition)).or_default();
                *end = (*end).max(r.offset + 1);
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in ends.keys() {
            tpl.add_partition(topic, *partition);
        }
        let committed =
            consumer.committed_offsets(tpl, Duration::from_secs(30)).context("fetching committed offsets")?;
        for ((topic, partition), end) in &ends {
            checked += 1;
            let at = committed.find_partition(topic, *partition).map(|p| p.offset());
            let right = match at {
                Some(Offset::Offset(o)) if behind_by_design(group, topic) => (0..=*end).contains(&o),
                // Nothing committed yet: a restart would read the partition from its start.
                Some(Offset::Invalid) if behind_by_design(group, topic) => true,
                _ => at == Some(Offset::Offset(*end)),
            };
            if !right {
                failures.push(format!("{group} {topic}/{partition} committed {at:?}, end {end}"));
            }
        }
    }
    report.add("every consumer group has committed all it read", checked, failures);
    Ok(())
}
