//! Replay rows from a Parquet file with the replay columns: `ts_event_ns` int64, prices and sizes
//! as decimal strings or float64, the rest strings.

use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

use super::{COLUMNS, FileRow, Num, SourceError, row_from_fields};

pub(super) fn rows(path: &Path) -> Result<impl Iterator<Item = FileRow> + Send + use<>, SourceError> {
    let file = File::open(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
    let format = |reason: String| SourceError::Format { path: path.to_owned(), reason };
    let reader = SerializedFileReader::new(file).map_err(|e| format(format!("not a Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let names: Vec<String> = schema.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut index = [0usize; COLUMNS.len()];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = names.iter().position(|n| n == name).ok_or_else(|| format(format!("missing column {name}")))?;
    }
    let iter = reader.into_iter().enumerate().map(move |(i, row)| {
        let line = i as u64 + 1;
        let row = row.map_err(|e| (line, format!("read error: {e}")))?;
        parse(&row, &index).map_err(|reason| (line, reason))
    });
    Ok(iter)
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
