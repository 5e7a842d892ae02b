//! Writes a run's outputs into its folder: `fills.csv`, `intents.csv`, then `report.json`.
//!
//! `report.json` is what says a run is complete, so it is removed before anything else is written
//! and put in place last, by a rename: a run that fails half-way leaves no report from an
//! earlier run beside its own partial CSV files.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::report::{FILLS_HEADER, INTENTS_HEADER};
use crate::{BacktestError, Outcome};

/// The report's file name.
pub const REPORT: &str = "report.json";
/// The fills' file name.
pub const FILLS: &str = "fills.csv";
/// The intents' file name.
pub const INTENTS: &str = "intents.csv";

fn io(path: &Path) -> impl Fn(std::io::Error) -> BacktestError + '_ {
    move |source| BacktestError::Output { path: path.to_owned(), source }
}

/// Makes `dir` if needed and removes an earlier run's report from it; done before the run, so
/// that a folder that cannot be written fails in a second, not after the whole replay.
pub fn prepare(dir: &Path) -> Result<(), BacktestError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let report = dir.join(REPORT);
    match fs::remove_file(&report) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&report)(e)),
        _ => Ok(()),
    }
}

fn write_lines(path: &Path, header: &str, lines: impl Iterator<Item = String>) -> Result<(), BacktestError> {
    let file = fs::File::create(path).map_err(io(path))?;
    let mut w = BufWriter::new(file);
    writeln!(w, "{header}").map_err(io(path))?;
    for line in lines {
        writeln!(w, "{line}").map_err(io(path))?;
    }
    w.into_inner().map_err(|e| io(path)(e.into_error()))?.sync_all().map_err(io(path))
}

/// Writes every output of `outcome` into `dir` (made by [`prepare`]); returns the report's path.
pub fn write(dir: &Path, outcome: &Outcome) -> Result<PathBuf, BacktestError> {
    write_lines(&dir.join(FILLS), FILLS_HEADER, outcome.fills.iter().map(|f| f.csv()))?;
    write_lines(&dir.join(INTENTS), INTENTS_HEADER, outcome.intents.iter().map(|i| i.csv()))?;
    let partial = dir.join(format!("{REPORT}.partial"));
    let mut json = serde_json::to_vec_pretty(&outcome.report)
        .map_err(|e| io(&partial)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    json.push(b'\n');
    fs::write(&partial, json).map_err(io(&partial))?;
    let report = dir.join(REPORT);
    fs::rename(&partial, &report).map_err(io(&report))?;
    Ok(report)
}
