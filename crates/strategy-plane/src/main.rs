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

/// Returns memory freed after a burst to the system, which glibc's malloc did not; replaces
/// `malloc` for librdkafka too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::service::main("strategy-plane", &cli.config_dir, cli.check_config, strategy_plane::run::main)
}
