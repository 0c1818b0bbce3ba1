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
use sfpipe_shared::ports::{BlobStore, Queue, Warehouse};
use sfpipe_shared::status::{
    DeadLetter, QueueStatus, StatusReport, kept_dead_letters, peek_dead_letters, queue_status,
    read_status,
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
    /// The stack's stage queue URLs (the outputs `ExtractQueueUrl`, `UploadQueueUrl`,
    /// `MergeQueueUrl`), to show what waits where; repeat the flag.
    #[arg(long = "queue-url")]
    pub queue_urls: Vec<String>,
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

impl StatusOptions {
    /// The defaults of the command's flags, for a local directory.
    pub fn for_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            ..Self::for_bucket(String::new())
        }
    }

    /// The defaults of the command's flags, for a deployed stack's bucket.
    pub fn for_bucket(bucket: impl Into<String>) -> Self {
        Self {
            dir: None,
            bucket: Some(bucket.into()),
            prefix: "sfpipe".into(),
            dlq_urls: Vec::new(),
            queue_urls: Vec::new(),
            broker: None,
            queue_prefix: "sfpipe".into(),
            snowflake_credentials: None,
            objects: None,
            last: 5,
            json: false,
            html: None,
            serve: false,
            port: 8717,
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }
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
        let (dead_letters, queues) =
            crate::worker::broker_status(broker, &options.queue_prefix).await?;
        sources.dead_letters.extend(dead_letters);
        sources.queues = queues;
    }
    let mut report = read_status(
        sources.blobs.as_ref(),
        sources.warehouse.as_deref(),
        &sources.dead_letters,
        &objects,
        options.last,
    )
    .await?;
    report.queues = sources.queues;
    Ok(report)
}

/// The stage a queue feeds, from its name (`...-extract`, `sfpipe-merge.fifo`, ...).
fn stage_of(queue: &str) -> Option<&'static str> {
    let name = queue
        .rsplit('/')
        .next()
        .unwrap_or(queue)
        .to_ascii_lowercase();
    ["extract", "upload", "merge"]
        .into_iter()
        .find(|stage| name.contains(stage))
}

/// Where the pipeline's state is read from.
struct Sources {
    blobs: Arc<dyn BlobStore>,
    /// Where watermarks are read; none when no warehouse was given.
    warehouse: Option<Arc<dyn Warehouse>>,
    dead_letters: Vec<DeadLetter>,
    /// The stage queues' counts, where they can be read.
    queues: Vec<QueueStatus>,
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
        queues: crate::queue_counts::read(dir)?,
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
    let mut queues = Vec::new();
    for url in &options.queue_urls {
        let stage = stage_of(url).with_context(|| {
            format!("{url} names no stage (extract, upload or merge): give the stack's queue URLs")
        })?;
        let queue = SqsQueue::new(sqs.clone(), url, None);
        let dead_letters = options
            .dlq_urls
            .iter()
            .find(|dlq| stage_of(dlq) == Some(stage))
            .map(|dlq| SqsQueue::new(sqs.clone(), dlq, None));
        queues.push(
            queue_status(
                stage,
                &queue,
                dead_letters.as_ref().map(|q| q as &dyn Queue),
                None,
            )
            .await,
        );
    }
    Ok(Sources {
        blobs,
        warehouse,
        dead_letters,
        queues,
    })
}
