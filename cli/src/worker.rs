//! `sfpipe worker` and `sfpipe load` on a message broker: the extract, upload and merge stages as
//! long-lived processes on any machines (a VM, ECS, Kubernetes), and a run started by a command
//! that cron or a Kubernetes CronJob calls. The same handlers, settle rules, retries and dead
//! letters as on Lambda; the queues are the broker's, the parts go to S3 (or a directory) and the
//! merges to Snowflake (or SQLite in that directory).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use sfpipe_shared::aws::SnsNotifier;
use sfpipe_shared::contracts::Mode;
use sfpipe_shared::dead_letters::NotifyingQueue;
use sfpipe_shared::deadline::StageLimits;
use sfpipe_shared::local::{
    FileNotifier, LocalPipeline, LocalPipelineConfig, NoEvents, StagePorts, directory_stores,
};
use sfpipe_shared::ports::{BlobStore, Notifier, Queue, Warehouse};
use sfpipe_shared::salesforce::SalesforceClient;
use sfpipe_shared::stages::Stage;
use sfpipe_shared::stages::loader::LoadRequest;

use crate::run::{RunOptions, SnowflakeDestination};

/// The broker the stages' queues live on.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerOptions {
    /// The broker: `redis://host:port/` (Redis 7) or `amqp://user:password@host:port/vhost`
    /// (RabbitMQ 3, quorum queues).
    #[arg(long)]
    pub broker: String,
    /// The queues' names start with this: `<prefix>-extract`, `-upload`, `-merge` and their
    /// `-dlq`s (several deployments can share a broker).
    #[arg(long, default_value = "sfpipe")]
    pub queue_prefix: String,
    /// Every stage's timeout and visibility timeout times this (tests make them short).
    #[arg(long, default_value_t = 1.0, hide = true)]
    pub limits_scale: f64,
    /// Each dead letter is also sent to this SNS topic, with its reason (AWS credentials from
    /// the environment); without it, to `<dir>/notices.jsonl`.
    #[arg(long)]
    pub alarm_topic_arn: Option<String>,
}

/// `sfpipe worker`: runs stages until SIGINT or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOptions {
    #[command(flatten)]
    pub broker: BrokerOptions,
    /// The stages this process runs: any of extract, upload, merge.
    #[arg(long, value_delimiter = ',', default_value = "extract,upload,merge")]
    pub stages: Vec<String>,
    /// Workers per stage in this process.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Where to log in, e.g. https://login.salesforce.com.
    #[arg(long)]
    pub login_url: String,
    /// The Salesforce secret as a JSON file.
    #[arg(long)]
    pub credentials: PathBuf,
    /// An extra CA certificate to trust (PEM).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Parts in `<dir>/blobs`, the SQLite warehouse in `<dir>/warehouse.sqlite` (without
    /// --snowflake-credentials); every process of a fleet names the same one.
    #[arg(long, default_value = ".sfpipe-run")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub snowflake: SnowflakeDestination,
}

/// `sfpipe load`: queues a run of the objects on the broker, as the scheduled job-loader does.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    #[command(flatten)]
    pub broker: BrokerOptions,
    #[command(flatten)]
    pub run: RunOptions,
}

fn stages(names: &[String]) -> anyhow::Result<Vec<Stage>> {
    names
        .iter()
        .map(|name| match name.trim().to_ascii_lowercase().as_str() {
            "extract" => Ok(Stage::Extract),
            "upload" => Ok(Stage::Upload),
            "merge" => Ok(Stage::Merge),
            other => anyhow::bail!("--stages: {other:?} is not extract, upload or merge"),
        })
        .collect()
}

/// The three stage queues on the broker, each dead letter also sent to `notifier`.
async fn broker_queues(
    broker: &BrokerOptions,
    limits: &StageLimits,
    max_receives: u32,
    notifier: Arc<dyn Notifier>,
) -> anyhow::Result<StagePorts> {
    let wrap = move |queue: Arc<dyn Queue>| -> Arc<dyn Queue> {
        Arc::new(NotifyingQueue::new(queue, Some(notifier.clone())))
    };
    StagePorts::on_broker(
        &broker.broker,
        &broker.queue_prefix,
        limits,
        max_receives,
        &wrap,
    )
    .await
    .with_context(|| format!("connecting to the broker {}", broker.broker))
}

/// The pipeline of a worker or a load: the stages' handlers on the broker's queues.
async fn pipeline(
    broker: &BrokerOptions,
    run: &RunOptions,
    salesforce: Arc<SalesforceClient>,
) -> anyhow::Result<Arc<LocalPipeline>> {
    let limits = StageLimits::TEMPLATE.scaled(broker.limits_scale);
    let mut config = LocalPipelineConfig {
        limits,
        ..LocalPipelineConfig::default()
    };
    config.loader.formula_refresh = run.formula_refresh.clone();
    config.loader.reconcile = run.reconcile.clone();
    let notifier: Arc<dyn Notifier> = match &broker.alarm_topic_arn {
        Some(topic) => {
            let aws = crate::stack::aws_config(None).await;
            Arc::new(SnsNotifier::new(aws_sdk_sns::Client::new(&aws), topic))
        }
        None => Arc::new(FileNotifier::new(run.dir.join("notices.jsonl"))),
    };
    let queues = broker_queues(broker, &limits, config.queues.max_receives, notifier).await?;
    let (blobs, warehouse): (Arc<dyn BlobStore>, Arc<dyn Warehouse>) =
        match (&run.snowflake.snowflake_credentials, &run.snowflake.bucket) {
            (Some(secret), Some(bucket)) => {
                let (blobs, warehouse) =
                    crate::run::snowflake_ports(secret, bucket, &run.snowflake.prefix, None)
                        .await?;
                (blobs, warehouse)
            }
            _ => {
                std::fs::create_dir_all(&run.dir)?;
                let stores = directory_stores(&run.dir)?;
                (stores.blobs, stores.warehouse)
            }
        };
    Ok(Arc::new(LocalPipeline::on_queues(
        salesforce, blobs, warehouse, config, queues,
    )))
}

/// Runs the stages until SIGINT or SIGTERM; each worker then finishes the message it holds.
pub async fn worker(options: &WorkerOptions) -> anyhow::Result<()> {
    let stages = stages(&options.stages)?;
    let run = RunOptions {
        ca_cert: options.ca_cert.clone(),
        snowflake: options.snowflake.clone(),
        ..RunOptions::sqlite(
            options.login_url.clone(),
            options.credentials.clone(),
            "",
            options.dir.clone(),
        )
    };
    let pipeline = pipeline(&options.broker, &run, run.salesforce()?).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot watch for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("stopping: each worker finishes the message it holds");
        let _ = stop.send(true);
    });
    tracing::info!(broker = %options.broker.broker, ?stages, workers = options.workers, "serving");
    pipeline
        .serve(&stages, options.workers, stopped, Arc::new(NoEvents))
        .await;
    Ok(())
}

/// Queues a run of the objects on the broker; prints what it queued.
pub async fn load(options: &LoadOptions) -> anyhow::Result<String> {
    // One client, so one login, for naming the objects and for the job-loader.
    let salesforce = options.run.salesforce()?;
    let objects = crate::run::resolve_objects(salesforce.as_ref(), &options.run.objects).await?;
    let pipeline = pipeline(&options.broker, &options.run, salesforce).await?;
    let request = LoadRequest {
        objects,
        mode: if options.run.full {
            Mode::Full
        } else {
            Mode::Incremental
        },
        since: None,
        until: None,
    };
    let report = pipeline.load(&request, Utc::now(), &NoEvents).await?;
    let mut out = format!(
        "run {} queued on {} ({} objects)\n",
        report.run_id,
        options.broker.broker,
        report.queued.len()
    );
    for queued in &report.queued {
        out.push_str(&format!(
            "{:<16} {}\n",
            queued.object.as_str(),
            crate::run::window_label(queued.mode, queued.window.since)
        ));
    }
    for object in &report.unchanged {
        out.push_str(&format!(
            "{:<16} unchanged since its last merge: no run\n",
            object.as_str()
        ));
    }
    Ok(out)
}

/// What `sfpipe status` shows for a dead letter that carries no reason.
pub const NO_REASON_RECORDED: &str = "(no reason recorded)";

/// What `sfpipe status --broker` reads of a broker: the dead letters in its three dead-letter
/// queues (looked into and left there), and its stage queues counted. The queues are declared
/// as the workers declare them, so nothing about them changes.
pub async fn broker_status(
    url: &str,
    queue_prefix: &str,
) -> anyhow::Result<(
    Vec<sfpipe_shared::status::DeadLetter>,
    Vec<sfpipe_shared::status::QueueStatus>,
)> {
    let ports = StagePorts::on_broker(url, queue_prefix, &StageLimits::TEMPLATE, 5, &|q| q)
        .await
        .with_context(|| format!("connecting to the broker {url}"))?;
    let mut letters = Vec::new();
    for dlq in &ports.dead_letter_queues {
        letters.extend(
            sfpipe_shared::status::peek_dead_letters(dlq.as_ref(), 1_000, NO_REASON_RECORDED)
                .await?,
        );
    }
    let queues = [&ports.extract, &ports.upload, &ports.merge];
    let stage = |i: usize| sfpipe_shared::status::StageQueueRef {
        queue: queues[i].as_ref(),
        dead_letters: ports.dead_letter_queues.get(i).map(|q| q.as_ref()),
        concurrency: None,
    };
    let queues = sfpipe_shared::status::stage_queue_statuses([stage(0), stage(1), stage(2)]).await;
    Ok((letters, queues))
}
