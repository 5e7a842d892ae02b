//! Opening the gateway connection: client id, message-rate limiter, request timeout, endless
//! automatic reconnects, and the notice stream that carries 1100/1101/1102.

use std::time::Duration;

use common::config::{AppConfig, IBKR_LIVE_PORTS, IbkrConfig};
use ibapi::subscriptions::NoticeStream;
use ibapi::{Client, RateLimiter};

use crate::codes;

/// The gateway could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IbkrError {
    /// Another connection holds the client id (IB error 326).
    #[error("IBKR client id {client_id} is already in use: {remedy}")]
    ClientIdInUse {
        /// The refused id.
        client_id: i32,
        /// What to do.
        remedy: &'static str,
    },
    /// No connection could be made (gateway down, wrong host or port, API disabled).
    #[error("cannot connect to TWS / IB Gateway at {address}: {source}")]
    Connect {
        /// `host:port`.
        address: String,
        /// Why.
        #[source]
        source: ibapi::Error,
    },
    /// A request failed for good.
    #[error("IBKR request failed: {0}")]
    Request(#[source] ibapi::Error),
}

/// `host:port` of the gateway.
pub fn address(cfg: &IbkrConfig) -> String {
    format!("{}:{}", cfg.host, cfg.port)
}

/// Connects with the configured client id, at most `messages_per_second` messages per second,
/// one-shot requests bounded by `request_timeout_ms`, and reconnects without limit (nightly
/// gateway restarts are normal; the planes report staleness meanwhile).
pub async fn connect(cfg: &IbkrConfig) -> Result<(Client, NoticeStream), IbkrError> {
    let address = address(cfg);
    let result = Client::builder()
        .address(address.as_str())
        .client_id(cfg.client_id)
        .rate_limiter(RateLimiter::per_second(cfg.messages_per_second.max(1)))
        .one_shot_timeout(Duration::from_millis(cfg.request_timeout_ms.max(1)))
        .reconnect_forever()
        .connect_with_notice_stream()
        .await;
    match result {
        Ok(pair) => Ok(pair),
        Err(ibapi::Error::ClientIdInUse { client_id }) => {
            let remedy = codes::remedy(326).unwrap_or("use another IBKR_CLIENT_ID");
            tracing::error!(client_id, remedy, "IBKR client id in use (error 326).");
            Err(IbkrError::ClientIdInUse { client_id, remedy })
        }
        Err(source) => Err(IbkrError::Connect { address, source }),
    }
}

/// Whether this configuration trades real money (validation already refused anything less than
/// the full opt-in).
pub fn is_live(cfg: &AppConfig) -> bool {
    cfg.trading.enable_live_trading || IBKR_LIVE_PORTS.contains(&cfg.ibkr.port)
}

/// The loud line every IBKR shell logs before connecting: paper or live.
pub fn log_trading_mode(cfg: &AppConfig, plane: &str) {
    let (host, port) = (cfg.ibkr.host.as_str(), cfg.ibkr.port);
    if is_live(cfg) {
        tracing::warn!(plane, host, port, "LIVE TRADING: connecting to a live IBKR session; orders use real money.");
    } else {
        tracing::warn!(plane, host, port, "PAPER TRADING: connecting to an IBKR paper session; live trading is off.");
    }
}
