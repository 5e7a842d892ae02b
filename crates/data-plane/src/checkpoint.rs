//! Replay checkpoints: how far a replay stream has been published, kept in Kafka
//! ([`REPLAY_CHECKPOINTS`](common::topics::REPLAY_CHECKPOINTS)) next to the data it describes, so
//! wiping the broker also forgets the progress.
//!
//! A checkpoint at position `p` means every output of every row before `p` is acknowledged by the
//! broker. A restarted Data Plane runs rows before `p` through its core without publishing them
//! (the core's state, and so every later event id and OFI window, comes out exactly as in an
//! uninterrupted run) and publishes from `p` on. Rows published after the last checkpoint and
//! before a crash are published again with the same event ids; consumers drop them
//! ([`common::dedup`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::config::KafkaConfig;
use common::kafka::{self, BrokerError, TrackedProducer};
use common::topics::REPLAY_CHECKPOINTS;
use serde::{Deserialize, Serialize};

/// One checkpoint record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The replay stream (files and their content hash).
    pub stream: String,
    /// Rows before this position are published and acknowledged.
    pub position: u64,
    /// The end of the input was reached and the last windows are published too.
    #[serde(default)]
    pub finished: bool,
}

/// Where a replay resumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    /// First row to publish.
    pub position: u64,
    /// Nothing is left to publish, not even the windows closed at the end of the input.
    pub finished: bool,
}

/// The last position recorded for `stream` among `records` (in log order: one stream's checkpoints
/// share a key, so a partition), or 0. Records that do not decode are ignored: a checkpoint is an
/// optimisation, and starting earlier is always safe.
pub fn latest<'a>(records: impl IntoIterator<Item = &'a [u8]>, stream: &str) -> Resume {
    records
        .into_iter()
        .filter_map(|r| serde_json::from_slice::<Checkpoint>(r).ok())
        .filter(|c| c.stream == stream)
        .map(|c| Resume { position: c.position, finished: c.finished })
        .last()
        .unwrap_or_default()
}

/// Reads the checkpoint topic and returns where `stream` resumes. Blocking.
pub fn load(cfg: &KafkaConfig, stream: &str) -> Result<Resume, BrokerError> {
    let records = kafka::read_to_end(cfg, &cfg.topic(REPLAY_CHECKPOINTS), Duration::from_secs(30))?;
    Ok(latest(records.iter().map(|r| r.payload.as_slice()), stream))
}

/// Writes a checkpoint at most once per interval as acknowledged positions come in.
pub struct Checkpointer {
    producer: Arc<TrackedProducer>,
    topic: String,
    stream: String,
    interval: Duration,
    last_write: Option<Instant>,
    written: Resume,
    acked: Resume,
}

impl Checkpointer {
    /// A writer for `stream`, starting from the resumed position `from`.
    pub fn new(
        producer: Arc<TrackedProducer>,
        cfg: &KafkaConfig,
        stream: &str,
        interval: Duration,
        from: Resume,
    ) -> Self {
        Self {
            producer,
            topic: cfg.topic(REPLAY_CHECKPOINTS),
            stream: stream.to_owned(),
            interval,
            last_write: None,
            written: from,
            acked: from,
        }
    }

    /// Everything before `position` is acknowledged (and, with `finished`, the end-of-input
    /// windows); writes a checkpoint when one is due.
    pub fn acked(&mut self, position: u64, finished: bool) {
        self.acked = Resume { position: self.acked.position.max(position), finished: self.acked.finished || finished };
        if self.last_write.is_none_or(|t| t.elapsed() >= self.interval) {
            self.write();
        }
    }

    /// Writes the latest acknowledged position now (at shutdown, before the producer's flush).
    pub fn write(&mut self) {
        if self.acked == self.written {
            return;
        }
        let cp =
            Checkpoint { stream: self.stream.clone(), position: self.acked.position, finished: self.acked.finished };
        let payload = serde_json::to_vec(&cp).unwrap_or_default();
        let key = format!("{:016x}", common::ids::stream_hash(&self.stream));
        // The delivery report is not awaited: a lost checkpoint only means resuming a little
        // earlier, and the next one supersedes it.
        match kafka::send_untracked(&self.producer, &self.topic, &key, &payload) {
            Ok(()) => {
                self.written = self.acked;
                self.last_write = Some(Instant::now());
            }
            Err(e) => tracing::debug!(error = %e, "Checkpoint not queued; the next one will be."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stream: &str, position: u64) -> Vec<u8> {
        serde_json::to_vec(&Checkpoint { stream: stream.into(), position, finished: false }).unwrap()
    }

    #[test]
    fn latest_takes_the_stream_s_last_position_and_ignores_garbage() {
        // A replay started over from scratch writes lower positions after higher ones.
        let records = [record("a", 10), record("b", 99), record("a", 30), record("a", 20), b"{not json".to_vec()];
        let at = |stream| latest(records.iter().map(Vec::as_slice), stream).position;
        assert_eq!(at("a"), 20);
        assert_eq!(at("b"), 99);
        assert_eq!(at("c"), 0);
        let done = br#"{"stream":"a","position":40,"finished":true}"#;
        assert_eq!(latest([done.as_slice()], "a"), Resume { position: 40, finished: true });
    }
}
