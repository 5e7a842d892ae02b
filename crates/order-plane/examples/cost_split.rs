//! What the fills on the broker earned and cost: reads `exec_reports` and the last quote of each
//! symbol from `market_events` (the configuration's broker and topic prefix, as the planes load
//! it) and prints, per symbol and in all, exact decimals:
//!
//! - gross: the PnL had every fill been at its decision's mid (`arrival_mid`), marked to the last
//!   mid;
//! - delay: the mid moving from the decision to the venue's arrival (`venue_mid`);
//! - spread + impact: the fills against the arrival mid;
//! - fees: commissions;
//! - net = gross − delay − spread_impact − fees, the PnL of the fills as they were.
//!
//! `cargo run --release -p order-plane --example cost_split` with the stack's environment.

use std::collections::BTreeMap;
use std::time::Duration;

use common::codec;
use common::events::{ExecEvent, MarketEvent};
use common::topics::{EXEC_REPORTS, MARKET_EVENTS};
use rust_decimal::Decimal;

#[derive(Default)]
struct Split {
    fills: u64,
    position: Decimal,
    cash_at_decision: Decimal,
    delay: Decimal,
    spread_impact: Decimal,
    fees: Decimal,
    last_mid: Decimal,
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::var("CONFIG_DIR").unwrap_or_else(|_| "config".into());
    let cfg = common::config::load(std::path::Path::new(&dir))?;
    let read = |topic: &str| common::kafka::read_to_end(&cfg.kafka, &cfg.kafka.topic(topic), Duration::from_secs(30));
    let mut split: BTreeMap<String, Split> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for record in read(EXEC_REPORTS)? {
        let Ok(env) = codec::decode::<ExecEvent>(&record.payload) else { continue };
        let ExecEvent::Report(r) = env.payload else { continue };
        let (Some(px), Some(exec_id)) = (r.last_px, r.exec_id.clone()) else { continue };
        if !seen.insert(exec_id) {
            continue;
        }
        let s = split.entry(r.symbol.to_string()).or_default();
        let (sign, qty) = (r.side.sign(), r.last_qty);
        s.fills += 1;
        s.position += sign * qty;
        s.cash_at_decision -= sign * qty * r.arrival_mid;
        let venue_mid = r.venue_mid.unwrap_or(r.arrival_mid);
        s.delay += sign * qty * (venue_mid - r.arrival_mid);
        s.spread_impact += sign * qty * (px - venue_mid);
        s.fees += r.commission;
    }
    for record in read(MARKET_EVENTS)? {
        if let Ok(env) = codec::decode::<MarketEvent>(&record.payload)
            && let MarketEvent::Quote(q) = env.payload
            && let Some(s) = split.get_mut(q.symbol.as_str())
        {
            s.last_mid = q.mid();
        }
    }
    println!(
        "{:<10} {:>6} {:>14} {:>12} {:>14} {:>12} {:>14}",
        "symbol", "fills", "gross", "delay", "spread+impact", "fees", "net"
    );
    let mut total = [Decimal::ZERO; 5];
    let mut fills = 0;
    for (symbol, s) in &split {
        let gross = s.cash_at_decision + s.position * s.last_mid;
        let net = gross - s.delay - s.spread_impact - s.fees;
        let row = [gross, s.delay, s.spread_impact, s.fees, net];
        for (t, v) in total.iter_mut().zip(row) {
            *t += v;
        }
        fills += s.fills;
        let [g, d, si, f, n] = row.map(|v| v.round_dp(4));
        println!("{symbol:<10} {:>6} {g:>14} {d:>12} {si:>14} {f:>12} {n:>14}", s.fills);
    }
    let [g, d, si, f, n] = total.map(|v| v.round_dp(4));
    println!("{:<10} {fills:>6} {g:>14} {d:>12} {si:>14} {f:>12} {n:>14}", "all");
    Ok(())
}
