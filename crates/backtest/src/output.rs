//! Writes a run's outputs into its folder: `fills.parquet`, `intents.parquet` (and their CSV
//! copies with `--csv`), `report.html`, then `report.json`.
//!
//! `report.json` is what says a run is complete, so every output of an earlier run is removed
//! before anything is written, and the page and the report are put in place last, each by a
//! rename: a run that fails half-way leaves no report, and no earlier run's files beside its own
//! partial ones.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::report::{FILLS_HEADER, INTENTS_HEADER};
use crate::{BacktestError, Outcome, tables};

/// The report's file name.
pub const REPORT: &str = "report.json";
/// The page's file name.
pub const HTML: &str = "report.html";
/// The fills' CSV file name.
pub const FILLS: &str = "fills.csv";
/// The intents' CSV file name.
pub const INTENTS: &str = "intents.csv";
/// The fills' Parquet file name.
pub const FILLS_PARQUET: &str = "fills.parquet";
/// The intents' Parquet file name.
pub const INTENTS_PARQUET: &str = "intents.parquet";

/// Every file a run may write, the report first: [`prepare`] removes them all.
const OUTPUTS: [&str; 6] = [REPORT, HTML, FILLS, INTENTS, FILLS_PARQUET, INTENTS_PARQUET];

/// Which outputs to write besides the report and the Parquet tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `fills.csv` and `intents.csv` too.
    pub csv: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BacktestError + '_ {
    move |source| BacktestError::Output { path: path.to_owned(), source }
}

/// Makes `dir` if needed and removes an earlier run's outputs from it; done before the run, so
/// that a folder that cannot be written fails in a second, not after the whole replay.
pub fn prepare(dir: &Path) -> Result<(), BacktestError> {
    clear(dir, &OUTPUTS)
}

/// Makes `dir` if needed and removes the files `names` from it.
pub fn clear(dir: &Path, names: &[&str]) -> Result<(), BacktestError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    for name in names {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
            _ => {}
        }
    }
    Ok(())
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

fn table(path: &Path, result: Result<(), tables::TableError>) -> Result<(), BacktestError> {
    result.map_err(|e| match e {
        tables::TableError::Io(source) => io(path)(source),
        other => io(path)(std::io::Error::other(other)),
    })
}

/// Writes `bytes` to `name` in `dir` through a `.partial` file and a rename, so that the name
/// only ever holds a whole file.
pub fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, BacktestError> {
    let partial = dir.join(format!("{name}.partial"));
    fs::write(&partial, bytes).map_err(io(&partial))?;
    let path = dir.join(name);
    fs::rename(&partial, &path).map_err(io(&path))?;
    Ok(path)
}

/// Writes every output of `outcome` into `dir` (made by [`prepare`]); returns the report's path.
pub fn write(dir: &Path, outcome: &Outcome, options: Options) -> Result<PathBuf, BacktestError> {
    let fills = dir.join(FILLS_PARQUET);
    table(&fills, tables::write_fills(&fills, &outcome.fills))?;
    let intents = dir.join(INTENTS_PARQUET);
    table(&intents, tables::write_intents(&intents, &outcome.intents))?;
    if options.csv {
        write_lines(&dir.join(FILLS), FILLS_HEADER, outcome.fills.iter().map(|f| f.csv()))?;
        write_lines(&dir.join(INTENTS), INTENTS_HEADER, outcome.intents.iter().map(|i| i.csv()))?;
    }
    let page = crate::html::render(outcome).map_err(|e| io(&dir.join(HTML))(std::io::Error::other(e)))?;
    put(dir, HTML, page.as_bytes())?;
    let mut json = serde_json::to_vec_pretty(&outcome.report)
        .map_err(|e| io(&dir.join(REPORT))(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    json.push(b'\n');
    put(dir, REPORT, &json)
}
