//! IB's limits as plain, clock-free rules: market-data lines per connection and back-off for
//! requests IB refused for pacing. (The 50 messages/s cap is `ibapi::RateLimiter`, installed on
//! every connection by [`crate::connect`].)

use std::time::Duration;

/// Splits a fixed number of market-data lines between contracts, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineBudget {
    lines: u32,
    used: u32,
}

impl LineBudget {
    /// A budget of `lines` (IB's default is 100 per account).
    pub fn new(lines: u32) -> Self {
        Self { lines, used: 0 }
    }

    /// Takes `n` lines; `false` (and nothing taken) when they do not fit.
    pub fn take(&mut self, n: u32) -> bool {
        match self.used.checked_add(n) {
            Some(total) if total <= self.lines => {
                self.used = total;
                true
            }
            _ => false,
        }
    }

    /// Lines in use.
    pub fn used(&self) -> u32 {
        self.used
    }
}

/// Exponential back-off with a cap, so a refused request is retried but never in a crash loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `first`, doubles per failure, never above `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, attempt: 0 }
    }

    /// The wait before the next attempt; each call doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.attempt = self.attempt.saturating_add(1);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// A success: the next failure starts from `first` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_budget_refuses_what_does_not_fit() {
        let mut b = LineBudget::new(5);
        assert!(b.take(2));
        assert!(b.take(3));
        assert!(!b.take(1));
        assert_eq!(b.used(), 5);
        assert!(!LineBudget::new(1).take(u32::MAX));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_millis(500));
        }
    }
}
