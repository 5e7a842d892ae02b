//! Manual check against a real IBKR **paper** session; never run in CI (it needs a logged-in TWS
//! or IB Gateway). Reads the usual configuration (`config/`, `.env`: `IBKR_HOST`, `IBKR_PORT`,
//! `IBKR_CLIENT_ID`, `IBKR_ACCOUNT`) and refuses live sessions.
//!
//! ```sh
//! cargo run -p ibkr --example paper_check -- --paper            # connect, quotes, reconcile
//! cargo run -p ibkr --example paper_check -- --paper --order    # also a 1-share limit order far
//!                                                               # from the market, then its cancel
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::config::IbkrContractConfig;
use ibapi::orders::TimeInForce;
use ibkr::market::{self, FeedEvent, RetryPolicy};
use ibkr::orders::{self, OrderCommand, OrderEvent};
use rust_decimal::Decimal;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.iter().any(|a| a == "--paper"), "pass --paper to confirm this talks to a paper session");
    let place = args.iter().any(|a| a == "--order");
    let cfg = common::config::load(Path::new("config"))?;
    anyhow::ensure!(!ibkr::connect::is_live(&cfg), "refusing: the configuration is a live session");
    ibkr::connect::log_trading_mode(&cfg, "paper-check");

    let (client, notices) = ibkr::connect(&cfg.ibkr).await?;
    let client = Arc::new(client);
    println!(
        "connected: server version {}, accounts {:?}, next order id {}",
        client.server_version(),
        client.handshake_managed_accounts(),
        client.next_order_id()
    );

    let contract = cfg
        .ibkr
        .contracts
        .first()
        .cloned()
        .unwrap_or(IbkrContractConfig { primary_exchange: "NASDAQ".into(), ..IbkrContractConfig::stock("AAPL") });
    let stop = CancellationToken::new();
    let (feed_tx, mut feed_rx) = mpsc::channel(4096);
    let feed = market::spawn(
        Arc::clone(&client),
        notices,
        std::slice::from_ref(&contract),
        cfg.ibkr.market_data_lines,
        RetryPolicy::default(),
        feed_tx,
        stop.clone(),
    );
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    // Unique per run: the session never sends a reference IB already holds.
    let order_ref = format!("paper-check-{}", ibkr::market::now().0);
    let (order_tx, mut order_rx) = mpsc::channel(1024);
    let session = tokio::spawn(orders::run(
        Arc::clone(&client),
        cmd_rx,
        order_tx,
        Duration::from_millis(cfg.ibkr.request_timeout_ms),
        stop.clone(),
    ));

    let mut last_bid = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut placed = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            Some(ev) = feed_rx.recv() => {
                if let FeedEvent::Quote { bid_px, .. } = &ev {
                    last_bid = ibkr::convert::decimal(*bid_px);
                }
                println!("feed: {ev:?}");
                if place && !placed && let Some(bid) = last_bid {
                    placed = true;
                    // Half the bid: it rests, and is cancelled below.
                    let limit = (bid / Decimal::TWO).round_dp(2);
                    let cmd = OrderCommand::Place { order_ref: order_ref.clone(), contract: Box::new(market::contract(&contract)), buy: true, qty: Decimal::ONE, limit: Some(limit), tif: TimeInForce::Day, account: cfg.ibkr.account.expose().to_owned() };
                    cmd_tx.send(cmd)?;
                }
            }
            Some(ev) = order_rx.recv() => {
                println!("orders: {ev:?}");
                if matches!(ev, OrderEvent::Submitted { .. }) {
                    cmd_tx.send(OrderCommand::Cancel { order_ref: order_ref.clone() })?;
                }
            }
        }
    }
    stop.cancel();
    for t in feed.tasks {
        let _ = t.await;
    }
    let _ = session.await;
    client.disconnect().await;
    Ok(())
}
