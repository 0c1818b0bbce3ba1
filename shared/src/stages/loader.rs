//! job-loader: one extract message per object, with the window each object is due for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Stage, StageError, StageResultExt};
use crate::contracts::{
    CONTRACT_VERSION, Contract, ExtractMessage, Mode, ObjectName, RunId, Window, holes_prefix,
    rfc3339,
};
use crate::ports::{BlobStore, OutgoingMessage, Queue, Warehouse};

/// What to load: the scheduled objects, or a manual backfill/re-run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRequest {
    pub objects: Vec<ObjectName>,
    pub mode: Mode,
    /// Backfill start; incremental runs otherwise start at the object's watermark.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Backfill end; otherwise a little before the trigger time.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// How far before the watermark an incremental window starts: rows committed late with an
    /// older SystemModstamp are still found; the merge makes reading them twice harmless.
    pub overlap: Duration,
    /// How far before the trigger time a window ends, so transactions still committing are read
    /// by the next run rather than missed.
    pub until_lag: Duration,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            overlap: Duration::from_secs(10 * 60),
            until_lag: Duration::from_secs(2 * 60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedExtract {
    pub object: ObjectName,
    pub mode: Mode,
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    pub run_id: RunId,
    pub queued: Vec<QueuedExtract>,
}

/// Queues one extract per object. Deterministic: the same request at the same trigger time over
/// the same warehouse state queues the same messages with the same ids.
pub async fn run_loader<Q, W, B>(
    extract_queue: &Q,
    warehouse: &W,
    blobs: &B,
    config: &LoaderConfig,
    request: &LoadRequest,
    triggered_at: DateTime<Utc>,
) -> Result<LoadReport, StageError>
where
    Q: Queue + ?Sized,
    W: Warehouse + ?Sized,
    B: BlobStore + ?Sized,
{
    let lag = chrono::Duration::from_std(config.until_lag).unwrap_or_default();
    let overlap = chrono::Duration::from_std(config.overlap).unwrap_or_default();
    let until = request.until.unwrap_or(triggered_at - lag);
    let objects: Vec<&str> = request.objects.iter().map(ObjectName::as_str).collect();
    let qualifier = format!(
        "{:?}|{}|{}|{}",
        request.mode,
        objects.join(","),
        request.since.map(rfc3339).unwrap_or_default(),
        rfc3339(until)
    );
    let run_id = RunId::for_trigger(triggered_at, &qualifier);
    let mut queued = Vec::new();
    for object in &request.objects {
        let (mode, since) = match (request.mode, request.since) {
            (Mode::Full, _) => (Mode::Full, None),
            (Mode::Incremental, Some(since)) => (Mode::Incremental, Some(since)),
            (Mode::Incremental, None) => {
                match warehouse
                    .watermark(object)
                    .await
                    .at(Stage::Loader, object)?
                {
                    Some(watermark) => {
                        let since = watermark - overlap;
                        match oldest_hole(blobs, object).await? {
                            // A half of a split window that is not merged yet: read it again.
                            Some(Window { since: None, .. }) => (Mode::Full, None),
                            Some(Window { since: Some(h), .. }) if h < since => {
                                (Mode::Incremental, Some(h))
                            }
                            _ => (Mode::Incremental, Some(since)),
                        }
                    }
                    // Never loaded: the first incremental run is a full one.
                    None => (Mode::Full, None),
                }
            }
        };
        let window = Window { since, until };
        if window.validate().is_err() {
            tracing::info!(%object, since = ?since, until = %rfc3339(until), "nothing new to extract: window is empty");
            continue;
        }
        let message = ExtractMessage {
            v: CONTRACT_VERSION,
            run_id: run_id.clone(),
            object: object.clone(),
            mode,
            window,
            bulk_job: None,
        };
        extract_queue
            .send(OutgoingMessage::new(
                message.to_body(),
                message.message_id(),
            ))
            .await
            .at(Stage::Loader, object)?;
        tracing::info!(run_id = %run_id, %object, ?mode, "queued extract");
        queued.push(QueuedExtract {
            object: object.clone(),
            mode,
            window,
        });
    }
    Ok(LoadReport { run_id, queued })
}

/// The open hole of `object` that starts earliest.
async fn oldest_hole<B: BlobStore + ?Sized>(
    blobs: &B,
    object: &ObjectName,
) -> Result<Option<Window>, StageError> {
    let mut oldest: Option<Window> = None;
    for hole in blobs
        .list(&holes_prefix(object))
        .await
        .at(Stage::Loader, object)?
    {
        let bytes = blobs.get_bytes(&hole.key).await.at(Stage::Loader, object)?;
        let window: Window = serde_json::from_slice(&bytes).map_err(|e| {
            StageError::new(
                Stage::Loader,
                object,
                crate::stages::Cause::Inconsistent(format!("{} is not a window: {e}", hole.key)),
            )
        })?;
        let earlier = match (&oldest, window.since) {
            (None, _) => true,
            (Some(Window { since: None, .. }), _) => false,
            (Some(_), None) => true,
            (Some(Window { since: Some(o), .. }), Some(w)) => w < *o,
        };
        if earlier {
            oldest = Some(window);
        }
    }
    Ok(oldest)
}
