//! `sfpipe cost`: what the runs stored in a local directory or a deployed stack's bucket cost,
//! from their usage records and a price table (the defaults, or a JSON file that overrides
//! some of them): per run, measured, and a day of scheduled runs projected.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sfpipe_shared::cost::{CostReport, Prices, cost_report};
use sfpipe_shared::local::FsBlobStore;
use sfpipe_shared::ports::BlobStore;
use sfpipe_shared::usage::{RECEIPTS_PREFIX, kept_usage_since};

#[derive(Debug, Clone, clap::Args)]
pub struct CostOptions {
    /// A local directory, as `sfpipe run` and `sfpipe demo` write it.
    #[arg(long, conflicts_with = "bucket", required_unless_present_any = ["bucket", "print_prices"])]
    pub dir: Option<PathBuf>,
    /// A deployed stack's data bucket (the stack output `DataBucketName`).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The stack's key prefix in the bucket.
    #[arg(long, default_value = "sfpipe")]
    pub prefix: String,
    /// Only runs triggered at or after this time (RFC 3339), e.g. the last day's.
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Scheduled runs a day, to project a day from the runs measured (96: every 15 minutes).
    #[arg(long, default_value_t = 96.0)]
    pub runs_per_day: f64,
    /// The org's daily API limit, when no answer of Salesforce's reported it.
    #[arg(long, default_value_t = 100_000)]
    pub api_limit: u64,
    /// A JSON file overriding any of the prices (`--print-prices` shows them all).
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Print the price table in use as JSON, and stop.
    #[arg(long)]
    pub print_prices: bool,
    /// Runs listed, newest last.
    #[arg(long, default_value_t = 20)]
    pub last: usize,
    /// JSON for machines instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl CostOptions {
    /// Every record in a local directory, at the defaults.
    pub fn for_dir(dir: impl Into<PathBuf>) -> Self {
        Self::defaults(Some(dir.into()), None, "sfpipe")
    }

    /// Every record in a stack's bucket, at the defaults.
    pub fn for_bucket(bucket: &str, prefix: &str) -> Self {
        Self::defaults(None, Some(bucket.to_string()), prefix)
    }

    fn defaults(dir: Option<PathBuf>, bucket: Option<String>, prefix: &str) -> Self {
        Self {
            dir,
            bucket,
            prefix: prefix.to_string(),
            since: None,
            runs_per_day: 96.0,
            api_limit: 100_000,
            prices: None,
            print_prices: false,
            last: 20,
            json: false,
        }
    }
}

/// The price table: the defaults, with a file's fields over them.
pub fn prices(options: &CostOptions) -> anyhow::Result<Prices> {
    match &options.prices {
        None => Ok(Prices::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the price file {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a price table: give only fields `sfpipe cost --print-prices` shows",
                    path.display()
                )
            })
        }
    }
}

pub async fn cost(options: &CostOptions) -> anyhow::Result<CostReport> {
    cost_with(options, None).await
}

/// `aws`: the AWS configuration for a stack (default: from the environment).
pub async fn cost_with(
    options: &CostOptions,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<CostReport> {
    let prices = prices(options)?;
    let blobs: Arc<dyn BlobStore> = match (&options.dir, &options.bucket) {
        (Some(dir), _) => Arc::new(
            FsBlobStore::new(dir.join("blobs"))
                .with_context(|| format!("opening {}", dir.display()))?,
        ),
        (None, Some(bucket)) => {
            let config = crate::stack::aws_config(aws).await;
            crate::stack::s3_blobs(&config, bucket, &options.prefix)
        }
        (None, None) => anyhow::bail!("give --dir DIR, or --bucket BUCKET for a deployed stack"),
    };
    let records = kept_usage_since(blobs.as_ref(), RECEIPTS_PREFIX, options.since)
        .await
        .context("reading the usage records (receipts/)")?;
    Ok(cost_report(
        &records,
        &prices,
        options.runs_per_day,
        options.api_limit,
    ))
}
