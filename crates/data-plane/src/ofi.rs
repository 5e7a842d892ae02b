//! Order Flow Imbalance, exactly as Cont, Kukanov & Stoikov (2014), per symbol and per window of
//! event time, plus the multi-level OFI of Xu, Gould & Howison (2019) when depth arrives.
//!
//! For consecutive quotes n-1, n of one symbol:
//! `e_n = q^B_n·1[P^B_n ≥ P^B_{n-1}] − q^B_{n-1}·1[P^B_n ≤ P^B_{n-1}]
//!      − q^A_n·1[P^A_n ≤ P^A_{n-1}] + q^A_{n-1}·1[P^A_n ≥ P^A_{n-1}]`, 0 for the first quote.
//! A window `[k·W, (k+1)·W)` holding at least one quote is emitted when the symbol's first event
//! past it arrives, or earlier when [`OfiEngine::close_until`] says time has moved past it (the
//! Data Plane calls it as event time crosses each boundary), or at [`OfiEngine::finish`]. At each
//! boundary a symbol without a window gets a heartbeat instead ([`OfiEngine::heartbeat`]).
//! Arithmetic is exact (decimal), so the values do not depend on replay speed or platform.

use common::events::{DepthUpdate, OfiWindow, Quote, Trade};
use common::num;
use common::types::{EventId, Side, Symbol, SymbolMap, UnixNanos};
use rust_decimal::Decimal;

/// Decimal places kept in the derived ratios (`mean_depth`, `ofi_normalized`).
const RATIO_DP: u32 = 12;

/// One side's best price and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Book {
    bid_px: Decimal,
    bid_sz: Decimal,
    ask_px: Decimal,
    ask_sz: Decimal,
}

/// The CKS contribution of book `now` after book `prev`.
fn contribution(prev: &Book, now: &Book) -> Decimal {
    // num's exact fast paths: this runs on every quote, four comparisons and up to four sums.
    let (bid, ask) = (num::cmp(now.bid_px, prev.bid_px), num::cmp(now.ask_px, prev.ask_px));
    let mut e = Decimal::ZERO;
    if bid.is_ge() {
        e = num::add(e, now.bid_sz);
    }
    if bid.is_le() {
        e = num::sub(e, prev.bid_sz);
    }
    if ask.is_le() {
        e = num::sub(e, now.ask_sz);
    }
    if ask.is_ge() {
        e = num::add(e, prev.ask_sz);
    }
    e
}

#[derive(Debug)]
struct Window {
    index: u64,
    ofi: Decimal,
    n_quotes: u32,
    n_trades: u32,
    mid_open: Option<Decimal>,
    mid_close: Decimal,
    depth_sum: Decimal,
    spread_sum: Decimal,
    trade_imbalance: Decimal,
    trade_volume: Decimal,
    mlofi: Option<Vec<Decimal>>,
    data_gap: bool,
    last_quote: Option<EventId>,
}

#[derive(Debug, Default)]
struct SymbolOfi {
    prev: Option<Book>,
    prev_depth: Option<Vec<Book>>,
    last_mid: Option<Decimal>,
    window: Option<Window>,
    gap: bool,
    /// End of the latest window published (a heartbeat included), and the last quote's id.
    published_until: u64,
    last_quote: Option<EventId>,
}

/// A closed window and the quote that closed its accounting (its causation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedWindow {
    /// The window.
    pub window: OfiWindow,
    /// The window's last quote (none for the heartbeat of a symbol never quoted).
    pub last_quote: Option<EventId>,
}

/// OFI state of every symbol.
#[derive(Debug)]
pub struct OfiEngine {
    window_ns: u64,
    depth_levels: usize,
    symbols: SymbolMap<SymbolOfi>,
}

impl OfiEngine {
    /// Windows of `window_ms` milliseconds; multi-level OFI over `depth_levels` levels.
    pub fn new(window_ms: u64, depth_levels: usize) -> Self {
        Self { window_ns: window_ms.saturating_mul(1_000_000).max(1), depth_levels, symbols: SymbolMap::default() }
    }

    /// `symbol`'s state, created on first sight.
    fn state(&mut self, symbol: &Symbol) -> &mut SymbolOfi {
        // Cloning a symbol is a reference-count increment; one hash lookup instead of two.
        self.symbols.entry(symbol.clone()).or_default()
    }

    /// Prepares `symbol`'s window for an event at `ts`: closes an older one into `out`.
    fn roll<'a>(
        window_ns: u64,
        state: &'a mut SymbolOfi,
        symbol: &Symbol,
        ts: UnixNanos,
        out: &mut Vec<ClosedWindow>,
    ) -> &'a mut Window {
        let k = ts.0 / window_ns;
        if state.window.as_ref().is_some_and(|w| w.index < k)
            && let Some(closed) = Self::close(window_ns, symbol, state)
        {
            out.push(closed);
        }
        let gap = std::mem::take(&mut state.gap);
        let last_mid = state.last_mid;
        let w = state.window.get_or_insert(Window {
            index: k,
            ofi: Decimal::ZERO,
            n_quotes: 0,
            n_trades: 0,
            mid_open: last_mid,
            mid_close: Decimal::ZERO,
            depth_sum: Decimal::ZERO,
            spread_sum: Decimal::ZERO,
            trade_imbalance: Decimal::ZERO,
            trade_volume: Decimal::ZERO,
            mlofi: None,
            data_gap: false,
            last_quote: None,
        });
        w.data_gap |= gap;
        w
    }

    fn close(window_ns: u64, symbol: &Symbol, state: &mut SymbolOfi) -> Option<ClosedWindow> {
        let w = state.window.take()?;
        let last_quote = w.last_quote?;
        let n = Decimal::from(w.n_quotes);
        let mean_depth = (w.depth_sum / (n * Decimal::TWO)).round_dp(RATIO_DP);
        let mean_spread = (w.spread_sum / n).round_dp(RATIO_DP);
        let ofi_normalized = w.ofi.checked_div(mean_depth).unwrap_or_default().round_dp(RATIO_DP);
        let mid_open = w.mid_open.unwrap_or(w.mid_close);
        let start = w.index * window_ns;
        state.published_until = state.published_until.max(start + window_ns);
        Some(ClosedWindow {
            window: OfiWindow {
                symbol: symbol.clone(),
                window_start: UnixNanos(start),
                window_end: UnixNanos(start + window_ns),
                ofi: w.ofi.normalize(),
                n_quotes: w.n_quotes,
                n_trades: w.n_trades,
                mid_open: mid_open.normalize(),
                mid_close: w.mid_close.normalize(),
                mid_change: (w.mid_close - mid_open).normalize(),
                mean_depth: mean_depth.normalize(),
                mean_spread: mean_spread.normalize(),
                ofi_normalized: ofi_normalized.normalize(),
                trade_imbalance: w.trade_imbalance.normalize(),
                trade_volume: w.trade_volume.normalize(),
                mlofi: w.mlofi.map(|v| v.into_iter().map(|d| d.normalize()).collect()),
                data_gap: w.data_gap,
            },
            last_quote: Some(last_quote),
        })
    }

    /// Adds an accepted quote.
    pub fn on_quote(&mut self, ts: UnixNanos, id: EventId, q: &Quote, out: &mut Vec<ClosedWindow>) {
        let window_ns = self.window_ns;
        let state = self.state(&q.symbol);
        let book =
            Book { bid_px: q.bid_px.get(), bid_sz: q.bid_sz.get(), ask_px: q.ask_px.get(), ask_sz: q.ask_sz.get() };
        let e = state.prev.as_ref().map_or(Decimal::ZERO, |prev| contribution(prev, &book));
        let mid = q.mid();
        let w = Self::roll(window_ns, state, &q.symbol, ts, out);
        w.mid_open.get_or_insert(mid);
        w.ofi = num::add(w.ofi, e);
        w.n_quotes += 1;
        w.mid_close = mid;
        w.depth_sum = num::add(w.depth_sum, num::add(book.bid_sz, book.ask_sz));
        w.spread_sum = num::add(w.spread_sum, num::sub(book.ask_px, book.bid_px));
        w.last_quote = Some(id);
        state.last_quote = Some(id);
        state.prev = Some(book);
        state.last_mid = Some(mid);
    }

    /// Adds an accepted trade to its window's trade imbalance and volume.
    pub fn on_trade(&mut self, ts: UnixNanos, t: &Trade, out: &mut Vec<ClosedWindow>) {
        let window_ns = self.window_ns;
        let state = self.state(&t.symbol);
        let w = Self::roll(window_ns, state, &t.symbol, ts, out);
        w.n_trades += 1;
        // A size is positive: sign × size is the size or its negation, exactly.
        let signed = if t.aggressor == Side::Buy { t.size.get() } else { -t.size.get() };
        w.trade_imbalance = num::add(w.trade_imbalance, signed);
        w.trade_volume = num::add(w.trade_volume, t.size.get());
    }

    /// Adds a depth snapshot to the window's multi-level OFI: the CKS contribution computed level
    /// by level (level m's best price and size on each side), over the configured levels present
    /// in both this snapshot and the previous one.
    pub fn on_depth(&mut self, ts: UnixNanos, d: &DepthUpdate, out: &mut Vec<ClosedWindow>) {
        let (levels, window_ns) = (self.depth_levels, self.window_ns);
        let state = self.state(&d.symbol);
        let books: Vec<Book> = d
            .bids
            .iter()
            .zip(&d.asks)
            .take(levels)
            .map(|(b, a)| Book { bid_px: b.px.get(), bid_sz: b.sz.get(), ask_px: a.px.get(), ask_sz: a.sz.get() })
            .collect();
        let prev = state.prev_depth.take();
        let w = Self::roll(window_ns, state, &d.symbol, ts, out);
        let acc = w.mlofi.get_or_insert_with(|| vec![Decimal::ZERO; levels]);
        if let Some(prev) = &prev {
            for (m, (p, n)) in prev.iter().zip(&books).enumerate() {
                acc[m] += contribution(p, n);
            }
        }
        state.prev_depth = Some(books);
    }

    /// `symbol`'s feed comes back at `ts` after a gap: the window holding `ts` is flagged, and the
    /// first quote after the gap counts as a first quote (the flow during the gap is unknown).
    pub fn mark_gap(&mut self, symbol: &Symbol, ts: UnixNanos) {
        let k = ts.0 / self.window_ns;
        let state = self.state(symbol);
        state.prev = None;
        state.prev_depth = None;
        match &mut state.window {
            Some(w) if w.index == k => w.data_gap = true,
            _ => state.gap = true,
        }
    }

    /// Closes every window that ends at or before `now` (event time), in symbol order.
    pub fn close_until(&mut self, now: UnixNanos, out: &mut Vec<ClosedWindow>) {
        let mut symbols: Vec<Symbol> = self
            .symbols
            .iter()
            .filter(|(_, s)| s.window.as_ref().is_some_and(|w| (w.index + 1) * self.window_ns <= now.0))
            .map(|(k, _)| k.clone())
            .collect();
        symbols.sort();
        for symbol in symbols {
            if let Some(state) = self.symbols.get_mut(&symbol)
                && let Some(closed) = Self::close(self.window_ns, &symbol, state)
            {
                out.push(closed);
            }
        }
    }

    /// Publishes heartbeats for `symbols` from the first boundary on, quoted or not (the
    /// configured instruments: a consumer waits for each of them).
    pub fn expect(&mut self, symbols: &[Symbol]) {
        for symbol in symbols {
            self.state(symbol);
        }
    }

    /// Time has reached the window boundary `boundary`: every symbol quoted before that has no
    /// window ending there gets an empty one (`n_quotes = 0`), a heartbeat that tells consumers
    /// the symbol's stream has reached `boundary` although it was quiet. A consumer waiting for
    /// every symbol before it decides (the Strategy Plane) then waits for event time, not for
    /// however fast each symbol's partition is read.
    pub fn heartbeat(&mut self, boundary: UnixNanos, out: &mut Vec<ClosedWindow>) {
        let window_ns = self.window_ns;
        let mut quiet: Vec<(Symbol, Option<EventId>, Decimal)> = Vec::new();
        for (symbol, state) in &mut self.symbols {
            if state.published_until >= boundary.0 || state.window.is_some() {
                continue;
            }
            state.published_until = boundary.0;
            quiet.push((symbol.clone(), state.last_quote, state.last_mid.unwrap_or_default()));
        }
        quiet.sort_by(|a, b| a.0.cmp(&b.0));
        for (symbol, last_quote, mid) in quiet {
            let mid = mid.normalize();
            let window = OfiWindow {
                symbol,
                window_start: UnixNanos(boundary.0.saturating_sub(window_ns)),
                window_end: boundary,
                ofi: Decimal::ZERO,
                n_quotes: 0,
                n_trades: 0,
                mid_open: mid,
                mid_close: mid,
                mid_change: Decimal::ZERO,
                mean_depth: Decimal::ZERO,
                mean_spread: Decimal::ZERO,
                ofi_normalized: Decimal::ZERO,
                trade_imbalance: Decimal::ZERO,
                trade_volume: Decimal::ZERO,
                mlofi: None,
                data_gap: false,
            };
            out.push(ClosedWindow { window, last_quote });
        }
    }

    /// Closes every open window (end of input).
    pub fn finish(&mut self, out: &mut Vec<ClosedWindow>) {
        self.close_until(UnixNanos(u64::MAX), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::events::Level;
    use common::types::{Price, Quantity, Side};
    use rust_decimal::dec;
    use uuid::Uuid;

    fn sym() -> Symbol {
        Symbol::new("X").unwrap()
    }

    fn q(bid: Decimal, bsz: Decimal, ask: Decimal, asz: Decimal) -> Quote {
        Quote {
            symbol: sym(),
            bid_px: Price::new(bid).unwrap(),
            bid_sz: Quantity::new(bsz).unwrap(),
            ask_px: Price::new(ask).unwrap(),
            ask_sz: Quantity::new(asz).unwrap(),
        }
    }

    fn id(n: u128) -> EventId {
        EventId(Uuid::from_u128(n))
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn contribution_cases_by_hand() {
        let prev = Book { bid_px: dec!(10), bid_sz: dec!(5), ask_px: dec!(11), ask_sz: dec!(7) };
        let b = |bp, bs, ap, asz| Book { bid_px: bp, bid_sz: bs, ask_px: ap, ask_sz: asz };
        // Same prices: Δq^B − Δq^A = (6 − 5) − (4 − 7) = 4.
        assert_eq!(contribution(&prev, &b(dec!(10), dec!(6), dec!(11), dec!(4))), dec!(4));
        // Bid up: +q^B_n = 3; ask unchanged: −q^A_n + q^A_{n-1} = −7 + 7.
        assert_eq!(contribution(&prev, &b(dec!(10.5), dec!(3), dec!(11), dec!(7))), dec!(3));
        // Bid down: −q^B_{n-1} = −5; ask down: −q^A_n = −2.
        assert_eq!(contribution(&prev, &b(dec!(9.5), dec!(8), dec!(10.5), dec!(2))), dec!(-7));
        // Ask up: +q^A_{n-1} = 7; bid unchanged: 5 − 5.
        assert_eq!(contribution(&prev, &b(dec!(10), dec!(5), dec!(11.5), dec!(9))), dec!(7));
    }

    #[test]
    fn windows_by_hand() {
        let mut e = OfiEngine::new(1000, 5);
        let mut out = Vec::new();
        // Window 0: e = 0 (first), then +4 (sizes), then bid up +3 → ofi 7.
        e.on_quote(UnixNanos(100 * MS), id(1), &q(dec!(10), dec!(5), dec!(11), dec!(7)), &mut out);
        e.on_quote(UnixNanos(200 * MS), id(2), &q(dec!(10), dec!(6), dec!(11), dec!(4)), &mut out);
        e.on_trade(
            UnixNanos(300 * MS),
            &Trade {
                symbol: sym(),
                price: Price::new(dec!(11)).unwrap(),
                size: Quantity::new(dec!(2)).unwrap(),
                aggressor: Side::Buy,
            },
            &mut out,
        );
        e.on_trade(
            UnixNanos(400 * MS),
            &Trade {
                symbol: sym(),
                price: Price::new(dec!(10)).unwrap(),
                size: Quantity::new(dec!(0.5)).unwrap(),
                aggressor: Side::Sell,
            },
            &mut out,
        );
        e.on_quote(UnixNanos(900 * MS), id(3), &q(dec!(10.5), dec!(3), dec!(11), dec!(4)), &mut out);
        assert!(out.is_empty());
        // Window 2 (window 1 is empty): ask down → −q^A_n = −1, bid same: 3 − 3 → −1.
        e.on_quote(UnixNanos(2_500 * MS), id(4), &q(dec!(10.5), dec!(3), dec!(10.75), dec!(1)), &mut out);
        assert_eq!(out.len(), 1);
        let w = &out[0].window;
        assert_eq!((w.window_start, w.window_end), (UnixNanos(0), UnixNanos(1_000 * MS)));
        assert_eq!(w.ofi, dec!(7));
        assert_eq!((w.n_quotes, w.n_trades), (3, 2));
        assert_eq!(w.mid_open, dec!(10.5), "first window opens at its first quote");
        assert_eq!(w.mid_close, dec!(10.75));
        assert_eq!(w.mid_change, dec!(0.25));
        // depths: (5+7)/2=6, (6+4)/2=5, (3+4)/2=3.5 → mean 14.5/3
        assert_eq!(w.mean_depth, (dec!(14.5) / dec!(3)).round_dp(12).normalize());
        assert_eq!(w.ofi_normalized, (dec!(7) / (dec!(14.5) / dec!(3)).round_dp(12)).round_dp(12).normalize());
        assert_eq!(w.trade_imbalance, dec!(1.5));
        // spreads: 1, 1, 0.5 → mean 2.5/3
        assert_eq!(w.mean_spread, (dec!(2.5) / dec!(3)).round_dp(12).normalize());
        assert_eq!(out[0].last_quote, Some(id(3)));
        e.finish(&mut out);
        let w2 = &out[1].window;
        assert_eq!(w2.window_start, UnixNanos(2_000 * MS));
        assert_eq!(w2.ofi, dec!(-1));
        assert_eq!(w2.mid_open, dec!(10.75), "opens at the last mid before it");
        assert_eq!(w2.mid_close, dec!(10.625));
        assert_eq!(w2.mid_change, dec!(-0.125));
    }

    #[test]
    fn a_window_of_trades_only_is_not_emitted() {
        let mut e = OfiEngine::new(1000, 5);
        let mut out = Vec::new();
        e.on_trade(
            UnixNanos(100 * MS),
            &Trade {
                symbol: sym(),
                price: Price::new(dec!(1)).unwrap(),
                size: Quantity::new(dec!(1)).unwrap(),
                aggressor: Side::Buy,
            },
            &mut out,
        );
        e.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn close_until_and_gaps() {
        let mut e = OfiEngine::new(1000, 5);
        let mut out = Vec::new();
        e.on_quote(UnixNanos(100 * MS), id(1), &q(dec!(1), dec!(1), dec!(2), dec!(1)), &mut out);
        e.close_until(UnixNanos(999 * MS), &mut out);
        assert!(out.is_empty());
        e.close_until(UnixNanos(1_000 * MS), &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].window.data_gap);
        e.mark_gap(&sym(), UnixNanos(5_000 * MS));
        e.on_quote(UnixNanos(5_000 * MS), id(2), &q(dec!(1), dec!(1), dec!(2), dec!(1)), &mut out);
        e.finish(&mut out);
        assert!(out[1].window.data_gap);
    }

    #[test]
    fn a_gap_flags_the_window_after_it_not_the_one_before() {
        let mut e = OfiEngine::new(1000, 5);
        let mut out = Vec::new();
        e.on_quote(UnixNanos(100 * MS), id(1), &q(dec!(1), dec!(1), dec!(2), dec!(1)), &mut out);
        // Quiet for 40 s, then back: the old window is still open when the gap is reported.
        e.mark_gap(&sym(), UnixNanos(40_000 * MS));
        e.on_quote(UnixNanos(40_000 * MS), id(2), &q(dec!(1), dec!(5), dec!(2), dec!(1)), &mut out);
        e.finish(&mut out);
        assert_eq!(out.len(), 2);
        assert!(!out[0].window.data_gap, "the window before the gap is clean");
        assert!(out[1].window.data_gap, "the window after the gap is flagged");
        assert_eq!(out[1].window.ofi, dec!(0), "no flow is inferred across the gap");
    }

    #[test]
    fn multi_level_by_hand() {
        let mut e = OfiEngine::new(1000, 2);
        let mut out = Vec::new();
        let lv = |px: Decimal, sz: Decimal| Level { px: Price::new(px).unwrap(), sz: Quantity::new(sz).unwrap() };
        let d1 = DepthUpdate {
            symbol: sym(),
            bids: vec![lv(dec!(10), dec!(5)), lv(dec!(9), dec!(8))],
            asks: vec![lv(dec!(11), dec!(7)), lv(dec!(12), dec!(3))],
        };
        // Level 1: sizes only, (6−5) − (4−7) = 4. Level 2: bid up to 9.5 → +2; ask same: −3+3 → 2.
        let d2 = DepthUpdate {
            symbol: sym(),
            bids: vec![lv(dec!(10), dec!(6)), lv(dec!(9.5), dec!(2))],
            asks: vec![lv(dec!(11), dec!(4)), lv(dec!(12), dec!(3))],
        };
        e.on_depth(UnixNanos(MS), &d1, &mut out);
        e.on_quote(UnixNanos(2 * MS), id(1), &q(dec!(10), dec!(6), dec!(11), dec!(4)), &mut out);
        e.on_depth(UnixNanos(3 * MS), &d2, &mut out);
        e.finish(&mut out);
        assert_eq!(out[0].window.mlofi, Some(vec![dec!(4), dec!(2)]));
    }
}
