//! The files a run writes, read back: `report.html` is one offline page whose figures are
//! `report.json`'s, with one SVG per plot.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};

use common::config::{AppConfig, load_from, override_var};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The spot sample's first `rows` rows (two symbols), trading with the costs left out.
fn config(dir: &Path, rows: usize, sets: &[(&str, &str)]) -> AppConfig {
    let text = std::fs::read_to_string(root().join("data/binance-spot-btcusdt-ethusdt-2024-08-09.csv")).unwrap();
    let head: Vec<&str> = text.lines().take(rows + 1).collect();
    let path = dir.join("head.csv");
    std::fs::write(&path, head.join("\n") + "\n").unwrap();
    let mut vars = vec![
        override_var("data_plane.replay.path", path.to_str().unwrap()),
        override_var("strategy_plane.cost_aversion", "0"),
        override_var("strategy_plane.warmup_windows", "10"),
    ];
    vars.extend(sets.iter().map(|(k, v)| override_var(k, v)));
    load_from(&root().join("config"), &vars).unwrap()
}

/// The `data-field="POINTER">VALUE<` cells of the page.
fn cells(html: &str) -> Vec<(String, String)> {
    html.split("data-field=\"")
        .skip(1)
        .map(|rest| {
            let (field, rest) = rest.split_once("\">").unwrap();
            let (value, _) = rest.split_once('<').unwrap();
            (field.replace("&#x2f;", "/"), value.replace("&#x2f;", "/").replace("&quot;", "\""))
        })
        .collect()
}

#[test]
fn report_html_is_offline_has_one_svg_per_plot_and_the_reports_figures() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = backtest::run(&config(dir.path(), 20_000, &[])).unwrap();
    assert!(outcome.report.counts.totals.fills > 0);
    let out = dir.path().join("out");
    backtest::output::prepare(&out).unwrap();
    backtest::output::write(&out, &outcome, backtest::output::Options::default()).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();

    // Offline: no script, stylesheet, font or image fetched; the only URLs are the SVG
    // namespace names, which nothing loads.
    for banned in ["<script", "<link", "@import", "url(", "src=", "<img", "@font-face"] {
        assert!(!html.contains(banned), "{banned}");
    }
    let namespaces = html.matches("\"http://www.w3.org/2000/svg\"").count();
    assert_eq!(html.matches("http://").count(), namespaces, "only the SVG namespace is a URL");
    assert!(!html.contains("https://"));

    // Equity, drawdown, positions, one fills-over-mid per symbol, the histogram, the costs.
    let symbols = outcome.report.symbols.len();
    assert_eq!(symbols, 2);
    assert_eq!(html.matches("<svg").count(), 5 + symbols);
    assert_eq!(html.matches("<figure>").count(), 5 + symbols);

    let cells = cells(&html);
    for want in ["/pnl/net", "/pnl/fees", "/risk/sharpe", "/risk/sortino", "/costs/total", "/round_trips/hit_rate"] {
        assert!(cells.iter().any(|(f, _)| f == want), "{want} is shown");
    }
    assert!(cells.iter().any(|(f, _)| f == "/symbols/ETHUSDT/pnl/net"));
    for (field, value) in &cells {
        let want = match json.pointer(field).unwrap() {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "n/a".to_owned(),
            serde_json::Value::Object(m) if m.is_empty() => "none".to_owned(),
            other => other.to_string(),
        };
        assert_eq!(value, &want, "{field}");
    }
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
}
