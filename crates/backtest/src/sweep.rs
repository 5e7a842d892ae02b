//! Sweeps: the same input run under several configurations, in parallel, each variant written
//! to its own folder as a single run would be, then `sweep.json` and `sweep.html` comparing them.
//!
//! `--sweep key=v1,v2,…` gives one axis; several `--sweep` make a grid, every combination of
//! their values (the first axis outermost). A variant's folder is named by its settings,
//! `key=value` joined by `,`. Variants run on `std::thread::available_parallelism` threads, each
//! reading the input itself (the page cache shares it); a variant's report equals the report of
//! a single run with the same settings as `--set`, `run` aside.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::config::AppConfig;
use minijinja::{Value, context};
use serde::Serialize;

use crate::html;
use crate::output::{self, Options};
use crate::report::{CostReport, Pnl, Report, RoundTripReport};
use crate::terminal::Bars;
use crate::{BacktestError, summary};

/// The `schema` of `sweep.json`.
pub const SCHEMA: &str = "algotrader.backtest.sweep/1";
/// The comparison's file name.
pub const SWEEP_JSON: &str = "sweep.json";
/// The comparison page's file name.
pub const SWEEP_HTML: &str = "sweep.html";

/// One `--sweep`: a configuration key and the values it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Axis {
    /// Dotted configuration key, as for `--set`.
    pub key: String,
    /// Its values, in the order given.
    pub values: Vec<String>,
}

/// Parses `--sweep key=v1,v2,…` arguments; a key may be swept once.
pub fn parse(args: &[String]) -> Result<Vec<Axis>, BacktestError> {
    let mut axes: Vec<Axis> = Vec::new();
    for arg in args {
        let bad = || BacktestError::SweepSyntax(arg.clone());
        let (key, values) = arg.split_once('=').ok_or_else(bad)?;
        let key = key.trim();
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
        if key.is_empty() || values.iter().any(String::is_empty) || axes.iter().any(|a| a.key == key) {
            return Err(bad());
        }
        axes.push(Axis { key: key.to_owned(), values });
    }
    Ok(axes)
}

/// Every combination of the axes' values, the first axis outermost.
pub fn grid(axes: &[Axis]) -> Vec<Vec<(String, String)>> {
    axes.iter().fold(vec![Vec::new()], |combos, axis| {
        combos
            .iter()
            .flat_map(|combo| {
                axis.values.iter().map(move |v| {
                    let mut next = combo.clone();
                    next.push((axis.key.clone(), v.clone()));
                    next
                })
            })
            .collect()
    })
}

/// A variant's folder name: its settings as `key=value` joined by `,`, with any character that
/// does not belong in a file name replaced by `_`.
pub fn folder(sets: &[(String, String)]) -> String {
    let name = sets.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._=,+-".contains(c) { c } else { '_' }).collect()
}

/// Loads every variant's configuration (`base` settings, then the variant's): all of them before
/// any runs, so that a bad key or value exits at once, named.
pub fn configure(config_dir: &Path, base: &[(String, String)], axes: &[Axis]) -> Result<Vec<Variant>, BacktestError> {
    grid(axes)
        .into_iter()
        .map(|sets| {
            let all: Vec<(String, String)> = base.iter().chain(&sets).cloned().collect();
            let cfg = common::config::load_with(config_dir, &all)?;
            Ok(Variant { name: folder(&sets), sets, cfg })
        })
        .collect()
}

/// The threads a sweep runs on: the cores available.
pub fn threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// One variant, configured.
pub struct Variant {
    /// Its folder name.
    pub name: String,
    /// Its swept settings.
    pub sets: Vec<(String, String)>,
    /// Its whole configuration.
    pub cfg: AppConfig,
}

/// A variant that ran.
struct Done {
    name: String,
    sets: Vec<(String, String)>,
    report: Report,
    equity: Vec<(f64, f64)>,
    summary: String,
}

fn run_one(v: &Variant, out: &Path, options: Options, bars: &Bars) -> Result<Done, BacktestError> {
    let dir = out.join(&v.name);
    let bar = bars.bar(&v.name);
    let done = output::run_into(&v.cfg, &dir, options, &mut |p| bar.update(p));
    bar.finish();
    let (outcome, report_path) = done?;
    let equity = outcome.charts.equity.points().into_iter().map(|(t, e)| (t as f64, e)).collect();
    let summary = summary(&outcome.report, &report_path);
    Ok(Done { name: v.name.clone(), sets: v.sets.clone(), report: outcome.report, equity, summary })
}

/// Runs every variant into `out/<name>/`, `threads` at a time, then writes `sweep.json` and
/// `sweep.html`; returns each variant's summary line and the path of `sweep.json`.
pub fn run(
    variants: &[Variant],
    axes: &[Axis],
    out: &Path,
    options: Options,
    threads: NonZeroUsize,
) -> Result<(Vec<String>, PathBuf), BacktestError> {
    // Every folder is made and emptied before any variant runs: one that cannot be written
    // fails now, not after the others ran.
    output::clear(out, &[SWEEP_JSON, SWEEP_HTML])?;
    for v in variants {
        output::prepare(&out.join(&v.name))?;
    }
    let bars = Bars::on_stderr();
    let next = AtomicUsize::new(0);
    let workers = threads.get().min(variants.len()).max(1);
    let mut results: Vec<(usize, Result<Done, BacktestError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(v) = variants.get(i) else { break };
                        done.push((i, run_one(v, out, options, &bars)));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    results.sort_by_key(|(i, _)| *i);
    let done = results.into_iter().map(|(_, r)| r).collect::<Result<Vec<Done>, _>>()?;
    let json = sweep_json(axes, &done);
    let bytes = serde_json::to_vec_pretty(&json).map_err(|e| output_error(out, SWEEP_JSON, e))?;
    let page = page(&json, &done).map_err(|e| output_error(out, SWEEP_HTML, e))?;
    output::put(out, SWEEP_HTML, page.as_bytes())?;
    let path = output::put(out, SWEEP_JSON, &[bytes, b"\n".to_vec()].concat())?;
    Ok((done.into_iter().map(|d| d.summary).collect(), path))
}

fn output_error(dir: &Path, name: &str, e: impl std::error::Error + Send + Sync + 'static) -> BacktestError {
    BacktestError::Output { path: dir.join(name), source: std::io::Error::other(e) }
}

/// `sweep.json`.
#[derive(Debug, Serialize)]
struct SweepJson<'a> {
    schema: &'static str,
    axes: &'a [Axis],
    variants: Vec<VariantJson<'a>>,
}

/// One variant's figures in `sweep.json`, copied from its `report.json`.
#[derive(Debug, Serialize)]
struct VariantJson<'a> {
    folder: &'a str,
    sets: BTreeMap<&'a str, &'a str>,
    pnl: &'a Pnl,
    risk: VariantRisk<'a>,
    costs: &'a CostReport,
    round_trips: &'a RoundTripReport,
    counts: VariantCounts<'a>,
}

#[derive(Debug, Serialize)]
struct VariantRisk<'a> {
    max_drawdown: &'a str,
    max_drawdown_duration_ms: u64,
    sharpe: Option<f64>,
    sortino: Option<f64>,
}

#[derive(Debug, Serialize)]
struct VariantCounts<'a> {
    decisions: u64,
    intents: u64,
    orders: u64,
    fills: u64,
    refusals: &'a BTreeMap<&'static str, u64>,
}

fn sweep_json<'a>(axes: &'a [Axis], done: &'a [Done]) -> SweepJson<'a> {
    let variants = done
        .iter()
        .map(|d| {
            let r = &d.report;
            VariantJson {
                folder: &d.name,
                sets: d.sets.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                pnl: &r.pnl,
                risk: VariantRisk {
                    max_drawdown: &r.risk.max_drawdown,
                    max_drawdown_duration_ms: r.risk.max_drawdown_duration_ms,
                    sharpe: r.risk.sharpe,
                    sortino: r.risk.sortino,
                },
                costs: &r.costs,
                round_trips: &r.round_trips,
                counts: VariantCounts {
                    decisions: r.counts.decisions,
                    intents: r.counts.totals.intents,
                    orders: r.counts.totals.orders,
                    fills: r.counts.totals.fills,
                    refusals: &r.counts.totals.refusals,
                },
            }
        })
        .collect();
    SweepJson { schema: SCHEMA, axes, variants }
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Backtest sweep</title>
<style>
{{ style }}</style>
</head>
<body>
<h1>Backtest sweep</h1>
<p>{{ schema }} · {{ count }} variants; each folder holds the variant's own report.json and report.html.</p>
<table>
<tr><th></th>{% for v in variants %}<th>{{ v }}</th>{% endfor %}</tr>
{% for row in rows %}<tr><th>{{ row.label }}</th>{% for cell in row.cells %}<td data-field="{{ cell.field }}">{{ cell.value }}</td>{% endfor %}</tr>
{% endfor %}</table>
<figure>
<figcaption>Net equity of every variant at each interval close (downsampled as in report.html).</figcaption>
{{ equity }}
</figure>
</body>
</html>
"#;

/// The rows of the comparison table: a label and the JSON pointer below `/variants/<i>`.
const ROWS: [(&str, &str); 15] = [
    ("net PnL", "/pnl/net"),
    ("gross PnL", "/pnl/gross"),
    ("fees", "/pnl/fees"),
    ("turnover", "/pnl/turnover"),
    ("Sharpe", "/risk/sharpe"),
    ("Sortino", "/risk/sortino"),
    ("max drawdown", "/risk/max_drawdown"),
    ("max drawdown duration, ms", "/risk/max_drawdown_duration_ms"),
    ("cost: delay", "/costs/delay"),
    ("cost: spread and impact", "/costs/spread_impact"),
    ("hit rate", "/round_trips/hit_rate"),
    ("decisions", "/counts/decisions"),
    ("intents", "/counts/intents"),
    ("orders", "/counts/orders"),
    ("fills", "/counts/fills"),
];

fn page(json: &SweepJson<'_>, done: &[Done]) -> Result<String, html::HtmlError> {
    let value = serde_json::to_value(json)?;
    let rows: Vec<Value> = ROWS
        .iter()
        .map(|&(label, field)| {
            let cells: Vec<Value> = (0..done.len())
                .map(|i| {
                    let field = format!("/variants/{i}{field}");
                    let shown = html::shown(value.pointer(&field));
                    context! { field, value => shown }
                })
                .collect();
            context! { label, cells }
        })
        .collect();
    let lines: Vec<(&str, Vec<(f64, f64)>)> = done.iter().map(|d| (d.name.as_str(), d.equity.clone())).collect();
    let equity = html::time_chart("sweep equity", "net PnL", &lines, &[])?;
    let names: Vec<&str> = done.iter().map(|d| d.name.as_str()).collect();
    let mut env = minijinja::Environment::new();
    env.add_template("sweep.html", TEMPLATE)?;
    Ok(env.get_template("sweep.html")?.render(context! {
        style => Value::from_safe_string(crate::html::STYLE.into()),
        schema => SCHEMA,
        count => names.len(),
        variants => names,
        rows,
        equity => Value::from_safe_string(equity),
    })?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn two_axes_make_a_grid_first_axis_outermost() {
        let axes = parse(&args(&["a.x=1,2", "b.y=p,q,r"])).unwrap();
        let combos = grid(&axes);
        assert_eq!(combos.len(), 6);
        assert_eq!(folder(&combos[0]), "a.x=1,b.y=p");
        assert_eq!(folder(&combos[1]), "a.x=1,b.y=q");
        assert_eq!(folder(&combos[5]), "a.x=2,b.y=r");
        assert_eq!(grid(&[]), vec![Vec::<(String, String)>::new()]);
    }

    #[test]
    fn a_malformed_sweep_is_refused_naming_it() {
        let cases: [(&[&str], &str); 5] = [
            (&["risk_aversion"], "risk_aversion"),
            (&["=1,2"], "=1,2"),
            (&["a.x=1,,2"], "a.x=1,,2"),
            (&["a.x="], "a.x="),
            // A key swept twice: the second is named.
            (&["a.x=1", "a.x=2"], "a.x=2"),
        ];
        for (sweeps, bad) in cases {
            let e = parse(&args(sweeps)).unwrap_err();
            assert!(matches!(&e, BacktestError::SweepSyntax(s) if s == bad), "{bad}: {e}");
            assert_eq!(e.exit_code(), common::EXIT_CONFIG);
        }
    }

    #[test]
    fn folder_names_keep_to_file_name_characters() {
        let sets = vec![("data_plane.replay.path".to_owned(), "data/a b.csv".to_owned())];
        assert_eq!(folder(&sets), "data_plane.replay.path=data_a_b.csv");
    }
}
