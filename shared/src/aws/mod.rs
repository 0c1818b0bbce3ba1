//! Adapters for AWS: SQS queues, the S3 blob store, Secrets Manager and SNS notices. All honour
//! `AWS_ENDPOINT_URL` (through the SDK's shared configuration), so they run unchanged against moto
//! or LocalStack.

pub mod s3;
pub mod secrets;
pub mod sns;
pub mod sqs;

pub use s3::S3BlobStore;
pub use secrets::SecretsManagerSecrets;
pub use sns::SnsNotifier;
pub use sqs::SqsQueue;

/// The SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client; path-style addressing when an endpoint override is set (moto, LocalStack).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = config.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Whether AWS refused the call for want of a permission (an `AccessDenied` code, or a bare 403
/// such as a HEAD request gets): no retry helps until the function's role is fixed, so the
/// caller fails the message at once with a reason that says so.
pub(crate) fn is_access_denied<E>(error: &aws_sdk_s3::error::SdkError<E>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let code = error.code();
    let status = error.raw_response().map(|r| r.status().as_u16());
    matches!(code, Some("AccessDenied" | "AccessDeniedException"))
        || (status == Some(403) && code.is_none())
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
