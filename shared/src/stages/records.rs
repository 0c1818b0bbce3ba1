//! The small JSON records stages keep in the blob store (job records, manifests, markers), what
//! they say about a Bulk job that vanished, and the merge message every stage that finishes a
//! run sends.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Cause, Stage, StageError, StageResultExt};
use crate::contracts::{
    BulkJobRecord, Contract, FormulaRefreshMarker, MergeMessage, ObjectName, PartManifest,
    RunLayout, formula_refresh_key, reconcile_key,
};
use crate::ports::{BlobStore, OutgoingMessage, Queue};

pub(crate) fn to_json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_default())
}

/// A small JSON object from the blob store; `None` if absent.
pub(crate) async fn read_json<T, B>(blobs: &B, key: &str) -> Result<Option<T>, Cause>
where
    T: for<'de> Deserialize<'de>,
    B: BlobStore + ?Sized,
{
    match blobs.get_bytes(key).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Cause::Inconsistent(format!("{key} is not valid JSON: {e}"))),
        Err(crate::ports::BlobError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Writes `value` at `key` unless something is there already, and returns what is stored: the
/// value of whichever concurrent writer came first, so every writer goes on with the same one.
pub(crate) async fn first_written<T, B>(
    blobs: &B,
    key: &str,
    value: T,
    stage: Stage,
    object: &ObjectName,
) -> Result<T, StageError>
where
    T: Serialize + for<'de> Deserialize<'de>,
    B: BlobStore + ?Sized,
{
    if blobs
        .put_if_absent(key, to_json(&value))
        .await
        .at(stage, object)?
    {
        return Ok(value);
    }
    read_json(blobs, key)
        .await
        .at(stage, object)?
        .ok_or_else(|| {
            StageError::new(
                stage,
                object,
                Cause::Inconsistent(format!("{key} vanished after it was written")),
            )
        })
}

/// Sends the merge message of a run: FIFO per object, deduplicated by its deterministic id.
pub(crate) async fn send_merge<Q: Queue + ?Sized>(
    queue: &Q,
    merge: &MergeMessage,
    stage: Stage,
) -> Result<(), StageError> {
    queue
        .send(
            OutgoingMessage::new(merge.to_body(), merge.message_id())
                .in_group(merge.object.as_str()),
        )
        .await
        .at(stage, &merge.object)
}

/// Records that the object's formula fields are current as of `until`, unless a later read is
/// recorded already (a late run never moves the record back).
pub(crate) async fn record_formula_refresh<B: BlobStore + ?Sized>(
    blobs: &B,
    stage: Stage,
    object: &ObjectName,
    until: DateTime<Utc>,
) -> Result<(), StageError> {
    record_read_until(blobs, stage, object, &formula_refresh_key(object), until).await?;
    super::object_state::update_state(blobs, object, |state| {
        state.formulas_until = state.formulas_until.max(Some(until));
    })
    .await;
    Ok(())
}

/// Records that the object's Ids were reconciled with Salesforce as of `until` (never back).
pub(crate) async fn record_reconciliation<B: BlobStore + ?Sized>(
    blobs: &B,
    stage: Stage,
    object: &ObjectName,
    until: DateTime<Utc>,
) -> Result<(), StageError> {
    record_read_until(blobs, stage, object, &reconcile_key(object), until).await?;
    super::object_state::update_state(blobs, object, |state| {
        state.reconciled_until = state.reconciled_until.max(Some(until));
    })
    .await;
    Ok(())
}

async fn record_read_until<B: BlobStore + ?Sized>(
    blobs: &B,
    stage: Stage,
    object: &ObjectName,
    key: &str,
    until: DateTime<Utc>,
) -> Result<(), StageError> {
    let recorded = read_json::<FormulaRefreshMarker, _>(blobs, key)
        .await
        .at(stage, object)?;
    if recorded.is_some_and(|r| r.until >= until) {
        return Ok(());
    }
    blobs
        .put(
            key,
            crate::ports::bytes_stream(to_json(&FormulaRefreshMarker { until })),
        )
        .await
        .at(stage, object)?;
    Ok(())
}

/// The manifests of parts 1 to `parts` of a run, each required: a missing one is a part still
/// on its way (retryable).
pub(crate) async fn read_manifests<B: BlobStore + ?Sized>(
    blobs: &B,
    stage: Stage,
    object: &ObjectName,
    layout: &RunLayout,
    parts: u32,
) -> Result<Vec<PartManifest>, StageError> {
    let mut manifests = Vec::with_capacity(parts as usize);
    for part in 1..=parts {
        let manifest = read_json(blobs, &layout.manifest(part))
            .await
            .at(stage, object)?
            .ok_or_else(|| {
                StageError::new(
                    stage,
                    object,
                    Cause::Inconsistent(format!("part {part} of {parts} has no manifest")),
                )
            })?;
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// The job id recorded for a run read with the REST API instead of a Bulk job.
pub const REST_QUERY_JOB: &str = "rest-query";

/// A Bulk job answered 404. If the run's merge was requested meanwhile, the job was deleted on
/// purpose and this message is a late duplicate. If the run no longer records this job, the job
/// failed and was forgotten (that failure is already dead-lettered with its reason), or a newer
/// job replaced it: this message is a stale duplicate of its chain. Otherwise the job vanished
/// before its results were stored: starting another job could mix pages of two jobs, so the run
/// of this object stops.
pub(crate) async fn job_gone<B: BlobStore + ?Sized>(
    blobs: &B,
    stage: Stage,
    object: crate::contracts::ObjectName,
    run_id: &crate::contracts::RunId,
    job_id: &str,
) -> Result<(), StageError> {
    let layout = RunLayout::new(&object, run_id);
    if blobs
        .head(&layout.merge_requested())
        .await
        .at(stage, &object)?
        .is_some()
    {
        tracing::info!(%run_id, %object, job_id, "late duplicate: the job is done and deleted");
        return Ok(());
    }
    let recorded = read_json::<BulkJobRecord, _>(blobs, &layout.bulk_job())
        .await
        .at(stage, &object)?;
    if recorded.is_none_or(|r| r.job_id != job_id) {
        tracing::info!(%run_id, %object, job_id, "stale duplicate: the run no longer uses this job");
        return Ok(());
    }
    Err(StageError::new(
        stage,
        &object,
        Cause::Inconsistent(format!(
            "Bulk job {job_id} vanished before all its results were stored (deleted in Salesforce, \
             or older than 7 days); run this object again with a manual event"
        )),
    )
    .permanent())
}
