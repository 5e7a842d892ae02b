//! The fault-injection suite's Kafka client: it writes poison records to every topic and, at the
//! end of a run, reads every topic back with its own consumer and checks the invariants a trading
//! system must keep through crashes, broker restarts and bad input.
//!
//! - [`poison`]: malformed and hostile records, built from real ones.
//! - [`check`]: the invariants, against a clean in-process run of the Data Plane's core.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check;
pub mod poison;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "chaos", about = "Poison records and invariant checks for the fault-injection suite")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes poison records to every topic; prints how many went to each.
    Poison {
        /// Records per topic.
        #[arg(long, default_value_t = 1000)]
        per_topic: usize,
    },
    /// Prints the records of one topic (base name), from its beginning: partition, offset, size,
    /// and the start of the value. For looking into a violation.
    Dump {
        /// Topic, without the prefix.
        topic: String,
        /// Only this partition.
        #[arg(long)]
        partition: Option<i32>,
        /// Only offsets from here.
        #[arg(long, default_value_t = 0)]
        from: i64,
    },
    /// Prints each partition of each topic (base names) as `topic partition leader in-sync
    /// replicas`, one a line: the cluster run kills the node that leads, once all are in sync.
    Leaders {
        /// Topics, without the prefix.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Reads every topic and checks the invariants; prints one row each, then `violations <n>`,
    /// and exits 1 on any violation.
    Check {
        /// The Strategy Plane's HTTP address: its positions must equal the sum of the fills.
        #[arg(long)]
        strategy: Option<std::net::SocketAddr>,
        /// Strings that must appear in no record (comma separated).
        #[arg(long, value_delimiter = ',')]
        secret: Vec<String>,
        /// Only check that every consumer group has committed everything (caught up).
        #[arg(long)]
        committed_only: bool,
    },
}

/// Runs a command with the configuration the planes use (config files, .env, environment).
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    let cfg = common::config::load(std::path::Path::new("config")).map_err(|e| anyhow::anyhow!("{e}"))?;
    match cli.command {
        Command::Poison { per_topic } => {
            // poison <topic> <written> <undecodable of those> <refused by the broker>
            for (topic, o) in poison::inject(&cfg, per_topic)? {
                println!("poison {topic} {} {} {}", o.written, o.undecodable, o.refused);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dump { topic, partition, from } => {
            let topic = cfg.kafka.topic(&topic);
            for r in common::kafka::read_to_end(&cfg.kafka, &topic, std::time::Duration::from_secs(60))? {
                if partition.is_none_or(|p| p == r.partition) && r.offset >= from {
                    let text = String::from_utf8_lossy(&r.payload);
                    println!(
                        "{}@{} {}B {}",
                        r.partition,
                        r.offset,
                        r.payload.len(),
                        text.chars().take(160).collect::<String>()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Leaders { topics } => {
            let consumer: rdkafka::consumer::BaseConsumer =
                rdkafka::ClientConfig::new().set("bootstrap.servers", &cfg.kafka.bootstrap_servers).create()?;
            for topic in topics {
                let name = cfg.kafka.topic(&topic);
                let md = rdkafka::consumer::Consumer::fetch_metadata(
                    &consumer,
                    Some(&name),
                    std::time::Duration::from_secs(10),
                )?;
                for t in md.topics() {
                    for p in t.partitions() {
                        println!("{topic} {} {} {} {}", p.id(), p.leader(), p.isr().len(), p.replicas().len());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { strategy, secret, committed_only } => {
            let report = check::run(&cfg, strategy, &secret, committed_only)?;
            print!("{report}");
            println!("violations {}", report.violations());
            Ok(if report.violations() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
