//! `chaos`: the fault-injection suite's own Kafka client (see `docker/chaos.sh`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = chaos::Cli::parse();
    match chaos::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
