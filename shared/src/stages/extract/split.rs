//! A query that timed out: its window is read in two halves, each a run of its own.

use crate::contracts::{Contract, ExtractMessage, Mode, RunLayout};
use crate::ports::salesforce::Salesforce;
use crate::ports::{BlobStore, OutgoingMessage, Queue};
use crate::stages::records::to_json;
use crate::stages::{Cause, Stage, StageError, StageResultExt};

use super::{ExtractDeps, ExtractOutcome};

/// The start assumed for a full window when it must be split (no Salesforce data is older).
pub(super) fn earliest_modstamp() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

/// The query timed out on this window: extract each half as a run of its own. Each half is
/// recorded as a hole until it is merged, so the watermark the other half moves cannot hide it.
pub(super) async fn split<S, B, Q>(
    deps: &ExtractDeps<'_, S, B, Q>,
    message: &ExtractMessage,
    cursor: Option<&str>,
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
    if cursor.is_none() {
        // No field orders its changes, so no window bounds the query: each half would run the
        // same whole query again, a Bulk job each.
        return Err(StageError::new(
            Stage::Extract,
            object,
            Cause::Inconsistent(format!(
                "the query of {object} timed out in Salesforce. {object} has no field that orders \
                 its changes (SystemModstamp, LastModifiedDate, CreatedDate), so it is read whole \
                 each run and cannot be split into smaller windows. Narrow its field list \
                 (SFPIPE_FIELDS, e.g. {{\"{object}\": {{\"exclude\": [...]}}}}), or take it off \
                 the schedule (SFPIPE_OBJECTS)"
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
