//! `data-plane`: replays market data, checks it, computes Order Flow Imbalance and publishes it
//! to Kafka. `data-plane convert IN OUT` turns replay CSV into Parquet.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a replay file or folder (CSV or Parquet) into one Parquet file.
    Convert { input: PathBuf, output: PathBuf },
}

/// Returns memory freed after a burst to the system, which glibc's malloc did not; replaces
/// `malloc` for librdkafka too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Convert { input, output }) = cli.command {
        return match data_plane::source::convert_to_parquet(&input, &output) {
            Ok((rows, skipped)) => {
                println!("data-plane: wrote {rows} rows to {} ({skipped} bad rows skipped)", output.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("data-plane: {e}");
                ExitCode::from(66)
            }
        };
    }
    common::service::main("data-plane", &cli.config_dir, cli.check_config, data_plane::run::main)
}
