//! The economics of a run: positions, PnL, fees, turnover, drawdown and the interval PnL that
//! the Sharpe ratio is taken over, from fills and mid marks in event time. Exact decimals for
//! money; floats only for the Sharpe ratio.
//!
//! Accounting is the Strategy Plane's own (`strategy_plane::positions::Position`: average cost,
//! realized on reduction), so the report and the plane agree on every position. Net equity is
//! realized + unrealized at the latest mid − fees, summed over the symbols; it is re-valued after
//! every fill and every mark of a symbol with a position, which is what the drawdown is taken on.

use std::collections::BTreeMap;

use common::types::{Side, Symbol, UnixNanos};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use strategy_plane::positions::Position;

/// Seconds in the year the Sharpe ratio is annualised over: crypto venues trade 24 h a day,
/// 365 days a year.
pub const YEAR_SECONDS: u64 = 365 * 24 * 3600;

/// One symbol's book.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolBook {
    /// Position, average price, realized PnL and fees.
    pub position: Position,
    /// Latest mid, if any quote was seen.
    pub mark: Option<Decimal>,
    /// Σ |quantity × price| of the fills.
    pub turnover: Decimal,
    /// Fills booked.
    pub fills: u64,
}

impl SymbolBook {
    /// Unrealized PnL at the latest mid (at the average price, so 0, before any quote).
    pub fn unrealized(&self) -> Decimal {
        self.position.unrealized(self.mark.unwrap_or(self.position.avg_px))
    }

    /// Realized + unrealized, before fees.
    pub fn gross(&self) -> Decimal {
        self.position.realized.saturating_add(self.unrealized())
    }

    /// Gross PnL − fees.
    pub fn net(&self) -> Decimal {
        self.gross().saturating_sub(self.position.fees)
    }
}

/// Count, mean and sum of squared deviations of the interval PnL (Welford), so that a long
/// quiet stretch adds its many zero intervals at once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// Adds `k` intervals whose PnL was `x` each.
    fn add(&mut self, x: f64, k: u64) {
        if k == 0 {
            return;
        }
        let (n, k) = (self.n as f64, k as f64);
        let total = n + k;
        let delta = x - self.mean;
        self.mean += delta * k / total;
        self.m2 += delta * delta * n * k / total;
        self.n += k as u64;
    }
}

/// Positions, PnL and the equity curve's statistics.
#[derive(Debug, Clone)]
pub struct Ledger {
    interval_ns: u64,
    symbols: BTreeMap<Symbol, SymbolBook>,
    equity: Decimal,
    peak: Decimal,
    max_drawdown: Decimal,
    /// Net equity at the end of the last closed interval.
    sampled: Decimal,
    next_boundary: Option<u64>,
    first: Option<UnixNanos>,
    now: UnixNanos,
    moments: Moments,
    /// Fills that would have overflowed an exact decimal, left out.
    unbooked: u64,
}

impl Ledger {
    /// A flat ledger whose Sharpe intervals are `interval_ms` of event time, aligned to the Unix
    /// epoch (0 is taken as 1).
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ns: interval_ms.max(1).saturating_mul(1_000_000),
            symbols: BTreeMap::new(),
            equity: Decimal::ZERO,
            peak: Decimal::ZERO,
            max_drawdown: Decimal::ZERO,
            sampled: Decimal::ZERO,
            next_boundary: None,
            first: None,
            now: UnixNanos(0),
            moments: Moments::default(),
            unbooked: 0,
        }
    }

    /// Event time moves to `ts` (never back): the intervals that ended before it close at the
    /// equity as it stood. Call before applying what happened at `ts`.
    pub fn at(&mut self, ts: UnixNanos) {
        if self.first.is_none() {
            self.first = Some(ts);
            self.now = ts;
            self.next_boundary = Some((ts.0 / self.interval_ns).saturating_add(1).saturating_mul(self.interval_ns));
        }
        if ts <= self.now {
            return;
        }
        self.now = ts;
        let Some(boundary) = self.next_boundary else { return };
        if ts.0 < boundary {
            return;
        }
        let crossed = (ts.0 - boundary) / self.interval_ns + 1;
        self.close_interval();
        // The equity did not move in the intervals after the first that ended before `ts`.
        self.moments.add(0.0, crossed - 1);
        self.next_boundary = Some(boundary.saturating_add(crossed.saturating_mul(self.interval_ns)));
    }

    fn close_interval(&mut self) {
        let change = self.equity.saturating_sub(self.sampled);
        self.moments.add(change.to_f64().unwrap_or(0.0), 1);
        self.sampled = self.equity;
    }

    /// The mid of `symbol` is now `mid`.
    pub fn mark(&mut self, symbol: &Symbol, mid: Decimal) {
        let book = self.symbols.entry(symbol.clone()).or_default();
        book.mark = Some(mid);
        if !book.position.qty.is_zero() {
            self.revalue();
        }
    }

    /// A fill; `false` (and nothing booked) when it would overflow an exact decimal.
    pub fn fill(&mut self, symbol: &Symbol, side: Side, qty: Decimal, px: Decimal, fee: Decimal) -> bool {
        let book = self.symbols.entry(symbol.clone()).or_default();
        if !book.position.fill(side, qty, px, fee) {
            self.unbooked += 1;
            return false;
        }
        book.turnover = book.turnover.saturating_add(qty.saturating_mul(px).abs());
        book.fills += 1;
        self.revalue();
        true
    }

    fn revalue(&mut self) {
        self.equity = self.symbols.values().map(SymbolBook::net).fold(Decimal::ZERO, Decimal::saturating_add);
        self.peak = self.peak.max(self.equity);
        self.max_drawdown = self.max_drawdown.max(self.peak.saturating_sub(self.equity));
    }

    /// The input has ended: closes the last interval, however short, so that the intervals'
    /// PnL adds up to the net PnL.
    pub fn finish(&mut self) {
        if self.first.is_some() {
            self.close_interval();
            self.next_boundary = None;
        }
    }

    /// Each symbol's book.
    pub fn symbols(&self) -> &BTreeMap<Symbol, SymbolBook> {
        &self.symbols
    }

    /// Net equity now: the net PnL.
    pub fn net(&self) -> Decimal {
        self.equity
    }

    /// Largest fall of net equity from its running peak (the peak starts at 0), ≥ 0.
    pub fn max_drawdown(&self) -> Decimal {
        self.max_drawdown
    }

    /// Intervals closed so far.
    pub fn intervals(&self) -> u64 {
        self.moments.n
    }

    /// Mean over standard deviation (n − 1) of the interval net PnL changes, × √(intervals per
    /// year). `None` with fewer than two intervals or no variation: there is no ratio then.
    pub fn sharpe(&self) -> Option<f64> {
        let Moments { n, mean, m2 } = self.moments;
        if n < 2 {
            return None;
        }
        let std = (m2 / (n - 1) as f64).sqrt();
        let ratio = mean / std * self.periods_per_year().sqrt();
        (std > 0.0 && ratio.is_finite()).then_some(ratio)
    }

    /// Intervals in a year of [`YEAR_SECONDS`].
    pub fn periods_per_year(&self) -> f64 {
        YEAR_SECONDS as f64 * 1e9 / self.interval_ns as f64
    }

    /// Fills left out because they would overflow an exact decimal.
    pub fn unbooked(&self) -> u64 {
        self.unbooked
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rust_decimal::dec;

    fn s(secs: f64) -> UnixNanos {
        UnixNanos((secs * 1e9) as u64)
    }

    /// A round trip through zero, worked out by hand with 1-second intervals:
    ///
    /// | t (s) | event              | position   | realized | unrealized | fees  | net equity |
    /// |-------|--------------------|------------|----------|------------|-------|------------|
    /// | 0.5   | mid 100            | 0          | 0        | 0          | 0     | 0          |
    /// | 0.6   | buy 2 @ 100, fee .2| +2 @ 100   | 0        | 0          | 0.2   | −0.2       |
    /// | 1.2   | mid 101            | +2 @ 100   | 0        | +2         | 0.2   | 1.8 (peak) |
    /// | 2.5   | mid 99             | +2 @ 100   | 0        | −2         | 0.2   | −2.2       |
    /// | 2.7   | sell 3 @ 99, .297  | −1 @ 99    | −2       | 0          | 0.497 | −2.497     |
    /// | 3.1   | mid 98             | −1 @ 99    | −2       | +1         | 0.497 | −1.497     |
    ///
    /// Gross −1, fees 0.497, net −1.497. Turnover 2 × 100 + 3 × 99 = 497. Max drawdown from the
    /// 1.8 peak to the −2.497 trough: 4.297. Intervals [0.5, 1), [1, 2), [2, 3), [3, 3.1] close
    /// at −0.2, 1.8, −2.497, −1.497: changes −0.2, 2.0, −4.297, 1.0, which add up to the net PnL.
    /// Their mean is −0.37425, their sample standard deviation √(22.9439... / 3) = 2.765496...,
    /// so the Sharpe ratio is −0.37425 / 2.765496 × √31,536,000 = −759.96...
    #[test]
    fn a_round_trip_through_zero_adds_up_as_worked_out_by_hand() {
        let x = Symbol::new("X").unwrap();
        let mut ledger = Ledger::new(1000);
        ledger.at(s(0.5));
        ledger.mark(&x, dec!(100));
        ledger.at(s(0.6));
        assert!(ledger.fill(&x, Side::Buy, dec!(2), dec!(100), dec!(0.2)));
        ledger.at(s(1.2));
        ledger.mark(&x, dec!(101));
        ledger.at(s(2.5));
        ledger.mark(&x, dec!(99));
        ledger.at(s(2.7));
        assert!(ledger.fill(&x, Side::Sell, dec!(3), dec!(99), dec!(0.297)));
        ledger.at(s(3.1));
        ledger.mark(&x, dec!(98));
        ledger.finish();

        let book = &ledger.symbols()[&x];
        assert_eq!((book.position.qty, book.position.avg_px), (dec!(-1), dec!(99)));
        assert_eq!(book.position.realized, dec!(-2));
        assert_eq!(book.unrealized(), dec!(1));
        assert_eq!(book.gross(), dec!(-1));
        assert_eq!(book.position.fees, dec!(0.497));
        assert_eq!(ledger.net(), dec!(-1.497));
        assert_eq!(book.turnover, dec!(497));
        assert_eq!(book.fills, 2);
        assert_eq!(ledger.max_drawdown(), dec!(4.297));
        assert_eq!(ledger.intervals(), 4);
        let sharpe = ledger.sharpe().unwrap();
        assert!((sharpe - -759.96).abs() < 0.01, "{sharpe}");
    }

    /// A gap of several intervals with no event is as many flat intervals: they lower the
    /// volatility the Sharpe ratio divides by, and must count.
    #[test]
    fn quiet_intervals_count_as_flat() {
        let x = Symbol::new("X").unwrap();
        let mut ledger = Ledger::new(1000);
        ledger.at(s(0.0));
        ledger.mark(&x, dec!(10));
        assert!(ledger.fill(&x, Side::Buy, dec!(1), dec!(10), dec!(0)));
        ledger.at(s(1.0));
        ledger.mark(&x, dec!(11));
        // 1 → 2 closes with +1, then [2, 3) … [9, 10) are flat; the last interval [10, 10.5] too.
        ledger.at(s(10.5));
        ledger.finish();
        assert_eq!(ledger.intervals(), 11);
        // Changes: 0, +1, then nine zeros: mean 1/11, std √((1 − 1/11) / 10).
        let (mean, std) = (1.0 / 11.0, ((1.0 - 1.0 / 11.0) / 10.0f64).sqrt());
        let want = mean / std * (YEAR_SECONDS as f64).sqrt();
        assert!((ledger.sharpe().unwrap() - want).abs() < 1e-6);
        assert_eq!(ledger.max_drawdown(), dec!(0));
    }

    #[test]
    fn no_fill_no_ratio_and_no_drawdown() {
        let x = Symbol::new("X").unwrap();
        let mut ledger = Ledger::new(1000);
        for t in 0..5 {
            ledger.at(s(f64::from(t)));
            ledger.mark(&x, Decimal::from(100 + t));
        }
        ledger.finish();
        assert_eq!((ledger.net(), ledger.max_drawdown(), ledger.sharpe()), (dec!(0), dec!(0), None));
    }
}
