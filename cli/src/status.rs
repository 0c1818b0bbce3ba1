//! `sfpipe status`: per object, the last runs (window, stage reached, Salesforce job, counts,
//! duration, receipt), the watermark, open holes and dead letters, from a local directory or a
//! deployed stack's bucket and dead-letter queues.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use sfpipe_shared::aws::SqsQueue;
use sfpipe_shared::contracts::ObjectName;
use sfpipe_shared::lambda::parse_object_list;
use sfpipe_shared::local::{FsBlobStore, SqliteWarehouse};
use sfpipe_shared::ports::{BlobStore, Warehouse};
use sfpipe_shared::status::{
    DeadLetter, StatusReport, kept_dead_letters, peek_dead_letters, read_status,
};

#[derive(Debug, Clone, clap::Args)]
pub struct StatusOptions {
    /// A local directory, as `sfpipe run` and `sfpipe demo` write it.
    #[arg(long, conflicts_with = "bucket", required_unless_present = "bucket")]
    pub dir: Option<PathBuf>,
    /// A deployed stack's data bucket (the stack output `DataBucketName`).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The stack's key prefix in the bucket.
    #[arg(long, default_value = "sfpipe")]
    pub prefix: String,
    /// The stack's dead-letter queue URLs (the outputs `*DeadLetterQueueUrl`); repeat the flag.
    #[arg(long = "dlq-url")]
    pub dlq_urls: Vec<String>,
    /// The broker of `sfpipe worker`s (`redis://...`, `amqp://...`): its dead-letter queues are read too
    /// (looked into, not emptied).
    #[arg(long)]
    pub broker: Option<String>,
    /// The broker's queue names start with this (as `sfpipe worker --queue-prefix`).
    #[arg(long, default_value = "sfpipe")]
    pub queue_prefix: String,
    /// The Snowflake secret as a JSON file, to read each object's watermark on a stack.
    #[arg(long)]
    pub snowflake_credentials: Option<PathBuf>,
    /// Objects, comma-separated (default: every object with stored runs).
    #[arg(long)]
    pub objects: Option<String>,
    /// Runs shown per object, newest last.
    #[arg(long, default_value_t = 5)]
    pub last: usize,
    /// JSON for machines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page to this file (no script, no
    /// network needed to open it).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Serve the report as a page that reloads itself, reading the data at each request, until
    /// stopped.
    #[arg(long)]
    pub serve: bool,
    /// The page's port (with --serve).
    #[arg(long, default_value_t = 8717)]
    pub port: u16,
    /// The address the page binds (with --serve); other than 127.0.0.1 exposes the report to
    /// the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
}

pub async fn status(options: &StatusOptions) -> anyhow::Result<StatusReport> {
    status_with(options, None).await
}

/// `aws`: the AWS configuration for a stack (default: from the environment).
pub async fn status_with(
    options: &StatusOptions,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<StatusReport> {
    let objects: Vec<ObjectName> = match &options.objects {
        Some(list) => parse_object_list(list)?,
        None => Vec::new(),
    };
    let mut sources = match (&options.dir, &options.bucket) {
        (Some(dir), _) => local_sources(dir).await?,
        (None, Some(bucket)) => stack_sources(options, bucket, aws).await?,
        (None, None) => anyhow::bail!("give --dir DIR, or --bucket BUCKET for a deployed stack"),
    };
    if let Some(broker) = &options.broker {
        sources
            .dead_letters
            .extend(crate::worker::broker_dead_letters(broker, &options.queue_prefix).await?);
    }
    Ok(read_status(
        sources.blobs.as_ref(),
        sources.warehouse.as_deref(),
        &sources.dead_letters,
        &objects,
        options.last,
    )
    .await?)
}

/// Where the pipeline's state is read from.
struct Sources {
    blobs: Arc<dyn BlobStore>,
    /// Where watermarks are read; none when no warehouse was given.
    warehouse: Option<Arc<dyn Warehouse>>,
    dead_letters: Vec<DeadLetter>,
}

/// What `sfpipe run` and `sfpipe demo` write: `blobs/` (dead letters kept there too) and
/// `warehouse.sqlite`.
async fn local_sources(dir: &std::path::Path) -> anyhow::Result<Sources> {
    let blobs: Arc<dyn BlobStore> = Arc::new(
        FsBlobStore::new(dir.join("blobs"))
            .with_context(|| format!("opening {}", dir.display()))?,
    );
    let path = dir.join("warehouse.sqlite");
    let warehouse: Option<Arc<dyn Warehouse>> = if path.exists() {
        Some(Arc::new(SqliteWarehouse::open(&path, blobs.clone())?))
    } else {
        None
    };
    let dead_letters = kept_dead_letters(blobs.as_ref()).await?;
    Ok(Sources {
        blobs,
        warehouse,
        dead_letters,
    })
}

/// A deployed stack: its bucket, its dead-letter queues (looked into, not emptied) and, given
/// its secret, Snowflake.
async fn stack_sources(
    options: &StatusOptions,
    bucket: &str,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<Sources> {
    let config = crate::stack::aws_config(aws).await;
    let blobs = crate::stack::s3_blobs(&config, bucket, &options.prefix);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut dead_letters = Vec::new();
    for url in &options.dlq_urls {
        let queue = SqsQueue::new(sqs.clone(), url, None);
        dead_letters
            .extend(peek_dead_letters(&queue, 1_000, crate::worker::NO_REASON_RECORDED).await?);
    }
    let warehouse: Option<Arc<dyn Warehouse>> = match &options.snowflake_credentials {
        Some(path) => Some(crate::stack::snowflake_warehouse(path)?),
        None => None,
    };
    Ok(Sources {
        blobs,
        warehouse,
        dead_letters,
    })
}
