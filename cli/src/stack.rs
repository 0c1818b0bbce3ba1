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

/// The settings of a Snowflake secret file, each non-secret field overridden by its
/// `SFPIPE_SNOWFLAKE_<FIELD>` variable, read with `variable`.
pub fn snowflake_settings(
    secret_file: &Path,
    variable: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<SnowflakeSettings> {
    let secret = std::fs::read_to_string(secret_file)
        .with_context(|| format!("reading {}", secret_file.display()))?;
    Ok(SnowflakeSettings::from_secret_and_variables(
        &SecretString::from(secret),
        variable,
    )?)
}

/// The Snowflake warehouse of a secret file (the README's format); `SFPIPE_SNOWFLAKE_*`
/// variables override its non-secret fields, as in a deployed function.
pub fn snowflake_warehouse(secret_file: &Path) -> anyhow::Result<Arc<SnowflakeWarehouse>> {
    let settings = snowflake_settings(secret_file, |name| std::env::var(name).ok())?;
    Ok(Arc::new(SnowflakeWarehouse::new(
        settings.client()?,
        &settings.stage,
    )))
}

#[cfg(test)]
mod tests {
    /// The README documents `SFPIPE_SNOWFLAKE_<FIELD>` as overriding the secret's field, on
    /// Lambda and in the CLI alike.
    #[test]
    fn snowflake_variables_override_the_secret_file_as_on_lambda() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snowflake.json");
        std::fs::write(
            &file,
            r#"{"account": "ACME-PROD", "user": "SFPIPE", "oauth_token": "t",
                "database": "FROM_SECRET", "schema": "RAW", "warehouse": "FROM_SECRET",
                "stage": "RAW.SFPIPE_STAGE"}"#,
        )
        .unwrap();
        let settings = super::snowflake_settings(&file, |name| {
            (name == "SFPIPE_SNOWFLAKE_WAREHOUSE").then(|| "FROM_VARIABLE".to_string())
        })
        .unwrap();
        assert_eq!(settings.context.warehouse.as_deref(), Some("FROM_VARIABLE"));
        assert_eq!(settings.context.database, "FROM_SECRET");
    }
}
