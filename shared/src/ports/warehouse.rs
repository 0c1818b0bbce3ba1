//! The warehouse port: tables, merges, watermarks and lineage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::BlobError;
use crate::contracts::{ObjectName, RunId};

/// The warehouse-side description of one Salesforce field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    /// The Salesforce field name, which is also the column name.
    pub name: String,
    /// The Salesforce describe `type` (string, int, datetime, ...).
    pub sf_type: String,
    #[serde(default)]
    pub length: u32,
    #[serde(default)]
    pub precision: u32,
    #[serde(default)]
    pub scale: u32,
}

/// The fields that order an object's changes, best first: SystemModstamp moves on every change,
/// LastModifiedDate on user changes, and CreatedDate is all an insert-only object (a field history
/// object) has. Windows, newest-wins and watermarks all use the first one an object has.
pub const CURSOR_FIELDS: [&str; 3] = ["SystemModstamp", "LastModifiedDate", "CreatedDate"];

/// The fields of one object's run, in the column order of its CSV files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub object: ObjectName,
    pub columns: Vec<ColumnSpec>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether a file's header names exactly these columns, in order (in any case, as
    /// Salesforce names match; a byte order mark before the first is not part of it).
    pub fn header_matches<S: AsRef<str>>(&self, header: &[S]) -> bool {
        header.len() == self.columns.len()
            && header.iter().zip(&self.columns).all(|(name, column)| {
                name.as_ref()
                    .trim_start_matches('\u{feff}')
                    .eq_ignore_ascii_case(&column.name)
            })
    }

    /// The column that orders changes ([`CURSOR_FIELDS`]), if the object has one.
    pub fn cursor(&self) -> Option<&str> {
        CURSOR_FIELDS
            .into_iter()
            .find(|name| self.column(name).is_some())
    }

    /// Every column a Salesforce field name (so it is safe as an identifier), none of them
    /// sfpipe's own, and an Id among them.
    pub fn validate(&self) -> Result<(), WarehouseError> {
        use crate::contracts::is_valid_field_name;
        if let Some(bad) = self.columns.iter().find(|c| {
            !is_valid_field_name(&c.name) || c.name.to_ascii_uppercase().starts_with("_SFPIPE")
        }) {
            return Err(WarehouseError::Schema {
                object: self.object.to_string(),
                detail: format!("column name {:?} is not a Salesforce field name", bad.name),
            });
        }
        if self.column("Id").is_none() {
            return Err(WarehouseError::Schema {
                object: self.object.to_string(),
                detail: "the schema has no Id column".into(),
            });
        }
        Ok(())
    }
}

/// What a merge does with rows Salesforce reports deleted (`IsDeleted = true`).
///
/// `Flag` (the default) keeps them with the flag set, so a late file holding an older, live version
/// of a deleted row changes nothing. `Remove` deletes them from the table; the warehouse then has no
/// trace of the deletion, and such a late file (a message delayed across a deletion) brings the
/// row back until the next full refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeletedRows {
    #[default]
    Flag,
    Remove,
}

impl std::str::FromStr for DeletedRows {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "flag" | "soft" => Ok(Self::Flag),
            "remove" | "hard" => Ok(Self::Remove),
            other => Err(format!("{other:?} is neither flag nor remove")),
        }
    }
}

/// One object's run to merge: its files (blob keys) and what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeBatch {
    pub schema: TableSchema,
    pub run_id: RunId,
    pub files: Vec<String>,
    pub extracted_at: DateTime<Utc>,
    /// A formula refresh: the files' columns are written only into stored rows of the same
    /// version (equal cursor) last extracted no later than this batch; no row is inserted,
    /// deleted or made newer, and the watermark stays.
    pub update_only: bool,
    /// A reconciliation ([`crate::contracts::Mode::Reconcile`]): the files hold the Id of every
    /// live row in Salesforce. A stored row that is not deleted, whose Id is missing and whose
    /// cursor is not after this instant was hard-deleted: it is flagged deleted (or removed, by
    /// the warehouse's [`DeletedRows`]) with this run's lineage. A newer row is a concurrent
    /// run's, and stays. Nothing is inserted and the watermark stays.
    pub reconcile_until: Option<DateTime<Utc>>,
    /// The id of the warehouse request that merges the batch (a UUID), the same on every
    /// delivery of the run's merge until one has an outcome: a warehouse that dedups requests
    /// (Snowflake's `requestId`) attaches a redelivery to the merge still running.
    pub request_id: Option<String>,
    /// When the merge was first requested: the rows' `_SFPIPE_LOADED_AT`. Recorded with the
    /// request id, so every delivery of one request sends the same statements (Snowflake's
    /// documentation has a resubmission be "the same request"); `None`: now.
    pub loaded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeReport {
    /// Rows read from the files.
    pub rows_read: u64,
    /// Rows inserted or updated in the target table.
    pub rows_changed: u64,
    /// The newest value of the cursor ([`TableSchema::cursor`]) among the rows read.
    pub max_modstamp: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(
        "warehouse, table {object}: file {file} is not a valid gzipped CSV of the run: {detail}"
    )]
    BadFile {
        object: String,
        file: String,
        detail: String,
    },
    #[error("warehouse, table {object}: {detail}")]
    Schema { object: String, detail: String },
    /// The warehouse refused the work for a reason a retry cannot fix (a SQL error, refused
    /// credentials, a misconfiguration).
    #[error("warehouse, table {object}: {detail}")]
    Rejected { object: String, detail: String },
    #[error("warehouse: reading {0}")]
    Blob(#[from] BlobError),
    #[error("warehouse: {0}")]
    Service(String),
}

#[async_trait]
pub trait Warehouse: Send + Sync {
    /// Create the object's table if absent; add a column for every field it lacks. Never drops.
    async fn ensure_table(&self, schema: &TableSchema) -> Result<(), WarehouseError>;
    /// Load the files and merge them into the table, in one transaction: deduplicated by Id, a row
    /// changes only when its incoming cursor ([`TableSchema::cursor`], SystemModstamp for most
    /// objects) is not older than the stored one, and the object's watermark moves forward to the
    /// newest cursor value merged.
    async fn merge(&self, batch: &MergeBatch) -> Result<MergeReport, WarehouseError>;
    /// The newest cursor value merged so far for the object.
    async fn watermark(&self, object: &ObjectName)
    -> Result<Option<DateTime<Utc>>, WarehouseError>;
    /// Where a stored row came from (its lineage columns); `None` when the table or the row is
    /// not there.
    async fn lineage(
        &self,
        object: &ObjectName,
        id: &str,
    ) -> Result<Option<RowLineage>, WarehouseError>;
}

/// A stored row's lineage columns, and whether it is flagged deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowLineage {
    pub run_id: Option<String>,
    /// The part the row was merged from; none for a row a reconciliation flagged.
    pub file: Option<String>,
    pub extracted_at: Option<DateTime<Utc>>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub is_deleted: Option<bool>,
}
