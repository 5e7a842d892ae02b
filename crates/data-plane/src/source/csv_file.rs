//! Replay rows from a CSV file with a header naming the replay columns (any order).
//!
//! Records are parsed by `csv-core` into buffers of fixed size, so no record, however long, makes
//! the reader hold more than [`MAX_RECORD_BYTES`] of it: a longer record is read to its end
//! without being kept and reported as a bad row naming its line and size. The `csv` crate's
//! reader grows its record buffer to fit any record (a 50 MB field cost 244 MB, a 50 MB line of
//! commas 1 GB: each field end is a `usize`) and has no setting to stop it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{COLUMNS, FileRow, ReadBytes, SourceError, row_from_fields};

/// The longest record (line) kept, in bytes: a valid replay row is under 200.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// The most fields a record may have.
pub const MAX_FIELDS: usize = 1024;
/// Bytes read from the file at once.
const READ_BUFFER: usize = 1 << 20;

pub(super) struct CsvRows {
    file: BufReader<File>,
    parser: csv_core::Reader,
    /// The record's field bytes, never grown.
    fields: Box<[u8]>,
    /// Where each field ends in `fields`, never grown.
    ends: Box<[usize]>,
    /// Where the rest of a record over the limits goes, to be counted and dropped.
    discard: Box<[u8]>,
    discard_ends: Box<[usize]>,
    index: [usize; COLUMNS.len()],
    width: usize,
    done: bool,
    /// Bytes consumed from the file so far, header included.
    consumed: u64,
    /// `consumed` as of the last row handed out, shared with the [`super::Replay`].
    read: ReadBytes,
}

/// One record as read: its fields, or why it is not kept.
enum Record {
    /// The record's fields fit: how many.
    Fields(usize),
    /// Longer than [`MAX_RECORD_BYTES`] or with more than [`MAX_FIELDS`] fields: its size.
    TooLong { bytes: u64, fields: u64 },
}

pub(super) fn rows(path: &Path, read: ReadBytes) -> Result<CsvRows, SourceError> {
    let file = File::open(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
    let mut rows = CsvRows {
        file: BufReader::with_capacity(READ_BUFFER, file),
        parser: csv_core::Reader::new(),
        fields: vec![0; MAX_RECORD_BYTES].into_boxed_slice(),
        ends: vec![0; MAX_FIELDS].into_boxed_slice(),
        discard: vec![0; 4096].into_boxed_slice(),
        discard_ends: vec![0; 256].into_boxed_slice(),
        index: [0; COLUMNS.len()],
        width: 0,
        done: false,
        consumed: 0,
        read,
    };
    let format = |reason: String| SourceError::Format { path: path.to_owned(), reason };
    let width = match rows.read_record() {
        Ok(Some((_, Record::Fields(n)))) => n,
        Ok(Some((_, Record::TooLong { bytes, fields }))) => {
            return Err(format(format!(
                "header of {bytes} bytes and {fields} fields is over the limit of {MAX_RECORD_BYTES} bytes and {MAX_FIELDS} fields"
            )));
        }
        Ok(None) => return Err(format("empty file: no header".into())),
        Err(e) => return Err(format(format!("unreadable header: {e}"))),
    };
    for (slot, name) in rows.index.iter_mut().zip(COLUMNS) {
        *slot = (0..width)
            .position(|i| field(&rows.fields, &rows.ends, i) == name.as_bytes())
            .ok_or_else(|| format(format!("missing column {name}")))?;
    }
    rows.width = width;
    Ok(rows)
}

/// Field `i` of the record just read into `fields` and `ends`.
fn field<'a>(fields: &'a [u8], ends: &[usize], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &fields[start..ends[i]]
}

impl CsvRows {
    /// Reads the next record and its 1-based starting line; `None` at the end of the file.
    fn read_record(&mut self) -> std::io::Result<Option<(u64, Record)>> {
        let line = self.parser.line();
        let (mut nfields, mut nends) = (0usize, 0usize);
        let mut too_long = false;
        let (mut bytes, mut fields) = (0u64, 0u64);
        loop {
            let input = self.file.fill_buf()?;
            // Once the record is too long, the rest of it is parsed into scratch space and dropped.
            let (out, out_ends) = if too_long {
                (&mut self.discard[..], &mut self.discard_ends[..])
            } else {
                (&mut self.fields[nfields..], &mut self.ends[nends..])
            };
            let (result, nin, nout, nend) = self.parser.read_record(input, out, out_ends);
            self.file.consume(nin);
            self.consumed += nin as u64;
            bytes += nin as u64;
            fields += nend as u64;
            if !too_long {
                nfields += nout;
                nends += nend;
            }
            match result {
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull | csv_core::ReadRecordResult::OutputEndsFull => too_long = true,
                csv_core::ReadRecordResult::Record if too_long => {
                    return Ok(Some((line, Record::TooLong { bytes, fields })));
                }
                csv_core::ReadRecordResult::Record => return Ok(Some((line, Record::Fields(nends)))),
                csv_core::ReadRecordResult::End => return Ok(None),
            }
        }
    }

    fn parse(&mut self, line: u64, width: usize) -> FileRow {
        if width != self.width {
            return Err((line, format!("row has {width} fields, expected {}", self.width)));
        }
        let mut f = [""; COLUMNS.len()];
        // One check of the whole record is cheaper than one per field; only when it fails is each
        // field checked, so that a column the replay does not read may hold anything.
        let end = width.checked_sub(1).map_or(0, |last| self.ends[last]);
        let record = std::str::from_utf8(&self.fields[..end]).ok();
        for (slot, &i) in f.iter_mut().zip(&self.index) {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let text = match record {
                Some(record) => record.get(start..self.ends[i]),
                None => None,
            };
            *slot = match text {
                Some(text) => text,
                None => std::str::from_utf8(field(&self.fields, &self.ends, i))
                    .map_err(|_| (line, "field is not UTF-8".to_owned()))?,
            };
        }
        row_from_fields(f[0], f[1], f[2], [f[3], f[4], f[5], f[6], f[7], f[8], f[9]]).map_err(|e| (line, e))
    }
}

impl Iterator for CsvRows {
    type Item = FileRow;

    fn next(&mut self) -> Option<FileRow> {
        if self.done {
            return None;
        }
        let record = self.read_record();
        self.read.store(self.consumed, Ordering::Relaxed);
        match record {
            Ok(Some((line, Record::Fields(width)))) => Some(self.parse(line, width)),
            Ok(Some((line, Record::TooLong { bytes, fields }))) => Some(Err((
                line,
                format!(
                    "row of {bytes} bytes and {fields} fields skipped: over the limit of {MAX_RECORD_BYTES} bytes and {MAX_FIELDS} fields"
                ),
            ))),
            Ok(None) => None,
            Err(e) => {
                // An IO error mid-file: report it once, then stop reading this file.
                self.done = true;
                Some(Err((self.parser.line(), format!("read error: {e}"))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use std::io::Write;

    const HEADER: &str = "ts_event_ns,symbol,kind,bid_px,bid_sz,ask_px,ask_sz,price,size,aggressor\n";

    /// A 50 MB field and a 50 MB line of commas are each one bad row naming its line and size;
    /// the rows around them are read, and the reader's buffers never grow past their fixed size
    /// (the peak memory is printed by `cargo run -p data-plane --example hostile_csv`).
    #[test]
    fn a_record_over_the_limit_is_one_bad_row_read_in_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let mut f = std::io::BufWriter::new(File::create(&path).unwrap());
        let good = "1000,AAA,quote,1,1,2,1,,,\n";
        write!(f, "{HEADER}{good}1000,AAA,quote,").unwrap();
        let chunk = vec![b'9'; 1 << 20];
        for _ in 0..50 {
            f.write_all(&chunk).unwrap();
        }
        write!(f, ",1,2,1,,,\n{good}").unwrap();
        let commas = vec![b','; 1 << 20];
        for _ in 0..50 {
            f.write_all(&commas).unwrap();
        }
        write!(f, "\n{good}").unwrap();
        // A quoted field may hold line breaks; the limit is on the record, not the line.
        write!(f, "1000,AAA,\"").unwrap();
        for _ in 0..10_000 {
            f.write_all(&[b'x'; 99]).unwrap();
            f.write_all(b"\n").unwrap();
        }
        write!(f, "\",1,1,2,1,,,\n{good}").unwrap();
        drop(f);

        let mut rows = rows(&path, ReadBytes::default()).unwrap();
        let sizes = (rows.fields.len(), rows.ends.len());
        let items: Vec<FileRow> = rows.by_ref().collect();
        assert_eq!((rows.fields.len(), rows.ends.len()), sizes, "the buffers never grow");
        assert_eq!(sizes, (MAX_RECORD_BYTES, MAX_FIELDS));
        let lines: Vec<Result<u64, u64>> =
            items.iter().map(|i| i.as_ref().map(|_| 0).map_err(|(line, _)| *line)).collect();
        assert_eq!(lines, vec![Ok(0), Err(3), Ok(0), Err(5), Ok(0), Err(7), Ok(0)]);
        let reasons: Vec<&str> = items.iter().filter_map(|i| i.as_ref().err()).map(|(_, r)| r.as_str()).collect();
        assert!(reasons[0].starts_with("row of 52428825 bytes and 10 fields skipped"), "{}", reasons[0]);
        assert!(reasons[1].starts_with("row of 52428801 bytes and 52428801 fields skipped"), "{}", reasons[1]);
        assert!(reasons[2].starts_with("row of 1000023 bytes and 10 fields skipped"), "{}", reasons[2]);
        assert!(reasons.iter().all(|r| r.len() < 200));
    }

    /// Only the columns the replay reads must be UTF-8, each on its own: a character split over
    /// two fields is invalid in both, though the record's bytes together are valid.
    #[test]
    fn only_the_fields_read_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.csv");
        let mut bytes = format!("{},note\n", HEADER.trim_end()).into_bytes();
        bytes.extend_from_slice(b"1000,AAA,quote,1,1,2,1,,,,\xff\n"); // not UTF-8, in a column not read
        bytes.extend_from_slice(b"1001,AA\xc3,\xa9quote,1,1,2,1,,,,x\n"); // \xc3\xa9 is one character, split
        bytes.extend_from_slice(b"1002,AAA,quote,1,1,2,1,,,,\xc3\xa9\n");
        std::fs::write(&path, bytes).unwrap();
        let items: Vec<FileRow> = rows(&path, ReadBytes::default()).unwrap().collect();
        assert!(items[0].is_ok(), "{:?}", items[0]);
        assert_eq!(items[1].as_ref().err(), Some(&(3, "field is not UTF-8".to_owned())));
        assert!(items[2].is_ok(), "{:?}", items[2]);
        assert_eq!(items.len(), 3);
    }

    #[test]
    fn a_header_over_the_limit_or_missing_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.csv");
        std::fs::write(&path, format!("{}\n", ",".repeat(MAX_FIELDS))).unwrap();
        let err = rows(&path, ReadBytes::default()).err().unwrap().to_string();
        assert!(err.contains("header of 1025 bytes and 1025 fields is over the limit"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert!(rows(&path, ReadBytes::default()).err().unwrap().to_string().contains("no header"));
        // A byte-order mark, CRLF line ends and blank lines are read as the csv crate read them.
        std::fs::write(&path, format!("\u{feff}{}\r\n\r\n1000,AAA,quote,1,1,2,1,,,\r\n", HEADER.trim_end())).unwrap();
        let items: Vec<FileRow> = rows(&path, ReadBytes::default()).unwrap().collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_ok(), "{:?}", items[0]);
    }
}
