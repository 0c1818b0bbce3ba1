//! upload: stream one result page into the blob store as gzipped CSV, with a manifest; the upload
//! that completes the set sends the run's one merge message.

use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::GzipEncoder;
use chrono::Utc;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio_util::io::{ReaderStream, StreamReader};

use super::extract::{job_gone, read_json, send_merge, to_json};
use super::{Cause, Stage, StageError, StageResultExt};
use crate::contracts::{CONTRACT_VERSION, MergeMessage, PartManifest, RunLayout, UploadMessage};
use crate::ports::{BlobStore, ByteStream, Queue};
use crate::salesforce::{SalesforceClient, SalesforceError};

pub struct UploadDeps<'a, B: ?Sized, Q: ?Sized> {
    pub salesforce: &'a SalesforceClient,
    pub blobs: &'a B,
    pub merge_queue: &'a Q,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOutcome {
    pub manifest: PartManifest,
    /// Whether this upload completed the set and requested the merge.
    pub requested_merge: bool,
}

pub async fn handle_upload<B, Q>(
    deps: &UploadDeps<'_, B, Q>,
    message: &UploadMessage,
) -> Result<UploadOutcome, StageError>
where
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let layout = RunLayout::new(object, &message.run_id);
    let key = layout.part(message.part);

    // A late duplicate, after the run's merge was requested (and its Bulk job deleted): the part
    // is stored already.
    if deps
        .blobs
        .head(&layout.merge_requested())
        .await
        .at(Stage::Upload, object)?
        .is_some()
        && let Some(manifest) =
            read_json::<PartManifest, _>(deps.blobs, &layout.manifest(message.part))
                .await
                .at(Stage::Upload, object)?
    {
        tracing::info!(run_id = %message.run_id, %object, part = message.part, "late duplicate: the part is stored already");
        return Ok(UploadOutcome {
            manifest,
            requested_merge: false,
        });
    }

    let page = match deps.salesforce.download_results(&message.result_url).await {
        Ok(page) => page,
        Err(SalesforceError::Api { status: 404, .. }) => {
            job_gone(
                deps.blobs,
                Stage::Upload,
                object.clone(),
                &message.run_id,
                &message.job_id,
            )
            .await?;
            let manifest = read_json::<PartManifest, _>(deps.blobs, &layout.manifest(message.part))
                .await
                .at(Stage::Upload, object)?
                .ok_or_else(|| {
                    StageError::new(
                        Stage::Upload,
                        object,
                        Cause::Inconsistent(format!(
                            "part {} has no manifest although the run's merge was requested",
                            message.part
                        )),
                    )
                    .permanent()
                })?;
            return Ok(UploadOutcome {
                manifest,
                requested_merge: false,
            });
        }
        Err(error) => return Err(StageError::new(Stage::Upload, object, error)),
    };
    let body: ByteStream = if page.gzipped {
        page.body
    } else {
        let reader = tokio::io::BufReader::new(StreamReader::new(page.body));
        Box::pin(ReaderStream::with_capacity(
            GzipEncoder::new(reader),
            64 * 1024,
        ))
    };
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let hashing = {
        let hasher = hasher.clone();
        body.inspect_ok(move |chunk| {
            hasher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(chunk);
        })
    };
    let bytes = deps
        .blobs
        .put(&key, Box::pin(hashing))
        .await
        .at(Stage::Upload, object)?;
    let sha256 = hex::encode(
        hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .finalize(),
    );
    let manifest = PartManifest {
        object: object.clone(),
        run_id: message.run_id.clone(),
        part: message.part,
        parts: message.parts,
        key,
        records: page.records.unwrap_or(0),
        bytes,
        sha256,
        stored_at: Utc::now(),
    };
    deps.blobs
        .put(
            &layout.manifest(message.part),
            crate::ports::bytes_stream(to_json(&manifest)),
        )
        .await
        .at(Stage::Upload, object)?;
    tracing::info!(run_id = %message.run_id, %object, part = message.part, parts = message.parts, records = manifest.records, bytes, "stored part");

    let requested_merge = request_merge_if_complete(deps, message, &layout).await?;
    Ok(UploadOutcome {
        manifest,
        requested_merge,
    })
}

/// Every upload writes its manifest before looking, so the last one to finish always sees the
/// whole set. The merge message is sent before the marker is written: a crash in between sends it
/// again on redelivery (the FIFO queue deduplicates, the merge is idempotent), never loses it.
async fn request_merge_if_complete<B, Q>(
    deps: &UploadDeps<'_, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
) -> Result<bool, StageError>
where
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let stored = deps
        .blobs
        .list(&layout.manifests_prefix())
        .await
        .at(Stage::Upload, object)?
        .iter()
        .filter(|b| b.key.ends_with(".manifest.json"))
        .count();
    if stored < message.parts as usize {
        return Ok(false);
    }
    if deps
        .blobs
        .head(&layout.merge_requested())
        .await
        .at(Stage::Upload, object)?
        .is_some()
    {
        return Ok(false);
    }
    let merge = merge_for(message, layout);
    send_merge(deps.merge_queue, &merge).await?;
    deps.blobs
        .put_if_absent(&layout.merge_requested(), to_json(&merge))
        .await
        .at(Stage::Upload, object)?;
    if let Err(error) = deps.salesforce.delete_job(&message.job_id).await {
        // Salesforce deletes finished jobs after 7 days anyway.
        tracing::warn!(%object, job_id = %message.job_id, %error, "could not delete the finished bulk job");
    }
    tracing::info!(run_id = %message.run_id, %object, parts = message.parts, "all parts stored; merge requested");
    Ok(true)
}

fn merge_for(message: &UploadMessage, layout: &RunLayout) -> MergeMessage {
    MergeMessage {
        v: CONTRACT_VERSION,
        run_id: message.run_id.clone(),
        object: message.object.clone(),
        parts: message.parts,
        schema_key: layout.schema(),
        mode: message.mode,
        window: message.window,
    }
}
