//! Kafka topic names. Every record is keyed by its symbol so that one symbol's events stay in
//! order on one partition.

/// Normalized quotes, trades, depth updates and symbol status changes (Data Plane → all).
pub const MARKET_EVENTS: &str = "market_events";
/// Order Flow Imbalance windows (Data Plane → Strategy Plane).
pub const OFI_EVENTS: &str = "ofi_events";
/// Orders the Strategy Plane wants (Strategy Plane → Order Plane).
pub const ORDER_INTENTS: &str = "order_intents";
/// Execution reports, cost-model updates and trading halts (Order Plane → Strategy Plane).
pub const EXEC_REPORTS: &str = "exec_reports";

/// The Data Plane's replay progress: how far each replay stream is published, so a restarted
/// Data Plane resumes instead of starting over. Internal to the Data Plane.
pub const REPLAY_CHECKPOINTS: &str = "replay_checkpoints";

/// Every topic of the event pipeline, in pipeline order.
pub const ALL: [&str; 4] = [MARKET_EVENTS, OFI_EVENTS, ORDER_INTENTS, EXEC_REPORTS];

/// The Strategy Plane's consumer group (before the prefix: [`KafkaConfig::group`]).
///
/// [`KafkaConfig::group`]: crate::config::KafkaConfig::group
pub const STRATEGY_PLANE_GROUP: &str = "strategy-plane";
/// The Order Plane's consumer group (before the prefix).
pub const ORDER_PLANE_GROUP: &str = "order-plane";
