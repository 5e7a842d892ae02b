//! The Strategy Plane: signals from `ofi_events`, cost-aware portfolio optimization, order
//! intents to `order_intents`, and positions and PnL from `exec_reports`.
//!
//! # Layout
//! - [`signals`]: contemporaneous and predictive OFI fits, the combined RLS forecast.
//! - [`positions`]: positions and PnL from fills, exact decimals.
//! - [`snapshot`]: one `exec_reports` partition folded into what a restart needs of it.
//! - [`optimizer`]: the constrained mean-variance problem with trading costs, solved by Clarabel.
//! - [`covariance`]: EWMA covariance of window returns.
//! - [`engine`]: the synchronous core: decisions and order intents.
//! - [`ownership`]: which symbols this instance exports, from its assigned partitions.
//! - [`metrics`], [`run`]: the async shell and its metrics.

pub mod covariance;
pub mod engine;
pub mod metrics;
pub mod optimizer;
pub mod ownership;
pub mod positions;
pub mod run;
pub mod signals;
pub mod snapshot;
