//! `backtest`: the planes' cores over replay files in one process, no broker; writes
//! `report.json`, `report.html`, `fills.parquet` and `intents.parquet` (CSV too with `--csv`) to
//! `--out` and prints a one-line summary; with `--sweep`, one folder per variant and a comparison.

use std::path::PathBuf;
use std::process::ExitCode;

use backtest::{BacktestError, output, parse_sets, sweep};
use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(version, about = "AlgoTrader backtest: replay files → data, strategy and order cores → report")]
struct Cli {
    /// Replay file or folder (CSV/Parquet); default: REPLAY_PATH / data_plane.replay.path.
    input: Option<PathBuf>,
    /// Folder for report.json, report.html, fills.parquet and intents.parquet.
    #[arg(long, default_value = "backtest-out")]
    out: PathBuf,
    /// Writes fills.csv and intents.csv as well.
    #[arg(long)]
    csv: bool,
    /// Sets a configuration field over every other layer, e.g. strategy_plane.risk_aversion=1000.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Runs one variant per value, in parallel, into OUT/<key>=<value>/; repeated, a grid.
    #[arg(long = "sweep", value_name = "SECTION.KEY=V1,V2,…")]
    sweeps: Vec<String>,
    /// Folder holding default.toml and <APP_ENV>.toml.
    #[arg(long, env = "CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(lines) => {
            lines.iter().for_each(|line| println!("{line}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backtest: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: &Cli) -> Result<Vec<String>, BacktestError> {
    let mut sets = parse_sets(&cli.sets)?;
    if let Some(input) = &cli.input {
        sets.push(("data_plane.replay.path".into(), input.display().to_string()));
    }
    let options = output::Options { csv: cli.csv };
    if !cli.sweeps.is_empty() {
        let axes = sweep::parse(&cli.sweeps)?;
        let variants = sweep::configure(&cli.config_dir, &sets, &axes)?;
        let (mut lines, path) = sweep::run(&variants, &axes, &cli.out, options, sweep::threads())?;
        lines.push(format!("sweep: {} variants; comparison {}", variants.len(), path.display()));
        return Ok(lines);
    }
    let cfg = common::config::load_with(&cli.config_dir, &sets)?;
    output::prepare(&cli.out)?;
    let bar = backtest::terminal::Bars::on_stderr().bar("");
    let outcome = backtest::run_with(&cfg, &mut |p| bar.update(p));
    bar.finish();
    let outcome = outcome?;
    let report = output::write(&cli.out, &outcome, options)?;
    Ok(vec![backtest::summary(&outcome.report, &report)])
}
