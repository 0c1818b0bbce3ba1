//! merge: load every part of one object's run into the warehouse and merge it, once, atomically.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::object_state::{fold_merge, merged_versions, update_state};
use super::records::{
    first_written, read_json, read_manifests, record_formula_refresh, record_reconciliation,
    to_json,
};
use super::{Cause, Stage, StageError, StageResultExt};
use crate::contracts::{ExtractedRecord, MergeMessage, Mode, RunId, RunLayout, Window};
use crate::ports::{BlobStore, MergeBatch, MergeReport, TableSchema, Warehouse};

pub struct MergeDeps<'a, B: ?Sized, W: ?Sized> {
    pub blobs: &'a B,
    pub warehouse: &'a W,
}

/// Written beside the run's files once it is merged: the run's record for people and the demo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedRecord {
    pub run_id: RunId,
    pub mode: Mode,
    pub window: Window,
    pub parts: u32,
    /// Records in the files, as Salesforce counted them.
    pub records: u64,
    /// Bytes of the files (gzipped).
    pub bytes: u64,
    pub report: MergeReport,
    pub merged_at: DateTime<Utc>,
    /// The Salesforce job the run read.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Records Salesforce reported for the job: with `records` and `report.rows_read`, the run's
    /// receipt (all three equal for a run that lost nothing).
    #[serde(default)]
    pub salesforce_records: Option<u64>,
}

impl MergedRecord {
    /// Where the run's three counts disagree, said plainly; `None` when they agree.
    pub fn receipt_mismatch(&self) -> Option<String> {
        let mut problems = Vec::new();
        if let Some(reported) = self.salesforce_records
            && reported != self.records
        {
            problems.push(format!(
                "Salesforce reported {reported} records but the parts hold {}",
                self.records
            ));
        }
        // A formula refresh of an object never loaded reads nothing on purpose.
        if self.report.rows_read != self.records && self.report != MergeReport::default() {
            problems.push(format!(
                "the parts hold {} records but the merge read {} rows",
                self.records, self.report.rows_read
            ));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

pub async fn handle_merge<B, W>(
    deps: &MergeDeps<'_, B, W>,
    message: &MergeMessage,
) -> Result<MergedRecord, StageError>
where
    B: BlobStore + ?Sized,
    W: Warehouse + ?Sized,
{
    let object = &message.object;
    let inconsistent =
        |what: String| StageError::new(Stage::Merge, object, Cause::Inconsistent(what));
    let layout = RunLayout::new(object, &message.run_id);
    let schema: TableSchema = read_json(deps.blobs, &message.schema_key)
        .await
        .at(Stage::Merge, object)?
        .ok_or_else(|| inconsistent(format!("schema {} is missing", message.schema_key)))?;
    if &schema.object != object {
        return Err(inconsistent(format!(
            "schema {} describes {}, not {object}",
            message.schema_key, schema.object
        )));
    }
    let mut files = Vec::with_capacity(message.parts as usize);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut extracted_at: Option<DateTime<Utc>> = None;
    for manifest in read_manifests(deps.blobs, Stage::Merge, object, &layout, message.parts).await?
    {
        records += manifest.records;
        bytes += manifest.bytes;
        extracted_at = Some(extracted_at.map_or(manifest.stored_at, |t| t.max(manifest.stored_at)));
        files.push(manifest.key);
    }
    let update_only = message.mode == Mode::FormulaRefresh;
    let reconcile_until = (message.mode == Mode::Reconcile).then_some(message.window.until);
    // A formula refresh and a reconciliation change loaded rows; of an object never loaded there
    // is nothing to change, and their columns alone must not make a table.
    let never_loaded = (update_only || reconcile_until.is_some())
        && deps
            .warehouse
            .watermark(object)
            .await
            .at(Stage::Merge, object)?
            .is_none();
    let report = if never_loaded {
        tracing::info!(run_id = %message.run_id, %object, "formula refresh or reconciliation of an object never loaded: nothing to change");
        MergeReport::default()
    } else {
        deps.warehouse
            .ensure_table(&schema)
            .await
            .at(Stage::Merge, object)?;
        let request = merge_request(deps.blobs, &layout, object).await?;
        let merged = deps
            .warehouse
            .merge(&MergeBatch {
                schema: schema.clone(),
                run_id: message.run_id.clone(),
                files: files.clone(),
                // Every delivery of the request sends the same statements.
                extracted_at: extracted_at.unwrap_or(request.requested_at),
                update_only,
                reconcile_until,
                request_id: Some(request.request_id.clone()),
                loaded_at: Some(request.requested_at),
            })
            .await;
        match merged {
            Ok(report) => report,
            Err(error) => {
                let error = StageError::new(Stage::Merge, object, error);
                // A failure no retry can fix is the request's outcome: forget the request, so a
                // redrive sends a new one (one that failed might be answered with that failure
                // again). Any other failure leaves its fate unknown (a timeout, a lost answer,
                // still running): the redelivery attaches to the same request.
                if !error.is_retryable() {
                    deps.blobs
                        .delete(&layout.merge_request())
                        .await
                        .at(Stage::Merge, object)?;
                }
                return Err(error);
            }
        }
    };
    let extracted = read_json::<ExtractedRecord, _>(deps.blobs, &layout.extracted())
        .await
        .at(Stage::Merge, object)?;
    let record = MergedRecord {
        job_id: extracted.as_ref().map(|e| e.job_id.clone()),
        salesforce_records: extracted.and_then(|e| e.salesforce_records),
        run_id: message.run_id.clone(),
        mode: message.mode,
        window: message.window,
        parts: message.parts,
        records,
        bytes,
        report,
        merged_at: Utc::now(),
    };
    if matches!(message.mode, Mode::Full | Mode::Incremental)
        && let Some(cursor) = schema.cursor()
    {
        // What the job-loader reads instead of the warehouse, and what its probe compares the
        // next window with.
        let versions = merged_versions(deps.blobs, &schema, &files, records)
            .await
            .unwrap_or_default();
        let newest = record.report.max_modstamp;
        let until = message.window.until;
        update_state(deps.blobs, object, |state| {
            fold_merge(state, cursor, newest, versions);
            state.merged_until = state.merged_until.max(Some(until));
        })
        .await;
    }
    // The first merge's record stays: a duplicate (which changes nothing) does not replace it.
    deps.blobs
        .put_if_absent(&layout.merged(), to_json(&record))
        .await
        .at(Stage::Merge, object)?;
    // A run that read every row up to its window's end: formulas are current as of then, and a
    // full run counts as a reconciliation for the schedule. The first half of a split full run
    // (an open hole until now) read only up to its middle, and records neither.
    let whole = message.window.since.is_none()
        && deps
            .blobs
            .head(&crate::contracts::hole_key(object, &message.run_id))
            .await
            .at(Stage::Merge, object)?
            .is_none();
    if whole && matches!(message.mode, Mode::Full | Mode::FormulaRefresh) {
        record_formula_refresh(deps.blobs, Stage::Merge, object, message.window.until).await?;
    }
    if whole && matches!(message.mode, Mode::Full | Mode::Reconcile) {
        record_reconciliation(deps.blobs, Stage::Merge, object, message.window.until).await?;
    }
    // A split run's window is covered now. After the record: a split that re-creates the hole
    // checks for the record and removes it again.
    deps.blobs
        .delete(&crate::contracts::hole_key(object, &message.run_id))
        .await
        .at(Stage::Merge, object)?;
    tracing::info!(run_id = %message.run_id, %object, rows_read = record.report.rows_read, rows_changed = record.report.rows_changed, "merged");
    Ok(record)
}

/// The merge message of a stored run, rebuilt from its files, to merge it again without calling
/// Salesforce (`sfpipe replay`). By the merge's own rules (newest version wins, the watermark
/// only moves forward), merging a run again changes nothing that a later run changed.
pub async fn replay_message<B: BlobStore + ?Sized>(
    blobs: &B,
    object: &crate::contracts::ObjectName,
    run_id: &RunId,
) -> Result<MergeMessage, StageError> {
    let layout = RunLayout::new(object, run_id);
    let inconsistent =
        |what: String| StageError::new(Stage::Merge, object, Cause::Inconsistent(what)).permanent();
    let merged: Option<MergedRecord> = read_json(blobs, &layout.merged())
        .await
        .at(Stage::Merge, object)?;
    let job: Option<crate::contracts::BulkJobRecord> = read_json(blobs, &layout.bulk_job())
        .await
        .at(Stage::Merge, object)?;
    let (mode, window, parts) = match (&merged, &job) {
        (Some(record), _) => (record.mode, record.window, record.parts),
        (
            None,
            Some(crate::contracts::BulkJobRecord {
                mode: Some(mode),
                window: Some(window),
                ..
            }),
        ) => {
            let extracted: Option<ExtractedRecord> = read_json(blobs, &layout.extracted())
                .await
                .at(Stage::Merge, object)?;
            let parts = extracted
                .map(|e| e.parts)
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    inconsistent(format!(
                        "run {run_id} of {object} is not extracted yet: there is nothing to replay"
                    ))
                })?;
            (*mode, *window, parts)
        }
        _ => {
            return Err(inconsistent(format!(
                "run {run_id} of {object} is not stored (no {} and no {}); `sfpipe status` lists the runs",
                layout.merged(),
                layout.bulk_job()
            )));
        }
    };
    Ok(MergeMessage {
        v: crate::contracts::CONTRACT_VERSION,
        run_id: run_id.clone(),
        object: object.clone(),
        parts,
        schema_key: layout.schema(),
        mode,
        window,
    })
}

/// The warehouse request of a run's merge: recorded before it is sent, so every delivery of the
/// merge sends the same one until it has an outcome.
#[derive(Debug, Serialize, Deserialize)]
struct MergeRequest {
    request_id: String,
    /// When it was first requested (the rows' load time). A record an older sfpipe wrote
    /// has none: its Unix epoch start is as fixed as any other value.
    #[serde(default)]
    requested_at: chrono::DateTime<Utc>,
}

async fn merge_request<B: BlobStore + ?Sized>(
    blobs: &B,
    layout: &RunLayout,
    object: &crate::contracts::ObjectName,
) -> Result<MergeRequest, StageError> {
    let key = layout.merge_request();
    if let Some(request) = read_json::<MergeRequest, _>(blobs, &key)
        .await
        .at(Stage::Merge, object)?
    {
        return Ok(request);
    }
    let fresh = MergeRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        requested_at: Utc::now(),
    };
    // A concurrent delivery may have recorded its own first: use whichever is stored.
    first_written(blobs, &key, fresh, Stage::Merge, object).await
}
