//! job-loader: one extract message per object, with the window each object is due for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Stage, StageError, StageResultExt};
use crate::contracts::{
    CONTRACT_VERSION, Contract, ExtractMessage, Mode, ObjectName, RunId, Window, rfc3339,
};
use crate::ports::{OutgoingMessage, Queue, Warehouse};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedExtract {
    pub object: ObjectName,
    pub mode: Mode,
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub run_id: RunId,
    pub queued: Vec<QueuedExtract>,
}

/// Queues one extract per object. Deterministic: the same request at the same trigger time over
/// the same warehouse state queues the same messages with the same ids.
pub async fn run_loader<Q, W>(
    extract_queue: &Q,
    warehouse: &W,
    config: &LoaderConfig,
    request: &LoadRequest,
    triggered_at: DateTime<Utc>,
) -> Result<LoadReport, StageError>
where
    Q: Queue + ?Sized,
    W: Warehouse + ?Sized,
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
                    Some(watermark) => (Mode::Incremental, Some(watermark - overlap)),
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
