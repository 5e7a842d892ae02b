//! `report.html`: one self-contained page (inline SVG and CSS, no script, no external font or
//! link) with the headline figures of `report.json` and the run's plots, drawn with `plotters`'
//! SVG backend and laid out by a `minijinja` template.
//!
//! Every figure in the tables is taken from the report as serialized, so the page and
//! `report.json` cannot disagree; each cell names the JSON pointer it shows (`data-field`).
//! Long series and the fill markers are bounded by [`crate::series`].

use minijinja::{Environment, Value, context};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use crate::Outcome;
use crate::ledger::Charts;
use crate::report::Report;
use crate::series::{Distribution, FillMarkers};
/// Bins of the interval PnL histogram.
const BINS: usize = 40;
const SIZE: (u32, u32) = (1000, 320);

/// The look of the report and the sweep pages, one stylesheet for both (as `{{ style }}`).
pub(crate) const STYLE: &str = r#"body { font-family: sans-serif; max-width: 1040px; margin: 1em auto; color: #222; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; font-variant-numeric: tabular-nums; }
th { text-align: left; font-weight: normal; color: #444; }
figure { margin: 1.5em 0; }
figcaption { font-size: 90%; color: #555; margin-bottom: 0.3em; }
.note { background: #fff6d6; padding: 0.4em 0.6em; }
"#;

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Backtest report</title>
<style>
{{ style }}</style>
</head>
<body>
<h1>Backtest report</h1>
<p>{{ schema }}{% if files %} · input {{ files }}{% endif %} · event time {{ span }} UTC</p>
{% for note in notes %}<p class="note">{{ note }}</p>
{% endfor %}
<h2>Headline</h2>
<table>
{% for row in headline %}<tr><th>{{ row.label }}</th><td data-field="{{ row.field }}">{{ row.value }}</td></tr>
{% endfor %}</table>
<h2>Per symbol</h2>
<table>
<tr><th></th>{% for s in symbols %}<th>{{ s }}</th>{% endfor %}</tr>
{% for row in symbol_rows %}<tr><th>{{ row.label }}</th>{% for cell in row.cells %}<td data-field="{{ cell.field }}">{{ cell.value }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Plots</h2>
{% for plot in plots %}<figure>
<figcaption>{{ plot.caption }}</figcaption>
{{ plot.svg }}
</figure>
{% endfor %}</body>
</html>
"#;

/// The headline rows: a label and the JSON pointer of the figure in `report.json`.
const HEADLINE: [(&str, &str); 22] = [
    ("net PnL", "/pnl/net"),
    ("gross PnL", "/pnl/gross"),
    ("realized", "/pnl/realized"),
    ("unrealized", "/pnl/unrealized"),
    ("fees", "/pnl/fees"),
    ("turnover", "/pnl/turnover"),
    ("max drawdown", "/risk/max_drawdown"),
    ("max drawdown duration, ms", "/risk/max_drawdown_duration_ms"),
    ("Sharpe (annualised)", "/risk/sharpe"),
    ("Sortino (annualised)", "/risk/sortino"),
    ("intervals", "/risk/intervals"),
    ("PnL at decision mids", "/costs/at_decision_mid"),
    ("cost: delay", "/costs/delay"),
    ("cost: spread and impact", "/costs/spread_impact"),
    ("cost: total", "/costs/total"),
    ("round trips", "/round_trips/closed"),
    ("hit rate", "/round_trips/hit_rate"),
    ("mean holding, ms", "/round_trips/mean_holding_ms"),
    ("decisions", "/counts/decisions"),
    ("intents", "/counts/intents"),
    ("orders", "/counts/orders"),
    ("fills", "/counts/fills"),
];

/// The per-symbol rows, pointers below `/symbols/<SYMBOL>`.
const PER_SYMBOL: [(&str, &str); 12] = [
    ("net PnL", "/pnl/net"),
    ("fees", "/pnl/fees"),
    ("turnover", "/pnl/turnover"),
    ("position", "/position/quantity"),
    ("max drawdown", "/risk/max_drawdown"),
    ("Sharpe", "/risk/sharpe"),
    ("Sortino", "/risk/sortino"),
    ("cost: delay", "/costs/delay"),
    ("cost: spread and impact", "/costs/spread_impact"),
    ("hit rate", "/round_trips/hit_rate"),
    ("fills", "/counts/fills"),
    ("refusals", "/counts/refusals"),
];

/// Why the page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// A plot could not be drawn.
    #[error("plot {0}: {1}")]
    Plot(&'static str, String),
    /// The template failed.
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    /// The report could not be turned into JSON values.
    #[error("report: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct Cell {
    field: String,
    value: String,
}

#[derive(Serialize)]
struct Row {
    label: &'static str,
    #[serde(flatten)]
    cell: Cell,
}

#[derive(Serialize)]
struct SymbolRow {
    label: &'static str,
    cells: Vec<Cell>,
}

struct Plot {
    caption: String,
    svg: String,
}

/// A JSON value as a table cell: strings as they are, numbers as JSON writes them.
pub(crate) fn shown(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "n/a".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(m)) if m.is_empty() => "none".to_owned(),
        Some(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
        Some(other) => other.to_string(),
    }
}

/// A JSON pointer's escaping of one key (RFC 6901).
fn key(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// Event time (ns) as `HH:MM:SS` UTC.
fn clock(ns: f64) -> String {
    let s = (ns / 1e9).rem_euclid(86_400.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The civil date (UTC) of `ns`; Howard Hinnant's `civil_from_days`.
fn date(ns: u64) -> String {
    let z = (ns / 86_400_000_000_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn plot(
    name: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), DrawingAreaErrorKind<std::io::Error>>,
) -> Result<String, HtmlError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let fail = |e: DrawingAreaErrorKind<std::io::Error>| HtmlError::Plot(name, e.to_string());
        root.fill(&WHITE).map_err(fail)?;
        draw(&root).map_err(fail)?;
        root.present().map_err(fail)?;
    }
    Ok(svg)
}

/// A range that holds every value and is never empty.
fn span(values: impl IntoIterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) =
        values.into_iter().filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.01 };
    (lo - pad)..(hi + pad)
}

/// A labelled line of (event time ns, value) points.
pub(crate) type Line<'a> = (&'a str, Vec<(f64, f64)>);

/// Lines over event time; `extra` draws more on the same axes (the fills).
pub(crate) fn time_chart(
    name: &'static str,
    y_desc: &str,
    lines: &[Line<'_>],
    markers: &[(f64, f64, bool)],
) -> Result<String, HtmlError> {
    let xs = span(lines.iter().flat_map(|l| l.1.iter().map(|p| p.0)).chain(markers.iter().map(|m| m.0)));
    let ys = span(lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)).chain(markers.iter().map(|m| m.1)));
    plot(name, |root| {
        let mut chart =
            ChartBuilder::on(root).margin(10).x_label_area_size(35).y_label_area_size(90).build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| clock(*x))
            .x_desc("event time, UTC")
            .y_desc(y_desc)
            .draw()?;
        for (i, (label, points)) in lines.iter().enumerate() {
            let color = Palette99::pick(i);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], Palette99::pick(i).stroke_width(2)));
        }
        if !markers.is_empty() {
            let buys = markers.iter().filter(|m| m.2).map(|m| TriangleMarker::new((m.0, m.1), 4, GREEN.filled()));
            chart
                .draw_series(buys)?
                .label("buy fill")
                .legend(|(x, y)| TriangleMarker::new((x + 10, y), 4, GREEN.filled()));
            let sells = markers.iter().filter(|m| !m.2).map(|m| Circle::new((m.0, m.1), 3, RED.filled()));
            chart.draw_series(sells)?.label("sell fill").legend(|(x, y)| Circle::new((x + 10, y), 3, RED.filled()));
        }
        if lines.len() + usize::from(!markers.is_empty()) > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

fn points(series: &crate::series::Series) -> Vec<(f64, f64)> {
    series.points().into_iter().map(|(t, v)| (t as f64, v)).collect()
}

/// Counts of `values` in [`BINS`] equal bins from the least to the greatest: (left edge,
/// right edge, count).
pub fn histogram(values: &[f64]) -> Vec<(f64, f64, u64)> {
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if values.is_empty() {
        return Vec::new();
    }
    if hi <= lo {
        return vec![(lo - 0.5, lo + 0.5, values.len() as u64)];
    }
    let width = (hi - lo) / BINS as f64;
    let mut counts = vec![0u64; BINS];
    for v in values {
        let bin = (((v - lo) / width) as usize).min(BINS - 1);
        counts[bin] += 1;
    }
    counts.into_iter().enumerate().map(|(i, n)| (lo + width * i as f64, lo + width * (i + 1) as f64, n)).collect()
}

fn histogram_chart(values: &Distribution) -> Result<String, HtmlError> {
    let bins = values.exact().map_or_else(|| values.binned(BINS), histogram);
    let xs = span(bins.iter().flat_map(|b| [b.0, b.1]));
    let top = bins.iter().map(|b| b.2).max().unwrap_or(1) as f64 * 1.1;
    plot("interval PnL", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(90)
            .build_cartesian_2d(xs, 0.0..top)?;
        chart.configure_mesh().x_desc("net PnL change in one interval").y_desc("intervals").draw()?;
        chart.draw_series(
            bins.iter().map(|&(l, r, n)| Rectangle::new([(l, 0.0), (r, n as f64)], BLUE.mix(0.6).filled())),
        )?;
        Ok(())
    })
}

fn cost_chart(costs: &[(&'static str, f64)]) -> Result<String, HtmlError> {
    let ys = span(costs.iter().map(|c| c.1).chain([0.0]));
    let n = costs.len() as u32;
    plot("costs", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(90)
            .build_cartesian_2d((0..n).into_segmented(), ys)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => costs.get(*i as usize).map_or("", |c| c.0).to_owned(),
                _ => String::new(),
            })
            .y_desc("account currency, positive = paid")
            .draw()?;
        chart.draw_series(costs.iter().enumerate().map(|(i, c)| {
            let i = i as u32;
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), c.1)],
                Palette99::pick(i as usize).filled(),
            );
            bar.set_margin(0, 0, 20, 20);
            bar
        }))?;
        Ok(())
    })
}

fn plots(report: &Report, charts: &Charts, interval_ms: u64) -> Result<Vec<Plot>, HtmlError> {
    let per = |s: &crate::series::Series| match s.per_point() {
        1 => format!("one point per {interval_ms} ms interval"),
        k => format!("one point per {k} intervals of {interval_ms} ms (downsampled)"),
    };
    let mut plots = vec![
        Plot {
            caption: format!("Net equity (net PnL so far) at each interval close; {}.", per(&charts.equity)),
            svg: time_chart("equity", "net PnL", &[("net equity", points(&charts.equity))], &[])?,
        },
        Plot {
            caption: format!(
                "Drawdown: net equity below its running peak, the deepest in each interval; {}.",
                per(&charts.drawdown)
            ),
            svg: time_chart(
                "drawdown",
                "drawdown",
                &[("drawdown", points(&charts.drawdown).into_iter().map(|(t, v)| (t, -v)).collect())],
                &[],
            )?,
        },
    ];
    let positions: Vec<Line<'_>> = charts.positions.iter().map(|(s, series)| (s.as_str(), points(series))).collect();
    plots.push(Plot {
        caption: "Position per symbol (signed quantity) at each interval close.".to_owned(),
        svg: time_chart("positions", "quantity", &positions, &[])?,
    });
    for (symbol, mids) in &charts.mids {
        let none = FillMarkers::default();
        let fills = charts.fills.get(symbol).unwrap_or(&none);
        let markers: Vec<(f64, f64, bool)> = fills.kept().iter().map(|&(t, px, buy)| (t as f64, px, buy)).collect();
        let (shown, total) = (markers.len(), fills.total());
        plots.push(Plot {
            caption: format!(
                "{symbol}: fills (buys ▲, sells ●; {shown} of {total} drawn) over the mid at each interval close; {}.",
                per(mids)
            ),
            svg: time_chart("fills", "price", &[("mid", points(mids))], &markers)?,
        });
    }
    let flat = report.risk.intervals.saturating_sub(charts.interval_pnl.len());
    plots.push(Plot {
        caption: format!(
            "Distribution of the interval net PnL changes (the Sharpe and Sortino intervals): {} that moved, in {BINS} bins; {flat} flat intervals left out.",
            charts.interval_pnl.len()
        ),
        svg: histogram_chart(&charts.interval_pnl)?,
    });
    let c = &report.costs;
    let value = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    let costs = [
        ("delay", value(&c.delay)),
        ("spread_impact", value(&c.spread_impact)),
        ("fees", value(&c.fees)),
        ("total", value(&c.total)),
    ];
    plots.push(Plot {
        caption: format!(
            "Cost decomposition against the decision mids: PnL at decision mids {} − total {} = net PnL {}.",
            c.at_decision_mid, c.total, report.pnl.net
        ),
        svg: cost_chart(&costs)?,
    });
    Ok(plots)
}

/// The page for `outcome`.
pub fn render(outcome: &Outcome) -> Result<String, HtmlError> {
    let report = &outcome.report;
    let json = serde_json::to_value(report)?;
    let headline: Vec<Row> = HEADLINE
        .iter()
        .map(|&(label, field)| Row { label, cell: Cell { field: field.to_owned(), value: shown(json.pointer(field)) } })
        .collect();
    let symbols: Vec<&String> = report.symbols.keys().collect();
    let symbol_rows: Vec<SymbolRow> = PER_SYMBOL
        .iter()
        .map(|&(label, field)| SymbolRow {
            label,
            cells: symbols
                .iter()
                .map(|s| {
                    let field = format!("/symbols/{}{field}", key(s));
                    let value = shown(json.pointer(&field));
                    Cell { field, value }
                })
                .collect(),
        })
        .collect();
    let plots: Vec<Value> = plots(report, &outcome.charts, report.risk.sampling_interval_ms)?
        .into_iter()
        .map(|p| context! { caption => p.caption, svg => Value::from_safe_string(p.svg) })
        .collect();
    let span = match (report.input.first_event_ns, report.input.last_event_ns) {
        (Some(a), Some(b)) => format!("{} {} – {} {}", date(a), clock(a as f64), date(b), clock(b as f64)),
        _ => "none".to_owned(),
    };
    let files = report.run.as_ref().map(|r| r.files.join(", ")).unwrap_or_default();
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)?;
    let page = env.get_template("report.html")?.render(context! {
        style => Value::from_safe_string(STYLE.into()),
        schema => report.schema,
        files,
        span,
        notes => report.notes,
        headline,
        symbols,
        symbol_rows,
        plots,
    })?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_clock_times_are_utc() {
        // 2024-08-09 00:00:00 UTC, the spot sample's first second.
        let ns = 1_723_161_600_000_000_000u64;
        assert_eq!(date(ns), "2024-08-09");
        assert_eq!(clock(ns as f64 + 3_723e9), "01:02:03");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400_000_000_000), "2000-02-29");
    }

    /// Values 0 … 39 and one 79: 40 bins of width 79 / 40 = 1.975; 0 and 1 share bin 0, 79 is
    /// the last bin's right edge and falls in it.
    #[test]
    fn the_histogram_bins_every_value_once() {
        let mut values: Vec<f64> = (0..40).map(f64::from).collect();
        values.push(79.0);
        let bins = histogram(&values);
        assert_eq!(bins.len(), BINS);
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), 41);
        assert_eq!(bins[0], (0.0, 1.975, 2));
        assert_eq!(bins[39].2, 1);
        assert_eq!(histogram(&[2.0, 2.0]), vec![(1.5, 2.5, 2)]);
        assert!(histogram(&[]).is_empty());
    }
}
