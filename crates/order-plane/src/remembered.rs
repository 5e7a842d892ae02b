//! The intent ids the Order Plane remembers to refuse a repeat, for as long as risk could still
//! pass one (see [`crate::engine`]).

use std::collections::{BTreeSet, HashSet};

use common::events::IntentId;
use common::types::{Symbol, SymbolMap, UnixNanos};
use serde::{Deserialize, Serialize};

/// Ids of the intents taken, each kept until a repeat of its intent could no longer pass risk.
///
/// Risk refuses an intent decided at `t` once its symbol's mark is more than `max_lag_ns` past
/// `t`, and marks never move back, so an id stored with a time no earlier than its intent's
/// decision can go once `ts + max_lag_ns < mark`. Each symbol's ids are ordered by that time and
/// the oldest go while they have passed: an id with an odd time (far in the future, or a wall
/// clock among replayed exchange times) stays on its own, without holding back the others.
///
/// Serialized (in a snapshot) as the lag and every id with its symbol and time, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RememberedRecord", from = "RememberedRecord")]
pub(crate) struct RememberedIntents {
    ids: HashSet<IntentId>,
    by_symbol: SymbolMap<BTreeSet<(UnixNanos, IntentId)>>,
    max_lag_ns: u64,
}

impl RememberedIntents {
    /// Nothing remembered; ids go `max_lag_ns` after their time (risk's `max_intent_lag_ms`).
    pub(crate) fn new(max_lag_ns: u64) -> Self {
        Self { ids: HashSet::new(), by_symbol: SymbolMap::default(), max_lag_ns }
    }

    /// Whether `id` is remembered.
    pub(crate) fn contains(&self, id: &IntentId) -> bool {
        self.ids.contains(id)
    }

    /// Remembers `id` of `symbol` with `ts` (never earlier than its intent's decision), then forgets
    /// what of `symbol` has passed `mark`, its latest mark if any. `false` when already remembered.
    pub(crate) fn insert(&mut self, symbol: &Symbol, id: IntentId, ts: UnixNanos, mark: Option<UnixNanos>) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        let times = match self.by_symbol.get_mut(symbol) {
            Some(times) => times,
            None => self.by_symbol.entry(symbol.clone()).or_default(),
        };
        times.insert((ts, id));
        forget(&mut self.ids, times, self.max_lag_ns, mark);
        if times.is_empty() {
            self.by_symbol.remove(symbol);
        }
        true
    }

    /// Forgets what of `symbol` has passed `mark`.
    pub(crate) fn forget_symbol(&mut self, symbol: &Symbol, mark: UnixNanos) {
        if let Some(times) = self.by_symbol.get_mut(symbol) {
            forget(&mut self.ids, times, self.max_lag_ns, Some(mark));
            if times.is_empty() {
                self.by_symbol.remove(symbol);
            }
        }
    }

    /// Forgets, for every symbol, what has passed its latest mark (`mark_of`), then returns the
    /// memory that held more (a rebuild may have read a whole ledger).
    pub(crate) fn forget_passed(&mut self, mark_of: impl Fn(&Symbol) -> Option<UnixNanos>) {
        for (symbol, times) in &mut self.by_symbol {
            forget(&mut self.ids, times, self.max_lag_ns, mark_of(symbol));
        }
        self.by_symbol.retain(|_, times| !times.is_empty());
        self.by_symbol.shrink_to_fit();
        self.ids.shrink_to_fit();
    }

    /// How many symbols it keeps ids for.
    pub(crate) fn symbols(&self) -> usize {
        self.by_symbol.len()
    }

    /// How many ids are remembered.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The lag the ids are kept for, in nanoseconds.
    pub(crate) fn max_lag_ns(&self) -> u64 {
        self.max_lag_ns
    }

    /// Every remembered id with its symbol and time, each symbol's in time order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Symbol, UnixNanos, IntentId)> {
        self.by_symbol.iter().flat_map(|(s, times)| times.iter().map(move |(ts, id)| (s, *ts, *id)))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RememberedRecord {
    max_lag_ns: u64,
    ids: Vec<(Symbol, UnixNanos, IntentId)>,
}

impl From<RememberedIntents> for RememberedRecord {
    fn from(r: RememberedIntents) -> Self {
        let mut ids: Vec<(Symbol, UnixNanos, IntentId)> = r.entries().map(|(s, ts, id)| (s.clone(), ts, id)).collect();
        ids.sort();
        Self { max_lag_ns: r.max_lag_ns, ids }
    }
}

impl From<RememberedRecord> for RememberedIntents {
    fn from(r: RememberedRecord) -> Self {
        let mut remembered = Self::new(r.max_lag_ns);
        for (symbol, ts, id) in r.ids {
            remembered.insert(&symbol, id, ts, None);
        }
        remembered
    }
}

/// Drops the oldest of `times` while they have passed the risk horizon of `mark`; without a
/// mark, nothing has (risk refuses for want of a quote, but the first quote may still let a
/// repeat through).
fn forget(
    ids: &mut HashSet<IntentId>,
    times: &mut BTreeSet<(UnixNanos, IntentId)>,
    max_lag_ns: u64,
    mark: Option<UnixNanos>,
) {
    let Some(mark) = mark else { return };
    while times.first().is_some_and(|(ts, _)| ts.0.saturating_add(max_lag_ns) < mark.0) {
        if let Some((_, id)) = times.pop_first() {
            ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    fn id(n: u64) -> IntentId {
        IntentId(uuid::Uuid::from_u64_pair(0, n))
    }

    #[test]
    fn an_id_goes_only_once_its_symbol_mark_is_strictly_past_its_horizon() {
        let (x, y) = (Symbol::new("X").unwrap(), Symbol::new("Y").unwrap());
        let mut r = RememberedIntents::new(10);
        assert!(r.insert(&x, id(1), UnixNanos(50), None));
        assert!(!r.insert(&x, id(1), UnixNanos(50), None), "already remembered");
        // Without a mark nothing goes; at the horizon (lag = max) risk still passes a repeat.
        r.insert(&x, id(2), UnixNanos(55), None);
        r.insert(&x, id(3), UnixNanos(60), Some(UnixNanos(60)));
        assert_eq!(r.len(), 3);
        r.insert(&y, id(4), UnixNanos(0), Some(UnixNanos(1_000)));
        assert!(!r.contains(&id(4)), "past its own horizon at once");
        r.forget_passed(|s| (s == &x).then_some(UnixNanos(60)));
        assert!(r.contains(&id(1)), "50 + 10 is not before 60");
        r.forget_passed(|s| (s == &x).then_some(UnixNanos(61)));
        assert!(!r.contains(&id(1)) && r.contains(&id(2)) && r.contains(&id(3)));
        // Another symbol's mark forgets nothing of X.
        r.insert(&y, id(5), UnixNanos(1_000), Some(UnixNanos(1_000)));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn ids_go_in_time_order_whatever_order_they_came_in() {
        let x = Symbol::new("X").unwrap();
        let mut r = RememberedIntents::new(10);
        r.insert(&x, id(1), UnixNanos(50), None);
        // 20 + 10 < 40: it goes, though it came after an id that stays.
        r.insert(&x, id(2), UnixNanos(20), Some(UnixNanos(40)));
        assert!(r.contains(&id(1)) && !r.contains(&id(2)));
        // A far-future time does not hold back the ids after it.
        r.insert(&x, id(4), UnixNanos(1_000_000), None);
        r.insert(&x, id(5), UnixNanos(70), None);
        r.forget_passed(|_| Some(UnixNanos(81)));
        assert!(!r.contains(&id(1)) && !r.contains(&id(5)) && r.contains(&id(4)));
        assert_eq!(r.len(), 1);
        r.forget_passed(|_| Some(UnixNanos(2_000_000)));
        assert_eq!((r.len(), r.by_symbol.len()), (0, 0), "a symbol with nothing left is dropped");
        // A time near the end of time never passes (no overflow).
        r.insert(&x, id(3), UnixNanos(u64::MAX - 5), Some(UnixNanos(u64::MAX)));
        assert!(r.contains(&id(3)));
    }
}
