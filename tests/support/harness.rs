//! The whole pipeline against the simulator, on the local adapters, in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sfpipe_cli::verify::{ObjectCheck, compare_objects};
use sfpipe_shared::contracts::{Mode, ObjectName};
use sfpipe_shared::local::pipeline::{
    LocalPipelineConfig, QueueWrapper, RunResult, StagePorts, WorkerCounts,
};
use sfpipe_shared::local::{FsBlobStore, LocalPipeline, NoEvents, SqliteWarehouse};
use sfpipe_shared::ports::{BlobStore, Queue, Warehouse};
use sfpipe_shared::stages::loader::LoadRequest;
use sfpipe_shared::usage::{LOADER_RECEIPTS, RECEIPTS_PREFIX, Usage, UsageRecord, kept_usage};
use sfpipe_simulator::{SimConfig, Simulator};

use crate::faults::{FaultPlan, FaultyBlobs, FaultyWarehouse, SendBehaviour, WrappedQueue};

#[derive(Clone)]
pub struct HarnessOptions {
    /// The org: 30 rows per object by default, jobs done after one status check.
    pub sim: SimConfig,
    pub objects: Vec<&'static str>,
    pub plan: Option<Arc<FaultPlan>>,
    pub sends: SendBehaviour,
    pub page_records: u64,
    /// Objects configured to be read with the REST API.
    pub rest_objects: Vec<&'static str>,
    /// Per-object field lists.
    pub fields: Vec<(&'static str, sfpipe_shared::stages::extract::FieldSelection)>,
    /// How long a Bulk job may run before it is aborted (the default's six hours otherwise).
    pub bulk_job_deadline: Option<Duration>,
    /// How often formula fields are re-read (daily otherwise).
    pub formula_refresh: Option<sfpipe_shared::stages::loader::IntervalSchedule>,
    /// How often Ids are reconciled (default: the loader's, daily).
    pub reconcile: Option<sfpipe_shared::stages::loader::IntervalSchedule>,
    /// Wraps the warehouse (after the fault plan's wrapper), to watch or fail its calls.
    pub wrap_warehouse: Option<WarehouseWrapper>,
    /// The client secret the pipeline logs in with, instead of the simulator's (another org's).
    pub client_secret: Option<String>,
    /// Changes the loader's probe counts below this are read with the REST API; 0 (the
    /// harness's default, so the older tests keep exercising Bulk jobs) reads them with Bulk.
    pub rest_below: u64,
    /// Wraps the blob store (after the fault plan's wrapper), to watch or fail its calls.
    pub wrap_blobs: Option<BlobWrapper>,
    /// The functions' timeouts and visibility timeouts (the template's by default): a handler
    /// still running at its timeout is abandoned, as Lambda kills it.
    pub limits: Option<sfpipe_shared::deadline::StageLimits>,
    /// Workers per stage (one each by default, so runs are reproducible).
    pub workers: Option<WorkerCounts>,
    /// The stages' queues on this broker (`redis://...`, `amqp://...`) instead of in-process
    /// queues, named `<prefix>-extract` and so on.
    pub broker: Option<(String, String)>,
}

pub type BlobWrapper = Arc<dyn Fn(Arc<dyn BlobStore>) -> Arc<dyn BlobStore> + Send + Sync>;

pub type WarehouseWrapper = Arc<dyn Fn(Arc<dyn Warehouse>) -> Arc<dyn Warehouse> + Send + Sync>;

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            sim: SimConfig {
                rows: 30,
                bulk_polls_to_complete: 1,
                // Salesforce's own page size on resultPages, here as small as `page_records`.
                result_page_rows: 12,
                ..SimConfig::default()
            },
            objects: vec!["Account", "Contact"],
            plan: None,
            sends: SendBehaviour::default(),
            page_records: 12,
            rest_objects: Vec::new(),
            fields: Vec::new(),
            bulk_job_deadline: None,
            formula_refresh: None,
            reconcile: None,
            wrap_warehouse: None,
            client_secret: None,
            rest_below: 0,
            wrap_blobs: None,
            limits: None,
            workers: None,
            broker: None,
        }
    }
}

pub struct Harness {
    pub sim: Simulator,
    pub pipeline: Arc<LocalPipeline>,
    pub warehouse_path: PathBuf,
    /// The blob store's directory, to read it without the injected faults.
    pub blobs_path: PathBuf,
    pub objects: Vec<ObjectName>,
    names: Vec<&'static str>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(options: HarnessOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = crate::simulator(options.sim.clone()).await;
        let mut blobs: Arc<dyn BlobStore> =
            Arc::new(FsBlobStore::new(dir.path().join("blobs")).expect("blob store"));
        if let Some(plan) = &options.plan {
            blobs = Arc::new(FaultyBlobs {
                inner: blobs,
                plan: plan.clone(),
            });
        }
        if let Some(wrap) = &options.wrap_blobs {
            blobs = wrap(blobs);
        }
        let warehouse_path = dir.path().join("warehouse.sqlite");
        let mut warehouse: Arc<dyn Warehouse> =
            Arc::new(SqliteWarehouse::open(&warehouse_path, blobs.clone()).expect("warehouse"));
        if let Some(plan) = &options.plan {
            warehouse = Arc::new(FaultyWarehouse {
                inner: warehouse,
                plan: plan.clone(),
            });
        }
        if let Some(wrap) = &options.wrap_warehouse {
            warehouse = wrap(warehouse);
        }
        let mut sends = options.sends.clone();
        if sends.plan.is_none() {
            sends.plan = options.plan.clone();
        }
        let wrap: QueueWrapper = Arc::new(move |inner: Arc<dyn Queue>| -> Arc<dyn Queue> {
            Arc::new(WrappedQueue {
                inner,
                behaviour: sends.clone(),
            })
        });
        let mut config = LocalPipelineConfig {
            workers: options.workers.clone().unwrap_or(WorkerCounts {
                extract: 1,
                upload: 1,
                merge: 1,
            }),
            retry_base: Duration::from_millis(5),
            ..LocalPipelineConfig::default()
        };
        if let Some(limits) = options.limits {
            config.limits = limits;
        }
        config.loader.until_lag = Duration::ZERO;
        config.loader.rest_below = options.rest_below;
        if let Some(schedule) = &options.formula_refresh {
            config.loader.formula_refresh = schedule.clone();
        }
        if let Some(schedule) = &options.reconcile {
            config.loader.reconcile = schedule.clone();
        }
        config.extract.page_records = options.page_records;
        config.extract.first_poll_delay = Duration::from_millis(5);
        if let Some(deadline) = options.bulk_job_deadline {
            config.extract.bulk_job_deadline = deadline;
        }
        config.extract.rest_objects = options.rest_objects.iter().map(|o| o.to_string()).collect();
        config.extract.fields = options
            .fields
            .iter()
            .map(|(o, f)| (o.to_string(), f.clone()))
            .collect();
        // The smallest page Salesforce allows, so small test objects still span several pages.
        config.rest_batch_size = 200;
        let salesforce = Arc::new(crate::client_with(
            &sim,
            sfpipe_shared::salesforce::Credentials::ClientCredentials {
                client_id: sim.config().client_id.clone(),
                client_secret: options
                    .client_secret
                    .clone()
                    .unwrap_or_else(|| sim.config().client_secret.clone())
                    .into(),
            },
        ));
        let pipeline = Arc::new(match &options.broker {
            None => LocalPipeline::new(salesforce, blobs, warehouse, config, Some(wrap)),
            Some((url, prefix)) => {
                let ports = StagePorts::on_broker(
                    url,
                    prefix,
                    &config.limits,
                    config.queues.max_receives,
                    wrap.as_ref(),
                )
                .await
                .expect("the broker's queues");
                LocalPipeline::on_queues(salesforce, blobs, warehouse, config, ports)
            }
        });
        let objects = options
            .objects
            .iter()
            .map(|o| ObjectName::new(*o).expect("object name"))
            .collect();
        Self {
            sim,
            pipeline,
            warehouse_path,
            blobs_path: dir.path().join("blobs"),
            objects,
            names: options.objects,
            _dir: dir,
        }
    }

    /// One scheduled run. The loader is retried as EventBridge would retry a failed invocation.
    pub async fn run(&self) -> RunResult {
        self.run_at(Utc::now()).await
    }

    /// One scheduled run as if triggered at `triggered_at` (a later time: a schedule's interval
    /// has passed).
    pub async fn run_at(&self, triggered_at: chrono::DateTime<Utc>) -> RunResult {
        self.run_watched(triggered_at, Arc::new(NoEvents)).await
    }

    /// [`Self::run_at`], with the pipeline's events told to `events`.
    pub async fn run_watched(
        &self,
        triggered_at: chrono::DateTime<Utc>,
        events: Arc<dyn sfpipe_shared::local::pipeline::PipelineEvents>,
    ) -> RunResult {
        let request = LoadRequest {
            objects: self.objects.clone(),
            mode: Mode::Incremental,
            since: None,
            until: None,
        };
        let mut last_error = None;
        for _ in 0..3 {
            match self
                .pipeline
                .run(&request, triggered_at, events.clone())
                .await
            {
                Ok(result) => return result,
                Err(error) => last_error = Some(error),
            }
        }
        panic!("the loader failed three times: {last_error:?}");
    }

    /// One scheduled run that must end without a dead letter and with the warehouse exact.
    pub async fn run_exact(&self, context: &str) -> RunResult {
        let result = self.run().await;
        assert!(
            result.dead_letters.is_empty(),
            "{context}: {:#?}",
            result.dead_letters
        );
        self.assert_exact(context);
        result
    }

    /// Mutates the org a millisecond ago, so the next run's window includes the changes.
    pub fn mutate(&self) {
        self.sim
            .mutate(Utc::now() - chrono::Duration::milliseconds(1));
    }

    /// The warehouse compared with the org, for the harness's objects.
    pub fn check(&self) -> Vec<ObjectCheck> {
        let org = self.sim.with_org(|org| org.clone());
        let names: Vec<&str> = self
            .names
            .iter()
            .copied()
            .filter(|n| org.object(n).is_some())
            .collect();
        compare_objects(&org, &self.warehouse_path, &names).expect("compare")
    }

    pub fn assert_exact(&self, context: &str) {
        for check in self.check() {
            assert!(check.is_exact(), "{context}: {check:#?}");
            assert!(
                check.fields_checked > 0,
                "{context}: nothing was compared for {}",
                check.object
            );
        }
    }

    /// Every usage record kept under `receipts/<prefix>`, read without the injected faults.
    pub async fn receipts(&self, prefix: &str) -> Vec<UsageRecord> {
        let blobs = FsBlobStore::new(&self.blobs_path).expect("blob store");
        kept_usage(&blobs, &format!("{RECEIPTS_PREFIX}{prefix}"))
            .await
            .expect("receipts")
    }

    /// The sum of every stage's usage for the runs `result` queued, and for its job-loader trigger.
    pub async fn usage_of(&self, result: &RunResult) -> Usage {
        let mut total = Usage::default();
        let mut prefixes = vec![format!("{LOADER_RECEIPTS}/{}/", result.report.run_id)];
        prefixes.extend(
            result
                .report
                .queued
                .iter()
                .map(|q| format!("{}/{}/", q.object, q.run_id)),
        );
        for prefix in prefixes {
            for record in self.receipts(&prefix).await {
                total.add(&record.usage);
            }
        }
        total
    }

    /// Every row of every table, lineage and state included, as text.
    pub fn snapshot(&self) -> Vec<String> {
        let connection = rusqlite::Connection::open(&self.warehouse_path).expect("open");
        let mut tables: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("tables");
        tables.sort();
        let mut out = Vec::new();
        for table in tables {
            let mut statement = connection
                .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1"))
                .expect("prepare");
            let columns = statement.column_count();
            let mut rows = statement.query([]).expect("query");
            while let Some(row) = rows.next().expect("row") {
                let values: Vec<String> = (0..columns)
                    .map(|i| format!("{:?}", row.get_ref(i).expect("value")))
                    .collect();
                out.push(format!("{table}: {}", values.join(" | ")));
            }
        }
        out
    }
}
