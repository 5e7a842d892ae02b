//! Start-up snapshots of the `exec_reports` ledger.
//!
//! Both consumer planes rebuild state from `exec_reports`, which is kept forever. Reading all of
//! it at every start makes start-up time and memory grow with the ledger for good. Instead, each
//! plane folds the ledger one partition at a time into a small state (a [`LedgerFold`]: what its
//! rebuild needs of that partition, and nothing that grows with it) and writes that state, with
//! the offset it covers, to a compacted topic keyed by the partition. A start reads the latest
//! snapshot of each partition and only the records after it.
//!
//! A fold is a pure function of a partition's records, so any process that has read them can
//! write the snapshot: the state it holds is, by construction, that of every record below
//! `next_offset` and of none above.
//!
//! The record is a plain versioned JSON object (not an event envelope: it is state, replaced
//! by the next one, not a fact):
//! `{"version":1,"kind":"strategy","partition":0,"next_offset":1200,"state":{…}}`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::events::{Envelope, ExecEvent};

/// The snapshot format this build writes and reads; a record of any other version is ignored
/// (the partition is then read from its start).
pub const SNAPSHOT_VERSION: u32 = 1;

/// A plane's state of one `exec_reports` partition, built record by record.
pub trait LedgerFold: Serialize + DeserializeOwned + Send + 'static {
    /// Names the plane whose fold this is: a snapshot of another kind is refused.
    const KIND: &'static str;

    /// Folds in the next record of the partition.
    fn apply(&mut self, env: &Envelope<ExecEvent>);

    /// Whether a snapshot's state (`self`) can stand for the records it covers under the
    /// settings of `fresh`, an empty fold as this process makes it; `Err` names why not.
    fn usable_with(&self, fresh: &Self) -> Result<(), &'static str> {
        let _ = fresh;
        Ok(())
    }
}

/// One partition's fold and how far it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionFold<S> {
    /// The `exec_reports` partition.
    pub partition: i32,
    /// Every record of the partition below this offset is in `state`, and none at or above it.
    pub next_offset: i64,
    /// Records folded in since the state was last written (or read) as a snapshot.
    pub unsaved: u64,
    /// The fold.
    pub state: S,
}

impl<S: LedgerFold> PartitionFold<S> {
    /// Folds in the record at `offset`; one below `next_offset` is in the state already and is
    /// left out. An undecodable record (`None`) only moves the offset on.
    pub fn apply(&mut self, offset: i64, env: Option<&Envelope<ExecEvent>>) {
        if offset < self.next_offset {
            return;
        }
        if let Some(env) = env {
            self.state.apply(env);
        }
        self.next_offset = offset + 1;
        self.unsaved += 1;
    }

    /// The snapshot record of this fold.
    pub fn encode(&self) -> Vec<u8> {
        let record = Snapshot {
            version: SNAPSHOT_VERSION,
            kind: S::KIND.to_owned(),
            partition: self.partition,
            next_offset: self.next_offset,
            state: &self.state,
        };
        // A fold holds decimals, integers, strings and finite floats only.
        serde_json::to_vec(&record).unwrap_or_default()
    }
}

/// The snapshot record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot<S> {
    version: u32,
    kind: String,
    partition: i32,
    next_offset: i64,
    state: S,
}

/// Only the fields every version has: read first, so that a record of another version is
/// refused for its version, not for its fields.
#[derive(Deserialize)]
struct Header {
    version: u32,
}

/// Why a snapshot record was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot record of this plane's kind.
    #[error("undecodable snapshot: {0}")]
    Undecodable(String),
    /// A version this build does not read.
    #[error("snapshot version {0} is not {SNAPSHOT_VERSION}")]
    Version(u32),
    /// Written by another plane.
    #[error("snapshot of kind {0:?}")]
    Kind(String),
    /// Its key and its content name different partitions.
    #[error("snapshot keyed for partition {key:?} describes partition {partition}")]
    Partition {
        /// The record's key.
        key: String,
        /// The partition in its value.
        partition: i32,
    },
    /// It covers records the partition does not hold (the ledger was recreated, or the record
    /// is forged).
    #[error("snapshot covers offsets up to {next_offset}, beyond the partition's end {end}")]
    Beyond {
        /// The snapshot's offset.
        next_offset: i64,
        /// The partition's end.
        end: i64,
    },
    /// Made under settings its state cannot stand for.
    #[error("snapshot unusable: {0}")]
    Unusable(&'static str),
}

impl SnapshotError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::Version(_) => "version",
            Self::Kind(_) => "kind",
            Self::Partition { .. } => "partition",
            Self::Beyond { .. } => "beyond_end",
            Self::Unusable(_) => "unusable",
        }
    }
}

/// The key of partition `partition`'s snapshot.
pub fn key(partition: i32) -> String {
    partition.to_string()
}

/// Decodes the snapshot record `payload` stored under `key`, for a partition whose records end
/// at `end` (its high watermark), into a fold ready to take the records from its offset on.
/// `fresh` is an empty fold with this process's settings.
pub fn decode<S: LedgerFold>(
    key: &str,
    payload: &[u8],
    end: i64,
    fresh: &S,
) -> Result<PartitionFold<S>, SnapshotError> {
    let undecodable = |e: serde_json::Error| SnapshotError::Undecodable(e.to_string());
    let header: Header = serde_json::from_slice(payload).map_err(undecodable)?;
    if header.version != SNAPSHOT_VERSION {
        return Err(SnapshotError::Version(header.version));
    }
    let record: Snapshot<S> = serde_json::from_slice(payload).map_err(undecodable)?;
    if record.kind != S::KIND {
        return Err(SnapshotError::Kind(record.kind));
    }
    if self::key(record.partition) != key {
        return Err(SnapshotError::Partition { key: key.to_owned(), partition: record.partition });
    }
    if record.next_offset > end || record.next_offset < 0 {
        return Err(SnapshotError::Beyond { next_offset: record.next_offset, end });
    }
    record.state.usable_with(fresh).map_err(SnapshotError::Unusable)?;
    Ok(PartitionFold { partition: record.partition, next_offset: record.next_offset, unsaved: 0, state: record.state })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use crate::events::{Source, TradingHalt};
    use crate::types::{EventId, UnixNanos};
    use std::sync::Arc;

    /// Counts records and keeps the latest halt; refuses snapshots made with another `limit`.
    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Counting {
        records: u64,
        halted: bool,
        limit: u64,
    }

    impl LedgerFold for Counting {
        const KIND: &'static str = "counting";
        fn apply(&mut self, env: &Envelope<ExecEvent>) {
            self.records += 1;
            if let ExecEvent::Halt(h) = &env.payload {
                self.halted = h.halted;
            }
        }
        fn usable_with(&self, fresh: &Self) -> Result<(), &'static str> {
            if self.limit == fresh.limit { Ok(()) } else { Err("limit changed") }
        }
    }

    fn halt(halted: bool) -> Envelope<ExecEvent> {
        Envelope {
            schema_version: crate::events::SCHEMA_VERSION,
            event_id: EventId(uuid::Uuid::from_u128(1)),
            source: Arc::new(Source { plane: "t".into(), instance: "t".into() }),
            ts_event: UnixNanos(1),
            ts_init: UnixNanos(1),
            causation_id: None,
            payload: ExecEvent::Halt(TradingHalt { halted, reason: "t".into(), cancel_open: false }),
        }
    }

    #[test]
    fn a_fold_round_trips_and_skips_what_it_holds_already() {
        let mut fold = PartitionFold { partition: 2, next_offset: 0, unsaved: 0, state: Counting::default() };
        fold.apply(0, Some(&halt(true)));
        fold.apply(1, None);
        fold.apply(1, Some(&halt(false)));
        assert_eq!((fold.state.records, fold.state.halted, fold.next_offset, fold.unsaved), (1, true, 2, 2));
        let bytes = fold.encode();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"version":1,"kind":"counting","partition":2,"next_offset":2,"state":{"records":1,"halted":true,"limit":0}}"#
        );
        let back = decode::<Counting>("2", &bytes, 2, &Counting::default()).unwrap();
        assert_eq!(back, PartitionFold { unsaved: 0, ..fold });
    }

    #[test]
    fn a_bad_snapshot_says_why() {
        let fresh = Counting::default();
        let good = PartitionFold { partition: 1, next_offset: 5, unsaved: 0, state: Counting::default() }.encode();
        let reason = |key: &str, bytes: &[u8], end: i64| decode(key, bytes, end, &fresh).unwrap_err().reason();
        assert_eq!(reason("1", b"{not json", 9), "undecodable");
        assert_eq!(reason("1", br#"{"version":2,"anything":true}"#, 9), "version");
        assert_eq!(reason("0", &good, 9), "partition");
        assert_eq!(reason("1", &good, 4), "beyond_end");
        let other = String::from_utf8(good.clone()).unwrap().replace("counting", "order");
        assert_eq!(reason("1", other.as_bytes(), 9), "kind");
        let changed = Counting { limit: 3, ..Counting::default() };
        assert_eq!(decode("1", &good, 9, &changed).unwrap_err().reason(), "unusable");
        let extra = String::from_utf8(good.clone()).unwrap().replace("\"version\":1,", "\"version\":1,\"x\":1,");
        assert_eq!(reason("1", extra.as_bytes(), 9), "undecodable");
        assert!(decode("1", &good, 5, &fresh).is_ok(), "covering exactly the partition is fine");
    }
}
