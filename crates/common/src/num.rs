//! Fast paths for the few decimal operations every market event goes through: parsing a replay
//! field, the mid of a quote, the conversion to `f64` the volatility and signal maths need, and
//! the contract's bounds.
//!
//! Why not only `rust_decimal`: its general routines (any scale, 96-bit mantissas, `u128`
//! division) cost 70–270 instructions a call, and the backtest makes several per event in each
//! core — together ~15 % of its time. Prices and sizes on a real feed have short mantissas, so
//! each function here does the common case in `u64`/`u128` arithmetic and hands anything else
//! to `rust_decimal`. Each returns **exactly** what the `rust_decimal` expression it replaces
//! returns (the same value *and* scale, the same `f64` bits); the tests below check that against
//! `rust_decimal` on random input, because a record's bytes, the golden masters and the
//! backtest–services parity all depend on it.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::types::MAX_MAGNITUDE;

/// Largest scale a `Decimal` holds.
const MAX_SCALE: u32 = 28;

/// 2^96: a `Decimal`'s mantissa is below it.
const MANTISSA_LIMIT: u128 = 1 << 96;

/// 10^k for k = 0..=19 (10^19 is the largest power of ten in a `u64`).
const POW10: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut k = 1;
    while k < 20 {
        p[k] = p[k - 1] * 10;
        k += 1;
    }
    p
};

/// `Decimal::from_str(s)`, for the plain form a replay file writes: digits with at most one `.`
/// between digits, no sign, at most 19 digits in all. Anything else (signs, exponents, long
/// mantissas, `_`) goes to `Decimal::from_str`.
#[inline]
pub fn parse(s: &str) -> Result<Decimal, rust_decimal::Error> {
    let b = s.as_bytes();
    let (int, frac) = match b.iter().position(|&c| c == b'.') {
        Some(dot) => (&b[..dot], &b[dot + 1..]),
        None => (b, &b[..0]),
    };
    // "5." and ".5" are left to rust_decimal, as are more than 19 digits (10^19 - 1 fits a u64).
    if int.is_empty() || (frac.is_empty() && int.len() < b.len()) || int.len() + frac.len() > 19 {
        return s.parse();
    }
    let mut m = 0u64;
    for digits in [int, frac] {
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return s.parse();
            }
            m = m * 10 + u64::from(d);
        }
    }
    Ok(Decimal::from_parts(m as u32, (m >> 32) as u32, 0, false, frac.len() as u32))
}

/// `(a + b) * 0.5`, as `rust_decimal` computes it: the sum at the larger scale, then the
/// mantissa times 5 at one more scale. Falls back where [`add`] does, for negatives and a
/// scale above 27.
#[inline]
pub fn mid(a: Decimal, b: Decimal) -> Decimal {
    if a.is_sign_negative() || b.is_sign_negative() {
        return (a + b) * Decimal::new(5, 1);
    }
    // A sum with zero is the other operand at its own scale, as rust_decimal has it.
    let sum = match (a.is_zero(), b.is_zero()) {
        (true, _) => Some((b.mantissa(), b.scale())),
        (_, true) => Some((a.mantissa(), a.scale())),
        _ => exact_sum(a, b, false),
    };
    match sum {
        Some((sum, s)) if s < MAX_SCALE && sum > 0 && (sum as u128) * 5 < MANTISSA_LIMIT => {
            let m = (sum as u128) * 5;
            Decimal::from_parts(m as u32, (m >> 32) as u32, (m >> 64) as u32, false, s + 1)
        }
        _ => (a + b) * Decimal::new(5, 1),
    }
}

/// `a + b`, as `rust_decimal` computes it: with a zero operand, the other one as it is; else
/// both at the larger scale, summed exactly. Falls back when a mantissa at that scale or the sum
/// would not fit 96 bits (where `rust_decimal` rounds) and when the sum is zero (its sign is
/// `rust_decimal`'s business).
#[inline]
pub fn add(a: Decimal, b: Decimal) -> Decimal {
    signed_sum(a, b, false).unwrap_or_else(|| a + b)
}

/// `a - b`, as `rust_decimal` computes it; see [`add`].
#[inline]
pub fn sub(a: Decimal, b: Decimal) -> Decimal {
    signed_sum(a, b, true).unwrap_or_else(|| a - b)
}

#[inline(always)]
fn signed_sum(a: Decimal, b: Decimal, negate_b: bool) -> Option<Decimal> {
    // rust_decimal's rule for a zero operand: the other one as it is, at its own scale (not at
    // the larger one), negated when it is subtracted and not zero itself.
    if a.is_zero() {
        let mut r = b;
        if negate_b && !b.is_zero() {
            r.set_sign_negative(b.is_sign_positive());
        }
        return Some(r);
    }
    if b.is_zero() {
        return Some(a);
    }
    let (sum, s) = exact_sum(a, b, negate_b)?;
    let m = sum.unsigned_abs();
    (m != 0).then(|| Decimal::from_parts(m as u32, (m >> 32) as u32, (m >> 64) as u32, sum < 0, s))
}

/// `a ± b` exactly, as a signed mantissa below 2^96 in magnitude and its scale (the larger of
/// the two), or `None` where `rust_decimal` would have to round.
#[inline(always)]
fn exact_sum(a: Decimal, b: Decimal, negate_b: bool) -> Option<(i128, u32)> {
    // A zero operand keeps the other's scale: the callers' business.
    if a.is_zero() || b.is_zero() {
        return None;
    }
    let s = a.scale().max(b.scale());
    // At the larger scale: a mantissa as it is, or a u64 one times a power of ten (one u64 × u64
    // multiply; a wider one is left to rust_decimal).
    let widen = |d: Decimal| -> Option<i128> {
        let k = s - d.scale();
        if k == 0 {
            return Some(d.mantissa());
        }
        let m = u64::try_from(d.mantissa().unsigned_abs()).ok()?;
        let w = u128::from(m) * u128::from(*POW10.get(k as usize)?);
        (w < MANTISSA_LIMIT).then_some(if d.is_sign_negative() { -(w as i128) } else { w as i128 })
    };
    let (x, y) = (widen(a)?, widen(b)?);
    // Both below 2^96 in magnitude: the i128 sum cannot overflow.
    let sum = if negate_b { x - y } else { x + y };
    (sum.unsigned_abs() < MANTISSA_LIMIT).then_some((sum, s))
}

/// `a.cmp(&b)`: at one scale and one sign, the mantissas' order (the common case of two prices
/// or two sizes of one instrument); `rust_decimal`'s comparison otherwise.
#[inline]
pub fn cmp(a: Decimal, b: Decimal) -> std::cmp::Ordering {
    if a.scale() == b.scale() && a.is_sign_positive() && b.is_sign_positive() {
        a.mantissa().cmp(&b.mantissa())
    } else {
        a.cmp(&b)
    }
}

/// `d.to_f64()`, bit for bit: `rust_decimal`'s own steps (integral part, fraction over the
/// power of ten, the sum rounded at the decimal's scale), in `u64` when the mantissa fits one.
#[inline]
pub fn to_f64(d: Decimal) -> f64 {
    let scale = d.scale();
    let m = d.mantissa().unsigned_abs();
    let (Ok(m), Some(&precision)) = (u64::try_from(m), POW10.get(scale as usize)) else {
        return d.to_f64().unwrap_or(f64::NAN);
    };
    if scale == 0 {
        return d.to_f64().unwrap_or(f64::NAN);
    }
    let neg = d.is_sign_negative();
    let (integral, frac) = (m / precision, m % precision);
    // 10^k up to 10^19 is exact as an f64, as is a u64 below 2^53; above, both conversions
    // round to nearest, as rust_decimal's u128 ones do.
    let frac_f64 = frac as f64 / precision as f64;
    let integral = integral as f64;
    if frac_f64 == 0.0 {
        return if neg { -integral } else { integral };
    }
    let value = integral + frac_f64;
    let round_to = 10f64.powi(scale as i32);
    let rounded = (value * round_to).round() / round_to;
    if neg { -rounded } else { rounded }
}

/// `d > 0`. A decimal's sign and zero test are bit tests; the general comparison rescales.
#[inline]
pub fn is_positive(d: Decimal) -> bool {
    d.is_sign_positive() && !d.is_zero()
}

/// `d > MAX_MAGNITUDE` (10^12). A mantissa of at most 10^12 is at most 10^12 at any scale.
#[inline]
pub fn above_max(d: Decimal) -> bool {
    d.mantissa() > 1_000_000_000_000 && d > MAX_MAGNITUDE
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    /// Same value and same scale: what a record's bytes show.
    fn same(a: Decimal, b: Decimal) -> bool {
        a.serialize() == b.serialize()
    }

    fn decimal() -> impl Strategy<Value = Decimal> {
        (any::<u128>(), 0u32..=28, any::<bool>(), 0u32..=5).prop_map(|(m, scale, neg, width)| {
            // Mostly short mantissas, as prices are, zeros of either sign (a running sum that
            // cancels), and some at the 96-bit edge.
            let m = match width {
                0 => m % 1_000_000,
                1 => m % 10_000_000_000_000,
                2 => m % 2,
                3 => m % (1 << 64),
                _ => m % (1 << 96),
            };
            Decimal::from_parts(m as u32, (m >> 32) as u32, (m >> 64) as u32, neg, scale)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn parse_is_from_str(s in "[0-9]{0,21}(\\.[0-9]{0,21})?|[-+.0-9_eE]{0,24}") {
            match (parse(&s), Decimal::from_str(&s)) {
                (Ok(a), Ok(b)) => prop_assert!(same(a, b), "{s}: {a} vs {b}"),
                (a, b) => prop_assert_eq!(a.is_ok(), b.is_ok(), "{}", s),
            }
        }

        #[test]
        fn mid_is_the_decimal_expression(a in decimal(), b in decimal()) {
            let reference = std::panic::catch_unwind(|| (a + b) * Decimal::new(5, 1));
            if let Ok(r) = reference {
                let m = mid(a, b);
                prop_assert!(same(m, r), "{a} {b}: {m} vs {r}");
            }
        }

        #[test]
        fn add_and_sub_are_the_decimal_operators(a in decimal(), b in decimal()) {
            if let Ok(r) = std::panic::catch_unwind(|| a + b) {
                let m = add(a, b);
                prop_assert!(same(m, r), "{a} + {b}: {m} vs {r}");
            }
            if let Ok(r) = std::panic::catch_unwind(|| a - b) {
                let m = sub(a, b);
                prop_assert!(same(m, r), "{a} - {b}: {m} vs {r}");
            }
            prop_assert_eq!(cmp(a, b), a.cmp(&b));
            prop_assert_eq!(cmp(a, a), std::cmp::Ordering::Equal);
        }

        #[test]
        fn same_scale_operands_take_the_fast_paths_exactly(a in decimal(), b in decimal()) {
            // Two prices of one instrument: one scale. Rescale b to a's scale through its mantissa.
            let b = Decimal::from_i128_with_scale(b.mantissa() % (1 << 64), a.scale());
            prop_assert_eq!(cmp(a, b), a.cmp(&b));
            if let Ok(r) = std::panic::catch_unwind(|| a + b) {
                prop_assert!(same(add(a, b), r));
            }
            if let Ok(r) = std::panic::catch_unwind(|| a - b) {
                prop_assert!(same(sub(a, b), r));
            }
            if let Ok(r) = std::panic::catch_unwind(|| (a + b) * Decimal::new(5, 1)) {
                prop_assert!(same(mid(a, b), r));
            }
        }

        #[test]
        fn to_f64_is_rust_decimals(d in decimal()) {
            let (a, b) = (to_f64(d), d.to_f64().unwrap_or(f64::NAN));
            prop_assert_eq!(a.to_bits(), b.to_bits(), "{}", d);
        }

        #[test]
        fn bounds_are_the_comparisons(d in decimal()) {
            prop_assert_eq!(is_positive(d), d > Decimal::ZERO);
            prop_assert_eq!(above_max(d), d > MAX_MAGNITUDE);
        }
    }

    #[test]
    fn worked_examples() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert!(same(parse("61685.99").unwrap(), d("61685.99")));
        assert!(same(parse("0.00100").unwrap(), d("0.00100")));
        assert!(same(parse("007").unwrap(), d("7")));
        assert!(parse("1.2.3").is_err() && parse("").is_err() && parse("abc").is_err());
        // 2.00: the sum 4.0 at scale 1, times 0.5 at scale 2.
        assert!(same(mid(d("1.5"), d("2.5")), d("2.00")));
        assert!(same(mid(d("61685.99"), d("61686")), d("61685.995")));
        // A sum with zero is the other operand at its own scale, as rust_decimal has it.
        assert!(same(add(d("0.00"), d("1.5")), d("1.5")) && same(sub(d("0.0"), d("3")), d("-3")));
        assert!(same(mid(d("1"), d("0.0")), d("0.5")));
        assert_eq!(to_f64(d("61685.99")), 61685.99);
        assert_eq!(to_f64(d("-0.5")), -0.5);
        assert!(above_max(d("1000000000000.01")) && !above_max(d("1000000000000")));
        assert!(!is_positive(d("0.000")) && !is_positive(-d("0.000")) && is_positive(d("0.001")));
    }
}
