//! The blob store port: S3-shaped object storage.

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::ByteStream;

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
