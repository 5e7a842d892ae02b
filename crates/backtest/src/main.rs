//! `backtest`: the planes' cores over replay files in one process, no broker; writes
//! `report.json`, `fills.parquet` and `intents.parquet` (CSV too with `--csv`) to `--out` and prints a one-line summary.

use std::path::PathBuf;
use std::process::ExitCode;

use backtest::{BacktestError, output, parse_sets};
use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(version, about = "AlgoTrader backtest: replay files → data, strategy and order cores → report")]
struct Cli {
    /// Replay file or folder (CSV/Parquet); default: REPLAY_PATH / data_plane.replay.path.
    input: Option<PathBuf>,
    /// Folder for report.json, fills.parquet and intents.parquet.
    #[arg(long, default_value = "backtest-out")]
    out: PathBuf,
    /// Writes fills.csv and intents.csv as well.
    #[arg(long)]
    csv: bool,
    /// Sets a configuration field over every other layer, e.g. strategy_plane.risk_aversion=1000.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Folder holding default.toml and <APP_ENV>.toml.
    #[arg(long, env = "CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backtest: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: &Cli) -> Result<String, BacktestError> {
    let mut sets = parse_sets(&cli.sets)?;
    if let Some(input) = &cli.input {
        sets.push(("data_plane.replay.path".into(), input.display().to_string()));
    }
    let cfg = common::config::load_with(&cli.config_dir, &sets)?;
    output::prepare(&cli.out)?;
    let bar = backtest::terminal::Bars::on_stderr().bar("");
    let outcome = backtest::run_with(&cfg, &mut |p| bar.update(p));
    bar.finish();
    let outcome = outcome?;
    let report = output::write(&cli.out, &outcome, output::Options { csv: cli.csv })?;
    Ok(backtest::summary(&outcome.report, &report))
}
