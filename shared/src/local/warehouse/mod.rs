//! The embedded SQLite warehouse: the same merge semantics as Snowflake on one machine. The merge is
//! an upsert that only lets a row change when its SystemModstamp is not older than the stored one
//! (and something actually differs), so duplicates, retries and late files change nothing.

mod merging;
mod parts;

use merging::*;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};

use crate::contracts::ObjectName;
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

#[async_trait]
impl Warehouse for SqliteWarehouse {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<(), WarehouseError> {
        // Counted as one SQL API request of one statement (Snowflake: a lookup, then the DDL).
        crate::usage::as_statements(1, async move {
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
        })
        .await
    }

    async fn merge(&self, batch: &MergeBatch) -> Result<MergeReport, WarehouseError> {
        // Counted as the Snowflake adapter sends it: one request of three statements.
        crate::usage::as_statements(3, async move {
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
        })
        .await
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
    use super::parts::{Field, to_field};
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
