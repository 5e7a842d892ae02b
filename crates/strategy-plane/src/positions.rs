//! Positions and PnL from `exec_reports` fills, in exact decimals.
//!
//! Average-cost accounting: buys into a long (or sells into a short) move the average price;
//! trades against the position realize `closed qty × (price − average)` in the position's
//! direction; a trade through zero realizes the whole position and opens the rest at its price.
//! Fills are de-duplicated by execution id, so a redelivered report is counted once.

use std::collections::HashMap;

use common::dedup::Recent;
use common::events::ExecReport;
use common::types::{Side, Symbol};
use rust_decimal::Decimal;

/// One symbol's position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Signed quantity.
    pub qty: Decimal,
    /// Average price of the open quantity (0 when flat).
    pub avg_px: Decimal,
    /// Realized PnL, before fees.
    pub realized: Decimal,
    /// Commissions paid.
    pub fees: Decimal,
}

impl Position {
    /// Applies one fill; `false` (and no change) when the result would not fit an exact decimal,
    /// which only records far outside the contract's bounds, or very many of them, can cause.
    pub fn fill(&mut self, side: Side, qty: Decimal, px: Decimal, fee: Decimal) -> bool {
        match self.filled(side, qty, px, fee) {
            Some(next) => {
                *self = next;
                true
            }
            None => false,
        }
    }

    fn filled(&self, side: Side, qty: Decimal, px: Decimal, fee: Decimal) -> Option<Self> {
        let mut next = *self;
        let signed = side.sign() * qty;
        next.fees = self.fees.checked_add(fee)?;
        next.qty = self.qty.checked_add(signed)?;
        if self.qty.is_zero() || self.qty.is_sign_positive() == signed.is_sign_positive() {
            let total = self.qty.abs().checked_add(qty)?;
            if !total.is_zero() {
                let value = self.qty.abs().checked_mul(self.avg_px)?.checked_add(qty.checked_mul(px)?)?;
                next.avg_px = value.checked_div(total)?;
            }
            return Some(next);
        }
        let closed = qty.min(self.qty.abs());
        let direction = if self.qty.is_sign_positive() { Decimal::ONE } else { Decimal::NEGATIVE_ONE };
        let gain = closed.checked_mul(px.checked_sub(self.avg_px)?)?.checked_mul(direction)?;
        next.realized = self.realized.checked_add(gain)?;
        if next.qty.is_zero() {
            next.avg_px = Decimal::ZERO;
        } else if next.qty.is_sign_positive() != direction.is_sign_positive() {
            next.avg_px = px;
        }
        Some(next)
    }

    /// Unrealized PnL at `mark`.
    pub fn unrealized(&self, mark: Decimal) -> Decimal {
        self.qty.saturating_mul(mark.saturating_sub(self.avg_px))
    }
}

/// Execution ids remembered to drop a fill counted already. Copies come from a restart (the
/// reports published after the last committed offset, read again after the rebuild read them)
/// or from the Order Plane publishing a report again; both are far fewer than this many fills
/// behind the newest. About 3 MiB at the bound.
const FILLS_REMEMBERED: usize = 32_768;

/// Every symbol's position, marks, and the newest fills counted.
#[derive(Debug)]
pub struct Book {
    positions: HashMap<Symbol, Position>,
    marks: HashMap<Symbol, Decimal>,
    counted: Recent<String>,
}

impl Default for Book {
    fn default() -> Self {
        Self { positions: HashMap::new(), marks: HashMap::new(), counted: Recent::new(FILLS_REMEMBERED) }
    }
}

impl Book {
    /// Applies a report's fill, if it has one not counted yet; returns whether it did.
    pub fn on_report(&mut self, r: &ExecReport) -> bool {
        let (Some(exec_id), Some(px)) = (&r.exec_id, r.last_px) else { return false };
        if r.last_qty <= Decimal::ZERO || !self.counted.insert(exec_id.clone()) {
            return false;
        }
        self.positions.entry(r.symbol.clone()).or_default().fill(r.side, r.last_qty, px, r.commission)
    }

    /// Sets the positions of the symbols `reports` are about to what their fills add up to,
    /// leaving every other symbol as it is: `reports` are the whole history of a ledger partition
    /// this book takes over from another instance, whose fills it has not all seen.
    pub fn replace(&mut self, reports: &[ExecReport]) {
        let mut fresh = Book::default();
        for r in reports {
            fresh.on_report(r);
            if let Some(exec_id) = &r.exec_id {
                self.counted.insert(exec_id.clone());
            }
        }
        for r in reports {
            self.positions.insert(r.symbol.clone(), fresh.position(&r.symbol));
        }
    }

    /// Sets the position of `symbol` as a snapshot of its partition holds it, and counts the
    /// snapshot's newest `fills` (execution ids) as seen, so a copy read after it counts once.
    pub fn restore<'a>(&mut self, symbol: &Symbol, position: Position, fills: impl Iterator<Item = &'a String>) {
        self.positions.insert(symbol.clone(), position);
        for exec_id in fills {
            self.counted.insert(exec_id.clone());
        }
    }

    /// Records the latest mid of `symbol`.
    pub fn mark(&mut self, symbol: &Symbol, mid: Decimal) {
        self.marks.insert(symbol.clone(), mid);
    }

    /// The position of `symbol`.
    pub fn position(&self, symbol: &Symbol) -> Position {
        self.positions.get(symbol).copied().unwrap_or_default()
    }

    /// Realized + unrealized − fees of `symbol` at its latest mark.
    pub fn pnl(&self, symbol: &Symbol) -> Decimal {
        let p = self.position(symbol);
        let mark = self.marks.get(symbol).copied().unwrap_or(p.avg_px);
        p.realized.saturating_add(p.unrealized(mark)).saturating_sub(p.fees)
    }

    /// Total PnL over every symbol.
    pub fn total_pnl(&self) -> Decimal {
        self.positions.keys().map(|s| self.pnl(s)).fold(Decimal::ZERO, Decimal::saturating_add)
    }

    /// Symbols with a position record.
    pub fn symbols(&self) -> impl Iterator<Item = &Symbol> {
        self.positions.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn fill(symbol: &str, exec_id: &str, side: Side, qty: Decimal, px: Decimal) -> ExecReport {
        ExecReport {
            intent_id: common::events::IntentId(uuid::Uuid::nil()),
            order_id: "SIM-1".into(),
            symbol: Symbol::new(symbol).unwrap(),
            side,
            status: common::events::ExecStatus::Filled,
            reason: None,
            detail: None,
            venue: "simulated".into(),
            order_qty: qty,
            exec_id: Some(exec_id.into()),
            last_px: Some(px),
            last_qty: qty,
            cum_qty: qty,
            avg_px: Some(px),
            leaves_qty: Decimal::ZERO,
            commission: Decimal::ZERO,
            cum_commission: Decimal::ZERO,
            arrival_mid: px,
            slippage_bps: None,
            venue_mid: None,
        }
    }

    #[test]
    fn a_partition_taken_over_replaces_its_symbols_positions_and_no_other() {
        let mut book = Book::default();
        // What the instance saw at its start: 1 X bought, 2 Y bought.
        book.on_report(&fill("X", "e1", Side::Buy, dec!(1), dec!(100)));
        book.on_report(&fill("Y", "e2", Side::Buy, dec!(2), dec!(50)));
        // X's partition, taken over later: the first fill, then 3 more bought and 0.5 sold by the
        // instance that traded it meanwhile.
        let partition = [
            fill("X", "e1", Side::Buy, dec!(1), dec!(100)),
            fill("X", "e3", Side::Buy, dec!(3), dec!(104)),
            fill("X", "e4", Side::Sell, dec!(0.5), dec!(110)),
        ];
        book.replace(&partition);
        assert_eq!(book.position(&Symbol::new("X").unwrap()).qty, dec!(3.5));
        // Average cost (1 × 100 + 3 × 104) / 4 = 103; the sale of 0.5 at 110 realized 3.5.
        assert_eq!(book.position(&Symbol::new("X").unwrap()).avg_px, dec!(103));
        assert_eq!(book.position(&Symbol::new("X").unwrap()).realized, dec!(3.5));
        assert_eq!(book.position(&Symbol::new("Y").unwrap()).qty, dec!(2));
        // A fill of the partition delivered again live is not counted twice.
        assert!(!book.on_report(&partition[2]));
    }

    /// Fills at the contract's bound (10^12 at 10^12) each move PnL by up to 10^24; the ledger
    /// is kept forever, so about 80,000 of them overflowed an exact decimal and panicked the plane
    /// at every restart. The fill that would overflow is refused and changes nothing.
    #[test]
    fn a_fill_that_would_overflow_is_refused_and_changes_nothing() {
        let (big, low, high) = (dec!(1000000000000), dec!(1), dec!(1000000000000));
        let mut p = Position::default();
        let mut refused = None;
        for round in 0..100_000u32 {
            if !p.fill(Side::Buy, big, low, Decimal::ZERO) {
                refused = Some(round);
                break;
            }
            let before = p;
            if !p.fill(Side::Sell, big, high, Decimal::ZERO) {
                assert_eq!(p, before, "a refused fill leaves the position as it was");
                refused = Some(round);
                break;
            }
        }
        let round = refused.expect("the realized PnL cannot grow for ever");
        assert!(round > 70_000, "only near the decimal's limit: {round}");
        assert!(p.realized > dec!(70000000000000000000000000000));
    }

    #[test]
    fn average_cost_accounting_by_hand() {
        let mut p = Position::default();
        p.fill(Side::Buy, dec!(2), dec!(100), dec!(0.35));
        p.fill(Side::Buy, dec!(2), dec!(110), dec!(0.35));
        assert_eq!((p.qty, p.avg_px), (dec!(4), dec!(105)));
        p.fill(Side::Sell, dec!(3), dec!(120), dec!(0.35));
        assert_eq!((p.qty, p.avg_px, p.realized), (dec!(1), dec!(105), dec!(45)));
        // Through zero: realize the last long unit, open a short at the trade price.
        p.fill(Side::Sell, dec!(2), dec!(100), dec!(0.35));
        assert_eq!((p.qty, p.avg_px, p.realized), (dec!(-1), dec!(100), dec!(40)));
        assert_eq!(p.unrealized(dec!(90)), dec!(10));
        assert_eq!(p.fees, dec!(1.40));
        p.fill(Side::Buy, dec!(1), dec!(95), dec!(0));
        assert_eq!((p.qty, p.avg_px, p.realized), (dec!(0), dec!(0), dec!(45)));
    }

    fn report(exec_id: &str, side: Side, qty: Decimal, px: Decimal) -> ExecReport {
        ExecReport {
            intent_id: common::events::IntentId(uuid::Uuid::from_u128(1)),
            status: common::events::ExecStatus::PartiallyFilled,
            commission: dec!(0.35),
            cum_commission: dec!(0.35),
            ..fill("BTCUSDT", exec_id, side, qty, px)
        }
    }

    #[test]
    fn a_redelivered_fill_counts_once_and_pnl_marks_to_the_mid() {
        let mut book = Book::default();
        let btc = Symbol::new("BTCUSDT").unwrap();
        assert!(book.on_report(&report("SIM-1-1", Side::Buy, dec!(0.5), dec!(60000))));
        assert!(!book.on_report(&report("SIM-1-1", Side::Buy, dec!(0.5), dec!(60000))), "same exec id");
        assert!(book.on_report(&report("SIM-1-2", Side::Buy, dec!(0.5), dec!(60100))));
        assert_eq!(book.position(&btc).qty, dec!(1));
        book.mark(&btc, dec!(60200));
        // Unrealized 1 × (60200 − 60050) = 150, minus two fees of 0.35.
        assert_eq!(book.pnl(&btc), dec!(149.30));
        assert_eq!(book.total_pnl(), dec!(149.30));
    }

    #[test]
    fn the_fills_remembered_stay_bounded_over_a_long_run() {
        let mut book = Book::default();
        let btc = Symbol::new("BTCUSDT").unwrap();
        let fills = 3 * FILLS_REMEMBERED;
        for n in 0..fills {
            let side = if n % 2 == 0 { Side::Buy } else { Side::Sell };
            assert!(book.on_report(&report(&format!("SIM-{n}-1"), side, dec!(0.5), dec!(60000))));
        }
        assert_eq!(book.counted.len(), FILLS_REMEMBERED);
        assert_eq!(book.position(&btc).qty, dec!(0));
        let newest = format!("SIM-{}-1", fills - 1);
        assert!(!book.on_report(&report(&newest, Side::Sell, dec!(0.5), dec!(60000))), "a recent copy is dropped");
    }
}
