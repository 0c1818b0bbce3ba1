//! merge: needs the Snowflake warehouse adapter (the watermark, the merge), which is not built
//! yet. Until it is, this function refuses to start rather than pretend to work.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    Err(
        "sfpipe merge: the Snowflake warehouse adapter is not part of this build yet; \
         deploy a release that includes it"
            .into(),
    )
}
