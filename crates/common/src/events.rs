//! The event contract: one envelope for every record, and one payload family per topic.
//!
//! A record's JSON is the envelope's fields in this order: `schema_version`, `event_id`,
//! `event_type`, `source`, `ts_event`, `ts_init`, `causation_id`, `payload`. `event_type` names the
//! payload variant and must belong to the topic's family. `docs/events.md` documents every field.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;
use crate::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};

/// The only schema version this build reads and writes.
pub const SCHEMA_VERSION: u16 = 1;

/// Which service wrote an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `data-plane`, `strategy-plane` or `order-plane`.
    pub plane: Arc<str>,
    /// The instance of that plane (set by `INSTANCE_ID`, host name by default).
    pub instance: Arc<str>,
}

/// A fact that happened, with everything needed to order, trace and de-duplicate it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<P> {
    /// Always [`SCHEMA_VERSION`] for events built by this code.
    pub schema_version: u16,
    /// Unique and time-ordered; a redelivered or re-published event keeps its id.
    pub event_id: EventId,
    /// The writer.
    pub source: Arc<Source>,
    /// When the fact happened at its origin (exchange time, window end, decision time).
    pub ts_event: UnixNanos,
    /// When this record was created.
    pub ts_init: UnixNanos,
    /// The event that caused this one, when there is one.
    pub causation_id: Option<EventId>,
    /// The typed payload.
    pub payload: P,
}

/// A family of payloads that travels on one topic.
pub trait Payload: Sized {
    /// The topic this family travels on.
    const TOPIC: &'static str;
    /// The `event_type` values of this family.
    const EVENT_TYPES: &'static [&'static str];
    /// The `event_type` of this value.
    fn event_type(&self) -> &'static str;
    /// The record key: the symbol, or `None` for an event every partition must see.
    fn key(&self) -> Option<&str>;
    /// Serializes the payload body (without its tag).
    fn serialize_payload<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    /// Parses the payload body named by `event_type`.
    fn deserialize_payload(event_type: &str, json: &str) -> Result<Self, PayloadError>;
}

/// Why a payload body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// `event_type` does not belong to the topic's family.
    #[error("unknown event_type {0:?}")]
    UnknownEventType(String),
    /// The body does not match the type `event_type` names.
    #[error("invalid payload: {0}")]
    Invalid(#[source] serde_json::Error),
    /// The body parsed but breaks a rule of the contract.
    #[error("invalid payload: {0}")]
    Rule(&'static str),
}

impl<P: Payload> Serialize for Envelope<P> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Body<'a, P>(&'a P);
        impl<P: Payload> Serialize for Body<'_, P> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_payload(s)
            }
        }
        let mut st = serializer.serialize_struct("Envelope", 8)?;
        st.serialize_field("schema_version", &self.schema_version)?;
        st.serialize_field("event_id", &self.event_id)?;
        st.serialize_field("event_type", self.payload.event_type())?;
        st.serialize_field("source", &*self.source)?;
        st.serialize_field("ts_event", &self.ts_event)?;
        st.serialize_field("ts_init", &self.ts_init)?;
        st.serialize_field("causation_id", &self.causation_id)?;
        st.serialize_field("payload", &Body(&self.payload))?;
        st.end()
    }
}

macro_rules! payload_family {
    (
        $(#[$meta:meta])*
        $name:ident on $topic:expr => {
            $( $(#[$vmeta:meta])* $variant:ident($inner:ty) = $tag:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($inner) ),+
        }

        impl Payload for $name {
            const TOPIC: &'static str = $topic;
            const EVENT_TYPES: &'static [&'static str] = &[$($tag),+];

            fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $tag ),+ }
            }

            fn key(&self) -> Option<&str> {
                match self { $( Self::$variant(p) => Keyed::key(p) ),+ }
            }

            fn serialize_payload<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( Self::$variant(p) => p.serialize(s) ),+ }
            }

            fn deserialize_payload(event_type: &str, json: &str) -> Result<Self, PayloadError> {
                match event_type {
                    $( $tag => {
                        let p: $inner = serde_json::from_str(json).map_err(PayloadError::Invalid)?;
                        Checked::check(&p).map_err(PayloadError::Rule)?;
                        Ok(Self::$variant(p))
                    } )+
                    other => Err(PayloadError::UnknownEventType(other.to_owned())),
                }
            }
        }

        $( impl From<$inner> for $name {
            fn from(p: $inner) -> Self { Self::$variant(p) }
        } )+
    };
}

/// The record key of a payload body.
trait Keyed {
    fn key(&self) -> Option<&str>;
}

/// Cross-field rules that serde alone cannot state.
trait Checked {
    fn check(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// Largest sum of sizes an OFI window may carry (`ofi`, `ofi_normalized`, `trade_imbalance`,
/// `trade_volume`, `mlofi`): 10^18.
pub const MAX_WINDOW_SUM: Decimal = Decimal::from_parts(2_808_348_672, 232_830_643, 0, false, 0);

/// Whether every value is inside ±[`MAX_MAGNITUDE`](crate::types::MAX_MAGNITUDE): a consumer can
/// then multiply two of them (a notional) and add up many without overflowing an exact decimal,
/// whoever wrote the record.
fn bounded<'a>(values: impl IntoIterator<Item = &'a Decimal>) -> bool {
    values.into_iter().all(|v| v.abs() <= crate::types::MAX_MAGNITUDE)
}

macro_rules! keyed_by_symbol {
    ($($t:ty),+) => { $( impl Keyed for $t {
        fn key(&self) -> Option<&str> { Some(self.symbol.as_str()) }
    } )+ };
}

// ---- market_events ------------------------------------------------------------------------

/// Best bid and offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quote {
    /// Instrument.
    pub symbol: Symbol,
    /// Best bid price.
    pub bid_px: Price,
    /// Size at the best bid.
    pub bid_sz: Quantity,
    /// Best ask price.
    pub ask_px: Price,
    /// Size at the best ask.
    pub ask_sz: Quantity,
}

impl Quote {
    /// `(bid + ask) / 2`, exact.
    pub fn mid(&self) -> Decimal {
        crate::num::mid(self.bid_px.get(), self.ask_px.get())
    }
}

impl Checked for Quote {
    fn check(&self) -> Result<(), &'static str> {
        if self.bid_px >= self.ask_px {
            return Err("quote bid_px must be below ask_px");
        }
        Ok(())
    }
}

/// A trade printed on the venue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trade {
    /// Instrument.
    pub symbol: Symbol,
    /// Trade price.
    pub price: Price,
    /// Trade size.
    pub size: Quantity,
    /// The side that crossed the spread.
    pub aggressor: Side,
}
impl Checked for Trade {}

/// One price level of a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// Price of the level.
    pub px: Price,
    /// Size resting at the level.
    pub sz: Quantity,
}

/// The top levels of a book, best first: a full snapshot of the levels it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthUpdate {
    /// Instrument.
    pub symbol: Symbol,
    /// Bid levels, highest price first.
    pub bids: Vec<Level>,
    /// Ask levels, lowest price first.
    pub asks: Vec<Level>,
}
impl Checked for DepthUpdate {
    fn check(&self) -> Result<(), &'static str> {
        let bids_sorted = self.bids.windows(2).all(|w| w[0].px > w[1].px);
        let asks_sorted = self.asks.windows(2).all(|w| w[0].px < w[1].px);
        if !(bids_sorted && asks_sorted) {
            return Err("depth levels must be strictly ordered best first");
        }
        Ok(())
    }
}

/// Whether a symbol's feed is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedStatus {
    /// Updates are arriving.
    Active,
    /// No update for longer than the configured staleness limit.
    Stale,
    /// The input has ended (a replay file's last row): no update will follow. A simulated venue
    /// executes what waits for a later quote against the last one.
    Ended,
}

/// A symbol's feed went stale or came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolStatus {
    /// Instrument.
    pub symbol: Symbol,
    /// The new status.
    pub status: FeedStatus,
    /// Event time of the symbol's last accepted update.
    pub last_update: UnixNanos,
}
impl Checked for SymbolStatus {}

keyed_by_symbol!(Quote, Trade, DepthUpdate, SymbolStatus);

payload_family! {
    /// Everything on `market_events`.
    MarketEvent on topics::MARKET_EVENTS => {
        /// Top of book.
        Quote(Quote) = "quote",
        /// A trade.
        Trade(Trade) = "trade",
        /// Several levels of the book.
        Depth(DepthUpdate) = "depth",
        /// Feed went stale or came back.
        Status(SymbolStatus) = "symbol_status",
    }
}

impl MarketEvent {
    /// The instrument.
    pub fn symbol(&self) -> &Symbol {
        match self {
            Self::Quote(p) => &p.symbol,
            Self::Trade(p) => &p.symbol,
            Self::Depth(p) => &p.symbol,
            Self::Status(p) => &p.symbol,
        }
    }
}

// ---- ofi_events ---------------------------------------------------------------------------

/// Order Flow Imbalance over one window `[window_start, window_end)` of event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfiWindow {
    /// Instrument.
    pub symbol: Symbol,
    /// Window start (inclusive).
    pub window_start: UnixNanos,
    /// Window end (exclusive).
    pub window_end: UnixNanos,
    /// Σ e_n over the window's quotes (Cont, Kukanov & Stoikov 2014).
    pub ofi: Decimal,
    /// Quotes in the window.
    pub n_quotes: u32,
    /// Trades in the window.
    pub n_trades: u32,
    /// Mid of the last quote before the window (the first quote's mid for a symbol's first window).
    pub mid_open: Decimal,
    /// Mid of the window's last quote.
    pub mid_close: Decimal,
    /// `mid_close - mid_open`.
    pub mid_change: Decimal,
    /// Mean of `(bid_sz + ask_sz) / 2` over the window's quotes.
    pub mean_depth: Decimal,
    /// Mean quoted spread `ask_px − bid_px` over the window's quotes.
    pub mean_spread: Decimal,
    /// `ofi / mean_depth`.
    pub ofi_normalized: Decimal,
    /// Aggressive buy size minus aggressive sell size.
    pub trade_imbalance: Decimal,
    /// Σ trade sizes, buys and sells: the volume the Strategy Plane's impact estimate divides by.
    /// Absent (0) in records written before it was published.
    #[serde(default)]
    pub trade_volume: Decimal,
    /// Multi-level OFI per level, best first (Xu, Gould & Howison 2019), when depth was seen.
    pub mlofi: Option<Vec<Decimal>>,
    /// The symbol's feed was stale or reconnected inside or just before this window.
    pub data_gap: bool,
}
impl Checked for OfiWindow {
    fn check(&self) -> Result<(), &'static str> {
        if self.window_end <= self.window_start {
            return Err("window_end must be after window_start");
        }
        // A window without quotes is a heartbeat: the symbol was quiet, nothing was measured.
        let quiet = self.ofi.is_zero() && self.n_trades == 0 && self.mid_change.is_zero();
        if self.n_quotes == 0 && !quiet {
            return Err("an OFI window without quotes is a heartbeat: no trades, ofi and mid_change 0");
        }
        // Prices and means of sizes are bounded as the quotes they come from are; the sums of
        // sizes over a window get room for a million events at the bound (consumers use them as
        // floats only).
        let prices = [&self.mid_open, &self.mid_close, &self.mid_change, &self.mean_depth, &self.mean_spread];
        let sums = [&self.ofi, &self.ofi_normalized, &self.trade_imbalance, &self.trade_volume];
        let sums_bounded = sums.into_iter().chain(self.mlofi.iter().flatten()).all(|v| v.abs() <= MAX_WINDOW_SUM);
        if self.trade_volume.is_sign_negative() && !self.trade_volume.is_zero() {
            return Err("trade_volume must not be negative");
        }
        if !bounded(prices) || !sums_bounded {
            return Err("an OFI window's prices must be within ±10^12 and its sums within ±10^18");
        }
        Ok(())
    }
}
keyed_by_symbol!(OfiWindow);

payload_family! {
    /// Everything on `ofi_events`.
    OfiEvent on topics::OFI_EVENTS => {
        /// One closed window.
        Window(OfiWindow) = "ofi_window",
    }
}

// ---- order_intents ------------------------------------------------------------------------

/// Id of an order intent: derived from the inputs that produced it, so a replay reproduces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntentId(pub Uuid);

impl std::fmt::Display for IntentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Market or limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Take what the book offers.
    Market,
    /// No worse than `limit_price`.
    Limit,
}

/// How long an order may rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Until the end of the trading day.
    Day,
    /// Fill what can be filled now, cancel the rest.
    Ioc,
    /// Until cancelled.
    Gtc,
}

/// One signal's value at decision time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalValue {
    /// Signal name, e.g. `ofi`.
    pub name: String,
    /// Its value (expected mid change, in price units).
    pub value: f64,
}

/// An order the Strategy Plane wants executed. Quantities and prices are plain decimals here:
/// the Order Plane's risk engine, not the decoder, turns bad values into named rejections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderIntent {
    /// Deterministic id; the Order Plane executes each at most once.
    pub intent_id: IntentId,
    /// Instrument.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Quantity to trade.
    pub quantity: Decimal,
    /// Market or limit.
    pub order_type: OrderType,
    /// Required for limit orders, absent for market orders.
    pub limit_price: Option<Decimal>,
    /// How long the order may rest.
    pub time_in_force: TimeInForce,
    /// Mid at decision time: the benchmark for slippage.
    pub arrival_mid: Decimal,
    /// Expected trading cost, in basis points of notional.
    pub expected_cost_bps: Decimal,
    /// The signal values that led to the decision.
    pub signals: Vec<SignalValue>,
}
impl Checked for OrderIntent {
    fn check(&self) -> Result<(), &'static str> {
        match (self.order_type, self.limit_price) {
            (OrderType::Limit, None) => return Err("a limit order needs limit_price"),
            (OrderType::Market, Some(_)) => return Err("a market order has no limit_price"),
            _ => {}
        }
        // Quantity and limit price stay for risk to refuse by name (`invalid_quantity`, ...).
        if !bounded([&self.arrival_mid, &self.expected_cost_bps]) {
            return Err("arrival_mid and expected_cost_bps must be within ±10^12");
        }
        Ok(())
    }
}
keyed_by_symbol!(OrderIntent);

/// Cancel what is still working of an earlier intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelIntent {
    /// The intent to cancel.
    pub intent_id: IntentId,
    /// Its symbol (the record key, so the cancel stays behind its order).
    pub symbol: Symbol,
}
impl Checked for CancelIntent {}
keyed_by_symbol!(CancelIntent);

/// The Strategy Plane decided on `symbol` at the envelope's `ts_event`, and every intent of that
/// decision is on the topic before this record (it follows them on the symbol's partition). The
/// simulated venue keeps the market history an intent can still need from this time on, and
/// forgets what is older.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionMark {
    /// Instrument.
    pub symbol: Symbol,
}
impl Checked for DecisionMark {}
keyed_by_symbol!(DecisionMark);

payload_family! {
    /// Everything on `order_intents`.
    IntentEvent on topics::ORDER_INTENTS => {
        /// A new order.
        Intent(OrderIntent) = "order_intent",
        /// Cancel an earlier order.
        Cancel(CancelIntent) = "cancel_intent",
        /// A decision on a symbol is complete.
        Decided(DecisionMark) = "decision",
    }
}

// ---- exec_reports -------------------------------------------------------------------------

/// An order's state after an execution event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Passed risk and live at the venue.
    Accepted,
    /// Refused by risk or by the venue; `reason` says why. Terminal.
    Rejected,
    /// Some quantity filled, some still working.
    PartiallyFilled,
    /// Fully filled. Terminal.
    Filled,
    /// Cancelled with quantity unfilled. Terminal.
    Cancelled,
}

impl ExecStatus {
    /// Whether the order can change no more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Rejected | Self::Filled | Self::Cancelled)
    }
}

/// Why an order was refused. Each is also a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Gross exposure would exceed `MAX_GROSS_EXPOSURE`.
    MaxGrossExposure,
    /// Net exposure would exceed `MAX_NET_EXPOSURE`.
    MaxNetExposure,
    /// The symbol's position would exceed `MAX_POSITION_SIZE`.
    MaxPositionSize,
    /// The order's notional is above the per-order limit.
    MaxOrderNotional,
    /// The limit price is too far from the mid.
    PriceCollar,
    /// Too many orders per second.
    Throttled,
    /// Below the minimum quantity or notional.
    BelowMinimum,
    /// Not a multiple of the lot size.
    LotSize,
    /// The symbol is not tradable here.
    UnknownSymbol,
    /// Market data for the symbol is stale or missing.
    StaleMarketData,
    /// Trading is halted.
    KillSwitch,
    /// Zero, negative or malformed quantity.
    InvalidQuantity,
    /// Zero, negative or malformed price.
    InvalidPrice,
    /// The venue refused the order.
    VenueRejected,
    /// The intent broke the contract (a field missing, mistyped or out of range) but its id,
    /// symbol and side could be read.
    MalformedIntent,
}

impl RejectReason {
    /// The snake_case name, as in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxGrossExposure => "max_gross_exposure",
            Self::MaxNetExposure => "max_net_exposure",
            Self::MaxPositionSize => "max_position_size",
            Self::MaxOrderNotional => "max_order_notional",
            Self::PriceCollar => "price_collar",
            Self::Throttled => "throttled",
            Self::BelowMinimum => "below_minimum",
            Self::LotSize => "lot_size",
            Self::UnknownSymbol => "unknown_symbol",
            Self::StaleMarketData => "stale_market_data",
            Self::KillSwitch => "kill_switch",
            Self::InvalidQuantity => "invalid_quantity",
            Self::InvalidPrice => "invalid_price",
            Self::VenueRejected => "venue_rejected",
            Self::MalformedIntent => "malformed_intent",
        }
    }
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecReport {
    /// The intent this order executes.
    pub intent_id: IntentId,
    /// The venue's order id (empty when rejected before reaching a venue).
    pub order_id: String,
    /// Instrument.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// New state of the order.
    pub status: ExecStatus,
    /// Why, when `status` is `rejected`; absent otherwise.
    pub reason: Option<RejectReason>,
    /// Free text for people: the limit that was hit, the venue's message.
    pub detail: Option<String>,
    /// `simulated`, `ibkr`, or `risk` for orders refused before any venue.
    pub venue: String,
    /// The order's total quantity.
    pub order_qty: Decimal,
    /// Execution id of this fill; fills only.
    pub exec_id: Option<String>,
    /// Price of this fill; fills only.
    pub last_px: Option<Decimal>,
    /// Size of this fill (0 when this report is not a fill).
    pub last_qty: Decimal,
    /// Filled so far.
    pub cum_qty: Decimal,
    /// Average price of what filled so far.
    pub avg_px: Option<Decimal>,
    /// Still working.
    pub leaves_qty: Decimal,
    /// Commission of this fill.
    pub commission: Decimal,
    /// Commission of the order so far.
    pub cum_commission: Decimal,
    /// Mid at decision time, copied from the intent.
    pub arrival_mid: Decimal,
    /// Signed cost of the fills so far versus `arrival_mid`, in basis points (positive = paid).
    pub slippage_bps: Option<Decimal>,
    /// Mid of the book in effect when the order reached the venue (simulated venue): the delay
    /// cost is `arrival_mid` → `venue_mid`, spread and impact `venue_mid` → fill. Absent when
    /// unknown (refused by risk, a broker venue, reports written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_mid: Option<Decimal>,
}
impl Checked for ExecReport {
    fn check(&self) -> Result<(), &'static str> {
        if (self.status == ExecStatus::Rejected) != self.reason.is_some() {
            return Err("reason is required for rejected reports and only for them");
        }
        let values = [
            &self.order_qty,
            &self.last_qty,
            &self.cum_qty,
            &self.leaves_qty,
            &self.commission,
            &self.cum_commission,
            &self.arrival_mid,
        ];
        let optional = [&self.last_px, &self.avg_px, &self.slippage_bps, &self.venue_mid];
        if !bounded(values.into_iter().chain(optional.into_iter().flatten())) {
            return Err("every decimal of an exec report must be within ±10^12");
        }
        Ok(())
    }
}
keyed_by_symbol!(ExecReport);

/// The Order Plane's current transaction-cost model of one symbol: `cost_bps = intercept_bps +
/// half_spread_coef · half_spread_bps + impact_coef · σ_bps · sqrt(qty / volume)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModelUpdate {
    /// What every order costs whatever its spread and size, bps (0 in records from before it).
    #[serde(default)]
    pub intercept_bps: f64,
    /// Weight of the half spread (1.0 = pay the half spread).
    pub half_spread_coef: f64,
    /// Coefficient of the square-root impact term.
    pub impact_coef: f64,
    /// Standard error of `intercept_bps`.
    #[serde(default)]
    pub intercept_stderr: f64,
    /// Standard error of `half_spread_coef`.
    pub half_spread_stderr: f64,
    /// Standard error of `impact_coef`.
    pub impact_stderr: f64,
    /// Robust scale of the residuals (bps): beyond `k` times this a fill is down-weighted.
    pub residual_scale_bps: f64,
    /// Standard deviation of the (weighted) residuals, bps.
    pub residual_std_bps: f64,
    /// Fills the model has learned from.
    pub n_fills: u64,
    /// The instrument this model is for: each symbol learns its own, from its own fills in event
    /// order. Absent in records written when one model served every symbol (not restored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<Symbol>,
    /// The estimator's whole state: its 3 × 3 covariance `P` row by row (intercept, half spread,
    /// impact; rounding keeps it only nearly symmetric), then the residual variance, so a
    /// restarted Order Plane continues exactly where it stopped: the same fills then give the
    /// same models. Records from before the intercept have 5 values (`P` of the other two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Vec<f64>>,
}
impl Checked for CostModelUpdate {}
impl Keyed for CostModelUpdate {
    fn key(&self) -> Option<&str> {
        self.symbol.as_ref().map(Symbol::as_str)
    }
}

/// Trading was halted or resumed by the kill switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingHalt {
    /// `true` while trading is halted.
    pub halted: bool,
    /// Who or what flipped the switch, and why.
    pub reason: String,
    /// Whether open orders were cancelled too.
    pub cancel_open: bool,
}
impl Checked for TradingHalt {}
impl Keyed for TradingHalt {
    fn key(&self) -> Option<&str> {
        None
    }
}

payload_family! {
    /// Everything on `exec_reports`.
    // Nearly every record is a report, so boxing it would add an allocation to the common case
    // to save memory only on the rare cost-model and halt records.
    #[allow(clippy::large_enum_variant)]
    ExecEvent on topics::EXEC_REPORTS => {
        /// An order's state changed.
        Report(ExecReport) = "exec_report",
        /// New cost-model coefficients.
        CostModel(CostModelUpdate) = "cost_model",
        /// Kill switch flipped.
        Halt(TradingHalt) = "trading_halt",
    }
}
