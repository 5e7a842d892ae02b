//! The Order Plane: consumes `order_intents`, decides whether each may trade, executes it, and
//! publishes every outcome to `exec_reports`.
//!
//! # Layout
//! - [`risk`]: pre-trade risk; [`risk::RiskApproved`] is the only way to a venue.
//! - [`venue`]: the [`venue::Venue`] trait and the events venues report.
//! - [`simulated`]: the event-time simulated venue (latency, liquidity, queue, collar).
//! - [`ibkr_venue`]: the IBKR venue (TWS / IB Gateway through the `ibkr` crate's order session).
//! - [`cost_model`]: online transaction-cost learning (robust RLS, square-root impact).
//! - [`market`]: latest quote, volatility and volume per symbol.
//! - [`order`]: orders and their state.
//! - [`engine`]: the synchronous core tying them together, with rebuild from `exec_reports`.
//! - [`snapshot`]: one `exec_reports` partition folded into what a rebuild needs of it.
//! - [`metrics`], [`run`], [`admin`]: the async shell, its metrics and the kill-switch endpoint.

pub mod admin;
pub mod cost_model;
pub mod engine;
pub mod ibkr_venue;
pub mod market;
pub mod metrics;
pub mod order;
mod remembered;
pub mod risk;
pub mod run;
pub mod simulated;
pub mod snapshot;
pub mod venue;
