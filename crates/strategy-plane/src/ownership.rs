//! Which symbols an instance owns: those whose partitions its consumer group assigned it. Only
//! they are exported as positions and PnL, so that instances sharing the group export each
//! symbol once and summing their series counts every position once. The book of a symbol another
//! instance trades stands still, and exported it would be counted twice.

use std::collections::{HashMap, HashSet};

use common::types::Symbol;

/// Each symbol's partitions as records showed them, and the partitions assigned now.
#[derive(Debug, Default)]
pub struct Ownership {
    exec: HashMap<Symbol, i32>,
    ofi: HashMap<Symbol, i32>,
    assigned_exec: HashSet<i32>,
    assigned_ofi: HashSet<i32>,
    all: bool,
}

impl Ownership {
    /// An execution report of `symbol` was on `partition` of `exec_reports`.
    pub fn saw_exec(&mut self, symbol: &Symbol, partition: i32) {
        if self.exec.get(symbol) != Some(&partition) {
            self.exec.insert(symbol.clone(), partition);
        }
    }

    /// A window of `symbol` was on `partition` of `ofi_events`.
    pub fn saw_ofi(&mut self, symbol: &Symbol, partition: i32) {
        if self.ofi.get(symbol) != Some(&partition) {
            self.ofi.insert(symbol.clone(), partition);
        }
    }

    /// The partitions of `ofi_events` and of `exec_reports` assigned now; `all` when they are
    /// every partition of both topics (then every configured symbol is owned, seen yet or not).
    pub fn assign(&mut self, ofi: impl IntoIterator<Item = i32>, exec: impl IntoIterator<Item = i32>, all: bool) {
        self.assigned_ofi = ofi.into_iter().collect();
        self.assigned_exec = exec.into_iter().collect();
        self.all = all;
    }

    /// Whether this instance owns `symbol`: its `exec_reports` partition (where its position is
    /// kept) is assigned here, or, before any report of it, its `ofi_events` partition (where it
    /// is traded from).
    pub fn owns(&self, symbol: &Symbol) -> bool {
        if self.all {
            return true;
        }
        match self.exec.get(symbol) {
            Some(p) => self.assigned_exec.contains(p),
            None => self.ofi.get(symbol).is_some_and(|p| self.assigned_ofi.contains(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::Ownership;
    use common::types::Symbol;

    fn s(name: &str) -> Symbol {
        Symbol::new(name).unwrap()
    }

    #[test]
    fn a_symbol_is_owned_by_the_instance_assigned_its_partition() {
        let mut own = Ownership::default();
        own.saw_exec(&s("BTC"), 3);
        own.saw_ofi(&s("BTC"), 3);
        own.saw_ofi(&s("ETH"), 0);
        own.assign([2, 3], [2, 3], false);
        assert!(own.owns(&s("BTC")));
        assert!(!own.owns(&s("ETH")), "its partition is another instance's");
        assert!(!own.owns(&s("SOL")), "never seen: nobody knows its partition yet");
        own.assign([0, 1], [0, 1], false);
        assert!(!own.owns(&s("BTC")), "a rebalance took its partition away");
        assert!(own.owns(&s("ETH")), "no report yet: its window partition decides");
    }

    #[test]
    fn no_assignment_owns_nothing_and_every_partition_owns_everything() {
        let mut own = Ownership::default();
        own.saw_exec(&s("BTC"), 1);
        assert!(!own.owns(&s("BTC")), "before the group assigns anything");
        own.assign([0, 1, 2], [0, 1, 2], true);
        assert!(own.owns(&s("BTC")) && own.owns(&s("SOL")));
    }

    #[test]
    fn the_ledger_partition_wins_over_the_window_partition() {
        // Topics created with different partition counts put one symbol on different numbers.
        let mut own = Ownership::default();
        own.saw_ofi(&s("BTC"), 1);
        own.saw_exec(&s("BTC"), 4);
        own.assign([1], [0], false);
        assert!(!own.owns(&s("BTC")), "its position is kept where partition 4 is read");
    }
}
