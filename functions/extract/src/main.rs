//! extract, on SQS: describe, start or check the Bulk API job, fan out one upload per page.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfpipe_shared::contracts::{Contract, ExtractMessage};
use sfpipe_shared::lambda::{BatchPolicy, handle_sqs_batch, time_left};
use sfpipe_shared::runtime::Runtime;
use sfpipe_shared::stages::StageError;
use sfpipe_shared::stages::extract::{ExtractDeps, handle_extract};

async fn handle(runtime: &Runtime, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let deps = ExtractDeps {
        salesforce: runtime.salesforce.as_ref(),
        blobs: runtime.blobs.as_ref(),
        extract_queue: runtime.queues.extract.as_ref(),
        upload_queue: runtime.queues.upload.as_ref(),
        merge_queue: runtime.queues.merge.as_ref(),
        config: &runtime.extract,
    };
    let context = event.context;
    handle_sqs_batch(
        runtime.queues.extract.as_ref(),
        event.payload,
        &BatchPolicy::default(),
        || time_left(context.deadline),
        |body| {
            let deps = &deps;
            async move {
                let message = ExtractMessage::from_body(&body).map_err(|e| {
                    StageError::new(
                        sfpipe_shared::stages::Stage::Extract,
                        "(unreadable message)",
                        e,
                    )
                })?;
                handle_extract(deps, &message).await.map(|_| ())
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
