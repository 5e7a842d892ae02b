//! Interactive Brokers' published US-stock **tiered** commission schedule (IBKR Pro), as the
//! simulated venue charges it.
//!
//! | monthly volume (shares) | USD per share |
//! |---|---|
//! | ≤ 300,000 | 0.0035 |
//! | 300,001 – 3,000,000 | 0.0020 |
//! | 3,000,001 – 20,000,000 | 0.0015 |
//! | 20,000,001 – 100,000,000 | 0.0010 |
//! | > 100,000,000 | 0.0005 |
//!
//! Per order: at least USD 0.35, at most 1.0 % of the trade value. Exchange, clearing and
//! regulatory pass-through fees are not modelled. Fills of one order are charged so that the
//! order's cumulative commission follows the schedule: the first fill pays the minimum, later fills
//! pay the increments.

use rust_decimal::Decimal;

/// Minimum commission per order.
pub const MIN_PER_ORDER: Decimal = Decimal::from_parts(35, 0, 0, false, 2);
/// Maximum commission per order, as a fraction of trade value.
pub const MAX_FRACTION: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

/// The per-share rate for a month that has traded `monthly_volume` shares so far.
pub fn rate(monthly_volume: Decimal) -> Decimal {
    let tiers: [(i64, i64); 4] = [(300_000, 35), (3_000_000, 20), (20_000_000, 15), (100_000_000, 10)];
    for (upto, ten_thousandths) in tiers {
        if monthly_volume <= Decimal::from(upto) {
            return Decimal::new(ten_thousandths, 4);
        }
    }
    Decimal::new(5, 4)
}

/// The commission an order owes in total once `cum_qty` shares worth `cum_value` have filled.
pub fn order_total(cum_qty: Decimal, cum_value: Decimal, monthly_volume: Decimal) -> Decimal {
    if cum_qty <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let per_share = rate(monthly_volume).checked_mul(cum_qty).unwrap_or(Decimal::MAX);
    let cap = cum_value.checked_mul(MAX_FRACTION).unwrap_or(Decimal::MAX);
    per_share.max(MIN_PER_ORDER).min(cap).round_dp(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn tiers() {
        assert_eq!(rate(dec!(0)), dec!(0.0035));
        assert_eq!(rate(dec!(300000)), dec!(0.0035));
        assert_eq!(rate(dec!(300001)), dec!(0.0020));
        assert_eq!(rate(dec!(20000001)), dec!(0.0010));
        assert_eq!(rate(dec!(100000001)), dec!(0.0005));
    }

    #[test]
    fn minimum_and_cap_per_order() {
        // 100 shares at $50: 0.35 by rate = minimum.
        assert_eq!(order_total(dec!(100), dec!(5000), dec!(0)), dec!(0.35));
        // 1,000 shares at $50: 3.50.
        assert_eq!(order_total(dec!(1000), dec!(50000), dec!(0)), dec!(3.5));
        // 1,000 shares at $0.10 (value 100): capped at 1 % = 1.00.
        assert_eq!(order_total(dec!(1000), dec!(100), dec!(0)), dec!(1));
        // 10 shares at $1 (value 10): the cap (0.10) wins over the minimum.
        assert_eq!(order_total(dec!(10), dec!(10), dec!(0)), dec!(0.1));
        assert_eq!(order_total(dec!(0), dec!(0), dec!(0)), dec!(0));
    }
}
