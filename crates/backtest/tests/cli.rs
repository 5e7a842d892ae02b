//! The `backtest` binary: its outputs, and its exit codes on bad input (66), bad configuration
//! (78) and an output folder it cannot write (73), each with a message naming what is wrong.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary in `dir` with an empty environment, so that neither a `.env` nor the
/// developer's variables reach it.
fn backtest(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backtest"))
        .current_dir(dir)
        .env_clear()
        .arg("--config-dir")
        .arg(root().join("config"))
        .args(args)
        .output()
        .unwrap()
}

/// The spot sample's first `rows` rows: enough to decide and trade, quick to replay.
fn fixture(dir: &Path, rows: usize) -> PathBuf {
    let text = std::fs::read_to_string(root().join("data/binance-spot-btcusdt-ethusdt-2024-08-09.csv")).unwrap();
    let head: Vec<&str> = text.lines().take(rows + 1).collect();
    let path = dir.join("head.csv");
    std::fs::write(&path, head.join("\n") + "\n").unwrap();
    path
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_run_writes_the_report_the_tables_and_with_csv_the_csv_files_and_prints_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path(), 20_000);
    let sets = ["--set", "strategy_plane.cost_aversion=0", "--set", "strategy_plane.warmup_windows=10"];
    let o = backtest(dir.path(), &[&[input.to_str().unwrap(), "--out", "out", "--csv"][..], &sets].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    // stderr is not a terminal here: no progress bar, nothing at all.
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.starts_with("backtest: 20000 rows") && stdout.contains("report out/report.json"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap()).unwrap();
    let fills = report["counts"]["fills"].as_u64().unwrap();
    assert!(fills > 0, "{report}");
    let csv = std::fs::read_to_string(dir.path().join("out/fills.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, fills + 1, "a header and one line per fill");
    let intents = std::fs::read_to_string(dir.path().join("out/intents.csv")).unwrap();
    assert_eq!(intents.lines().count() as u64, report["counts"]["intents"].as_u64().unwrap() + 1);
    assert!(!dir.path().join("out/report.json.partial").exists());
    for table in ["fills.parquet", "intents.parquet"] {
        assert!(std::fs::read(dir.path().join("out").join(table)).unwrap().starts_with(b"PAR1"), "{table}");
    }

    // Without --csv the CSV files go, an earlier run's included: none is left looking current.
    let o = backtest(dir.path(), &[&[input.to_str().unwrap(), "--out", "out"][..], &sets].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.path().join("out/fills.csv").exists() && !dir.path().join("out/intents.csv").exists());
    assert!(dir.path().join("out/fills.parquet").exists());
}

#[test]
fn a_missing_input_exits_66_naming_it_and_leaves_no_report() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    // An earlier run's outputs must not survive a failed run looking complete.
    let earlier = ["report.json", "report.html", "fills.parquet", "intents.parquet", "fills.csv", "intents.csv"];
    for name in earlier {
        std::fs::write(dir.path().join("out").join(name), "{}").unwrap();
    }
    let o = backtest(dir.path(), &["no-such-file.csv", "--out", "out"]);
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-file.csv"), "{}", stderr(&o));
    for name in earlier {
        assert!(!dir.path().join("out").join(name).exists(), "{name}");
    }
}

#[test]
fn bad_overrides_exit_78_naming_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path(), 10);
    let input = input.to_str().unwrap();
    let o = backtest(
        dir.path(),
        &[input, "--set", "strategy_plane.risk_aversio=1", "--set", "risk.max_gross_exposure=lots"],
    );
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("strategy_plane.risk_aversio") && e.contains("risk.max_gross_exposure"), "{e}");

    let o = backtest(dir.path(), &[input, "--set", "strategy_plane.risk_aversion"]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("strategy_plane.risk_aversion"), "{}", stderr(&o));

    let o = backtest(dir.path(), &[input, "--set", "data_plane.replay.loop_count=0"]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("loop_count"), "{}", stderr(&o));
}

#[test]
fn an_output_folder_that_cannot_be_made_exits_73() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path(), 10);
    // A file where the folder should be: no permission trick, so it fails as root too.
    std::fs::write(dir.path().join("taken"), "").unwrap();
    let o = backtest(dir.path(), &[input.to_str().unwrap(), "--out", "taken/out"]);
    assert_eq!(o.status.code(), Some(73), "{}", stderr(&o));
    assert!(stderr(&o).contains("taken/out"), "{}", stderr(&o));

    // A sweep fails the same way before any variant runs, naming the folder it could not make.
    std::fs::create_dir(dir.path().join("sweep")).unwrap();
    std::fs::write(dir.path().join("sweep/strategy_plane.risk_aversion=2"), "").unwrap();
    let o = backtest(
        dir.path(),
        &[input.to_str().unwrap(), "--out", "sweep", "--sweep", "strategy_plane.risk_aversion=1,2"],
    );
    assert_eq!(o.status.code(), Some(73), "{}", stderr(&o));
    assert!(stderr(&o).contains("sweep/strategy_plane.risk_aversion=2"), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "no variant ran");
}

/// `report.json` without `run` (wall time, files), which depends on the machine.
fn report_without_run(path: &Path) -> serde_json::Value {
    let mut report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    report.as_object_mut().unwrap().remove("run");
    report
}

#[test]
fn a_sweep_writes_each_variant_as_a_run_alone_would_and_compares_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path(), 20_000);
    let input = input.to_str().unwrap();
    let base = ["--set", "strategy_plane.cost_aversion=0", "--set", "strategy_plane.warmup_windows=10"];
    let o = backtest(
        dir.path(),
        &[&[input, "--out", "sweep", "--sweep", "strategy_plane.risk_aversion=1000,30000"][..], &base].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3, "a line per variant and one for the sweep: {stdout}");

    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("sweep/sweep.json")).unwrap()).unwrap();
    let variants = sweep["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    let mut nets = Vec::new();
    for (i, value) in ["1000", "30000"].iter().enumerate() {
        let name = format!("strategy_plane.risk_aversion={value}");
        let alone = format!("alone-{value}");
        let o = backtest(dir.path(), &[&[input, "--out", &alone, "--set", &name][..], &base].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let swept = report_without_run(&dir.path().join("sweep").join(&name).join("report.json"));
        assert_eq!(swept, report_without_run(&dir.path().join(&alone).join("report.json")), "{name}");
        for table in ["fills.parquet", "intents.parquet"] {
            let a = std::fs::read(dir.path().join("sweep").join(&name).join(table)).unwrap();
            assert_eq!(a, std::fs::read(dir.path().join(&alone).join(table)).unwrap(), "{name} {table}");
        }
        assert_eq!(variants[i]["folder"], name.as_str());
        assert_eq!(variants[i]["pnl"], swept["pnl"]);
        assert_eq!(variants[i]["risk"]["sortino"], swept["risk"]["sortino"]);
        nets.push(swept["pnl"]["net"].clone());
    }
    assert_ne!(nets[0], nets[1], "the variants differ, or the sweep proves nothing");
    let page = std::fs::read_to_string(dir.path().join("sweep/sweep.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 1, "one equity plot overlaying the variants");
    assert!(!page.contains("https://") && !page.contains("<script"));
}

#[test]
fn a_bad_sweep_exits_78_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(dir.path(), 10);
    let input = input.to_str().unwrap();
    for (sweep, named) in [
        ("strategy_plane.risk_aversio=1,2", "strategy_plane.risk_aversio"),
        ("strategy_plane.risk_aversion=1,lots", "strategy_plane.risk_aversion"),
        ("strategy_plane.risk_aversion", "strategy_plane.risk_aversion"),
        ("strategy_plane.risk_aversion=1,,2", "strategy_plane.risk_aversion=1,,2"),
    ] {
        let o = backtest(dir.path(), &[input, "--out", "out", "--sweep", sweep]);
        assert_eq!(o.status.code(), Some(78), "{sweep}: {}", stderr(&o));
        assert!(stderr(&o).contains(named), "{sweep}: {}", stderr(&o));
        assert!(!dir.path().join("out").exists(), "{sweep}: nothing is written before the configuration is good");
    }
}
