//! Replay rows from a Parquet file with the replay columns: `ts_event_ns` int64, prices and sizes
//! as decimal strings or float64, the rest strings.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};

use super::{COLUMNS, FileRow, Num, ReadBytes, SourceError, row_from_fields};

/// Characters of the parquet crate's error or panic message a row error quotes.
const MESSAGE_CHARS: usize = 300;

/// A file's rows, read one row group at a time.
///
/// The parquet crate can panic on a corrupt file (an index out of bounds in its decoders) and,
/// after an error, its row iterator would go on decoding the rest of a row group from columns that
/// no longer line up. So every call into it is made under `catch_unwind`, and an error or panic
/// ends its row group: one bad row names the file's row, the row group and what failed, the
/// group's remaining rows are skipped, and the next row group is read from a fresh reader.
pub(super) struct ParquetRows {
    path: PathBuf,
    index: [usize; COLUMNS.len()],
    /// Rows in each row group, as the file's metadata says.
    groups: Vec<u64>,
    /// The next row group to open.
    next_group: usize,
    /// Rows of the file passed so far (read or skipped).
    passed: u64,
    /// Where the open row group ends, in rows of the file.
    group_end: u64,
    rows: Option<RowIter<'static>>,
    /// The file's size in bytes and its rows, by which rows passed are reported as bytes read.
    size: u64,
    total: u64,
    /// The file's share of rows passed, scaled to its size, shared with the [`super::Replay`].
    read: ReadBytes,
}

pub(super) fn rows(path: &Path, read: ReadBytes) -> Result<ParquetRows, SourceError> {
    let format = |reason: String| SourceError::Format { path: path.to_owned(), reason };
    let reader = guarded(|| open(path, None)).map_err(format)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut index = [0usize; COLUMNS.len()];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = names.iter().position(|n| n == name).ok_or_else(|| format(format!("missing column {name}")))?;
    }
    let groups: Vec<u64> =
        reader.metadata().row_groups().iter().map(|g| u64::try_from(g.num_rows()).unwrap_or(0)).collect();
    let size = std::fs::metadata(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?.len();
    let total = groups.iter().sum::<u64>().max(1);
    Ok(ParquetRows {
        path: path.to_owned(),
        index,
        groups,
        next_group: 0,
        passed: 0,
        group_end: 0,
        rows: None,
        size,
        total,
        read,
    })
}

/// Opens `path`, with only row group `group` when given.
fn open(path: &Path, group: Option<usize>) -> Result<SerializedFileReader<File>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut options = ReadOptionsBuilder::new();
    if let Some(group) = group {
        options = options.with_predicate(Box::new(move |_, i| i == group));
    }
    SerializedFileReader::new_with_options(file, options.build())
        .map_err(|e| format!("not a Parquet file: {}", short(&e.to_string())))
}

/// Runs `f`, turning a panic into an error that quotes its message.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(format!("the Parquet reader failed on corrupt data (panic: {})", short(&message)))
    })
}

/// The start of a message from the parquet crate.
fn short(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        None => message.to_owned(),
        Some((end, _)) => format!("{}…", &message[..end]),
    }
}

impl ParquetRows {
    /// Ends the open row group at the row after `self.passed` with `reason`.
    fn fail_group(&mut self, reason: &str) -> FileRow {
        self.rows = None;
        let row = self.passed + 1;
        let skipped = self.group_end.saturating_sub(self.passed);
        self.passed = self.group_end;
        Err((row, format!("row group {}: {reason}; its remaining {skipped} rows skipped", self.next_group - 1)))
    }

    /// Reports the rows passed as bytes read. The file's bytes are compressed columns, not rows
    /// in order: its share of rows passed stands for them.
    fn report_read(&self) {
        let done = u128::from(self.passed.min(self.total)) * u128::from(self.size) / u128::from(self.total);
        self.read.store(u64::try_from(done).unwrap_or(self.size), Ordering::Relaxed);
    }

    /// The next row, or a bad row ending its row group.
    fn next_row(&mut self) -> Option<FileRow> {
        loop {
            if let Some(rows) = self.rows.as_mut() {
                match guarded(|| rows.next().transpose().map_err(|e| format!("read error: {}", short(&e.to_string()))))
                {
                    Ok(Some(row)) => {
                        self.passed += 1;
                        let line = self.passed;
                        return Some(parse(&row, &self.index).map_err(|reason| (line, reason)));
                    }
                    Ok(None) => {
                        self.rows = None;
                        self.passed = self.group_end;
                    }
                    Err(reason) => return Some(self.fail_group(&reason)),
                }
            }
            let group = self.next_group;
            let size = *self.groups.get(group)?;
            self.next_group += 1;
            self.group_end = self.passed.saturating_add(size);
            match guarded(|| open(&self.path, Some(group))) {
                Ok(reader) => self.rows = Some(reader.into_iter()),
                Err(reason) => return Some(self.fail_group(&reason)),
            }
        }
    }
}

impl Iterator for ParquetRows {
    type Item = FileRow;

    fn next(&mut self) -> Option<FileRow> {
        let row = self.next_row();
        self.report_read();
        row
    }
}

fn parse(
    row: &Row,
    index: &[usize; COLUMNS.len()],
) -> Result<(common::types::UnixNanos, common::types::Symbol, super::RawBody), String> {
    let fields: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
    let mut text: [String; COLUMNS.len()] = Default::default();
    for ((slot, &i), name) in text.iter_mut().zip(index).zip(COLUMNS) {
        let field = fields.get(i).ok_or_else(|| format!("row lacks column {name}"))?;
        *slot = match field {
            Field::Null => String::new(),
            Field::Str(s) => s.clone(),
            Field::Long(v) => v.to_string(),
            Field::Int(v) => v.to_string(),
            Field::ULong(v) => v.to_string(),
            Field::Double(v) => num_text(Num::from_f64(*v)),
            Field::Float(v) => num_text(Num::from_f64(f64::from(*v))),
            other => return Err(format!("column {name} has unsupported value {other}")),
        };
    }
    let [ts, symbol, kind, a, b, c, d, e, f, g] = &text;
    row_from_fields(ts, symbol, kind, [a, b, c, d, e, f, g])
}

fn num_text(n: Option<Num>) -> String {
    match n {
        Some(Num::Value(d)) => d.to_string(),
        _ => "NaN".to_owned(),
    }
}

/// Rows written per row group.
const ROW_GROUP: usize = 65_536;

const SCHEMA: &str = "message replay {
  required int64 ts_event_ns;
  required binary symbol (UTF8);
  required binary kind (UTF8);
  optional binary bid_px (UTF8);
  optional binary bid_sz (UTF8);
  optional binary ask_px (UTF8);
  optional binary ask_sz (UTF8);
  optional binary price (UTF8);
  optional binary size (UTF8);
  optional binary aggressor (UTF8);
}";

/// Writes events as a replay Parquet file (prices and sizes as decimal strings, snappy), returns
/// the number of rows written.
pub(super) fn write(path: &Path, events: impl IntoIterator<Item = super::RawEvent>) -> Result<u64, SourceError> {
    write_groups(path, events, ROW_GROUP)
}

/// [`write`] with `group_rows` rows per row group.
fn write_groups(
    path: &Path,
    events: impl IntoIterator<Item = super::RawEvent>,
    group_rows: usize,
) -> Result<u64, SourceError> {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    let fail = |reason: String| SourceError::Format { path: path.to_owned(), reason };
    let schema = Arc::new(parquet::schema::parser::parse_message_type(SCHEMA).map_err(|e| fail(e.to_string()))?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let file = File::create(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(|e| fail(e.to_string()))?;
    let mut rows = 0u64;
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<super::RawEvent> = events.by_ref().take(group_rows).collect();
        let columns = text_columns(&chunk);
        let mut group = writer.next_row_group().map_err(|e| fail(e.to_string()))?;
        let ts: Vec<i64> = chunk.iter().map(|e| i64::try_from(e.ts.0).unwrap_or(i64::MAX)).collect();
        let mut col = group.next_column().map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail("schema".into()))?;
        col.typed::<Int64Type>().write_batch(&ts, None, None).map_err(|e| fail(e.to_string()))?;
        col.close().map_err(|e| fail(e.to_string()))?;
        for values in columns {
            let defs: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
            let present: Vec<ByteArray> =
                values.into_iter().flatten().map(|s| ByteArray::from(s.into_bytes())).collect();
            let mut col = group.next_column().map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail("schema".into()))?;
            col.typed::<ByteArrayType>().write_batch(&present, Some(&defs), None).map_err(|e| fail(e.to_string()))?;
            col.close().map_err(|e| fail(e.to_string()))?;
        }
        group.close().map_err(|e| fail(e.to_string()))?;
        rows += chunk.len() as u64;
    }
    writer.close().map_err(|e| fail(e.to_string()))?;
    Ok(rows)
}

/// The nine text columns after `ts_event_ns`, in schema order.
fn text_columns(chunk: &[super::RawEvent]) -> Vec<Vec<Option<String>>> {
    use super::RawBody;
    let text = |n: &Num| match n {
        Num::Value(d) => d.to_string(),
        Num::NonFinite => "NaN".to_owned(),
    };
    let mut cols: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(chunk.len()); COLUMNS.len() - 1];
    for e in chunk {
        let row: [Option<String>; 9] = match &e.body {
            RawBody::Quote { bid_px, bid_sz, ask_px, ask_sz } => [
                Some(e.symbol.to_string()),
                Some("quote".into()),
                Some(text(bid_px)),
                Some(text(bid_sz)),
                Some(text(ask_px)),
                Some(text(ask_sz)),
                None,
                None,
                None,
            ],
            RawBody::Trade { price, size, aggressor } => [
                Some(e.symbol.to_string()),
                Some("trade".into()),
                None,
                None,
                None,
                None,
                Some(text(price)),
                Some(text(size)),
                Some(match aggressor {
                    common::types::Side::Buy => "buy".into(),
                    common::types::Side::Sell => "sell".into(),
                }),
            ],
        };
        for (col, v) in cols.iter_mut().zip(row) {
            col.push(v);
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use crate::source::Replay;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// What reading a file came to: rows and bad rows, or why it could not be opened.
    type Outcome = Result<(u64, u64), String>;

    fn read(path: &Path) -> Outcome {
        let replay = Replay::open(path, 1).map_err(|e| e.to_string())?;
        Ok(replay.fold((0, 0), |(good, bad), item| if item.is_ok() { (good + 1, bad) } else { (good, bad + 1) }))
    }

    /// 22 of 160 mutated copies of the sample panicked the reader and 46 spun for 30 s and more
    /// (an earlier parquet crate; 60.1.0 fixed the `triplet.rs` panic, apache/arrow-rs#9993).
    /// Copies of the sample (its first 3,000 rows in row groups of 1,000, so that every copy is
    /// read whole in a debug build) with a byte changed at 160 places spread over the file, each
    /// read on a thread of its own: every one ends, in rows, bad rows or an error, and none
    /// panics out of the reader.
    #[test]
    fn mutated_copies_of_the_sample_end_in_rows_or_errors_never_a_panic() {
        let sample =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/parquet/binance-usdm-btcusdt-2024-08-08.parquet");
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.parquet");
        let events = Replay::open(&sample, 1).unwrap().map(Result::unwrap).take(3000);
        assert_eq!(write_groups(&small, events, 1000).unwrap(), 3000);
        assert_eq!(read(&small), Ok((3000, 0)));
        let bytes = std::fs::read(&small).unwrap();

        let (done_tx, done_rx) = mpsc::channel();
        let copies = 160;
        for i in 0..copies {
            let mut copy = bytes.clone();
            // Spread over the whole file, denser in the footer (the last KiB: the metadata).
            let at = if i % 4 == 0 { copy.len() - 1 - (i * 7) % 1024 } else { (i * 7919) % copy.len() };
            copy[at] = match i % 3 {
                0 => copy[at] ^ (1 << (i % 8)),
                1 => 0xff,
                _ => 0,
            };
            let path = dir.path().join(format!("m{i}.parquet"));
            std::fs::write(&path, copy).unwrap();
            let done_tx = done_tx.clone();
            std::thread::spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| read(&path)));
                let _ = done_tx.send((i, at, outcome.is_err(), outcome.unwrap_or(Err(String::new()))));
            });
        }
        // Generous: a stalled copy is what this finds, not a slow one.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut outcomes = Vec::new();
        while outcomes.len() < copies {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(outcome) = done_rx.recv_timeout(left) else { break };
            outcomes.push(outcome);
        }
        let finished: Vec<usize> = outcomes.iter().map(|o| o.0).collect();
        let stalled: Vec<usize> = (0..copies).filter(|i| !finished.contains(i)).collect();
        assert!(stalled.is_empty(), "copies still reading after 60 s: {stalled:?}");
        let panicked: Vec<(usize, usize)> = outcomes.iter().filter(|o| o.2).map(|o| (o.0, o.1)).collect();
        assert!(panicked.is_empty(), "copies (copy, offset) whose read panicked: {panicked:?}");
        let refused = outcomes.iter().filter(|o| o.3.is_err()).count();
        let with_bad_rows = outcomes.iter().filter(|o| o.3.as_ref().is_ok_and(|(_, bad)| *bad > 0)).count();
        eprintln!("{copies} mutated copies: {refused} refused at open, {with_bad_rows} with bad rows");
        for (_, _, _, outcome) in &outcomes {
            if let Err(e) = outcome {
                assert!(e.len() < 600, "{e}");
            }
        }
    }

    /// The parquet crate still has decoders that panic on corrupt pages (apache/arrow-rs#11121):
    /// a panic inside it is an error quoting the start of its message.
    #[test]
    fn a_panic_in_the_reader_is_an_error() {
        let index = "index out of bounds: the len is 0 but the index is 70093";
        let err = guarded::<()>(|| panic!("{index}")).unwrap_err();
        assert_eq!(err, format!("the Parquet reader failed on corrupt data (panic: {index})"));
        let long = guarded::<()>(|| panic!("{}", "x".repeat(10_000))).unwrap_err();
        assert!(long.len() < MESSAGE_CHARS + 100, "{long}");
        assert_eq!(guarded(|| Ok(1)), Ok(1));
    }
}
