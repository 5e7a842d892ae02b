//! Replay rows from a Parquet file with the replay columns: `ts_event_ns` int64, prices and sizes
//! as decimal strings or float64, the rest strings.

use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

use super::{COLUMNS, FileRow, Num, ReadBytes, SourceError, Symbols, row_from_fields};

pub(super) fn rows(path: &Path, read: ReadBytes) -> Result<impl Iterator<Item = FileRow> + Send + use<>, SourceError> {
    let file = File::open(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
    let format = |reason: String| SourceError::Format { path: path.to_owned(), reason };
    let reader = SerializedFileReader::new(file).map_err(|e| format(format!("not a Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut index = [0usize; COLUMNS.len()];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = names.iter().position(|n| n == name).ok_or_else(|| format(format!("missing column {name}")))?;
    }
    let size = file_size(path)?;
    let total = u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0).max(1);
    let mut symbols = Symbols::default();
    let iter = reader.into_iter().enumerate().map(move |(i, row)| {
        let line = i as u64 + 1;
        // The file's bytes are compressed columns, not rows in order: its share of rows read
        // stands for them.
        let done = u128::from(line.min(total)) * u128::from(size) / u128::from(total);
        read.store(u64::try_from(done).unwrap_or(size), std::sync::atomic::Ordering::Relaxed);
        let row = row.map_err(|e| (line, format!("read error: {e}")))?;
        parse(&mut symbols, &row, &index).map_err(|reason| (line, reason))
    });
    Ok(iter)
}

fn file_size(path: &Path) -> Result<u64, SourceError> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|source| SourceError::Io { path: path.to_owned(), source })
}

fn parse(
    symbols: &mut Symbols,
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
    row_from_fields(symbols, ts, symbol, kind, [a, b, c, d, e, f, g])
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
        let chunk: Vec<super::RawEvent> = events.by_ref().take(ROW_GROUP).collect();
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
