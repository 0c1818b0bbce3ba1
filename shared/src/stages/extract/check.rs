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
            let delay = deps.config.poll_delay(next.polls);
            requeue(deps, message, next, delay).await?;
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

/// Upload messages sent at once by a fan-out.
const SENDS_AT_ONCE: usize = 16;

/// How far listing a job's result pages got.
enum Listed {
    /// Every page link, in order.
    All(Vec<String>),
    /// The invocation ran short of time after `listed` links; the list so far is kept and the
    /// extract message queued again to go on.
    ContinuesIn { listed: usize },
}

/// What listing a job's result pages has found so far, kept between invocations.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct ResultPagesListing {
    pub links: Vec<String>,
    /// Where the list goes on; `None` when it is done.
    pub next: Option<String>,
}

/// Lists the job's result pages, one `resultPages` answer (five links) after another, while
/// the invocation's deadline allows: an object of thousands of pages takes hundreds of calls.
/// Short of time, the list so far is kept ([`RunLayout::result_pages`]) and the run's check
/// message queued again, without delay, to go on from there.
async fn list_result_pages<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    job_id: &str,
) -> Result<Result<Listed, SalesforceError>, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let layout = RunLayout::new(object, &message.run_id);
    let key = layout.result_pages();
    let kept = crate::stages::records::read_json::<ResultPagesListing, _>(deps.blobs, &key)
        .await
        .at(Stage::Extract, object)?;
    let started = kept.is_some();
    let mut listing = kept.unwrap_or_default();
    if started && listing.next.is_none() {
        return Ok(Ok(Listed::All(listing.links)));
    }
    let mut slowest = std::time::Duration::ZERO;
    let mut asked_any = false;
    loop {
        if asked_any && !crate::deadline::allows(slowest * 2) {
            break;
        }
        let asked = std::time::Instant::now();
        let answer = match deps
            .salesforce
            .result_pages(job_id, listing.next.as_deref())
            .await
        {
            Ok(answer) => answer,
            Err(error) => return Ok(Err(error)),
        };
        slowest = slowest.max(asked.elapsed());
        asked_any = true;
        listing.links.extend(answer.links);
        listing.next = answer.next;
        if listing.next.is_none() {
            return Ok(Ok(Listed::All(listing.links)));
        }
    }
    let listed = listing.links.len();
    deps.blobs
        .put(
            &key,
            crate::ports::bytes_stream(crate::stages::records::to_json(&listing)),
        )
        .await
        .at(Stage::Extract, object)?;
    if let Some(progress) = &message.bulk_job {
        let next = BulkJobProgress {
            job_id: progress.job_id.clone(),
            polls: progress.polls + 1,
        };
        requeue(deps, message, next, std::time::Duration::ZERO).await?;
    }
    tracing::info!(run_id = %message.run_id, %object, job_id, listed, "short of time: the result pages listed so far are kept, and the listing goes on in the next invocation");
    Ok(Ok(Listed::ContinuesIn { listed }))
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
    // The locator chain: each upload queues the next part with the locator its page gave. How
    // many parts there are is known only at the last page: Salesforce may send fewer records
    // than asked for.
    let chain_start = || {
        vec![
            deps.salesforce
                .results_path(job_id, None, deps.config.page_records),
        ]
    };
    let pages = if !deps.config.result_pages {
        // Configured (SFPIPE_RESULT_PAGES=chain): pages no larger than page_records.
        chain = true;
        chain_start()
    } else {
        match list_result_pages(deps, message, job_id).await? {
            Ok(Listed::All(pages)) => pages,
            Ok(Listed::ContinuesIn { listed }) => {
                return Ok(ExtractOutcome::Listing {
                    job_id: job_id.to_string(),
                    listed,
                });
            }
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
                chain = true;
                chain_start()
            }
            Err(error) => return Err(StageError::new(Stage::Extract, object, error)),
        }
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
    let uploads = pages
        .into_iter()
        .enumerate()
        .map(|(index, result_url)| UploadMessage {
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
        })
        .collect::<Vec<_>>();
    // Thousands of pages are queued in seconds, several sends at once.
    for batch in uploads.chunks(SENDS_AT_ONCE) {
        for sent in futures::future::join_all(batch.iter().map(|upload| async move {
            upload.check().at(Stage::Extract, object)?;
            deps.upload_queue
                .send(OutgoingMessage::new(upload.to_body(), upload.message_id()))
                .await
                .at(Stage::Extract, object)
        }))
        .await
        {
            sent?;
        }
    }
    tracing::info!(run_id = %message.run_id, %object, job_id, parts, "bulk job complete; queued uploads");
    Ok(ExtractOutcome::FannedOut {
        job_id: job_id.to_string(),
        parts,
    })
}
