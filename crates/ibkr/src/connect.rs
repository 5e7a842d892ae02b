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
    /// The login trades a live account while live trading is off.
    #[error(
        "IBKR account {account} is not a paper account (IB paper accounts start with D): orders go to it only with the \
         full live opt-in (APP_ENV=production, ENABLE_LIVE_TRADING=true, ENABLE_PAPER_TRADING=false)"
    )]
    LiveAccount {
        /// The account, masked.
        account: String,
    },
    /// `IBKR_ACCOUNT` names no account of the login.
    #[error("IBKR_ACCOUNT {account} is not an account of this login (it manages {managed})")]
    UnknownAccount {
        /// The configured account, masked.
        account: String,
        /// How many accounts the login manages.
        managed: usize,
    },
}

/// An account number as logs may show it: its first two characters (`DU`, `U1`: paper or live).
fn masked(account: &str) -> String {
    format!("{}…", account.chars().take(2).collect::<String>())
}

/// Refuses, unless live trading is fully opted into, a login whose orders would go to a live
/// account: `IBKR_ACCOUNT` when set (it must then be one of the login's), otherwise every account
/// the login manages (from the handshake). Ports say which session was *meant*; the account
/// says which one it *is* (a live gateway behind a tunnel on a paper port, say).
pub fn check_account(cfg: &AppConfig, managed: &[String]) -> Result<(), IbkrError> {
    if is_live(cfg) {
        return Ok(());
    }
    let configured = cfg.ibkr.account.expose().trim();
    let trading: Vec<&str> = if configured.is_empty() {
        managed.iter().map(String::as_str).collect()
    } else if managed.is_empty() || managed.iter().any(|a| a == configured) {
        vec![configured]
    } else {
        return Err(IbkrError::UnknownAccount { account: masked(configured), managed: managed.len() });
    };
    match trading.into_iter().find(|a| !a.starts_with('D')) {
        Some(live) => Err(IbkrError::LiveAccount { account: masked(live) }),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn only_paper_accounts_trade_without_the_live_opt_in() {
        let mut cfg = AppConfig::default();
        assert!(check_account(&cfg, &accounts(&["DU1234567", "DF7654321"])).is_ok());
        let err = check_account(&cfg, &accounts(&["DU1234567", "U7654321"])).unwrap_err();
        assert!(matches!(&err, IbkrError::LiveAccount { account } if account == "U7…"), "{err}");
        assert!(err.to_string().contains("ENABLE_LIVE_TRADING=true") && !err.to_string().contains("7654321"), "{err}");
        // The configured account is the one that trades: a paper one of a mixed login passes.
        cfg.ibkr.account = "DU1234567".into();
        assert!(check_account(&cfg, &accounts(&["DU1234567", "U7654321"])).is_ok());
        cfg.ibkr.account = "U7654321".into();
        assert!(matches!(
            check_account(&cfg, &accounts(&["DU1234567", "U7654321"])),
            Err(IbkrError::LiveAccount { .. })
        ));
        cfg.ibkr.account = "DU9".into();
        let err = check_account(&cfg, &accounts(&["DU1234567"])).unwrap_err();
        assert!(matches!(err, IbkrError::UnknownAccount { managed: 1, .. }), "{err}");
        // With the full opt-in, a live account is what was asked for.
        cfg.trading.enable_live_trading = true;
        assert!(check_account(&cfg, &accounts(&["U7654321"])).is_ok());
    }
}
