//! Pre-trade risk. Every check has a named [`RejectReason`]. Exposure counts filled positions
//! **plus** open and in-flight orders at their worst case, so a burst of intents cannot slip past
//! a limit before the first of them fills.
//!
//! [`RiskApproved`] can only be built here: a venue takes nothing else, so an order that skipped
//! risk does not compile.

use std::collections::VecDeque;

use common::config::{InstrumentConfig, OrderPlaneConfig, RiskConfig};
use common::events::{OrderIntent, OrderType, RejectReason};
use common::types::{MAX_MAGNITUDE, Side, Symbol, SymbolMap, UnixNanos};
use rust_decimal::Decimal;

use crate::order::Order;

/// A value the risk engine approved. The field is private to this module: only
/// [`RiskEngine::check`] creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskApproved<T> {
    inner: T,
}

impl<T> RiskApproved<T> {
    /// The approved value.
    pub fn get(&self) -> &T {
        &self.inner
    }

    /// Unwraps the approved value (for the venue that executes it).
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// Why risk refused an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The named reason.
    pub reason: RejectReason,
    /// The numbers behind it, for people.
    pub detail: String,
}

fn refuse<T>(reason: RejectReason, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal { reason, detail: detail.into() })
}

/// Quantities of one symbol: filled position and what is still working each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Signed filled position.
    pub position: Decimal,
    /// Working buy quantity (open and in flight).
    pub open_buy: Decimal,
    /// Working sell quantity (open and in flight).
    pub open_sell: Decimal,
}

impl Exposure {
    fn long_worst(&self) -> Decimal {
        self.position + self.open_buy
    }

    fn short_worst(&self) -> Decimal {
        self.position - self.open_sell
    }

    /// The largest absolute position reachable if every working order fills.
    pub fn worst(&self) -> Decimal {
        self.long_worst().abs().max(self.short_worst().abs())
    }
}

/// The latest market a risk check sees for a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Mid price.
    pub mid: Decimal,
    /// Event time of the quote.
    pub ts: UnixNanos,
}

/// Limits and state of pre-trade risk.
#[derive(Debug)]
pub struct RiskEngine {
    limits: RiskConfig,
    max_order_notional: Decimal,
    collar_bps: Decimal,
    max_per_second: usize,
    stale_after_ns: u64,
    max_lag_ns: u64,
    instruments: SymbolMap<InstrumentConfig>,
    exposure: SymbolMap<Exposure>,
    marks: SymbolMap<Mark>,
    recent: VecDeque<UnixNanos>,
    halt: Option<String>,
}

impl RiskEngine {
    /// A risk engine with the portfolio limits, the Order Plane's order-level limits and the
    /// tradable instruments.
    pub fn new(limits: &RiskConfig, cfg: &OrderPlaneConfig, instruments: &[InstrumentConfig]) -> Self {
        let instruments =
            instruments.iter().filter_map(|i| Symbol::new(&i.symbol).ok().map(|s| (s, i.clone()))).collect();
        Self {
            limits: limits.clone(),
            max_order_notional: cfg.max_order_notional,
            collar_bps: cfg.price_collar_bps,
            max_per_second: usize::try_from(cfg.max_orders_per_second).unwrap_or(usize::MAX),
            stale_after_ns: cfg.stale_after_ms.saturating_mul(1_000_000),
            max_lag_ns: cfg.max_intent_lag_ms.saturating_mul(1_000_000),
            instruments,
            exposure: SymbolMap::default(),
            marks: SymbolMap::default(),
            recent: VecDeque::new(),
            halt: None,
        }
    }

    /// Records the latest mid of `symbol`.
    pub fn set_mark(&mut self, symbol: &Symbol, mark: Mark) {
        self.marks.insert(symbol.clone(), mark);
    }

    /// Whether `symbol` is a configured instrument: risk refuses every intent of any other.
    pub fn tradable(&self, symbol: &Symbol) -> bool {
        self.instruments.contains_key(symbol)
    }

    /// The latest mark of `symbol`.
    pub fn mark(&self, symbol: &Symbol) -> Option<Mark> {
        self.marks.get(symbol).copied()
    }

    /// Halts (`Some(reason)`) or resumes (`None`) trading.
    pub fn set_halt(&mut self, halt: Option<String>) {
        self.halt = halt;
    }

    /// Whether trading is halted.
    pub fn halted(&self) -> bool {
        self.halt.is_some()
    }

    /// How many symbols it keeps a mark or an exposure for.
    pub fn symbols(&self) -> usize {
        self.marks.len() + self.exposure.keys().filter(|s| !self.marks.contains_key(*s)).count()
    }

    /// The symbol's exposure.
    pub fn exposure(&self, symbol: &Symbol) -> Exposure {
        self.exposure.get(symbol).copied().unwrap_or_default()
    }

    /// A fill of `qty` on `side`: moves quantity from working to filled.
    pub fn on_fill(&mut self, symbol: &Symbol, side: Side, qty: Decimal) {
        let e = self.exposure.entry(symbol.clone()).or_default();
        match side {
            Side::Buy => e.open_buy = (e.open_buy - qty).max(Decimal::ZERO),
            Side::Sell => e.open_sell = (e.open_sell - qty).max(Decimal::ZERO),
        }
        e.position += side.sign() * qty;
    }

    /// An order the venue already works, found rather than approved (placed before a restart):
    /// its quantity counts as working.
    pub fn on_working(&mut self, symbol: &Symbol, side: Side, qty: Decimal) {
        let e = self.exposure.entry(symbol.clone()).or_default();
        match side {
            Side::Buy => e.open_buy += qty,
            Side::Sell => e.open_sell += qty,
        }
    }

    /// A fill of an order already closed (an execution reported after its order's cancel): the
    /// position moves, working quantity was released at the close.
    pub fn on_late_fill(&mut self, symbol: &Symbol, side: Side, qty: Decimal) {
        self.exposure.entry(symbol.clone()).or_default().position += side.sign() * qty;
    }

    /// An order ended with `leaves` unfilled: that quantity no longer works.
    pub fn on_done(&mut self, symbol: &Symbol, side: Side, leaves: Decimal) {
        let e = self.exposure.entry(symbol.clone()).or_default();
        match side {
            Side::Buy => e.open_buy = (e.open_buy - leaves).max(Decimal::ZERO),
            Side::Sell => e.open_sell = (e.open_sell - leaves).max(Decimal::ZERO),
        }
    }

    /// Filled gross and net exposure at the latest marks (for metrics).
    pub fn exposure_now(&self) -> (Decimal, Decimal) {
        let mut gross = Decimal::ZERO;
        let mut net = Decimal::ZERO;
        for (symbol, e) in &self.exposure {
            let mark = self.marks.get(symbol).map_or(Decimal::ZERO, |m| m.mid);
            let value = e.position.checked_mul(mark).unwrap_or(Decimal::MAX);
            gross = gross.saturating_add(value.abs());
            net = net.saturating_add(value);
        }
        (gross, net)
    }

    /// A symbol that holds exposure but has no mark (none seen since a restart): its value is
    /// unknown, so no limit can be checked.
    ///
    /// Only configured instruments count here: no quote of any other name ever comes, so its
    /// exposure without a price (a ledger record of a name no instrument has) would refuse every
    /// intent for good. It counts in the limits once a fill's price marks it.
    fn unmarked_exposure(&self) -> Option<&Symbol> {
        self.exposure
            .iter()
            .find(|(s, e)| !e.worst().is_zero() && !self.marks.contains_key(*s) && self.instruments.contains_key(*s))
            .map(|(s, _)| s)
    }

    /// Worst-case gross and net over every symbol, with `symbol`'s exposure replaced by `with`.
    fn portfolio_worst(&self, symbol: &Symbol, with: Exposure) -> Option<(Decimal, Decimal)> {
        let mut gross = Decimal::ZERO;
        let (mut long, mut short) = (Decimal::ZERO, Decimal::ZERO);
        let others = self.exposure.iter().filter(|(s, _)| *s != symbol).map(|(s, e)| (s, *e));
        for (s, e) in others.chain(std::iter::once((symbol, with))) {
            let Some(mark) = self.marks.get(s).map(|m| m.mid) else {
                // Unvalued: refuse, unless no price of it can ever come (see unmarked_exposure).
                if self.instruments.contains_key(s) {
                    return None;
                }
                continue;
            };
            gross = gross.checked_add(e.worst().checked_mul(mark)?)?;
            long = long.checked_add(e.long_worst().checked_mul(mark)?)?;
            short = short.checked_add(e.short_worst().checked_mul(mark)?)?;
        }
        Some((gross, long.abs().max(short.abs())))
    }

    /// Checks an intent decided at `now` (event time). On approval its quantity counts as
    /// working until [`on_fill`](Self::on_fill) or [`on_done`](Self::on_done) says otherwise.
    pub fn check(&mut self, intent: &OrderIntent, now: UnixNanos) -> Result<RiskApproved<Order>, Refusal> {
        use RejectReason as R;
        if let Some(reason) = &self.halt {
            return refuse(R::KillSwitch, format!("trading halted: {reason}"));
        }
        let qty = intent.quantity;
        if qty <= Decimal::ZERO || qty > MAX_MAGNITUDE {
            return refuse(R::InvalidQuantity, format!("quantity {qty} is not in (0, 10^12]"));
        }
        if let Some(px) = intent.limit_price.filter(|p| *p <= Decimal::ZERO || *p > MAX_MAGNITUDE) {
            return refuse(R::InvalidPrice, format!("limit price {px} is not in (0, 10^12]"));
        }
        let Some(inst) = self.instruments.get(&intent.symbol) else {
            return refuse(R::UnknownSymbol, format!("{} is not a configured instrument", intent.symbol));
        };
        let Some(mark) = self.marks.get(&intent.symbol).copied() else {
            return refuse(R::StaleMarketData, "no market data yet");
        };
        let age = now.saturating_sub(mark.ts);
        if age > self.stale_after_ns {
            return refuse(R::StaleMarketData, format!("last quote {} ms old", age / 1_000_000));
        }
        // An intent decided long before the latest quote was decided on a market that is gone.
        let lag = mark.ts.saturating_sub(now);
        if lag > self.max_lag_ns {
            return refuse(
                R::StaleMarketData,
                format!("intent decided {} ms before the latest quote", lag / 1_000_000),
            );
        }
        if let Some(s) = self.unmarked_exposure() {
            return refuse(R::StaleMarketData, format!("{s} holds exposure but has no quote yet"));
        }
        if qty.checked_rem(inst.lot_size) != Some(Decimal::ZERO) {
            return refuse(R::LotSize, format!("quantity {qty} is not a multiple of {}", inst.lot_size));
        }
        if let Some(px) = intent.limit_price
            && px.checked_rem(inst.tick_size) != Some(Decimal::ZERO)
        {
            return refuse(R::InvalidPrice, format!("limit price {px} is not a multiple of tick {}", inst.tick_size));
        }
        let px = intent.limit_price.unwrap_or(mark.mid);
        let Some(notional) = qty.checked_mul(px) else {
            return refuse(R::MaxOrderNotional, "notional overflows");
        };
        if qty < inst.min_qty || notional < inst.min_notional {
            return refuse(
                R::BelowMinimum,
                format!("quantity {qty} / notional {notional} below {} / {}", inst.min_qty, inst.min_notional),
            );
        }
        if notional > self.max_order_notional {
            return refuse(R::MaxOrderNotional, format!("notional {notional} > {}", self.max_order_notional));
        }
        if intent.order_type == OrderType::Limit {
            // |px − mid| · 10⁴ > collar · mid, multiplied out so nothing divides or overflows.
            let away = (px - mark.mid).abs().checked_mul(Decimal::from(10_000));
            let allowed = self.collar_bps.checked_mul(mark.mid);
            if away.zip(allowed).is_none_or(|(a, b)| a > b) {
                let bps = away.and_then(|a| a.checked_div(mark.mid)).unwrap_or(Decimal::MAX).round_dp(2);
                return refuse(R::PriceCollar, format!("limit {px} is {bps} bps from mid {}", mark.mid));
            }
        }
        let window_start = UnixNanos(now.0.saturating_sub(1_000_000_000));
        while self.recent.front().is_some_and(|t| *t <= window_start) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max_per_second {
            return refuse(R::Throttled, format!("{} orders in the last second", self.recent.len()));
        }
        let before = self.exposure(&intent.symbol);
        let mut after = before;
        match intent.side {
            Side::Buy => after.open_buy += qty,
            Side::Sell => after.open_sell += qty,
        }
        // Only an order that makes the worst case worse is held to a limit, so a position that
        // is over its limit (prices moved) can always be reduced.
        let value = |e: Exposure| e.worst().checked_mul(mark.mid);
        let (Some(v_before), Some(v_after)) = (value(before), value(after)) else {
            return refuse(R::MaxPositionSize, "position value overflows");
        };
        if v_after > self.limits.max_position_size && v_after > v_before {
            return refuse(
                R::MaxPositionSize,
                format!("worst-case position {v_after} > {}", self.limits.max_position_size),
            );
        }
        let (Some((g0, n0)), Some((g1, n1))) =
            (self.portfolio_worst(&intent.symbol, before), self.portfolio_worst(&intent.symbol, after))
        else {
            return refuse(R::MaxGrossExposure, "exposure overflows");
        };
        if g1 > self.limits.max_gross_exposure && g1 > g0 {
            return refuse(R::MaxGrossExposure, format!("worst-case gross {g1} > {}", self.limits.max_gross_exposure));
        }
        if n1 > self.limits.max_net_exposure && n1 > n0 {
            return refuse(R::MaxNetExposure, format!("worst-case net {n1} > {}", self.limits.max_net_exposure));
        }
        self.exposure.insert(intent.symbol.clone(), after);
        self.recent.push_back(now);
        Ok(RiskApproved {
            inner: Order {
                intent_id: intent.intent_id,
                symbol: intent.symbol.clone(),
                side: intent.side,
                qty,
                order_type: intent.order_type,
                limit_price: intent.limit_price,
                tif: intent.time_in_force,
                arrival_mid: intent.arrival_mid,
                decided_at: now,
            },
        })
    }
}
