//! Writes a run's outputs into its folder: `fills.parquet`, `intents.parquet` (and their CSV
//! copies with `--csv`) as the run goes, then `report.html`, then `report.json`.
//!
//! The tables are written while the replay runs, each row when it is final, so that a run holds
//! no more of them than a row group, however long it is. `report.json` is what says a run is
//! complete, so every output of an earlier run is removed before anything is written, each file
//! is written under a `.partial` name and renamed into place when whole, and the report goes
//! last: a run that fails half-way leaves no report, no table that looks whole, and no earlier
//! run's files beside its own partial ones.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use common::config::AppConfig;

use crate::report::{FILLS_HEADER, FillRow, INTENTS_HEADER, IntentRow, Rows};
use crate::tables::{self, Table};
use crate::{BacktestError, Outcome, Progress};

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

/// Makes `dir` if needed and removes an earlier run's outputs from it, whole or partial; done
/// before the run, so that a folder that cannot be written fails in a second, not after the
/// whole replay.
pub fn prepare(dir: &Path) -> Result<(), BacktestError> {
    clear(dir, &OUTPUTS)?;
    let partial: Vec<String> = OUTPUTS.iter().map(|name| partial_name(name)).collect();
    clear(dir, &partial.iter().map(String::as_str).collect::<Vec<_>>())
}

fn partial_name(name: &str) -> String {
    format!("{name}.partial")
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

fn table<T>(path: &Path, result: Result<T, tables::TableError>) -> Result<T, BacktestError> {
    result.map_err(|e| match e {
        tables::TableError::Io(source) => io(path)(source),
        other => io(path)(std::io::Error::other(other)),
    })
}

/// A CSV file being written, line by line.
struct Csv {
    path: PathBuf,
    w: BufWriter<fs::File>,
}

impl Csv {
    fn create(path: PathBuf, header: &str) -> Result<Self, BacktestError> {
        let file = fs::File::create(&path).map_err(io(&path))?;
        let mut csv = Self { path, w: BufWriter::new(file) };
        csv.line(header)?;
        Ok(csv)
    }

    fn line(&mut self, line: &str) -> Result<(), BacktestError> {
        writeln!(self.w, "{line}").map_err(io(&self.path))
    }

    fn finish(self) -> Result<PathBuf, BacktestError> {
        let path = self.path;
        self.w.into_inner().map_err(|e| io(&path)(e.into_error()))?.sync_all().map_err(io(&path))?;
        Ok(path)
    }
}

/// A table being written under its `.partial` name.
struct Partial<R> {
    path: PathBuf,
    table: Table<R>,
}

/// The tables of a run in its folder, written as the rows come (see [`Rows`]).
pub struct Files {
    dir: PathBuf,
    fills: Partial<FillRow>,
    intents: Partial<IntentRow>,
    csv: Option<(Csv, Csv)>,
}

impl Files {
    /// Starts the tables in `dir` (made by [`prepare`]) under their `.partial` names.
    pub fn create(dir: &Path, options: Options) -> Result<Self, BacktestError> {
        let partial = |name: &str| dir.join(partial_name(name));
        let fills = partial(FILLS_PARQUET);
        let intents = partial(INTENTS_PARQUET);
        let csv = if options.csv {
            Some((Csv::create(partial(FILLS), FILLS_HEADER)?, Csv::create(partial(INTENTS), INTENTS_HEADER)?))
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_owned(),
            fills: Partial { table: table(&fills, tables::fills(&fills))?, path: fills },
            intents: Partial { table: table(&intents, tables::intents(&intents))?, path: intents },
            csv,
        })
    }

    /// Ends the tables and puts them in place, then writes the page and, last, the report of
    /// `outcome`; returns the report's path.
    pub fn finish(self, outcome: &Outcome) -> Result<PathBuf, BacktestError> {
        let dir = self.dir;
        table(&self.fills.path, self.fills.table.finish())?;
        table(&self.intents.path, self.intents.table.finish())?;
        let mut whole = vec![(self.fills.path, FILLS_PARQUET), (self.intents.path, INTENTS_PARQUET)];
        if let Some((fills, intents)) = self.csv {
            whole.push((fills.finish()?, FILLS));
            whole.push((intents.finish()?, INTENTS));
        }
        for (partial, name) in whole {
            let path = dir.join(name);
            fs::rename(&partial, &path).map_err(io(&path))?;
        }
        write(&dir, outcome)
    }
}

impl Rows for Files {
    fn fill(&mut self, row: FillRow) -> Result<(), BacktestError> {
        if let Some((csv, _)) = &mut self.csv {
            csv.line(&row.csv())?;
        }
        table(&self.fills.path, self.fills.table.push(row))
    }

    fn intent(&mut self, row: IntentRow) -> Result<(), BacktestError> {
        if let Some((_, csv)) = &mut self.csv {
            csv.line(&row.csv())?;
        }
        table(&self.intents.path, self.intents.table.push(row))
    }
}

/// Runs `cfg` into `dir` (made by [`prepare`]), the tables written as the run goes, reporting
/// its progress to `on_progress`; returns the outcome and the report's path.
pub fn run_into(
    cfg: &AppConfig,
    dir: &Path,
    options: Options,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(Outcome, PathBuf), BacktestError> {
    let mut files = Files::create(dir, options)?;
    let outcome = crate::run_with(cfg, &mut files, on_progress)?;
    let report = files.finish(&outcome)?;
    Ok((outcome, report))
}

/// Writes `bytes` to `name` in `dir` through a `.partial` file and a rename, so that the name
/// only ever holds a whole file.
pub fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, BacktestError> {
    let partial = dir.join(partial_name(name));
    fs::write(&partial, bytes).map_err(io(&partial))?;
    let path = dir.join(name);
    fs::rename(&partial, &path).map_err(io(&path))?;
    Ok(path)
}

/// Writes the page and, last, the report of `outcome` into `dir`; returns the report's path.
fn write(dir: &Path, outcome: &Outcome) -> Result<PathBuf, BacktestError> {
    let page = crate::html::render(outcome).map_err(|e| io(&dir.join(HTML))(std::io::Error::other(e)))?;
    put(dir, HTML, page.as_bytes())?;
    let mut json = serde_json::to_vec_pretty(&outcome.report)
        .map_err(|e| io(&dir.join(REPORT))(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    json.push(b'\n');
    put(dir, REPORT, &json)
}
