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

/// The Strategy Plane's start-up snapshots of `exec_reports`, one per ledger partition (compacted:
/// only the latest of each is kept). Internal to the Strategy Plane.
pub const STRATEGY_SNAPSHOTS: &str = "strategy_snapshots";
/// The Order Plane's start-up snapshots of `exec_reports` (compacted). Internal to the Order Plane.
pub const ORDER_SNAPSHOTS: &str = "order_snapshots";

/// Topics whose records are state rather than events: compacted, so the broker keeps the latest
/// record of each key.
pub const COMPACTED: [&str; 2] = [STRATEGY_SNAPSHOTS, ORDER_SNAPSHOTS];

/// Every topic of the event pipeline, in pipeline order.
pub const ALL: [&str; 4] = [MARKET_EVENTS, OFI_EVENTS, ORDER_INTENTS, EXEC_REPORTS];

/// The Strategy Plane's consumer group (before the prefix: [`KafkaConfig::group`]).
///
/// [`KafkaConfig::group`]: crate::config::KafkaConfig::group
pub const STRATEGY_PLANE_GROUP: &str = "strategy-plane";
/// The Order Plane's consumer group (before the prefix).
pub const ORDER_PLANE_GROUP: &str = "order-plane";
