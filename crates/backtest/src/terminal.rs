//! Progress bars on a terminal: one per run, drawn on stderr only when stderr is a terminal, so
//! that CI logs and redirected output get nothing but the summary line on stdout.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Progress;

/// Steps of a bar: the share of the input read, in thousandths.
const STEPS: u64 = 1000;

/// Where the bars go: a terminal, or nowhere.
pub struct Bars {
    multi: Option<MultiProgress>,
}

impl Bars {
    /// Bars on stderr if it is a terminal; none otherwise.
    pub fn on_stderr() -> Self {
        let multi =
            std::io::stderr().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { multi }
    }

    /// A bar for a run named `name` (empty for a single run).
    pub fn bar(&self, name: &str) -> Bar {
        let bar = self.multi.as_ref().map(|multi| {
            let style = ProgressStyle::with_template("{prefix}[{bar:30}] {percent:>3}% of input · {msg} · ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let prefix = if name.is_empty() { String::new() } else { format!("{name} ") };
            multi.add(ProgressBar::new(STEPS).with_style(style).with_prefix(prefix))
        });
        Bar { bar, started: Instant::now() }
    }
}

/// One run's bar; does nothing when there is no terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Bar {
    /// Shows `p`: the share read, the rows and the rows per second so far.
    pub fn update(&self, p: Progress) {
        if let Some(bar) = &self.bar {
            let rate = p.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{} rows · {rate:.0} rows/s", p.rows));
            bar.set_position((p.share.clamp(0.0, 1.0) * STEPS as f64) as u64);
        }
    }

    /// Removes the bar: the summary line replaces it.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
