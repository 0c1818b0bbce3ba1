//! A blob store in a map, whose next writes can be made to fail.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::checksum::crc64nvme;
use crate::ports::{BlobError, BlobMeta, BlobStore, ByteStream, StoredBlob, bytes_stream};

#[derive(Default)]
pub struct MemoryBlobs {
    objects: Mutex<BTreeMap<String, Bytes>>,
    failing_puts: Mutex<u32>,
    failing_deletes: Mutex<u32>,
}

impl MemoryBlobs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `times` puts fail as S3 does when it is unavailable.
    pub fn fail_puts(&self, times: u32) {
        *lock(&self.failing_puts) = times;
    }

    /// The next `times` deletes fail the same way, and delete nothing.
    pub fn fail_deletes(&self, times: u32) {
        *lock(&self.failing_deletes) = times;
    }

    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    pub fn bytes(&self, key: &str) -> Option<Bytes> {
        lock(&self.objects).get(key).cloned()
    }

    /// Removes an object behind the port's back, as if a write had never happened.
    pub fn remove(&self, key: &str) {
        lock(&self.objects).remove(key);
    }

    fn take_failure(&self, key: &str) -> Result<(), BlobError> {
        Self::take(&self.failing_puts, key)
    }

    fn take(failures: &Mutex<u32>, key: &str) -> Result<(), BlobError> {
        let mut failing = lock(failures);
        if *failing > 0 {
            *failing -= 1;
            return Err(BlobError::Service {
                key: key.to_string(),
                message: "injected: service unavailable".into(),
            });
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<StoredBlob, BlobError> {
        self.take_failure(key)?;
        let mut all = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| BlobError::Body {
                key: key.to_string(),
                source,
            })?;
            all.extend_from_slice(&chunk);
        }
        let stored = StoredBlob {
            bytes: all.len() as u64,
            crc64nvme: crc64nvme(&all),
        };
        lock(&self.objects).insert(key.to_string(), all.freeze());
        Ok(stored)
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, BlobError> {
        self.take_failure(key)?;
        let mut objects = lock(&self.objects);
        if objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_string(), body);
        Ok(true)
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        match lock(&self.objects).get(key) {
            Some(bytes) => Ok(bytes_stream(bytes.clone())),
            None => Err(BlobError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        Ok(lock(&self.objects)
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, bytes)| BlobMeta {
                key: key.clone(),
                size: bytes.len() as u64,
            })
            .collect())
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        Ok(lock(&self.objects).get(key).map(|bytes| BlobMeta {
            key: key.to_string(),
            size: bytes.len() as u64,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        Self::take(&self.failing_deletes, key)?;
        lock(&self.objects).remove(key);
        Ok(())
    }
}
