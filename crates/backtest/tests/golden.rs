//! Golden masters: the shipped samples' statistics, exact, and the hash of their `exec_reports`
//! stream, checked in. A change to any core that moves what the samples trade, or what the
//! report makes of it, fails here; updating them is a deliberate, reviewed change:
//! `UPDATE_GOLDEN=1 cargo test -p backtest --test golden`, then read the diff of
//! `crates/backtest/tests/golden/` before committing it.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};

use common::config::{AppConfig, load_from, override_var};

const SAMPLES: [&str; 2] = ["binance-spot-btcusdt-ethusdt-2024-08-09.csv", "binance-usdm-btcusdt-2024-08-08.csv"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped configuration for `sample` with `sets` over it; neither `.env` nor the process
/// environment is read, so a developer's settings cannot move the figures.
fn config(sample: &str, sets: &[(&str, &str)]) -> AppConfig {
    let path = root().join("data").join(sample);
    let mut vars = vec![override_var("data_plane.replay.path", path.to_str().unwrap())];
    vars.extend(sets.iter().map(|(k, v)| override_var(k, v)));
    load_from(&root().join("config"), &vars).unwrap()
}

/// The report without what depends on the machine (`run`), as written to `report.json`.
fn report_json(cfg: &AppConfig) -> (backtest::report::Report, String) {
    let mut report = backtest::run(cfg).unwrap().report;
    report.run = None;
    let json = serde_json::to_string_pretty(&report).unwrap() + "\n";
    (report, json)
}

fn first_differences(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    (0..w.len().max(g.len()))
        .filter(|&i| w.get(i) != g.get(i))
        .take(12)
        .map(|i| {
            format!(
                "  line {}:\n    golden: {}\n    now:    {}",
                i + 1,
                w.get(i).unwrap_or(&"-"),
                g.get(i).unwrap_or(&"-")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// With the costs left out of decisions (the shipped 10 bp fee exceeds every forecast of the
/// samples, so with them weighed nothing trades), each sample trades; what it trades, what that
/// earns and costs, and every exec report are pinned.
#[test]
fn the_samples_trade_as_the_golden_masters_say() {
    let mut moved = Vec::new();
    for sample in SAMPLES {
        let (report, got) = report_json(&config(sample, &[("strategy_plane.cost_aversion", "0")]));
        assert!(report.counts.totals.fills > 0, "{sample}: the golden run should trade");
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(sample.replace(".csv", ".json"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&file, &got).unwrap();
            eprintln!("rewrote {}: review its diff before committing", file.display());
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_default();
        if want != got {
            moved.push(format!("{}:\n{}", file.display(), first_differences(&want, &got)));
        }
    }
    assert!(
        moved.is_empty(),
        "the golden masters moved:\n{}\n\nIf the change is intended, rewrite them with \
         `UPDATE_GOLDEN=1 cargo test -p backtest --test golden` and commit the reviewed diff.",
        moved.join("\n")
    );
}

/// With the shipped configuration the costs are weighed and no forecast pays for them: the
/// samples must not trade, and the report must say why rather than show bare zeros.
#[test]
fn with_the_costs_weighed_the_samples_do_not_trade_and_the_report_says_why() {
    for sample in SAMPLES {
        let (report, _) = report_json(&config(sample, &[]));
        let c = &report.counts;
        assert!(c.decisions > 0, "{sample}: decisions are made, {c:?}");
        assert_eq!((c.totals.intents, c.totals.orders, c.totals.fills), (0, 0, 0), "{sample}");
        assert!(!report.traded);
        assert_eq!((report.pnl.net.as_str(), report.pnl.fees.as_str()), ("0", "0"));
        assert!(
            report.notes.iter().any(|n| n.starts_with("no order intent") && n.contains("cost_aversion = 1")),
            "{sample}: {:?}",
            report.notes
        );
    }
}

/// The cost decomposition adds up to the net PnL, for the run and each symbol: `pnl.net =
/// costs.at_decision_mid − costs.total`, and `total = delay + spread_impact + fees`. The two
/// sides are booked apart (cash at decision mids against average-cost PnL), so this checks both;
/// each figure is rounded to 10 places, hence the tolerance of a few units in the last.
#[test]
fn the_cost_decomposition_adds_up_to_the_net_pnl() {
    use rust_decimal::Decimal;
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    for sample in SAMPLES {
        let (report, _) = report_json(&config(sample, &[("strategy_plane.cost_aversion", "0")]));
        let mut parts: Vec<(String, &backtest::report::Pnl, &backtest::report::CostReport)> =
            vec![("run".into(), &report.pnl, &report.costs)];
        parts.extend(report.symbols.iter().map(|(s, r)| (s.clone(), &r.pnl, &r.costs)));
        for (name, pnl, c) in parts {
            assert_eq!(d(&c.fees), d(&pnl.fees), "{sample} {name}");
            let sum = d(&c.delay) + d(&c.spread_impact) + d(&c.fees);
            assert!((sum - d(&c.total)).abs() <= Decimal::new(3, 10), "{sample} {name}: {c:?}");
            let gap = d(&c.at_decision_mid) - d(&c.total) - d(&pnl.net);
            assert!(gap.abs() <= Decimal::new(5, 10), "{sample} {name}: {c:?} vs net {}", pnl.net);
            assert!(d(&c.spread_impact) > Decimal::ZERO, "{sample} {name}: crossing the spread costs");
        }
    }
}

/// docs/backtest.md quotes the golden figures; a golden update that leaves them stale fails here.
#[test]
fn the_docs_quote_the_golden_figures() {
    let doc = std::fs::read_to_string(root().join("docs/backtest.md")).unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (sample, row) in SAMPLES.into_iter().zip(["| spot BTCUSDT + ETHUSDT", "| USD-M BTCUSDT"]) {
        let text = std::fs::read_to_string(golden.join(sample.replace(".csv", ".json"))).unwrap();
        let g: serde_json::Value = serde_json::from_str(&text).unwrap();
        let c = &g["counts"];
        let want = format!(
            "| {} | {} | {} | {} | {} | {} |",
            c["decisions"],
            c["intents"],
            c["fills"],
            g["pnl"]["net"].as_str().unwrap(),
            g["pnl"]["fees"].as_str().unwrap(),
            g["risk"]["max_drawdown"].as_str().unwrap()
        );
        let line = doc.lines().find(|l| l.starts_with(row)).unwrap_or_default();
        assert!(line.ends_with(&want), "docs/backtest.md's row for {sample} should end with\n{want}\nnot\n{line}");
    }
}
