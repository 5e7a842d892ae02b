//! The configuration's shape, defaults and validation rules.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{ConfigError, FieldError, Secret};

/// The whole system's configuration. Each plane reads the sections it needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AppConfig {
    /// Environment name and instance identity.
    pub app: AppSection,
    /// Logging.
    pub log: LogConfig,
    /// Broker and client settings.
    pub kafka: KafkaConfig,
    /// Interactive Brokers connection.
    pub ibkr: IbkrConfig,
    /// Paper and live trading switches.
    pub trading: TradingConfig,
    /// Portfolio limits shared by the Strategy and Order Planes.
    pub risk: RiskConfig,
    /// Data Plane.
    pub data_plane: DataPlaneConfig,
    /// Strategy Plane.
    pub strategy_plane: StrategyPlaneConfig,
    /// Order Plane.
    pub order_plane: OrderPlaneConfig,
    /// Tradable instruments (both the Strategy and the Order Plane use them).
    pub instruments: Vec<InstrumentConfig>,
}

/// `[app]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSection {
    /// `development`, `test`, `production`, …: picks `config/<env>.toml`.
    pub env: String,
    /// This instance's name in event envelopes; the host name when empty.
    pub instance_id: String,
    /// The IP address every plane's HTTP port listens on (`HTTP_BIND`). Loopback by default: the
    /// endpoints have no authentication but the admin token, so reaching them from elsewhere
    /// (`0.0.0.0`, as in a container) is a choice made explicitly.
    pub http_bind: String,
}

impl Default for AppSection {
    fn default() -> Self {
        Self { env: "development".into(), instance_id: String::new(), http_bind: "127.0.0.1".into() }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A level (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`, any case; also `trace`, `warn`,
    /// `off`) or `target=level` directives with an optional default level:
    /// `data_plane=debug,info`. [`log_filter`] turns it into a `tracing` filter.
    pub level: String,
    /// Folder for log files; empty disables file logging.
    pub dir: PathBuf,
    /// `text` (human-readable lines) or `json` (one JSON object per line, for a log shipper);
    /// any case. Stdout and the files alike.
    pub format: String,
    /// Daily log files kept in `dir`, today's included; older ones are deleted at start-up and
    /// at each day's rotation. At least 1.
    pub retention_days: usize,
}

impl LogConfig {
    /// Whether `format` asks for JSON lines.
    pub fn json(&self) -> bool {
        self.format.trim().eq_ignore_ascii_case("json")
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), dir: PathBuf::from("logs"), format: "text".into(), retention_days: 14 }
    }
}

/// The `tracing` filter that a `log.level` value stands for, or why the value is not one.
///
/// `tracing` reads any bare word as a target name, so a level it does not know (`WARNING`,
/// `verbose`) would silently select a target no code logs under and switch logging off: every
/// bare word must be a level here, and every `target=level` must end in one.
pub fn log_filter(value: &str) -> Result<String, String> {
    const HINT: &str = "(DEBUG, INFO, WARNING, ERROR, CRITICAL, or target=level such as data_plane=debug,info)";
    let mut directives = Vec::new();
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let translated = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => {
                let level =
                    tracing_level(level).ok_or_else(|| format!("{directive:?}: {level:?} is not a level {HINT}"))?;
                format!("{}={level}", target.trim())
            }
            _ => tracing_level(directive)
                .ok_or_else(|| format!("{directive:?} is neither a level nor target=level {HINT}"))?
                .to_owned(),
        };
        directives.push(translated);
    }
    if directives.is_empty() {
        return Err(format!("must not be empty {HINT}"));
    }
    let filter = directives.join(",");
    tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| format!("{value:?} is not a log filter: {e}"))?;
    Ok(filter)
}

/// A level as the specification spells it (Python's names) or as `tracing` does, any case.
fn tracing_level(name: &str) -> Option<&'static str> {
    match name.trim().to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        // tracing has no level above error.
        "error" | "critical" => Some("error"),
        "off" => Some("off"),
        _ => None,
    }
}

/// `[kafka]`: settings that matter operationally; the defaults suit one box.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Partitions of each topic created at start-up.
    pub partitions: i32,
    /// Replication factor of topics created at start-up.
    pub replication_factor: i32,
    /// `min.insync.replicas` of the topics created at start-up: with `acks=all`, how many
    /// replicas must hold a record before the broker acknowledges it.
    pub min_insync_replicas: i32,
    /// Prepended to every topic name (isolates test runs or tenants); empty by default.
    pub topic_prefix: String,
    /// `none`, `gzip`, `snappy` or `lz4`.
    pub compression: String,
    /// How long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// Largest batch per partition, bytes.
    pub batch_size: u32,
    /// How long a produce may take, retries included, before it fails and the plane stops; 0:
    /// never, a record waits through a broker outage however long (the plane is not ready
    /// meanwhile, and stops reading its input once the producer's queue is full).
    pub message_timeout_ms: u32,
    /// Consumer group session timeout.
    pub session_timeout_ms: u32,
    /// Longest pause between polls before the consumer is thrown out of its group.
    pub max_poll_interval_ms: u32,
    /// Longest time a consumer's fetch may wait at the broker (`fetch.wait.max.ms`). Kafka
    /// answers as soon as a record is there, so this is only how long an idle fetch is held:
    /// it costs no latency, and a longer one fewer idle round trips.
    pub fetch_wait_ms: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            partitions: 3,
            replication_factor: 1,
            min_insync_replicas: 1,
            topic_prefix: String::new(),
            compression: "lz4".into(),
            linger_ms: 1,
            batch_size: 262_144,
            message_timeout_ms: 0,
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
            fetch_wait_ms: 100,
        }
    }
}

impl KafkaConfig {
    /// The full name of `topic`, with the configured prefix.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}{}", self.topic_prefix, topic)
    }

    /// The full name of consumer group `group`: a prefix namespaces a deployment's groups as it
    /// does its topics. Two deployments on one broker sharing a group would rebalance each
    /// other's partitions.
    pub fn group(&self, group: &str) -> String {
        format!("{}{}", self.topic_prefix, group)
    }
}

/// `[ibkr]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IbkrConfig {
    /// TWS or IB Gateway host.
    pub host: String,
    /// 7497 TWS paper, 4002 Gateway paper (7496 / 4001 are live).
    pub port: u16,
    /// Another port a paper gateway listens on (a tunnel, a second gateway), accepted as
    /// `port` without the live opt-in; 0: none.
    pub allow_port: u16,
    /// API client id of the Data Plane's feed; unique per connection to one gateway.
    pub client_id: i32,
    /// API client id of the Order Plane's order session. IB scopes open orders and executions by
    /// client id, so it must stay the same across restarts and differ from `client_id`.
    pub order_client_id: i32,
    /// Account code, when the login manages several.
    pub account: Secret,
    /// Contracts the Data Plane subscribes to (`[[ibkr.contracts]]`); the Order Plane finds each
    /// traded symbol's contract here (a US stock on SMART when it is not listed).
    pub contracts: Vec<IbkrContractConfig>,
    /// Market-data lines of the account (IB's default is 100); subscriptions beyond it are
    /// refused at start-up instead of failing at IB with error 101.
    pub market_data_lines: u32,
    /// Messages per second sent to the gateway (IB disconnects above 50).
    pub messages_per_second: u32,
    /// How long a one-shot request (executions, open orders) waits for the gateway.
    pub request_timeout_ms: u64,
}

impl Default for IbkrConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 7497,
            allow_port: 0,
            client_id: 1,
            order_client_id: 2,
            account: Secret::default(),
            contracts: Vec::new(),
            market_data_lines: 100,
            messages_per_second: 45,
            request_timeout_ms: 10_000,
        }
    }
}

/// Ports of live-trading sessions: TWS 7496, IB Gateway 4001.
pub const IBKR_LIVE_PORTS: [u16; 2] = [7496, 4001];
/// IB's documented paper ports: TWS, IB Gateway.
pub const IBKR_PAPER_PORTS: [u16; 2] = [7497, 4002];

/// One IB contract (`[[ibkr.contracts]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IbkrContractConfig {
    /// Symbol, as in `[[instruments]]` and on every topic.
    pub symbol: String,
    /// `STK`, `FUT`, `CASH`, …
    #[serde(default = "default_sec_type")]
    pub sec_type: String,
    /// Routing exchange (`SMART`).
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// Primary listing exchange, when SMART needs it to be unambiguous.
    #[serde(default)]
    pub primary_exchange: String,
    /// Currency.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Market-depth rows to subscribe to (feeds multi-level OFI); 0 = none.
    #[serde(default)]
    pub depth_rows: u32,
}

impl IbkrContractConfig {
    /// A US stock routed through SMART, without depth: what a symbol trades as when
    /// `[[ibkr.contracts]]` does not list it.
    pub fn stock(symbol: &str) -> Self {
        Self {
            symbol: symbol.into(),
            sec_type: default_sec_type(),
            exchange: default_exchange(),
            primary_exchange: String::new(),
            currency: default_currency(),
            depth_rows: 0,
        }
    }
}

fn default_sec_type() -> String {
    "STK".into()
}

fn default_exchange() -> String {
    "SMART".into()
}

fn default_currency() -> String {
    "USD".into()
}

/// `[trading]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TradingConfig {
    /// Paper trading (the default).
    pub enable_paper_trading: bool,
    /// Live trading: also needs `APP_ENV=production` and paper trading off.
    pub enable_live_trading: bool,
}

impl Default for TradingConfig {
    fn default() -> Self {
        Self { enable_paper_trading: true, enable_live_trading: false }
    }
}

/// `[risk]`: portfolio limits, in account currency.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RiskConfig {
    /// Σ |position × price| across symbols.
    pub max_gross_exposure: Decimal,
    /// |Σ position × price| across symbols.
    pub max_net_exposure: Decimal,
    /// |position × price| of one symbol.
    pub max_position_size: Decimal,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            max_gross_exposure: Decimal::from(1_000_000),
            max_net_exposure: Decimal::from(500_000),
            max_position_size: Decimal::from(100_000),
        }
    }
}

/// `[data_plane]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DataPlaneConfig {
    /// Port of `/metrics` and `/health/*`.
    pub http_port: u16,
    /// `replay` or `ibkr`.
    pub source: String,
    /// Replay source.
    pub replay: ReplayConfig,
    /// Quality checks.
    pub quality: QualityConfig,
    /// Order Flow Imbalance.
    pub ofi: OfiConfig,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            http_port: 8000,
            source: "replay".into(),
            replay: ReplayConfig::default(),
            quality: QualityConfig::default(),
            ofi: OfiConfig::default(),
        }
    }
}

/// `[data_plane.replay]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayConfig {
    /// A `.csv` or `.parquet` file, or a folder of them (merged by event time).
    pub path: PathBuf,
    /// `max`, `realtime`, or a multiplier such as `10x` or `0.5x`.
    pub speed: String,
    /// How many times to play the input; 0 = forever. Each pass shifts timestamps past the last.
    pub loop_count: u32,
    /// Exit 0 once the input is played and published, instead of idling.
    pub exit_when_done: bool,
    /// Resume from the last checkpoint of the same input after a restart, instead of starting
    /// over (see `replay_checkpoints` in docs/events.md).
    pub resume: bool,
    /// How often, at most, the replay position is checkpointed.
    pub checkpoint_interval_ms: u64,
    /// A reader that hands out no row for this long while the pipeline waits for one (a corrupt
    /// file spinning the decoder, a hung file system) fails the replay: not ready, exit 66.
    pub stall_timeout_s: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/binance-spot-btcusdt-ethusdt-2024-08-09.csv"),
            speed: "10x".into(),
            loop_count: 1,
            exit_when_done: false,
            resume: true,
            checkpoint_interval_ms: 1000,
            stall_timeout_s: 30,
        }
    }
}

/// `[data_plane.quality]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QualityConfig {
    /// A symbol with no update for this long (event time) is stale.
    pub stale_after_ms: u64,
    /// A price further than this many standard deviations of recent returns is a jump…
    pub jump_sigmas: f64,
    /// …and further than this many basis points, whatever the volatility.
    pub jump_floor_bps: f64,
    /// This many consecutive jumps that agree on a new level are accepted as a real move.
    pub jump_confirmations: u32,
    /// EWMA weight of the latest squared return in the volatility estimate.
    pub volatility_alpha: f64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            stale_after_ms: 30_000,
            jump_sigmas: 25.0,
            jump_floor_bps: 50.0,
            jump_confirmations: 3,
            volatility_alpha: 0.01,
        }
    }
}

/// `[data_plane.ofi]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OfiConfig {
    /// Window length W, milliseconds of event time.
    pub window_ms: u64,
    /// Book levels used by multi-level OFI when depth arrives.
    pub depth_levels: usize,
}

impl Default for OfiConfig {
    fn default() -> Self {
        Self { window_ms: 1000, depth_levels: 5 }
    }
}

/// One tradable instrument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    /// Symbol as the venue names it.
    pub symbol: String,
    /// Smallest price increment.
    pub tick_size: Decimal,
    /// Quantities must be a multiple of this.
    pub lot_size: Decimal,
    /// Smallest order quantity.
    pub min_qty: Decimal,
    /// Smallest order notional.
    pub min_notional: Decimal,
    /// What the simulated venue charges for this instrument's executions.
    #[serde(default)]
    pub fees: FeeSchedule,
}

/// A venue's commission schedule for one instrument.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeeSchedule {
    /// Interactive Brokers Pro, US stocks, tiered per share (USD 0.35 minimum, 1 % of value
    /// maximum per order).
    #[default]
    IbkrTiered,
    /// A share of each execution's value, in basis points: `maker_bps` for fills of a resting
    /// order, `taker_bps` for fills that take liquidity (crypto venues).
    Bps {
        /// Fills that added liquidity.
        maker_bps: Decimal,
        /// Fills that took liquidity.
        taker_bps: Decimal,
    },
}

/// The shipped risk aversion. Returns over one second vary by about 1 bp (a variance near 1e-8),
/// so λ is large: with the costs left out, the largest position on the samples is then 27 % of
/// `max_position_size` (BTCUSDT, spot sample; 1.9 % on the futures sample), where λ = 1,000 sat
/// at the limit (`docs/architecture.md`, "The objective").
const RISK_AVERSION_DEFAULT: f64 = 30_000.0;

/// `[strategy_plane]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StrategyPlaneConfig {
    /// Port of `/metrics` and `/health/*`.
    pub http_port: u16,
    /// Event time between portfolio decisions.
    pub decision_interval_ms: u64,
    /// OFI windows a symbol's model learns from before it may trade.
    pub warmup_windows: u64,
    /// Forgetting factor of the signal regression.
    pub signal_forgetting: f64,
    /// Risk aversion λ of the optimizer, scale-free: the objective, as a share of the limit
    /// capital `C` (the gross limit times `limit_share`), is `μᵀx − λ·xᵀΣx − costs` with `x = w / C`
    /// and `Σ` the covariance of returns over one decision interval.
    pub risk_aversion: f64,
    /// How much of the expected trading cost (fees, spread, impact) the optimizer weighs: 1 as
    /// expected, 0 none (a plumbing test that must trade whatever it costs).
    pub cost_aversion: f64,
    /// Share of the portfolio limits this instance uses (0.5 each for two instances).
    pub limit_share: f64,
    /// A symbol with no OFI window for this long (event time) is not traded.
    pub stale_after_ms: u64,
    /// EWMA weight of the latest window in the return covariance.
    pub covariance_alpha: f64,
    /// At start-up, windows per symbol read back from `ofi_events` before where the consumer
    /// group resumes, to rebuild the signals and the covariance (0: none; the plane then warms up
    /// for `warmup_windows` again).
    pub rebuild_windows: u64,
    /// Write the start-up snapshot of an `exec_reports` partition every this many of its records
    /// (0: none written; existing ones are still read).
    pub snapshot_every: u64,
}

impl Default for StrategyPlaneConfig {
    fn default() -> Self {
        Self {
            http_port: 8001,
            decision_interval_ms: 1_000,
            warmup_windows: 30,
            signal_forgetting: 0.995,
            risk_aversion: RISK_AVERSION_DEFAULT,
            cost_aversion: 1.0,
            limit_share: 1.0,
            stale_after_ms: 5_000,
            covariance_alpha: 0.05,
            rebuild_windows: 2_000,
            snapshot_every: 1_000,
        }
    }
}

/// `[order_plane]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderPlaneConfig {
    /// Port of `/metrics`, `/health/*` and (when enabled) `/admin/*`.
    pub http_port: u16,
    /// `simulated` (fills against the market data) or `ibkr` (TWS / IB Gateway, `[ibkr]`).
    pub venue: String,
    /// Simulated venue: the fixed part of the event-time delay between decision and arrival.
    pub latency_ms: u64,
    /// Simulated venue: median of the random, log-normal part of that delay (0: none).
    pub latency_jitter_ms: f64,
    /// Simulated venue: σ of the log of the random part.
    pub latency_jitter_sigma: f64,
    /// Simulated venue: seed of the random part; the same seed gives the same delays.
    pub latency_seed: u64,
    /// Simulated venue: no delay is longer than this (it must stay below the Strategy Plane's
    /// decision interval, so that a decision sees every fill of the one before).
    pub latency_max_ms: u64,
    /// Simulated venue: what an order takes beyond the displayed size costs
    /// `impact_coefficient · σ_bps · sqrt(qty / volume)` basis points past the last level.
    pub impact_coefficient: f64,
    /// Simulated venue: most market-data snapshots kept per symbol for orders that arrive after
    /// the plane's market data has moved on; older ones are forgotten first.
    pub history_limit: usize,
    /// Halt trading at start-up (`KILL_SWITCH=true`).
    pub kill_switch: bool,
    /// Cancel open orders when trading is halted.
    pub cancel_open_on_halt: bool,
    /// Serve `POST /admin/kill-switch`; off by default.
    pub admin_enabled: bool,
    /// Bearer token the admin endpoint requires (`ADMIN_TOKEN`, environment only).
    pub admin_token: Secret,
    /// Largest notional of one order.
    pub max_order_notional: Decimal,
    /// A limit price further than this from the mid, in basis points, is refused.
    pub price_collar_bps: Decimal,
    /// Orders accepted per second of event time.
    pub max_orders_per_second: u32,
    /// Market data older than this at decision time is stale.
    pub stale_after_ms: u64,
    /// An intent decided longer than this before the latest quote is refused as stale (a backlog
    /// of old intents must not trade at today's prices).
    pub max_intent_lag_ms: u64,
    /// Trade volume horizon of the square-root impact term.
    pub impact_volume_window_s: u64,
    /// Cost model: RLS forgetting factor.
    pub cost_forgetting: f64,
    /// Cost model: residuals beyond this many robust standard deviations are down-weighted.
    pub cost_huber_k: f64,
    /// Write the start-up snapshot of an `exec_reports` partition every this many of its records
    /// (0: none written; existing ones are still read).
    pub snapshot_every: u64,
}

impl Default for OrderPlaneConfig {
    fn default() -> Self {
        Self {
            http_port: 8002,
            venue: "simulated".into(),
            latency_ms: 5,
            latency_jitter_ms: 2.0,
            latency_jitter_sigma: 0.5,
            latency_seed: 1,
            latency_max_ms: 500,
            impact_coefficient: 1.0,
            history_limit: 250_000,
            kill_switch: false,
            cancel_open_on_halt: true,
            admin_enabled: false,
            admin_token: Secret::default(),
            max_order_notional: Decimal::from(50_000),
            price_collar_bps: Decimal::from(100),
            max_orders_per_second: 50,
            stale_after_ms: 5_000,
            max_intent_lag_ms: 60_000,
            impact_volume_window_s: 60,
            cost_forgetting: 0.995,
            cost_huber_k: 3.0,
            snapshot_every: 1_000,
        }
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        let instrument = |symbol: &str, lot: Decimal| InstrumentConfig {
            symbol: symbol.into(),
            tick_size: Decimal::new(1, 2),
            lot_size: lot,
            min_qty: lot,
            min_notional: Decimal::from(10),
            fees: FeeSchedule::Bps { maker_bps: Decimal::from(10), taker_bps: Decimal::from(10) },
        };
        Self {
            app: AppSection::default(),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            ibkr: IbkrConfig::default(),
            trading: TradingConfig::default(),
            risk: RiskConfig::default(),
            data_plane: DataPlaneConfig::default(),
            strategy_plane: StrategyPlaneConfig::default(),
            order_plane: OrderPlaneConfig::default(),
            instruments: vec![instrument("BTCUSDT", Decimal::new(1, 5)), instrument("ETHUSDT", Decimal::new(1, 4))],
        }
    }
}

/// Replay pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplaySpeed {
    /// As fast as the pipeline goes.
    Max,
    /// Event time scaled by this factor (1.0 = real time).
    Factor(f64),
}

impl ReplaySpeed {
    /// Parses `max`, `realtime` or `<factor>x`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "max" => Some(Self::Max),
            "realtime" | "1x" => Some(Self::Factor(1.0)),
            other => other
                .strip_suffix('x')
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| (0.001..=1_000_000.0).contains(f))
                .map(Self::Factor),
        }
    }
}

impl AppConfig {
    /// Checks every rule at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, message: String| {
            errors.push(FieldError { field: field.into(), message });
        };
        if self.app.http_bind.parse::<IpAddr>().is_err() {
            bad(
                "app.http_bind",
                format!(
                    "{:?} is not an IP address (127.0.0.1: this host only; 0.0.0.0: every interface)",
                    self.app.http_bind
                ),
            );
        }
        if let Err(message) = log_filter(&self.log.level) {
            bad("log.level", message);
        }
        if !["text", "json"].iter().any(|f| self.log.format.trim().eq_ignore_ascii_case(f)) {
            bad("log.format", format!("{:?} is not one of text, json", self.log.format));
        }
        if self.log.retention_days == 0 {
            bad("log.retention_days", "must be at least 1 (daily files kept, today's included)".into());
        }
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            bad("kafka.bootstrap_servers", "must not be empty".into());
        }
        if k.partitions < 1 {
            bad("kafka.partitions", format!("must be at least 1, got {}", k.partitions));
        }
        if k.replication_factor < 1 {
            bad("kafka.replication_factor", format!("must be at least 1, got {}", k.replication_factor));
        }
        if k.min_insync_replicas < 1 || k.min_insync_replicas > k.replication_factor.max(1) {
            bad(
                "kafka.min_insync_replicas",
                format!("must be 1..=replication_factor ({}), got {}", k.replication_factor, k.min_insync_replicas),
            );
        }
        // zstd is not compiled into our librdkafka (it needs libzstd); refuse it here, not at start.
        if !["none", "gzip", "snappy", "lz4"].contains(&k.compression.as_str()) {
            bad("kafka.compression", format!("{:?} is not one of none, gzip, snappy, lz4", k.compression));
        }
        if k.linger_ms > 1_000 {
            bad("kafka.linger_ms", format!("must be at most 1000, got {}", k.linger_ms));
        }
        if k.fetch_wait_ms == 0 || k.fetch_wait_ms > 1_000 {
            bad("kafka.fetch_wait_ms", format!("must be 1..=1000, got {}", k.fetch_wait_ms));
        }
        if k.batch_size < 1_024 {
            bad("kafka.batch_size", format!("must be at least 1024, got {}", k.batch_size));
        }
        if k.session_timeout_ms < 1_000 || k.session_timeout_ms > 300_000 {
            bad("kafka.session_timeout_ms", format!("must be 1000..=300000, got {}", k.session_timeout_ms));
        }
        if k.max_poll_interval_ms < k.session_timeout_ms {
            bad("kafka.max_poll_interval_ms", "must not be below kafka.session_timeout_ms".into());
        }
        if k.message_timeout_ms != 0 && (k.message_timeout_ms < 1_000 || k.message_timeout_ms <= k.linger_ms) {
            bad(
                "kafka.message_timeout_ms",
                format!("must be 0 (never) or at least 1000 and above kafka.linger_ms, got {}", k.message_timeout_ms),
            );
        }
        if !k.topic_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            bad("kafka.topic_prefix", "may hold only A-Z a-z 0-9 . _ -".into());
        }
        if self.ibkr.host.trim().is_empty() {
            bad("ibkr.host", "must not be empty".into());
        }
        if self.ibkr.port == 0 {
            bad("ibkr.port", "must not be 0".into());
        }
        if self.ibkr.client_id < 0 {
            bad("ibkr.client_id", format!("must not be negative, got {}", self.ibkr.client_id));
        }
        if self.ibkr.order_client_id < 0 || self.ibkr.order_client_id == self.ibkr.client_id {
            let id = self.ibkr.order_client_id;
            bad("ibkr.order_client_id", format!("must not be negative nor equal ibkr.client_id, got {id}"));
        }
        if self.ibkr.messages_per_second == 0 || self.ibkr.messages_per_second > 50 {
            bad("ibkr.messages_per_second", format!("must be 1..=50, got {}", self.ibkr.messages_per_second));
        }
        if self.ibkr.request_timeout_ms == 0 {
            bad("ibkr.request_timeout_ms", "must be positive".into());
        }
        for (i, c) in self.ibkr.contracts.iter().enumerate() {
            if crate::types::Symbol::new(&c.symbol).is_err() || c.sec_type.is_empty() || c.currency.is_empty() {
                bad(&format!("ibkr.contracts[{i}]"), "needs a valid symbol, sec_type and currency".into());
            }
            if c.depth_rows > 50 {
                bad(&format!("ibkr.contracts[{i}]"), format!("depth_rows must be 0..=50, got {}", c.depth_rows));
            }
        }
        // Live trading is opt-in three times over; anything less is refused before a connection.
        let live_allowed =
            self.app.env == "production" && self.trading.enable_live_trading && !self.trading.enable_paper_trading;
        let live_rule =
            "live trading needs APP_ENV=production, ENABLE_LIVE_TRADING=true and ENABLE_PAPER_TRADING=false";
        if self.trading.enable_live_trading && !live_allowed {
            bad("trading.enable_live_trading", format!("refused: {live_rule}"));
        }
        if IBKR_LIVE_PORTS.contains(&self.ibkr.port) && !live_allowed {
            bad(
                "ibkr.port",
                format!("{} is a live-trading port (paper: 7497 TWS, 4002 Gateway); {live_rule}", self.ibkr.port),
            );
        } else if !IBKR_PAPER_PORTS.contains(&self.ibkr.port) && self.ibkr.port != self.ibkr.allow_port && !live_allowed
        {
            // A gateway on another port may be live: the port alone no longer says it is paper.
            bad(
                "ibkr.port",
                format!(
                    "{} is not an IB paper port (7497 TWS, 4002 Gateway): set IBKR_ALLOW_PORT={} if a paper \
                     gateway listens there, or {live_rule}",
                    self.ibkr.port, self.ibkr.port
                ),
            );
        }
        // Orders go to IB as paper or as live; with both off the venue would still trade.
        if !self.trading.enable_paper_trading && !self.trading.enable_live_trading {
            bad(
                "trading.enable_paper_trading",
                "paper and live trading are both off: ENABLE_PAPER_TRADING=true (the default) trades paper; \
                 live needs the full opt-in"
                    .into(),
            );
        }
        for (field, v) in [
            ("risk.max_gross_exposure", self.risk.max_gross_exposure),
            ("risk.max_net_exposure", self.risk.max_net_exposure),
            ("risk.max_position_size", self.risk.max_position_size),
        ] {
            if v <= Decimal::ZERO {
                bad(field, format!("must be positive, got {v}"));
            }
        }
        if self.risk.max_net_exposure > self.risk.max_gross_exposure {
            bad("risk.max_net_exposure", "must not exceed risk.max_gross_exposure".into());
        }
        if self.risk.max_position_size > self.risk.max_gross_exposure {
            bad("risk.max_position_size", "must not exceed risk.max_gross_exposure".into());
        }
        let d = &self.data_plane;
        if d.http_port == 0 {
            bad("data_plane.http_port", "must not be 0".into());
        }
        if !["replay", "ibkr"].contains(&d.source.as_str()) {
            bad("data_plane.source", format!("{:?} is not one of replay, ibkr", d.source));
        }
        if d.source == "replay" && d.replay.path.as_os_str().is_empty() {
            bad("data_plane.replay.path", "must name a file or folder".into());
        }
        if d.source == "ibkr" && self.ibkr.contracts.is_empty() {
            bad("ibkr.contracts", "DATA_SOURCE=ibkr needs at least one [[ibkr.contracts]] entry".into());
        }
        if d.replay.checkpoint_interval_ms == 0 {
            bad("data_plane.replay.checkpoint_interval_ms", "must be at least 1".into());
        }
        if d.replay.stall_timeout_s == 0 {
            bad("data_plane.replay.stall_timeout_s", "must be at least 1".into());
        }
        if ReplaySpeed::parse(&d.replay.speed).is_none() {
            bad(
                "data_plane.replay.speed",
                format!("{:?} is not max, realtime or a multiplier like 10x", d.replay.speed),
            );
        }
        let q = &d.quality;
        if q.stale_after_ms == 0 {
            bad("data_plane.quality.stale_after_ms", "must be positive".into());
        }
        if !(q.jump_sigmas.is_finite() && q.jump_sigmas > 0.0) {
            bad("data_plane.quality.jump_sigmas", format!("must be positive, got {}", q.jump_sigmas));
        }
        if !(q.jump_floor_bps.is_finite() && q.jump_floor_bps > 0.0) {
            bad("data_plane.quality.jump_floor_bps", format!("must be positive, got {}", q.jump_floor_bps));
        }
        if q.jump_confirmations == 0 {
            bad("data_plane.quality.jump_confirmations", "must be at least 1".into());
        }
        if !(q.volatility_alpha > 0.0 && q.volatility_alpha < 1.0) {
            bad("data_plane.quality.volatility_alpha", format!("must be in (0, 1), got {}", q.volatility_alpha));
        }
        if d.ofi.window_ms == 0 || d.ofi.window_ms > 3_600_000 {
            bad("data_plane.ofi.window_ms", format!("must be 1..=3600000, got {}", d.ofi.window_ms));
        }
        if d.ofi.depth_levels == 0 || d.ofi.depth_levels > 50 {
            bad("data_plane.ofi.depth_levels", format!("must be 1..=50, got {}", d.ofi.depth_levels));
        }
        let sp = &self.strategy_plane;
        if sp.http_port == 0 {
            bad("strategy_plane.http_port", "must not be 0".into());
        }
        if sp.decision_interval_ms == 0 {
            bad("strategy_plane.decision_interval_ms", "must be positive".into());
        }
        if !(sp.signal_forgetting > 0.9 && sp.signal_forgetting <= 1.0) {
            bad("strategy_plane.signal_forgetting", format!("must be in (0.9, 1], got {}", sp.signal_forgetting));
        }
        if !(sp.risk_aversion.is_finite() && sp.risk_aversion > 0.0) {
            bad("strategy_plane.risk_aversion", format!("must be positive, got {}", sp.risk_aversion));
        }
        if !(sp.cost_aversion.is_finite() && sp.cost_aversion >= 0.0) {
            bad("strategy_plane.cost_aversion", format!("must be 0 or more, got {}", sp.cost_aversion));
        }
        if !(sp.limit_share > 0.0 && sp.limit_share <= 1.0) {
            bad("strategy_plane.limit_share", format!("must be in (0, 1], got {}", sp.limit_share));
        }
        if sp.stale_after_ms == 0 {
            bad("strategy_plane.stale_after_ms", "must be positive".into());
        }
        if sp.rebuild_windows > 100_000 {
            bad("strategy_plane.rebuild_windows", format!("must be at most 100000, got {}", sp.rebuild_windows));
        }
        if !(sp.covariance_alpha > 0.0 && sp.covariance_alpha < 1.0) {
            bad("strategy_plane.covariance_alpha", format!("must be in (0, 1), got {}", sp.covariance_alpha));
        }
        let o = &self.order_plane;
        if o.http_port == 0 {
            bad("order_plane.http_port", "must not be 0".into());
        }
        if !["simulated", "ibkr"].contains(&o.venue.as_str()) {
            bad("order_plane.venue", format!("must be simulated or ibkr, got {:?}", o.venue));
        }
        // Blank characters are no secret: 16 spaces passed before.
        if o.admin_enabled && o.admin_token.expose().trim().chars().count() < 16 {
            bad("order_plane.admin_token", "admin_enabled needs ADMIN_TOKEN of at least 16 characters".into());
        }
        if o.max_order_notional <= Decimal::ZERO {
            bad("order_plane.max_order_notional", format!("must be positive, got {}", o.max_order_notional));
        }
        if o.price_collar_bps <= Decimal::ZERO {
            bad("order_plane.price_collar_bps", format!("must be positive, got {}", o.price_collar_bps));
        }
        if o.max_orders_per_second == 0 {
            bad("order_plane.max_orders_per_second", "must be at least 1".into());
        }
        if o.stale_after_ms == 0 {
            bad("order_plane.stale_after_ms", "must be positive".into());
        }
        if o.max_intent_lag_ms == 0 {
            bad("order_plane.max_intent_lag_ms", "must be positive".into());
        }
        if !(o.latency_jitter_ms.is_finite() && o.latency_jitter_ms >= 0.0) {
            bad("order_plane.latency_jitter_ms", format!("must be 0 or more, got {}", o.latency_jitter_ms));
        }
        if !(o.latency_jitter_sigma.is_finite() && (0.0..=3.0).contains(&o.latency_jitter_sigma)) {
            bad("order_plane.latency_jitter_sigma", format!("must be in [0, 3], got {}", o.latency_jitter_sigma));
        }
        if o.latency_max_ms < o.latency_ms {
            bad("order_plane.latency_max_ms", format!("must be at least latency_ms ({})", o.latency_ms));
        }
        if o.venue == "simulated" && o.latency_max_ms >= sp.decision_interval_ms {
            bad(
                "order_plane.latency_max_ms",
                format!("must be below strategy_plane.decision_interval_ms ({})", sp.decision_interval_ms),
            );
        }
        if !(o.impact_coefficient.is_finite() && o.impact_coefficient >= 0.0) {
            bad("order_plane.impact_coefficient", format!("must be 0 or more, got {}", o.impact_coefficient));
        }
        if o.history_limit < 2 {
            bad("order_plane.history_limit", "must be at least 2".into());
        }
        if o.impact_volume_window_s == 0 {
            bad("order_plane.impact_volume_window_s", "must be positive".into());
        }
        if !(o.cost_forgetting > 0.9 && o.cost_forgetting <= 1.0) {
            bad("order_plane.cost_forgetting", format!("must be in (0.9, 1], got {}", o.cost_forgetting));
        }
        if !(o.cost_huber_k.is_finite() && o.cost_huber_k > 0.0) {
            bad("order_plane.cost_huber_k", format!("must be positive, got {}", o.cost_huber_k));
        }
        if self.instruments.is_empty() {
            bad("instruments", "must list at least one instrument".into());
        }
        for (i, inst) in self.instruments.iter().enumerate() {
            let field = format!("instruments[{i}]");
            if crate::types::Symbol::new(&inst.symbol).is_err() {
                bad(&field, format!("symbol {:?} is not a valid symbol", inst.symbol));
            }
            if [inst.tick_size, inst.lot_size].iter().any(|v| *v <= Decimal::ZERO)
                || inst.min_qty < Decimal::ZERO
                || inst.min_notional < Decimal::ZERO
            {
                bad(&field, "tick_size and lot_size must be positive, minimums not negative".into());
            }
            if let FeeSchedule::Bps { maker_bps, taker_bps } = &inst.fees {
                for (name, bps) in [("maker_bps", maker_bps), ("taker_bps", taker_bps)] {
                    if *bps < Decimal::ZERO || *bps > Decimal::from(1_000) {
                        bad(&format!("{field}.fees.{name}"), format!("must be in [0, 1000], got {bps}"));
                    }
                }
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(errors)) }
    }

    /// The replay speed (valid after [`validate`](Self::validate)).
    pub fn replay_speed(&self) -> ReplaySpeed {
        ReplaySpeed::parse(&self.data_plane.replay.speed).unwrap_or(ReplaySpeed::Max)
    }

    /// The address the HTTP port listens on (valid after [`validate`](Self::validate)).
    pub fn http_bind(&self) -> IpAddr {
        self.app.http_bind.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// This instance's name: `app.instance_id`, or the host name.
    pub fn instance_id(&self) -> String {
        if !self.app.instance_id.is_empty() {
            return self.app.instance_id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "local".into())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::super::load_from;
    use super::{AppConfig, log_filter};

    fn load(vars: &[(&str, &str)]) -> Result<AppConfig, super::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), "").unwrap();
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        load_from(dir.path(), &vars)
    }

    #[test]
    fn the_http_port_listens_on_loopback_unless_told_otherwise() {
        assert_eq!(AppConfig::default().http_bind(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(load(&[]).unwrap().http_bind(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(load(&[("HTTP_BIND", "0.0.0.0")]).unwrap().http_bind(), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(load(&[("HTTP_BIND", "::1")]).unwrap().http_bind(), "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_http_bind_that_is_not_an_ip_address_is_named() {
        for bad in ["not-an-ip", "localhost", "127.0.0.1:8000", ""] {
            let err = load(&[("HTTP_BIND", bad)]).unwrap_err();
            assert_eq!(err.fields(), vec!["app.http_bind"], "{bad:?}: {err}");
        }
    }

    #[test]
    fn log_levels_are_read_as_the_specification_writes_them() {
        for (value, filter) in [
            ("DEBUG", "debug"),
            ("INFO", "info"),
            ("WARNING", "warn"),
            ("ERROR", "error"),
            ("CRITICAL", "error"),
            ("Warning", "warn"),
            ("critical", "error"),
            ("warn", "warn"),
            ("trace", "trace"),
            ("off", "off"),
            (" info ", "info"),
            ("data_plane=DEBUG,INFO", "data_plane=debug,info"),
            ("data_plane=debug, rdkafka=WARNING, critical", "data_plane=debug,rdkafka=warn,error"),
            ("common::kafka=trace", "common::kafka=trace"),
        ] {
            assert_eq!(log_filter(value).as_deref(), Ok(filter), "{value:?}");
        }
    }

    #[test]
    fn a_log_level_that_is_neither_a_level_nor_a_filter_is_named() {
        for bad in ["verbose", "data_plane", "data_plane=loud", "=debug", "info,chatty", "", " , ", "data_plane=[x"] {
            assert!(log_filter(bad).is_err(), "{bad:?} is accepted");
            let err = load(&[("LOG_LEVEL", bad)]).unwrap_err();
            assert_eq!(err.fields(), vec!["log.level"], "{bad:?}: {err}");
        }
    }

    #[test]
    fn log_format_and_retention_are_checked() {
        assert!(load(&[("LOG_FORMAT", "JSON")]).unwrap().log.json());
        assert!(!load(&[("LOG_FORMAT", "text")]).unwrap().log.json());
        assert_eq!(load(&[("LOG_RETENTION_DAYS", "3")]).unwrap().log.retention_days, 3);
        let err = load(&[("LOG_FORMAT", "logfmt"), ("LOG_RETENTION_DAYS", "0")]).unwrap_err();
        assert_eq!(err.fields(), vec!["log.format", "log.retention_days"], "{err}");
    }

    #[test]
    fn the_documented_log_levels_load() {
        for level in ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] {
            let cfg = load(&[("LOG_LEVEL", level)]).unwrap_or_else(|e| panic!("{level}: {e}"));
            assert_eq!(cfg.log.level, level, "the value is kept as written; log_filter translates it");
        }
    }
}
