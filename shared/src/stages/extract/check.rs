//! Checking a running Bulk job: wait, fan out its result pages, or fail and forget it.

use crate::contracts::{
    BulkJobProgress, CONTRACT_VERSION, Contract, ExtractMessage, MergeMessage, RunLayout,
    UploadMessage,
};
use crate::ports::salesforce::{JobState, Salesforce, SalesforceError};
use crate::ports::{BlobStore, OutgoingMessage, Queue};
use crate::stages::records::{job_gone, send_merge};
use crate::stages::{Cause, Stage, StageError, StageResultExt};

use super::{ExtractDeps, ExtractOutcome, record_extracted, requeue, split};

pub(super) async fn check<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    progress: &BulkJobProgress,
) -> Result<ExtractOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let job = match deps.salesforce.query_job(&progress.job_id).await {
        Ok(job) => job,
        Err(SalesforceError::Api { status: 404, .. }) => {
            return job_gone(
                deps.blobs,
                Stage::Extract,
                message.object.clone(),
                &message.run_id,
                &progress.job_id,
            )
            .await
            .map(|()| ExtractOutcome::AlreadyDone);
        }
        Err(error) => return Err(StageError::new(Stage::Extract, object, error)),
    };
    match job.state {
        JobState::JobComplete => {
            fan_out(
                deps,
                message,
                &progress.job_id,
                job.number_records_processed,
            )
            .await
        }
        JobState::Failed if job.timed_out() => {
            // Read the window in two halves, as when creation times out; then forget the job.
            // In that order: a split that failed midway is retried on the same failed job.
            tracing::info!(run_id = %message.run_id, %object, job_id = %progress.job_id, "the Bulk job timed out");
            let layout = RunLayout::new(object, &message.run_id);
            let schema: Option<crate::ports::TableSchema> =
                crate::stages::records::read_json(deps.blobs, &layout.schema())
                    .await
                    .at(Stage::Extract, object)?;
            // A run without its schema is an older one's: split as before.
            let cursor = schema
                .as_ref()
                .map_or(Some("SystemModstamp"), |s| s.cursor());
            let outcome = split(deps, message, cursor).await?;
            forget_job(deps, message, &progress.job_id).await?;
            Ok(outcome)
        }
        JobState::Failed | JobState::Aborted => {
            let failure = SalesforceError::JobFailed {
                job_id: progress.job_id.clone(),
                object: object.to_string(),
                state: format!("{:?}", job.state),
                message: job
                    .error_message
                    .unwrap_or_else(|| "no error message".into()),
            };
            forget_job(deps, message, &progress.job_id).await?;
            Err(StageError::new(Stage::Extract, object, failure))
        }
        JobState::Open | JobState::UploadComplete | JobState::InProgress
            if job.created_at().is_some_and(|created| {
                chrono::Utc::now().signed_duration_since(created)
                    > chrono::TimeDelta::from_std(deps.config.bulk_job_deadline)
                        .unwrap_or(chrono::TimeDelta::MAX)
            }) =>
        {
            if let Err(error) = deps.salesforce.abort_job(&progress.job_id).await {
                tracing::warn!(%object, job_id = %progress.job_id, %error, "could not abort a Bulk job past its deadline");
            }
            let failure = SalesforceError::JobFailed {
                job_id: progress.job_id.clone(),
                object: object.to_string(),
                state: format!("{:?} past its deadline", job.state),
                message: format!(
                    "created {}, still not complete after the {}-minute deadline \
                     (SFPIPE_BULK_JOB_DEADLINE_MINUTES); it was aborted",
                    job.created_date.as_deref().unwrap_or("?"),
                    deps.config.bulk_job_deadline.as_secs() / 60
                ),
            };
            forget_job(deps, message, &progress.job_id).await?;
            Err(StageError::new(Stage::Extract, object, failure))
        }
        JobState::Open | JobState::UploadComplete | JobState::InProgress => {
            let next = BulkJobProgress {
                job_id: progress.job_id.clone(),
                polls: progress.polls + 1,
            };
            requeue(deps, message, next).await?;
            Ok(ExtractOutcome::Waiting {
                job_id: progress.job_id.clone(),
                polls: progress.polls + 1,
            })
        }
    }
}

/// Forgets a job that will not complete, so a re-run of this object's run starts a new one. The
/// run's record goes first, and must go: a record left naming a deleted job would fail every later
/// check of the run as a vanished job. The job itself is deleted at best (Salesforce removes it
/// after seven days anyway).
pub(super) async fn forget_job<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    job_id: &str,
) -> Result<(), StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let layout = RunLayout::new(&message.object, &message.run_id);
    deps.blobs
        .delete(&layout.bulk_job())
        .await
        .at(Stage::Extract, &message.object)?;
    let _ = deps.salesforce.delete_job(job_id).await;
    Ok(())
}

pub(super) async fn fan_out<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    job_id: &str,
    records: Option<u64>,
) -> Result<ExtractOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let mut chain = false;
    let pages = match deps
        .salesforce
        .result_pages(job_id, deps.config.page_records)
        .await
    {
        Ok(pages) => pages,
        Err(SalesforceError::Api { status: 404, .. }) => {
            // Either the job is gone, or this API version has no resultPages.
            if deps.salesforce.query_job(job_id).await.is_err() {
                job_gone(
                    deps.blobs,
                    Stage::Extract,
                    object.clone(),
                    &message.run_id,
                    job_id,
                )
                .await?;
                return Ok(ExtractOutcome::AlreadyDone);
            }
            // The locator chain: each upload queues the next part with the locator its page
            // gave. How many parts there are is known only at the last page: Salesforce may send
            // fewer records than asked for.
            chain = true;
            vec![
                deps.salesforce
                    .results_path(job_id, None, deps.config.page_records),
            ]
        }
        Err(error) => return Err(StageError::new(Stage::Extract, object, error)),
    };
    let parts = u32::try_from(pages.len()).map_err(|_| {
        StageError::new(
            Stage::Extract,
            object,
            Cause::Inconsistent(format!("{} result pages is too many", pages.len())),
        )
    })?;
    record_extracted(deps.blobs, message, job_id, records, parts).await?;
    if parts == 0 {
        // Nothing to upload: the merge still runs, so the table and the run's record exist.
        let layout = RunLayout::new(object, &message.run_id);
        let merge = MergeMessage {
            v: CONTRACT_VERSION,
            run_id: message.run_id.clone(),
            object: object.clone(),
            parts: 0,
            schema_key: layout.schema(),
            mode: message.mode,
            window: message.window,
        };
        send_merge(deps.merge_queue, &merge, Stage::Extract).await?;
    }
    for (index, result_url) in pages.into_iter().enumerate() {
        let upload = UploadMessage {
            v: CONTRACT_VERSION,
            run_id: message.run_id.clone(),
            object: object.clone(),
            job_id: job_id.to_string(),
            part: index as u32 + 1,
            parts: if chain { 0 } else { parts },
            result_url,
            mode: message.mode,
            window: message.window,
            chain,
            job_records: records,
        };
        upload.check().at(Stage::Extract, object)?;
        deps.upload_queue
            .send(OutgoingMessage::new(upload.to_body(), upload.message_id()))
            .await
            .at(Stage::Extract, object)?;
    }
    tracing::info!(run_id = %message.run_id, %object, job_id, parts, "bulk job complete; queued uploads");
    Ok(ExtractOutcome::FannedOut {
        job_id: job_id.to_string(),
        parts,
    })
}
