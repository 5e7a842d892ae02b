//! `data-plane`: replays market data (or, later, reads IBKR), checks it, computes Order Flow
//! Imbalance and publishes to Kafka.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(version, about = "AlgoTrader Data Plane: market data → quality checks → OFI → Kafka")]
struct Cli {
    /// Folder holding default.toml and <APP_ENV>.toml.
    #[arg(long, env = "CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    /// Load and validate the configuration, then exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match common::config::load(&cli.config_dir) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("data-plane: {e}");
            return ExitCode::from(common::EXIT_CONFIG as u8);
        }
    };
    if cli.check_config {
        println!("data-plane: configuration OK");
        return ExitCode::SUCCESS;
    }
    let _log_guard = common::telemetry::init(&cfg.log.level, &cfg.log.dir, "data-plane");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("data-plane: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = common::shutdown::on_signal().map_err(data_plane::RunError::Signals)?;
        let listener = data_plane::bind(cfg.data_plane.http_port).await?;
        data_plane::run(cfg, listener, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Data Plane stopped.");
            eprintln!("data-plane: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
