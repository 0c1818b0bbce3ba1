//! Reading a run's parts for a merge: gzipped CSV off the blob store, parsed on a thread of its
//! own into batches of typed fields bound straight from the CSV buffer.

use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::ports::{BlobStore, ColumnSpec, TableSchema, WarehouseError};

use super::service;

/// One CSV field, typed for SQLite. Text stays in its record's buffer and is bound from there,
/// so a record costs no allocation per field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Field {
    Null,
    Integer(i64),
    Real(f64),
    Text,
}

/// One CSV field as the column's SQLite value. Bulk CSV cannot tell null from empty: both are NULL.
/// NUL characters are not part of the value (see [`without_nul`]): NULs alone are NULL.
pub(super) fn to_field(column: &ColumnSpec, raw: &str) -> Result<Field, String> {
    if raw.bytes().all(|b| b == 0) {
        return Ok(Field::Null);
    }
    match column.sf_type.as_str() {
        "boolean" => match raw {
            "true" => Ok(Field::Integer(1)),
            "false" => Ok(Field::Integer(0)),
            _ => Err(format!("{}: {raw:?} is not a boolean", column.name)),
        },
        // Salesforce may write large numbers in scientific notation (`1.2345678E7`).
        "int" | "long" => raw
            .parse()
            .ok()
            .or_else(|| {
                let value: f64 = raw.parse().ok()?;
                (value.fract() == 0.0 && value.abs() < 9.0e15).then_some(value as i64)
            })
            .map(Field::Integer)
            .ok_or_else(|| format!("{}: {raw:?} is not an integer", column.name)),
        "double" | "currency" | "percent" => raw
            .parse()
            .map(Field::Real)
            .map_err(|_| format!("{}: {raw:?} is not a number", column.name)),
        _ => Ok(Field::Text),
    }
}

/// Opens a part of the run for reading as CSV, after checking its header is the run's columns
/// in order (names in any case, as Salesforce matches them): a file with other columns is not
/// the run's, even if its names could be mapped.
pub(super) fn open_part(
    blobs: &Arc<dyn BlobStore>,
    runtime: &tokio::runtime::Handle,
    schema: &TableSchema,
    file: &str,
) -> Result<csv::Reader<MultiGzDecoder<impl Read>>, WarehouseError> {
    let bad = |detail: String| WarehouseError::BadFile {
        object: schema.object.to_string(),
        file: file.to_string(),
        detail,
    };
    let stream = runtime.block_on(blobs.get(file))?;
    let reader = SyncIoBridge::new_with_handle(StreamReader::new(stream), runtime.clone());
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(MultiGzDecoder::new(reader));
    let header = csv.headers().map_err(|e| bad(e.to_string()))?.clone();
    let names: Vec<&str> = header.iter().collect();
    if !schema.header_matches(&names) {
        let wanted: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(bad(format!(
            "its header is {names:?}, not the run's columns {wanted:?}"
        )));
    }
    Ok(csv)
}

/// One record of a part, typed for SQLite. Records are handed back to the reader once written
/// and read into again, so their buffers are allocated once per merge, not once per row.
#[derive(Default)]
pub(super) struct ParsedRecord {
    pub(super) record: csv::StringRecord,
    pub(super) fields: Vec<Field>,
    /// A deletion to remove (with `DeletedRows::Remove`) rather than to upsert.
    pub(super) removal: bool,
}

impl ParsedRecord {
    pub(super) fn text(&self, index: usize) -> &str {
        self.record.get(index).unwrap_or_default()
    }

    /// Binds the record's fields as the statement's first parameters.
    pub(super) fn bind(&self, statement: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
        for (i, field) in self.fields.iter().enumerate() {
            match *field {
                Field::Null => statement.raw_bind_parameter(i + 1, rusqlite::types::Null)?,
                Field::Integer(v) => statement.raw_bind_parameter(i + 1, v)?,
                Field::Real(v) => statement.raw_bind_parameter(i + 1, v)?,
                Field::Text => match without_nul(self.text(i)) {
                    std::borrow::Cow::Borrowed(text) => {
                        statement.raw_bind_parameter(i + 1, text)?
                    }
                    std::borrow::Cow::Owned(text) => statement.raw_bind_parameter(i + 1, text)?,
                },
            }
        }
        Ok(())
    }
}

/// Text without its NUL characters (U+0000): real orgs have them in pasted text, other clients
/// strip them, and Snowflake's merge removes them too, so both warehouses hold the same text.
/// Borrowed (no copy) when there is none, as almost always.
pub(super) fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// What a part held besides its records.
pub(super) struct PartRead {
    pub(super) rows: u64,
    pub(super) newest: Option<DateTime<Utc>>,
}

/// Reads one part's records, checks and types them, and hands them over in batches.
pub(super) struct PartReader {
    pub(super) columns: Vec<ColumnSpec>,
    pub(super) id_index: usize,
    pub(super) cursor_index: Option<usize>,
    pub(super) cursor: Option<String>,
    pub(super) deleted_index: Option<usize>,
    pub(super) object: String,
    pub(super) file: String,
}

impl PartReader {
    const BATCH: usize = 512;

    /// The reader of one of `schema`'s parts; `remove_deleted`: deleted rows become removals.
    pub(super) fn new(
        schema: &TableSchema,
        file: &str,
        remove_deleted: bool,
    ) -> Result<Self, WarehouseError> {
        let columns = schema.columns.clone();
        let position = |name: &str| columns.iter().position(|c| c.name == name);
        let cursor = schema.cursor().map(str::to_string);
        let reader = Self {
            id_index: 0,
            cursor_index: cursor.as_deref().and_then(position),
            deleted_index: position("IsDeleted").filter(|_| remove_deleted),
            cursor,
            object: schema.object.to_string(),
            file: file.to_string(),
            columns: Vec::new(),
        };
        let id_index = position("Id").ok_or_else(|| reader.bad("no Id column".into()))?;
        Ok(Self {
            id_index,
            columns,
            ..reader
        })
    }

    /// Reads the part on a thread of its own and hands each record to `write` on this one:
    /// decompressing, parsing and typing overlap SQLite's writes, so on two cores a merge goes
    /// about as fast as SQLite alone. Written batches go back to the reader to be read into
    /// again. Returns what was read, and the rows `write` changed.
    pub(super) fn feed<R: Read + Send>(
        self,
        csv: csv::Reader<R>,
        mut write: impl FnMut(&ParsedRecord) -> rusqlite::Result<usize>,
    ) -> Result<(PartRead, u64), WarehouseError> {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<ParsedRecord>>(4);
        let (give_back, recycled) = std::sync::mpsc::channel::<Vec<ParsedRecord>>();
        let (read, written) = std::thread::scope(|scope| {
            let reading = scope.spawn(move || self.read(csv, batches, recycled));
            let mut written: Result<u64, WarehouseError> = Ok(0);
            'batches: for records in received.iter() {
                for record in &records {
                    match write(record) {
                        Ok(n) => written = written.map(|w| w + n as u64),
                        Err(error) => {
                            written = Err(service(error));
                            // Dropping the receiver stops the reader at its next batch.
                            break 'batches;
                        }
                    }
                }
                // The reader may have finished; then the batch is simply dropped.
                let _ = give_back.send(records);
            }
            drop(received);
            let read = reading
                .join()
                .unwrap_or_else(|_| Err(service("the part's reader panicked")));
            (read, written)
        });
        Ok((read?, written?))
    }

    pub(super) fn bad(&self, detail: String) -> WarehouseError {
        WarehouseError::BadFile {
            object: self.object.clone(),
            file: self.file.clone(),
            detail,
        }
    }

    /// Checks and types the record just read into `slot`, noting its cursor in `read`.
    pub(super) fn check(
        &self,
        slot: &mut ParsedRecord,
        read: &mut PartRead,
    ) -> Result<(), WarehouseError> {
        let record = &slot.record;
        let number = read.rows + 1;
        if record.len() != self.columns.len() {
            return Err(self.bad(format!(
                "record {number} has {} fields, the header {}",
                record.len(),
                self.columns.len()
            )));
        }
        if record.get(self.id_index).unwrap_or_default().is_empty() {
            return Err(self.bad(format!("record {number} has no Id")));
        }
        slot.fields.clear();
        for (column, raw) in self.columns.iter().zip(record.iter()) {
            slot.fields
                .push(to_field(column, raw).map_err(|e| self.bad(e))?);
        }
        let stamp = self.cursor_index.and_then(|i| record.get(i));
        if let Some(raw) = stamp.filter(|r| !r.is_empty()) {
            let at = DateTime::parse_from_rfc3339(raw)
                .map_err(|e| {
                    self.bad(format!(
                        "{} {raw:?}: {e}",
                        self.cursor.as_deref().unwrap_or_default()
                    ))
                })?
                .with_timezone(&Utc);
            read.newest = Some(read.newest.map_or(at, |m| m.max(at)));
        }
        slot.removal = self
            .deleted_index
            .is_some_and(|i| record.get(i) == Some("true"));
        read.rows = number;
        Ok(())
    }

    pub(super) fn read<R: Read>(
        &self,
        mut csv: csv::Reader<R>,
        batches: std::sync::mpsc::SyncSender<Vec<ParsedRecord>>,
        recycled: std::sync::mpsc::Receiver<Vec<ParsedRecord>>,
    ) -> Result<PartRead, WarehouseError> {
        let mut read = PartRead {
            rows: 0,
            newest: None,
        };
        let next_batch = || {
            recycled
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(Self::BATCH))
        };
        let mut batch = next_batch();
        let mut filled = 0;
        loop {
            if filled == batch.len() {
                batch.push(ParsedRecord::default());
            }
            let slot = &mut batch[filled];
            match csv.read_record(&mut slot.record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(self.bad(e.to_string())),
            }
            self.check(slot, &mut read)?;
            filled += 1;
            if filled == Self::BATCH {
                let full = std::mem::replace(&mut batch, next_batch());
                filled = 0;
                if batches.send(full).is_err() {
                    // The writer stopped on an error of its own, which it reports.
                    return Ok(read);
                }
            }
        }
        batch.truncate(filled);
        if !batch.is_empty() && batches.send(batch).is_err() {
            return Ok(read);
        }
        // Drain what is left of the decoder so a truncated gzip stream is noticed.
        let mut rest = Vec::new();
        csv.into_inner()
            .read_to_end(&mut rest)
            .map_err(|e| self.bad(e.to_string()))?;
        Ok(read)
    }
}
