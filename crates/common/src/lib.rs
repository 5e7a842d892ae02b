//! AlgoTrader's shared vocabulary: everything two planes must agree on, and the plumbing every
//! plane needs in the same way.
//!
//! # Layout
//! - [`topics`]: the Kafka topic names.
//! - [`types`]: checked newtypes (`Symbol`, `Price`, `Quantity`, `UnixNanos`, `EventId`).
//! - [`events`]: the envelope and the four payload families, one per topic.
//! - [`codec`]: strict JSON encoding and decoding of envelopes.
//! - [`num`]: fast, exact paths for the decimal operations every market event goes through.
//! - [`fees`]: each instrument's fee schedule; [`commission`]: IBKR's tiered US-stock schedule.
//! - [`ids`]: deterministic, time-ordered event ids.
//! - [`dedup`]: dropping re-delivered events by event id.
//! - [`snapshot`]: start-up snapshots of the `exec_reports` ledger, one per partition.
//! - [`clock`]: the injected clock.
//! - [`core`]: the one interface of the consuming planes' cores ([`core::Core`]).
//! - [`config`]: layered, strict configuration (`config/*.toml`, `.env`, environment).
//! - [`kafka`]: producer, consumer, topic creation and in-order delivery tracking;
//!   [`kafka::shell`]: the one consumer loop that drives a [`core::Core`].
//! - [`http`]: `/metrics`, `/health/live`, `/health/ready`.
//! - [`telemetry`]: tracing to stdout and to `logs/`.
//! - [`shutdown`]: SIGINT/SIGTERM to a cancellation token.
//! - [`service`]: a plane binary's start-up and exit codes.
//!
//! Pure modules (`types`, `num`, `events`, `codec`, `ids`, `dedup`, `snapshot`, `clock`, `fees`, `core`) use
//! no async runtime, so the planes' synchronous cores can depend on them freely.

pub mod clock;
pub mod codec;
pub mod commission;
pub mod config;
pub mod core;
pub mod dedup;
pub mod events;
pub mod fees;
pub mod http;
pub mod ids;
pub mod kafka;
pub mod num;
pub mod service;
pub mod shutdown;
pub mod snapshot;
pub mod telemetry;
pub mod topics;
pub mod types;

/// Exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;
