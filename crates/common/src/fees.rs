//! What an execution costs, by its instrument's fee schedule (`[[instruments]] fees`).
//!
//! - `bps`: a share of each fill's value, `maker_bps` when the fill added liquidity (a resting
//!   order), `taker_bps` when it took it; rounded to 8 decimals, as Binance reports fees.
//! - `ibkr_tiered`: IBKR Pro's US-stock schedule ([`crate::commission`]); the order's cumulative
//!   commission follows the schedule, so its first fill pays the minimum and later fills the
//!   increments.
//!
//! The Order Plane charges fills by [`fill_fee`]; the Strategy Plane weighs the same schedule
//! before it trades ([`taker_rate`], [`order_fee`]), so the two never disagree on what a fee is.

use crate::config::FeeSchedule;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::commission;

/// An order's fills so far: quantity and Σ price × quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    /// Quantity.
    pub qty: Decimal,
    /// Value.
    pub value: Decimal,
}

/// The commission of one fill that takes an order from `before` to `after`; `monthly` is the
/// volume the month traded before it (the tiered schedule's tier).
pub fn fill_fee(schedule: &FeeSchedule, maker: bool, before: Filled, after: Filled, monthly: Decimal) -> Decimal {
    match schedule {
        FeeSchedule::Bps { maker_bps, taker_bps } => {
            let bps = if maker { maker_bps } else { taker_bps };
            let value = after.value - before.value;
            value.checked_mul(*bps).map_or(Decimal::MAX, |v| (v / Decimal::from(10_000)).round_dp(8))
        }
        FeeSchedule::IbkrTiered => {
            let was = commission::order_total(before.qty, before.value, monthly);
            let now = commission::order_total(after.qty, after.value, monthly);
            (now - was).max(Decimal::ZERO)
        }
    }
}

/// The part of a market order's fee that grows with its value, per unit of value (a fraction):
/// the taker rate, or the tiered schedule's dearest per-share rate at `price` (a month's volume is
/// not known before it trades), at most its cap. Not finite when `price` is not positive.
pub fn taker_rate(schedule: &FeeSchedule, price: Decimal) -> f64 {
    let rate = match schedule {
        FeeSchedule::Bps { taker_bps, .. } => Some(*taker_bps / Decimal::from(10_000)),
        FeeSchedule::IbkrTiered => {
            commission::rate(Decimal::ZERO).checked_div(price).map(|r| r.min(commission::MAX_FRACTION))
        }
    };
    rate.filter(|_| price > Decimal::ZERO).and_then(|r| r.to_f64()).unwrap_or(f64::NAN)
}

/// What a market order of `qty` at `price` is expected to pay in all (the tiered schedule at its
/// first tier, its minimum included).
pub fn order_fee(schedule: &FeeSchedule, qty: Decimal, price: Decimal) -> Decimal {
    let value = qty.checked_mul(price).unwrap_or(Decimal::MAX);
    fill_fee(schedule, false, Filled::default(), Filled { qty, value }, Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn filled(qty: Decimal, value: Decimal) -> Filled {
        Filled { qty, value }
    }

    #[test]
    fn binance_spot_charges_ten_basis_points_of_value() {
        let spot = FeeSchedule::Bps { maker_bps: dec!(10), taker_bps: dec!(10) };
        // 0.00017 BTC at 61,686.00 = 10.48662 USDT; 0.1 % = 0.01048662.
        let fee = fill_fee(&spot, false, Filled::default(), filled(dec!(0.00017), dec!(10.48662)), dec!(0));
        assert_eq!(fee, dec!(0.01048662));
    }

    #[test]
    fn maker_and_taker_rates_apply_by_liquidity() {
        // Binance USD-M futures, regular user: 2 bp maker, 5 bp taker. A 1,000 USDT fill.
        let futures = FeeSchedule::Bps { maker_bps: dec!(2), taker_bps: dec!(5) };
        let after = filled(dec!(1), dec!(1000));
        assert_eq!(fill_fee(&futures, true, Filled::default(), after, dec!(0)), dec!(0.2));
        assert_eq!(fill_fee(&futures, false, Filled::default(), after, dec!(0)), dec!(0.5));
    }

    #[test]
    fn the_tiered_schedule_charges_the_increments_of_the_order_total() {
        // 100 shares at $50 then 900 more: 0.35 (minimum) then 3.50 - 0.35 = 3.15.
        let first =
            fill_fee(&FeeSchedule::IbkrTiered, false, Filled::default(), filled(dec!(100), dec!(5000)), dec!(0));
        let second = fill_fee(
            &FeeSchedule::IbkrTiered,
            false,
            filled(dec!(100), dec!(5000)),
            filled(dec!(1000), dec!(50000)),
            dec!(100),
        );
        assert_eq!((first, second), (dec!(0.35), dec!(3.15)));
    }

    #[test]
    fn the_strategy_expects_the_taker_rate_and_the_tiered_minimum() {
        let spot = FeeSchedule::Bps { maker_bps: dec!(2), taker_bps: dec!(10) };
        assert_eq!(taker_rate(&spot, dec!(61686)), 0.001);
        // 0.0035 USD a share at $50 is 0.007 % of value; at $0.20 it would be 1.75 %, capped at 1 %.
        assert_eq!(taker_rate(&FeeSchedule::IbkrTiered, dec!(50)), 0.00007);
        assert_eq!(taker_rate(&FeeSchedule::IbkrTiered, dec!(0.2)), 0.01);
        assert!(taker_rate(&FeeSchedule::IbkrTiered, dec!(0)).is_nan());
        // 20 shares at $50: 0.07 by rate, 0.35 by the minimum.
        assert_eq!(order_fee(&FeeSchedule::IbkrTiered, dec!(20), dec!(50)), dec!(0.35));
        assert_eq!(order_fee(&spot, dec!(0.5), dec!(2000)), dec!(1));
    }
}
