//! One way to run a queue-triggered stage, whoever receives its messages (a Lambda function's SQS
//! batch, or the local pipeline's workers): read the body as the stage's message, call the
//! handler, and let [`crate::worker::process`] settle the message by the outcome. Each handling
//! is metered and leaves its usage record ([`crate::usage`]) in the blob store.

use async_trait::async_trait;

use super::extract::{ExtractDeps, ExtractOutcome, handle_extract};
use super::merge::{MergeDeps, MergedRecord, handle_merge};
use super::upload::{UploadDeps, UploadOutcome, handle_upload};
use super::{Stage, StageError};
use crate::contracts::{Contract, ExtractMessage, MergeMessage, ObjectName, RunId, UploadMessage};
use crate::ports::{BlobStore, Queue, Salesforce, Warehouse};
use crate::usage::{UsageRecord, metered};

/// A stage's handler with everything it needs: a stage's dependencies ([`ExtractDeps`],
/// [`UploadDeps`], [`MergeDeps`]) are its handler.
#[async_trait]
pub trait StageHandler: Send + Sync {
    const STAGE: Stage;
    type Message: Contract + Send + Sync;
    type Outcome: Send;
    async fn handle(&self, message: &Self::Message) -> Result<Self::Outcome, StageError>;
    /// The object and run a message belongs to.
    fn run_of(message: &Self::Message) -> (&ObjectName, &RunId);
    /// Rows a handling moved (records stored, rows merged), for its usage record.
    fn rows(_outcome: &Self::Outcome) -> u64 {
        0
    }
    /// Rows a handling changed in the warehouse (merge only).
    fn rows_changed(_outcome: &Self::Outcome) -> u64 {
        0
    }
    /// Keeps a handling's usage record where the stage keeps its files.
    async fn keep_usage(&self, record: UsageRecord);
}

/// Reads a received body as the stage's message and handles it. A body that is not one is a
/// permanent failure, named as the stage's.
pub async fn run_stage<H: StageHandler + ?Sized>(
    handler: &H,
    body: &str,
) -> Result<(H::Message, H::Outcome), StageError> {
    let message = H::Message::from_body(body)
        .map_err(|e| StageError::new(H::STAGE, "(unreadable message)", e))?;
    let started_at = chrono::Utc::now();
    let (outcome, usage, elapsed) = metered(handler.handle(&message)).await;
    let (object, run) = H::run_of(&message);
    let record = UsageRecord {
        stage: H::STAGE.to_string(),
        object: object.to_string(),
        run_id: run.to_string(),
        started_at,
        duration_ms: elapsed.as_millis() as u64,
        succeeded: outcome.is_ok(),
        rows: outcome.as_ref().map_or(0, H::rows),
        rows_changed: outcome.as_ref().map_or(0, H::rows_changed),
        freshness_lag_seconds: None,
        usage,
    };
    handler.keep_usage(record).await;
    Ok((message, outcome?))
}

#[async_trait]
impl<S, B, Q> StageHandler for ExtractDeps<'_, S, B, Q>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    const STAGE: Stage = Stage::Extract;
    type Message = ExtractMessage;
    type Outcome = ExtractOutcome;
    async fn handle(&self, message: &ExtractMessage) -> Result<ExtractOutcome, StageError> {
        handle_extract(self, message).await
    }
    fn run_of(message: &ExtractMessage) -> (&ObjectName, &RunId) {
        (&message.object, &message.run_id)
    }
    async fn keep_usage(&self, record: UsageRecord) {
        record.keep(self.blobs).await
    }
}

#[async_trait]
impl<S, B, Q> StageHandler for UploadDeps<'_, S, B, Q>
where
    S: Salesforce + ?Sized,
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    const STAGE: Stage = Stage::Upload;
    type Message = UploadMessage;
    type Outcome = UploadOutcome;
    async fn handle(&self, message: &UploadMessage) -> Result<UploadOutcome, StageError> {
        handle_upload(self, message).await
    }
    fn run_of(message: &UploadMessage) -> (&ObjectName, &RunId) {
        (&message.object, &message.run_id)
    }
    fn rows(outcome: &UploadOutcome) -> u64 {
        outcome.manifest.records
    }
    async fn keep_usage(&self, record: UsageRecord) {
        record.keep(self.blobs).await
    }
}

#[async_trait]
impl<B, W> StageHandler for MergeDeps<'_, B, W>
where
    B: BlobStore + ?Sized,
    W: Warehouse + ?Sized,
{
    const STAGE: Stage = Stage::Merge;
    type Message = MergeMessage;
    type Outcome = MergedRecord;
    async fn handle(&self, message: &MergeMessage) -> Result<MergedRecord, StageError> {
        handle_merge(self, message).await
    }
    fn run_of(message: &MergeMessage) -> (&ObjectName, &RunId) {
        (&message.object, &message.run_id)
    }
    fn rows(record: &MergedRecord) -> u64 {
        record.report.rows_read
    }
    fn rows_changed(record: &MergedRecord) -> u64 {
        record.report.rows_changed
    }
    async fn keep_usage(&self, record: UsageRecord) {
        record.keep(self.blobs).await
    }
}
