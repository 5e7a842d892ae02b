//! The live-trading gate: a live IBKR port or `ENABLE_LIVE_TRADING=true` is a configuration error
//! naming the field (exit 78), unless `APP_ENV=production`, `ENABLE_LIVE_TRADING=true` and
//! `ENABLE_PAPER_TRADING=false` are all set.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use common::config::{ConfigError, load_from};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn load(vars: &[(&str, &str)]) -> Result<common::config::AppConfig, ConfigError> {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    load_from(&shipped(), &vars)
}

fn fields(r: Result<common::config::AppConfig, ConfigError>) -> Vec<String> {
    r.err().map(|e| e.fields().into_iter().map(str::to_owned).collect()).unwrap_or_default()
}

#[test]
fn paper_ports_are_the_default_and_accepted() {
    assert!(load(&[]).is_ok());
    assert!(load(&[("IBKR_PORT", "4002")]).is_ok());
    assert!(load(&[("ALGOTRADER__ORDER_PLANE__VENUE", "ibkr")]).is_ok());
    assert_eq!(fields(load(&[("ALGOTRADER__ORDER_PLANE__VENUE", "ib")])), ["order_plane.venue"]);
}

#[test]
fn live_ports_are_refused_without_the_full_opt_in() {
    for port in ["7496", "4001"] {
        assert_eq!(fields(load(&[("IBKR_PORT", port)])), ["ibkr.port"], "port {port}");
        // Production alone, or live on with paper still on, is not enough.
        assert_eq!(fields(load(&[("IBKR_PORT", port), ("APP_ENV", "production")])), ["ibkr.port"]);
        let half = load(&[("IBKR_PORT", port), ("APP_ENV", "production"), ("ENABLE_LIVE_TRADING", "true")]);
        assert_eq!(fields(half), ["trading.enable_live_trading", "ibkr.port"]);
    }
}

#[test]
fn live_trading_outside_production_is_refused_even_on_a_paper_port() {
    let r = load(&[("ENABLE_LIVE_TRADING", "true"), ("ENABLE_PAPER_TRADING", "false")]);
    assert_eq!(fields(r), ["trading.enable_live_trading"]);
}

#[test]
fn the_full_opt_in_allows_a_live_port() {
    let cfg = load(&[
        ("IBKR_PORT", "7496"),
        ("APP_ENV", "production"),
        ("ENABLE_LIVE_TRADING", "true"),
        ("ENABLE_PAPER_TRADING", "false"),
    ])
    .unwrap();
    assert_eq!(cfg.ibkr.port, 7496);
}

#[test]
fn the_ibkr_source_needs_contracts() {
    assert_eq!(fields(load(&[("DATA_SOURCE", "ibkr")])), ["ibkr.contracts"]);
}

/// `IBKR_PORT=4003 ORDER_VENUE=ibkr` passed: a gateway on any other port than the four documented
/// ones may be live, so it needs the operator to name it, or the live opt-in.
#[test]
fn an_undocumented_port_needs_to_be_allowed_by_name() {
    let venue = ("ALGOTRADER__ORDER_PLANE__VENUE", "ibkr");
    assert_eq!(fields(load(&[("IBKR_PORT", "4003"), venue])), ["ibkr.port"]);
    assert!(load(&[("IBKR_PORT", "4003"), ("IBKR_ALLOW_PORT", "4003"), venue]).is_ok());
    assert_eq!(fields(load(&[("IBKR_PORT", "4003"), ("IBKR_ALLOW_PORT", "4004")])), ["ibkr.port"]);
    let live = [("APP_ENV", "production"), ("ENABLE_LIVE_TRADING", "true"), ("ENABLE_PAPER_TRADING", "false")];
    assert!(load(&[&[("IBKR_PORT", "4003")][..], &live[..]].concat()).is_ok(), "the live opt-in covers it");
}

/// `ENABLE_PAPER_TRADING=false ENABLE_LIVE_TRADING=false ORDER_VENUE=ibkr` still traded.
#[test]
fn paper_off_with_live_off_is_refused() {
    let r = load(&[("ENABLE_PAPER_TRADING", "false"), ("ALGOTRADER__ORDER_PLANE__VENUE", "ibkr")]);
    assert_eq!(fields(r), ["trading.enable_paper_trading"]);
}

/// An `ADMIN_TOKEN` of 16 spaces passed.
#[test]
fn a_blank_admin_token_is_refused() {
    let r = load(&[("ADMIN_ENABLED", "true"), ("ADMIN_TOKEN", "                ")]);
    assert_eq!(fields(r), ["order_plane.admin_token"]);
    assert!(load(&[("ADMIN_ENABLED", "true"), ("ADMIN_TOKEN", "a-real-token-of-sixteen")]).is_ok());
}
