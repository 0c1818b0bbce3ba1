//! How the commands reach a deployed stack's (or a laptop's) AWS and Snowflake: the AWS
//! configuration, the S3 blob store under the stack's prefix, and the Snowflake warehouse a
//! secret file describes.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;
use sfpipe_shared::aws::{S3BlobStore, s3_client, sdk_config};
use sfpipe_shared::ports::BlobStore;
use sfpipe_shared::snowflake::{SnowflakeSettings, SnowflakeWarehouse};

/// The AWS configuration given (tests), else the environment's (region, credentials,
/// `AWS_ENDPOINT_URL`).
pub async fn aws_config(given: Option<aws_config::SdkConfig>) -> aws_config::SdkConfig {
    match given {
        Some(config) => config,
        None => sdk_config().await,
    }
}

/// The blob store of a stack: its bucket, under its prefix.
pub fn s3_blobs(config: &aws_config::SdkConfig, bucket: &str, prefix: &str) -> Arc<dyn BlobStore> {
    Arc::new(S3BlobStore::new(s3_client(config), bucket, prefix))
}

/// The Snowflake warehouse of a secret file (the README's format); `SFPIPE_SNOWFLAKE_*`
/// variables override its non-secret fields, as in a deployed function.
pub fn snowflake_warehouse(secret_file: &Path) -> anyhow::Result<Arc<SnowflakeWarehouse>> {
    let secret = std::fs::read_to_string(secret_file)
        .with_context(|| format!("reading {}", secret_file.display()))?;
    let settings = SnowflakeSettings::from_secret_json(&SecretString::from(secret), |name| {
        std::env::var(name).ok()
    })?;
    Ok(Arc::new(SnowflakeWarehouse::new(
        settings.client()?,
        &settings.stage,
    )))
}
