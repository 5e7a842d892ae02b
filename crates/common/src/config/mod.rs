//! Layered, strict configuration shared by every plane.
//!
//! Layers, later wins: `config/default.toml` → `config/<APP_ENV>.toml` (optional) → `.env` in the
//! working directory (optional) → the process environment. Environment names are the documented
//! flat ones (`KAFKA_BOOTSTRAP_SERVERS`, `MAX_GROSS_EXPOSURE`, … see [`ENV_KEYS`]) plus
//! `ALGOTRADER__<SECTION>__<KEY>` for any other field. Unknown keys and invalid values are all
//! collected and reported together; the binaries exit with [`crate::EXIT_CONFIG`].

mod load;
mod schema;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use load::{load, load_from, load_with, override_var};
pub use schema::*;

/// The documented environment names and the config keys they set.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("APP_ENV", "app.env"),
    ("INSTANCE_ID", "app.instance_id"),
    ("LOG_LEVEL", "log.level"),
    ("LOG_DIR", "log.dir"),
    ("LOG_FORMAT", "log.format"),
    ("LOG_RETENTION_DAYS", "log.retention_days"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers"),
    ("KAFKA_TOPIC_PARTITIONS", "kafka.partitions"),
    ("KAFKA_TOPIC_PREFIX", "kafka.topic_prefix"),
    ("KAFKA_REPLICATION_FACTOR", "kafka.replication_factor"),
    ("KAFKA_MIN_INSYNC_REPLICAS", "kafka.min_insync_replicas"),
    ("IBKR_HOST", "ibkr.host"),
    ("IBKR_PORT", "ibkr.port"),
    ("IBKR_ALLOW_PORT", "ibkr.allow_port"),
    ("IBKR_CLIENT_ID", "ibkr.client_id"),
    ("IBKR_ORDER_CLIENT_ID", "ibkr.order_client_id"),
    ("IBKR_ACCOUNT", "ibkr.account"),
    ("MAX_GROSS_EXPOSURE", "risk.max_gross_exposure"),
    ("MAX_NET_EXPOSURE", "risk.max_net_exposure"),
    ("MAX_POSITION_SIZE", "risk.max_position_size"),
    ("ENABLE_PAPER_TRADING", "trading.enable_paper_trading"),
    ("ENABLE_LIVE_TRADING", "trading.enable_live_trading"),
    ("DATA_SOURCE", "data_plane.source"),
    ("DATA_PLANE_PORT", "data_plane.http_port"),
    ("HTTP_BIND", "app.http_bind"),
    ("REPLAY_PATH", "data_plane.replay.path"),
    ("REPLAY_SPEED", "data_plane.replay.speed"),
    ("REPLAY_LOOP", "data_plane.replay.loop_count"),
    ("REPLAY_RESUME", "data_plane.replay.resume"),
    ("OFI_WINDOW_MS", "data_plane.ofi.window_ms"),
    ("STRATEGY_PLANE_PORT", "strategy_plane.http_port"),
    ("DECISION_INTERVAL_MS", "strategy_plane.decision_interval_ms"),
    ("RISK_AVERSION", "strategy_plane.risk_aversion"),
    ("COST_AVERSION", "strategy_plane.cost_aversion"),
    ("LIMIT_SHARE", "strategy_plane.limit_share"),
    ("ORDER_PLANE_PORT", "order_plane.http_port"),
    ("ORDER_VENUE", "order_plane.venue"),
    ("SIM_LATENCY_MS", "order_plane.latency_ms"),
    ("SIM_LATENCY_JITTER_MS", "order_plane.latency_jitter_ms"),
    ("SIM_LATENCY_SEED", "order_plane.latency_seed"),
    ("KILL_SWITCH", "order_plane.kill_switch"),
    ("ADMIN_ENABLED", "order_plane.admin_enabled"),
    ("ADMIN_TOKEN", "order_plane.admin_token"),
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

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}
