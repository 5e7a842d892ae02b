//! The benchmark's phases, all against one broker in one run:
//!
//! 1. the bare client moves the pipeline's `market_events` records (`raw`, before);
//! 2. the pipeline at maximum speed on 1/10 of the input (memory baseline);
//! 3. the pipeline at maximum speed on the whole input (≥ the requested market events);
//! 4. the bare client again (`raw`, after): the two bracket the pipeline, so drift of a shared
//!    machine shows up as a difference between them;
//! 5. the pipeline paced at the latency rate, read back for tick-to-intent and
//!    intent-to-exec-report;
//! 6. the bare client's one hop at the latency rate;
//! 7. a backlog: the consumer planes frozen while the Data Plane publishes, then thawed; their
//!    memory while they catch up and once they have.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::clock::SystemClock;
use common::codec;
use common::config::{DataPlaneConfig, KafkaConfig};
use common::events::{Payload, Source};
use common::topics::MARKET_EVENTS;
use data_plane::core::{DataCore, Output};
use data_plane::source::Replay;
use serde_json::{Value, json};

use crate::latency::{self, Distribution, Latencies};
use crate::raw::{self, RawRate, Record};
use crate::stack::{Broker, Metrics, Plane, ProcSample, RssTrend, Usage, clock_ticks, repo_root};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Replay input (a CSV or Parquet file of the replay format).
    pub input: PathBuf,
    /// Market events the throughput phase must reach at least (the input is looped).
    pub events: u64,
    /// Paced market events per second for the latency phase.
    pub latency_rate: f64,
    /// Approximate length of the latency phase, seconds (rounded up to whole passes).
    pub latency_seconds: f64,
    /// OFI window and decision interval of the latency phase, ms.
    pub latency_window_ms: u64,
    /// Passes of the input published during the backlog phase.
    pub backlog_passes: u32,
    /// Folder for logs/ and state/.
    pub run_dir: PathBuf,
}

/// The input's shape, from one pass through the Data Plane's own core.
struct Input {
    rows: u64,
    span_s: f64,
    records: Vec<Record>,
}

fn inspect(path: &Path) -> Result<Input> {
    let source = Arc::new(Source { plane: "data-plane".into(), instance: "bench".into() });
    let mut core = DataCore::new(&DataPlaneConfig::default(), "replay:bench", source, SystemClock);
    let (mut rows, mut first, mut last) = (0u64, None, 0u64);
    let mut out = Vec::new();
    let mut records = Vec::new();
    let mut keep = |out: &mut Vec<Output>| {
        for o in out.drain(..) {
            if let Output::Market(env) = o {
                let key = env.payload.key().unwrap_or_default().to_owned();
                records.push((key, codec::encode(&env)));
            }
        }
    };
    for item in Replay::open(path, 1)? {
        let Ok(ev) = item else { continue };
        rows += 1;
        first.get_or_insert(ev.ts.0);
        last = ev.ts.0;
        core.process(ev, &mut out);
        keep(&mut out);
    }
    core.finish(&mut out);
    keep(&mut out);
    let span_s = last.saturating_sub(first.unwrap_or(last)) as f64 / 1e9;
    if rows == 0 || span_s <= 0.0 {
        bail!("{} holds no replayable rows", path.display());
    }
    Ok(Input { rows, span_s, records })
}

/// One pipeline phase's settings.
struct Phase<'a> {
    name: &'a str,
    passes: u32,
    speed: String,
    window_ms: Option<u64>,
    latency: bool,
}

struct Ctx {
    root: PathBuf,
    logs: PathBuf,
    bootstrap: String,
    /// The planes' Kafka settings (config files and environment), for the bare client too.
    kafka: KafkaConfig,
    input: PathBuf,
    ticks: u64,
    broker_pid: u32,
}

/// Runs every phase and returns the JSON summary.
pub fn run(cfg: &BenchConfig) -> Result<Value> {
    let root = repo_root();
    let logs = cfg.run_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    println!("==> inspecting {}", cfg.input.display());
    let input = inspect(&cfg.input)?;
    let per_pass = input.records.len() as u64;
    let passes = u32::try_from(cfg.events.div_ceil(per_pass.max(1))).unwrap_or(u32::MAX).max(1);
    let small = (passes / 10).max(1);
    let records: Arc<Vec<Record>> =
        Arc::new((0..passes).flat_map(|_| input.records.iter().cloned()).collect::<Vec<_>>());
    let mean_bytes = records.iter().map(|(_, p)| p.len()).sum::<usize>() as f64 / records.len() as f64;
    println!(
        "    {} rows over {:.0} s per pass, {per_pass} market events per pass ({mean_bytes:.0} bytes each); {passes} passes",
        input.rows, input.span_s
    );

    println!("==> starting Kafka in {}", cfg.run_dir.display());
    let broker = Broker::start(&cfg.run_dir)?;
    let app = common::config::load(&root.join("config")).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let kafka = KafkaConfig { bootstrap_servers: broker.bootstrap(), ..app.kafka };
    let ctx = Ctx {
        root,
        logs,
        bootstrap: broker.bootstrap(),
        kafka,
        input: cfg.input.clone(),
        ticks: clock_ticks(),
        broker_pid: broker.pid()?,
    };
    let tag = std::process::id();

    let raw_before = raw_phase(&ctx, &format!("bench{tag}_raw1_"), &records)?;
    let baseline = pipeline(
        &ctx,
        &format!("bench{tag}_mem_"),
        &Phase { name: "1x input", passes: small, speed: "max".into(), window_ms: None, latency: false },
    )?;
    let full = pipeline(
        &ctx,
        &format!("bench{tag}_max_"),
        &Phase { name: "full input", passes, speed: "max".into(), window_ms: None, latency: false },
    )?;
    let raw_after = raw_phase(&ctx, &format!("bench{tag}_raw2_"), &records)?;

    let base_rate = input.rows as f64 / input.span_s;
    let factor = cfg.latency_rate / base_rate;
    let lat_passes = ((cfg.latency_rate * cfg.latency_seconds) / input.rows as f64).ceil().max(1.0) as u32;
    // Right before the paced phase, so that the broker holds the same history when both are
    // measured (tansu, whose latency grew with its history: a p99 of 17 ms fresh, 667 ms after the
    // phases above).
    println!("==> bare client, one hop: {} records at {} per s", HOP_SAMPLES, cfg.latency_rate);
    let hop = Distribution::new(raw::hop_latency(
        &ctx.kafka,
        &format!("bench{tag}_hop_{MARKET_EVENTS}"),
        cfg.latency_rate,
        HOP_SAMPLES,
        mean_bytes.round() as usize,
    )?);
    println!("    p50 {:.0} µs p99 {:.0} µs", hop.quantile(0.5), hop.quantile(0.99));
    let paced = pipeline(
        &ctx,
        &format!("bench{tag}_lat_"),
        &Phase {
            name: "paced",
            passes: lat_passes,
            speed: format!("{factor:.3}x"),
            window_ms: Some(cfg.latency_window_ms),
            latency: true,
        },
    )?;
    let backlog = backlog(&ctx, &format!("bench{tag}_backlog_"), cfg.backlog_passes)?;
    drop(broker);

    let raw_mean = (raw_before.per_second() + raw_after.per_second()) / 2.0;
    let pipeline_rate = full.market_per_s();
    let broker_usage = json!({
        "paced_cpu_percent": r1(paced.usage[3].cpu_percent(ctx.ticks)),
        "max_speed_cpu_percent": r1(full.usage[3].cpu_percent(ctx.ticks)),
        "peak_rss_mib": r1(paced.usage[3].peak_rss_mib()),
    });
    let planes: Vec<Value> = PLANES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (b, f, p) = (&baseline.usage[i], &full.usage[i], &paced.usage[i]);
            json!({
                "plane": name,
                "paced": {"cpu_percent": r1(p.cpu_percent(ctx.ticks)), "median_rss_mib": r1(p.median_rss_mib()), "peak_rss_mib": r1(p.peak_rss_mib())},
                "max_speed": {"cpu_percent": r1(f.cpu_percent(ctx.ticks)), "peak_rss_mib": r1(f.peak_rss_mib())},
                "memory_flatness": {
                    "input_ratio": f64::from(passes) / f64::from(small),
                    "peak_rss_mib_1x": r1(b.peak_rss_mib()),
                    "peak_rss_mib_full": r1(f.peak_rss_mib()),
                    "growth_ratio": r3(f.peak_rss_mib() / b.peak_rss_mib()),
                    "rss_trend_second_half": {
                        "max_speed": trend_json(f.rss_trend(), full.market_per_s()),
                        "paced": trend_json(p.rss_trend(), paced.market_per_s()),
                    },
                },
            })
        })
        .collect();
    println!(
        "==> resident set over the second half of a phase (least-squares line; per-event state keeps growing there, warm-up does not)"
    );
    for (i, name) in PLANES.iter().enumerate() {
        for (phase, usage, rate) in
            [("max speed", &full.usage[i], full.market_per_s()), ("paced", &paced.usage[i], paced.market_per_s())]
        {
            match usage.rss_trend() {
                Some(t) => println!(
                    "    {name:<15} {phase:<9} {:5.1} -> {:5.1} MiB over {:4.1} s: {:+6.2} MiB/min, {:+6.2} MiB per million market events",
                    t.start_mib,
                    t.end_mib,
                    t.seconds,
                    t.mib_per_minute,
                    per_million_events(&t, rate)
                ),
                None => println!("    {name:<15} {phase:<9} too few samples"),
            }
        }
    }
    let lat = paced.latencies.clone().unwrap_or_default();
    Ok(json!({
        "input": {
            "file": cfg.input.file_name().map(|f| f.to_string_lossy().into_owned()),
            "rows_per_pass": input.rows,
            "market_events_per_pass": per_pass,
            "mean_record_bytes": r1(mean_bytes),
        },
        "broker": {"usage": broker_usage},
        "kafka": {
            "partitions": ctx.kafka.partitions,
            "compression": ctx.kafka.compression,
            "linger_ms": ctx.kafka.linger_ms,
            "fetch_wait_ms": ctx.kafka.fetch_wait_ms,
        },
        "throughput": {
            "market_events": full.market,
            "passes": passes,
            "pipeline_events_per_s": r1(pipeline_rate),
            "pipeline_seconds": r3(full.seconds),
            "data_plane_publish_events_per_s": r1(full.market / full.dp_seconds),
            "raw_consumers": RAW_CONSUMERS,
            "raw_before_events_per_s": r1(raw_before.per_second()),
            "raw_after_events_per_s": r1(raw_after.per_second()),
            "raw_mean_events_per_s": r1(raw_mean),
            "ratio_pipeline_to_raw": r3(pipeline_rate / raw_mean),
            "order_plane": full.outcome,
        },
        "latency": {
            "target_rate_events_per_s": cfg.latency_rate,
            "replay_speed": format!("{factor:.3}x"),
            "achieved_rate_events_per_s": r1(paced.market_per_s()),
            "market_events": paced.market,
            "window_and_decision_ms": cfg.latency_window_ms,
            "raw_one_hop": hop.to_json(),
            "tick_to_intent": lat.tick_to_intent.to_json(),
            "intent_to_exec_report": lat.intent_to_report.to_json(),
            "unmatched": lat.unmatched,
            "order_plane": paced.outcome,
        },
        "planes": planes,
        "backlog": backlog,
    }))
}

const PLANES: [&str; 3] = ["data-plane", "strategy-plane", "order-plane"];
/// Readers of `market_events` in the pipeline (Strategy and Order Plane).
const RAW_CONSUMERS: usize = 2;
/// Records of the bare client's one-hop latency probe (10 s at 5,000/s).
const HOP_SAMPLES: usize = 50_000;

/// The trend's slope per million market events at the phase's rate.
fn per_million_events(t: &RssTrend, market_per_s: f64) -> f64 {
    t.mib_per_minute / 60.0 / market_per_s * 1e6
}

fn trend_json(trend: Option<RssTrend>, market_per_s: f64) -> Value {
    trend.map_or(Value::Null, |t| {
        json!({
            "seconds": r1(t.seconds),
            "start_mib": r1(t.start_mib),
            "end_mib": r1(t.end_mib),
            "mib_per_minute": r3(t.mib_per_minute),
            "mib_per_million_market_events": r3(per_million_events(&t, market_per_s)),
        })
    })
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn raw_phase(ctx: &Ctx, prefix: &str, records: &Arc<Vec<Record>>) -> Result<RawRate> {
    println!("==> bare client: {} records, 1 producer, {RAW_CONSUMERS} consumers", records.len());
    let rate = raw::measure(&ctx.kafka, &format!("{prefix}{MARKET_EVENTS}"), records, RAW_CONSUMERS)?;
    println!("    {:.0} events/s ({:.2} s)", rate.per_second(), rate.seconds);
    Ok(rate)
}

/// What one pipeline phase measured.
struct PhaseResult {
    market: f64,
    seconds: f64,
    dp_seconds: f64,
    usage: Vec<Usage>,
    latencies: Option<Latencies>,
    outcome: Value,
}

impl PhaseResult {
    fn market_per_s(&self) -> f64 {
        self.market / self.seconds
    }
}

fn pipeline(ctx: &Ctx, prefix: &str, phase: &Phase<'_>) -> Result<PhaseResult> {
    println!("==> pipeline, {}: {} passes at {} (topics {prefix}*)", phase.name, phase.passes, phase.speed);
    let mut env = vec![("KAFKA_BOOTSTRAP_SERVERS", ctx.bootstrap.clone()), ("KAFKA_TOPIC_PREFIX", prefix.to_owned())];
    if let Some(ms) = phase.window_ms {
        env.push(("OFI_WINDOW_MS", ms.to_string()));
        env.push(("DECISION_INTERVAL_MS", ms.to_string()));
    }
    let (order, strategy) = start_consumers(ctx, &env)?;
    env.push(("REPLAY_PATH", ctx.input.display().to_string()));
    env.push(("REPLAY_SPEED", phase.speed.clone()));
    env.push(("REPLAY_LOOP", phase.passes.to_string()));
    let data = Plane::start("data-plane", &ctx.root, &ctx.logs, &env)?;
    let mut planes = [data, strategy, order];
    // The three planes, then the broker.
    let mut usage = vec![Usage::default(); 4];
    let pids = [planes[0].pid(), planes[1].pid(), planes[2].pid(), ctx.broker_pid];

    let deadline = Instant::now() + Duration::from_secs(3600);
    let (mut t0, mut t_dp) = (None, None);
    let last: [Metrics; 3] = loop {
        std::thread::sleep(Duration::from_millis(50));
        for p in &mut planes {
            p.check_alive()?;
        }
        let now = Instant::now();
        let m = [planes[0].metrics(), planes[1].metrics(), planes[2].metrics()];
        for (u, pid) in usage.iter_mut().zip(pids) {
            u.sample(pid);
        }
        let processed = m[0].get("data_plane_messages_processed_total", None);
        if t0.is_none() && processed > 0.0 {
            t0 = Some(now);
            for (u, pid) in usage.iter_mut().zip(pids) {
                u.restart();
                u.sample(pid);
            }
        }
        let market = m[0].get("data_plane_events_published_total", Some("market_events"));
        let complete = m[0].get("data_plane_replay_complete", None) >= 1.0;
        if complete && t_dp.is_none() {
            t_dp = Some(now);
        }
        let consumed = |i: usize, name: &str, topic: &str| m[i].get(name, Some(&format!("topic=\"{topic}\"")));
        let mut done = complete
            && consumed(1, "strategy_plane_messages_processed_total", "market_events") >= market
            && consumed(2, "order_plane_messages_processed_total", "market_events") >= market;
        if phase.latency {
            let ofi = m[0].get("data_plane_events_published_total", Some("ofi_events"));
            let intents = m[1].get("strategy_plane_intents_published_total", None);
            done = done
                && consumed(1, "strategy_plane_messages_processed_total", "ofi_events") >= ofi
                && consumed(2, "order_plane_messages_processed_total", "order_intents") >= intents;
        }
        if done {
            break m;
        }
        if now > deadline {
            bail!("{} did not finish within an hour", phase.name);
        }
    };
    let t1 = Instant::now();
    let t0 = t0.context("the Data Plane never processed a row")?;
    let market = last[0].get("data_plane_events_published_total", Some("market_events"));
    let result_seconds = (t1 - t0).as_secs_f64();
    let dp_seconds = (t_dp.unwrap_or(t1) - t0).as_secs_f64();
    let o = &last[2];
    let outcome = json!({
        "intents": last[1].get("strategy_plane_intents_published_total", None),
        "orders_placed": o.get("order_plane_orders_placed_total", None),
        "rejections": o.get("order_plane_rejections_total", None),
        "rejected_stale_market_data": o.get("order_plane_rejections_total", Some("stale_market_data")),
        "fills": o.get("order_plane_fills_total", None),
    });
    println!(
        "    {market:.0} market events in {result_seconds:.2} s = {:.0} events/s end to end (Data Plane done after {dp_seconds:.2} s)",
        market / result_seconds
    );
    let latencies = if phase.latency {
        // The planes keep running: their topics are read back while they idle.
        let kafka = KafkaConfig { topic_prefix: prefix.to_owned(), ..ctx.kafka.clone() };
        let l = latency::collect(&kafka)?;
        println!(
            "    tick-to-intent p50 {:.0} µs p99 {:.0} µs; intent-to-exec-report p50 {:.0} µs p99 {:.0} µs ({} intents)",
            l.tick_to_intent.quantile(0.5),
            l.tick_to_intent.quantile(0.99),
            l.intent_to_report.quantile(0.5),
            l.intent_to_report.quantile(0.99),
            l.intent_to_report.count()
        );
        Some(l)
    } else {
        None
    };
    for p in planes {
        p.stop();
    }
    Ok(PhaseResult { market, seconds: result_seconds, dp_seconds, usage, latencies, outcome })
}

/// Starts the Order and the Strategy Plane and waits until both are in their consumer group.
fn start_consumers(ctx: &Ctx, env: &[(&str, String)]) -> Result<(Plane, Plane)> {
    let mut order = Plane::start("order-plane", &ctx.root, &ctx.logs, env)?;
    let mut strategy = Plane::start("strategy-plane", &ctx.root, &ctx.logs, env)?;
    wait(Duration::from_secs(90), "the Strategy and Order Planes to be ready and assigned", || {
        order.check_alive()?;
        strategy.check_alive()?;
        Ok(order.ready()
            && strategy.ready()
            && strategy.metrics().get("strategy_plane_assigned_partitions", None) > 0.0)
    })?;
    // The Order Plane shows no assignment: give its group join the time the Strategy Plane's took.
    std::thread::sleep(Duration::from_secs(3));
    Ok((order, strategy))
}

/// How long the backlog phase keeps watching the consumer planes after they caught up.
const BACKLOG_SETTLE: Duration = Duration::from_secs(10);

/// The consumer planes' memory around a backlog: both are frozen (`SIGSTOP`) while the Data
/// Plane publishes `passes` at maximum speed, then thawed. A plane that lagged (a pause, a
/// restart, a slow disk) takes in large fetches at once; what matters is the peak while it catches
/// up and whether its resident set comes back down afterwards, the steady state it then runs at.
fn backlog(ctx: &Ctx, prefix: &str, passes: u32) -> Result<Value> {
    println!("==> backlog: consumer planes frozen while {passes} passes are published at max (topics {prefix}*)");
    let mut env = vec![("KAFKA_BOOTSTRAP_SERVERS", ctx.bootstrap.clone()), ("KAFKA_TOPIC_PREFIX", prefix.to_owned())];
    let (mut order, mut strategy) = start_consumers(ctx, &env)?;
    let before = [ProcSample::read(strategy.pid()), ProcSample::read(order.pid())];
    for p in [&strategy, &order] {
        signal(p.pid(), "STOP")?;
    }
    env.push(("REPLAY_PATH", ctx.input.display().to_string()));
    env.push(("REPLAY_SPEED", "max".into()));
    env.push(("REPLAY_LOOP", passes.to_string()));
    let mut data = Plane::start("data-plane", &ctx.root, &ctx.logs, &env)?;
    wait(Duration::from_secs(600), "the Data Plane to publish the backlog", || {
        data.check_alive()?;
        Ok(data.metrics().get("data_plane_replay_complete", None) >= 1.0)
    })?;
    let market = data.metrics().get("data_plane_events_published_total", Some("market_events"));
    for p in [&strategy, &order] {
        signal(p.pid(), "CONT")?;
    }
    let start = Instant::now();
    let mut usage = [Usage::default(), Usage::default()];
    let mut caught_up = None;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        strategy.check_alive()?;
        order.check_alive()?;
        for (u, p) in usage.iter_mut().zip([&strategy, &order]) {
            u.sample(p.pid());
        }
        let consumed = |p: &Plane, name: &str| p.metrics().get(name, Some("topic=\"market_events\""));
        if caught_up.is_none()
            && consumed(&strategy, "strategy_plane_messages_processed_total") >= market
            && consumed(&order, "order_plane_messages_processed_total") >= market
        {
            caught_up = Some(start.elapsed());
        }
        if caught_up.is_some_and(|t| start.elapsed() >= t + BACKLOG_SETTLE) {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("the consumer planes did not catch up on the backlog within 10 minutes");
        }
    }
    let catch_up = caught_up.map_or(0.0, |t| t.as_secs_f64());
    println!(
        "    {market:.0} market events caught up in {catch_up:.2} s = {:.0} events/s",
        market / catch_up.max(f64::EPSILON)
    );
    let mut planes = serde_json::Map::new();
    for (i, name) in ["strategy-plane", "order-plane"].into_iter().enumerate() {
        let frozen = before[i].map_or(0.0, |s| s.rss_kib as f64 / 1024.0);
        let (peak, after) = (usage[i].peak_rss_mib(), usage[i].last_rss_mib());
        println!(
            "    {name:<15} before {frozen:5.1} MiB, peak while catching up {peak:5.1} MiB, {:.0} s after {after:5.1} MiB",
            BACKLOG_SETTLE.as_secs_f64()
        );
        planes
            .insert(name.to_owned(), json!({"before_mib": r1(frozen), "peak_mib": r1(peak), "settled_mib": r1(after)}));
    }
    for p in [data, strategy, order] {
        p.stop();
    }
    Ok(json!({
        "market_events": market,
        "catch_up_seconds": r3(catch_up),
        "catch_up_events_per_s": r1(market / catch_up.max(f64::EPSILON)),
        "settle_seconds": BACKLOG_SETTLE.as_secs(),
        "planes": planes,
    }))
}

/// Sends `SIG<name>` to `pid` with kill(1).
fn signal(pid: u32, name: &str) -> Result<()> {
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

fn wait(timeout: Duration, what: &str, mut ok: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok()? {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
