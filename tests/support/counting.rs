//! Port wrappers that count the calls a run makes, to hold a run to what it may cost.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sfpipe_shared::contracts::ObjectName;
use sfpipe_shared::ports::{
    BlobError, BlobMeta, BlobStore, ByteStream, MergeBatch, MergeReport, RowLineage, StoredBlob,
    TableSchema, Warehouse, WarehouseError,
};

use crate::harness::{BlobWrapper, WarehouseWrapper};

/// The calls made through the counted ports, as `"<verb> <key or object>"`, in order.
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    fn push(&self, call: String) {
        self.0.lock().unwrap().push(call);
    }

    /// Takes the calls logged so far.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }

    /// A wrapper for [`crate::harness::HarnessOptions::wrap_blobs`] logging here.
    pub fn blobs(&self) -> BlobWrapper {
        let log = self.clone();
        Arc::new(move |inner| {
            Arc::new(CountedBlobs {
                inner,
                log: log.clone(),
            })
        })
    }

    /// A wrapper for [`crate::harness::HarnessOptions::wrap_warehouse`] logging here.
    pub fn warehouse(&self) -> WarehouseWrapper {
        let log = self.clone();
        Arc::new(move |inner| {
            Arc::new(CountedWarehouse {
                inner,
                log: log.clone(),
            })
        })
    }
}

struct CountedBlobs {
    inner: Arc<dyn BlobStore>,
    log: CallLog,
}

#[async_trait]
impl BlobStore for CountedBlobs {
    async fn put(&self, key: &str, body: ByteStream) -> Result<StoredBlob, BlobError> {
        self.log.push(format!("put {key}"));
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, BlobError> {
        self.log.push(format!("put_if_absent {key}"));
        self.inner.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        self.log.push(format!("get {key}"));
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        self.log.push(format!("list {prefix}"));
        self.inner.list(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.log.push(format!("head {key}"));
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.log.push(format!("delete {key}"));
        self.inner.delete(key).await
    }
}

struct CountedWarehouse {
    inner: Arc<dyn Warehouse>,
    log: CallLog,
}

#[async_trait]
impl Warehouse for CountedWarehouse {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<(), WarehouseError> {
        self.log.push(format!("ensure_table {}", schema.object));
        self.inner.ensure_table(schema).await
    }
    async fn merge(&self, batch: &MergeBatch) -> Result<MergeReport, WarehouseError> {
        self.log.push(format!("merge {}", batch.schema.object));
        self.inner.merge(batch).await
    }
    async fn watermark(
        &self,
        object: &ObjectName,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        self.log.push(format!("watermark {object}"));
        self.inner.watermark(object).await
    }
    async fn lineage(
        &self,
        object: &ObjectName,
        id: &str,
    ) -> Result<Option<RowLineage>, WarehouseError> {
        self.log.push(format!("lineage {object}"));
        self.inner.lineage(object, id).await
    }
}
