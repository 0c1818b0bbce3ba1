//! The whole pipeline on one machine: the loader, then a pool of concurrent workers per stage, each
//! consuming its own queue as a Lambda event source mapping would, until every queue is drained.
//! The handlers are the same ones the Lambda functions run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::queue::{LocalQueue, LocalQueueConfig};
use crate::contracts::ObjectName;
use crate::deadline::{self, Deadline, FunctionLimits, StageLimits};
use crate::ports::{BlobStore, DEAD_LETTER_REASON, Queue, Salesforce, Warehouse};
use crate::stages::extract::{ExtractConfig, ExtractDeps, ExtractOutcome};
use crate::stages::loader::{
    LoadReport, LoadRequest, LoaderConfig, LoaderDeps, QueuedExtract, run_loader,
};
use crate::stages::merge::{MergeDeps, MergedRecord};
use crate::stages::runner::run_stage;
use crate::stages::upload::UploadDeps;
use crate::stages::{Cause, Stage, StageError};
use crate::worker::{Disposition, Settlement, process};

/// What happened, for progress bars and summaries.
#[derive(Debug, Clone)]
pub enum PipelineEvent {
    Queued {
        report: LoadReport,
    },
    Extracted {
        object: ObjectName,
        parts: u32,
    },
    Stored {
        object: ObjectName,
        part: u32,
        records: u64,
        bytes: u64,
    },
    Merged {
        object: ObjectName,
        record: MergedRecord,
    },
    Retrying {
        stage: Stage,
        reason: String,
    },
    DeadLettered {
        stage: Stage,
        reason: String,
    },
    /// A handler ran into its function's timeout and was abandoned, as Lambda kills it: its
    /// message comes back after its queue's visibility timeout.
    TimedOut {
        stage: Stage,
        timeout: Duration,
    },
}

pub trait PipelineEvents: Send + Sync {
    fn event(&self, event: PipelineEvent);
}

/// Ignores events.
pub struct NoEvents;
impl PipelineEvents for NoEvents {
    fn event(&self, _: PipelineEvent) {}
}

#[derive(Debug, Clone)]
pub struct WorkerCounts {
    pub extract: usize,
    pub upload: usize,
    pub merge: usize,
}

impl Default for WorkerCounts {
    fn default() -> Self {
        Self {
            extract: 4,
            upload: 4,
            merge: 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LocalPipelineConfig {
    pub workers: WorkerCounts,
    pub loader: LoaderConfig,
    pub extract: ExtractConfig,
    pub queues: LocalQueueConfig,
    /// First retry delay of a failed message; doubles with each receive.
    pub retry_base: Duration,
    /// Records per REST query page, for objects read with the REST API.
    pub rest_batch_size: u32,
    /// Each function's timeout and its queue's visibility timeout: the template's by default.
    /// A handler still running at its timeout is abandoned, as Lambda kills it; its message
    /// comes back after the visibility timeout. (`queues.visibility_timeout` is replaced by
    /// each stage's.)
    pub limits: StageLimits,
}

impl Default for LocalPipelineConfig {
    fn default() -> Self {
        Self {
            workers: WorkerCounts::default(),
            loader: LoaderConfig::default(),
            extract: ExtractConfig {
                first_poll_delay: Duration::from_millis(20),
                max_poll_delay: Duration::from_secs(2),
                ..ExtractConfig::default()
            },
            queues: LocalQueueConfig {
                visibility_timeout: Duration::from_secs(60),
                max_receives: crate::worker::DEFAULT_MAX_RECEIVES,
                fifo: false,
            },
            retry_base: Duration::from_millis(20),
            rest_batch_size: 2000,
            limits: StageLimits::TEMPLATE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("opening the blob directory: {0}")]
    Blobs(#[from] std::io::Error),
    #[error("opening the warehouse: {0}")]
    Warehouse(#[from] crate::ports::WarehouseError),
}

pub use crate::status::DeadLetter;

/// Wraps a queue port, for fault injection in tests.
pub type QueueWrapper = Arc<dyn Fn(Arc<dyn Queue>) -> Arc<dyn Queue> + Send + Sync>;

struct StageQueue {
    local: Arc<LocalQueue>,
    port: Arc<dyn Queue>,
}

pub struct LocalPipeline {
    salesforce: Arc<dyn Salesforce>,
    blobs: Arc<dyn BlobStore>,
    warehouse: Arc<dyn Warehouse>,
    extract: StageQueue,
    upload: StageQueue,
    merge: StageQueue,
    config: LocalPipelineConfig,
    /// The dead-letter queues of a broker's stage queues ([`LocalPipeline::on_queues`]); a
    /// drain then waits on the ports' depths and reads these for its dead letters.
    broker_dead_letters: Option<Vec<Arc<dyn Queue>>>,
}

impl LocalPipeline {
    pub fn new(
        salesforce: Arc<dyn Salesforce>,
        blobs: Arc<dyn BlobStore>,
        warehouse: Arc<dyn Warehouse>,
        config: LocalPipelineConfig,
        wrap_queue: Option<QueueWrapper>,
    ) -> Self {
        let stage_queue = |name: &str, fifo: bool, limits: FunctionLimits| {
            let (local, _dlq) = LocalQueue::with_dead_letter_queue(
                name,
                LocalQueueConfig {
                    fifo,
                    visibility_timeout: limits
                        .visibility_timeout
                        .unwrap_or(config.queues.visibility_timeout),
                    ..config.queues.clone()
                },
            );
            let port: Arc<dyn Queue> = match &wrap_queue {
                Some(wrap) => wrap(local.clone()),
                None => local.clone(),
            };
            StageQueue { local, port }
        };
        Self {
            extract: stage_queue("extract", false, config.limits.extract),
            upload: stage_queue("upload", false, config.limits.upload),
            merge: stage_queue("merge.fifo", true, config.limits.merge),
            salesforce,
            blobs,
            warehouse,
            config,
            broker_dead_letters: None,
        }
    }

    /// The pipeline's stages on queues of another kind (a broker's), shared with other
    /// processes: its workers receive from them and its handlers send to them. Run with
    /// [`LocalPipeline::serve`] and [`LocalPipeline::load`]; the in-process queues stay unused.
    /// A drain ([`LocalPipeline::run`]) on them waits until every port's `Queue::depth` reads
    /// zero, so the ports must count their messages (Redis, RabbitMQ and the local queue do; a
    /// port answering `None` would never let it finish).
    pub fn on_queues(
        salesforce: Arc<dyn Salesforce>,
        blobs: Arc<dyn BlobStore>,
        warehouse: Arc<dyn Warehouse>,
        config: LocalPipelineConfig,
        queues: StagePorts,
    ) -> Self {
        let mut pipeline = Self::new(salesforce, blobs, warehouse, config, None);
        pipeline.extract.port = queues.extract;
        pipeline.upload.port = queues.upload;
        pipeline.merge.port = queues.merge;
        pipeline.broker_dead_letters = Some(queues.dead_letter_queues);
        pipeline
    }

    /// The pipeline over a directory: parts in `dir/blobs/`, the warehouse in
    /// `dir/warehouse.sqlite` (its path is returned too).
    pub fn in_directory(
        dir: &std::path::Path,
        salesforce: Arc<dyn Salesforce>,
        config: LocalPipelineConfig,
    ) -> Result<(Arc<Self>, std::path::PathBuf), OpenError> {
        let stores = directory_stores(dir)?;
        let pipeline = Arc::new(Self::new(
            salesforce,
            stores.blobs,
            stores.warehouse,
            config,
            None,
        ));
        Ok((pipeline, stores.warehouse_path))
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Loads the request and runs every stage until all queues are drained.
    pub async fn run(
        self: &Arc<Self>,
        request: &LoadRequest,
        triggered_at: DateTime<Utc>,
        events: Arc<dyn PipelineEvents>,
    ) -> Result<RunResult, StageError> {
        let report = self.load(request, triggered_at, events.as_ref()).await?;
        events.event(PipelineEvent::Queued {
            report: report.clone(),
        });
        let dead_letters = self.drain(events).await;
        Ok(RunResult {
            report,
            dead_letters,
        })
    }

    /// The loader under its function's timeout. An invocation killed at its timeout is tried
    /// twice more, as Lambda retries an asynchronous invocation (an EventBridge schedule's).
    async fn run_loader_in_time(
        &self,
        deps: &LoaderDeps<'_, dyn Salesforce, dyn Queue, dyn Warehouse, dyn BlobStore>,
        request: &LoadRequest,
        triggered_at: DateTime<Utc>,
        events: &dyn PipelineEvents,
    ) -> Result<LoadReport, StageError> {
        let timeout = self.config.limits.job_loader.timeout;
        for _ in 0..2 {
            match killed_at(timeout, run_loader(deps, request, triggered_at)).await {
                Some(report) => return report,
                None => {
                    tracing::warn!(?timeout, "the job-loader timed out; trying it again");
                    events.event(PipelineEvent::TimedOut {
                        stage: Stage::Loader,
                        timeout,
                    });
                }
            }
        }
        killed_at(timeout, run_loader(deps, request, triggered_at))
            .await
            .unwrap_or_else(|| {
                Err(StageError::new(
                    Stage::Loader,
                    "(trigger)",
                    Cause::Inconsistent(format!(
                        "the job-loader ran into its {timeout:?} timeout three times"
                    )),
                ))
            })
    }

    /// Runs only the job-loader for `request`: the runs it queues are left to the stages'
    /// workers (of this process, or of others on a shared broker).
    pub async fn load(
        &self,
        request: &LoadRequest,
        triggered_at: DateTime<Utc>,
        events: &dyn PipelineEvents,
    ) -> Result<LoadReport, StageError> {
        let deps = LoaderDeps {
            salesforce: self.salesforce.as_ref(),
            extract_queue: self.extract.port.as_ref(),
            warehouse: self.warehouse.as_ref(),
            blobs: self.blobs.as_ref(),
            config: &self.config.loader,
        };
        self.run_loader_in_time(&deps, request, triggered_at, events)
            .await
    }

    /// Runs `workers` workers of each of `stages` until `stop` turns true; each stops between
    /// messages, so none is left half-handled. A long-lived worker process on a broker.
    pub async fn serve(
        self: &Arc<Self>,
        stages: &[Stage],
        workers: usize,
        stop: watch::Receiver<bool>,
        events: Arc<dyn PipelineEvents>,
    ) {
        let mut running = JoinSet::new();
        for &stage in stages {
            for _ in 0..workers.max(1) {
                running.spawn(self.clone().work(stage, stop.clone(), events.clone()));
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// The queue a stage consumes, as its port (wrapped, if a wrapper was given).
    pub fn queue(&self, stage: Stage) -> Arc<dyn Queue> {
        self.stage_queue(stage).port.clone()
    }

    /// Runs every stage's workers until all queues are drained; returns the dead letters.
    pub async fn drain(self: &Arc<Self>, events: Arc<dyn PipelineEvents>) -> Vec<DeadLetter> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = JoinSet::new();
        for _ in 0..self.config.workers.extract.max(1) {
            workers.spawn(
                self.clone()
                    .work(Stage::Extract, stop_rx.clone(), events.clone()),
            );
        }
        for _ in 0..self.config.workers.upload.max(1) {
            workers.spawn(
                self.clone()
                    .work(Stage::Upload, stop_rx.clone(), events.clone()),
            );
        }
        for _ in 0..self.config.workers.merge.max(1) {
            workers.spawn(
                self.clone()
                    .work(Stage::Merge, stop_rx.clone(), events.clone()),
            );
        }
        self.wait_until_drained().await;
        let _ = stop_tx.send(true);
        while workers.join_next().await.is_some() {}
        let dead_letters = self.dead_letters().await;
        self.keep_dead_letters(&dead_letters).await;
        dead_letters
    }

    /// The local queues live in memory: their dead letters are kept in the blob store, where
    /// `sfpipe status` finds them as it finds an SQS dead-letter queue's.
    async fn keep_dead_letters(&self, dead_letters: &[DeadLetter]) {
        for dead in dead_letters {
            let key = crate::status::dead_letter_key(&dead.queue, &dead.body);
            let body = bytes::Bytes::from(serde_json::to_vec(dead).unwrap_or_default());
            // A few attempts: a dead letter not kept is one nobody sees.
            for attempt in 1..=3 {
                match self.blobs.put_if_absent(&key, body.clone()).await {
                    Ok(_) => break,
                    Err(error) if attempt == 3 => {
                        tracing::error!(%key, %error, "could not keep a dead letter")
                    }
                    Err(_) => tokio::time::sleep(self.config.retry_base).await,
                }
            }
        }
    }

    /// Runs only `stage`'s workers until its queue is empty, leaving the messages it sends to the
    /// other stages in their queues (see [`LocalPipeline::pending`]): one stage at a time, as its
    /// own process, for measuring it.
    pub async fn drain_stage(
        self: &Arc<Self>,
        stage: Stage,
        workers: usize,
        events: Arc<dyn PipelineEvents>,
    ) -> Vec<DeadLetter> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut running = JoinSet::new();
        for _ in 0..workers.max(1) {
            running.spawn(self.clone().work(stage, stop_rx.clone(), events.clone()));
        }
        let local = self.stage_queue(stage).local.clone();
        while local.counts().total() > 0 {
            tokio::select! {
                _ = local.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let _ = stop_tx.send(true);
        while running.join_next().await.is_some() {}
        self.dead_letters().await
    }

    /// The stage queues' counts now, with each stage's workers: what `sfpipe status` shows of a
    /// run while it goes on (the CLI keeps it in a local run's directory).
    pub async fn queue_statuses(&self) -> Vec<crate::status::QueueStatus> {
        let stages = [&self.extract, &self.upload, &self.merge];
        let dead_letters: Vec<Option<Arc<dyn Queue>>> = match &self.broker_dead_letters {
            Some(queues) => (0..stages.len()).map(|i| queues.get(i).cloned()).collect(),
            None => stages
                .iter()
                .map(|s| {
                    s.local
                        .dead_letter_queue()
                        .map(|dlq| dlq.clone() as Arc<dyn Queue>)
                })
                .collect(),
        };
        let workers = &self.config.workers;
        let workers = [workers.extract, workers.upload, workers.merge];
        let status = |i: usize| crate::status::StageQueueRef {
            queue: stages[i].port.as_ref(),
            dead_letters: dead_letters[i].as_deref(),
            concurrency: Some(workers[i].max(1) as u32),
        };
        crate::status::stage_queue_statuses([status(0), status(1), status(2)]).await
    }

    /// The bodies of the messages waiting in a stage's queue.
    pub fn pending(&self, stage: Stage) -> Vec<String> {
        self.stage_queue(stage)
            .local
            .messages()
            .into_iter()
            .map(|(body, _)| body)
            .collect()
    }

    async fn wait_until_drained(&self) {
        if self.broker_dead_letters.is_some() {
            return self.wait_until_ports_drained().await;
        }
        let queues = [&self.extract.local, &self.upload.local, &self.merge.local];
        loop {
            // Messages are deleted only after the next stage's messages are sent, so the three
            // depths are never all zero while work remains.
            if queues.iter().all(|q| q.counts().total() == 0) {
                return;
            }
            tokio::select! {
                _ = self.extract.local.changed() => {}
                _ = self.upload.local.changed() => {}
                _ = self.merge.local.changed() => {}
                // Delayed messages become visible without any event.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// On a broker, done when the three ports' depths are all zero three times in a row: a broker's
    /// count is read in steps, and a message handed back between them could be missed once.
    async fn wait_until_ports_drained(&self) {
        let ports = [&self.extract.port, &self.upload.port, &self.merge.port];
        let mut zero_readings = 0;
        while zero_readings < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut all_zero = true;
            for port in ports {
                match port.depth().await {
                    Ok(Some(0)) => {}
                    Ok(_) => all_zero = false,
                    Err(error) => {
                        tracing::warn!(queue = port.name(), %error, "reading a queue's depth");
                        all_zero = false;
                    }
                }
            }
            zero_readings = if all_zero { zero_readings + 1 } else { 0 };
        }
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        if let Some(queues) = &self.broker_dead_letters {
            let mut letters = Vec::new();
            for dlq in queues {
                // An empty reason, so a letter without one shows as a violation in the checks.
                match crate::status::peek_dead_letters(dlq.as_ref(), 10_000, "").await {
                    Ok(found) => letters.extend(found),
                    Err(error) => {
                        tracing::error!(queue = dlq.name(), %error, "reading dead letters")
                    }
                }
            }
            return letters;
        }
        [&self.extract.local, &self.upload.local, &self.merge.local]
            .iter()
            .filter_map(|q| q.dead_letter_queue())
            .flat_map(|dlq| {
                dlq.messages()
                    .into_iter()
                    .map(|(body, attributes)| DeadLetter {
                        queue: dlq.name().to_string(),
                        body,
                        reason: attributes
                            .get(DEAD_LETTER_REASON)
                            .cloned()
                            .unwrap_or_default(),
                    })
            })
            .collect()
    }

    fn stage_queue(&self, stage: Stage) -> &StageQueue {
        match stage {
            Stage::Upload => &self.upload,
            Stage::Merge => &self.merge,
            Stage::Extract | Stage::Loader => &self.extract,
        }
    }

    async fn work(
        self: Arc<Self>,
        stage: Stage,
        mut stop: watch::Receiver<bool>,
        events: Arc<dyn PipelineEvents>,
    ) {
        let queue = self.stage_queue(stage).port.clone();
        let timeout = self.config.limits.of(stage).timeout;
        loop {
            if *stop.borrow() {
                return;
            }
            let received = tokio::select! {
                received = queue.receive(1, Duration::from_millis(200)) => received,
                _ = stop.changed() => return,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(queue = queue.name(), %error, "receive failed");
                    continue;
                }
            };
            for message in messages {
                let handler_events = events.clone();
                let pipeline = self.clone();
                let handling = process(
                    queue.as_ref(),
                    &message,
                    self.config.retry_base,
                    self.config.queues.max_receives,
                    Settlement::Here,
                    |body| async move { pipeline.handle(stage, &body, handler_events.as_ref()).await },
                );
                let Some(settled) = killed_at(timeout, handling).await else {
                    // Unsettled, as after a killed Lambda: back after the visibility timeout.
                    tracing::warn!(queue = queue.name(), ?timeout, "the handler timed out");
                    events.event(PipelineEvent::TimedOut { stage, timeout });
                    continue;
                };
                match settled {
                    Ok(Disposition::Done) => {}
                    Ok(Disposition::Retried { reason, .. }) => {
                        events.event(PipelineEvent::Retrying { stage, reason })
                    }
                    Ok(Disposition::DeadLettered { reason }) => {
                        events.event(PipelineEvent::DeadLettered { stage, reason })
                    }
                    // The message stays invisible until its visibility timeout, then comes back.
                    Err(error) => {
                        tracing::warn!(queue = queue.name(), %error, "could not settle a message")
                    }
                }
            }
        }
    }

    async fn handle(
        &self,
        stage: Stage,
        body: &str,
        events: &dyn PipelineEvents,
    ) -> Result<(), StageError> {
        match stage {
            Stage::Extract | Stage::Loader => {
                let deps = ExtractDeps {
                    salesforce: self.salesforce.as_ref(),
                    blobs: self.blobs.as_ref(),
                    extract_queue: self.extract.port.as_ref(),
                    upload_queue: self.upload.port.as_ref(),
                    merge_queue: self.merge.port.as_ref(),
                    config: &self.config.extract,
                };
                if let (message, ExtractOutcome::FannedOut { parts, .. }) =
                    run_stage(&deps, body).await?
                {
                    events.event(PipelineEvent::Extracted {
                        object: message.object,
                        parts,
                    });
                }
            }
            Stage::Upload => {
                let deps = UploadDeps {
                    salesforce: self.salesforce.as_ref(),
                    blobs: self.blobs.as_ref(),
                    upload_queue: self.upload.port.as_ref(),
                    merge_queue: self.merge.port.as_ref(),
                    rest_batch_size: self.config.rest_batch_size,
                };
                let (message, outcome) = run_stage(&deps, body).await?;
                events.event(PipelineEvent::Stored {
                    object: message.object,
                    part: message.part,
                    records: outcome.manifest.records,
                    bytes: outcome.manifest.bytes,
                });
            }
            Stage::Merge => {
                let deps = MergeDeps {
                    blobs: self.blobs.as_ref(),
                    warehouse: self.warehouse.as_ref(),
                };
                let (message, record) = run_stage(&deps, body).await?;
                events.event(PipelineEvent::Merged {
                    object: message.object,
                    record,
                });
            }
        }
        Ok(())
    }
}

/// Runs `work` with a deadline `timeout` from now, as a Lambda invocation: `None` if it was
/// still running then, and was dropped where it stood.
async fn killed_at<F: std::future::Future>(timeout: Duration, work: F) -> Option<F::Output> {
    let deadline = Deadline::after(timeout);
    tokio::time::timeout(timeout, deadline::within(deadline, work))
        .await
        .ok()
}

/// The stores of a directory: parts in `dir/blobs/`, the warehouse in `dir/warehouse.sqlite`.
pub struct DirectoryStores {
    pub blobs: Arc<dyn BlobStore>,
    pub warehouse: Arc<dyn Warehouse>,
    pub warehouse_path: std::path::PathBuf,
}

pub fn directory_stores(dir: &std::path::Path) -> Result<DirectoryStores, OpenError> {
    let blobs: Arc<dyn BlobStore> = Arc::new(super::FsBlobStore::new(dir.join("blobs"))?);
    let warehouse_path = dir.join("warehouse.sqlite");
    let warehouse: Arc<dyn Warehouse> = Arc::new(super::SqliteWarehouse::open(
        &warehouse_path,
        blobs.clone(),
    )?);
    Ok(DirectoryStores {
        blobs,
        warehouse,
        warehouse_path,
    })
}

/// The queue each stage consumes, when they are not the pipeline's own (a broker's).
pub struct StagePorts {
    pub extract: Arc<dyn Queue>,
    pub upload: Arc<dyn Queue>,
    pub merge: Arc<dyn Queue>,
    /// Their dead-letter queues, where a drain finds its dead letters.
    pub dead_letter_queues: Vec<Arc<dyn Queue>>,
}

#[cfg(any(feature = "redis", feature = "rabbitmq"))]
impl StagePorts {
    /// The stage queues on the broker `url` names: `<prefix>-extract`, `-upload` and `-merge`,
    /// each with its `-dlq`. The merge queue keeps each object's merges one at a time, in order,
    /// as the FIFO queue on AWS does; a worker that dies holding a message gets it back after
    /// the stage's visibility timeout, as on SQS. `wrap` wraps each stage queue (notices, faults).
    pub async fn on_broker(
        url: &str,
        prefix: &str,
        limits: &crate::deadline::StageLimits,
        max_receives: u32,
        wrap: &(dyn Fn(Arc<dyn Queue>) -> Arc<dyn Queue> + Send + Sync),
    ) -> Result<Self, crate::ports::QueueError> {
        use crate::brokers::{BrokerQueueConfig, connect};
        let mut dead_letter_queues = Vec::new();
        let mut stage_queue = async |stage: Stage, suffix: &str, fifo: bool| {
            let limits = limits.of(stage);
            let name = format!("{prefix}-{suffix}");
            let dlq = format!("{name}-dlq");
            let config = BrokerQueueConfig {
                visibility_timeout: limits.visibility_timeout.unwrap_or(limits.timeout * 6),
                max_receives,
                fifo,
            };
            let port = wrap(connect(url, &name, Some(&dlq), config.clone()).await?);
            let dlq_config = BrokerQueueConfig {
                fifo: false,
                ..config
            };
            dead_letter_queues.push(connect(url, &dlq, None, dlq_config).await?);
            Ok::<_, crate::ports::QueueError>(port)
        };
        let extract = stage_queue(Stage::Extract, "extract", false).await?;
        let upload = stage_queue(Stage::Upload, "upload", false).await?;
        let merge = stage_queue(Stage::Merge, "merge", true).await?;
        Ok(Self {
            extract,
            upload,
            merge,
            dead_letter_queues,
        })
    }
}

/// An object of a run that did not merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    pub object: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct RunResult {
    pub report: LoadReport,
    pub dead_letters: Vec<DeadLetter>,
}

impl RunResult {
    /// Every queued run with its merged record (`None`: not merged), in the order queued.
    pub async fn records(
        &self,
        blobs: &dyn BlobStore,
    ) -> Vec<(QueuedExtract, Option<MergedRecord>)> {
        let mut out = Vec::with_capacity(self.report.queued.len());
        for queued in &self.report.queued {
            let layout = crate::contracts::RunLayout::new(&queued.object, &queued.run_id);
            let record = blobs
                .get_bytes(&layout.merged())
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.push((queued.clone(), record));
        }
        out
    }

    /// The objects of the run that did not merge, with why: each dead letter's reason, and each
    /// run neither merged nor covered by merged halves (a split). A formula refresh that found
    /// no formula fields has nothing to merge and is no failure.
    pub async fn failures(&self, blobs: &dyn BlobStore) -> Vec<RunFailure> {
        let mut failures: Vec<RunFailure> = self
            .dead_letters
            .iter()
            .map(|dead| RunFailure {
                object: dead
                    .field("object")
                    .unwrap_or_else(|| "(unreadable message)".into()),
                reason: format!("dead-lettered in {}: {}", dead.queue, dead.reason),
            })
            .collect();
        for (queued, record) in self.records(blobs).await {
            let object = queued.object.to_string();
            if record.is_some()
                || queued.mode == crate::contracts::Mode::FormulaRefresh
                || failures.iter().any(|f| f.object == object)
            {
                continue;
            }
            let holes = blobs
                .list(&crate::contracts::holes_prefix(&queued.object))
                .await
                .unwrap_or_default();
            let split_merged = blobs
                .list(&format!("runs/{object}/{}-", queued.run_id))
                .await
                .unwrap_or_default()
                .iter()
                .any(|b| b.key.ends_with("/_merged.json"));
            if !split_merged || !holes.is_empty() {
                failures.push(RunFailure {
                    object,
                    reason: "not merged, and no dead letter says why: see `sfpipe status`".into(),
                });
            }
        }
        failures
    }

    /// The merged record of every object of the run itself (not of its formula refreshes).
    pub async fn merged_records(
        &self,
        blobs: &dyn BlobStore,
    ) -> BTreeMap<ObjectName, Option<MergedRecord>> {
        self.records(blobs)
            .await
            .into_iter()
            .filter(|(queued, _)| queued.run_id == self.report.run_id)
            .map(|(queued, record)| (queued.object, record))
            .collect()
    }
}
