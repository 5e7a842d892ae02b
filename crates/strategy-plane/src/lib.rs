//! The Strategy Plane (in progress): signals from `ofi_events` and `market_events`, cost-aware
//! portfolio optimization, and order intents.
//!
//! # Layout
//! - [`signals`]: contemporaneous and predictive OFI fits, the combined RLS forecast.
//! - [`positions`]: positions and PnL from fills, exact decimals.
//! - [`optimizer`]: the constrained mean-variance problem with trading costs, solved by Clarabel.
//! - [`covariance`]: EWMA covariance of window returns.
//! - [`engine`]: the synchronous core: decisions and order intents.

pub mod covariance;
pub mod engine;
pub mod optimizer;
pub mod positions;
pub mod signals;
