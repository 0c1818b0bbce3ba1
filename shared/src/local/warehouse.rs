//! The embedded SQLite warehouse: the same merge semantics as Snowflake on one machine. The merge is
//! an upsert that only lets a row change when its SystemModstamp is not older than the stored one
//! (and something actually differs), so duplicates, retries and late files change nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use rusqlite::{Connection, OptionalExtension, types::Value};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::contracts::{ObjectName, rfc3339};
use crate::ports::{
    BlobStore, ColumnSpec, DeletedRows, MergeBatch, MergeReport, RowLineage, TableSchema,
    Warehouse, WarehouseError,
};

/// Lineage columns added to every table.
pub const LINEAGE_COLUMNS: [&str; 4] = [
    "_SFPIPE_RUN_ID",
    "_SFPIPE_EXTRACTED_AT",
    "_SFPIPE_FILE",
    "_SFPIPE_LOADED_AT",
];
const STATE_TABLE: &str = "_SFPIPE_STATE";

pub struct SqliteWarehouse {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
    blobs: Arc<dyn BlobStore>,
    deleted: DeletedRows,
}

impl std::fmt::Debug for SqliteWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWarehouse")
            .field("path", &self.path)
            .finish()
    }
}

fn service(e: impl std::fmt::Display) -> WarehouseError {
    WarehouseError::Service(e.to_string())
}

/// `"name"`, for names already checked to be Salesforce API names.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sqlite_type(column: &ColumnSpec) -> &'static str {
    match column.sf_type.as_str() {
        "int" | "long" | "boolean" => "INTEGER",
        "double" | "currency" | "percent" => "REAL",
        _ => "TEXT",
    }
}

impl SqliteWarehouse {
    /// Opens (creating if needed) the database at `path`; files to merge are read from `blobs`.
    pub fn open(path: impl AsRef<Path>, blobs: Arc<dyn BlobStore>) -> Result<Self, WarehouseError> {
        let path = path.as_ref().to_path_buf();
        let connection = Connection::open(&path).map_err(service)?;
        // Large pages (for a new file; set before its first table) and a rollback journal rather
        // than WAL: a merge writes every page once instead of twice (WAL, then its checkpoint),
        // about 30% faster. The cost: other connections wait while a merge writes. A file an
        // older sfpipe left in WAL mode is turned back when no one else has it open.
        let _ = connection.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()));
        connection
            .execute_batch(&format!(
                "PRAGMA page_size = 65536;
                 PRAGMA synchronous = NORMAL;
                 CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
                     object TEXT PRIMARY KEY,
                     watermark TEXT NOT NULL,
                     run_id TEXT NOT NULL,
                     updated_at TEXT NOT NULL
                 );"
            ))
            .map_err(service)?;
        Ok(Self {
            path,
            connection: Arc::new(Mutex::new(connection)),
            blobs,
            deleted: DeletedRows::Flag,
        })
    }

    pub fn with_deleted_rows(mut self, deleted: DeletedRows) -> Self {
        self.deleted = deleted;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for reading results (tests, the demo's summary).
    pub fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn existing_columns(connection: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = connection.prepare(&format!("PRAGMA table_info({})", quote(table)))?;
    let names = statement
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// One CSV field, typed for SQLite. Text stays in its record's buffer and is bound from there,
/// so a record costs no allocation per field.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Null,
    Integer(i64),
    Real(f64),
    Text,
}

/// One CSV field as the column's SQLite value. Bulk CSV cannot tell null from empty: both are NULL.
fn to_field(column: &ColumnSpec, raw: &str) -> Result<Field, String> {
    if raw.is_empty() {
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

struct FileMerge<'a> {
    table: &'a str,
    columns: Vec<&'a ColumnSpec>,
    /// The run's cursor column, when this file has it.
    cursor: Option<&'a str>,
}

impl FileMerge<'_> {
    /// Removes a deleted row when the deletion is not older than the stored version.
    fn remove_sql(&self) -> String {
        let table = quote(self.table);
        if let Some(cursor) = self.cursor {
            let cursor = quote(cursor);
            format!(
                "DELETE FROM {table} WHERE \"Id\" = ?1 AND ({cursor} IS NULL OR {cursor} <= ?2)"
            )
        } else {
            format!("DELETE FROM {table} WHERE \"Id\" = ?1")
        }
    }

    /// The formula refresh's statement: the file's columns into the stored row of the same
    /// version, when something differs and the stored row was not extracted later. Parameters
    /// as for [`Self::upsert_sql`]: the file's columns, then the lineage columns.
    fn update_sql(&self) -> String {
        let table = quote(self.table);
        let lineage = LINEAGE_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, name)| (quote(name), self.columns.len() + i + 1));
        let mut sets = Vec::new();
        let mut differs = Vec::new();
        let mut conditions = Vec::new();
        for (i, column) in self.columns.iter().enumerate() {
            let (n, p) = (quote(&column.name), i + 1);
            if column.name == "Id" || Some(column.name.as_str()) == self.cursor {
                conditions.push(format!("{n} = ?{p}"));
            } else {
                sets.push(format!("{n} = ?{p}"));
                differs.push(format!("{n} IS NOT ?{p}"));
            }
        }
        let extracted = quote(LINEAGE_COLUMNS[1]);
        for (n, p) in lineage {
            if n == extracted {
                conditions.push(format!("({n} IS NULL OR {n} <= ?{p})"));
            }
            sets.push(format!("{n} = ?{p}"));
        }
        if differs.is_empty() {
            differs.push("0".into());
        }
        format!(
            "UPDATE {table} SET {} WHERE {} AND ({})",
            sets.join(", "),
            conditions.join(" AND "),
            differs.join(" OR ")
        )
    }

    fn upsert_sql(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| quote(&c.name))
            .chain(LINEAGE_COLUMNS.iter().map(|c| quote(c)))
            .collect();
        let placeholders = vec!["?"; names.len()].join(", ");
        let table = quote(self.table);
        let updates: Vec<String> = names
            .iter()
            .filter(|n| n.as_str() != "\"Id\"")
            .map(|n| format!("{n} = excluded.{n}"))
            .collect();
        let differs: Vec<String> = self
            .columns
            .iter()
            .filter(|c| c.name != "Id")
            .map(|c| {
                let n = quote(&c.name);
                format!("excluded.{n} IS NOT {table}.{n}")
            })
            .collect();
        let differs = if differs.is_empty() {
            "0".to_string()
        } else {
            differs.join(" OR ")
        };
        let condition = if let Some(cursor) = self.cursor {
            let cursor = quote(cursor);
            format!(
                "{table}.{cursor} IS NULL OR excluded.{cursor} > {table}.{cursor} \
                 OR (excluded.{cursor} = {table}.{cursor} AND ({differs}))"
            )
        } else {
            differs
        };
        format!(
            "INSERT INTO {table} ({}) VALUES ({placeholders}) ON CONFLICT(\"Id\") DO UPDATE SET {} WHERE {condition}",
            names.join(", "),
            updates.join(", ")
        )
    }
}

/// Opens a part of the run for reading as CSV, after checking its header is the run's columns
/// in order (names in any case, as Salesforce matches them): a file with other columns is not
/// the run's, even if its names could be mapped.
fn open_part(
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

/// A reconciliation ([`MergeBatch::reconcile_until`]): the live Ids into a temporary table (on
/// disk, so 10 million cost no more memory than ten), then one statement flags or removes the
/// stored rows missing from it, in one transaction.
fn reconcile_blocking(
    connection: &mut Connection,
    blobs: &Arc<dyn BlobStore>,
    runtime: &tokio::runtime::Handle,
    batch: &MergeBatch,
    until: DateTime<Utc>,
    deleted: DeletedRows,
) -> Result<MergeReport, WarehouseError> {
    let table = batch.schema.object.as_str();
    let stored = existing_columns(connection, table).map_err(service)?;
    let has = |name: &str| stored.iter().any(|c| c.eq_ignore_ascii_case(name));
    let cursor = crate::ports::CURSOR_FIELDS.iter().copied().find(|c| has(c));
    let transaction = connection.transaction().map_err(service)?;
    transaction
        .execute_batch(
            "DROP TABLE IF EXISTS temp._sfpipe_live_ids;
             CREATE TEMP TABLE _sfpipe_live_ids (\"Id\" TEXT PRIMARY KEY);",
        )
        .map_err(service)?;
    let mut report = MergeReport::default();
    {
        let mut insert = transaction
            .prepare("INSERT OR IGNORE INTO temp._sfpipe_live_ids (\"Id\") VALUES (?1)")
            .map_err(service)?;
        for file in &batch.files {
            let csv = open_part(blobs, runtime, &batch.schema, file)?;
            let reader = PartReader::new(&batch.schema, file, false)?;
            let id = reader.id_index;
            let (read, _) = reader.feed(csv, |record| insert.execute([record.text(id)]))?;
            report.rows_read += read.rows;
        }
    }
    if has("IsDeleted") {
        let quoted = quote(table);
        let mut conditions = vec![format!(
            "NOT EXISTS (SELECT 1 FROM temp._sfpipe_live_ids AS l WHERE l.\"Id\" = {quoted}.\"Id\")"
        )];
        if let Some(cursor) = cursor {
            let cursor = quote(cursor);
            conditions.push(format!("({cursor} IS NULL OR {cursor} <= ?1)"));
        } else {
            conditions.push("?1 IS NOT NULL".into());
        }
        let statement = match deleted {
            DeletedRows::Remove => {
                format!("DELETE FROM {quoted} WHERE {}", conditions.join(" AND "))
            }
            DeletedRows::Flag => {
                conditions.push("\"IsDeleted\" IS NOT 1".into());
                format!(
                    "UPDATE {quoted} SET \"IsDeleted\" = 1, {} = ?2, {} = ?3, {} = NULL, {} = ?4 WHERE {}",
                    quote(LINEAGE_COLUMNS[0]),
                    quote(LINEAGE_COLUMNS[1]),
                    quote(LINEAGE_COLUMNS[2]),
                    quote(LINEAGE_COLUMNS[3]),
                    conditions.join(" AND ")
                )
            }
        };
        let until = rfc3339(until);
        let changed = match deleted {
            DeletedRows::Remove => transaction.execute(&statement, [until]),
            DeletedRows::Flag => transaction.execute(
                &statement,
                rusqlite::params![
                    until,
                    batch.run_id.as_str(),
                    rfc3339(batch.extracted_at),
                    rfc3339(Utc::now())
                ],
            ),
        };
        report.rows_changed = changed.map_err(service)? as u64;
    }
    transaction
        .execute_batch("DROP TABLE temp._sfpipe_live_ids")
        .map_err(service)?;
    transaction.commit().map_err(service)?;
    Ok(report)
}

/// One record of a part, typed for SQLite. Records are handed back to the reader once written
/// and read into again, so their buffers are allocated once per merge, not once per row.
#[derive(Default)]
struct ParsedRecord {
    record: csv::StringRecord,
    fields: Vec<Field>,
    /// A deletion to remove (with `DeletedRows::Remove`) rather than to upsert.
    removal: bool,
}

impl ParsedRecord {
    fn text(&self, index: usize) -> &str {
        self.record.get(index).unwrap_or_default()
    }

    /// Binds the record's fields as the statement's first parameters.
    fn bind(&self, statement: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
        for (i, field) in self.fields.iter().enumerate() {
            match *field {
                Field::Null => statement.raw_bind_parameter(i + 1, rusqlite::types::Null)?,
                Field::Integer(v) => statement.raw_bind_parameter(i + 1, v)?,
                Field::Real(v) => statement.raw_bind_parameter(i + 1, v)?,
                Field::Text => statement.raw_bind_parameter(i + 1, self.text(i))?,
            }
        }
        Ok(())
    }
}

/// What a part held besides its records.
struct PartRead {
    rows: u64,
    newest: Option<DateTime<Utc>>,
}

/// Reads one part's records, checks and types them, and hands them over in batches.
struct PartReader {
    columns: Vec<ColumnSpec>,
    id_index: usize,
    cursor_index: Option<usize>,
    cursor: Option<String>,
    deleted_index: Option<usize>,
    object: String,
    file: String,
}

impl PartReader {
    const BATCH: usize = 512;

    /// The reader of one of `schema`'s parts; `remove_deleted`: deleted rows become removals.
    fn new(schema: &TableSchema, file: &str, remove_deleted: bool) -> Result<Self, WarehouseError> {
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
    fn feed<R: Read + Send>(
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

    fn bad(&self, detail: String) -> WarehouseError {
        WarehouseError::BadFile {
            object: self.object.clone(),
            file: self.file.clone(),
            detail,
        }
    }

    /// Checks and types the record just read into `slot`, noting its cursor in `read`.
    fn check(&self, slot: &mut ParsedRecord, read: &mut PartRead) -> Result<(), WarehouseError> {
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

    fn read<R: Read>(
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

fn merge_blocking(
    connection: &mut Connection,
    blobs: &Arc<dyn BlobStore>,
    runtime: &tokio::runtime::Handle,
    batch: &MergeBatch,
    deleted: DeletedRows,
) -> Result<MergeReport, WarehouseError> {
    if let Some(until) = batch.reconcile_until {
        return reconcile_blocking(connection, blobs, runtime, batch, until, deleted);
    }
    let table = batch.schema.object.as_str();
    let loaded_at = rfc3339(Utc::now());
    let extracted_at = rfc3339(batch.extracted_at);
    let transaction = connection.transaction().map_err(service)?;
    let mut report = MergeReport::default();
    for file in &batch.files {
        let csv = open_part(blobs, runtime, &batch.schema, file)?;
        let reader = PartReader::new(
            &batch.schema,
            file,
            deleted == DeletedRows::Remove && !batch.update_only,
        )?;
        let merge = FileMerge {
            table,
            columns: batch.schema.columns.iter().collect(),
            cursor: reader.cursor_index.and(reader.cursor.as_deref()),
        };
        let write = if batch.update_only {
            merge.update_sql()
        } else {
            merge.upsert_sql()
        };
        let mut statement = transaction.prepare(&write).map_err(service)?;
        let mut remove = transaction.prepare(&merge.remove_sql()).map_err(service)?;
        let lineage = [
            Value::Text(batch.run_id.to_string()),
            Value::Text(extracted_at.clone()),
            Value::Text(file.clone()),
            Value::Text(loaded_at.clone()),
        ];
        // The lineage parameters follow the file's columns and are the same for every row.
        for (i, value) in lineage.iter().enumerate() {
            statement
                .raw_bind_parameter(batch.schema.columns.len() + i + 1, value)
                .map_err(service)?;
        }
        let (id, cursor) = (reader.id_index, reader.cursor_index);
        let (read, changed) = reader.feed(csv, |record| match (record.removal, cursor) {
            (true, Some(cursor)) => {
                remove.execute(rusqlite::params![record.text(id), record.text(cursor)])
            }
            (true, None) => remove.execute([record.text(id)]),
            (false, _) => {
                record.bind(&mut statement)?;
                statement.raw_execute()
            }
        })?;
        report.rows_changed += changed;
        report.rows_read += read.rows;
        report.max_modstamp = match (report.max_modstamp, read.newest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(watermark) = report.max_modstamp.filter(|_| !batch.update_only) {
        transaction
            .execute(
                &format!(
                    "INSERT INTO {STATE_TABLE} (object, watermark, run_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(object) DO UPDATE SET
                         watermark = excluded.watermark, run_id = excluded.run_id, updated_at = excluded.updated_at
                     WHERE excluded.watermark > {STATE_TABLE}.watermark"
                ),
                rusqlite::params![table, rfc3339(watermark), batch.run_id.as_str(), loaded_at],
            )
            .map_err(service)?;
    }
    transaction.commit().map_err(service)?;
    Ok(report)
}

#[async_trait]
impl Warehouse for SqliteWarehouse {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<(), WarehouseError> {
        schema.validate()?;
        let connection = self.connection.clone();
        let schema = schema.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            let table = schema.object.as_str();
            let mut definitions: Vec<String> = schema
                .columns
                .iter()
                .map(|c| {
                    let key = if c.name == "Id" { " PRIMARY KEY" } else { "" };
                    format!("{} {}{key}", quote(&c.name), sqlite_type(c))
                })
                .collect();
            definitions.extend(LINEAGE_COLUMNS.iter().map(|c| format!("{} TEXT", quote(c))));
            connection
                .execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS {} ({})",
                    quote(table),
                    definitions.join(", ")
                ))
                .map_err(service)?;
            let existing = existing_columns(&connection, table).map_err(service)?;
            for column in &schema.columns {
                if !existing
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&column.name))
                {
                    connection
                        .execute_batch(&format!(
                            "ALTER TABLE {} ADD COLUMN {} {}",
                            quote(table),
                            quote(&column.name),
                            sqlite_type(column)
                        ))
                        .map_err(service)?;
                    tracing::info!(object = %schema.object, column = %column.name, "added column");
                }
            }
            Ok(())
        })
        .await
        .map_err(service)?
    }

    async fn merge(&self, batch: &MergeBatch) -> Result<MergeReport, WarehouseError> {
        batch.schema.validate()?;
        let connection = self.connection.clone();
        let blobs = self.blobs.clone();
        let batch = batch.clone();
        let deleted = self.deleted;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            merge_blocking(&mut connection, &blobs, &runtime, &batch, deleted)
        })
        .await
        .map_err(service)?
    }

    async fn lineage(
        &self,
        object: &ObjectName,
        id: &str,
    ) -> Result<Option<RowLineage>, WarehouseError> {
        let connection = self.connection.clone();
        let table = object.as_str().to_string();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            if existing_columns(&connection, &table).map_err(service)?.is_empty() {
                return Ok(None);
            }
            let [run, extracted, file, loaded] = LINEAGE_COLUMNS.map(quote);
            let at = |text: Option<String>| {
                text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&Utc))
            };
            connection
                .query_row(
                    &format!(
                        "SELECT {run}, {file}, {extracted}, {loaded}, \"IsDeleted\" FROM {} WHERE \"Id\" = ?1",
                        quote(&table)
                    ),
                    [&id],
                    |row| {
                        Ok(RowLineage {
                            run_id: row.get(0)?,
                            file: row.get(1)?,
                            extracted_at: at(row.get(2)?),
                            loaded_at: at(row.get(3)?),
                            is_deleted: row.get::<_, Option<i64>>(4)?.map(|d| d != 0),
                        })
                    },
                )
                .optional()
                .map_err(service)
        })
        .await
        .map_err(service)?
    }

    async fn watermark(
        &self,
        object: &ObjectName,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        let connection = self.connection.clone();
        let object = object.to_string();
        let stored: Option<String> = tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            connection
                .query_row(
                    &format!("SELECT watermark FROM {STATE_TABLE} WHERE object = ?1"),
                    [&object],
                    |row| row.get(0),
                )
                .optional()
        })
        .await
        .map_err(service)?
        .map_err(service)?;
        stored
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| service(format!("stored watermark {s:?}: {e}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, sf_type: &str) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            sf_type: sf_type.into(),
            length: 0,
            precision: 0,
            scale: 0,
        }
    }

    #[test]
    fn csv_fields_become_typed_values() {
        let field = |sf_type: &str, raw: &str| to_field(&column("F", sf_type), raw);
        assert_eq!(field("boolean", "true"), Ok(Field::Integer(1)));
        assert_eq!(field("boolean", "false"), Ok(Field::Integer(0)));
        assert!(field("boolean", "yes").is_err());
        assert_eq!(field("int", "42"), Ok(Field::Integer(42)));
        assert_eq!(field("int", "1.2345678E7"), Ok(Field::Integer(12_345_678)));
        assert!(field("int", "1.5").is_err());
        assert_eq!(field("currency", "12.5"), Ok(Field::Real(12.5)));
        assert_eq!(field("string", ""), Ok(Field::Null));
        assert_eq!(field("textarea", "a,\"b\"\nc"), Ok(Field::Text));
    }

    #[test]
    fn upsert_only_lets_newer_or_different_rows_through() {
        let id = column("Id", "id");
        let name = column("Name", "string");
        let stamp = column("SystemModstamp", "datetime");
        let sql = FileMerge {
            table: "Account",
            columns: vec![&id, &name, &stamp],
            cursor: Some("SystemModstamp"),
        }
        .upsert_sql();
        assert!(sql.contains("ON CONFLICT(\"Id\") DO UPDATE"), "{sql}");
        assert!(
            sql.contains("excluded.\"SystemModstamp\" > \"Account\".\"SystemModstamp\""),
            "{sql}"
        );
        assert!(
            sql.contains("excluded.\"Name\" IS NOT \"Account\".\"Name\""),
            "{sql}"
        );
    }
}

#[cfg(feature = "conformance")]
#[allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failure
mod inspect {
    use async_trait::async_trait;
    use rusqlite::types::ValueRef;

    use super::{SqliteWarehouse, quote};
    use crate::conformance::warehouse::WarehouseInspector;
    use crate::contracts::ObjectName;
    use crate::ports::TableSchema;

    #[async_trait]
    impl WarehouseInspector for SqliteWarehouse {
        async fn rows(&self, schema: &TableSchema, columns: &[&str]) -> Vec<Vec<Option<String>>> {
            let connection = self.connection();
            let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {} FROM {} ORDER BY \"Id\"",
                    list.join(", "),
                    quote(schema.object.as_str())
                ))
                .expect("prepare");
            let mut rows = statement.query([]).expect("query");
            let mut out = Vec::new();
            while let Some(row) = rows.next().expect("row") {
                let mut values = Vec::new();
                for (i, name) in columns.iter().enumerate() {
                    let sf_type = schema.column(name).map_or("string", |c| c.sf_type.as_str());
                    values.push(match row.get_ref(i).expect("value") {
                        ValueRef::Null => None,
                        ValueRef::Integer(n) if sf_type == "boolean" => Some((n == 1).to_string()),
                        ValueRef::Integer(n) => Some(n.to_string()),
                        ValueRef::Real(r) => Some(r.to_string()),
                        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(_) => Some("<blob>".into()),
                    });
                }
                out.push(values);
            }
            out
        }

        async fn columns(&self, object: &ObjectName) -> Vec<String> {
            super::existing_columns(&self.connection(), object.as_str()).expect("columns")
        }
    }
}
