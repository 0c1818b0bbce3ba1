//! `sfpipe replay`: merge a stored run again from its files, without calling Salesforce; and
//! `sfpipe backfill`: extract a given window of an object again.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sfpipe_shared::aws::SqsQueue;
use sfpipe_shared::contracts::{Contract, ObjectName, RunId};
use sfpipe_shared::local::{FsBlobStore, SqliteWarehouse};
use sfpipe_shared::ports::{BlobStore, OutgoingMessage, Queue};
use sfpipe_shared::stages::merge::{MergeDeps, MergedRecord, handle_merge, replay_message};

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayOptions {
    #[arg(long)]
    pub object: String,
    /// The run id, as `sfpipe status` lists it.
    #[arg(long)]
    pub run: String,
    /// A local directory, as `sfpipe run` and `sfpipe demo` write it: the run is merged here, now.
    #[arg(long, conflicts_with = "bucket", required_unless_present = "bucket")]
    pub dir: Option<PathBuf>,
    /// A deployed stack's data bucket: the rebuilt merge message is sent to its merge queue.
    #[arg(long, requires = "merge_queue_url")]
    pub bucket: Option<String>,
    #[arg(long, default_value = "sfpipe")]
    pub prefix: String,
    /// The stack's merge queue (the output `MergeQueueUrl`).
    #[arg(long)]
    pub merge_queue_url: Option<String>,
}

/// What a replay did: merged here (local), or queued for the stack's merge function.
#[derive(Debug)]
pub enum Replayed {
    Merged(MergedRecord),
    Queued { queue: String },
}

pub async fn replay(options: &ReplayOptions) -> anyhow::Result<Replayed> {
    replay_with(options, None).await
}

/// `aws`: the AWS configuration for a stack (default: from the environment).
pub async fn replay_with(
    options: &ReplayOptions,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<Replayed> {
    let object = ObjectName::new(&options.object)?;
    let run = RunId::new(&options.run)?;
    match (&options.dir, &options.bucket, &options.merge_queue_url) {
        (Some(dir), _, _) => {
            let blobs: Arc<dyn BlobStore> = Arc::new(
                FsBlobStore::new(dir.join("blobs"))
                    .with_context(|| format!("opening {}", dir.display()))?,
            );
            let warehouse = SqliteWarehouse::open(dir.join("warehouse.sqlite"), blobs.clone())?;
            let message = replay_message(blobs.as_ref(), &object, &run).await?;
            let deps = MergeDeps {
                blobs: blobs.as_ref(),
                warehouse: &warehouse,
            };
            Ok(Replayed::Merged(handle_merge(&deps, &message).await?))
        }
        (None, Some(bucket), Some(queue_url)) => {
            let config = crate::stack::aws_config(aws).await;
            let blobs = crate::stack::s3_blobs(&config, bucket, &options.prefix);
            let message = replay_message(blobs.as_ref(), &object, &run).await?;
            let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&config), queue_url, None);
            // Its own deduplication id: the queue would drop a copy of the original merge
            // message sent within five minutes of it.
            let dedup = format!("{}-replay-{}", message.message_id(), Utc::now().timestamp());
            queue
                .send(OutgoingMessage::new(message.to_body(), dedup).in_group(object.as_str()))
                .await?;
            Ok(Replayed::Queued {
                queue: queue.name().to_string(),
            })
        }
        _ => anyhow::bail!("give --dir DIR, or --bucket BUCKET with --merge-queue-url URL"),
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackfillOptions {
    /// Objects, comma-separated.
    #[arg(long)]
    pub objects: String,
    /// The window's start: rows whose SystemModstamp is at or after it are read again.
    #[arg(long)]
    pub since: DateTime<Utc>,
    /// The window's end (default: now, less the usual lag).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// Print the job-loader's manual event for this window instead of running it here (give it
    /// to the deployed job-loader: `aws lambda invoke --payload`, or `cargo lambda invoke`).
    #[arg(long)]
    pub print_event: bool,
    /// Where to log in (to run here), e.g. https://login.salesforce.com.
    #[arg(long, required_unless_present = "print_event")]
    pub login_url: Option<String>,
    /// The Salesforce secret as a JSON file (to run here).
    #[arg(long, required_unless_present = "print_event")]
    pub credentials: Option<PathBuf>,
    #[arg(long, default_value = ".sfpipe-run")]
    pub dir: PathBuf,
    /// An extra CA certificate to trust (PEM).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub snowflake: crate::run::SnowflakeDestination,
}

impl BackfillOptions {
    /// The local run of the window: `sfpipe run`'s options, formula refreshes off.
    pub fn run_options(&self) -> anyhow::Result<crate::run::RunOptions> {
        let mut options = crate::run::RunOptions::sqlite(
            self.login_url
                .clone()
                .context("--login-url is needed to run the backfill here")?,
            self.credentials
                .clone()
                .context("--credentials is needed to run the backfill here")?,
            self.objects.clone(),
            self.dir.clone(),
        );
        options.ca_cert = self.ca_cert.clone();
        options.snowflake = self.snowflake.clone();
        options.formula_refresh = "off".parse().map_err(anyhow::Error::msg)?;
        options.reconcile = "off".parse().map_err(anyhow::Error::msg)?;
        Ok(options)
    }
}

/// The job-loader's manual event for a backfill of `objects` over the window.
pub fn backfill_event(
    objects: &[ObjectName],
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    requested_at: DateTime<Utc>,
) -> serde_json::Value {
    // `requested_at` names the run: the same event sent again (a retry, a second click) is the
    // same run and starts no second Bulk job; print a new event for a new run.
    let mut event = serde_json::json!({
        "objects": objects.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
        "mode": "incremental",
        "since": sfpipe_shared::contracts::rfc3339(since),
        "requested_at": sfpipe_shared::contracts::rfc3339(requested_at),
    });
    if let Some(until) = until {
        event["until"] = serde_json::json!(sfpipe_shared::contracts::rfc3339(until));
    }
    event
}
