//! Conversions from ibapi's values: exact decimals from floats, event time, the trade aggressor
//! and a market-depth book rebuilt from IB's row operations.

use std::str::FromStr;

use common::types::{Side, UnixNanos};
use rust_decimal::Decimal;

/// The decimal a float prints as (shortest round-trip form): the value the gateway sent as text.
/// `None` for NaN and infinities.
pub fn decimal(f: f64) -> Option<Decimal> {
    if !f.is_finite() {
        return None;
    }
    Decimal::from_str(&f.to_string()).ok().or_else(|| Decimal::from_f64_retain(f))
}

/// Event time for one stream of IB ticks. Tick-by-tick times have a resolution of one second,
/// so the receive time refines them within that second, and the result never goes backwards
/// (the Data Plane's windows need time-ordered input across all symbols).
#[derive(Debug, Default, Clone)]
pub struct EventClock {
    last: u64,
}

impl EventClock {
    /// Event time of a tick IB stamped `ib_seconds` and we received at `received`.
    pub fn stamp(&mut self, ib_seconds: i64, received: UnixNanos) -> UnixNanos {
        let start = u64::try_from(ib_seconds).unwrap_or(0).saturating_mul(1_000_000_000);
        let end = start.saturating_add(999_999_999);
        let ts = received.0.clamp(start, end).max(self.last);
        self.last = ts;
        UnixNanos(ts)
    }

    /// The latest time handed out.
    pub fn last(&self) -> UnixNanos {
        UnixNanos(self.last)
    }
}

/// The side that crossed the spread, from a trade's price and the quote before it (tick-by-tick
/// trades carry no aggressor): at or above the mid is a buy.
pub fn aggressor(price: Decimal, bid: Decimal, ask: Decimal) -> Side {
    if price * Decimal::TWO >= bid + ask { Side::Buy } else { Side::Sell }
}

/// One side's levels, best first.
pub type Levels = Vec<(Decimal, Decimal)>;

/// A market-depth book kept from IB's row operations (0 insert, 1 update, 2 delete at a
/// position; side 0 ask, 1 bid).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DepthBook {
    bids: Levels,
    asks: Levels,
}

/// A depth row operation the book could not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("depth operation {operation} at position {position} does not fit a side of {len} rows")]
pub struct DepthError {
    /// Operation code.
    pub operation: i32,
    /// Row.
    pub position: i32,
    /// Rows held on that side.
    pub len: usize,
}

impl DepthBook {
    /// Applies one row change. A change that does not fit the book (IB lost sync) is an error;
    /// the caller resets the book and waits for the next snapshot.
    pub fn apply(
        &mut self,
        position: i32,
        operation: i32,
        side: i32,
        price: Decimal,
        size: Decimal,
    ) -> Result<(), DepthError> {
        let rows = if side == 1 { &mut self.bids } else { &mut self.asks };
        let err = DepthError { operation, position, len: rows.len() };
        let Ok(at) = usize::try_from(position) else { return Err(err) };
        match operation {
            0 if at <= rows.len() => rows.insert(at, (price, size)),
            1 if at < rows.len() => rows[at] = (price, size),
            // An update one past the end is how IB grows a side.
            1 if at == rows.len() => rows.push((price, size)),
            2 if at < rows.len() => {
                rows.remove(at);
            }
            _ => return Err(err),
        }
        Ok(())
    }

    /// Clears both sides (IB's book reset, or a reconnect).
    pub fn reset(&mut self) {
        self.bids.clear();
        self.asks.clear();
    }

    /// The valid part of the book, at most `levels` per side: bids strictly descending, asks
    /// strictly ascending, positive prices and sizes, and not crossed; `None` while a side is
    /// empty.
    pub fn snapshot(&self, levels: usize) -> Option<(Levels, Levels)> {
        let clean = |rows: &Levels, better: fn(Decimal, Decimal) -> bool| {
            let mut out: Levels = Vec::new();
            for &(px, sz) in rows {
                if px <= Decimal::ZERO || sz <= Decimal::ZERO {
                    break;
                }
                if out.last().is_some_and(|&(prev, _)| !better(prev, px)) {
                    break;
                }
                out.push((px, sz));
                if out.len() == levels {
                    break;
                }
            }
            out
        };
        let bids = clean(&self.bids, |a, b| a > b);
        let asks = clean(&self.asks, |a, b| a < b);
        match (bids.first(), asks.first()) {
            (Some(b), Some(a)) if b.0 < a.0 => Some((bids, asks)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::dec;

    use super::*;

    #[test]
    fn floats_become_the_decimals_they_print_as() {
        assert_eq!(decimal(189.51), Some(dec!(189.51)));
        assert_eq!(decimal(0.1 + 0.2), Some(dec!(0.30000000000000004)));
        assert_eq!(decimal(100.0), Some(dec!(100)));
        assert_eq!(decimal(f64::NAN), None);
        assert_eq!(decimal(f64::INFINITY), None);
    }

    #[test]
    fn event_time_stays_in_the_ib_second_and_never_goes_back() {
        let mut c = EventClock::default();
        let s = 1_767_364_200i64;
        let base = 1_767_364_200_000_000_000u64;
        // Received inside the second: the receive time.
        assert_eq!(c.stamp(s, UnixNanos(base + 5)), UnixNanos(base + 5));
        // Received late: clamped to the end of IB's second.
        assert_eq!(c.stamp(s, UnixNanos(base + 3_000_000_000)), UnixNanos(base + 999_999_999));
        // An earlier tick after a later one: not before the last time.
        assert_eq!(c.stamp(s, UnixNanos(base)), UnixNanos(base + 999_999_999));
        // Negative IB time (garbage): still monotone.
        assert_eq!(c.stamp(-5, UnixNanos(0)), UnixNanos(base + 999_999_999));
    }

    #[test]
    fn aggressor_by_the_mid() {
        assert_eq!(aggressor(dec!(10.02), dec!(10.00), dec!(10.02)), Side::Buy);
        assert_eq!(aggressor(dec!(10.01), dec!(10.00), dec!(10.02)), Side::Buy);
        assert_eq!(aggressor(dec!(10.00), dec!(10.00), dec!(10.02)), Side::Sell);
    }

    #[test]
    fn depth_book_follows_row_operations() {
        let mut b = DepthBook::default();
        assert!(b.apply(0, 0, 1, dec!(10.00), dec!(300)).is_ok());
        assert!(b.apply(1, 0, 1, dec!(9.99), dec!(100)).is_ok());
        assert!(b.apply(0, 0, 0, dec!(10.01), dec!(200)).is_ok());
        assert!(b.apply(1, 1, 0, dec!(10.02), dec!(900)).is_ok());
        let (bids, asks) = b.snapshot(5).unwrap_or_default();
        assert_eq!(bids, vec![(dec!(10.00), dec!(300)), (dec!(9.99), dec!(100))]);
        assert_eq!(asks, vec![(dec!(10.01), dec!(200)), (dec!(10.02), dec!(900))]);
        assert!(b.apply(0, 2, 1, Decimal::ZERO, Decimal::ZERO).is_ok());
        assert_eq!(b.snapshot(1).map(|(b, _)| b), Some(vec![(dec!(9.99), dec!(100))]));
        // Out-of-sync operations are refused, not applied.
        assert!(b.apply(7, 1, 1, dec!(9.0), dec!(1)).is_err());
        assert!(b.apply(-1, 0, 0, dec!(9.0), dec!(1)).is_err());
        assert!(b.apply(0, 9, 0, dec!(9.0), dec!(1)).is_err());
        // A crossed book is not published.
        assert!(b.apply(0, 0, 1, dec!(10.05), dec!(1)).is_ok());
        assert_eq!(b.snapshot(5), None);
        b.reset();
        assert_eq!(b.snapshot(5), None);
    }
}
