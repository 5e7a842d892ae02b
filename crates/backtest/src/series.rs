//! Time series for `report.html`, kept to a bounded number of points however long the run.
//!
//! The rule: a series takes one value per closed interval (the Sharpe intervals) and keeps at
//! most [`MAX_POINTS`]; when full, neighbouring points merge pairwise, so each point then stands
//! for 2, 4, 8 … consecutive intervals. A merged point is at the time of the later one and holds
//! the value the series' [`Merge`] picks: the last (equity, position, mid) or the worst
//! (drawdown: the deepest, so that the maximum drawdown is never smoothed away). Deterministic:
//! the same run gives the same points.

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
}
