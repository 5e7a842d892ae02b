//! Replay rows from a CSV file with a header naming the replay columns (any order).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::{COLUMNS, FileRow, ReadBytes, SourceError, Symbols, row_from_fields};

pub(super) struct CsvRows {
    reader: csv::Reader<BufReader<File>>,
    record: csv::ByteRecord,
    index: [usize; COLUMNS.len()],
    width: usize,
    done: bool,
    symbols: Symbols,
    read: ReadBytes,
}

pub(super) fn rows(path: &Path, read: ReadBytes) -> Result<CsvRows, SourceError> {
    let file = File::open(path).map_err(|source| SourceError::Io { path: path.to_owned(), source })?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let format = |reason: String| SourceError::Format { path: path.to_owned(), reason };
    let header = reader.byte_headers().map_err(|e| format(format!("unreadable header: {e}")))?.clone();
    let mut index = [0usize; COLUMNS.len()];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot =
            header.iter().position(|h| h == name.as_bytes()).ok_or_else(|| format(format!("missing column {name}")))?;
    }
    Ok(CsvRows {
        reader,
        record: csv::ByteRecord::new(),
        index,
        width: header.len(),
        done: false,
        symbols: Symbols::default(),
        read,
    })
}

impl CsvRows {
    fn parse(&mut self) -> FileRow {
        let line = self.record.position().map_or(0, csv::Position::line);
        if self.record.len() != self.width {
            return Err((line, format!("row has {} fields, expected {}", self.record.len(), self.width)));
        }
        let mut f = [""; COLUMNS.len()];
        for (slot, &i) in f.iter_mut().zip(&self.index) {
            *slot = std::str::from_utf8(&self.record[i]).map_err(|_| (line, "field is not UTF-8".to_owned()))?;
        }
        row_from_fields(&mut self.symbols, f[0], f[1], f[2], [f[3], f[4], f[5], f[6], f[7], f[8], f[9]])
            .map_err(|e| (line, e))
    }
}

impl Iterator for CsvRows {
    type Item = FileRow;

    fn next(&mut self) -> Option<FileRow> {
        if self.done {
            return None;
        }
        let read = self.reader.read_byte_record(&mut self.record);
        self.read.store(self.reader.position().byte(), std::sync::atomic::Ordering::Relaxed);
        match read {
            Ok(true) => Some(self.parse()),
            Ok(false) => None,
            Err(e) => {
                // An IO error mid-file: report it once, then stop reading this file.
                self.done = true;
                let line = e.position().map_or(0, csv::Position::line);
                Some(Err((line, format!("read error: {e}"))))
            }
        }
    }
}
