//! upload: stream one result page into the blob store as gzipped CSV, with a manifest; the upload
//! that completes the set sends the run's one merge message.

mod complete;
mod rest;

use complete::*;
use rest::*;

use std::sync::{Arc, Mutex};

use async_compression::tokio::bufread::GzipEncoder;
use chrono::Utc;
use futures::TryStreamExt;
use tokio_util::io::{ReaderStream, StreamReader};

use super::part_header::HeaderProbe;
use super::{Cause, Stage, StageError, StageResultExt};
use crate::contracts::{Contract, PartManifest, RunLayout, UploadMessage};
use crate::ports::TableSchema;
use crate::ports::salesforce::{Salesforce, SalesforceError};
use crate::ports::{BlobStore, ByteStream, OutgoingMessage, Queue};
use crate::stages::records::{REST_QUERY_JOB, job_gone, read_json, to_json};
use bytes::Bytes;

pub struct UploadDeps<'a, S: ?Sized, B: ?Sized, Q: ?Sized> {
    pub salesforce: &'a S,
    pub blobs: &'a B,
    /// Where the next part of a locator chain goes.
    pub upload_queue: &'a Q,
    pub merge_queue: &'a Q,
    /// Records per REST query page (200 to 2,000), for runs read with the REST API.
    pub rest_batch_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOutcome {
    pub manifest: PartManifest,
    /// Whether this upload completed the set and requested the merge.
    pub requested_merge: bool,
}

pub async fn handle_upload<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
) -> Result<UploadOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let layout = RunLayout::new(object, &message.run_id);
    let key = layout.part(message.part);

    // A late duplicate, after the run's merge was requested (and its Bulk job deleted).
    if let Some(outcome) = already_stored(deps, message, &layout).await? {
        return Ok(outcome);
    }

    // Its successor is queued already (on the locator chain, or a REST part's cursor).
    if message.chain
        && let Some(outcome) = chain_link_done(deps, message, &layout).await?
    {
        return Ok(outcome);
    }
    if message.job_id == REST_QUERY_JOB {
        return upload_rest(deps, message, &layout).await;
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
            return already_stored(deps, message, &layout)
                .await?
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
    // The page's record count is what proves the run complete: a page without one is refused
    // rather than counted as empty.
    let records = page.records.ok_or_else(|| {
        StageError::new(
            Stage::Upload,
            object,
            SalesforceError::Decode {
                what: "Bulk result page",
                detail: format!(
                    "job {} part {} came without its Sforce-NumberOfRecords header, so the \
                     run cannot be proved complete; run the object again",
                    message.job_id, message.part
                ),
            },
        )
    })?;
    let next_locator = page.next_locator.clone();
    // On the locator chain, the page without a next locator is the last: its number is the
    // run's part count.
    let complete_with = match (message.chain, &next_locator) {
        (false, _) => Some(message.parts),
        (true, None) => Some(message.part),
        (true, Some(_)) => None,
    };
    let schema = run_schema(deps.blobs, &layout, object).await?;
    let outcome = store_part(
        deps,
        message,
        &layout,
        &key,
        body,
        records,
        complete_with,
        &schema,
    )
    .await?;
    if let Some(locator) = next_locator.filter(|_| message.chain) {
        let result_url = next_in_chain(deps, message, &locator);
        queue_next_part(deps, message, &layout, result_url).await?;
    }
    Ok(outcome)
}

/// Queues the part after `message`'s, at `result_url`, then marks it queued, so a later
/// duplicate of this part does not queue it again. In that order: a crash between the two
/// sends the next part twice, never not at all.
async fn queue_next_part<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
    result_url: String,
) -> Result<(), StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let next = UploadMessage {
        part: message.part + 1,
        // The count is known at the last part.
        parts: 0,
        chain: true,
        result_url,
        ..message.clone()
    };
    deps.upload_queue
        .send(OutgoingMessage::new(next.to_body(), next.message_id()))
        .await
        .at(Stage::Upload, object)?;
    deps.blobs
        .put_if_absent(&layout.chain_link(message.part), Bytes::from_static(b"{}"))
        .await
        .at(Stage::Upload, object)?;
    Ok(())
}

/// A duplicate of a locator-chain part whose successor is queued already: the part as stored.
async fn chain_link_done<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
) -> Result<Option<UploadOutcome>, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    stored_once_marked(
        deps,
        message,
        layout,
        &layout.chain_link(message.part),
        "late duplicate: the part is stored and the next one queued",
    )
    .await
}

/// The part as stored before, once the run's merge was requested: what a late duplicate returns.
async fn already_stored<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
) -> Result<Option<UploadOutcome>, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    stored_once_marked(
        deps,
        message,
        layout,
        &layout.merge_requested(),
        "late duplicate: the part is stored already",
    )
    .await
}

/// The part's stored manifest, when `marker` says the part's work is done; `None` otherwise.
async fn stored_once_marked<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
    marker: &str,
    why: &'static str,
) -> Result<Option<UploadOutcome>, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    if deps
        .blobs
        .head(marker)
        .await
        .at(Stage::Upload, object)?
        .is_none()
    {
        return Ok(None);
    }
    let manifest = read_json::<PartManifest, _>(deps.blobs, &layout.manifest(message.part))
        .await
        .at(Stage::Upload, object)?;
    if manifest.is_some() {
        tracing::info!(run_id = %message.run_id, %object, part = message.part, "{why}");
    }
    Ok(manifest.map(|manifest| UploadOutcome {
        manifest,
        requested_merge: false,
    }))
}

/// The locator chain: the next part's page is known only from this page's `Sforce-Locator`,
/// asked with the `maxRecords` this page was.
fn next_in_chain<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    locator: &str,
) -> String
where
    S: Salesforce + ?Sized,
    B: ?Sized,
    Q: ?Sized,
{
    let max_records = url::Url::parse(&format!("http://x{}", message.result_url))
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "maxRecords")
                .and_then(|(_, v)| v.parse().ok())
        })
        .unwrap_or(50_000);
    deps.salesforce
        .results_path(&message.job_id, Some(locator), max_records)
}

/// The schema extract fixed for the run: the columns every part must have, in order.
async fn run_schema<B: BlobStore + ?Sized>(
    blobs: &B,
    layout: &RunLayout,
    object: &crate::contracts::ObjectName,
) -> Result<TableSchema, StageError> {
    read_json(blobs, &layout.schema())
        .await
        .at(Stage::Upload, object)?
        .ok_or_else(|| {
            StageError::new(
                Stage::Upload,
                object,
                Cause::Inconsistent(format!("{} is missing", layout.schema())),
            )
        })
}

/// Stores the part's bytes (the store computes their checksum on the way), then its manifest;
/// requests the merge if this part completes the set.
#[allow(clippy::too_many_arguments)]
async fn store_part<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
    key: &str,
    body: ByteStream,
    // The page's record count, as Salesforce gave it.
    records: u64,
    // The run's part count, when this part may be its last one stored (not on the locator
    // chain before its last page).
    complete_with: Option<u32>,
    // The run's schema: the page's header, read as it streams past, must be its columns.
    schema: &TableSchema,
) -> Result<UploadOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let probe = Arc::new(Mutex::new(HeaderProbe::new()));
    let probing = {
        let probe = probe.clone();
        body.inspect_ok(move |chunk| probe.lock().unwrap_or_else(|p| p.into_inner()).feed(chunk))
    };
    let stored = deps
        .blobs
        .put(key, Box::pin(probing))
        .await
        .at(Stage::Upload, object)?;
    let header = std::mem::replace(
        &mut *probe.lock().unwrap_or_else(|p| p.into_inner()),
        HeaderProbe::new(),
    )
    .header()
    .unwrap_or_default();
    if !schema.header_matches(&header) {
        // Not the run's part: it must not count as stored, nor be merged by mistake later.
        let _ = deps.blobs.delete(key).await;
        let wanted: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(StageError::new(
            Stage::Upload,
            object,
            Cause::Inconsistent(format!(
                "part {} of job {}: its header {header:?} is not the run's columns {wanted:?} \
                 in order, so its values would land in the wrong columns; run the object \
                 again, and report the job if it happens again",
                message.part, message.job_id
            )),
        )
        .permanent());
    }
    let manifest = PartManifest {
        object: object.clone(),
        run_id: message.run_id.clone(),
        part: message.part,
        parts: message.parts,
        key: key.to_string(),
        records,
        bytes: stored.bytes,
        crc64nvme: stored.crc64nvme,
        stored_at: Utc::now(),
    };
    deps.blobs
        .put(
            &layout.manifest(message.part),
            crate::ports::bytes_stream(to_json(&manifest)),
        )
        .await
        .at(Stage::Upload, object)?;
    tracing::info!(run_id = %message.run_id, %object, part = message.part, parts = message.parts, records = manifest.records, bytes = manifest.bytes, "stored part");

    let requested_merge = match complete_with {
        Some(parts) => request_merge_if_complete(deps, message, layout, parts).await?,
        None => false,
    };
    Ok(UploadOutcome {
        manifest,
        requested_merge,
    })
}
