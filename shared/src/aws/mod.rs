//! Adapters for AWS: SQS queues, the S3 blob store and Secrets Manager. All honour
//! `AWS_ENDPOINT_URL` (through the SDK's shared configuration), so they run unchanged against moto
//! or LocalStack.

pub mod s3;
pub mod secrets;
pub mod sqs;

pub use s3::S3BlobStore;
pub use secrets::SecretsManagerSecrets;
pub use sqs::SqsQueue;

/// The SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client; path-style addressing when an endpoint override is set (moto, LocalStack).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// An SDK error with its whole chain of causes: the top-level message alone is often just
/// "service error".
pub(crate) fn describe<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
