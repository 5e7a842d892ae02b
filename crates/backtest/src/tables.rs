//! `fills.parquet` and `intents.parquet`: the rows of `fills.csv` and `intents.csv` as typed
//! Parquet columns, written with the parquet crate's low-level writer (no Arrow).
//!
//! Money and quantities are `DECIMAL(38, 10)` (16-byte big-endian fixed-length arrays): exact,
//! rounded half-even to the report's 10 places, read as decimals by pandas, Polars or DuckDB
//! without the float rounding a double column would add. Event times are `int64` nanoseconds
//! since the Unix epoch, as in the replay input; the rest are UTF-8 strings. A value a row does
//! not have (a market order's limit price) is null.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rust_decimal::Decimal;

use crate::report::{DECIMALS, FillRow, IntentRow, order_type, side, status, time_in_force};

/// Rows per row group: bounds what a reader holds in memory per group.
const GROUP_ROWS: usize = 65_536;

/// `fills.parquet`'s schema.
pub const FILLS_SCHEMA: &str = "message fill {
  required int64 ts_event_ns;
  required binary intent_id (STRING);
  required binary exec_id (STRING);
  required binary symbol (STRING);
  required binary side (STRING);
  required fixed_len_byte_array(16) quantity (DECIMAL(38, 10));
  required fixed_len_byte_array(16) price (DECIMAL(38, 10));
  required fixed_len_byte_array(16) commission (DECIMAL(38, 10));
  required fixed_len_byte_array(16) arrival_mid (DECIMAL(38, 10));
  optional fixed_len_byte_array(16) venue_mid (DECIMAL(38, 10));
  optional fixed_len_byte_array(16) slippage_bps (DECIMAL(38, 10));
}";

/// `intents.parquet`'s schema.
pub const INTENTS_SCHEMA: &str = "message intent {
  required int64 ts_event_ns;
  required binary intent_id (STRING);
  required binary symbol (STRING);
  required binary side (STRING);
  required fixed_len_byte_array(16) quantity (DECIMAL(38, 10));
  required binary order_type (STRING);
  optional fixed_len_byte_array(16) limit_price (DECIMAL(38, 10));
  required binary time_in_force (STRING);
  required fixed_len_byte_array(16) arrival_mid (DECIMAL(38, 10));
  required fixed_len_byte_array(16) expected_cost_bps (DECIMAL(38, 10));
  optional binary status (STRING);
  optional binary reason (STRING);
  required fixed_len_byte_array(16) filled (DECIMAL(38, 10));
  optional fixed_len_byte_array(16) avg_px (DECIMAL(38, 10));
}";

/// Why a table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be made or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A decimal beyond `DECIMAL(38, 10)` (|value| ≥ 1.7 × 10^28; none on real input).
    #[error("{0} does not fit DECIMAL(38, 10)")]
    Decimal(Decimal),
}

/// One column of a row group, in schema order.
enum Column {
    Int(Vec<i64>),
    Text(Vec<Option<String>>),
    Dec(Vec<Option<Decimal>>),
}

fn text(s: impl ToString) -> Option<String> {
    Some(s.to_string())
}

/// The 16 big-endian bytes of `d` at scale [`DECIMALS`].
fn fixed(d: Decimal) -> Result<FixedLenByteArray, TableError> {
    let mut scaled = d.round_dp(DECIMALS);
    scaled.rescale(DECIMALS);
    if scaled.scale() != DECIMALS {
        return Err(TableError::Decimal(d));
    }
    Ok(FixedLenByteArray::from(scaled.mantissa().to_be_bytes().to_vec()))
}

fn levels<T>(values: &[Option<T>]) -> Vec<i16> {
    values.iter().map(|v| i16::from(v.is_some())).collect()
}

fn write<R>(path: &Path, schema: &str, rows: &[R], columns: impl Fn(&[R]) -> Vec<Column>) -> Result<(), TableError> {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema)?);
    let props = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let file = File::create(path)?;
    let mut writer = SerializedFileWriter::new(file, schema, props)?;
    // A required column takes no definition levels; an optional one takes one per row.
    let optional: Vec<bool> = writer.schema_descr().columns().iter().map(|c| c.max_def_level() > 0).collect();
    for chunk in rows.chunks(GROUP_ROWS) {
        let mut group = writer.next_row_group()?;
        for (column, &optional) in columns(chunk).into_iter().zip(&optional) {
            let Some(mut col) = group.next_column()? else { break };
            match column {
                Column::Int(v) => {
                    col.typed::<Int64Type>().write_batch(&v, None, None)?;
                }
                Column::Text(v) => {
                    let defs = levels(&v);
                    let present: Vec<ByteArray> =
                        v.into_iter().flatten().map(|s| ByteArray::from(s.into_bytes())).collect();
                    col.typed::<ByteArrayType>().write_batch(&present, optional.then_some(&defs[..]), None)?;
                }
                Column::Dec(v) => {
                    let defs = levels(&v);
                    let present = v.into_iter().flatten().map(fixed).collect::<Result<Vec<_>, _>>()?;
                    col.typed::<FixedLenByteArrayType>().write_batch(&present, optional.then_some(&defs[..]), None)?;
                }
            }
            col.close()?;
        }
        group.close()?;
    }
    writer.into_inner()?.sync_all()?;
    Ok(())
}

/// Writes `fills.parquet`.
pub fn write_fills(path: &Path, rows: &[FillRow]) -> Result<(), TableError> {
    write(path, FILLS_SCHEMA, rows, |rows| {
        vec![
            Column::Int(rows.iter().map(|r| i64::try_from(r.ts_event.0).unwrap_or(i64::MAX)).collect()),
            Column::Text(rows.iter().map(|r| text(r.intent_id)).collect()),
            Column::Text(rows.iter().map(|r| text(&r.exec_id)).collect()),
            Column::Text(rows.iter().map(|r| text(&r.symbol)).collect()),
            Column::Text(rows.iter().map(|r| text(side(r.side))).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.quantity)).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.price)).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.commission)).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.arrival_mid)).collect()),
            Column::Dec(rows.iter().map(|r| r.venue_mid).collect()),
            Column::Dec(rows.iter().map(|r| r.slippage_bps).collect()),
        ]
    })
}

/// Writes `intents.parquet`.
pub fn write_intents(path: &Path, rows: &[IntentRow]) -> Result<(), TableError> {
    write(path, INTENTS_SCHEMA, rows, |rows| {
        vec![
            Column::Int(rows.iter().map(|r| i64::try_from(r.ts_event.0).unwrap_or(i64::MAX)).collect()),
            Column::Text(rows.iter().map(|r| text(r.intent.intent_id)).collect()),
            Column::Text(rows.iter().map(|r| text(&r.intent.symbol)).collect()),
            Column::Text(rows.iter().map(|r| text(side(r.intent.side))).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.intent.quantity)).collect()),
            Column::Text(rows.iter().map(|r| text(order_type(r.intent.order_type))).collect()),
            Column::Dec(rows.iter().map(|r| r.intent.limit_price).collect()),
            Column::Text(rows.iter().map(|r| text(time_in_force(r.intent.time_in_force))).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.intent.arrival_mid)).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.intent.expected_cost_bps)).collect()),
            Column::Text(rows.iter().map(|r| r.status.map(status).map(str::to_owned)).collect()),
            Column::Text(rows.iter().map(|r| r.reason.map(str::to_owned)).collect()),
            Column::Dec(rows.iter().map(|r| Some(r.filled)).collect()),
            Column::Dec(rows.iter().map(|r| r.avg_px).collect()),
        ]
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use common::events::{ExecStatus, IntentId, OrderIntent, OrderType, TimeInForce};
    use common::types::{Side, Symbol, UnixNanos};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    use rust_decimal::dec;

    use super::*;

    /// A cell as the file holds it, in a form the rows' own values turn into as well.
    fn cell(f: &Field) -> Option<String> {
        match f {
            Field::Null => None,
            Field::Long(v) => Some(v.to_string()),
            Field::Str(s) => Some(s.clone()),
            Field::Decimal(d) => {
                let m = i128::from_be_bytes(d.data().try_into().unwrap());
                Some(Decimal::from_i128_with_scale(m, u32::try_from(d.scale()).unwrap()).normalize().to_string())
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn read(path: &Path) -> Vec<Vec<Option<String>>> {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().get_column_iter().map(|(_, f)| cell(f)).collect())
            .collect()
    }

    fn d(x: Decimal) -> Option<String> {
        Some(x.round_dp(DECIMALS).normalize().to_string())
    }

    #[test]
    fn fills_read_back_as_written() {
        let fill = |i: u64, venue_mid: Option<Decimal>| FillRow {
            ts_event: UnixNanos(1_723_161_600_000_000_000 + i),
            intent_id: IntentId(uuid::Uuid::from_u128(u128::from(i) + 7)),
            exec_id: format!("sim-{i},\"x\""),
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: if i.is_multiple_of(2) { Side::Buy } else { Side::Sell },
            quantity: dec!(0.00123),
            price: dec!(61602.01) + Decimal::from(i),
            commission: dec!(0.0757704723),
            // Average cost divides: 28 digits, rounded to the report's 10.
            arrival_mid: dec!(61603.057316444212345678901),
            venue_mid,
            slippage_bps: venue_mid.map(|_| dec!(-1.25)),
        };
        let rows = vec![fill(0, Some(dec!(61602.015))), fill(1, None), fill(2, Some(dec!(-3)))];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fills.parquet");
        write_fills(&path, &rows).unwrap();
        let want: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| {
                vec![
                    text(r.ts_event.0),
                    text(r.intent_id),
                    text(&r.exec_id),
                    text(&r.symbol),
                    text(side(r.side)),
                    d(r.quantity),
                    d(r.price),
                    d(r.commission),
                    d(r.arrival_mid),
                    r.venue_mid.and_then(d),
                    r.slippage_bps.and_then(d),
                ]
            })
            .collect();
        assert_eq!(read(&path), want);
        assert_eq!(want[0][8].as_deref(), Some("61603.0573164442"));
    }

    #[test]
    fn intents_read_back_as_written() {
        let intent = |i: u128, order_type: OrderType, limit_price: Option<Decimal>| OrderIntent {
            intent_id: IntentId(uuid::Uuid::from_u128(i)),
            symbol: Symbol::new("ETHUSDT").unwrap(),
            side: Side::Sell,
            quantity: dec!(0.5045),
            order_type,
            limit_price,
            time_in_force: TimeInForce::Ioc,
            arrival_mid: dec!(2677.605),
            expected_cost_bps: dec!(10.5),
            signals: Vec::new(),
        };
        let rows = vec![
            IntentRow {
                ts_event: UnixNanos(5),
                intent: intent(1, OrderType::Market, None),
                status: Some(ExecStatus::Filled),
                reason: None,
                filled: dec!(0.5045),
                avg_px: Some(dec!(2677.61)),
            },
            IntentRow {
                ts_event: UnixNanos(6),
                intent: intent(2, OrderType::Limit, Some(dec!(2600))),
                status: Some(ExecStatus::Rejected),
                reason: Some("price_collar"),
                filled: dec!(0),
                avg_px: None,
            },
            IntentRow {
                ts_event: UnixNanos(7),
                intent: intent(3, OrderType::Market, None),
                status: None,
                reason: None,
                filled: dec!(0),
                avg_px: None,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intents.parquet");
        write_intents(&path, &rows).unwrap();
        let want: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| {
                let i = &r.intent;
                vec![
                    text(r.ts_event.0),
                    text(i.intent_id),
                    text(&i.symbol),
                    text(side(i.side)),
                    d(i.quantity),
                    text(order_type(i.order_type)),
                    i.limit_price.and_then(d),
                    text(time_in_force(i.time_in_force)),
                    d(i.arrival_mid),
                    d(i.expected_cost_bps),
                    r.status.map(|s| status(s).to_owned()),
                    r.reason.map(str::to_owned),
                    d(r.filled),
                    r.avg_px.and_then(d),
                ]
            })
            .collect();
        assert_eq!(read(&path), want);
        assert_eq!(want[1][10].as_deref(), Some("rejected"));
    }

    #[test]
    fn an_empty_run_writes_a_readable_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fills.parquet");
        write_fills(&path, &[]).unwrap();
        assert!(read(&path).is_empty());
    }
}
