//! The small traits the stage handlers are written against, and the values they exchange. Each
//! trait has an AWS/Snowflake/Salesforce adapter and a local one; `conformance` holds the suite
//! every adapter must pass. This module imports no adapter: adapters import it.

pub mod blob;
pub mod notify;
pub mod queue;
pub mod salesforce;
pub mod secrets;
pub mod warehouse;

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

pub use blob::{BlobError, BlobMeta, BlobStore, StoredBlob};
pub use notify::{Notice, Notifier, NotifyError};
pub use queue::{
    DEAD_LETTER_REASON, MAX_DELAY, MAX_MESSAGE_BYTES, MESSAGE_GROUP_ATTRIBUTE, OutgoingMessage,
    Queue, QueueDepth, QueueError, ReceivedMessage, check_outgoing,
};
pub use salesforce::{Salesforce, SalesforceError};
pub use secrets::{Secrets, SecretsError};
pub use warehouse::{
    CURSOR_FIELDS, ColumnSpec, DeletedRows, MergeBatch, MergeReport, RowLineage, TableSchema,
    Warehouse, WarehouseError,
};

/// A stream of bytes: how data moves through the pipeline without being collected in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A whole small value (schema, marker, manifest) as a [`ByteStream`].
pub fn bytes_stream(bytes: impl Into<Bytes>) -> ByteStream {
    let bytes = bytes.into();
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}
