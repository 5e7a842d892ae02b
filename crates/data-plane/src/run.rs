//! The Data Plane's IO shell: replay source → [`DataCore`] → Kafka, with pacing, metrics, health,
//! delivery tracking and graceful shutdown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::clock::SystemClock;
use common::config::{AppConfig, DataPlaneConfig, ReplaySpeed};
use common::events::Source;
use common::http::{self, Health};
use common::kafka::{self, AckQueue, BrokerError, OnAck, Publisher};
use common::service::{Endpoint, ExitStatus, ServiceError};
use common::topics::{MARKET_EVENTS, OFI_EVENTS, REPLAY_CHECKPOINTS};
use common::types::{Symbol, UnixNanos};
use prometheus::IntCounter;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Checkpointer, Resume};
use crate::core::{DataCore, Output};
use crate::metrics::Metrics;
use crate::source::{Item, ReadProgress, Replay, SourceError};

/// Rows handed from the reader thread to the pipeline at once.
const BATCH: usize = 1024;
/// Malformed rows logged one by one before the log only samples them.
const MALFORMED_LOGGED: u64 = 100;
/// How often the watchdog looks at the replay reader's progress.
const WATCH_TICK: Duration = Duration::from_secs(1);

/// Wall time between two replay progress lines in the log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How far the input had been read when a batch was cut: its share of the pass, and the pass.
#[derive(Debug, Clone, Copy)]
struct ReadUpTo {
    share: f64,
    pass: u32,
}

/// Logs the replay's progress every [`PROGRESS_EVERY`]: rows done, share of the input, rate.
struct ProgressLog {
    since: Instant,
    rows_then: u64,
}

impl ProgressLog {
    fn new(rows: u64) -> Self {
        Self { since: Instant::now(), rows_then: rows }
    }

    /// `rows` of the input are done (every pass counted), which were read up to `read`.
    fn tick(&mut self, rows: u64, read: ReadUpTo) {
        let elapsed = self.since.elapsed();
        if elapsed < PROGRESS_EVERY {
            return;
        }
        let events_per_s = (rows.saturating_sub(self.rows_then) as f64 / elapsed.as_secs_f64()).round();
        let percent = (read.share * 1000.0).round() / 10.0;
        tracing::info!(rows, percent, pass = read.pass + 1, events_per_s, "Replay progress.");
        *self = Self::new(rows);
    }
}

/// Why the Data Plane stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The replay input is missing or unreadable.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A failure every plane shares (broker, port, runtime).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The replay reader thread panicked: the input was not read to its end.
    #[error("the replay reader failed before the end of the input")]
    ReaderPanicked,
    /// The replay reader handed out no row for `data_plane.replay.stall_timeout_s` while the
    /// pipeline waited for one: a corrupt file spinning its decoder, or a hung file system.
    #[error(
        "the replay reader made no progress for {secs} s reading {} after {rows} rows (a corrupt file, or a file system that does not answer); the replay is abandoned",
        file.display()
    )]
    ReaderStalled {
        /// The file being read.
        file: PathBuf,
        /// Rows handed out before the stall.
        rows: u64,
        /// How long the reader had been silent.
        secs: u64,
    },
    /// `data_plane.source` names a source this build does not have.
    #[error("data_plane.source = \"{0}\" is not available in this build")]
    UnsupportedSource(String),
    /// The IBKR gateway cannot be used (unreachable, client id in use).
    #[error(transparent)]
    Ibkr(#[from] ::ibkr::IbkrError),
}

impl From<BrokerError> for RunError {
    fn from(e: BrokerError) -> Self {
        Self::Service(ServiceError::Broker(e))
    }
}

impl From<prometheus::Error> for RunError {
    fn from(e: prometheus::Error) -> Self {
        Self::Service(ServiceError::Metrics(e))
    }
}

impl ExitStatus for RunError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Source(_) | Self::ReaderStalled { .. } => 66,
            Self::Service(e) => e.exit_code(),
            Self::ReaderPanicked => 70,
            Self::UnsupportedSource(_) => 78,
            Self::Ibkr(_) => 69,
        }
    }
}

/// Starts a runtime, installs signal handlers, opens the HTTP port and runs until stopped.
pub fn main(cfg: AppConfig) -> Result<(), RunError> {
    let endpoint = Endpoint {
        plane: "data-plane",
        bind: cfg.http_bind(),
        port: cfg.data_plane.http_port,
        setting: "DATA_PLANE_PORT",
    };
    common::service::serve(endpoint, |listener, shutdown| run(cfg, listener, shutdown))
}

/// One row's records, waiting for the broker.
pub(crate) struct Pending {
    pub(crate) seq: u64,
    /// The end-of-input windows, published after the last row.
    pub(crate) finished: bool,
    pub(crate) produced_at: Instant,
    pub(crate) market: u64,
    pub(crate) ofi: u64,
}

/// What follows the acknowledged rows of a replay: metrics and the checkpoint. The counters, the
/// position and the checkpoint are moved once per batch of rows, not per row.
struct Published {
    metrics: Metrics,
    market_published: IntCounter,
    ofi_published: IntCounter,
    checkpoints: Arc<Mutex<Checkpointer>>,
    /// Records acknowledged since the last batch.
    market: u64,
    ofi: u64,
    /// The position after the newest acknowledged row, and whether the input's end is.
    newest: Option<(u64, bool)>,
    /// When this batch's acknowledgements were read: one clock read per batch instead of one per
    /// row (a batch is handled within microseconds, publish latencies are milliseconds).
    now: Option<Instant>,
}

impl Published {
    fn new(metrics: &Metrics, checkpoints: Arc<Mutex<Checkpointer>>) -> Self {
        Self {
            market_published: metrics.events_published.with_label_values(&[MARKET_EVENTS]),
            ofi_published: metrics.events_published.with_label_values(&[OFI_EVENTS]),
            metrics: metrics.clone(),
            checkpoints,
            market: 0,
            ofi: 0,
            newest: None,
            now: None,
        }
    }
}

impl OnAck<Pending> for Published {
    fn acked(&mut self, p: Pending) {
        let now = *self.now.get_or_insert_with(Instant::now);
        self.metrics.publish_latency.observe(now.saturating_duration_since(p.produced_at).as_secs_f64());
        self.market += p.market;
        self.ofi += p.ofi;
        let finished = p.finished || self.newest.is_some_and(|(_, f)| f);
        self.newest = Some((p.seq + 1, finished));
    }

    fn settled(&mut self) {
        self.now = None;
        let Some((position, finished)) = self.newest.take() else { return };
        self.market_published.inc_by(std::mem::take(&mut self.market));
        let ofi = std::mem::take(&mut self.ofi);
        self.ofi_published.inc_by(ofi);
        self.metrics.ofi_windows.inc_by(ofi);
        self.metrics.replay_position.set(i64::try_from(position).unwrap_or(i64::MAX));
        if let Ok(mut cp) = self.checkpoints.lock() {
            cp.acked(position, finished);
        }
    }
}

/// Runs the Data Plane until the input is published (with `exit_when_done`) or `shutdown` fires.
pub async fn run(cfg: AppConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), RunError> {
    if !matches!(cfg.data_plane.source.as_str(), "replay" | "ibkr") {
        return Err(RunError::UnsupportedSource(cfg.data_plane.source.clone()));
    }
    let metrics = Metrics::new()?;
    let health = Health::new();
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(http::serve(listener, metrics.registry.clone(), Arc::clone(&health), http_stop.clone()));
    let result = match cfg.data_plane.source.as_str() {
        "ibkr" => crate::ibkr::run(&cfg, &metrics, &health, &shutdown).await,
        _ => replay(&cfg, &metrics, &health, &shutdown).await,
    };
    http_stop.cancel();
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "HTTP server ended with an error.");
    }
    result
}

async fn replay(
    cfg: &AppConfig,
    metrics: &Metrics,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    let replay_cfg = &cfg.data_plane.replay;
    let Some((replay, stream)) = open_within_the_stall_limit(cfg, shutdown).await? else {
        return Ok(());
    };
    tracing::info!(files = ?replay.files(), passes = replay_cfg.loop_count, speed = %replay_cfg.speed, "Replay opened.");

    let instance = cfg.instance_id();
    let client_id = format!("data-plane-{instance}");
    let Some(mut publisher) =
        kafka::connect(&cfg.kafka, &client_id, &[MARKET_EVENTS, OFI_EVENTS, REPLAY_CHECKPOINTS], shutdown).await?
    else {
        return Ok(());
    };
    let resume = if replay_cfg.resume {
        let (kafka_cfg, name) = (cfg.kafka.clone(), stream.clone());
        tokio::task::spawn_blocking(move || checkpoint::load(&kafka_cfg, &name))
            .await
            .map_err(|_| BrokerError::TaskLost)??
    } else {
        Resume::default()
    };
    if resume.position > 0 {
        tracing::info!(
            position = resume.position,
            finished = resume.finished,
            "Resuming the replay from its checkpoint; earlier rows rebuild state without being published."
        );
    }
    metrics.replay_position.set(i64::try_from(resume.position).unwrap_or(i64::MAX));
    health.set_broker_reachable(true);
    health.set_working(true);
    let checker = http::spawn_broker_check(Arc::clone(publisher.producer()), Arc::clone(health));

    let progress = replay.progress();
    let files = replay.files().to_vec();
    let (batch_tx, mut batch_rx) = mpsc::channel::<(Vec<Item>, ReadUpTo)>(16);
    let reader = std::thread::Builder::new()
        .name("replay-reader".into())
        .spawn(move || read_batches(replay, &batch_tx))
        .map_err(|source| SourceError::Io { path: PathBuf::from("<reader thread>"), source })?;

    let interval = Duration::from_millis(replay_cfg.checkpoint_interval_ms);
    let checkpoints = Arc::new(Mutex::new(Checkpointer::new(
        Arc::clone(publisher.producer()),
        &cfg.kafka,
        &stream,
        interval,
        resume,
    )));
    let (acks, ack_task) =
        AckQueue::spawn(8192, publisher.deliveries().clone(), Published::new(metrics, Arc::clone(&checkpoints)));

    let source = Arc::new(Source { plane: "data-plane".into(), instance: instance.into() });
    let mut core = DataCore::new(&cfg.data_plane, &stream, source, SystemClock).expecting(&instruments(cfg));
    let mut pacer = Pacer::new(cfg.replay_speed());
    let mut out = Vec::new();
    let mut malformed = 0u64;
    let mut last_seq = resume.position.saturating_sub(1);
    let mut interrupted = false;
    let mut progress_log = ProgressLog::new(resume.position);
    // A delivery failed: the ack task holds the error. The input did not end, so the open windows
    // must not be closed and published cut short.
    let mut failed = false;
    // The reader thread cannot be stopped: a stalled one is left behind, and the plane stops.
    let watchdog = stalled(&progress, Duration::from_secs(replay_cfg.stall_timeout_s), WATCH_TICK);
    tokio::pin!(watchdog);
    let mut stall = None;

    'input: loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => { interrupted = true; break 'input; }
            batch = batch_rx.recv() => batch,
            silent = &mut watchdog => {
                let file = files.get(progress.file()).cloned().unwrap_or_default();
                let (rows, secs) = (progress.rows(), silent.as_secs());
                health.set_working(false);
                tracing::error!(file = %file.display(), rows, secs, "Replay reader stalled: no row for this long while the pipeline waited; not ready, stopping.");
                stall = Some(RunError::ReaderStalled { file, rows, secs });
                break 'input;
            }
        };
        let Some((batch, read)) = batch else { break };
        for item in batch {
            // Rows before the checkpoint went out before the restart: rebuild the core's state
            // from them, publish nothing.
            match item {
                Ok(ev) if ev.seq < resume.position => {
                    core.process(ev, &mut out);
                    out.clear();
                    continue;
                }
                Err(row) if row.seq < resume.position => continue,
                _ => {}
            }
            metrics.messages_processed.inc();
            let ev = match item {
                Ok(ev) => ev,
                Err(row) => {
                    malformed += 1;
                    metrics.malformed_rows.inc();
                    if malformed <= MALFORMED_LOGGED || malformed.is_multiple_of(10_000) {
                        tracing::warn!(file = %row.file.display(), line = row.line, reason = %row.reason, malformed, "Malformed row skipped.");
                    }
                    last_seq = row.seq;
                    let pending =
                        Pending { seq: row.seq, finished: false, produced_at: Instant::now(), market: 0, ofi: 0 };
                    // A full queue behind a broker that is down must not hold up a shutdown.
                    let pushed = tokio::select! {
                        biased;
                        pushed = acks.push(pending, publisher.sent()) => pushed,
                        () = shutdown.cancelled() => { interrupted = true; break 'input; }
                    };
                    if !pushed {
                        failed = true;
                        break 'input;
                    }
                    continue;
                }
            };
            if let Some(at) = pacer.due(ev.ts) {
                metrics.replay_lag.set(Instant::now().saturating_duration_since(at).as_secs_f64());
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => { interrupted = true; break 'input; }
                    () = tokio::time::sleep_until(at) => {}
                }
                // A paced batch can take longer than the progress interval.
                progress_log.tick(last_seq + 1, read);
            }
            // Asked here, and polled below only when publishing waits: polling a cancellation
            // future registers a waiter under a lock, which per row is a cost.
            if shutdown.is_cancelled() {
                interrupted = true;
                break 'input;
            }
            last_seq = ev.seq;
            core.process(ev, &mut out);
            // A broker that is down keeps the producer queue full; shutdown must still get through.
            let published = tokio::select! {
                biased;
                published = publish(&mut publisher, &mut out, (last_seq, false), &acks, metrics) => published?,
                () = shutdown.cancelled() => { interrupted = true; break 'input; }
            };
            if !published {
                failed = true;
                break 'input;
            }
        }
        metrics.stale_symbols.set(i64::try_from(core.stale_symbols()).unwrap_or(i64::MAX));
        progress_log.tick(last_seq + 1, read);
    }
    drop(batch_rx);
    // The channel closes when the reader ends, normally or by panicking; only the former is the
    // end of the input.
    let reader_ok = interrupted || stall.is_some() || reader.join().is_ok();
    if !interrupted && !failed && stall.is_none() && reader_ok && !resume.finished {
        core.end(&mut out);
        // Interrupted here, the last windows stay unpublished and unacknowledged: a restart
        // publishes them from the checkpoint.
        tokio::select! {
            biased;
            published = publish(&mut publisher, &mut out, (last_seq, true), &acks, metrics) => { published?; }
            () = shutdown.cancelled() => interrupted = true,
        }
    }
    drop(acks);
    // Every produced record must be acknowledged before we call the replay published.
    match tokio::time::timeout(kafka::DRAIN_GRACE, ack_task).await {
        Ok(joined) => {
            joined.map_err(|_| BrokerError::TaskLost)??;
        }
        Err(_) => {
            tracing::warn!(grace = ?kafka::DRAIN_GRACE, "In-flight records not acknowledged in time; they will be re-sent after a restart.");
            checker.abort();
            return Ok(());
        }
    }
    let rows = metrics.replay_position.get();
    if let Ok(mut cp) = checkpoints.lock() {
        cp.write();
    }
    publisher.flush_at_stop();
    if !reader_ok {
        checker.abort();
        return Err(RunError::ReaderPanicked);
    }
    if let Some(stall) = stall {
        checker.abort();
        return Err(stall);
    }
    if interrupted {
        tracing::info!(rows, "Replay interrupted; every produced record was acknowledged.");
        checker.abort();
        return Ok(());
    }
    metrics.replay_complete.set(1);
    tracing::info!(rows, malformed, "Replay complete; every record acknowledged.");
    if !cfg.data_plane.replay.exit_when_done {
        shutdown.cancelled().await;
    }
    checker.abort();
    Ok(())
}

/// The configured instruments: every window boundary carries a window (or a heartbeat) for each.
pub fn instruments(cfg: &AppConfig) -> Vec<Symbol> {
    cfg.instruments.iter().filter_map(|i| Symbol::new(&i.symbol).ok()).collect()
}

/// Event ids derive from each file's name, size and first 64 KiB: moving the data keeps the ids,
/// while two different files of the same name (a folder per day) get different ones. The number
/// of passes and the settings that shape the output (quality checks, OFI) are part of the name
/// too, so a checkpoint of one configuration is never resumed under another.
pub fn stream_name(files: &[PathBuf], cfg: &DataPlaneConfig) -> String {
    use std::io::Read;
    let parts: Vec<String> = files
        .iter()
        .map(|f| {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
            let mut head = Vec::with_capacity(1 << 16);
            if let Ok(file) = std::fs::File::open(f) {
                let _ = file.take(1 << 16).read_to_end(&mut head);
            }
            format!("{name}:{len}:{:016x}", common::ids::stream_hash(&String::from_utf8_lossy(&head)))
        })
        .collect();
    let shape = serde_json::to_string(&(&cfg.quality, &cfg.ofi, cfg.replay.loop_count)).unwrap_or_default();
    format!("replay:{};{:016x}", parts.join(","), common::ids::stream_hash(&shape))
}

/// Opens the replay and names its stream (which reads each file's first 64 KiB) on a thread of
/// their own, under the reader's stall limit: a file system that hangs at start-up stops the plane
/// with [`RunError::ReaderStalled`], as one that hangs later does, instead of leaving it not
/// ready for good. `None` when a shutdown came first. A hung thread is left behind (it cannot be
/// stopped), and the process ends.
async fn open_within_the_stall_limit(
    cfg: &AppConfig,
    shutdown: &CancellationToken,
) -> Result<Option<(Replay, String)>, RunError> {
    let replay_cfg = &cfg.data_plane.replay;
    let (path, passes, plane_cfg) = (replay_cfg.path.clone(), replay_cfg.loop_count, cfg.data_plane.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("replay-open".into())
        .spawn(move || {
            let opened = Replay::open(&path, passes).map(|replay| {
                let stream = stream_name(replay.files(), &plane_cfg);
                (replay, stream)
            });
            let _ = tx.send(opened);
        })
        .map_err(|source| SourceError::Io { path: PathBuf::from("<replay-open thread>"), source })?;
    let limit = Duration::from_secs(replay_cfg.stall_timeout_s);
    tokio::select! {
        () = shutdown.cancelled() => Ok(None),
        opened = rx => match opened {
            Ok(opened) => Ok(Some(opened?)),
            Err(_) => Err(RunError::ReaderPanicked),
        },
        () = tokio::time::sleep(limit) => {
            let (file, secs) = (replay_cfg.path.clone(), limit.as_secs());
            tracing::error!(file = %file.display(), secs, "Replay input did not answer while being opened; not ready, stopping.");
            Err(RunError::ReaderStalled { file, rows: 0, secs })
        }
    }
}

/// Produces everything in `out` and queues its delivery reports; `false` when delivery failed
/// earlier and the pipeline must stop.
pub(crate) async fn publish(
    publisher: &mut Publisher,
    out: &mut Vec<Output>,
    (seq, finished): (u64, bool),
    acks: &AckQueue<Pending>,
    metrics: &Metrics,
) -> Result<bool, RunError> {
    let (mut market, mut ofi) = (0, 0);
    for output in out.drain(..) {
        match output {
            Output::Market(env) => {
                publisher.publish(&env).await?;
                market += 1;
            }
            Output::Ofi(env) => {
                publisher.publish(&env).await?;
                ofi += 1;
            }
            Output::Rejected { reason, symbol, seq } => {
                metrics.quality_rejections.with_label_values(&[reason.as_str()]).inc();
                tracing::debug!(%symbol, seq, reason = reason.as_str(), "Event rejected by quality checks.");
            }
        }
    }
    Ok(acks.push(Pending { seq, finished, produced_at: Instant::now(), market, ofi }, publisher.sent()).await)
}

fn read_batches(mut replay: Replay, tx: &mpsc::Sender<(Vec<Item>, ReadUpTo)>) {
    let progress = replay.progress();
    let send = |batch: Vec<Item>, read: ReadUpTo| {
        progress.set_waiting(true);
        let sent = tx.blocking_send((batch, read)).is_ok();
        progress.set_waiting(false);
        sent
    };
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(item) = replay.next() {
        batch.push(item);
        if batch.len() == BATCH {
            let read = ReadUpTo { share: replay.share_read(), pass: replay.pass() };
            if !send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)), read) {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let read = ReadUpTo { share: 1.0, pass: replay.pass().saturating_sub(1) };
        send(batch, read);
    }
}

/// Resolves once the reader has handed out no row for `limit` while not waiting for the pipeline
/// to take its last batch, with how long it has been silent. Looked at every `tick`.
async fn stalled(progress: &ReadProgress, limit: Duration, tick: Duration) -> Duration {
    let mut rows = progress.rows();
    let mut since = Instant::now();
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = progress.rows();
        if now != rows || progress.waiting() {
            rows = now;
            since = Instant::now();
        } else if since.elapsed() >= limit {
            return since.elapsed();
        }
    }
}

/// Maps event time to wall time for paced replays.
struct Pacer {
    speed: ReplaySpeed,
    origin: Option<(UnixNanos, Instant)>,
}

impl Pacer {
    fn new(speed: ReplaySpeed) -> Self {
        Self { speed, origin: None }
    }

    /// When an event at `ts` is due, or `None` to go at once.
    fn due(&mut self, ts: UnixNanos) -> Option<Instant> {
        let ReplaySpeed::Factor(factor) = self.speed else { return None };
        let (t0, wall0) = *self.origin.get_or_insert((ts, Instant::now()));
        let offset = Duration::from_secs_f64(ts.saturating_sub(t0) as f64 / 1e9 / factor);
        Some(wall0 + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 46 mutated Parquet files spun the reader for 30 s and more while `/health/ready` said 200.
    /// The watchdog fires once the reader is silent for its limit, never while rows come or while
    /// the reader only waits for the pipeline.
    #[tokio::test(start_paused = true)]
    async fn a_reader_silent_for_the_limit_is_stalled_one_that_reads_or_waits_is_not() {
        let progress = ReadProgress::default();
        let limit = Duration::from_secs(30);
        let watch = stalled(&progress, limit, Duration::from_secs(1));
        tokio::pin!(watch);
        macro_rules! quiet_for {
            ($d:expr) => {
                tokio::time::timeout($d, &mut watch).await.is_err()
            };
        }
        for _ in 0..100 {
            assert!(quiet_for!(Duration::from_secs(10)), "rows every 10 s");
            progress.row_read();
        }
        progress.set_waiting(true);
        assert!(quiet_for!(Duration::from_secs(300)), "the pipeline holds the reader up");
        progress.set_waiting(false);
        assert!(quiet_for!(Duration::from_secs(28)), "not before the limit");
        let silent = tokio::time::timeout(Duration::from_secs(5), &mut watch).await;
        assert!(silent.as_ref().is_ok_and(|d| *d >= limit), "{silent:?}");
    }
}
