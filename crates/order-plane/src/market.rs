//! What the Order Plane knows of each symbol's market: the latest quote, a volatility estimate and
//! recent traded volume (the inputs of the square-root impact term).

use std::collections::VecDeque;

use common::events::{Quote, Trade};
use common::types::{Symbol, SymbolMap, UnixNanos};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Weight of the latest one-second return in the volatility estimate.
const VOL_ALPHA: f64 = 0.05;
const SECOND: u64 = 1_000_000_000;

/// One symbol's market.
#[derive(Debug, Clone, Default)]
pub struct SymbolMarket {
    /// Latest quote and its event time.
    pub quote: Option<(Quote, UnixNanos)>,
    second: Option<(u64, f64)>,
    variance: f64,
    returns: u32,
    trades: VecDeque<(UnixNanos, Decimal)>,
    volume: Decimal,
}

impl SymbolMarket {
    /// Half the spread in basis points of the mid.
    pub fn half_spread_bps(&self) -> Option<f64> {
        let (q, _) = self.quote.as_ref()?;
        let mid = q.mid().to_f64()?;
        let spread = (q.ask_px.get() - q.bid_px.get()).to_f64()?;
        Some(spread / 2.0 / mid * 1e4)
    }

    /// Standard deviation of one-second mid returns, basis points (0 until two seconds passed).
    pub fn sigma_bps(&self) -> f64 {
        if self.returns == 0 { 0.0 } else { self.variance.sqrt() * 1e4 }
    }

    /// Traded volume over the volume window.
    pub fn volume(&self) -> Decimal {
        self.volume
    }
}

/// Every symbol's market.
#[derive(Debug)]
pub struct MarketState {
    window_ns: u64,
    symbols: SymbolMap<SymbolMarket>,
}

impl MarketState {
    /// Volume is summed over `volume_window_s` seconds of event time.
    pub fn new(volume_window_s: u64) -> Self {
        Self { window_ns: volume_window_s.saturating_mul(SECOND), symbols: SymbolMap::default() }
    }

    /// How many symbols it keeps a market for.
    pub fn symbols(&self) -> usize {
        self.symbols.len()
    }

    /// The market of `symbol`.
    pub fn get(&self, symbol: &Symbol) -> Option<&SymbolMarket> {
        self.symbols.get(symbol)
    }

    /// A new quote.
    pub fn on_quote(&mut self, ts: UnixNanos, q: &Quote) {
        let m = self.symbols.entry(q.symbol.clone()).or_default();
        // The mid is needed once a second, at the first quote of each.
        let mid = || q.mid().to_f64().unwrap_or(f64::NAN);
        let sec = ts.0 / SECOND;
        match m.second {
            Some((s, last_mid)) if sec > s => {
                let mid = mid();
                let r = (mid / last_mid).ln();
                if r.is_finite() {
                    m.variance = (1.0 - VOL_ALPHA) * m.variance + VOL_ALPHA * r * r;
                    m.returns += 1;
                }
                m.second = Some((sec, mid));
            }
            None => m.second = Some((sec, mid())),
            _ => {}
        }
        m.quote = Some((q.clone(), ts));
    }

    /// A new trade.
    pub fn on_trade(&mut self, ts: UnixNanos, t: &Trade) {
        let window = self.window_ns;
        let m = self.symbols.entry(t.symbol.clone()).or_default();
        m.trades.push_back((ts, t.size.get()));
        m.volume += t.size.get();
        while m.trades.front().is_some_and(|(at, _)| ts.saturating_sub(*at) > window) {
            if let Some((_, size)) = m.trades.pop_front() {
                m.volume -= size;
            }
        }
    }
}

/// The square-root impact feature `σ_bps · sqrt(qty / volume)`, or 0 without volume.
pub fn impact_feature(market: &SymbolMarket, qty: Decimal) -> f64 {
    let volume = market.volume().to_f64().unwrap_or(0.0);
    let qty = qty.to_f64().unwrap_or(0.0);
    if volume <= 0.0 { 0.0 } else { market.sigma_bps() * (qty / volume).sqrt() }
}
