//! One way to run a queue-triggered stage, whoever receives its messages (a Lambda function's SQS
//! batch, or the local pipeline's workers): read the body as the stage's message, call the
//! handler, and let [`crate::worker::process`] settle the message by the outcome.

use async_trait::async_trait;

use super::extract::{ExtractDeps, ExtractOutcome, handle_extract};
use super::merge::{MergeDeps, MergedRecord, handle_merge};
use super::upload::{UploadDeps, UploadOutcome, handle_upload};
use super::{Stage, StageError};
use crate::contracts::{Contract, ExtractMessage, MergeMessage, UploadMessage};
use crate::ports::{BlobStore, Queue, Salesforce, Warehouse};

/// A stage's handler with everything it needs: a stage's dependencies ([`ExtractDeps`],
/// [`UploadDeps`], [`MergeDeps`]) are its handler.
#[async_trait]
pub trait StageHandler: Send + Sync {
    const STAGE: Stage;
    type Message: Contract + Send + Sync;
    type Outcome: Send;
    async fn handle(&self, message: &Self::Message) -> Result<Self::Outcome, StageError>;
}

/// Reads a received body as the stage's message and handles it. A body that is not one is a
/// permanent failure, named as the stage's.
pub async fn run_stage<H: StageHandler + ?Sized>(
    handler: &H,
    body: &str,
) -> Result<(H::Message, H::Outcome), StageError> {
    let message = H::Message::from_body(body)
        .map_err(|e| StageError::new(H::STAGE, "(unreadable message)", e))?;
    let outcome = handler.handle(&message).await?;
    Ok((message, outcome))
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
}
