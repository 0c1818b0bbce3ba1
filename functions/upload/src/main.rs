//! upload, on SQS: stream one result page to S3; the last part of a run requests its merge.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfpipe_shared::contracts::{Contract, UploadMessage};
use sfpipe_shared::lambda::{BatchPolicy, handle_sqs_batch, time_left};
use sfpipe_shared::runtime::Runtime;
use sfpipe_shared::stages::upload::{UploadDeps, handle_upload};
use sfpipe_shared::stages::{Stage, StageError};

async fn handle(runtime: &Runtime, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let deps = UploadDeps {
        salesforce: runtime.salesforce.as_ref(),
        blobs: runtime.blobs.as_ref(),
        upload_queue: runtime.queues.upload.as_ref(),
        merge_queue: runtime.queues.merge.as_ref(),
        rest_batch_size: 2000,
    };
    let context = event.context;
    handle_sqs_batch(
        runtime.queues.upload.as_ref(),
        event.payload,
        &BatchPolicy::default(),
        || time_left(context.deadline),
        |body| {
            let deps = &deps;
            async move {
                let message = UploadMessage::from_body(&body)
                    .map_err(|e| StageError::new(Stage::Upload, "(unreadable message)", e))?;
                handle_upload(deps, &message).await.map(|_| ())
            }
        },
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let runtime = Arc::new(Runtime::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let runtime = runtime.clone();
        async move { Ok::<_, Error>(handle(&runtime, event).await) }
    }))
    .await
}
