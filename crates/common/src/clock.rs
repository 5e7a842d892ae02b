//! The injected clock. Cores never read the wall clock themselves, so a replay is deterministic and
//! a test can fix time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::UnixNanos;

/// A source of "now", in nanoseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixNanos;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixNanos {
        // A clock before 1970 or past 2554 is a broken machine; saturate rather than panic.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        UnixNanos(nanos)
    }
}

/// A clock that only moves when told to; for tests and deterministic replays.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: UnixNanos) -> Self {
        Self(AtomicU64::new(start.0))
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: UnixNanos) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixNanos {
        UnixNanos(self.0.load(Ordering::SeqCst))
    }
}
