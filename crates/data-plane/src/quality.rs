//! Quality checks: every replayed or live event passes here before it is normalized, and each
//! rejection has a named reason. Pure and synchronous; time is the events' own.

use common::config::QualityConfig;
use common::events::{FeedStatus, Quote, SymbolStatus, Trade};
use common::num::{self, to_f64};
use common::types::{Price, Quantity, SymbolMap, UnixNanos};
use rust_decimal::Decimal;

use crate::source::{Num, RawBody, RawEvent};

/// Why an event was refused. Each is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// A price of zero or below.
    NonPositivePrice,
    /// A size of zero or below.
    NonPositiveSize,
    /// NaN or infinite price or size.
    NonFinite,
    /// A price or size above [`MAX_VALUE`] (10^12): no market quotes that, and sums of it could
    /// overflow.
    OutOfRange,
    /// Bid above ask.
    CrossedBook,
    /// Bid equal to ask.
    LockedBook,
    /// Earlier than the symbol's last accepted event.
    OutOfOrder,
    /// An exact repeat of the symbol's previous accepted event, at the same time.
    Duplicate,
    /// Far outside recent volatility, and not confirmed by the following quotes.
    PriceJump,
    /// Depth levels not strictly ordered best first.
    UnorderedBook,
}

impl Rejection {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [Rejection; 10] = [
        Self::NonPositivePrice,
        Self::NonPositiveSize,
        Self::NonFinite,
        Self::OutOfRange,
        Self::CrossedBook,
        Self::LockedBook,
        Self::OutOfOrder,
        Self::Duplicate,
        Self::PriceJump,
        Self::UnorderedBook,
    ];

    /// snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonPositivePrice => "non_positive_price",
            Self::NonPositiveSize => "non_positive_size",
            Self::NonFinite => "non_finite",
            Self::OutOfRange => "out_of_range",
            Self::CrossedBook => "crossed_book",
            Self::LockedBook => "locked_book",
            Self::OutOfOrder => "out_of_order",
            Self::Duplicate => "duplicate",
            Self::PriceJump => "price_jump",
            Self::UnorderedBook => "unordered_book",
        }
    }
}

/// An event that passed every check, in the common types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A quote.
    Quote(Quote),
    /// A trade.
    Trade(Trade),
}

/// What checking one event produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The event, or why it was refused.
    pub verdict: Result<Accepted, Rejection>,
    /// Status changes this event revealed (a stale symbol coming back), in order.
    pub status: Vec<SymbolStatus>,
}

/// Largest accepted price or size: the bound of the contract's `Price` and `Quantity`.
pub const MAX_VALUE: Decimal = common::types::MAX_MAGNITUDE;

/// Fewer returns than this and only the floor bounds a jump.
const WARMUP_RETURNS: u32 = 20;

#[derive(Debug, Default)]
struct SymbolState {
    last_ts: Option<UnixNanos>,
    /// The last event accepted (at `last_ts`): only a quote that repeats it exactly is a duplicate. A
    /// millisecond feed can go A → B → A within one timestamp, and dropping the second A would
    /// leave the book at B while the market is at A.
    last_body: Option<RawBody>,
    ref_price: Option<f64>,
    variance: f64,
    returns: u32,
    /// A new level seen by consecutive rejected jumps: (price, count, time of the last one).
    pending_jump: Option<(f64, u32, UnixNanos)>,
    stale: bool,
}

/// Per-symbol quality state.
#[derive(Debug)]
pub struct QualityChecker {
    cfg: QualityConfig,
    stale_after_ns: u64,
    symbols: SymbolMap<SymbolState>,
}

impl QualityChecker {
    /// A checker with no history.
    pub fn new(cfg: QualityConfig) -> Self {
        let stale_after_ns = cfg.stale_after_ms.saturating_mul(1_000_000);
        Self { cfg, stale_after_ns, symbols: SymbolMap::default() }
    }

    /// Checks one event.
    pub fn check(&mut self, ev: &RawEvent) -> Checked {
        let mut status = Vec::new();
        let verdict = self.verdict(ev, &mut status);
        Checked { verdict, status }
    }

    fn verdict(&mut self, ev: &RawEvent, status: &mut Vec<SymbolStatus>) -> Result<Accepted, Rejection> {
        let accepted = match &ev.body {
            RawBody::Quote { bid_px, bid_sz, ask_px, ask_sz } => {
                let (bid_px, ask_px) = (price(*bid_px)?, price(*ask_px)?);
                let (bid_sz, ask_sz) = (size(*bid_sz)?, size(*ask_sz)?);
                match num::cmp(bid_px.get(), ask_px.get()) {
                    std::cmp::Ordering::Greater => return Err(Rejection::CrossedBook),
                    std::cmp::Ordering::Equal => return Err(Rejection::LockedBook),
                    std::cmp::Ordering::Less => {}
                }
                Accepted::Quote(Quote { symbol: ev.symbol.clone(), bid_px, bid_sz, ask_px, ask_sz })
            }
            RawBody::Trade { price: px, size: sz, aggressor } => Accepted::Trade(Trade {
                symbol: ev.symbol.clone(),
                price: price(*px)?,
                size: size(*sz)?,
                aggressor: *aggressor,
            }),
        };
        let cfg = &self.cfg;
        // Cloning a symbol is a reference-count increment; one hash lookup instead of two.
        let state = self.symbols.entry(ev.symbol.clone()).or_default();
        match state.last_ts {
            Some(last) if ev.ts < last => return Err(Rejection::OutOfOrder),
            // A quote that repeats the last event changes nothing, and is dropped. A trade that
            // repeats it is another trade: a feed at millisecond resolution prints one order's fills
            // at one price as equal trades (15 % of the spot sample's trades, cut to the
            // millisecond), and without a trade id nothing tells a re-sent one from them; dropping
            // real trades would undercount volume and the trade imbalance.
            Some(last)
                if ev.ts == last && state.last_body == Some(ev.body) && matches!(ev.body, RawBody::Quote { .. }) =>
            {
                return Err(Rejection::Duplicate);
            }
            _ => {}
        }
        match &accepted {
            Accepted::Quote(q) => {
                check_jump(cfg, state, ev.ts, (to_f64(q.bid_px.get()) + to_f64(q.ask_px.get())) * 0.5)?
            }
            Accepted::Trade(t) => {
                if let Some(reference) = state.ref_price {
                    let r = (to_f64(t.price.get()) / reference).ln().abs();
                    if r > threshold(cfg, state) {
                        return Err(Rejection::PriceJump);
                    }
                }
            }
        }
        state.last_body = Some(ev.body);
        state.last_ts = Some(ev.ts);
        if state.stale {
            state.stale = false;
            status.push(SymbolStatus { symbol: ev.symbol.clone(), status: FeedStatus::Active, last_update: ev.ts });
        }
        Ok(accepted)
    }

    /// Marks every symbol with no accepted update for longer than the staleness limit as of `now`
    /// (event time) as stale, and returns the changes.
    pub fn sweep_stale(&mut self, now: UnixNanos) -> Vec<SymbolStatus> {
        let mut changes = Vec::new();
        for (symbol, state) in &mut self.symbols {
            if let Some(last) = state.last_ts
                && !state.stale
                && now.saturating_sub(last) > self.stale_after_ns
            {
                state.stale = true;
                changes.push(SymbolStatus { symbol: symbol.clone(), status: FeedStatus::Stale, last_update: last });
            }
        }
        changes.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        changes
    }

    /// How many symbols are stale now.
    pub fn stale_count(&self) -> usize {
        self.symbols.values().filter(|s| s.stale).count()
    }
}

fn price(n: Num) -> Result<Price, Rejection> {
    match n {
        Num::NonFinite => Err(Rejection::NonFinite),
        Num::Value(d) if num::above_max(d) => Err(Rejection::OutOfRange),
        Num::Value(d) => Price::new(d).map_err(|_| Rejection::NonPositivePrice),
    }
}

fn size(n: Num) -> Result<Quantity, Rejection> {
    match n {
        Num::NonFinite => Err(Rejection::NonFinite),
        Num::Value(d) if !num::is_positive(d) => Err(Rejection::NonPositiveSize),
        Num::Value(d) if num::above_max(d) => Err(Rejection::OutOfRange),
        Num::Value(d) => Quantity::new(d).map_err(|_| Rejection::NonPositiveSize),
    }
}

fn threshold(cfg: &QualityConfig, state: &SymbolState) -> f64 {
    let floor = cfg.jump_floor_bps * 1e-4;
    if state.returns < WARMUP_RETURNS { floor } else { (cfg.jump_sigmas * state.variance.sqrt()).max(floor) }
}

/// Accepts a mid within the jump threshold of the reference, or a new level confirmed by
/// `jump_confirmations` consecutive quotes at distinct, later times (so one bad tick repeated at
/// one timestamp confirms nothing); updates the volatility estimate on acceptance.
fn check_jump(cfg: &QualityConfig, state: &mut SymbolState, ts: UnixNanos, mid: f64) -> Result<(), Rejection> {
    let Some(reference) = state.ref_price else {
        state.ref_price = Some(mid);
        return Ok(());
    };
    let r = (mid / reference).ln();
    if r.abs() > threshold(cfg, state) {
        let floor = cfg.jump_floor_bps * 1e-4;
        let count = match state.pending_jump {
            Some((level, n, at)) if (mid / level).ln().abs() <= floor => n + u32::from(ts > at),
            _ => 1,
        };
        if count < cfg.jump_confirmations {
            state.pending_jump = Some((mid, count, ts));
            return Err(Rejection::PriceJump);
        }
        // The market really moved: start over from the new level, volatility included.
        state.pending_jump = None;
        state.ref_price = Some(mid);
        return Ok(());
    }
    state.pending_jump = None;
    state.variance = (1.0 - cfg.volatility_alpha) * state.variance + cfg.volatility_alpha * r * r;
    state.returns = state.returns.saturating_add(1);
    state.ref_price = Some(mid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::types::{Side, Symbol};
    use rust_decimal::dec;

    fn quote(ts: u64, bid: Decimal, ask: Decimal) -> RawEvent {
        RawEvent {
            seq: ts,
            pass: 0,
            ts: UnixNanos(ts),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            body: RawBody::Quote {
                bid_px: Num::Value(bid),
                bid_sz: Num::Value(dec!(1)),
                ask_px: Num::Value(ask),
                ask_sz: Num::Value(dec!(2)),
            },
        }
    }

    fn with_body(ts: u64, body: RawBody) -> RawEvent {
        RawEvent { seq: ts, pass: 0, ts: UnixNanos(ts), symbol: Symbol::new("BTCUSDT").unwrap(), body }
    }

    fn checker() -> QualityChecker {
        QualityChecker::new(QualityConfig { stale_after_ms: 1_000, ..QualityConfig::default() })
    }

    fn verdict(c: &mut QualityChecker, ev: &RawEvent) -> Result<(), Rejection> {
        c.check(ev).verdict.map(|_| ())
    }

    #[test]
    fn value_rules() {
        let n = |d| Num::Value(d);
        let cases = [
            (
                RawBody::Quote { bid_px: n(dec!(0)), bid_sz: n(dec!(1)), ask_px: n(dec!(2)), ask_sz: n(dec!(1)) },
                Rejection::NonPositivePrice,
            ),
            (
                RawBody::Quote { bid_px: n(dec!(1)), bid_sz: n(dec!(1)), ask_px: n(dec!(-2)), ask_sz: n(dec!(1)) },
                Rejection::NonPositivePrice,
            ),
            (
                RawBody::Quote { bid_px: n(dec!(1)), bid_sz: n(dec!(0)), ask_px: n(dec!(2)), ask_sz: n(dec!(1)) },
                Rejection::NonPositiveSize,
            ),
            (
                RawBody::Quote { bid_px: n(dec!(1)), bid_sz: n(dec!(1)), ask_px: n(dec!(2)), ask_sz: n(dec!(-1)) },
                Rejection::NonPositiveSize,
            ),
            (
                RawBody::Quote { bid_px: Num::NonFinite, bid_sz: n(dec!(1)), ask_px: n(dec!(2)), ask_sz: n(dec!(1)) },
                Rejection::NonFinite,
            ),
            (
                RawBody::Quote { bid_px: n(dec!(1)), bid_sz: n(dec!(1)), ask_px: n(dec!(2)), ask_sz: Num::NonFinite },
                Rejection::NonFinite,
            ),
            (
                RawBody::Quote { bid_px: n(dec!(3)), bid_sz: n(dec!(1)), ask_px: n(dec!(2)), ask_sz: n(dec!(1)) },
                Rejection::CrossedBook,
            ),
            (
                RawBody::Quote { bid_px: n(dec!(2)), bid_sz: n(dec!(1)), ask_px: n(dec!(2)), ask_sz: n(dec!(1)) },
                Rejection::LockedBook,
            ),
            (RawBody::Trade { price: n(dec!(0)), size: n(dec!(1)), aggressor: Side::Buy }, Rejection::NonPositivePrice),
            (RawBody::Trade { price: n(dec!(1)), size: n(dec!(0)), aggressor: Side::Buy }, Rejection::NonPositiveSize),
            (RawBody::Trade { price: Num::NonFinite, size: n(dec!(1)), aggressor: Side::Sell }, Rejection::NonFinite),
        ];
        for (body, expected) in cases {
            let mut c = checker();
            assert_eq!(verdict(&mut c, &with_body(1, body)), Err(expected), "{body:?}");
        }
        let mut c = checker();
        assert_eq!(verdict(&mut c, &quote(1, dec!(1), dec!(1.01))), Ok(()));
        let huge = RawBody::Quote {
            bid_px: n(dec!(40000000000000000000000000000)),
            bid_sz: n(dec!(1)),
            ask_px: n(dec!(41000000000000000000000000000)),
            ask_sz: n(dec!(1)),
        };
        assert_eq!(verdict(&mut checker(), &with_body(1, huge)), Err(Rejection::OutOfRange));
        let huge_size = RawBody::Trade { price: n(dec!(1)), size: n(MAX_VALUE + dec!(1)), aggressor: Side::Buy };
        assert_eq!(verdict(&mut checker(), &with_body(1, huge_size)), Err(Rejection::OutOfRange));
        assert_eq!(MAX_VALUE, dec!(1000000000000));
    }

    #[test]
    fn a_repeated_bad_tick_confirms_nothing() {
        let mut c = checker();
        for i in 0..30 {
            assert_eq!(verdict(&mut c, &quote(i, dec!(60000), dec!(60001))), Ok(()));
        }
        for _ in 0..5 {
            let v = verdict(&mut c, &quote(100, dec!(66000), dec!(66001)));
            assert!(matches!(v, Err(Rejection::PriceJump | Rejection::Duplicate)), "{v:?}");
        }
        assert_eq!(verdict(&mut c, &quote(101, dec!(60000), dec!(60001))), Ok(()));
    }

    #[test]
    fn many_events_at_one_timestamp_stay_cheap_and_exact() {
        let mut c = checker();
        for i in 0..2_000u32 {
            let bid = dec!(100) + Decimal::from(i % 50) / dec!(100);
            let body = RawBody::Quote {
                bid_px: Num::Value(bid),
                bid_sz: Num::Value(Decimal::from(i + 1)),
                ask_px: Num::Value(bid + dec!(1)),
                ask_sz: Num::Value(dec!(1)),
            };
            assert_eq!(verdict(&mut c, &with_body(7, body)), Ok(()));
            assert_eq!(verdict(&mut c, &with_body(7, body)), Err(Rejection::Duplicate));
        }
    }

    #[test]
    fn order_and_duplicates_per_symbol() {
        let mut c = checker();
        assert_eq!(verdict(&mut c, &quote(100, dec!(100), dec!(101))), Ok(()));
        assert_eq!(verdict(&mut c, &quote(100, dec!(100), dec!(101))), Err(Rejection::Duplicate));
        assert_eq!(verdict(&mut c, &quote(100, dec!(100), dec!(100.5))), Ok(()), "same time, new content");
        assert_eq!(verdict(&mut c, &quote(100, dec!(100), dec!(101))), Ok(()), "A -> B -> A: the book is back at A");
        assert_eq!(verdict(&mut c, &quote(100, dec!(100), dec!(101))), Err(Rejection::Duplicate));
        let trade =
            || RawBody::Trade { price: Num::Value(dec!(100.5)), size: Num::Value(dec!(1)), aggressor: Side::Buy };
        assert_eq!(verdict(&mut c, &with_body(100, trade())), Ok(()));
        assert_eq!(verdict(&mut c, &quote(100, dec!(100), dec!(101))), Ok(()), "a quote after a trade is not a repeat");
        assert_eq!(verdict(&mut c, &with_body(100, trade())), Ok(()), "two trades with a quote between");
        assert_eq!(verdict(&mut c, &with_body(100, trade())), Ok(()), "an equal trade is another trade");
        assert_eq!(verdict(&mut c, &quote(99, dec!(100), dec!(101))), Err(Rejection::OutOfOrder));
        assert_eq!(verdict(&mut c, &quote(101, dec!(100), dec!(101))), Ok(()), "same content, later");
        let mut other = quote(50, dec!(10), dec!(11));
        other.symbol = Symbol::new("ETHUSDT").unwrap();
        assert_eq!(verdict(&mut c, &other), Ok(()), "order is per symbol");
    }

    #[test]
    fn isolated_spike_rejected_but_confirmed_move_accepted() {
        let mut c = checker();
        for i in 0..50 {
            let bid = dec!(60000) + Decimal::from(i % 3);
            assert_eq!(verdict(&mut c, &quote(i, bid, bid + dec!(1))), Ok(()));
        }
        // Just inside the 50 bps floor (volatility is tiny here, so the floor rules).
        assert_eq!(verdict(&mut c, &quote(100, dec!(60290), dec!(60291))), Ok(()));
        assert_eq!(verdict(&mut c, &quote(101, dec!(60000), dec!(60001))), Ok(()));
        // A fat-finger spike, then back to normal: the spike alone is refused.
        assert_eq!(verdict(&mut c, &quote(102, dec!(66000), dec!(66001))), Err(Rejection::PriceJump));
        assert_eq!(verdict(&mut c, &quote(103, dec!(60001), dec!(60002))), Ok(()));
        // A real gap: the first two quotes at the new level are held back, the third confirms it.
        assert_eq!(verdict(&mut c, &quote(104, dec!(57000), dec!(57001))), Err(Rejection::PriceJump));
        assert_eq!(verdict(&mut c, &quote(105, dec!(57001), dec!(57002))), Err(Rejection::PriceJump));
        assert_eq!(verdict(&mut c, &quote(106, dec!(57000), dec!(57002))), Ok(()));
        assert_eq!(verdict(&mut c, &quote(107, dec!(57001), dec!(57002))), Ok(()));
        // Trades far from the mid are refused too.
        let trade = |ts, p| {
            with_body(ts, RawBody::Trade { price: Num::Value(p), size: Num::Value(dec!(1)), aggressor: Side::Buy })
        };
        assert_eq!(verdict(&mut c, &trade(108, dec!(57001))), Ok(()));
        assert_eq!(verdict(&mut c, &trade(109, dec!(5700))), Err(Rejection::PriceJump));
    }

    #[test]
    fn stale_then_active() {
        let mut c = checker();
        assert!(c.check(&quote(0, dec!(1), dec!(2))).status.is_empty());
        assert!(c.sweep_stale(UnixNanos(1_000_000_000)).is_empty(), "exactly at the limit is not stale");
        let stale = c.sweep_stale(UnixNanos(1_000_000_001));
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].status, FeedStatus::Stale);
        assert_eq!(c.stale_count(), 1);
        assert!(c.sweep_stale(UnixNanos(5_000_000_000)).is_empty(), "reported once");
        let back = c.check(&quote(6_000_000_000, dec!(1), dec!(2)));
        assert_eq!(back.status.len(), 1);
        assert_eq!(back.status[0].status, FeedStatus::Active);
        assert_eq!(c.stale_count(), 0);
    }
}
