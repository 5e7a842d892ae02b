//! AlgoTrader's whole-pipeline benchmark: the broker and the three planes measured side by side
//! with the same broker moving the same records for a bare client, plus latency from the
//! envelopes' timestamps and each plane's memory and CPU. `./docker/docker-helper.sh bench` runs
//! it; BENCHMARKS.md explains the figures.
//!
//! # Layout
//! - [`stack`]: the broker and plane processes, their metrics and `/proc` figures.
//! - [`raw`]: the bare-client rate of the broker.
//! - [`latency`]: tick-to-intent and intent-to-exec-report from `ts_init` and `causation_id`.
//! - [`run`]: the phases, in order, and the JSON summary.
//! - [`report`]: the machine description and the files written.

pub mod latency;
pub mod raw;
pub mod report;
pub mod run;
pub mod stack;
