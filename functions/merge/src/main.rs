//! merge, on the FIFO merge queue (one message group per object, so merges of an object never
//! overlap): COPY a run's files into Snowflake and MERGE them into the object's table.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfpipe_shared::contracts::{Contract, MergeMessage};
use sfpipe_shared::lambda::{BatchPolicy, handle_sqs_batch, time_left};
use sfpipe_shared::runtime::Runtime;
use sfpipe_shared::snowflake::SnowflakeWarehouse;
use sfpipe_shared::stages::merge::{MergeDeps, handle_merge};
use sfpipe_shared::stages::{Stage, StageError};

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
    let context = event.context;
    handle_sqs_batch(
        function.runtime.queues.merge.as_ref(),
        event.payload,
        &function.batch,
        || time_left(context.deadline),
        |body| {
            let deps = &deps;
            async move {
                let message = MergeMessage::from_body(&body)
                    .map_err(|e| StageError::new(Stage::Merge, "(unreadable message)", e))?;
                handle_merge(deps, &message).await.map(|_| ())
            }
        },
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
