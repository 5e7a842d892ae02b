//! The Data Plane: market data in, checked, turned into Order Flow Imbalance, and published to
//! `market_events` and `ofi_events`.
//!
//! # Layout
//! - [`source`]: the replay source (CSV and Parquet files, folders, looping).
//! - [`ibkr`]: the live source: the IBKR feed through the same core, with gaps marked.
//! - [`quality`]: quality checks with a named reason per rejection.
//! - [`ofi`]: Order Flow Imbalance per symbol and window (CKS 2014, multi-level XGH 2019).
//! - [`core`]: the synchronous core: rows in, envelopes out.
//! - [`metrics`]: Prometheus metrics.
//! - [`checkpoint`]: replay progress in Kafka, so a restart resumes instead of starting over.
//! - [`run`]: the async shell: pacing, Kafka, delivery tracking, health, shutdown.

pub mod checkpoint;
pub mod core;
pub mod ibkr;
pub mod metrics;
pub mod ofi;
pub mod quality;
pub mod run;
pub mod source;

pub use run::{RunError, run};
