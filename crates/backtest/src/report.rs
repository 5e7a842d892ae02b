//! What a run is summed up as: the records the cores produced, counted, hashed and booked into a
//! [`Ledger`], and the rows of `fills.csv` and `intents.csv`. `docs/backtest.md` documents every
//! field of `report.json`.

use std::collections::{BTreeMap, HashMap, HashSet};

use common::codec;
use common::config::AppConfig;
use common::events::{
    Envelope, ExecEvent, ExecReport, ExecStatus, IntentEvent, IntentId, MarketEvent, OrderIntent, OrderType,
    TimeInForce,
};
use common::types::{Side, Symbol, UnixNanos};
use rust_decimal::Decimal;
use serde::Serialize;
use strategy_plane::engine::Counters;
use xxhash_rust::xxh3::Xxh3;

use crate::engine::Published;
use crate::ledger::{Curve, Fill, Ledger, SymbolBook, YEAR_SECONDS};

/// The `schema` of `report.json`; its number moves when a field changes meaning or goes.
pub const SCHEMA: &str = "algotrader.backtest.report/2";

/// Decimal places the report keeps. Average-cost accounting divides, so a position's average
/// price, and the PnL taken from it, carry 28 digits of which the last few are rounding of the
/// division; kept, they would make the figures unreadable and the golden masters fragile.
pub const DECIMALS: u32 = 10;

/// Money and quantities as the report writes them: exact decimals rounded half-even to
/// [`DECIMALS`] places, without trailing zeros.
fn exact(d: Decimal) -> String {
    d.round_dp(DECIMALS).normalize().to_string()
}

/// A side as the outputs write it.
pub fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// One row of `fills.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct FillRow {
    /// Event time of the fill.
    pub ts_event: UnixNanos,
    /// The intent it executes.
    pub intent_id: IntentId,
    /// The venue's execution id.
    pub exec_id: String,
    /// Instrument.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Filled quantity.
    pub quantity: Decimal,
    /// Fill price.
    pub price: Decimal,
    /// Commission of this fill.
    pub commission: Decimal,
    /// Mid at decision time.
    pub arrival_mid: Decimal,
    /// Mid when the order reached the venue.
    pub venue_mid: Option<Decimal>,
    /// The order's cost so far versus `arrival_mid`, bps.
    pub slippage_bps: Option<Decimal>,
}

/// One row of `intents.csv`: an order intent and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentRow {
    /// Decision time.
    pub ts_event: UnixNanos,
    /// The intent.
    pub intent: OrderIntent,
    /// Its latest status (none if no report came).
    pub status: Option<ExecStatus>,
    /// Why it was refused, when it was.
    pub reason: Option<&'static str>,
    /// Filled so far.
    pub filled: Decimal,
    /// Average fill price.
    pub avg_px: Option<Decimal>,
}

/// Counts of one symbol, or of the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Order intents issued.
    pub intents: u64,
    /// Cancel intents issued.
    pub cancels: u64,
    /// Intents that passed risk and reached the venue.
    pub orders: u64,
    /// Fills.
    pub fills: u64,
    /// Intents refused, by reason (risk's or the venue's).
    pub refusals: BTreeMap<&'static str, u64>,
}

/// Reads the records of a run as they come.
pub struct Recorder {
    ledger: Ledger,
    counts: BTreeMap<Symbol, Counts>,
    venue_orders: HashSet<IntentId>,
    intent_rows: Vec<IntentRow>,
    intent_index: HashMap<IntentId, usize>,
    fills: Vec<FillRow>,
    rows: u64,
    malformed: u64,
    quality: BTreeMap<&'static str, u64>,
    market_events: u64,
    ofi_windows: u64,
    decision_marks: u64,
    span: Option<(UnixNanos, UnixNanos)>,
    exec_records: u64,
    exec_hash: Xxh3,
    canonical: Vec<u8>,
}

impl Recorder {
    /// A recorder whose Sharpe intervals are `interval_ms` long.
    pub fn new(interval_ms: u64) -> Self {
        Self {
            ledger: Ledger::new(interval_ms),
            counts: BTreeMap::new(),
            venue_orders: HashSet::new(),
            intent_rows: Vec::new(),
            intent_index: HashMap::new(),
            fills: Vec::new(),
            rows: 0,
            malformed: 0,
            quality: BTreeMap::new(),
            market_events: 0,
            ofi_windows: 0,
            decision_marks: 0,
            span: None,
            exec_records: 0,
            exec_hash: Xxh3::new(),
            canonical: Vec::new(),
        }
    }

    /// Records how many replay rows were read, good or bad.
    pub fn rows_read(&mut self, rows: u64) {
        self.rows = rows;
    }

    fn time(&mut self, ts: UnixNanos) {
        self.ledger.at(ts);
        let (first, last) = self.span.get_or_insert((ts, ts));
        *first = (*first).min(ts);
        *last = (*last).max(ts);
    }

    /// Takes one record the cores produced.
    pub fn on(&mut self, p: Published<'_>) {
        match p {
            Published::Market(env) => {
                self.market_events += 1;
                self.time(env.ts_event);
                if let MarketEvent::Quote(q) = &env.payload {
                    self.ledger.mark(&q.symbol, q.mid());
                }
            }
            Published::Ofi(env) => {
                self.ofi_windows += 1;
                self.time(env.ts_event);
            }
            Published::Intent(env) => self.intent(env),
            Published::Exec(env) => self.exec(env),
            Published::Refused { reason, .. } => *self.quality.entry(reason.as_str()).or_default() += 1,
            Published::Malformed(_) => self.malformed += 1,
        }
    }

    fn intent(&mut self, env: &Envelope<IntentEvent>) {
        match &env.payload {
            IntentEvent::Intent(i) => {
                self.counts.entry(i.symbol.clone()).or_default().intents += 1;
                self.intent_index.insert(i.intent_id, self.intent_rows.len());
                self.intent_rows.push(IntentRow {
                    ts_event: env.ts_event,
                    intent: i.clone(),
                    status: None,
                    reason: None,
                    filled: Decimal::ZERO,
                    avg_px: None,
                });
            }
            IntentEvent::Cancel(c) => self.counts.entry(c.symbol.clone()).or_default().cancels += 1,
            IntentEvent::Decided(_) => self.decision_marks += 1,
        }
    }

    fn exec(&mut self, env: &Envelope<ExecEvent>) {
        self.hash(env);
        let ExecEvent::Report(r) = &env.payload else { return };
        self.time(env.ts_event);
        let counts = self.counts.entry(r.symbol.clone()).or_default();
        if r.venue != "risk" && self.venue_orders.insert(r.intent_id) {
            counts.orders += 1;
        }
        if let Some(reason) = r.reason {
            *counts.refusals.entry(reason.as_str()).or_default() += 1;
        }
        if let Some(&i) = self.intent_index.get(&r.intent_id) {
            let row = &mut self.intent_rows[i];
            row.status = Some(r.status);
            row.reason = r.reason.map(|r| r.as_str());
            row.filled = r.cum_qty;
            row.avg_px = r.avg_px;
        }
        self.fill(env.ts_event, r);
    }

    fn fill(&mut self, ts: UnixNanos, r: &ExecReport) {
        let (Some(exec_id), Some(px)) = (&r.exec_id, r.last_px) else { return };
        let booked = Fill {
            side: r.side,
            qty: r.last_qty,
            px,
            fee: r.commission,
            decision_mid: r.arrival_mid,
            venue_mid: r.venue_mid,
        };
        if r.last_qty <= Decimal::ZERO || !self.ledger.fill(&r.symbol, &booked) {
            return;
        }
        self.counts.entry(r.symbol.clone()).or_default().fills += 1;
        self.fills.push(FillRow {
            ts_event: ts,
            intent_id: r.intent_id,
            exec_id: exec_id.clone(),
            symbol: r.symbol.clone(),
            side: r.side,
            quantity: r.last_qty,
            price: px,
            commission: r.commission,
            arrival_mid: r.arrival_mid,
            venue_mid: r.venue_mid,
            slippage_bps: r.slippage_bps,
        });
    }

    /// The canonical form of an `exec_reports` record is its JSON as published with `ts_init`
    /// set to 0 (the only field that depends on when it was made), one line per record.
    fn hash(&mut self, env: &Envelope<ExecEvent>) {
        self.exec_records += 1;
        self.canonical.clear();
        if env.ts_init.0 == 0 {
            codec::encode_into(env, &mut self.canonical);
        } else {
            let mut env = env.clone();
            env.ts_init = UnixNanos(0);
            codec::encode_into(&env, &mut self.canonical);
        }
        self.canonical.push(b'\n');
        self.exec_hash.update(&self.canonical);
    }

    /// Ends the run: the report, the rows of the fills and intents tables, and what the page
    /// plots.
    pub fn finish(mut self, cfg: &AppConfig, counters: Counters) -> crate::Outcome {
        self.ledger.finish();
        let mut symbols = BTreeMap::new();
        let mut total = Counts::default();
        let names: std::collections::BTreeSet<Symbol> =
            self.ledger.symbols().keys().chain(self.counts.keys()).cloned().collect();
        for symbol in names {
            let counts = self.counts.remove(&symbol).unwrap_or_default();
            total.intents += counts.intents;
            total.cancels += counts.cancels;
            total.orders += counts.orders;
            total.fills += counts.fills;
            for (reason, n) in &counts.refusals {
                *total.refusals.entry(reason).or_default() += n;
            }
            let book = self.ledger.symbols().get(&symbol).cloned().unwrap_or_default();
            let pnl = Pnl::of([&book]);
            let position = SymbolPosition {
                quantity: exact(book.position.qty),
                avg_px: exact(book.position.avg_px),
                last_mid: book.mark.map(exact),
            };
            let risk = SymbolRisk::of(&self.ledger, &book.curve);
            let costs = CostReport::of([&book]);
            let round_trips = RoundTripReport::of([&book]);
            symbols.insert(symbol.to_string(), SymbolReport { pnl, position, counts, risk, costs, round_trips });
        }
        let books: Vec<_> = self.ledger.symbols().values().collect();
        let mut pnl = Pnl::of(books.iter().copied());
        pnl.net = exact(self.ledger.net());
        let costs = CostReport::of(books.iter().copied());
        let round_trips = RoundTripReport::of(books.iter().copied());
        let curve = self.ledger.total();
        let interval_ms = cfg.strategy_plane.decision_interval_ms;
        let notes = notes(cfg, &counters, &total);
        let report = Report {
            schema: SCHEMA,
            traded: total.fills > 0,
            notes,
            pnl,
            risk: Risk {
                max_drawdown: exact(self.ledger.max_drawdown()),
                sharpe: self.ledger.sharpe(),
                sampling_interval_ms: interval_ms,
                intervals: self.ledger.intervals(),
                periods_per_year: self.ledger.periods_per_year(),
                annualisation: format!(
                    "mean / sample standard deviation of the net PnL change per {interval_ms} ms interval of event time, × √periods_per_year ({YEAR_SECONDS} s a year: 365 days of 24 h); null with fewer than 2 intervals or none varying"
                ),
                max_drawdown_duration_ms: duration_ms(curve.max_drawdown_duration_ns(self.ledger.now())),
                sortino: self.ledger.sortino(),
                sortino_definition: "mean / downside deviation of the same interval net PnL changes, × √periods_per_year; downside deviation = √(Σ min(change, 0)² / n), target 0, n = every interval; null with fewer than 2 intervals or none losing".to_owned(),
            },
            costs,
            round_trips,
            counts: RunCounts {
                decisions: counters.decisions,
                halted_decisions: counters.halted_decisions,
                solver_failures: counters.solver_failures,
                decision_marks: self.decision_marks,
                totals: total,
                fills_not_booked: self.ledger.unbooked(),
            },
            input: Input {
                rows: self.rows,
                malformed_rows: self.malformed,
                quality_refusals: self.quality,
                market_events: self.market_events,
                ofi_windows: self.ofi_windows,
                first_event_ns: self.span.map(|s| s.0.0),
                last_event_ns: self.span.map(|s| s.1.0),
            },
            symbols,
            exec_reports: ExecDigest {
                records: self.exec_records,
                xxh3_128: format!("{:032x}", self.exec_hash.digest128()),
            },
            run: None,
        };
        crate::Outcome { report, fills: self.fills, intents: self.intent_rows, charts: self.ledger.take_charts() }
    }
}

/// Why a run that did not trade did not: said in the report, since "0" alone reads as a bug.
fn notes(cfg: &AppConfig, counters: &Counters, total: &Counts) -> Vec<String> {
    let mut notes = Vec::new();
    let sp = &cfg.strategy_plane;
    if counters.decisions == 0 {
        notes.push(format!(
            "no decision was made: a symbol trades after strategy_plane.warmup_windows = {} OFI windows; is the input shorter, or are its symbols not among the configured instruments?",
            sp.warmup_windows
        ));
    } else if total.intents == 0 {
        notes.push(format!(
            "no order intent in {} decisions: with strategy_plane.cost_aversion = {} and risk_aversion = {}, no forecast paid for its expected trading cost (fees, spread, impact)",
            counters.decisions, sp.cost_aversion, sp.risk_aversion
        ));
    }
    notes
}

/// PnL in account currency, exact decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pnl {
    /// Gross PnL − fees.
    pub net: String,
    /// Realized + unrealized, before fees.
    pub gross: String,
    /// Realized on reductions (average cost).
    pub realized: String,
    /// Open positions at the last mid.
    pub unrealized: String,
    /// Commissions paid.
    pub fees: String,
    /// Σ |quantity × price| of the fills.
    pub turnover: String,
}

impl Pnl {
    fn of<'a>(books: impl IntoIterator<Item = &'a crate::ledger::SymbolBook>) -> Self {
        let z = Decimal::ZERO;
        let (mut net, mut gross, mut realized, mut unrealized, mut fees, mut turnover) = (z, z, z, z, z, z);
        for b in books {
            net = net.saturating_add(b.net());
            gross = gross.saturating_add(b.gross());
            realized = realized.saturating_add(b.position.realized);
            unrealized = unrealized.saturating_add(b.unrealized());
            fees = fees.saturating_add(b.position.fees);
            turnover = turnover.saturating_add(b.turnover);
        }
        Self {
            net: exact(net),
            gross: exact(gross),
            realized: exact(realized),
            unrealized: exact(unrealized),
            fees: exact(fees),
            turnover: exact(turnover),
        }
    }
}

/// Drawdown and Sharpe ratio of the net equity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Risk {
    /// Largest fall of net equity from its running peak, account currency.
    pub max_drawdown: String,
    /// Annualised Sharpe ratio of the interval PnL; `null` when undefined.
    pub sharpe: Option<f64>,
    /// Length of an interval.
    pub sampling_interval_ms: u64,
    /// Intervals in the run (the first and last may be partial).
    pub intervals: u64,
    /// Intervals in a year.
    pub periods_per_year: f64,
    /// How the ratio is computed, in words.
    pub annualisation: String,
    /// Longest event time the net equity spent below its running peak, ms.
    pub max_drawdown_duration_ms: u64,
    /// Annualised Sortino ratio of the interval PnL (target 0); `null` when undefined.
    pub sortino: Option<f64>,
    /// How the Sortino ratio is computed, in words.
    pub sortino_definition: String,
}

fn duration_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

/// One symbol's drawdown and ratios, on its own net equity, with the run's intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolRisk {
    /// Largest fall of the symbol's net equity from its running peak.
    pub max_drawdown: String,
    /// Longest event time below that peak, ms.
    pub max_drawdown_duration_ms: u64,
    /// Annualised Sharpe ratio; `null` when undefined.
    pub sharpe: Option<f64>,
    /// Annualised Sortino ratio; `null` when undefined.
    pub sortino: Option<f64>,
}

impl SymbolRisk {
    fn of(ledger: &Ledger, curve: &Curve) -> Self {
        Self {
            max_drawdown: exact(curve.max_drawdown()),
            max_drawdown_duration_ms: duration_ms(curve.max_drawdown_duration_ns(ledger.now())),
            sharpe: ledger.sharpe_of(curve),
            sortino: ledger.sortino_of(curve),
        }
    }
}

/// What the fills cost against their decision mids, account currency; positive = paid.
/// `pnl.net = at_decision_mid − total`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostReport {
    /// The gross PnL the same fills would have made at their decision mids.
    pub at_decision_mid: String,
    /// The mid moving from the decision to the order's arrival at the venue.
    pub delay: String,
    /// The fill price against the mid at arrival: half-spread, depth walked, impact.
    pub spread_impact: String,
    /// Commissions (`pnl.fees`).
    pub fees: String,
    /// `delay + spread_impact + fees`.
    pub total: String,
}

impl CostReport {
    fn of<'a>(books: impl IntoIterator<Item = &'a SymbolBook>) -> Self {
        let z = Decimal::ZERO;
        let (mut paper, mut delay, mut spread, mut fees) = (z, z, z, z);
        for b in books {
            paper = paper.saturating_add(b.at_decision_mid());
            delay = delay.saturating_add(b.costs.delay);
            spread = spread.saturating_add(b.costs.spread_impact);
            fees = fees.saturating_add(b.position.fees);
        }
        Self {
            at_decision_mid: exact(paper),
            delay: exact(delay),
            spread_impact: exact(spread),
            fees: exact(fees),
            total: exact(delay.saturating_add(spread).saturating_add(fees)),
        }
    }
}

/// Round trips to flat: how often they win, and how long they are held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundTripReport {
    /// Round trips closed (flat → position → flat; a fill through zero closes one, opens one).
    pub closed: u64,
    /// Of those, the ones whose realized PnL net of their fees was > 0.
    pub winning: u64,
    /// `winning / closed`; `null` with none closed.
    pub hit_rate: Option<f64>,
    /// Mean event time from opening to flat of the closed ones, each counted once, ms.
    pub mean_holding_ms: Option<f64>,
}

impl RoundTripReport {
    fn of<'a>(books: impl IntoIterator<Item = &'a SymbolBook>) -> Self {
        let (mut closed, mut winning, mut held_ns) = (0u64, 0u64, 0u128);
        for b in books {
            closed += b.trips.closed;
            winning += b.trips.winning;
            held_ns += b.trips.held_ns;
        }
        let per_trip = |x: f64| (closed > 0).then(|| x / closed as f64);
        Self { closed, winning, hit_rate: per_trip(winning as f64), mean_holding_ms: per_trip(held_ns as f64 / 1e6) }
    }
}

/// The run's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Portfolio decisions made.
    pub decisions: u64,
    /// Decisions skipped while trading was halted.
    pub halted_decisions: u64,
    /// Decisions the solver could not finish.
    pub solver_failures: u64,
    /// Decision marks (one per symbol and decision).
    pub decision_marks: u64,
    /// Intents, orders, fills, refusals over every symbol.
    #[serde(flatten)]
    pub totals: Counts,
    /// Fills left out of PnL because they would overflow an exact decimal.
    pub fills_not_booked: u64,
}

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Input {
    /// Replay rows read, good or bad.
    pub rows: u64,
    /// Rows that could not be parsed.
    pub malformed_rows: u64,
    /// Rows the quality checks refused, by reason.
    pub quality_refusals: BTreeMap<&'static str, u64>,
    /// `market_events` records.
    pub market_events: u64,
    /// `ofi_events` records.
    pub ofi_windows: u64,
    /// Event time of the first record.
    pub first_event_ns: Option<u64>,
    /// Event time of the last record.
    pub last_event_ns: Option<u64>,
}

/// One symbol's position at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SymbolPosition {
    /// Signed quantity.
    pub quantity: String,
    /// Average price of the open quantity (0 when flat).
    pub avg_px: String,
    /// The last mid.
    pub last_mid: Option<String>,
}

/// One symbol's part of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolReport {
    /// Its PnL.
    pub pnl: Pnl,
    /// Its final position.
    pub position: SymbolPosition,
    /// Its counts.
    pub counts: Counts,
    /// Its drawdown and ratios.
    pub risk: SymbolRisk,
    /// Its cost decomposition.
    pub costs: CostReport,
    /// Its round trips.
    pub round_trips: RoundTripReport,
}

/// The `exec_reports` stream, summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecDigest {
    /// Records.
    pub records: u64,
    /// XXH3-128 of the records' canonical JSON lines, hex.
    pub xxh3_128: String,
}

/// What depends on the machine and the invocation, not on the input and configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// The replay files.
    pub files: Vec<String>,
    /// Wall time of the run, seconds.
    pub wall_seconds: f64,
    /// Replay rows per second of wall time.
    pub rows_per_second: f64,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// Whether anything filled.
    pub traded: bool,
    /// Sentences for a reader, e.g. why nothing traded.
    pub notes: Vec<String>,
    /// PnL over every symbol.
    pub pnl: Pnl,
    /// Drawdown and Sharpe ratio.
    pub risk: Risk,
    /// The fills' costs against their decision mids.
    pub costs: CostReport,
    /// Round trips: hit rate and holding time.
    pub round_trips: RoundTripReport,
    /// Decisions, intents, orders, fills, refusals.
    pub counts: RunCounts,
    /// What was read.
    pub input: Input,
    /// Per symbol.
    pub symbols: BTreeMap<String, SymbolReport>,
    /// The `exec_reports` stream's digest.
    pub exec_reports: ExecDigest,
    /// Machine- and invocation-dependent figures; absent from golden masters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
}

/// `fills.csv`'s header.
pub const FILLS_HEADER: &str =
    "ts_event_ns,intent_id,exec_id,symbol,side,quantity,price,commission,arrival_mid,venue_mid,slippage_bps";

/// `intents.csv`'s header.
pub const INTENTS_HEADER: &str = "ts_event_ns,intent_id,symbol,side,quantity,order_type,limit_price,time_in_force,arrival_mid,expected_cost_bps,status,reason,filled,avg_px";

fn opt(d: Option<Decimal>) -> String {
    d.map(exact).unwrap_or_default()
}

/// A CSV field: quoted when it holds a comma, quote or line break (execution ids come from the
/// venue; every other field is a number, an id or a symbol, which cannot).
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")).into() } else { s.into() }
}

/// An order type as the outputs write it.
pub fn order_type(t: OrderType) -> &'static str {
    match t {
        OrderType::Market => "market",
        OrderType::Limit => "limit",
    }
}

/// A time in force as the outputs write it.
pub fn time_in_force(t: TimeInForce) -> &'static str {
    match t {
        TimeInForce::Day => "day",
        TimeInForce::Ioc => "ioc",
        TimeInForce::Gtc => "gtc",
    }
}

/// An order status as the outputs write it.
pub fn status(s: ExecStatus) -> &'static str {
    match s {
        ExecStatus::Accepted => "accepted",
        ExecStatus::Rejected => "rejected",
        ExecStatus::PartiallyFilled => "partially_filled",
        ExecStatus::Filled => "filled",
        ExecStatus::Cancelled => "cancelled",
    }
}

impl FillRow {
    /// The CSV line, without its line break.
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{}",
            self.ts_event.0,
            self.intent_id,
            field(&self.exec_id),
            self.symbol,
            side(self.side),
            exact(self.quantity),
            exact(self.price),
            exact(self.commission),
            exact(self.arrival_mid),
            opt(self.venue_mid),
            opt(self.slippage_bps),
        )
    }
}

impl IntentRow {
    /// The CSV line, without its line break.
    pub fn csv(&self) -> String {
        let i = &self.intent;
        let (order_type, tif, status) =
            (order_type(i.order_type), time_in_force(i.time_in_force), self.status.map(status));
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.ts_event.0,
            i.intent_id,
            i.symbol,
            side(i.side),
            exact(i.quantity),
            order_type,
            opt(i.limit_price),
            tif,
            exact(i.arrival_mid),
            exact(i.expected_cost_bps),
            status.unwrap_or(""),
            self.reason.unwrap_or(""),
            exact(self.filled),
            opt(self.avg_px),
        )
    }
}
