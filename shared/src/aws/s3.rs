//! The blob store on S3: streaming multipart uploads (memory is one part, whatever the object's
//! size), conditional create for markers, server-side encryption, deterministic keys under an
//! optional prefix.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio_util::io::ReaderStream;

use super::{describe, is_access_denied};
use crate::checksum::{Crc64Nvme, crc64nvme};
use crate::ports::{BlobError, BlobMeta, BlobStore, ByteStream, StoredBlob};
use crate::usage;

/// S3's smallest multipart part (except the last) is 5 MiB; 8 MiB keeps the request count low.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    /// Prepended to every key (without a trailing slash), e.g. `sfpipe`.
    prefix: String,
    encryption: Option<ServerSideEncryption>,
}

fn service(key: &str, error: impl std::fmt::Display) -> BlobError {
    BlobError::Service {
        key: key.to_string(),
        message: error.to_string(),
    }
}

/// An S3 call's error: a refused permission apart, since no retry can fix it.
fn failed<E>(key: &str, error: &aws_sdk_s3::error::SdkError<E>) -> BlobError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    if is_access_denied(error) {
        BlobError::AccessDenied {
            key: key.to_string(),
            message: describe(error),
        }
    } else {
        service(key, describe(error))
    }
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_string(),
            encryption: Some(ServerSideEncryption::Aes256),
        }
    }

    /// `aws:kms` with the bucket's key, or none (moto, tests).
    pub fn with_encryption(mut self, encryption: Option<ServerSideEncryption>) -> Self {
        self.encryption = encryption;
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn relative_key<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    /// One PUT. S3 refuses it (BadDigest) if the bytes it received do not have our checksum.
    async fn put_small(&self, key: &str, body: Bytes) -> Result<StoredBlob, BlobError> {
        let stored = StoredBlob {
            bytes: body.len() as u64,
            crc64nvme: crc64nvme(&body),
        };
        usage::s3_request("PUT");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .set_server_side_encryption(self.encryption.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_crc64_nvme(&stored.crc64nvme)
            .body(S3Body::from(body))
            .send()
            .await
            .map_err(|e| failed(key, &e))?;
        Ok(stored)
    }

    /// A multipart upload with a full-object CRC-64/NVME: S3 checks every part against its own
    /// checksum, and the completed object against the checksum of the whole stream.
    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        body: &mut ByteStream,
        mut buffer: BytesMut,
    ) -> Result<StoredBlob, BlobError> {
        let full_key = self.full_key(key);
        usage::s3_request("PUT");
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            .set_server_side_encryption(self.encryption.clone())
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| failed(key, &e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| service(key, "S3 gave no upload id"))?
            .to_string();
        let result = async {
            let mut parts = Vec::new();
            let mut written = 0u64;
            let mut whole = Crc64Nvme::default();
            let mut pending = Some(first);
            loop {
                let Some(part) = pending.take() else { break };
                let number = parts.len() as i32 + 1;
                written += part.len() as u64;
                whole.update(&part);
                let part_crc = crc64nvme(&part);
                usage::s3_request("PUT");
                let uploaded = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&full_key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
                    .checksum_crc64_nvme(&part_crc)
                    .body(S3Body::from(part))
                    .send()
                    .await
                    .map_err(|e| failed(key, &e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(uploaded.e_tag().map(str::to_string))
                        .checksum_crc64_nvme(part_crc)
                        .build(),
                );
                // Fill the next part from the stream.
                while buffer.len() < PART_SIZE {
                    match body.next().await {
                        Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                        Some(Err(source)) => {
                            return Err(BlobError::Body {
                                key: key.to_string(),
                                source,
                            });
                        }
                        None => break,
                    }
                }
                if !buffer.is_empty() {
                    let take = buffer.len().min(PART_SIZE);
                    pending = Some(buffer.split_to(take).freeze());
                }
            }
            let stored = StoredBlob {
                bytes: written,
                crc64nvme: whole.base64(),
            };
            usage::s3_request("PUT");
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key)
                .upload_id(&upload_id)
                .checksum_type(ChecksumType::FullObject)
                .checksum_crc64_nvme(&stored.crc64nvme)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| failed(key, &e))?;
            Ok(stored)
        }
        .await;
        if result.is_err() {
            // Nothing partial stays behind: the object appears only on completion.
            usage::s3_request("DELETE");
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<StoredBlob, BlobError> {
        let mut buffer = BytesMut::with_capacity(PART_SIZE);
        while buffer.len() < PART_SIZE {
            match body.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                Some(Err(source)) => {
                    return Err(BlobError::Body {
                        key: key.to_string(),
                        source,
                    });
                }
                None => return self.put_small(key, buffer.freeze()).await,
            }
        }
        let first = buffer.split_to(PART_SIZE).freeze();
        self.put_multipart(key, first, &mut body, buffer).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, BlobError> {
        usage::s3_request("PUT");
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .set_server_side_encryption(self.encryption.clone())
            .body(S3Body::from(body))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) => {
                let status = error.raw_response().map(|r| r.status().as_u16());
                match status {
                    // 412: the object exists. 409: a concurrent conditional write won.
                    Some(412) | Some(409) => Ok(false),
                    _ => Err(failed(key, &error)),
                }
            }
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        usage::s3_request("GET");
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result {
            Ok(object) => {
                let reader = object.body.into_async_read();
                Ok(Box::pin(ReaderStream::with_capacity(reader, 64 * 1024)))
            }
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                Err(BlobError::NotFound {
                    key: key.to_string(),
                })
            }
            Err(error) => Err(failed(key, &error)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            usage::s3_request("LIST");
            let page = page.map_err(|e| failed(prefix, &e))?;
            for object in page.contents() {
                if let Some(full) = object.key() {
                    out.push(BlobMeta {
                        key: self.relative_key(full).to_string(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        usage::s3_request("HEAD");
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result {
            Ok(head) => Ok(Some(BlobMeta {
                key: key.to_string(),
                size: head.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(failed(key, &error)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        usage::s3_request("DELETE");
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| failed(key, &e))?;
        Ok(())
    }
}
