//! `sfpipe run`: the pipeline on this machine against any Salesforce org, into SQLite, or into
//! Snowflake through S3 as a deployed stack loads it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use secrecy::SecretString;
use sfpipe_shared::contracts::{Mode, ObjectName, rfc3339};
use sfpipe_shared::lambda::parse_object_list;
use sfpipe_shared::local::pipeline::{LocalPipelineConfig, RunFailure};
use sfpipe_shared::local::{LocalPipeline, NoEvents};
use sfpipe_shared::ports::BlobStore;
use sfpipe_shared::salesforce::{Credentials, SalesforceClient, SalesforceConfig};
use sfpipe_shared::snowflake::SnowflakeWarehouse;
use sfpipe_shared::stages::loader::{IntervalSchedule, LoadRequest};

#[derive(Debug, Clone, clap::Args)]
pub struct RunOptions {
    /// Where to log in, e.g. https://login.salesforce.com or the simulator's URL.
    #[arg(long)]
    pub login_url: String,
    /// The Salesforce secret as a JSON file (the format the README gives).
    #[arg(long)]
    pub credentials: PathBuf,
    /// Objects, comma-separated.
    #[arg(long)]
    pub objects: String,
    #[arg(long, default_value = ".sfpipe-run")]
    pub dir: PathBuf,
    /// Read everything again instead of what changed since the last run.
    #[arg(long)]
    pub full: bool,
    /// An extra CA certificate to trust (PEM), e.g. `sfpipe sim --tls`'s.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// How often formula fields are read again: `24h`, `off`, or exceptions per object
    /// (`24h, Account=6h, Case=off`; units m, h, d).
    #[arg(long, default_value = "24h")]
    pub formula_refresh: IntervalSchedule,
    /// How often each object's Ids are reconciled with Salesforce to find hard deletes: `24h`,
    /// `off`, or exceptions per object.
    #[arg(long, default_value = "24h")]
    pub reconcile: IntervalSchedule,
    #[command(flatten)]
    pub snowflake: SnowflakeDestination,
}

/// Where a load into Snowflake puts its parts and merges them, instead of this machine's SQLite.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SnowflakeDestination {
    /// Load into Snowflake instead of SQLite: the Snowflake secret as a JSON file (the format
    /// the README gives). Its stage must read --bucket's --prefix.
    #[arg(long, requires = "bucket")]
    pub snowflake_credentials: Option<PathBuf>,
    /// The S3 bucket the parts go to (AWS credentials, region and `AWS_ENDPOINT_URL` from the
    /// environment).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The key prefix in the bucket (the stage's location ends with it).
    #[arg(long, default_value = "sfpipe")]
    pub prefix: String,
}

impl RunOptions {
    /// Options for a run of `objects` into SQLite in `dir`, with the defaults the flags have.
    pub fn sqlite(
        login_url: impl Into<String>,
        credentials: PathBuf,
        objects: impl Into<String>,
        dir: PathBuf,
    ) -> Self {
        Self {
            login_url: login_url.into(),
            credentials,
            objects: objects.into(),
            dir,
            full: false,
            ca_cert: None,
            formula_refresh: IntervalSchedule::default(),
            reconcile: IntervalSchedule::default(),
            snowflake: SnowflakeDestination {
                prefix: "sfpipe".into(),
                ..SnowflakeDestination::default()
            },
        }
    }

    /// The Salesforce client the options describe.
    pub fn salesforce(&self) -> anyhow::Result<Arc<SalesforceClient>> {
        let secret = std::fs::read_to_string(&self.credentials)
            .with_context(|| format!("reading {}", self.credentials.display()))?;
        let credentials = Credentials::from_secret_json(&SecretString::from(secret))?;
        let extra_ca_pem = match &self.ca_cert {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };
        Ok(Arc::new(SalesforceClient::new(
            SalesforceConfig {
                extra_ca_pem,
                ..SalesforceConfig::new(&self.login_url)
            },
            credentials,
        )?))
    }
}

/// The blob store and warehouse of a run into Snowflake: the parts in S3, the tables in
/// Snowflake, as a deployed stack has them.
pub async fn snowflake_ports(
    secret_file: &std::path::Path,
    bucket: &str,
    prefix: &str,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<(Arc<dyn BlobStore>, Arc<SnowflakeWarehouse>)> {
    let aws = crate::stack::aws_config(aws).await;
    let blobs = crate::stack::s3_blobs(&aws, bucket, prefix);
    let warehouse = crate::stack::snowflake_warehouse(secret_file)?;
    Ok((blobs, warehouse))
}

/// What `sfpipe run` prints, and the objects that did not merge (the command then exits 1).
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: String,
    pub failures: Vec<RunFailure>,
}

pub async fn run(options: &RunOptions) -> anyhow::Result<RunOutcome> {
    run_window(options, None, None, None).await
}

/// A run of a given window (`since`: a backfill) or of what changed since the last run. `aws`:
/// the AWS configuration of a run into Snowflake (default: from the environment).
pub async fn run_window(
    options: &RunOptions,
    since: Option<chrono::DateTime<Utc>>,
    until: Option<chrono::DateTime<Utc>>,
    aws: Option<aws_config::SdkConfig>,
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let salesforce = options.salesforce()?;
    let mut config = LocalPipelineConfig::default();
    config.loader.formula_refresh = options.formula_refresh.clone();
    config.loader.reconcile = options.reconcile.clone();
    let (pipeline, destination) = match (
        &options.snowflake.snowflake_credentials,
        &options.snowflake.bucket,
    ) {
        (Some(secret), Some(bucket)) => {
            let (blobs, warehouse) =
                snowflake_ports(secret, bucket, &options.snowflake.prefix, aws).await?;
            let pipeline = Arc::new(LocalPipeline::new(
                salesforce.clone(),
                blobs,
                warehouse,
                config,
                None,
            ));
            (
                pipeline,
                format!(
                    "Snowflake, parts in s3://{bucket}/{}",
                    options.snowflake.prefix
                ),
            )
        }
        _ => {
            std::fs::create_dir_all(&options.dir)?;
            let (pipeline, warehouse_path) =
                LocalPipeline::in_directory(&options.dir, salesforce.clone(), config)?;
            (pipeline, warehouse_path.display().to_string())
        }
    };
    let objects = resolve_objects(salesforce.as_ref(), &options.objects).await?;
    let request = LoadRequest {
        objects,
        mode: if options.full {
            Mode::Full
        } else {
            Mode::Incremental
        },
        since,
        until,
    };
    // Into SQLite, the run's directory keeps its queue counts for `sfpipe status --dir`.
    let into_directory =
        options.snowflake.snowflake_credentials.is_none() || options.snowflake.bucket.is_none();
    let counts = into_directory.then(|| crate::queue_counts::keep(pipeline.clone(), &options.dir));
    let result = pipeline.run(&request, Utc::now(), Arc::new(NoEvents)).await;
    if let Some(counts) = counts {
        counts.finish().await;
    }
    let result = result?;
    let records = result.records(pipeline.blobs().as_ref()).await;
    let mut out = format!(
        "run {} in {:.1} s into {destination}\n",
        result.report.run_id,
        started.elapsed().as_secs_f64(),
    );
    for (queued, record) in &records {
        let mut window = window_label(queued.mode, queued.window.since);
        if queued.rest {
            window.push_str(" (REST)");
        }
        match record {
            Some(record) => out.push_str(&format!(
                "{:<16} {window:<30} {:>10} rows {:>5} files {:>12} bytes\n",
                queued.object.as_str(),
                record.records,
                record.parts,
                record.bytes
            )),
            None => out.push_str(&format!(
                "{:<16} {window:<30} not merged\n",
                queued.object.as_str()
            )),
        }
    }
    for object in &result.report.unchanged {
        out.push_str(&format!(
            "{:<16} {:<30} unchanged since its last merge: no run\n",
            object.as_str(),
            ""
        ));
    }
    let failures = result.failures(pipeline.blobs().as_ref()).await;
    for failure in &failures {
        out.push_str(&format!("FAILED {}: {}\n", failure.object, failure.reason));
    }
    Ok(RunOutcome {
        summary: out,
        failures,
    })
}

/// The objects of a comma-separated list, in the org's own spelling (Salesforce matches any
/// case), so `account` and `Account` load the same table and watermark; names the org lacks are
/// left for extract to refuse.
pub async fn resolve_objects(
    salesforce: &SalesforceClient,
    list: &str,
) -> anyhow::Result<Vec<ObjectName>> {
    let global = salesforce.describe_global().await?;
    Ok(parse_object_list(list)?
        .into_iter()
        .map(|object| {
            global
                .sobjects
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(object.as_str()))
                .and_then(|o| ObjectName::new(&o.name).ok())
                .unwrap_or(object)
        })
        .collect())
}

/// How a run's window reads in a summary: `full`, `since <time>`, `formulas` or `ids`.
pub fn window_label(mode: Mode, since: Option<chrono::DateTime<Utc>>) -> String {
    match (mode, since) {
        (Mode::FormulaRefresh, _) => "formulas".to_string(),
        (Mode::Reconcile, _) => "ids (hard deletes)".to_string(),
        (Mode::Full, _) | (_, None) => "full".to_string(),
        (Mode::Incremental, Some(since)) => format!("since {}", rfc3339(since)),
    }
}
