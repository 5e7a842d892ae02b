//! The backtest: the three planes' own cores in one process over replay files, with no broker,
//! and a report of what the strategy would have done.
//!
//! # Layout
//! - [`engine`]: the loop, `DataCore` → `StrategyEngine` → `OrderEngine` with the simulated
//!   venue, wired as the planes wire them through Kafka; pure, one callback per record.
//! - [`ledger`]: positions, PnL, fees, turnover, the cost decomposition, round trips, drawdown
//!   and the Sharpe and Sortino ratios, exact decimals; the series the page plots.
//! - [`report`]: the records counted, hashed and booked; `report.json` and the CSV rows.
//! - [`series`]: the plotted time series, downsampled to a bounded number of points.
//! - [`tables`]: `fills.parquet` and `intents.parquet`.
//! - [`html`]: `report.html`, the report's headline figures and plots on one offline page.
//! - [`sweep`]: `--sweep`, variants run in parallel, `sweep.json` and `sweep.html`.
//! - [`terminal`]: the progress bars, on a terminal only.
//! - [`output`]: writes the report and the tables (and their CSV copies) to the output folder.
//!
//! `docs/backtest.md` documents the command and the report.

pub mod engine;
pub mod html;
pub mod ledger;
pub mod output;
pub mod report;
pub mod series;
pub mod sweep;
pub mod tables;
pub mod terminal;

use std::path::PathBuf;
use std::time::Instant;

use common::config::{AppConfig, ConfigError};
use data_plane::source::{Replay, SourceError};

use crate::report::{FillRow, IntentRow, Recorder, Report, RunInfo};

/// Why a backtest could not run or could not write its outputs.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The configuration is invalid (a `--set` among it).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `--set` argument that is not `section.key=value`.
    #[error("--set {0:?}: expected section.key=value, e.g. strategy_plane.risk_aversion=1000")]
    SetSyntax(String),
    /// A `--sweep` argument that is not `section.key=v1,v2,…`, or a key swept twice.
    #[error(
        "--sweep {0:?}: expected section.key=value,value,… with no empty value and each key swept once, e.g. strategy_plane.risk_aversion=1000,10000"
    )]
    SweepSyntax(String),
    /// `data_plane.replay.loop_count = 0` replays forever: a backtest needs an end.
    #[error("data_plane.replay.loop_count = 0 replays forever; a backtest needs a number of passes (1 or more)")]
    EndlessReplay,
    /// The replay input is missing or unreadable.
    #[error(transparent)]
    Input(#[from] SourceError),
    /// The output folder or a file in it cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BacktestError {
    /// The process exit code (sysexits.h, as the planes use them).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::SetSyntax(_) | Self::SweepSyntax(_) | Self::EndlessReplay => common::EXIT_CONFIG,
            Self::Input(_) => 66,
            Self::Output { .. } => 73,
        }
    }
}

/// Splits `--set` arguments into dotted keys and values.
pub fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, BacktestError> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
            _ => Err(BacktestError::SetSyntax(s.clone())),
        })
        .collect()
}

/// A finished run.
#[derive(Debug)]
pub struct Outcome {
    /// `report.json`.
    pub report: Report,
    /// The fills tables' rows.
    pub fills: Vec<FillRow>,
    /// The intents tables' rows.
    pub intents: Vec<IntentRow>,
    /// What `report.html` plots.
    pub charts: ledger::Charts,
}

/// How far a run has got, reported every [`PROGRESS_ROWS`] rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Replay rows read, good or bad.
    pub rows: u64,
    /// Share of the input read, 0 to 1: bytes of the files read over their sizes, over every
    /// pass.
    pub share: f64,
}

/// Rows between two [`Progress`] reports: often enough for a bar, rare enough to cost nothing.
pub const PROGRESS_ROWS: u64 = 8192;

/// Runs the replay `cfg.data_plane.replay` names through the cores, to the end of the input.
pub fn run(cfg: &AppConfig) -> Result<Outcome, BacktestError> {
    run_with(cfg, &mut |_| {})
}

/// [`run`], reporting its progress to `on_progress`.
pub fn run_with(cfg: &AppConfig, on_progress: &mut dyn FnMut(Progress)) -> Result<Outcome, BacktestError> {
    let replay_cfg = &cfg.data_plane.replay;
    if replay_cfg.loop_count == 0 {
        return Err(BacktestError::EndlessReplay);
    }
    let started = Instant::now();
    let mut replay = Replay::open(&replay_cfg.path, replay_cfg.loop_count)?;
    let files: Vec<String> = replay.files().iter().map(|f| f.display().to_string()).collect();
    let stream = data_plane::run::stream_name(replay.files(), &cfg.data_plane);
    let mut recorder = Recorder::new(cfg.strategy_plane.decision_interval_ms);
    let mut on = |p: engine::Published<'_>| recorder.on(p);
    let mut rows = 0u64;
    let mut cores = engine::Cores::new(cfg, &stream);
    let passes = f64::from(replay_cfg.loop_count);
    let share = |replay: &Replay| ((f64::from(replay.pass()) + replay.share_read()) / passes).min(1.0);
    while let Some(item) = replay.next() {
        rows += 1;
        cores.step(item, &mut on);
        if rows.is_multiple_of(PROGRESS_ROWS) {
            on_progress(Progress { rows, share: share(&replay) });
        }
    }
    cores.end(&mut on);
    on_progress(Progress { rows, share: 1.0 });
    let counters = cores.strategy_counters();
    recorder.rows_read(rows);
    let mut outcome = recorder.finish(cfg, counters);
    let wall_seconds = started.elapsed().as_secs_f64();
    outcome.report.run = Some(RunInfo { files, wall_seconds, rows_per_second: rows as f64 / wall_seconds.max(1e-9) });
    Ok(outcome)
}

/// The one line printed at the end of a run.
pub fn summary(report: &Report, path: &std::path::Path) -> String {
    let (rows, secs) = report.run.as_ref().map_or((0.0, 0.0), |r| (r.rows_per_second * r.wall_seconds, r.wall_seconds));
    let c = &report.counts;
    let sharpe = report.risk.sharpe.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2}"));
    format!(
        "backtest: {rows:.0} rows in {secs:.2} s ({:.0} rows/s); {} decisions, {} intents, {} orders, {} fills; net PnL {} (gross {}, fees {}), max drawdown {}, Sharpe {sharpe}; report {}",
        rows / secs.max(1e-9),
        c.decisions,
        c.totals.intents,
        c.totals.orders,
        c.totals.fills,
        report.pnl.net,
        report.pnl.gross,
        report.pnl.fees,
        report.risk.max_drawdown,
        path.display()
    )
}
