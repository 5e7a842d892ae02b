//! Checked newtypes for the values every event carries. Constructors reject what a venue should
//! never send, and decoding goes through the same constructors, so a value of one of these types
//! is always valid.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A value was outside the domain of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The symbol is empty, too long, or has characters outside `[A-Za-z0-9._:/-]`.
    #[error("invalid symbol {0:?}: 1 to {MAX_SYMBOL_LEN} characters of A-Z a-z 0-9 . _ : / -")]
    Symbol(String),
    /// A price that is zero or negative.
    #[error("price must be positive, got {0}")]
    NonPositivePrice(Decimal),
    /// A quantity below zero.
    #[error("quantity must not be negative, got {0}")]
    NegativeQuantity(Decimal),
    /// A price or quantity above [`MAX_MAGNITUDE`].
    #[error("{0} is above the largest accepted value 10^12")]
    TooLarge(Decimal),
}

/// Largest accepted price or quantity (10^12). No market quotes more, and keeping every factor
/// below it means a product of two (a notional) and sums of many stay far inside the 28 digits
/// of an exact decimal, so arithmetic on them cannot overflow.
pub const MAX_MAGNITUDE: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

/// A map keyed by symbol. The cores look a symbol up several times per event, and std's SipHash
/// took ~4 % of a backtest. aHash is keyed at random per process, as std's hasher is, so names
/// from outside cannot be chosen to collide.
pub type SymbolMap<V> = std::collections::HashMap<Symbol, V, ahash::RandomState>;

/// Longest accepted symbol.
pub const MAX_SYMBOL_LEN: usize = 32;

/// An instrument symbol as the venue names it, e.g. `BTCUSDT` or `AAPL`. Cheap to clone.
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

impl PartialEq for Symbol {
    /// The cores look symbols up several times per event, and [`Symbol::new`] shares one
    /// allocation per name on a thread: the same address is the same name, bytes uncompared
    /// (std compares an `Arc<str>`'s bytes).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl std::hash::Hash for Symbol {
    /// The name's hash, as `str`'s: equal names hash alike whatever their allocation.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Symbols this thread made. A consumer decodes the same few symbols millions of times; sharing
/// them saves two allocations per record and a comparison per lookup. Bounded, so odd input
/// cannot grow it.
const INTERNED_SYMBOLS: usize = 256;

thread_local! {
    static SYMBOLS: std::cell::RefCell<Vec<Symbol>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Symbol {
    /// Checks and wraps a symbol, sharing the allocation of the same name made before on this
    /// thread: the cores' maps then find a name by its address, without comparing its bytes.
    pub fn new(s: impl AsRef<str>) -> Result<Self, ValueError> {
        let s = s.as_ref();
        let shared = SYMBOLS.try_with(|cell| {
            let mut seen = cell.borrow_mut();
            if let Some(known) = seen.iter().find(|k| &*k.0 == s) {
                return Ok(known.clone());
            }
            let symbol = Self::checked(s)?;
            if seen.len() < INTERNED_SYMBOLS {
                seen.push(symbol.clone());
            }
            Ok(symbol)
        });
        // Only while the thread itself is being torn down is its cache gone.
        shared.unwrap_or_else(|_| Self::checked(s))
    }

    fn checked(s: &str) -> Result<Self, ValueError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_SYMBOL_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b));
        if ok { Ok(Self(Arc::from(s))) } else { Err(ValueError::Symbol(s.to_owned())) }
    }

    /// The symbol as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Symbol {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Symbol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a symbol string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Symbol, E> {
                Symbol::new(s).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A strictly positive price, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Price(Decimal);

impl Price {
    /// Checks and wraps a price.
    pub fn new(d: Decimal) -> Result<Self, ValueError> {
        if crate::num::above_max(d) {
            return Err(ValueError::TooLarge(d));
        }
        if crate::num::is_positive(d) { Ok(Self(d)) } else { Err(ValueError::NonPositivePrice(d)) }
    }

    /// The price as a decimal.
    pub fn get(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Price {
    type Error = ValueError;
    fn try_from(d: Decimal) -> Result<Self, Self::Error> {
        Self::new(d)
    }
}

impl From<Price> for Decimal {
    fn from(p: Price) -> Self {
        p.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A non-negative quantity (size, volume), exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Quantity(Decimal);

impl Quantity {
    /// Zero.
    pub const ZERO: Self = Self(Decimal::ZERO);

    /// Checks and wraps a quantity.
    pub fn new(d: Decimal) -> Result<Self, ValueError> {
        if crate::num::above_max(d) {
            return Err(ValueError::TooLarge(d));
        }
        if !d.is_sign_negative() || d.is_zero() { Ok(Self(d)) } else { Err(ValueError::NegativeQuantity(d)) }
    }

    /// The quantity as a decimal.
    pub fn get(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Quantity {
    type Error = ValueError;
    fn try_from(d: Decimal) -> Result<Self, Self::Error> {
        Self::new(d)
    }
}

impl From<Quantity> for Decimal {
    fn from(q: Quantity) -> Self {
        q.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Nanoseconds since the Unix epoch (UTC). Serialized as a plain integer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixNanos(pub u64);

impl UnixNanos {
    /// Whole milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_sub(self, earlier: UnixNanos) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for UnixNanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A unique, time-ordered event id (a UUIDv7), written as a hyphenated UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Buy or sell: the side of an order, or the aggressor of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy side.
    Buy,
    /// Sell side.
    Sell,
}

impl Side {
    /// +1 for buy, -1 for sell.
    pub fn sign(self) -> Decimal {
        match self {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn one_name_is_one_symbol_whatever_thread_made_it() {
        let here = Symbol::new("BTCUSDT").unwrap();
        assert!(Arc::ptr_eq(&here.0, &Symbol::new("BTCUSDT").unwrap().0), "shared on one thread");
        let there = std::thread::spawn(|| Symbol::new("BTCUSDT").unwrap()).join().unwrap();
        assert!(!Arc::ptr_eq(&here.0, &there.0));
        assert_eq!(here, there);
        assert_ne!(here, Symbol::new("ETHUSDT").unwrap());
        let map: SymbolMap<u8> = [(there, 1)].into_iter().collect();
        assert_eq!(map.get(&here), Some(&1), "equal names hash alike");
    }

    #[test]
    fn symbol_rules() {
        assert!(Symbol::new("BTCUSDT").is_ok());
        assert!(Symbol::new("BRK.B").is_ok());
        assert!(Symbol::new("").is_err());
        assert!(Symbol::new("A B").is_err());
        assert!(Symbol::new("X".repeat(MAX_SYMBOL_LEN + 1)).is_err());
    }

    #[test]
    fn price_and_quantity_bounds() {
        assert!(Price::new(dec!(0.01)).is_ok());
        assert_eq!(Price::new(dec!(0)), Err(ValueError::NonPositivePrice(dec!(0))));
        assert!(Price::new(dec!(-1)).is_err());
        assert!(Quantity::new(dec!(0)).is_ok());
        assert!(Quantity::new(dec!(-0.1)).is_err());
        assert_eq!(MAX_MAGNITUDE, dec!(1000000000000));
        assert!(Price::new(MAX_MAGNITUDE).is_ok());
        assert_eq!(Price::new(dec!(1000000000000.01)), Err(ValueError::TooLarge(dec!(1000000000000.01))));
        assert!(Quantity::new(dec!(40000000000000000000000000000)).is_err());
    }

    #[test]
    fn decoding_goes_through_the_checks() {
        assert!(serde_json::from_str::<Price>("\"-5\"").is_err());
        assert!(serde_json::from_str::<Symbol>("\"a b\"").is_err());
        let p: Price = serde_json::from_str("\"61685.99\"").unwrap();
        assert_eq!(p.get(), dec!(61685.99));
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"61685.99\"");
    }
}
