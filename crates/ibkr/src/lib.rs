//! Interactive Brokers (TWS / IB Gateway) adapter shared by the Data and Order Planes, built on
//! the `ibapi` client (pinned). Plane-neutral: it produces [`market::FeedEvent`]s and
//! [`orders::OrderEvent`]s; each plane turns them into its own inputs.
//!
//! # Layout
//! - [`connect`]: the connection (client id, 50 msg/s limiter, endless reconnects) and the
//!   paper/live log line.
//! - [`codes`]: what IB's error codes mean and what to do about each.
//! - [`limits`]: market-data line budget and back-off.
//! - [`convert`]: exact decimals, event time, trade aggressor, the depth book.
//! - [`market`]: the supervised market-data feed.
//! - [`orders`]: the order session: placement, cancels, fills joined with commissions,
//!   reconciliation after every (re)connect.

pub mod codes;
pub mod connect;
pub mod convert;
pub mod limits;
pub mod market;
pub mod orders;

pub use connect::{IbkrError, connect};
