//! `bench`: the whole-pipeline benchmark (`./docker/docker-helper.sh bench`).

use std::path::PathBuf;
use std::process::ExitCode;

use bench::run::{BenchConfig, run};
use bench::stack::repo_root;
use clap::Parser;

/// Broker + three planes versus a bare client on the same broker; latency; memory and CPU.
#[derive(Parser)]
struct Cli {
    /// Market events of the throughput phase, at least (the input is looped).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Paced market events per second of the latency phase.
    #[arg(long, default_value_t = 5_000.0)]
    latency_rate: f64,
    /// Length of the latency phase, seconds (whole passes of the input).
    #[arg(long, default_value_t = 40.0)]
    latency_seconds: f64,
    /// OFI window and decision interval of the latency phase, ms (more decisions, more samples).
    #[arg(long, default_value_t = 100)]
    latency_window_ms: u64,
    /// Passes of the input the backlog phase publishes while the consumer planes are frozen.
    #[arg(long, default_value_t = 3)]
    backlog_passes: u32,
    /// Replay input.
    #[arg(long, default_value = "data/binance-spot-btcusdt-ethusdt-2024-08-09.csv")]
    input: PathBuf,
    /// Folder for logs/ and state/ (a fresh one under target/ by default).
    #[arg(long, env = "RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// Where the JSON summary goes.
    #[arg(long, default_value = "benchmarks/latest.json")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = repo_root();
    let run_dir = cli.run_dir.unwrap_or_else(|| root.join(format!("target/bench-run/{}", std::process::id())));
    let cfg = BenchConfig {
        input: root.join(&cli.input),
        events: cli.events,
        latency_rate: cli.latency_rate,
        latency_seconds: cli.latency_seconds,
        latency_window_ms: cli.latency_window_ms,
        backlog_passes: cli.backlog_passes,
        run_dir,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let environment = bench::report::environment(&command);
    match run(&cfg) {
        Ok(mut summary) => {
            summary["environment"] = environment;
            let out = root.join(&cli.out);
            if let Err(e) = bench::report::write_json(&out, &summary) {
                eprintln!("error: cannot write {}: {e:#}", out.display());
                return ExitCode::FAILURE;
            }
            println!("{}", serde_json::to_string_pretty(&summary).unwrap_or_default());
            println!("==> summary written to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#} (logs in {})", cfg.run_dir.display());
            ExitCode::FAILURE
        }
    }
}
