//! extract, on SQS: describe, start or check the Bulk API job, fan out one upload per page.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfpipe_shared::lambda::{BatchPolicy, run_stage_batch};
use sfpipe_shared::runtime::Runtime;
use sfpipe_shared::salesforce::SalesforceClient;
use sfpipe_shared::stages::extract::{ExtractConfig, ExtractDeps};

/// What the function builds once per container.
struct Function {
    runtime: Runtime,
    batch: BatchPolicy,
    salesforce: SalesforceClient,
    extract: ExtractConfig,
}

async fn handle(function: &Function, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let deps = ExtractDeps {
        salesforce: &function.salesforce,
        blobs: function.runtime.blobs.as_ref(),
        extract_queue: function.runtime.queues.extract.as_ref(),
        upload_queue: function.runtime.queues.upload.as_ref(),
        merge_queue: function.runtime.queues.merge.as_ref(),
        config: &function.extract,
    };
    run_stage_batch(
        function.runtime.queues.extract.as_ref(),
        event.payload,
        &function.batch,
        event.context.deadline,
        &deps,
    )
    .await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let runtime = Runtime::from_env().await?;
    let function = Arc::new(Function {
        batch: Runtime::batch_policy(false)?,
        salesforce: runtime.salesforce().await?,
        extract: Runtime::extract_config()?,
        runtime,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let function = function.clone();
        async move { Ok::<_, Error>(handle(&function, event).await) }
    }))
    .await
}
