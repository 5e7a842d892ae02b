//! Time series for `report.html`, kept to a bounded number of points however long the run.
//!
//! The rule: a series takes one value per closed interval (the Sharpe intervals) and keeps at
//! most [`MAX_POINTS`]; when full, neighbouring points merge pairwise, so each point then stands
//! for 2, 4, 8 … consecutive intervals. A merged point is at the time of the later one and holds
//! the value the series' [`Merge`] picks: the last (equity, position, mid) or the worst
//! (drawdown: the deepest, so that the maximum drawdown is never smoothed away). Deterministic:
//! the same run gives the same points.

use common::types::UnixNanos;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Most points a series keeps.
pub const MAX_POINTS: usize = 1000;

/// How two neighbouring values become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The later value.
    Last,
    /// The larger value.
    Max,
}

impl Merge {
    fn apply(self, earlier: f64, later: f64) -> f64 {
        match self {
            Self::Last => later,
            Self::Max => earlier.max(later),
        }
    }
}

/// One downsampled series of (event time ns, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    merge: Merge,
    points: Vec<(u64, f64)>,
    /// Intervals each kept point stands for.
    per_point: u64,
    /// The point being filled: its time, value and intervals so far.
    pending: Option<(u64, f64, u64)>,
}

impl Series {
    /// An empty series whose values merge by `merge`.
    pub fn new(merge: Merge) -> Self {
        Self { merge, points: Vec::new(), per_point: 1, pending: None }
    }

    /// The value at the interval that closed at `ts`.
    pub fn push(&mut self, ts: u64, value: f64) {
        let (t, v, n) = match self.pending.take() {
            Some((_, v, n)) => (ts, self.merge.apply(v, value), n + 1),
            None => (ts, value, 1),
        };
        if n < self.per_point {
            self.pending = Some((t, v, n));
            return;
        }
        self.points.push((t, v));
        if self.points.len() >= MAX_POINTS {
            let merge = self.merge;
            self.points = self
                .points
                .chunks(2)
                .map(|p| p.iter().copied().reduce(|a, b| (b.0, merge.apply(a.1, b.1))).unwrap_or(p[0]))
                .collect();
            self.per_point *= 2;
        }
    }

    /// Intervals each kept point stands for (1 until the series first halved).
    pub fn per_point(&self) -> u64 {
        self.per_point
    }

    /// The points, the one still filling included.
    pub fn points(&self) -> Vec<(u64, f64)> {
        let mut points = self.points.clone();
        points.extend(self.pending.map(|(t, v, _)| (t, v)));
        points
    }
}

/// Most fill markers a symbol keeps for its plot.
pub const MAX_FILL_MARKERS: usize = 1000;

/// The fills of one symbol that its plot marks, kept to [`MAX_FILL_MARKERS`] however many come:
/// every k-th fill, k the least power of two that leaves at most that many. When the markers
/// overflow, every other one goes and k doubles, as [`Series`] halves.
#[derive(Debug, Clone, PartialEq)]
pub struct FillMarkers {
    /// (event time ns, price, is a buy) of every k-th fill, the first included.
    kept: Vec<(u64, f64, bool)>,
    step: u64,
    total: u64,
}

impl Default for FillMarkers {
    fn default() -> Self {
        Self { kept: Vec::new(), step: 1, total: 0 }
    }
}

impl FillMarkers {
    /// The next fill.
    pub fn push(&mut self, ts: UnixNanos, px: Decimal, buy: bool) {
        if self.total.is_multiple_of(self.step) {
            self.kept.push((ts.0, px.to_f64().unwrap_or(0.0), buy));
            if self.kept.len() > MAX_FILL_MARKERS {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.step *= 2;
            }
        }
        self.total += 1;
    }

    /// The markers: (event time ns, price, is a buy).
    pub fn kept(&self) -> &[(u64, f64, bool)] {
        &self.kept
    }

    /// Fills seen, marked or not.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Values a [`Distribution`] keeps as they are; beyond them it counts them in fine bins.
pub const MAX_VALUES: usize = 65_536;
/// The fine bins a long [`Distribution`] counts in.
const FINE_BINS: usize = 4096;

/// Values to be shown as a histogram, kept to a bounded size: as they are up to [`MAX_VALUES`],
/// then as counts in [`FINE_BINS`] equal bins whose width doubles whenever a value falls beyond
/// them. A histogram of fewer, wider bins taken from the fine ones puts a value in the wrong
/// bin only when it lies within a fine bin of a boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    values: Vec<f64>,
    fine: Option<Fine>,
    n: u64,
    min: f64,
    max: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Fine {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
}

impl Fine {
    fn add(&mut self, v: f64) {
        loop {
            if v < self.lo {
                // The bins so far become the upper half of ones twice as wide.
                let mut counts = vec![0; FINE_BINS];
                for (i, c) in self.counts.iter().enumerate() {
                    counts[FINE_BINS / 2 + i / 2] += c;
                }
                self.lo -= self.width * FINE_BINS as f64;
                self.width *= 2.0;
                self.counts = counts;
            } else if v >= self.lo + self.width * FINE_BINS as f64 {
                let mut counts = vec![0; FINE_BINS];
                for (i, c) in self.counts.iter().enumerate() {
                    counts[i / 2] += c;
                }
                self.width *= 2.0;
                self.counts = counts;
            } else {
                let i = ((v - self.lo) / self.width) as usize;
                self.counts[i.min(FINE_BINS - 1)] += 1;
                return;
            }
        }
    }
}

impl Distribution {
    /// Adds a value; one that is not finite is left out.
    pub fn push(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        (self.min, self.max) = if self.n == 0 { (v, v) } else { (self.min.min(v), self.max.max(v)) };
        self.n += 1;
        if let Some(fine) = &mut self.fine {
            fine.add(v);
            return;
        }
        self.values.push(v);
        if self.values.len() > MAX_VALUES {
            let span = self.max - self.min;
            let width = if span > 0.0 { span / FINE_BINS as f64 } else { self.min.abs().max(1.0) * 1e-9 };
            // The largest value sits on the last bin's right edge: the range is widened a hair.
            let mut fine = Fine { lo: self.min, width: width * (1.0 + 1e-9), counts: vec![0; FINE_BINS] };
            self.values.drain(..).for_each(|v| fine.add(v));
            self.values.shrink_to_fit();
            self.fine = Some(fine);
        }
    }

    /// Values added.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether none was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The values, while they are kept as they are.
    pub fn exact(&self) -> Option<&[f64]> {
        self.fine.is_none().then_some(&self.values[..])
    }

    /// Counts in `bins` equal bins from the least value to the greatest, each fine bin counted
    /// in the one holding its middle: (left edge, right edge, count). Empty while the values
    /// are kept as they are ([`Self::exact`]).
    pub fn binned(&self, bins: usize) -> Vec<(f64, f64, u64)> {
        let Some(fine) = &self.fine else { return Vec::new() };
        let (lo, hi) = (self.min, self.max);
        if hi <= lo {
            return vec![(lo - 0.5, lo + 0.5, self.n)];
        }
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0u64; bins];
        for (i, &c) in fine.counts.iter().enumerate() {
            let middle = fine.lo + (i as f64 + 0.5) * fine.width;
            counts[(((middle - lo) / width).max(0.0) as usize).min(bins - 1)] += c;
        }
        counts.into_iter().enumerate().map(|(i, n)| (lo + width * i as f64, lo + width * (i + 1) as f64, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_series_keeps_every_point() {
        let mut s = Series::new(Merge::Last);
        for t in 0..10 {
            s.push(t, t as f64);
        }
        assert_eq!(s.points().len(), 10);
        assert_eq!(s.points()[9], (9, 9.0));
    }

    /// 2,500 intervals: at 1,000 points the series halves to 500 points of 2 intervals; 1,000
    /// intervals later it is full again and halves to 500 points of 4; the last 500 intervals
    /// add 125. So 625 points, each at the last of its 4 intervals, the worst value kept where
    /// the merge is `Max`.
    #[test]
    fn a_long_series_is_bounded_and_keeps_the_worst_drawdown() {
        let (mut last, mut worst) = (Series::new(Merge::Last), Series::new(Merge::Max));
        for t in 0..2500u64 {
            last.push(t, t as f64);
            // One deep spike at an odd interval, which halving must not lose.
            worst.push(t, if t == 1333 { 99.0 } else { 1.0 });
        }
        let points = last.points();
        assert_eq!(points.len(), 625);
        assert_eq!(points[0], (3, 3.0));
        assert_eq!(points[624], (2499, 2499.0));
        let worst = worst.points();
        assert_eq!(worst.iter().filter(|p| p.1 == 99.0).count(), 1);
        assert_eq!(worst.iter().map(|p| p.1).fold(0.0, f64::max), 99.0);
    }

    /// 2,500 fills: all kept up to 1,000; the 1,001st halves them to every 2nd (501 kept), the
    /// 2,001st to every 4th; 2,500 fills leave fills 0, 4, … 2,496, 625 markers.
    #[test]
    fn fill_markers_are_bounded_and_evenly_spaced() {
        let mut m = FillMarkers::default();
        for i in 0..1000u64 {
            m.push(UnixNanos(i), Decimal::from(i), i % 2 == 0);
        }
        assert_eq!(m.kept().len(), 1000);
        for i in 1000..2500u64 {
            m.push(UnixNanos(i), Decimal::from(i), i % 2 == 0);
        }
        assert_eq!(m.total(), 2500);
        assert_eq!(m.kept().len(), 625);
        assert!(m.kept().iter().enumerate().all(|(j, &(t, px, buy))| t == 4 * j as u64 && px == t as f64 && buy));
    }

    /// Past [`MAX_VALUES`] the values are counted, not kept: every one is still counted once,
    /// and a value lands in its own bin unless it lies within a fine bin of a boundary.
    #[test]
    fn a_long_distribution_is_bounded_and_counts_every_value() {
        let mut d = Distribution::default();
        let n = 3 * MAX_VALUES as u64;
        // 0 … 99 over and over, then one far below and one far above, which widen the bins.
        for i in 0..n {
            d.push((i % 100) as f64);
        }
        d.push(-1000.0);
        d.push(1000.0);
        d.push(f64::NAN);
        assert_eq!(d.len(), n + 2);
        assert!(d.exact().is_none());
        let bins = d.binned(40);
        assert_eq!(bins.len(), 40);
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), n + 2);
        assert_eq!((bins[0].0, bins[39].1), (-1000.0, 1000.0));
        // Bins of width 50: 0 … 49 in [0, 50), 50 … 99 in [50, 100), but for the values within
        // a fine bin (now about 0.8 wide) of 50: one of the 100, at most, may change sides.
        let below = (0..n).filter(|i| i % 100 < 50).count() as u64;
        for (b, want) in bins[20..22].iter().zip([below, n - below]) {
            assert!(b.2.abs_diff(want) <= n.div_ceil(100), "{b:?}");
        }
        assert_eq!((bins[0].2, bins[39].2), (1, 1));
    }
}
