//! Replay source: rows of the replay format (see `data/README.md`) from CSV or Parquet files, one
//! file or a folder of them merged by event time, optionally played several times with shifted
//! timestamps.
//!
//! Rows come out as [`Item`]s: a parsed [`RawEvent`] or a [`RowError`] naming the file and line,
//! which the caller counts and skips. Only a missing, unreadable or wrongly shaped file is fatal.

mod csv_file;
mod parquet_file;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use common::types::{MAX_SYMBOL_LEN, Side, Symbol, UnixNanos};
use rust_decimal::Decimal;

/// The columns of the replay format, in file order.
pub const COLUMNS: [&str; 10] =
    ["ts_event_ns", "symbol", "kind", "bid_px", "bid_sz", "ask_px", "ask_sz", "price", "size", "aggressor"];

/// A number as the source sent it: a decimal, or a value that is not finite (NaN or ±infinity,
/// which Parquet float columns can hold). Quality checks turn the latter into a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Num {
    /// A finite value.
    Value(Decimal),
    /// NaN or infinite.
    NonFinite,
}

impl Num {
    /// Parses a decimal string; `nan`, `inf`, `infinity` (any case, signed) are [`Num::NonFinite`].
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(d) = common::num::parse(s) {
            return Some(Self::Value(d));
        }
        let t = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
        matches!(t.as_str(), "nan" | "inf" | "infinity").then_some(Self::NonFinite)
    }

    /// Converts a float exactly as it prints (shortest round-trip form).
    pub fn from_f64(f: f64) -> Option<Self> {
        if !f.is_finite() {
            return Some(Self::NonFinite);
        }
        Decimal::from_str(&f.to_string()).ok().map(Self::Value)
    }
}

/// What a row says happened, before any checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawBody {
    /// Top of book.
    Quote {
        /// Best bid price.
        bid_px: Num,
        /// Best bid size.
        bid_sz: Num,
        /// Best ask price.
        ask_px: Num,
        /// Best ask size.
        ask_sz: Num,
    },
    /// A trade.
    Trade {
        /// Price.
        price: Num,
        /// Size.
        size: Num,
        /// Aggressor side.
        aggressor: Side,
    },
}

/// One parsed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// Position in the replay (every row counts, good or bad); stable across runs of the same
    /// input, so it names the event in its id.
    pub seq: u64,
    /// Which pass over the input (0 for the first) when looping.
    pub pass: u32,
    /// Event time.
    pub ts: UnixNanos,
    /// Instrument.
    pub symbol: Symbol,
    /// Quote or trade.
    pub body: RawBody,
}

/// A row that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Position in the replay.
    pub seq: u64,
    /// File the row is in.
    pub file: PathBuf,
    /// 1-based line (CSV, header = line 1) or row number (Parquet).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// A replay row: an event or a bad row.
pub type Item = Result<RawEvent, RowError>;

/// A file or folder that cannot be replayed at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path does not exist or cannot be read.
    #[error("cannot read replay input {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A folder without `.csv` or `.parquet` files, or a file of another kind.
    #[error("no replayable file at {0} (expected .csv or .parquet files)")]
    NoFiles(PathBuf),
    /// A file that is not in the replay format.
    #[error("{path} is not a replay file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A row before it gets its replay position: fields or a reason it is bad.
type FileRow = Result<(UnixNanos, Symbol, RawBody), (u64, String)>;

/// One file's rows in order.
trait RowReader: Iterator<Item = FileRow> + Send {}
impl<T: Iterator<Item = FileRow> + Send> RowReader for T {}

/// Converts the replay at `input` (CSV or Parquet, file or folder) into one Parquet file at
/// `output`. Bad rows are skipped and counted; returns (rows written, rows skipped).
pub fn convert_to_parquet(input: &Path, output: &Path) -> Result<(u64, u64), SourceError> {
    let mut skipped = 0u64;
    let events = Replay::open(input, 1)?.filter_map(|item| {
        if item.is_err() {
            skipped += 1;
        }
        item.ok()
    });
    let written = parquet_file::write(output, events)?;
    Ok((written, skipped))
}

/// The files `path` names, in name order.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let meta = std::fs::metadata(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
    let mut files = if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
        let mut files = Vec::new();
        for entry in entries {
            let p = entry.map_err(|source| SourceError::Io { path: path.to_owned(), source })?.path();
            if is_replay_file(&p) {
                files.push(p);
            }
        }
        files
    } else if is_replay_file(path) {
        vec![path.to_owned()]
    } else {
        Vec::new()
    };
    files.sort();
    if files.is_empty() {
        return Err(SourceError::NoFiles(path.to_owned()));
    }
    Ok(files)
}

fn is_replay_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("csv" | "parquet"))
}

/// How much of a file its reader has consumed, in bytes of the file (a Parquet file's share of
/// rows read, scaled to its size). Shared because the reader sits inside a `Peekable`.
type ReadBytes = Arc<AtomicU64>;

fn open(path: &Path, read: ReadBytes) -> Result<Box<dyn RowReader>, SourceError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Ok(Box::new(parquet_file::rows(path, read)?)),
        _ => Ok(Box::new(csv_file::rows(path, read)?)),
    }
}

/// Characters of a bad field an error message quotes.
const QUOTED_CHARS: usize = 40;

/// `v` as an error message quotes it: whole when short, else its start and its size (one bad
/// 5 MB field per row made a log of 100 MB).
fn quoted(v: &str) -> String {
    match v.char_indices().nth(QUOTED_CHARS) {
        None => format!("{v:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &v[..end], v.len()),
    }
}

/// Builds a row from its fields as text (shared by the CSV and Parquet readers).
fn row_from_fields(
    ts: &str,
    symbol: &str,
    kind: &str,
    fields: [&str; 7],
) -> Result<(UnixNanos, Symbol, RawBody), String> {
    // Kafka timestamps and Parquet columns are i64: a larger value is not a real event time.
    let ts = ts
        .parse::<i64>()
        .ok()
        .filter(|t| *t >= 0)
        .ok_or_else(|| format!("ts_event_ns {} is not an integer in 0..=9223372036854775807", quoted(ts)))?
        .unsigned_abs();
    // Symbol::new shares one allocation per name on this thread: rows do not allocate theirs.
    let symbol = Symbol::new(symbol).map_err(|_| {
        format!("invalid symbol {}: 1 to {MAX_SYMBOL_LEN} characters of A-Z a-z 0-9 . _ : / -", quoted(symbol))
    })?;
    let [bid_px, bid_sz, ask_px, ask_sz, price, size, aggressor] = fields;
    let num = |name: &str, v: &str| Num::parse(v).ok_or_else(|| format!("{name} {} is not a number", quoted(v)));
    let body = match kind {
        "quote" => RawBody::Quote {
            bid_px: num("bid_px", bid_px)?,
            bid_sz: num("bid_sz", bid_sz)?,
            ask_px: num("ask_px", ask_px)?,
            ask_sz: num("ask_sz", ask_sz)?,
        },
        "trade" => RawBody::Trade {
            price: num("price", price)?,
            size: num("size", size)?,
            aggressor: match aggressor {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                other => return Err(format!("aggressor {} is not buy or sell", quoted(other))),
            },
        },
        other => return Err(format!("kind {} is not quote or trade", quoted(other))),
    };
    Ok((UnixNanos(ts), symbol, body))
}

/// How far a [`Replay`] has read, for a watchdog on another thread: rows handed out, the file
/// being read, and whether its consumer holds it up (it then waits, it is not stalled).
#[derive(Debug, Default)]
pub struct ReadProgress {
    rows: AtomicU64,
    file: AtomicUsize,
    waiting: AtomicBool,
}

impl ReadProgress {
    /// Rows (good or bad) handed out so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The index, in [`Replay::files`], of the file last read from.
    pub fn file(&self) -> usize {
        self.file.load(Ordering::Relaxed)
    }

    /// Whether the reader waits for its consumer to take what it read.
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts a row handed out.
    pub fn row_read(&self) {
        self.rows.fetch_add(1, Ordering::Relaxed);
    }

    /// Records whether the reader waits for its consumer.
    pub fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }
}

/// The replay: every file under a path, merged by event time (ties keep file order), played
/// `passes` times (0 = forever), each pass shifted to start after the previous one ended.
pub struct Replay {
    files: Vec<PathBuf>,
    passes: u32,
    pass: u32,
    readers: Vec<std::iter::Peekable<Box<dyn RowReader>>>,
    next_seq: u64,
    shift: u64,
    first_ts: Option<u64>,
    last_ts: u64,
    rows_this_pass: u64,
    progress: Arc<ReadProgress>,
    /// Each file's size and how much of it this pass has read: the share of the pass read.
    sizes: Vec<u64>,
    read: Vec<ReadBytes>,
}

impl Replay {
    /// Opens every file under `path`. Fails if any is missing or not in the replay format.
    pub fn open(path: &Path, passes: u32) -> Result<Self, SourceError> {
        let files = files(path)?;
        let sizes = files
            .iter()
            .map(|f| {
                std::fs::metadata(f).map(|m| m.len()).map_err(|source| SourceError::Io { path: f.clone(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let read: Vec<ReadBytes> = files.iter().map(|_| ReadBytes::default()).collect();
        let readers = open_all(&files, &read)?;
        Ok(Self {
            files,
            passes,
            pass: 0,
            readers,
            next_seq: 0,
            shift: 0,
            first_ts: None,
            last_ts: 0,
            rows_this_pass: 0,
            progress: Arc::default(),
            sizes,
            read,
        })
    }

    /// The share of the current pass's input read so far, 0 to 1: bytes read over the files'
    /// sizes.
    pub fn share_read(&self) -> f64 {
        let total: u64 = self.sizes.iter().sum();
        if total == 0 {
            return 1.0;
        }
        let read: u64 = self.read.iter().zip(&self.sizes).map(|(r, size)| r.load(Ordering::Relaxed).min(*size)).sum();
        read as f64 / total as f64
    }

    /// The pass being read, from 0.
    pub fn pass(&self) -> u32 {
        self.pass
    }

    /// The files being replayed.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// How far the replay has read, updated as it reads.
    pub fn progress(&self) -> Arc<ReadProgress> {
        Arc::clone(&self.progress)
    }

    fn next_in_pass(&mut self) -> Option<(usize, FileRow)> {
        // A bad row has no usable time; hand it out as soon as it heads its file.
        let progress = &self.progress;
        let peek = |(i, r): (usize, &mut std::iter::Peekable<Box<dyn RowReader>>)| {
            // A file whose read never returns is the one named when the reader stalls.
            progress.file.store(i, Ordering::Relaxed);
            r.peek().map(|row| row.as_ref().map(|(ts, _, _)| *ts).map_err(|_| ()))
        };
        if let Some(i) = self.readers.iter_mut().enumerate().position(|r| matches!(peek(r), Some(Err(_)))) {
            return self.readers[i].next().map(|row| (i, row));
        }
        let mut best: Option<(usize, UnixNanos)> = None;
        for (i, r) in self.readers.iter_mut().enumerate() {
            if let Some(Ok(ts)) = peek((i, r))
                && best.is_none_or(|(_, b)| ts < b)
            {
                best = Some((i, ts));
            }
        }
        let (i, _) = best?;
        self.readers[i].next().map(|row| (i, row))
    }
}

fn open_all(
    files: &[PathBuf],
    read: &[ReadBytes],
) -> Result<Vec<std::iter::Peekable<Box<dyn RowReader>>>, SourceError> {
    files
        .iter()
        .zip(read)
        .map(|(f, r)| {
            r.store(0, Ordering::Relaxed);
            open(f, Arc::clone(r)).map(Iterator::peekable)
        })
        .collect()
}

impl Iterator for Replay {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some((file, row)) = self.next_in_pass() {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.rows_this_pass += 1;
                self.progress.row_read();
                return Some(match row {
                    Ok((ts, symbol, body)) => {
                        self.first_ts.get_or_insert(ts.0);
                        self.last_ts = self.last_ts.max(ts.0);
                        Ok(RawEvent {
                            seq,
                            pass: self.pass,
                            ts: UnixNanos(ts.0.saturating_add(self.shift)),
                            symbol,
                            body,
                        })
                    }
                    Err((line, reason)) => Err(RowError { seq, file: self.files[file].clone(), line, reason }),
                });
            }
            self.pass += 1;
            // A pass that yielded nothing (the files emptied meanwhile) would loop forever.
            if (self.passes != 0 && self.pass >= self.passes) || std::mem::take(&mut self.rows_this_pass) == 0 {
                return None;
            }
            let first = self.first_ts?;
            // Whole seconds past the end of the previous pass; the core starts each pass afresh.
            let span_s = (self.last_ts - first) / 1_000_000_000 + 1;
            self.shift = u64::from(self.pass) * span_s * 1_000_000_000;
            match open_all(&self.files, &self.read) {
                Ok(readers) => self.readers = readers,
                Err(e) => {
                    tracing::error!(error = %e, "Replay input vanished between passes; stopping.");
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn numbers() {
        assert_eq!(Num::parse("61685.99"), Some(Num::Value(dec!(61685.99))));
        assert_eq!(Num::parse("-0"), Some(Num::Value(dec!(0))));
        assert_eq!(Num::parse("NaN"), Some(Num::NonFinite));
        assert_eq!(Num::parse("-inf"), Some(Num::NonFinite));
        assert_eq!(Num::parse(""), None);
        assert_eq!(Num::parse("12abc"), None);
        assert_eq!(Num::from_f64(61685.99), Some(Num::Value(dec!(61685.99))));
        assert_eq!(Num::from_f64(f64::NAN), Some(Num::NonFinite));
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    const HEADER: &str = "ts_event_ns,symbol,kind,bid_px,bid_sz,ask_px,ask_sz,price,size,aggressor\n";

    #[test]
    fn folder_merges_by_time_and_loops_shifted() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.csv", &format!("{HEADER}1000,AAA,quote,1,1,2,1,,,\n3000,AAA,trade,,,,,1.5,1,buy\n"));
        write(dir.path(), "b.csv", &format!("{HEADER}2000,BBB,quote,5,1,6,1,,,\n"));
        write(dir.path(), "notes.txt", "ignored");
        let rows: Vec<_> = Replay::open(dir.path(), 2).unwrap().map(|r| r.unwrap()).collect();
        let got: Vec<(u64, u64, &str)> = rows.iter().map(|e| (e.seq, e.ts.0, e.symbol.as_str())).collect();
        let shift = 1_000_000_000;
        assert_eq!(
            got,
            vec![
                (0, 1000, "AAA"),
                (1, 2000, "BBB"),
                (2, 3000, "AAA"),
                (3, 1000 + shift, "AAA"),
                (4, 2000 + shift, "BBB"),
                (5, 3000 + shift, "AAA")
            ]
        );
    }

    #[test]
    fn bad_rows_are_items_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "x.csv",
            &format!(
                "{HEADER}1000,AAA,quote,1,1,2,1,,,\nxyz,AAA,quote,1,1,2,1,,,\n2000,AAA,quote,abc,1,2,1,,,\n3000,AAA,trade,,,,,1,1,maybe\n4000,AAA,depth,,,,,,,\n5000,AAA,quote,1,1,2\n6000,AAA,quote,NaN,1,2,1,,,\n"
            ),
        );
        let items: Vec<_> = Replay::open(&f, 1).unwrap().collect();
        let lines: Vec<Result<u64, u64>> =
            items.iter().map(|i| i.as_ref().map(|e| e.seq).map_err(|e| e.line)).collect();
        assert_eq!(lines, vec![Ok(0), Err(3), Err(4), Err(5), Err(6), Err(7), Ok(6)]);
        let RawBody::Quote { bid_px, .. } = &items[6].as_ref().unwrap().body else { panic!() };
        assert_eq!(*bid_px, Num::NonFinite);
    }

    /// 20 bad rows of 5 MB each made a 105 MB log: a message quoted the whole field. Every
    /// field a message names is quoted by its first 40 characters and its size (a field is at
    /// most a record's 64 KiB; a longer record is refused whole, `csv_file`).
    #[test]
    fn a_bad_field_is_quoted_short_whatever_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let big = "9".repeat(60_000) + "x";
        let rows = [
            format!("{big},AAA,quote,1,1,2,1,,,"),
            format!("1000,{big},quote,1,1,2,1,,,"),
            format!("1000,AAA,{big},1,1,2,1,,,"),
            format!("1000,AAA,quote,{big},1,2,1,,,"),
            format!("1000,AAA,trade,,,,,1,1,{big}"),
        ];
        let f = write(dir.path(), "x.csv", &format!("{HEADER}{}\n", rows.join("\n")));
        let errors: Vec<String> = Replay::open(&f, 1).unwrap().map(|i| i.unwrap_err().reason).collect();
        assert_eq!(errors.len(), 5);
        for e in &errors {
            assert!(e.len() < 200, "{} bytes: {:.200}", e.len(), e);
            assert!(e.contains("(60001 bytes)"), "{e:.200}");
        }
        assert!(errors[3].starts_with("bid_px \"9999"), "{}", errors[3]);
        assert_eq!(quoted("61686.5"), "\"61686.5\"", "a short field whole");
    }

    #[test]
    fn progress_is_the_share_of_the_input_read_csv_and_parquet_alike() {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (1..=100).map(|i| format!("{i}000,AAA,quote,1,1,2,1,,,\n")).collect();
        let csv = write(dir.path(), "x.csv", &format!("{HEADER}{rows}"));
        let parquet = dir.path().join("x.parquet");
        convert_to_parquet(&csv, &parquet).unwrap();
        for path in [&csv, &parquet] {
            let mut replay = Replay::open(path, 2).unwrap();
            assert_eq!(replay.share_read(), 0.0, "{}", path.display());
            replay.by_ref().take(50).for_each(drop);
            let half = replay.share_read();
            assert!((0.45..0.56).contains(&half), "{}: {half} after 50 of 100 rows", path.display());
            replay.by_ref().take(50).for_each(drop);
            assert_eq!(replay.share_read(), 1.0, "{}", path.display());
            replay.by_ref().take(10).for_each(drop);
            assert_eq!(replay.pass(), 1);
            assert!(replay.share_read() < 0.2, "{}: a new pass starts again", path.display());
        }
    }

    #[test]
    fn parquet_replays_like_the_csv_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(
            dir.path(),
            "x.csv",
            &format!(
                "{HEADER}1000,AAA,quote,61685.99,1.25869,61686,2.44816,,,\n2000,AAA,trade,,,,,61686,0.006,buy\n3000,BBB,quote,NaN,1,2,1,,,\n"
            ),
        );
        let parquet = dir.path().join("x.parquet");
        assert_eq!(convert_to_parquet(&csv, &parquet).unwrap(), (3, 0));
        let from_csv: Vec<_> = Replay::open(&csv, 1).unwrap().collect();
        let from_parquet: Vec<_> = Replay::open(&parquet, 1).unwrap().collect();
        assert_eq!(from_csv, from_parquet);
        assert!(matches!(
            Replay::open(&csv.with_extension("nope"), 1),
            Err(SourceError::Io { .. }) | Err(SourceError::NoFiles(_))
        ));
        std::fs::write(dir.path().join("bad.parquet"), "not parquet").unwrap();
        let err = Replay::open(&dir.path().join("bad.parquet"), 1).err().unwrap();
        assert!(matches!(err, SourceError::Format { .. }), "{err}");
    }

    #[test]
    fn missing_and_misshapen_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Replay::open(&dir.path().join("nope.csv"), 1), Err(SourceError::Io { .. })));
        assert!(matches!(Replay::open(dir.path(), 1), Err(SourceError::NoFiles(_))));
        let f = write(dir.path(), "bad.csv", "time,sym\n1,A\n");
        let err = Replay::open(&f, 1).err().unwrap();
        assert!(err.to_string().contains("missing column ts_event_ns"), "{err}");
    }
}
