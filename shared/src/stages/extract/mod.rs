//! extract: describe the object, start a Bulk API 2.0 query job, wait for it by re-queueing its own
//! message with a growing delay (never sleeping in a Lambda), then fan out one upload message per
//! result page.

mod check;
mod plan;
mod split;

use check::*;
pub use plan::*;
use split::*;

use std::time::Duration;

use super::{Cause, Stage, StageError, StageResultExt};
use crate::contracts::{
    BulkJobProgress, BulkJobRecord, CONTRACT_VERSION, Contract, ExtractMessage, ExtractedRecord,
    Mode, RunLayout, UploadMessage,
};
use crate::ports::salesforce::Salesforce;
use crate::ports::{BlobStore, OutgoingMessage, Queue};
use crate::stages::records::{
    REST_QUERY_JOB, read_json, record_formula_refresh, record_reconciliation, to_json,
};

#[derive(Debug, Clone)]
pub struct ExtractConfig {
    /// Records per result page on the locator chain (`maxRecords`): one upload message, one
    /// file. `resultPages` takes no `maxRecords`; Salesforce sizes its pages.
    pub page_records: u64,
    /// Fan result pages out with `resultPages` (read in parallel, sized by Salesforce); `false`
    /// follows the locator chain, one page after another, each at most `page_records`
    /// (`SFPIPE_RESULT_PAGES=chain`): a bound on what one upload invocation must store.
    pub result_pages: bool,
    /// Delay before the first check of a new job; doubles with every check.
    pub first_poll_delay: Duration,
    /// The longest delay between checks (SQS allows 900 s).
    pub max_poll_delay: Duration,
    /// A Bulk job still running this long after Salesforce created it is aborted and its
    /// message dead-lettered with the job's id, so a stuck job is seen (the DLQ alarm) instead of
    /// being polled for ever.
    pub bulk_job_deadline: Duration,
    /// Objects always read with the REST API (objects Bulk refuses are read with it anyway).
    pub rest_objects: Vec<String>,
    /// Per-object field lists; objects not named get every field Bulk can select.
    pub fields: std::collections::BTreeMap<String, FieldSelection>,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            page_records: 50_000,
            result_pages: true,
            first_poll_delay: Duration::from_secs(5),
            max_poll_delay: Duration::from_secs(900),
            bulk_job_deadline: Duration::from_secs(6 * 3600),
            rest_objects: Vec::new(),
            fields: std::collections::BTreeMap::new(),
        }
    }
}

impl ExtractConfig {
    /// The delay before check number `polls + 1`.
    pub fn poll_delay(&self, polls: u32) -> Duration {
        let factor = 1u32.checked_shl(polls.min(20)).unwrap_or(u32::MAX);
        self.first_poll_delay
            .saturating_mul(factor)
            .min(self.max_poll_delay)
    }
}

/// What the extract stage needs. Queues are separate so a deployment can point each at its own.
pub struct ExtractDeps<'a, S: ?Sized, B: ?Sized, Q: ?Sized> {
    pub salesforce: &'a S,
    pub blobs: &'a B,
    pub extract_queue: &'a Q,
    pub upload_queue: &'a Q,
    pub merge_queue: &'a Q,
    pub config: &'a ExtractConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractOutcome {
    /// A job was started; its first check is queued.
    Started { job_id: String },
    /// The job is still running; the next check is queued.
    Waiting { job_id: String, polls: u32 },
    /// The job finished; one upload message per page was queued.
    FannedOut { job_id: String, parts: u32 },
    /// The job is complete and its result pages are being listed: `listed` so far; the listing
    /// goes on in the next invocation.
    Listing { job_id: String, listed: usize },
    /// A late duplicate: the run's uploads are all done, so there is nothing left to do.
    AlreadyDone,
    /// The query timed out; each half of the window was queued as a run of its own.
    Split,
    /// A formula refresh of an object that has no formula fields: recorded as done, no job.
    NothingToRefresh,
}

pub async fn handle_extract<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
) -> Result<ExtractOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let layout = RunLayout::new(&message.object, &message.run_id);
    if deps
        .blobs
        .head(&layout.merge_requested())
        .await
        .at(Stage::Extract, &message.object)?
        .is_some()
    {
        tracing::info!(run_id = %message.run_id, object = %message.object, "late duplicate: the run is already extracted");
        return Ok(ExtractOutcome::AlreadyDone);
    }
    match &message.bulk_job {
        None => start(deps, message).await,
        Some(progress) => check(deps, message, progress).await,
    }
}

async fn start<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
) -> Result<ExtractOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let at = |e: Cause| StageError::new(Stage::Extract, object, e);
    let layout = RunLayout::new(object, &message.run_id);

    let job = match read_json::<BulkJobRecord, _>(deps.blobs, &layout.bulk_job()).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            let Some((schema, soql)) = plan(deps, message, &layout).await? else {
                let until = message.window.until;
                if message.mode == Mode::Reconcile {
                    record_reconciliation(deps.blobs, Stage::Extract, object, until).await?;
                    tracing::info!(run_id = %message.run_id, %object, "no IsDeleted field: nothing to reconcile");
                } else {
                    record_formula_refresh(deps.blobs, Stage::Extract, object, until).await?;
                    tracing::info!(run_id = %message.run_id, %object, "no formula fields: nothing to refresh");
                }
                return Ok(ExtractOutcome::NothingToRefresh);
            };
            deps.salesforce.check_budget().at(Stage::Extract, object)?;
            let configured_rest = deps
                .config
                .rest_objects
                .iter()
                .any(|o| o.eq_ignore_ascii_case(object.as_str()));
            // A small change goes over REST unless its query is too wide for a request URI (with
            // room for the headers): then a Bulk job reads it, as it reads a large one.
            let small_change = message.rest
                && deps.salesforce.query_all_path(&soql).len() + REST_HEADER_ROOM
                    <= MAX_REST_URI_BYTES;
            let job_id = if configured_rest || small_change {
                REST_QUERY_JOB.to_string()
            } else {
                // Deleted rows arrive flagged (IsDeleted) through queryAll.
                match deps.salesforce.create_query_job(&soql, true).await {
                    Ok(created) => created.id,
                    Err(error) if error.code() == Some("QUERY_TIMEOUT") => {
                        return split(deps, message, schema.cursor()).await;
                    }
                    Err(error) if error.is_bulk_unsupported() => {
                        tracing::info!(%object, %error, "the Bulk API refuses this object; reading it with the REST API");
                        REST_QUERY_JOB.to_string()
                    }
                    Err(error) => return Err(StageError::new(Stage::Extract, object, error)),
                }
            };
            if job_id == REST_QUERY_JOB {
                check_rest_uri(deps, object, &soql, schema.columns.len())?;
            }
            let record = BulkJobRecord {
                job_id,
                soql,
                mode: Some(message.mode),
                window: Some(message.window),
                started_at: Some(chrono::Utc::now()),
            };
            let stored = deps
                .blobs
                .put_if_absent(&layout.bulk_job(), to_json(&record))
                .await
                .at(Stage::Extract, object)?;
            if stored {
                tracing::info!(run_id = %message.run_id, %object, job_id = %record.job_id, columns = schema.columns.len(), "started extraction");
                record
            } else {
                // A duplicate of this message got there first: use its job, drop ours.
                if record.job_id != REST_QUERY_JOB {
                    if let Err(error) = deps.salesforce.abort_job(&record.job_id).await {
                        tracing::warn!(%object, job_id = %record.job_id, %error, "could not abort a duplicate bulk job");
                    }
                    let _ = deps.salesforce.delete_job(&record.job_id).await;
                }
                read_json::<BulkJobRecord, _>(deps.blobs, &layout.bulk_job())
                    .await
                    .map_err(at)?
                    .ok_or_else(|| at(Cause::Inconsistent("bulk job record vanished".into())))?
            }
        }
        Err(error) => return Err(at(error)),
    };
    if job.job_id == REST_QUERY_JOB {
        // No job to wait for: uploads page through the REST query, each part queuing the next
        // at its cursor, as many as the uploads' deadlines need.
        let upload = UploadMessage {
            v: CONTRACT_VERSION,
            run_id: message.run_id.clone(),
            object: object.clone(),
            job_id: REST_QUERY_JOB.to_string(),
            part: 1,
            parts: 0,
            result_url: deps.salesforce.query_all_path(&job.soql),
            mode: message.mode,
            window: message.window,
            chain: true,
            job_records: None,
        };
        record_extracted(deps.blobs, message, REST_QUERY_JOB, None, 1).await?;
        deps.upload_queue
            .send(OutgoingMessage::new(upload.to_body(), upload.message_id()))
            .await
            .at(Stage::Extract, object)?;
        return Ok(ExtractOutcome::FannedOut {
            job_id: job.job_id,
            parts: 1,
        });
    }
    let progress = BulkJobProgress {
        job_id: job.job_id.clone(),
        polls: 0,
    };
    let delay = deps.config.poll_delay(progress.polls);
    requeue(deps, message, progress, delay).await?;
    Ok(ExtractOutcome::Started { job_id: job.job_id })
}

/// The first of a run's three counts (see [`ExtractedRecord`]); the first writer's stays.
async fn record_extracted<B: BlobStore + ?Sized>(
    blobs: &B,
    message: &ExtractMessage,
    job_id: &str,
    salesforce_records: Option<u64>,
    parts: u32,
) -> Result<(), StageError> {
    let record = ExtractedRecord {
        job_id: job_id.to_string(),
        salesforce_records,
        parts,
        completed_at: chrono::Utc::now(),
    };
    blobs
        .put_if_absent(
            &RunLayout::new(&message.object, &message.run_id).extracted(),
            to_json(&record),
        )
        .await
        .at(Stage::Extract, &message.object)?;
    Ok(())
}

/// Queues the run's check again after `delay`: the job's poll interval while it runs, none when
/// it is complete and the next invocation goes on with what this one could not finish.
async fn requeue<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    progress: BulkJobProgress,
    delay: Duration,
) -> Result<(), StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let next = ExtractMessage {
        bulk_job: Some(progress),
        ..message.clone()
    };
    deps.extract_queue
        .send(OutgoingMessage::new(next.to_body(), next.message_id()).delayed(delay))
        .await
        .at(Stage::Extract, &message.object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::salesforce::{FieldDescribe, ObjectDescribe};

    #[test]
    fn poll_delay_grows_and_is_capped() {
        let config = ExtractConfig {
            first_poll_delay: Duration::from_secs(5),
            max_poll_delay: Duration::from_secs(900),
            ..ExtractConfig::default()
        };
        assert_eq!(config.poll_delay(0), Duration::from_secs(5));
        assert_eq!(config.poll_delay(1), Duration::from_secs(10));
        assert_eq!(config.poll_delay(3), Duration::from_secs(40));
        assert_eq!(config.poll_delay(8), Duration::from_secs(900));
        assert_eq!(config.poll_delay(500), Duration::from_secs(900));
    }

    #[test]
    fn a_field_list_keeps_the_cursor_field_a_history_object_is_windowed_on() {
        let field = |name: &str, field_type: &str| FieldDescribe {
            name: name.into(),
            field_type: field_type.into(),
            length: 0,
            precision: 0,
            scale: 0,
            digits: 0,
            calculated: false,
            nillable: false,
            compound_field_name: None,
        };
        let describe = ObjectDescribe {
            name: "AccountHistory".into(),
            queryable: true,
            fields: vec![
                field("Id", "id"),
                field("IsDeleted", "boolean"),
                field("AccountId", "reference"),
                field("CreatedDate", "datetime"),
                field("Field", "picklist"),
            ],
        };
        let selection = FieldSelection {
            include: vec!["AccountId".into()],
            exclude: Vec::new(),
        };
        let names: Vec<&str> = selection
            .apply(&describe)
            .unwrap()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["Id", "IsDeleted", "AccountId", "CreatedDate"]);
    }
}
