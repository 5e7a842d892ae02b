//! Layered, strict configuration shared by every plane.
//!
//! Layers, later wins: `config/default.toml` → `config/<APP_ENV>.toml` (optional) → `.env` in the
//! working directory (optional) → the process environment. Environment names are the documented
//! flat ones (`KAFKA_BOOTSTRAP_SERVERS`, `MAX_GROSS_EXPOSURE`, … see [`ENV_KEYS`]) plus
//! `ALGOTRADER__<SECTION>__<KEY>` for any other field. Unknown keys and invalid values are all
//! collected and reported together; the binaries exit with [`crate::EXIT_CONFIG`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, File, FileFormat, Value, ValueKind};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The documented environment names and the config keys they set.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("APP_ENV", "app.env"),
    ("INSTANCE_ID", "app.instance_id"),
    ("LOG_LEVEL", "log.level"),
    ("LOG_DIR", "log.dir"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers"),
    ("KAFKA_TOPIC_PARTITIONS", "kafka.partitions"),
    ("KAFKA_TOPIC_PREFIX", "kafka.topic_prefix"),
    ("IBKR_HOST", "ibkr.host"),
    ("IBKR_PORT", "ibkr.port"),
    ("IBKR_CLIENT_ID", "ibkr.client_id"),
    ("IBKR_ACCOUNT", "ibkr.account"),
    ("MAX_GROSS_EXPOSURE", "risk.max_gross_exposure"),
    ("MAX_NET_EXPOSURE", "risk.max_net_exposure"),
    ("MAX_POSITION_SIZE", "risk.max_position_size"),
    ("ENABLE_PAPER_TRADING", "trading.enable_paper_trading"),
    ("ENABLE_LIVE_TRADING", "trading.enable_live_trading"),
    ("DATA_SOURCE", "data_plane.source"),
    ("DATA_PLANE_PORT", "data_plane.http_port"),
    ("REPLAY_PATH", "data_plane.replay.path"),
    ("REPLAY_SPEED", "data_plane.replay.speed"),
    ("REPLAY_LOOP", "data_plane.replay.loop_count"),
    ("OFI_WINDOW_MS", "data_plane.ofi.window_ms"),
];

/// Prefix of the generic environment form: `ALGOTRADER__KAFKA__LINGER_MS=10`.
pub const ENV_PREFIX: &str = "ALGOTRADER__";

/// One field that is wrong, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `kafka.linger_ms`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or parsed.
    #[error("cannot load configuration: {0}")]
    Load(String),
    /// One or more fields are unknown or invalid.
    #[error("invalid configuration:{}", list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("\n  - {}: {}", e.field, e.message)).collect()
}

impl ConfigError {
    /// Every field the error names.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Self::Load(_) => Vec::new(),
            Self::Invalid(errors) => errors.iter().map(|e| e.field.as_str()).collect(),
        }
    }
}

/// A secret: read from the environment, never printed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret's value; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// The whole system's configuration. Each plane reads the sections it needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
}

/// `[app]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSection {
    /// `development`, `test`, `production`, …: picks `config/<env>.toml`.
    pub env: String,
    /// This instance's name in event envelopes; the host name when empty.
    pub instance_id: String,
}

impl Default for AppSection {
    fn default() -> Self {
        Self { env: "development".into(), instance_id: String::new() }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `data_plane=debug,info`, …
    pub level: String,
    /// Folder for log files; empty disables file logging.
    pub dir: PathBuf,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), dir: PathBuf::from("logs") }
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
    /// Prepended to every topic name (isolates test runs or tenants); empty by default.
    pub topic_prefix: String,
    /// `none`, `gzip`, `snappy` or `lz4`.
    pub compression: String,
    /// How long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// Largest batch per partition, bytes.
    pub batch_size: u32,
    /// How long a produce may take, retries included, before it fails.
    pub message_timeout_ms: u32,
    /// Consumer group session timeout.
    pub session_timeout_ms: u32,
    /// Longest pause between polls before the consumer is thrown out of its group.
    pub max_poll_interval_ms: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            partitions: 3,
            replication_factor: 1,
            topic_prefix: String::new(),
            compression: "lz4".into(),
            linger_ms: 5,
            batch_size: 262_144,
            message_timeout_ms: 60_000,
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
        }
    }
}

impl KafkaConfig {
    /// The full name of `topic`, with the configured prefix.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}{}", self.topic_prefix, topic)
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
    /// API client id; unique per connection to one gateway.
    pub client_id: i32,
    /// Account code, when the login manages several.
    pub account: Secret,
}

impl Default for IbkrConfig {
    fn default() -> Self {
        Self { host: "127.0.0.1".into(), port: 7497, client_id: 1, account: Secret::default() }
    }
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
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/binance-spot-btcusdt-ethusdt-2024-08-09.csv"),
            speed: "max".into(),
            loop_count: 1,
            exit_when_done: false,
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
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad("log.level", format!("{:?} is not a log filter (try info or debug)", self.log.level));
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
        // zstd is not compiled into our librdkafka (it needs libzstd); refuse it here, not at start.
        if !["none", "gzip", "snappy", "lz4"].contains(&k.compression.as_str()) {
            bad("kafka.compression", format!("{:?} is not one of none, gzip, snappy, lz4", k.compression));
        }
        if k.linger_ms > 1_000 {
            bad("kafka.linger_ms", format!("must be at most 1000, got {}", k.linger_ms));
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
        if k.message_timeout_ms < 1_000 || k.message_timeout_ms <= k.linger_ms {
            bad(
                "kafka.message_timeout_ms",
                format!("must be at least 1000 and above kafka.linger_ms, got {}", k.message_timeout_ms),
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
        if errors.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(errors)) }
    }

    /// The replay speed (valid after [`validate`](Self::validate)).
    pub fn replay_speed(&self) -> ReplaySpeed {
        ReplaySpeed::parse(&self.data_plane.replay.speed).unwrap_or(ReplaySpeed::Max)
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

/// Loads the configuration the way the binaries do: files under `config_dir`, then `.env` from
/// the working directory, then the process environment.
pub fn load(config_dir: &Path) -> Result<AppConfig, ConfigError> {
    let mut vars: Vec<(String, String)> = match dotenvy::from_path_iter(".env") {
        Ok(iter) => iter.collect::<Result<_, _>>().map_err(|e| ConfigError::Load(format!(".env: {e}")))?,
        Err(e) if e.not_found() => Vec::new(),
        Err(e) => return Err(ConfigError::Load(format!(".env: {e}"))),
    };
    // Variables that are not UTF-8 cannot be ours; skip them instead of panicking.
    vars.extend(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))));
    load_from(config_dir, &vars)
}

/// Loads the configuration from `config_dir` and the given environment variables (later entries
/// win). The environment is an argument so tests never touch the process's own.
pub fn load_from(config_dir: &Path, vars: &[(String, String)]) -> Result<AppConfig, ConfigError> {
    let mut errors = Vec::new();
    let mut overrides: Vec<(String, String)> = Vec::new();
    for (name, value) in vars {
        if let Some((_, key)) = ENV_KEYS.iter().find(|(n, _)| n == name) {
            overrides.push(((*key).to_owned(), value.clone()));
        } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
            let key = rest.to_ascii_lowercase().replace("__", ".");
            overrides.push((key, value.clone()));
        }
    }
    let app_env = overrides
        .iter()
        .rev()
        .find(|(k, _)| k == "app.env")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| AppSection::default().env);
    if app_env.is_empty() || !app_env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        errors.push(FieldError {
            field: "app.env".into(),
            message: format!("{app_env:?} must be a plain name such as development or production"),
        });
    }

    let env_file_ok = errors.is_empty();
    let build = |fixes: &[(String, Value)]| -> Result<Config, ConfigError> {
        let mut b = Config::builder()
            .add_source(File::from(config_dir.join("default.toml")).format(FileFormat::Toml).required(true));
        if env_file_ok {
            b = b.add_source(
                File::from(config_dir.join(format!("{app_env}.toml"))).format(FileFormat::Toml).required(false),
            );
        }
        for (k, v) in &overrides {
            b = b.set_override(k.as_str(), v.as_str()).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        for (k, v) in fixes {
            b = b.set_override(k.as_str(), v.clone()).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        b.build().map_err(|e| ConfigError::Load(e.to_string()))
    };

    let merged = build(&[])?;
    let known = known_keys();
    let mut present = Vec::new();
    leaf_keys(&merged.cache, "", &mut present);
    for key in &present {
        if !known.contains(key.as_str()) {
            errors.push(FieldError { field: key.clone(), message: "unknown key".into() });
        }
    }

    // Type errors: serde stops at the first, so replace each bad field by its default and retry
    // until the whole tree deserializes, collecting one error per field.
    let defaults = serde_json::to_value(AppConfig::default()).map_err(|e| ConfigError::Load(e.to_string()))?;
    let mut fixes: Vec<(String, Value)> = Vec::new();
    let mut cfg = merged;
    let parsed = loop {
        let unknown_free = strip_unknown(&cfg, &known)?;
        match unknown_free.try_deserialize::<AppConfig>() {
            Ok(parsed) => break parsed,
            Err(e) => {
                let (field, message) = split_type_error(&e);
                let Some(field) = field.filter(|f| !fixes.iter().any(|(k, _)| k == f)) else {
                    errors.push(FieldError { field: "config".into(), message });
                    return Err(ConfigError::Invalid(errors));
                };
                let default = json_at(&defaults, &field).map(json_to_value).unwrap_or(Value::from(""));
                errors.push(FieldError { field: field.clone(), message });
                fixes.push((field, default));
                cfg = build(&fixes)?;
            }
        }
    };
    if let Err(ConfigError::Invalid(more)) = parsed.validate() {
        // A field already reported as mistyped holds a stand-in default; do not blame it twice.
        errors.extend(more.into_iter().filter(|m| !fixes.iter().any(|(k, _)| *k == m.field)));
    }
    if errors.is_empty() { Ok(parsed) } else { Err(ConfigError::Invalid(errors)) }
}

fn known_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Ok(v) = serde_json::to_value(AppConfig::default()) {
        json_leaf_keys(&v, "", &mut keys);
    }
    keys
}

fn json_leaf_keys(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                json_leaf_keys(child, &join(prefix, k), out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn leaf_keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match &v.kind {
        ValueKind::Table(map) => {
            for (k, child) in map {
                leaf_keys(child, &join(prefix, k), out);
            }
        }
        _ if !prefix.is_empty() => out.push(prefix.to_owned()),
        _ => {}
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

/// A copy of `cfg` holding only known keys, so that deserialization reports type errors only.
fn strip_unknown(cfg: &Config, known: &BTreeSet<String>) -> Result<Config, ConfigError> {
    let mut present = Vec::new();
    leaf_keys(&cfg.cache, "", &mut present);
    let mut b = Config::builder();
    for key in present.iter().filter(|k| known.contains(k.as_str())) {
        let value: Value = cfg.get(key).map_err(|e| ConfigError::Load(e.to_string()))?;
        b = b.set_override(key.as_str(), value).map_err(|e| ConfigError::Load(e.to_string()))?;
    }
    b.build().map_err(|e| ConfigError::Load(e.to_string()))
}

fn split_type_error(e: &config::ConfigError) -> (Option<String>, String) {
    match e {
        config::ConfigError::Type { key, unexpected, expected, .. } => {
            (key.clone(), format!("expected {expected}, got {unexpected}"))
        }
        other => {
            // Errors raised inside a field's own deserializer (decimals) carry the key in text:
            // "... for key `risk.max_gross_exposure`".
            let text = other.to_string();
            let key =
                text.rsplit_once("for key `").and_then(|(_, rest)| rest.split_once('`')).map(|(k, _)| k.to_owned());
            let message = text.split(" for key `").next().unwrap_or(&text).to_owned();
            (key, message)
        }
    }
}

fn json_at<'a>(v: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        other => Value::from(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    fn dir_with(default_toml: &str, extra: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), default_toml).unwrap();
        for (name, body) in extra {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
    }

    #[test]
    fn shipped_defaults_load_and_validate() {
        let cfg = load_from(&shipped_dir(), &[]).unwrap();
        assert_eq!(cfg.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(cfg.data_plane.http_port, 8000);
        assert!(cfg.trading.enable_paper_trading);
        assert!(!cfg.trading.enable_live_trading);
    }

    #[test]
    fn the_shipped_env_example_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.example");
        let vars: Vec<(String, String)> = dotenvy::from_path_iter(example).unwrap().map(Result::unwrap).collect();
        assert!(vars.iter().any(|(k, _)| k == "MAX_GROSS_EXPOSURE"));
        let cfg = load_from(&shipped_dir(), &vars).unwrap();
        assert!(cfg.trading.enable_paper_trading && !cfg.trading.enable_live_trading);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = dir_with(
            "[kafka]\nlinger_ms = 7\npartitions = 2\n[log]\nlevel = \"warn\"\n",
            &[("staging.toml", "[kafka]\nlinger_ms = 9\n")],
        );
        let cfg = load_from(
            dir.path(),
            &env(&[("APP_ENV", "staging"), ("KAFKA_TOPIC_PARTITIONS", "6"), ("ALGOTRADER__LOG__LEVEL", "debug")]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.linger_ms, 9, "the APP_ENV file overrides default.toml");
        assert_eq!(cfg.kafka.partitions, 6, "the environment overrides files");
        assert_eq!(cfg.log.level, "debug");
    }

    #[test]
    fn documented_env_names_work() {
        let dir = dir_with("", &[]);
        let cfg = load_from(
            dir.path(),
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "broker:29092"),
                ("IBKR_HOST", "gw"),
                ("IBKR_PORT", "4002"),
                ("IBKR_CLIENT_ID", "9"),
                ("MAX_GROSS_EXPOSURE", "250000.50"),
                ("MAX_NET_EXPOSURE", "100000"),
                ("MAX_POSITION_SIZE", "50000"),
                ("ENABLE_PAPER_TRADING", "false"),
                ("REPLAY_SPEED", "10x"),
                ("OFI_WINDOW_MS", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.bootstrap_servers, "broker:29092");
        assert_eq!((cfg.ibkr.host.as_str(), cfg.ibkr.port, cfg.ibkr.client_id), ("gw", 4002, 9));
        assert_eq!(cfg.risk.max_gross_exposure, dec!(250000.50));
        assert!(!cfg.trading.enable_paper_trading);
        assert_eq!(cfg.replay_speed(), ReplaySpeed::Factor(10.0));
        assert_eq!(cfg.data_plane.ofi.window_ms, 500);
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let dir = dir_with("[kafka]\nlingerr_ms = 5\n[nonsense]\nx = 1\n", &[]);
        let err = load_from(
            dir.path(),
            &env(&[
                ("IBKR_PORT", "seventy"),
                ("MAX_GROSS_EXPOSURE", "lots"),
                ("OFI_WINDOW_MS", "0"),
                ("REPLAY_SPEED", "fast"),
                ("KAFKA_TOPIC_PARTITIONS", "-1"),
                ("ALGOTRADER__DATA_PLANE__QUALITY__NOPE", "1"),
            ]),
        )
        .unwrap_err();
        let mut fields = err.fields();
        fields.sort_unstable();
        assert_eq!(
            fields,
            vec![
                "data_plane.ofi.window_ms",
                "data_plane.quality.nope",
                "data_plane.replay.speed",
                "ibkr.port",
                "kafka.lingerr_ms",
                "kafka.partitions",
                "nonsense.x",
                "risk.max_gross_exposure",
            ],
            "{err}"
        );
    }

    #[test]
    fn limits_must_be_consistent() {
        let dir = dir_with("", &[]);
        let err = load_from(dir.path(), &env(&[("MAX_GROSS_EXPOSURE", "10"), ("MAX_NET_EXPOSURE", "20")])).unwrap_err();
        let fields = err.fields();
        assert!(fields.contains(&"risk.max_net_exposure"), "{err}");
        assert!(fields.contains(&"risk.max_position_size"), "{err}");
    }

    #[test]
    fn a_missing_default_file_is_a_load_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_from(dir.path(), &[]), Err(ConfigError::Load(_))));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let dir = dir_with("", &[]);
        let cfg = load_from(dir.path(), &env(&[("IBKR_ACCOUNT", "DU1234567")])).unwrap();
        assert_eq!(cfg.ibkr.account.expose(), "DU1234567");
        assert!(!format!("{cfg:?}").contains("DU1234567"));
    }

    #[test]
    fn replay_speed_forms() {
        assert_eq!(ReplaySpeed::parse("max"), Some(ReplaySpeed::Max));
        assert_eq!(ReplaySpeed::parse("realtime"), Some(ReplaySpeed::Factor(1.0)));
        assert_eq!(ReplaySpeed::parse("0.5x"), Some(ReplaySpeed::Factor(0.5)));
        assert_eq!(ReplaySpeed::parse("0x"), None);
        assert_eq!(ReplaySpeed::parse("1e-300x"), None);
        assert_eq!(ReplaySpeed::parse("1e9x"), None);
        assert_eq!(ReplaySpeed::parse("fast"), None);
    }
}
