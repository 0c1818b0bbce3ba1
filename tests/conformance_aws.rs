//! The conformance suites against the AWS adapters, on moto's server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use sfpipe_shared::aws::{S3BlobStore, SecretsManagerSecrets, SnsNotifier, SqsQueue};
use sfpipe_shared::conformance::{blob, notify, queue, secrets};
use sfpipe_shared::ports::{BlobStore, Queue};
use sfpipe_tests::moto::Moto;

struct SqsQueues {
    client: aws_sdk_sqs::Client,
    next: AtomicU32,
}

impl SqsQueues {
    async fn create(
        &self,
        name: String,
        attributes: Vec<(QueueAttributeName, String)>,
    ) -> (String, String) {
        let mut request = self.client.create_queue().queue_name(name);
        for (key, value) in attributes {
            request = request.attributes(key, value);
        }
        let url = request
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("url");
        let arn = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("attributes")
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("arn");
        (url, arn)
    }
}

#[async_trait]
impl queue::QueueFactory for SqsQueues {
    async fn make(&self, spec: queue::QueueSpec) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let suffix = if spec.fifo { ".fifo" } else { "" };
        let fifo = |mut a: Vec<(QueueAttributeName, String)>| {
            if spec.fifo {
                a.push((QueueAttributeName::FifoQueue, "true".into()));
            }
            a
        };
        let (dlq_url, dlq_arn) = self
            .create(format!("conformance-{n}-dlq{suffix}"), fifo(vec![]))
            .await;
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receives}).to_string();
        let (url, _) = self
            .create(
                format!("conformance-{n}{suffix}"),
                fifo(vec![
                    (
                        QueueAttributeName::VisibilityTimeout,
                        spec.visibility_timeout.as_secs().to_string(),
                    ),
                    (QueueAttributeName::RedrivePolicy, redrive),
                ]),
            )
            .await;
        let queue = SqsQueue::new(self.client.clone(), url, Some(dlq_url.clone()));
        let dlq = SqsQueue::new(self.client.clone(), dlq_url, None);
        (Arc::new(queue), Arc::new(dlq))
    }
}

#[tokio::test]
async fn sqs_queue_conforms() {
    let moto = Moto::start().await;
    let factory = SqsQueues {
        client: aws_sdk_sqs::Client::new(&moto.sdk_config().await),
        next: AtomicU32::new(0),
    };
    queue::run_all(&factory).await;
}

#[tokio::test]
async fn s3_blob_store_conforms() {
    let moto = Moto::start().await;
    let client = moto.s3().await;
    client
        .create_bucket()
        .bucket("sfpipe-conformance")
        .send()
        .await
        .expect("bucket");
    blob::run_all(Arc::new(S3BlobStore::new(
        client,
        "sfpipe-conformance",
        "prefix/under/test",
    )))
    .await;
}

/// S3 keeps the checksum the store sent and checked the upload against it (a real S3 answers a
/// mismatch with BadDigest; moto stores what it is given, so here we see that the store sent the
/// right algorithm, type and value, whole or in parts).
#[tokio::test]
async fn s3_keeps_the_parts_crc64nvme_the_store_reported() {
    use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
    let moto = Moto::start().await;
    let client = moto.s3().await;
    client
        .create_bucket()
        .bucket("sfpipe-checksums")
        .send()
        .await
        .expect("bucket");
    let store = S3BlobStore::new(client.clone(), "sfpipe-checksums", "p");
    let small = bytes::Bytes::from_static(b"Id,Name\n001,Acme\n");
    // Larger than one multipart part (8 MiB), so it goes up in two.
    let large = bytes::Bytes::from(
        (0..9 * 1024 * 1024 + 7)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect::<Vec<u8>>(),
    );
    for (key, body, whole) in [
        ("small.csv.gz", small, false),
        ("large.csv.gz", large, true),
    ] {
        let stored = store
            .put(key, sfpipe_shared::ports::bytes_stream(body.clone()))
            .await
            .expect("put");
        assert_eq!(stored.crc64nvme, sfpipe_shared::checksum::crc64nvme(&body));
        let head = client
            .head_object()
            .bucket("sfpipe-checksums")
            .key(format!("p/{key}"))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("head");
        assert_eq!(
            head.checksum_crc64_nvme(),
            Some(stored.crc64nvme.as_str()),
            "{key}"
        );
        if whole {
            assert_eq!(
                head.checksum_type(),
                Some(&ChecksumType::FullObject),
                "{key}"
            );
        }
    }
}

#[tokio::test]
async fn secrets_manager_conforms() {
    let moto = Moto::start().await;
    let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    client
        .create_secret()
        .name(secrets::NAME)
        .secret_string(secrets::VALUE)
        .send()
        .await
        .expect("create secret");
    secrets::run_all(&SecretsManagerSecrets::new(
        client,
        std::time::Duration::from_secs(60),
    ))
    .await;
}

/// A secret created in another region than the stack's (the README's steps once created them
/// without `--region`): read by its ARN, it is read in the region the ARN names.
#[tokio::test]
async fn a_secret_is_read_in_the_region_its_arn_names() {
    let moto = Moto::start().await;
    let stack_region = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let other = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&moto.sdk_config().await)
            .region(aws_config::Region::new("eu-west-1"))
            .build(),
    );
    let created = other
        .create_secret()
        .name("sfpipe/elsewhere")
        .secret_string(r#"{"flow": "client_credentials"}"#)
        .send()
        .await
        .expect("create secret");
    let arn = created.arn().expect("arn").to_string();
    assert!(arn.contains(":eu-west-1:"), "{arn}");
    let secrets = SecretsManagerSecrets::new(stack_region, std::time::Duration::from_secs(60));
    let value = sfpipe_shared::ports::Secrets::get(&secrets, &arn)
        .await
        .expect("the secret, read in eu-west-1");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&value),
        r#"{"flow": "client_credentials"}"#
    );
    // A name (not an ARN) is looked up in the stack's region, where it is not.
    let missing = sfpipe_shared::ports::Secrets::get(&secrets, "sfpipe/elsewhere")
        .await
        .expect_err("not in the stack's region");
    assert!(
        matches!(missing, sfpipe_shared::ports::SecretsError::NotFound { .. }),
        "{missing}"
    );
}

/// What reached an SQS queue subscribed to the topic: SNS's JSON envelope, whose `Subject` and
/// `Message` are the notice.
struct SubscribedQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

#[async_trait::async_trait]
impl notify::Delivered for SubscribedQueue {
    async fn delivered(&self, at_least: usize) -> Vec<sfpipe_shared::ports::Notice> {
        sfpipe_tests::moto::sns_notices(&self.sqs, &self.url, at_least)
            .await
            .into_iter()
            .map(|(subject, message)| sfpipe_shared::ports::Notice { subject, message })
            .collect()
    }
}

#[tokio::test]
async fn sns_notifier_conforms() {
    let moto = Moto::start().await;
    let config = moto.sdk_config().await;
    let (topic, sqs, url) =
        sfpipe_tests::moto::topic_with_subscriber(&config, "sfpipe-alarms").await;
    notify::run_all(
        &SnsNotifier::new(aws_sdk_sns::Client::new(&config), topic),
        &SubscribedQueue { sqs, url },
    )
    .await;
}
