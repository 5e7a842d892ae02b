//! `strategy-plane`: OFI signals and cost-aware portfolio decisions between `ofi_events` and
//! `order_intents`, with positions and PnL from `exec_reports`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(version, about = "AlgoTrader Strategy Plane: signals → portfolio → order intents")]
struct Cli {
    /// Folder holding default.toml and <APP_ENV>.toml.
    #[arg(long, env = "CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    /// Load and validate the configuration, then exit.
    #[arg(long)]
    check_config: bool,
}

fn fail(message: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("strategy-plane: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match common::config::load(&cli.config_dir) {
        Ok(cfg) => cfg,
        Err(e) => return fail(e, common::EXIT_CONFIG),
    };
    if cli.check_config {
        println!("strategy-plane: configuration OK");
        return ExitCode::SUCCESS;
    }
    let _log_guard = match common::telemetry::init(&cfg.log.level, &cfg.log.dir, "strategy-plane") {
        Ok(guard) => guard,
        Err(e) => return fail(e, common::EXIT_CONFIG),
    };
    strategy_plane::run::main(cfg).map_or_else(
        |e| {
            tracing::error!(error = %e, "Strategy Plane stopped.");
            fail(&e, e.exit_code())
        },
        |()| ExitCode::SUCCESS,
    )
}
