//! The upload that completes a run's set of parts: it checks the run's record count and sends
//! the run's one merge message.

use crate::contracts::{CONTRACT_VERSION, MergeMessage, RunLayout, UploadMessage};
use crate::ports::salesforce::Salesforce;
use crate::ports::{BlobStore, Queue};
use crate::stages::records::{REST_QUERY_JOB, read_manifests, send_merge, to_json};
use crate::stages::{Cause, Stage, StageError, StageResultExt};

use super::UploadDeps;

/// Every upload writes its manifest before looking, so the last one to finish always sees the
/// whole set. The merge message is sent before the marker is written: a crash in between sends it
/// again on redelivery (the FIFO queue deduplicates, the merge is idempotent), never loses it.
pub(super) async fn request_merge_if_complete<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
    parts: u32,
) -> Result<bool, StageError>
where
    S: Salesforce + ?Sized,
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
    if stored < parts as usize {
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
    if let Some(expected) = message.job_records {
        check_record_count(deps, message, layout, parts, expected).await?;
    }
    let merge = merge_for(message, layout, parts);
    send_merge(deps.merge_queue, &merge, Stage::Upload).await?;
    deps.blobs
        .put_if_absent(&layout.merge_requested(), to_json(&merge))
        .await
        .at(Stage::Upload, object)?;
    // A REST read has no job: deleting "rest-query" would spend an API call on a 404.
    if message.job_id != REST_QUERY_JOB
        && let Err(error) = deps.salesforce.delete_job(&message.job_id).await
    {
        // Salesforce deletes finished jobs after 7 days anyway.
        tracing::warn!(%object, job_id = %message.job_id, %error, "could not delete the finished bulk job");
    }
    tracing::info!(run_id = %message.run_id, %object, parts, "all parts stored; merge requested");
    Ok(true)
}

/// The run's pages must hold exactly the records its Bulk job reported: a page lost or cut short
/// on the way would otherwise merge as a complete run and move the watermark past its rows.
pub(super) async fn check_record_count<S, B, Q>(
    deps: &UploadDeps<'_, S, B, Q>,
    message: &UploadMessage,
    layout: &RunLayout,
    parts: u32,
    expected: u64,
) -> Result<(), StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let stored: u64 = read_manifests(deps.blobs, Stage::Upload, object, layout, parts)
        .await?
        .iter()
        .map(|m| m.records)
        .sum();
    if stored == expected {
        return Ok(());
    }
    Err(StageError::new(
        Stage::Upload,
        object,
        Cause::Inconsistent(format!(
            "Bulk job {} reported {expected} records (numberRecordsProcessed) but its {parts} \
             pages hold {stored}; the run is not merged: run the object again",
            message.job_id
        )),
    )
    .permanent())
}

pub(super) fn merge_for(message: &UploadMessage, layout: &RunLayout, parts: u32) -> MergeMessage {
    MergeMessage {
        v: CONTRACT_VERSION,
        run_id: message.run_id.clone(),
        object: message.object.clone(),
        parts,
        schema_key: layout.schema(),
        mode: message.mode,
        window: message.window,
    }
}
