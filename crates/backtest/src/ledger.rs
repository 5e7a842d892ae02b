//! The economics of a run: positions, PnL, fees, turnover, the cost decomposition, round trips,
//! drawdown and the interval PnL that the Sharpe and Sortino ratios are taken over, from fills
//! and mid marks in event time. Exact decimals for money; floats only for the ratios and times.
//!
//! Accounting is the Strategy Plane's own (`strategy_plane::positions::Position`: average cost,
//! realized on reduction), so the report and the plane agree on every position. Net equity is
//! realized + unrealized at the latest mid − fees, summed over the symbols; it is re-valued after
//! every fill and every mark of a symbol with a position, which is what the drawdown is taken on.
//! Each symbol keeps the same statistics of its own net equity.
//!
//! The cost decomposition splits what each fill cost against its decision mid, signed so that a
//! positive cost lowers PnL: `delay` (the mid moved from the decision to the order's arrival at
//! the venue), `spread_impact` (the fill price against the mid at arrival: the half-spread, the
//! depth walked and the square-root impact beyond it) and `fees`. They add up:
//! `net = at_decision_mid − delay − spread_impact − fees`, where `at_decision_mid` is the gross
//! PnL the same fills would have made at their decision mids, booked independently (cash
//! accounting) of the average-cost books above.

use std::collections::BTreeMap;

use common::types::{Side, Symbol, UnixNanos};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use strategy_plane::positions::Position;

use crate::series::{Merge, Series};

/// Seconds in the year the ratios are annualised over: crypto venues trade 24 h a day, 365 days
/// a year.
pub const YEAR_SECONDS: u64 = 365 * 24 * 3600;

/// One fill, as the ledger books it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Buy or sell.
    pub side: Side,
    /// Filled quantity (> 0).
    pub qty: Decimal,
    /// Fill price.
    pub px: Decimal,
    /// Commission.
    pub fee: Decimal,
    /// Mid at decision time (the intent's `arrival_mid`); 0 when unknown.
    pub decision_mid: Decimal,
    /// Mid of the book in effect when the order reached the venue, when the venue says.
    pub venue_mid: Option<Decimal>,
}

/// What a symbol's fills cost against their decision mids; positive = paid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Costs {
    /// Σ side × qty × (venue mid − decision mid).
    pub delay: Decimal,
    /// Σ side × qty × (fill price − venue mid).
    pub spread_impact: Decimal,
    /// Σ −side × qty × decision mid: the cash the fills would have moved at their decision mids.
    pub decision_cash: Decimal,
}

/// Round trips of one symbol: a position opened from flat and taken back to flat (a fill through
/// zero closes one and opens the next; its fee is split between them by quantity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTrips {
    /// Round trips closed.
    pub closed: u64,
    /// Of those, the ones whose realized PnL net of their fees was > 0.
    pub winning: u64,
    /// Σ event time from opening to flat, ns.
    pub held_ns: u128,
    /// The open trip: when it opened, and its realized PnL net of fees so far.
    open: Option<(UnixNanos, Decimal)>,
}

impl RoundTrips {
    fn close(&mut self, now: UnixNanos, last: Decimal) {
        if let Some((opened, pnl)) = self.open.take() {
            let pnl = pnl.saturating_add(last);
            self.closed += 1;
            self.winning += u64::from(pnl > Decimal::ZERO);
            self.held_ns += u128::from(now.0.saturating_sub(opened.0));
        }
    }

    /// Books a fill that took the position from `before` to `after`, realizing `realized`.
    fn on_fill(
        &mut self,
        now: UnixNanos,
        before: Decimal,
        after: Decimal,
        qty: Decimal,
        realized: Decimal,
        fee: Decimal,
    ) {
        let crossed = !before.is_zero() && !after.is_zero() && before.is_sign_positive() != after.is_sign_positive();
        if before.is_zero() {
            self.open = Some((now, -fee));
        } else if after.is_zero() {
            self.close(now, realized.saturating_sub(fee));
        } else if crossed {
            let closing_fee = fee.checked_mul(before.abs()).and_then(|f| f.checked_div(qty)).unwrap_or(fee);
            self.close(now, realized.saturating_sub(closing_fee));
            self.open = Some((now, closing_fee.saturating_sub(fee)));
        } else if let Some((_, pnl)) = &mut self.open {
            *pnl = pnl.saturating_add(realized).saturating_sub(fee);
        }
    }
}

/// Count, mean, sum of squared deviations (Welford) and sum of squared losses of the interval
/// PnL, so that a long quiet stretch adds its many zero intervals at once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
    /// Σ min(x, 0)²: the downside the Sortino ratio divides by, target 0.
    down2: f64,
}

impl Moments {
    /// Adds `k` intervals whose PnL was `x` each.
    fn add(&mut self, x: f64, k: u64) {
        if k == 0 {
            return;
        }
        let (n, kf) = (self.n as f64, k as f64);
        let total = n + kf;
        let delta = x - self.mean;
        self.mean += delta * kf / total;
        self.m2 += delta * delta * n * kf / total;
        if x < 0.0 {
            self.down2 += x * x * kf;
        }
        self.n += k;
    }

    fn sharpe(&self, periods_per_year: f64) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let std = (self.m2 / (self.n - 1) as f64).sqrt();
        ratio(self.mean, std, periods_per_year)
    }

    fn sortino(&self, periods_per_year: f64) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        ratio(self.mean, (self.down2 / self.n as f64).sqrt(), periods_per_year)
    }
}

fn ratio(mean: f64, deviation: f64, periods_per_year: f64) -> Option<f64> {
    let r = mean / deviation * periods_per_year.sqrt();
    (deviation > 0.0 && r.is_finite()).then_some(r)
}

/// The statistics of one net equity curve: the run's, or one symbol's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    equity: Decimal,
    peak: Decimal,
    max_drawdown: Decimal,
    /// When the equity last fell below its peak, while it is still below.
    underwater_since: Option<UnixNanos>,
    max_underwater_ns: u64,
    /// Equity at the end of the last closed interval.
    sampled: Decimal,
    moments: Moments,
}

impl Curve {
    /// A curve that was flat for the `n` intervals before it started.
    fn flat_for(n: u64) -> Self {
        Self { moments: Moments { n, ..Moments::default() }, ..Self::default() }
    }

    fn set(&mut self, equity: Decimal, now: UnixNanos) {
        self.equity = equity;
        if equity >= self.peak {
            self.peak = equity;
            if let Some(since) = self.underwater_since.take() {
                self.max_underwater_ns = self.max_underwater_ns.max(now.0.saturating_sub(since.0));
            }
        } else {
            self.underwater_since.get_or_insert(now);
            self.max_drawdown = self.max_drawdown.max(self.peak.saturating_sub(equity));
        }
    }

    /// Closes an interval, then `flat` more in which nothing moved; returns the first's change.
    fn close(&mut self, flat: u64) -> f64 {
        let change = self.equity.saturating_sub(self.sampled).to_f64().unwrap_or(0.0);
        self.moments.add(change, 1);
        self.moments.add(0.0, flat);
        self.sampled = self.equity;
        change
    }

    /// How far the equity is below its peak now.
    fn drawdown(&self) -> Decimal {
        self.peak.saturating_sub(self.equity)
    }

    /// Net equity now.
    pub fn equity(&self) -> Decimal {
        self.equity
    }

    /// Largest fall of the equity from its running peak (the peak starts at 0), ≥ 0.
    pub fn max_drawdown(&self) -> Decimal {
        self.max_drawdown
    }

    /// Longest event time the equity spent below its running peak, from the moment it fell
    /// below to the moment it got back to the peak, or to `end` if it never did.
    pub fn max_drawdown_duration_ns(&self, end: UnixNanos) -> u64 {
        let open = self.underwater_since.map_or(0, |since| end.0.saturating_sub(since.0));
        self.max_underwater_ns.max(open)
    }

    /// Intervals closed so far.
    pub fn intervals(&self) -> u64 {
        self.moments.n
    }
}

/// One symbol's book.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolBook {
    /// Position, average price, realized PnL and fees.
    pub position: Position,
    /// Latest mid, if any quote was seen.
    pub mark: Option<Decimal>,
    /// Σ |quantity × price| of the fills.
    pub turnover: Decimal,
    /// Fills booked.
    pub fills: u64,
    /// The fills' costs against their decision mids.
    pub costs: Costs,
    /// Round trips to flat.
    pub trips: RoundTrips,
    /// This symbol's net equity curve.
    pub curve: Curve,
}

impl SymbolBook {
    fn mark_or_avg(&self) -> Decimal {
        self.mark.unwrap_or(self.position.avg_px)
    }

    /// Unrealized PnL at the latest mid (at the average price, so 0, before any quote).
    pub fn unrealized(&self) -> Decimal {
        self.position.unrealized(self.mark_or_avg())
    }

    /// Realized + unrealized, before fees.
    pub fn gross(&self) -> Decimal {
        self.position.realized.saturating_add(self.unrealized())
    }

    /// Gross PnL − fees.
    pub fn net(&self) -> Decimal {
        self.gross().saturating_sub(self.position.fees)
    }

    /// The gross PnL the same fills would have made at their decision mids, marked as
    /// [`Self::unrealized`] is.
    pub fn at_decision_mid(&self) -> Decimal {
        self.costs.decision_cash.saturating_add(self.position.qty.saturating_mul(self.mark_or_avg()))
    }
}

/// What `report.html` plots, sampled at every interval close ([`crate::series`] bounds it).
#[derive(Debug, Clone)]
pub struct Charts {
    /// The run's net equity.
    pub equity: Series,
    /// The run's drawdown, the deepest of each interval.
    pub drawdown: Series,
    /// Each symbol's position.
    pub positions: BTreeMap<Symbol, Series>,
    /// Each symbol's mid.
    pub mids: BTreeMap<Symbol, Series>,
    /// The run's interval net PnL changes that were not 0 (a run has as many flat intervals as
    /// `intervals − len`).
    pub interval_pnl: Vec<f64>,
}

impl Default for Charts {
    fn default() -> Self {
        Self {
            equity: Series::new(Merge::Last),
            drawdown: Series::new(Merge::Max),
            positions: BTreeMap::new(),
            mids: BTreeMap::new(),
            interval_pnl: Vec::new(),
        }
    }
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Positions, PnL and the equity curves' statistics.
#[derive(Debug, Clone)]
pub struct Ledger {
    interval_ns: u64,
    symbols: BTreeMap<Symbol, SymbolBook>,
    total: Curve,
    /// The deepest drawdown since the last interval closed.
    deepest: Decimal,
    charts: Charts,
    next_boundary: Option<u64>,
    first: Option<UnixNanos>,
    now: UnixNanos,
    /// Fills that would have overflowed an exact decimal, left out.
    unbooked: u64,
}

impl Ledger {
    /// A flat ledger whose intervals are `interval_ms` of event time, aligned to the Unix epoch
    /// (0 is taken as 1).
    pub fn new(interval_ms: u64) -> Self {
        Self {
            interval_ns: interval_ms.max(1).saturating_mul(1_000_000),
            symbols: BTreeMap::new(),
            total: Curve::default(),
            deepest: Decimal::ZERO,
            charts: Charts::default(),
            next_boundary: None,
            first: None,
            now: UnixNanos(0),
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
        // The equity did not move in the intervals after the first that ended before `ts`.
        self.close_intervals(boundary, crossed - 1);
        self.next_boundary = Some(boundary.saturating_add(crossed.saturating_mul(self.interval_ns)));
    }

    /// Closes the interval that ended at `end` and the `flat` ones after it.
    fn close_intervals(&mut self, end: u64, flat: u64) {
        let change = self.total.close(flat);
        if change != 0.0 {
            self.charts.interval_pnl.push(change);
        }
        for book in self.symbols.values_mut() {
            book.curve.close(flat);
        }
        self.sample(end);
        if flat > 0 {
            // Nothing moved until the last flat interval's end: its point draws the flat stretch.
            self.sample(end.saturating_add(flat.saturating_mul(self.interval_ns)));
        }
        self.deepest = self.total.drawdown();
    }

    fn sample(&mut self, ts: u64) {
        let c = &mut self.charts;
        c.equity.push(ts, f(self.total.equity));
        c.drawdown.push(ts, f(self.deepest.max(self.total.drawdown())));
        for (symbol, book) in &self.symbols {
            c.positions
                .entry(symbol.clone())
                .or_insert_with(|| Series::new(Merge::Last))
                .push(ts, f(book.position.qty));
            if let Some(mid) = book.mark {
                c.mids.entry(symbol.clone()).or_insert_with(|| Series::new(Merge::Last)).push(ts, f(mid));
            }
        }
    }

    fn book(&mut self, symbol: &Symbol) -> &mut SymbolBook {
        let intervals = self.total.intervals();
        self.symbols
            .entry(symbol.clone())
            .or_insert_with(|| SymbolBook { curve: Curve::flat_for(intervals), ..SymbolBook::default() })
    }

    /// The mid of `symbol` is now `mid`.
    pub fn mark(&mut self, symbol: &Symbol, mid: Decimal) {
        // Called on every quote: a known symbol is looked up without cloning its name.
        let moved = match self.symbols.get_mut(symbol) {
            Some(book) => {
                book.mark = Some(mid);
                !book.position.qty.is_zero()
            }
            None => {
                self.book(symbol).mark = Some(mid);
                false
            }
        };
        if moved {
            self.revalue(symbol);
        }
    }

    /// A fill; `false` (and nothing booked) when it would overflow an exact decimal.
    pub fn fill(&mut self, symbol: &Symbol, f: &Fill) -> bool {
        let now = self.now;
        let book = self.book(symbol);
        let before = book.position;
        if !book.position.fill(f.side, f.qty, f.px, f.fee) {
            self.unbooked += 1;
            return false;
        }
        book.turnover = book.turnover.saturating_add(f.qty.saturating_mul(f.px).abs());
        book.fills += 1;
        let decision = if f.decision_mid > Decimal::ZERO { f.decision_mid } else { f.venue_mid.unwrap_or(f.px) };
        let venue = f.venue_mid.unwrap_or(decision);
        let signed = f.side.sign().saturating_mul(f.qty);
        let c = &mut book.costs;
        c.delay = c.delay.saturating_add(signed.saturating_mul(venue.saturating_sub(decision)));
        c.spread_impact = c.spread_impact.saturating_add(signed.saturating_mul(f.px.saturating_sub(venue)));
        c.decision_cash = c.decision_cash.saturating_sub(signed.saturating_mul(decision));
        let realized = book.position.realized.saturating_sub(before.realized);
        book.trips.on_fill(now, before.qty, book.position.qty, f.qty, realized, f.fee);
        self.revalue(symbol);
        true
    }

    fn revalue(&mut self, symbol: &Symbol) {
        let now = self.now;
        if let Some(book) = self.symbols.get_mut(symbol) {
            let net = book.net();
            book.curve.set(net, now);
        }
        // Only `symbol` moved: every other curve holds its symbol's net equity already.
        let total = self.symbols.values().map(|b| b.curve.equity).fold(Decimal::ZERO, Decimal::saturating_add);
        self.total.set(total, now);
        self.deepest = self.deepest.max(self.total.drawdown());
    }

    /// The input has ended: closes the last interval, however short, so that the intervals'
    /// PnL adds up to the net PnL.
    pub fn finish(&mut self) {
        if self.first.is_some() && self.next_boundary.is_some() {
            self.close_intervals(self.now.0, 0);
            self.next_boundary = None;
        }
    }

    /// Each symbol's book.
    pub fn symbols(&self) -> &BTreeMap<Symbol, SymbolBook> {
        &self.symbols
    }

    /// What `report.html` plots.
    pub fn charts(&self) -> &Charts {
        &self.charts
    }

    /// Takes what `report.html` plots out of the ledger, leaving it empty.
    pub fn take_charts(&mut self) -> Charts {
        std::mem::take(&mut self.charts)
    }

    /// The run's net equity curve.
    pub fn total(&self) -> &Curve {
        &self.total
    }

    /// Event time now: the end of the run once it finished.
    pub fn now(&self) -> UnixNanos {
        self.now
    }

    /// Net equity now: the net PnL.
    pub fn net(&self) -> Decimal {
        self.total.equity
    }

    /// Largest fall of net equity from its running peak (the peak starts at 0), ≥ 0.
    pub fn max_drawdown(&self) -> Decimal {
        self.total.max_drawdown
    }

    /// Intervals closed so far.
    pub fn intervals(&self) -> u64 {
        self.total.intervals()
    }

    /// Mean over standard deviation (n − 1) of `curve`'s interval net PnL changes, × √(intervals
    /// per year). `None` with fewer than two intervals or no variation: there is no ratio then.
    pub fn sharpe_of(&self, curve: &Curve) -> Option<f64> {
        curve.moments.sharpe(self.periods_per_year())
    }

    /// Mean over downside deviation √(Σ min(change, 0)² / n) of `curve`'s interval net PnL
    /// changes (target 0, every interval in n), × √(intervals per year). `None` with fewer than
    /// two intervals or none losing.
    pub fn sortino_of(&self, curve: &Curve) -> Option<f64> {
        curve.moments.sortino(self.periods_per_year())
    }

    /// The run's Sharpe ratio ([`Self::sharpe_of`] its curve).
    pub fn sharpe(&self) -> Option<f64> {
        self.sharpe_of(&self.total)
    }

    /// The run's Sortino ratio ([`Self::sortino_of`] its curve).
    pub fn sortino(&self) -> Option<f64> {
        self.sortino_of(&self.total)
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
        UnixNanos((secs * 1e9).round() as u64)
    }

    fn fill(side: Side, qty: Decimal, px: Decimal, fee: Decimal, decision: Decimal, venue: Decimal) -> Fill {
        Fill { side, qty, px, fee, decision_mid: decision, venue_mid: Some(venue) }
    }

    /// A round trip through zero, worked out by hand with 1-second intervals:
    ///
    /// | t (s) | event                          | position   | realized | unrealized | fees  | net equity |
    /// |-------|--------------------------------|------------|----------|------------|-------|------------|
    /// | 0.5   | mid 100                        | 0          | 0        | 0          | 0     | 0          |
    /// | 0.6   | buy 2 @ 100, fee .2            | +2 @ 100   | 0        | 0          | 0.2   | −0.2       |
    /// | 1.2   | mid 101                        | +2 @ 100   | 0        | +2         | 0.2   | 1.8 (peak) |
    /// | 2.5   | mid 99                         | +2 @ 100   | 0        | −2         | 0.2   | −2.2       |
    /// | 2.7   | sell 3 @ 99, fee .297          | −1 @ 99    | −2       | 0          | 0.497 | −2.497     |
    /// | 3.4   | mid 98                         | −1 @ 99    | −2       | +1         | 0.497 | −1.497     |
    ///
    /// Gross −1, fees 0.497, net −1.497. Turnover 2 × 100 + 3 × 99 = 497. Max drawdown from the
    /// 1.8 peak to the −2.497 trough: 4.297. Under water from 0.6 to 1.2 (0.6 s) and from 2.5 to
    /// the end at 3.4 (0.9 s): the longest is 900 ms. Intervals [0.5, 1), [1, 2), [2, 3), [3, 3.4]
    /// close at −0.2, 1.8, −2.497, −1.497: changes −0.2, 2.0, −4.297, 1.0, which add up to the
    /// net PnL. Their mean is −0.37425, their sample standard deviation √(22.9439... / 3) =
    /// 2.765496..., so the Sharpe ratio is −0.37425 / 2.765496 × √31,536,000 = −759.96...; their
    /// downside deviation √((0.2² + 4.297²) / 4) = 2.150826..., so the Sortino ratio is
    /// −0.37425 / 2.150826 × √31,536,000 = −977.15...
    ///
    /// Costs. The buy was decided at mid 99.5 and reached the venue at mid 99.8: delay
    /// 2 × 0.3 = 0.6, spread and impact 2 × (100 − 99.8) = 0.4. The sell was decided at 99.6 and
    /// arrived at 99.4: delay −3 × (99.4 − 99.6) = 0.6, spread and impact −3 × (99 − 99.4) = 1.2.
    /// At the decision mids the fills would have moved −199 + 298.8 = 99.8 of cash, and with the
    /// −1 left at the last mid 98 made 1.8: 1.8 − (1.2 delay + 1.6 spread and impact + 0.497 fees)
    /// = −1.497, the net PnL.
    ///
    /// Round trips. The buy opens one (−0.2 of fees); the sell closes it through zero: it
    /// realizes −2 and 2 of its 3 units close, so 2/3 of its fee, 0.198, is the trip's:
    /// −0.2 − 2 − 0.198 = −2.398, a loss, held 2.1 s. The short it opens is still open at the end.
    #[test]
    fn a_round_trip_through_zero_adds_up_as_worked_out_by_hand() {
        let x = Symbol::new("X").unwrap();
        let mut ledger = Ledger::new(1000);
        ledger.at(s(0.5));
        ledger.mark(&x, dec!(100));
        ledger.at(s(0.6));
        assert!(ledger.fill(&x, &fill(Side::Buy, dec!(2), dec!(100), dec!(0.2), dec!(99.5), dec!(99.8))));
        ledger.at(s(1.2));
        ledger.mark(&x, dec!(101));
        ledger.at(s(2.5));
        ledger.mark(&x, dec!(99));
        ledger.at(s(2.7));
        assert!(ledger.fill(&x, &fill(Side::Sell, dec!(3), dec!(99), dec!(0.297), dec!(99.6), dec!(99.4))));
        ledger.at(s(3.4));
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
        assert_eq!(ledger.total().max_drawdown_duration_ns(ledger.now()), 900_000_000);
        assert_eq!(ledger.intervals(), 4);
        let sharpe = ledger.sharpe().unwrap();
        assert!((sharpe - -759.96).abs() < 0.01, "{sharpe}");
        let sortino = ledger.sortino().unwrap();
        assert!((sortino - -977.15).abs() < 0.01, "{sortino}");

        assert_eq!((book.costs.delay, book.costs.spread_impact), (dec!(1.2), dec!(1.6)));
        assert_eq!(book.at_decision_mid(), dec!(1.8));
        let costs = book.costs.delay + book.costs.spread_impact + book.position.fees;
        assert_eq!(book.at_decision_mid() - costs, book.net(), "the decomposition adds up to the net PnL");

        let trips = &book.trips;
        assert_eq!((trips.closed, trips.winning, trips.held_ns), (1, 0, 2_100_000_000));
        // The symbol's own curve is the run's: it is the only one.
        assert_eq!(&book.curve, ledger.total());
    }

    /// Two round trips, a win and a loss, worked out by hand: long 1 from 10 (t = 1 s) sold at 12
    /// with a 0.1 fee (t = 3 s) nets 1.9 in 2 s; short 2 at 12 (t = 4 s) bought back at 12.5 with
    /// a 0.05 fee (t = 8 s) nets −1.05 in 4 s. Hit rate 1/2, mean holding 3 s.
    #[test]
    fn round_trips_count_wins_net_of_fees_and_their_holding_time() {
        let (x, y) = (Symbol::new("X").unwrap(), Symbol::new("Y").unwrap());
        let mut ledger = Ledger::new(1000);
        ledger.at(s(0.0));
        ledger.mark(&x, dec!(5));
        ledger.at(s(1.0));
        // Y is first seen after one interval closed: its curve counts it as flat, like the run's.
        ledger.mark(&y, dec!(10));
        assert!(ledger.fill(&y, &fill(Side::Buy, dec!(1), dec!(10), dec!(0), dec!(10), dec!(10))));
        ledger.at(s(3.0));
        assert!(ledger.fill(&y, &fill(Side::Sell, dec!(1), dec!(12), dec!(0.1), dec!(12), dec!(12))));
        ledger.at(s(4.0));
        assert!(ledger.fill(&y, &fill(Side::Sell, dec!(2), dec!(12), dec!(0), dec!(12), dec!(12))));
        ledger.at(s(8.0));
        assert!(ledger.fill(&y, &fill(Side::Buy, dec!(2), dec!(12.5), dec!(0.05), dec!(12.5), dec!(12.5))));
        ledger.finish();
        let trips = &ledger.symbols()[&y].trips;
        assert_eq!((trips.closed, trips.winning, trips.held_ns), (2, 1, 6_000_000_000));
        assert_eq!(ledger.net(), dec!(0.85));
        assert_eq!(ledger.symbols()[&y].curve.intervals(), ledger.intervals());
    }

    /// A gap of several intervals with no event is as many flat intervals: they lower the
    /// volatility the ratios divide by, and must count.
    #[test]
    fn quiet_intervals_count_as_flat() {
        let x = Symbol::new("X").unwrap();
        let mut ledger = Ledger::new(1000);
        ledger.at(s(0.0));
        ledger.mark(&x, dec!(10));
        assert!(ledger.fill(&x, &fill(Side::Buy, dec!(1), dec!(10), dec!(0), dec!(10), dec!(10))));
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
        assert_eq!(ledger.total().max_drawdown_duration_ns(ledger.now()), 0);
        // No interval lost: no downside to divide by.
        assert_eq!(ledger.sortino(), None);
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
        assert_eq!(ledger.sortino(), None);
    }
}
