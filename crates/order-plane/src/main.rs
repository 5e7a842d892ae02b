//! `order-plane`: pre-trade risk, execution and transaction-cost learning between
//! `order_intents` and `exec_reports`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(version, about = "AlgoTrader Order Plane: intents → risk → venue → exec reports")]
struct Cli {
    /// Folder holding default.toml and <APP_ENV>.toml.
    #[arg(long, env = "CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    /// Load and validate the configuration, then exit.
    #[arg(long)]
    check_config: bool,
}

fn fail(message: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("order-plane: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match common::config::load(&cli.config_dir) {
        Ok(cfg) => cfg,
        Err(e) => return fail(e, common::EXIT_CONFIG),
    };
    if cli.check_config {
        println!("order-plane: configuration OK");
        return ExitCode::SUCCESS;
    }
    let _log_guard = match common::telemetry::init(&cfg.log.level, &cfg.log.dir, "order-plane") {
        Ok(guard) => guard,
        Err(e) => return fail(e, common::EXIT_CONFIG),
    };
    order_plane::run::main(cfg).map_or_else(
        |e| {
            tracing::error!(error = %e, "Order Plane stopped.");
            fail(&e, e.exit_code())
        },
        |()| ExitCode::SUCCESS,
    )
}
