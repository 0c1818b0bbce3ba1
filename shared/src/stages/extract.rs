//! extract: describe the object, start a Bulk API 2.0 query job, wait for it by re-queueing its own
//! message with a growing delay (never sleeping in a Lambda), then fan out one upload message per
//! result page.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::records::{
    REST_QUERY_JOB, job_gone, read_json, record_formula_refresh, record_reconciliation, send_merge,
    to_json,
};
use super::soql::{extraction_query, reconciliation_query};
use super::{Cause, Stage, StageError, StageResultExt};
use crate::contracts::{
    BulkJobProgress, BulkJobRecord, CONTRACT_VERSION, Contract, ExtractMessage, ExtractedRecord,
    MergeMessage, Mode, RunLayout, UploadMessage,
};
use crate::ports::salesforce::{
    FieldDescribe, JobState, ObjectDescribe, Salesforce, SalesforceError,
};
use crate::ports::{BlobStore, OutgoingMessage, Queue, TableSchema};

#[derive(Debug, Clone)]
pub struct ExtractConfig {
    /// Records per result page (`maxRecords`): one upload message, one file.
    pub page_records: u64,
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

/// Which fields of an object to extract. Id, SystemModstamp and IsDeleted are always kept: the
/// merge needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSelection {
    /// Only these fields (empty: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Never these fields.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Fields the merge relies on, kept whatever a selection says, with the object's cursor field
/// (SystemModstamp, or CreatedDate on a history object).
const REQUIRED_FIELDS: [&str; 2] = ["Id", "IsDeleted"];

impl FieldSelection {
    /// The selected fields of `describe`, in describe order; an unknown name is an error.
    pub fn apply<'d>(
        &self,
        describe: &'d ObjectDescribe,
    ) -> Result<Vec<&'d FieldDescribe>, String> {
        if let Some(unknown) = self
            .include
            .iter()
            .chain(&self.exclude)
            .find(|name| describe.field(name).is_none())
        {
            return Err(format!(
                "field {unknown} in the configured field list is not a field of {}: fix the list",
                describe.name
            ));
        }
        let cursor = describe.cursor_field();
        Ok(describe
            .bulk_fields()
            .into_iter()
            .filter(|f| {
                let required =
                    REQUIRED_FIELDS.contains(&f.name.as_str()) || cursor == Some(f.name.as_str());
                required
                    || ((self.include.is_empty() || self.include.contains(&f.name))
                        && !self.exclude.contains(&f.name))
            })
            .collect())
    }
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            page_records: 50_000,
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
            let job_id = if deps
                .config
                .rest_objects
                .iter()
                .any(|o| o == object.as_str())
            {
                REST_QUERY_JOB.to_string()
            } else {
                // Deleted rows arrive flagged (IsDeleted) through queryAll.
                match deps.salesforce.create_query_job(&soql, true).await {
                    Ok(created) => created.id,
                    Err(error) if error.code() == Some("QUERY_TIMEOUT") => {
                        return split(deps, message).await;
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
        // No job to wait for: one upload pages through the REST query.
        let upload = UploadMessage {
            v: CONTRACT_VERSION,
            run_id: message.run_id.clone(),
            object: object.clone(),
            job_id: REST_QUERY_JOB.to_string(),
            part: 1,
            parts: 1,
            result_url: deps.salesforce.query_all_path(&job.soql),
            mode: message.mode,
            window: message.window,
            chain: false,
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
    requeue(deps, message, progress).await?;
    Ok(ExtractOutcome::Started { job_id: job.job_id })
}

/// The longest request URI Salesforce accepts.
pub const MAX_REST_URI_BYTES: usize = 16_384;

/// A REST query carries its SOQL in the URI, which Salesforce caps at 16,384 bytes: a wide
/// object's query would fail on every run. Refused at once, with the fix, rather than split over
/// several queries joined on Id: objects read over REST are the ones Bulk refuses (or configured
/// so), small by nature, and a join of pages would have to hold rows until their partners come.
fn check_rest_uri<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    object: &crate::contracts::ObjectName,
    soql: &str,
    fields: usize,
) -> Result<(), StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let length = deps.salesforce.query_all_path(soql).len();
    if length <= MAX_REST_URI_BYTES {
        return Ok(());
    }
    Err(StageError::new(
        Stage::Extract,
        object,
        Cause::Inconsistent(format!(
            "the REST query of {object} selects {fields} fields: a {length}-byte request URI, \
             over Salesforce's {MAX_REST_URI_BYTES}-byte limit. Exclude fields with SFPIPE_FIELDS \
             (e.g. {{\"{object}\": {{\"exclude\": [...]}}}}) until it fits, or read it with \
             the Bulk API (remove it from SFPIPE_REST_OBJECTS) if Bulk supports it"
        )),
    )
    .permanent())
}

/// The start assumed for a full window when it must be split (no Salesforce data is older).
fn earliest_modstamp() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

/// The query timed out on this window: extract each half as a run of its own. Each half is
/// recorded as a hole until it is merged, so the watermark the other half moves cannot hide it.
async fn split<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
) -> Result<ExtractOutcome, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    if message.mode == Mode::Reconcile {
        // The Ids query is not bounded by the window, so halving the window cannot help.
        return Err(StageError::new(
            Stage::Extract,
            object,
            Cause::Inconsistent(format!(
                "the reconciliation's Ids-only query of {object} timed out in Salesforce, so \
                 its hard deletes were not looked for this time; it is tried again at the next \
                 interval. If it keeps timing out, turn it off for the object \
                 (SFPIPE_RECONCILE, e.g. \"24h, {object}=off\")"
            )),
        )
        .permanent());
    }
    let since = message.window.since.unwrap_or_else(earliest_modstamp);
    let until = message.window.until;
    let too_small = || {
        StageError::new(
            Stage::Extract,
            object,
            Cause::Inconsistent(format!(
                "the query timed out even on the window {} to {}; split no further: narrow the \
                 object's field list, or ask Salesforce for a custom index on SystemModstamp",
                crate::contracts::rfc3339(since),
                crate::contracts::rfc3339(until)
            )),
        )
        .permanent()
    };
    if until - since < chrono::Duration::seconds(60) {
        return Err(too_small());
    }
    let mid = since + (until - since) / 2;
    let halves = [(message.window.since, mid, 'a'), (Some(mid), until, 'b')];
    let mut children = Vec::new();
    for (half_since, half_until, name) in halves {
        let run_id = message.run_id.child(name).map_err(|_| too_small())?;
        let window = crate::contracts::Window {
            since: half_since,
            until: half_until,
        };
        let hole = crate::contracts::hole_key(object, &run_id);
        deps.blobs
            .put(&hole, crate::ports::bytes_stream(to_json(&window)))
            .await
            .at(Stage::Extract, object)?;
        // A late duplicate of this split: the half may be merged already.
        if deps
            .blobs
            .head(&RunLayout::new(object, &run_id).merged())
            .await
            .at(Stage::Extract, object)?
            .is_some()
        {
            deps.blobs.delete(&hole).await.at(Stage::Extract, object)?;
        }
        children.push(ExtractMessage {
            run_id,
            window,
            bulk_job: None,
            ..message.clone()
        });
    }
    for child in &children {
        deps.extract_queue
            .send(OutgoingMessage::new(child.to_body(), child.message_id()))
            .await
            .at(Stage::Extract, object)?;
    }
    // This window is covered by its halves now (when it was itself a half).
    deps.blobs
        .delete(&crate::contracts::hole_key(object, &message.run_id))
        .await
        .at(Stage::Extract, object)?;
    tracing::info!(run_id = %message.run_id, %object, mid = %crate::contracts::rfc3339(mid), "query timed out; split the window in two");
    Ok(ExtractOutcome::Split)
}

/// Describes the object and fixes the run's schema (first writer wins, so every retry of the run
/// extracts the same columns) and its SOQL. `None`: a formula refresh of an object without
/// formula fields.
async fn plan<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    layout: &RunLayout,
) -> Result<Option<(TableSchema, String)>, StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = &message.object;
    let global = deps
        .salesforce
        .describe_global()
        .await
        .at(Stage::Extract, object)?;
    if !global
        .sobjects
        .iter()
        // Salesforce matches object names in any case (`account` is Account); the configured
        // spelling names the run's keys, table and watermark, so one spelling should be kept.
        .any(|o| o.name.eq_ignore_ascii_case(object.as_str()) && o.queryable)
    {
        return Err(StageError::new(
            Stage::Extract,
            object,
            SalesforceError::UnknownObject {
                object: object.to_string(),
            },
        ));
    }
    let describe = deps
        .salesforce
        .describe(object.as_str())
        .await
        .at(Stage::Extract, object)?;
    if describe.field("Id").is_none() {
        return Err(StageError::new(
            Stage::Extract,
            object,
            Cause::Inconsistent(format!(
                "{object} has no Id field, so its rows cannot be merged"
            )),
        ));
    }
    let selected = deps
        .config
        .fields
        .get(object.as_str())
        .cloned()
        .unwrap_or_default()
        .apply(&describe)
        .map_err(|why| {
            StageError::new(Stage::Extract, object, Cause::Inconsistent(why)).permanent()
        })?;
    let selected = if message.mode == Mode::Reconcile {
        // Ids only; an object without IsDeleted cannot say which rows are live.
        if describe.field("IsDeleted").is_none() {
            return Ok(None);
        }
        selected.into_iter().filter(|f| f.name == "Id").collect()
    } else if message.mode == Mode::FormulaRefresh {
        // Only what identifies a row's version, and its formulas.
        let cursor = describe.cursor_field();
        let keep: Vec<_> = selected
            .into_iter()
            .filter(|f| f.calculated || f.name == "Id" || cursor == Some(f.name.as_str()))
            .collect();
        if !keep.iter().any(|f| f.calculated) {
            return Ok(None);
        }
        keep
    } else {
        selected
    };
    let described = TableSchema {
        object: object.clone(),
        columns: selected.iter().map(|f| f.column()).collect(),
    };
    deps.blobs
        .put_if_absent(&layout.schema(), to_json(&described))
        .await
        .at(Stage::Extract, object)?;
    let schema: TableSchema = read_json(deps.blobs, &layout.schema())
        .await
        .at(Stage::Extract, object)?
        .ok_or_else(|| {
            StageError::new(
                Stage::Extract,
                object,
                Cause::Inconsistent("schema vanished".into()),
            )
        })?;
    let fields: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let soql = if message.mode == Mode::Reconcile {
        reconciliation_query(object)
    } else {
        extraction_query(object, &fields, describe.cursor_field(), &message.window)
            .at(Stage::Extract, object)?
    };
    Ok(Some((schema, soql)))
}

async fn check<S, B, Q>(
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
            let outcome = split(deps, message).await?;
            forget_job(deps, message, &progress.job_id).await;
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
            forget_job(deps, message, &progress.job_id).await;
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
            forget_job(deps, message, &progress.job_id).await;
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

/// Forgets a job that will not complete, so a re-run of this object's run starts a new one.
async fn forget_job<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    job_id: &str,
) where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let layout = RunLayout::new(&message.object, &message.run_id);
    let _ = deps.blobs.delete(&layout.bulk_job()).await;
    let _ = deps.salesforce.delete_job(job_id).await;
}

async fn fan_out<S, B, Q>(
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

async fn requeue<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    progress: BulkJobProgress,
) -> Result<(), StageError>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let delay = deps.config.poll_delay(progress.polls);
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
