//! The small traits the stage handlers are written against. Each has an AWS/Snowflake adapter and a
//! local one; `conformance` holds the suite every adapter must pass.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::contracts::{ObjectName, RunId};

/// A stream of bytes: how data moves through the pipeline without being collected in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A whole small value (schema, marker, manifest) as a [`ByteStream`].
pub fn bytes_stream(bytes: impl Into<Bytes>) -> ByteStream {
    let bytes = bytes.into();
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

// ---------------------------------------------------------------------------------------------
// Queue

/// The message attribute under which a dead-lettered message carries why it was dead-lettered.
pub const DEAD_LETTER_REASON: &str = "sfpipe-dead-letter-reason";

/// The attribute of a [`ReceivedMessage`] that carries its FIFO message group (SQS's own system
/// attribute name), so a dead letter keeps its group.
pub const MESSAGE_GROUP_ATTRIBUTE: &str = "MessageGroupId";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Deterministic id of the work; FIFO queues deduplicate on it.
    pub dedup_id: String,
    /// FIFO message group (the object): messages of one group are handled one at a time, in order.
    pub group_id: Option<String>,
    pub delay: Duration,
}

impl OutgoingMessage {
    pub fn new(body: String, dedup_id: String) -> Self {
        Self {
            body,
            dedup_id,
            group_id: None,
            delay: Duration::ZERO,
        }
    }
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub body: String,
    /// Handle for delete/release; valid for this receive only.
    pub receipt: String,
    /// The queue's own id for the message.
    pub message_id: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue}: the receipt handle is not (or no longer) valid")]
    InvalidReceipt { queue: String },
    #[error("queue {queue}: message body of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        queue: String,
        size: usize,
        limit: usize,
    },
    #[error("queue {queue}: delay of {delay:?} exceeds the 900 s maximum")]
    DelayTooLong { queue: String, delay: Duration },
    #[error(
        "queue {queue}: access denied ({message}): the function's role lacks this SQS permission; \
         grant it in template.yaml and redeploy"
    )]
    AccessDenied { queue: String, message: String },
    #[error("queue {queue}: {message}")]
    Service { queue: String, message: String },
}

/// SQS-shaped queue: at-least-once delivery, visibility timeout, receive count, dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    fn name(&self) -> &str;
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError>;
    /// Up to `max` messages, waiting at most `wait` for the first one. Received messages are
    /// invisible to other receivers until deleted, released, or their visibility timeout ends.
    async fn receive(&self, max: usize, wait: Duration)
    -> Result<Vec<ReceivedMessage>, QueueError>;
    /// The message is done.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Make the message visible again after `delay` (zero: at once).
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;
    /// Send a copy of the message, with its group and a reason, to this queue's dead-letter
    /// queue, and leave the message itself to whoever settles it: on Lambda the event source
    /// mapping deletes every message the function reports done.
    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError>;
    /// Move the message to this queue's dead-letter queue, with a reason, and delete it here.
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        self.send_to_dead_letter(message, reason).await?;
        self.delete(&message.receipt).await
    }
}

/// The limits SQS puts on a message, checked before sending so every adapter refuses alike.
pub fn check_outgoing(queue: &str, message: &OutgoingMessage) -> Result<(), QueueError> {
    if message.body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::TooLarge {
            queue: queue.to_string(),
            size: message.body.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    if message.delay > MAX_DELAY {
        return Err(QueueError::DelayTooLong {
            queue: queue.to_string(),
            delay: message.delay,
        });
    }
    Ok(())
}

/// The largest message body SQS accepts.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The longest delay SQS accepts.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

// ---------------------------------------------------------------------------------------------
// Blob store

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {key} does not exist")]
    NotFound { key: String },
    #[error("blob key {key:?} is not allowed: {why}")]
    InvalidKey { key: String, why: &'static str },
    #[error("blob {key}: reading the body to store failed: {source}")]
    Body { key: String, source: io::Error },
    #[error(
        "blob {key}: access denied ({message}): the function's role lacks this S3 permission; \
         grant it in template.yaml and redeploy"
    )]
    AccessDenied { key: String, message: String },
    #[error("blob {key}: {message}")]
    Service { key: String, message: String },
}

/// What [`BlobStore::put`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub bytes: u64,
    /// The CRC-64/NVME of the stored bytes, as S3 writes it ([`crate::checksum`]). S3 checks
    /// the upload against it; the local store computes it as it writes.
    pub crc64nvme: String,
}

/// Object storage: whole-object writes are atomic (a reader sees the old object or the new one,
/// never a part), keys are flat strings with `/` as a convention.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Store `body` under `key`, replacing any object there. Streams: memory does not grow with
    /// the body. Returns the size and checksum of what was stored.
    async fn put(&self, key: &str, body: ByteStream) -> Result<StoredBlob, BlobError>;
    /// Store `body` only if nothing is at `key`. `true` if this call created it.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, BlobError>;
    async fn get(&self, key: &str) -> Result<ByteStream, BlobError>;
    /// Objects whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError>;
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError>;
    async fn delete(&self, key: &str) -> Result<(), BlobError>;

    /// A small object, whole. Only for markers, manifests and schemas.
    async fn get_bytes(&self, key: &str) -> Result<Bytes, BlobError> {
        let mut stream = self.get(key).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BlobError::Service {
                key: key.to_string(),
                message: e.to_string(),
            })?;
            out.extend_from_slice(&chunk);
        }
        Ok(out.into())
    }
}

// ---------------------------------------------------------------------------------------------
// Warehouse

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
        use crate::salesforce::soql::is_valid_field_name;
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

// ---------------------------------------------------------------------------------------------
// Secrets

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret {name} does not exist: create it, or fix the name in the configuration")]
    NotFound { name: String },
    #[error("secret {name}: {message}")]
    Service { name: String, message: String },
}

#[async_trait]
pub trait Secrets: Send + Sync {
    async fn get(&self, name: &str) -> Result<SecretString, SecretsError>;
}
