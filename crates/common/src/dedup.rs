//! Dropping re-delivered events by `event_id`.
//!
//! Delivery is at-least-once: after a crash, a producer publishes again what it cannot prove was
//! acknowledged, with the same deterministic event ids (the Data Plane resumes from its replay
//! checkpoint). Consumers must see each event once.
//!
//! Remembering every id ever seen would grow without bound. It is not needed: the Data Plane
//! publishes each symbol's events in event-time order (its quality checks refuse anything
//! older), and all of a symbol's events share one partition. So per symbol a consumer keeps the
//! newest event time and the ids seen at exactly that time. An event older than the newest is a
//! re-delivery (or breaks the ordering contract); one at the newest time is a re-delivery when its
//! id is already known. Memory is one small entry per symbol.
//!
//! Ids with no such order (intent ids, execution ids) go to [`Recent`], which remembers a fixed
//! number of the newest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::types::{EventId, Symbol, UnixNanos};

/// Per-symbol first-seen filter for streams in event-time order.
#[derive(Debug, Default)]
pub struct Dedup {
    newest: HashMap<Symbol, (UnixNanos, Vec<EventId>)>,
}

impl Dedup {
    /// An empty filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many symbols it keeps state for.
    pub fn symbols(&self) -> usize {
        self.newest.len()
    }

    /// `true` the first time the event is seen; `false` for a re-delivery, or an event older than
    /// one already seen for `symbol`.
    pub fn first(&mut self, symbol: &Symbol, ts: UnixNanos, id: EventId) -> bool {
        let Some((newest, ids)) = self.newest.get_mut(symbol) else {
            self.newest.insert(symbol.clone(), (ts, vec![id]));
            return true;
        };
        if ts > *newest {
            *newest = ts;
            ids.clear();
            ids.push(id);
            true
        } else if ts == *newest && !ids.contains(&id) {
            ids.push(id);
            true
        } else {
            false
        }
    }
}

/// The `capacity` most recently inserted values, as a set: memory stays bounded however long the
/// stream. A value evicted by `capacity` newer ones reads as unseen again, so the capacity must
/// cover the distance, in inserted values, at which a copy can still arrive.
///
/// Serialized as `{"capacity":…,"values":[oldest … newest]}`, which reads back to the same set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RecentRecord<T>", from = "RecentRecord<T>")]
#[serde(bound(serialize = "T: Serialize + Clone", deserialize = "T: Deserialize<'de> + Hash + Eq + Clone"))]
pub struct Recent<T: Hash + Eq> {
    members: HashSet<T>,
    order: VecDeque<T>,
    capacity: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecentRecord<T> {
    capacity: usize,
    values: Vec<T>,
}

impl<T: Hash + Eq + Clone> From<Recent<T>> for RecentRecord<T> {
    fn from(r: Recent<T>) -> Self {
        Self { capacity: r.capacity, values: r.order.into() }
    }
}

impl<T: Hash + Eq + Clone> From<RecentRecord<T>> for Recent<T> {
    fn from(r: RecentRecord<T>) -> Self {
        let mut recent = Self::new(r.capacity);
        for v in r.values {
            recent.insert(v);
        }
        recent
    }
}

impl<T: Hash + Eq + Clone> Recent<T> {
    /// An empty set that keeps at most `capacity` values (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { members: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Adds `value`; `true` when it was not already among the remembered values. The oldest
    /// value is forgotten when the set is full.
    pub fn insert(&mut self, value: T) -> bool {
        if self.members.contains(&value) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
        self.members.insert(value.clone());
        self.order.push_back(value);
        true
    }

    /// Whether `value` is among the remembered values.
    pub fn contains(&self, value: &T) -> bool {
        self.members.contains(value)
    }

    /// How many values are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The remembered values, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.order.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids;

    fn id(ts: u64, seq: u64) -> EventId {
        ids::event_id(UnixNanos(ts), 7, seq)
    }

    #[test]
    fn a_replayed_run_of_events_is_dropped_and_new_ones_pass() {
        let (btc, eth) = (Symbol::new("BTCUSDT").unwrap(), Symbol::new("ETHUSDT").unwrap());
        let mut d = Dedup::new();
        // Several events share a millisecond timestamp, as Binance data does.
        let first = [(&btc, 10, 1), (&btc, 10, 2), (&eth, 10, 3), (&btc, 20, 4), (&eth, 30, 5)];
        for (s, ts, seq) in first {
            assert!(d.first(s, UnixNanos(ts), id(ts, seq)), "{seq} is new");
        }
        // A restart re-publishes from an earlier checkpoint: all of it is known.
        for (s, ts, seq) in first {
            assert!(!d.first(s, UnixNanos(ts), id(ts, seq)), "{seq} is a re-delivery");
        }
        // New events after the re-delivered ones pass, including one at the newest time.
        assert!(d.first(&eth, UnixNanos(30), id(30, 6)));
        assert!(d.first(&btc, UnixNanos(21), id(21, 7)));
        assert!(!d.first(&btc, UnixNanos(20), id(20, 8)), "older than the newest BTC event");
    }

    #[test]
    fn recent_stays_within_its_capacity_and_forgets_the_oldest() {
        let mut r = Recent::new(3);
        assert!(r.insert(1) && r.insert(2) && r.insert(3));
        assert!(!r.insert(2), "a copy of a remembered value");
        for v in 4..10_000 {
            assert!(r.insert(v));
            assert_eq!(r.len(), 3);
        }
        assert!(r.contains(&9_999) && r.contains(&9_997) && !r.contains(&9_996));
        assert!(r.insert(1), "evicted long ago, so new again");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"capacity":3,"values":[9998,9999,1]}"#);
        assert_eq!(serde_json::from_str::<Recent<i32>>(&json).unwrap(), r);
    }
}
