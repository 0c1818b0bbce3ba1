//! job-loader, on an EventBridge schedule or a manual event: one extract message per object, each
//! with its window (from the object's state in S3, or the event's backfill window), after a
//! change probe that leaves unchanged objects alone.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfpipe_shared::deadline::{Deadline, within_any};
use sfpipe_shared::lambda::handle_loader_event;
use sfpipe_shared::runtime::Runtime;
use sfpipe_shared::salesforce::SalesforceClient;
use sfpipe_shared::snowflake::SnowflakeWarehouse;
use sfpipe_shared::stages::loader::{LoadReport, LoaderConfig, LoaderDeps};

/// What the function builds once per container.
struct Function {
    runtime: Runtime,
    salesforce: SalesforceClient,
    warehouse: SnowflakeWarehouse,
    config: LoaderConfig,
}

async fn handle(
    function: &Function,
    event: LambdaEvent<serde_json::Value>,
) -> Result<LoadReport, Error> {
    let runtime = &function.runtime;
    let deps = LoaderDeps {
        salesforce: &function.salesforce,
        extract_queue: runtime.queues.extract.as_ref(),
        warehouse: &function.warehouse,
        blobs: runtime.blobs.as_ref(),
        config: &function.config,
    };
    // A retry of an asynchronous invocation keeps its request id: what makes an undated manual
    // event's retry the same run.
    let deadline = Deadline::at_epoch_millis(event.context.deadline);
    Ok(within_any(deadline, async {
        let objects = runtime.objects.objects(runtime.blobs.as_ref()).await?;
        handle_loader_event(
            &deps,
            &event.payload,
            &objects,
            chrono::Utc::now(),
            Some(&event.context.request_id),
        )
        .await
    })
    .await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let runtime = Runtime::from_env().await?;
    let function = Arc::new(Function {
        salesforce: runtime.salesforce().await?,
        warehouse: runtime.snowflake().await?,
        config: Runtime::loader_config()?,
        runtime,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let function = function.clone();
        async move { handle(&function, event).await }
    }))
    .await
}
