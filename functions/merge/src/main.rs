//! merge, on the FIFO merge queue (one message group per object, so merges of an object never
//! overlap): COPY a run's files into Snowflake and MERGE them into the object's table.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfpipe_shared::lambda::{BatchPolicy, run_stage_batch};
use sfpipe_shared::runtime::Runtime;
use sfpipe_shared::snowflake::SnowflakeWarehouse;
use sfpipe_shared::stages::merge::MergeDeps;

/// What the function builds once per container.
struct Function {
    runtime: Runtime,
    batch: BatchPolicy,
    warehouse: SnowflakeWarehouse,
}

async fn handle(function: &Function, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let deps = MergeDeps {
        blobs: function.runtime.blobs.as_ref(),
        warehouse: &function.warehouse,
    };
    run_stage_batch(
        function.runtime.queues.merge.as_ref(),
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
        batch: Runtime::batch_policy(true)?,
        warehouse: runtime.snowflake().await?,
        runtime,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let function = function.clone();
        async move { Ok::<_, Error>(handle(&function, event).await) }
    }))
    .await
}
