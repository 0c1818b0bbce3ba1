//! A blob store on the local filesystem. Writes go to a temporary file and are renamed (or, for
//! create-if-absent, hard-linked) into place, so a reader never sees half an object and a crash
//! never leaves one behind.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::checksum::Crc64Nvme;
use crate::ports::{BlobError, BlobMeta, BlobStore, ByteStream, StoredBlob};

const TMP_DIR: &str = ".tmp";

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join(TMP_DIR))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`. Keys are checked so no key can escape the root.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    async fn write_temp(
        &self,
        key: &str,
        mut body: ByteStream,
    ) -> Result<(PathBuf, StoredBlob), BlobError> {
        let tmp =
            self.root
                .join(TMP_DIR)
                .join(format!("{}-{}", std::process::id(), unique_suffix()));
        let service = |e: io::Error| BlobError::Service {
            key: key.to_string(),
            message: e.to_string(),
        };
        let mut file = tokio::fs::File::create(&tmp).await.map_err(service)?;
        let mut written = 0u64;
        let mut crc = Crc64Nvme::default();
        let result: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|source| BlobError::Body {
                    key: key.to_string(),
                    source,
                })?;
                file.write_all(&chunk).await.map_err(service)?;
                crc.update(&chunk);
                written += chunk.len() as u64;
            }
            file.flush().await.map_err(service)?;
            file.sync_data().await.map_err(service)?;
            Ok(())
        }
        .await;
        if let Err(error) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(error);
        }
        let stored = StoredBlob {
            bytes: written,
            crc64nvme: crc.base64(),
        };
        Ok((tmp, stored))
    }
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn validate_key(key: &str) -> Result<(), BlobError> {
    let invalid = |why| {
        Err(BlobError::InvalidKey {
            key: key.to_string(),
            why,
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return invalid("keys are 1 to 1024 characters");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return invalid("keys neither start nor end with '/'");
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || segment == TMP_DIR {
            return invalid("a key segment is empty, '.', '..' or reserved");
        }
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.=".contains(c))
    {
        return invalid("keys use only A-Z, a-z, 0-9 and / - _ . =");
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, body: ByteStream) -> Result<StoredBlob, BlobError> {
        // Counted as the S3 request it stands for (see crate::usage).
        crate::usage::s3_request("PUT");
        let path = self.path_of(key)?;
        let (tmp, written) = self.write_temp(key, body).await?;
        let service = |e: io::Error| BlobError::Service {
            key: key.to_string(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(service)?;
        }
        if let Err(error) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(service(error));
        }
        Ok(written)
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, BlobError> {
        crate::usage::s3_request("PUT");
        let path = self.path_of(key)?;
        let (tmp, _) = self
            .write_temp(key, crate::ports::bytes_stream(body))
            .await?;
        let service = |e: io::Error| BlobError::Service {
            key: key.to_string(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(service)?;
        }
        // link(2) fails if the target exists: an atomic create-if-absent.
        let linked = tokio::fs::hard_link(&tmp, &path).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(service(e)),
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        crate::usage::s3_request("GET");
        let path = self.path_of(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Box::pin(ReaderStream::with_capacity(file, 64 * 1024))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(BlobError::Service {
                key: key.to_string(),
                message: e.to_string(),
            }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        crate::usage::s3_request("LIST");
        // Walk from the deepest directory the prefix names fully.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path_of(dir_part)?
        };
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let listed = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let path = entry.path();
                    let file_type = entry.file_type()?;
                    let Ok(relative) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let key = relative.to_string_lossy().replace('\\', "/");
                    if key == TMP_DIR || key.starts_with(&format!("{TMP_DIR}/")) {
                        continue;
                    }
                    if file_type.is_dir() {
                        stack.push(path);
                    } else if key.starts_with(&prefix) {
                        out.push(BlobMeta {
                            key,
                            size: entry.metadata()?.len(),
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|e| BlobError::Service {
            key: prefix_for_error(dir_part),
            message: e.to_string(),
        })?;
        listed.map_err(|e| BlobError::Service {
            key: prefix_for_error(dir_part),
            message: e.to_string(),
        })
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        crate::usage::s3_request("HEAD");
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(BlobMeta {
                key: key.to_string(),
                size: meta.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::Service {
                key: key.to_string(),
                message: e.to_string(),
            }),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        crate::usage::s3_request("DELETE");
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Service {
                key: key.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

fn prefix_for_error(dir: &str) -> String {
    if dir.is_empty() {
        "/".into()
    } else {
        dir.into()
    }
}
