//! `sfpipe demo`: the simulator, the four stages over the local adapters, and a summary, on one
//! machine with no account anywhere. Run again, it mutates the org and runs incrementally.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sfpipe_shared::contracts::{Mode, ObjectName};
use sfpipe_shared::local::pipeline::{DeadLetter, LocalPipelineConfig};
use sfpipe_shared::local::{LocalPipeline, PipelineEvent, PipelineEvents};
use sfpipe_shared::salesforce::{Credentials, SalesforceClient, SalesforceConfig};
use sfpipe_shared::stages::loader::LoadRequest;
use sfpipe_simulator::{Org, SimConfig, Simulator};

use crate::verify::{self, ObjectCheck};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub rows: u64,
    pub seed: u64,
    pub dir: PathBuf,
    /// Start over: forget the previous runs in `dir`.
    pub fresh: bool,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Compare the warehouse with the org field for field at the end.
    pub verify: bool,
    pub pipeline: LocalPipelineConfig,
}

impl DemoOptions {
    pub fn new(dir: impl Into<PathBuf>, rows: u64, seed: u64) -> Self {
        let mut pipeline = LocalPipelineConfig::default();
        // The simulator commits instantly, so a window may end at the trigger time.
        pipeline.loader.until_lag = Duration::ZERO;
        Self {
            rows,
            seed,
            dir: dir.into(),
            fresh: false,
            progress: false,
            verify: true,
            pipeline,
        }
    }
}

/// What survives between demo runs: enough to rebuild the org exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoState {
    pub seed: u64,
    pub rows: u64,
    pub rounds: Vec<DateTime<Utc>>,
}

impl DemoState {
    fn path(dir: &Path) -> PathBuf {
        dir.join("simulator.json")
    }

    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a demo state file; delete the directory or use --fresh",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The org as the simulator serves it.
    pub fn org(&self) -> Org {
        Org::replay(self.seed, self.rows, &self.rounds)
    }
}

#[derive(Debug, Clone)]
pub struct ObjectSummary {
    pub object: String,
    pub mode: Mode,
    pub since: Option<DateTime<Utc>>,
    /// Read with the REST API (a small change) rather than a Bulk job.
    pub rest: bool,
    pub salesforce_live: u64,
    pub warehouse_live: u64,
    pub extracted: u64,
    pub changed: u64,
    pub files: u32,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub run_number: usize,
    pub run_id: String,
    pub objects: Vec<ObjectSummary>,
    pub checks: Option<Vec<ObjectCheck>>,
    pub dead_letters: Vec<DeadLetter>,
    pub warehouse: PathBuf,
    pub elapsed: Duration,
}

impl DemoOutcome {
    pub fn is_exact(&self) -> bool {
        self.dead_letters.is_empty()
            && self
                .checks
                .as_ref()
                .is_none_or(|checks| checks.iter().all(ObjectCheck::is_exact))
    }
}

/// Progress bars per stage, and per-object timings.
struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar, ProgressBar)>,
    started: Instant,
    merged_at: Mutex<BTreeMap<ObjectName, f64>>,
}

impl Progress {
    fn new(show: bool, objects: u64) -> Self {
        let bars = show.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix:>8} {bar:40.cyan/blue} {pos:>5}/{len:5} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = |name: &str, len: u64| {
                let bar = multi.add(ProgressBar::new(len));
                bar.set_style(style.clone());
                bar.set_prefix(name.to_string());
                bar
            };
            let extract = bar("extract", objects);
            let upload = bar("upload", 0);
            let merge = bar("merge", objects);
            (multi, extract, upload, merge)
        });
        Self {
            bars,
            started: Instant::now(),
            merged_at: Mutex::new(BTreeMap::new()),
        }
    }

    fn finish(&self) {
        if let Some((_, extract, upload, merge)) = &self.bars {
            extract.finish();
            upload.finish();
            merge.finish();
        }
    }
}

impl PipelineEvents for Progress {
    fn event(&self, event: PipelineEvent) {
        match event {
            PipelineEvent::Extracted { parts, .. } => {
                if let Some((_, extract, upload, _)) = &self.bars {
                    extract.inc(1);
                    upload.inc_length(parts as u64);
                }
            }
            PipelineEvent::Stored { records, .. } => {
                if let Some((_, _, upload, _)) = &self.bars {
                    upload.inc(1);
                    upload.set_message(format!("{records} rows/part"));
                }
            }
            PipelineEvent::Merged { object, .. } => {
                let elapsed = self.started.elapsed().as_secs_f64();
                self.merged_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(object)
                    .or_insert(elapsed);
                if let Some((_, _, _, merge)) = &self.bars {
                    merge.inc(1);
                }
            }
            PipelineEvent::Retrying { stage, reason } => {
                if let Some((multi, ..)) = &self.bars {
                    let _ = multi.println(format!("retrying ({stage}): {reason}"));
                }
            }
            PipelineEvent::DeadLettered { stage, reason } => {
                if let Some((multi, ..)) = &self.bars {
                    let _ = multi.println(format!("dead-lettered ({stage}): {reason}"));
                }
            }
            PipelineEvent::TimedOut { stage, timeout } => {
                if let Some((multi, ..)) = &self.bars {
                    let _ = multi.println(format!(
                        "timed out ({stage}) after {timeout:?}: its message comes back after its visibility timeout"
                    ));
                }
            }
            PipelineEvent::Queued { .. } => {}
        }
    }
}

/// A client of a simulator started on this machine, with the credentials it accepts.
pub(crate) fn simulator_client(
    simulator: &Simulator,
    config: &SimConfig,
) -> anyhow::Result<Arc<SalesforceClient>> {
    Ok(Arc::new(SalesforceClient::new(
        SalesforceConfig::new(simulator.url()),
        Credentials::ClientCredentials {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone().into(),
        },
    )?))
}

pub async fn run_demo(options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let started = Instant::now();
    let dir = &options.dir;
    if options.fresh && dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut state = match DemoState::load(dir)? {
        Some(state) if state.seed != options.seed || state.rows != options.rows => anyhow::bail!(
            "{} holds a demo with --seed {} --rows {}; run with those, or add --fresh to start over",
            dir.display(),
            state.seed,
            state.rows
        ),
        Some(state) => state,
        None => DemoState {
            seed: options.seed,
            rows: options.rows,
            rounds: Vec::new(),
        },
    };
    let first_run = !dir.join("warehouse.sqlite").exists();
    let sim_config = SimConfig {
        seed: state.seed,
        rows: state.rows,
        rounds: state.rounds.clone(),
        bulk_polls_to_complete: 1,
        ..SimConfig::default()
    };
    let simulator = Simulator::start_local(sim_config.clone())
        .await
        .context("starting the Salesforce simulator")?;
    if !first_run {
        // Stamped a millisecond in the past so the run's window, which ends now, includes it.
        let at = Utc::now() - chrono::Duration::milliseconds(1);
        simulator.mutate(at);
        state.rounds.push(at);
    }
    state.save(dir)?;

    let salesforce = simulator_client(&simulator, &sim_config)?;
    let (pipeline, warehouse_path) =
        LocalPipeline::in_directory(dir, salesforce, options.pipeline.clone())?;
    let blobs = pipeline.blobs().clone();
    let objects: Vec<ObjectName> = simulator.with_org(|org| {
        org.objects
            .iter()
            .filter_map(|o| ObjectName::new(o.name).ok())
            .collect()
    });
    let request = LoadRequest {
        objects: objects.clone(),
        mode: Mode::Incremental,
        since: None,
        until: None,
    };
    let progress = Arc::new(Progress::new(options.progress, objects.len() as u64));
    let counts = crate::queue_counts::keep(pipeline.clone(), dir);
    let result = pipeline.run(&request, Utc::now(), progress.clone()).await;
    counts.finish().await;
    let result = result.context("running the pipeline")?;
    progress.finish();
    simulator.stop().await;

    let org = state.org();
    let checks = if options.verify {
        Some(verify::compare(&org, &warehouse_path)?)
    } else {
        None
    };
    let records = result.records(blobs.as_ref()).await;
    let merged_at = progress
        .merged_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let live = warehouse_live_counts(&warehouse_path, &objects)?;
    let summaries = records
        .into_iter()
        .map(|(queued, record)| {
            let position = org.object(queued.object.as_str()).map(|(i, _)| i);
            ObjectSummary {
                object: queued.object.to_string(),
                mode: queued.mode,
                since: queued.window.since,
                rest: queued.rest,
                salesforce_live: position.map_or(0, |i| org.live_count(i)),
                warehouse_live: live.get(queued.object.as_str()).copied().unwrap_or(0),
                extracted: record.as_ref().map_or(0, |r| r.records),
                changed: record.as_ref().map_or(0, |r| r.report.rows_changed),
                files: record.as_ref().map_or(0, |r| r.parts),
                bytes: record.as_ref().map_or(0, |r| r.bytes),
                seconds: merged_at.get(&queued.object).copied().unwrap_or(f64::NAN),
            }
        })
        .collect();
    Ok(DemoOutcome {
        run_number: state.rounds.len() + 1,
        run_id: result.report.run_id.to_string(),
        objects: summaries,
        checks,
        dead_letters: result.dead_letters,
        warehouse: warehouse_path,
        elapsed: started.elapsed(),
    })
}

fn warehouse_live_counts(
    path: &Path,
    objects: &[ObjectName],
) -> anyhow::Result<BTreeMap<String, u64>> {
    let connection = rusqlite::Connection::open(path)?;
    let mut counts = BTreeMap::new();
    for object in objects {
        let count: Option<i64> = connection
            .query_row(
                &format!("SELECT COUNT(*) FROM \"{object}\" WHERE \"IsDeleted\" = 0"),
                [],
                |row| row.get(0),
            )
            .ok();
        counts.insert(object.to_string(), count.unwrap_or(0) as u64);
    }
    Ok(counts)
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The summary a person reads after a demo run.
pub fn render(outcome: &DemoOutcome) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "run {} ({}), {:.1} s\n\n",
        outcome.run_number,
        outcome.run_id,
        outcome.elapsed.as_secs_f64()
    ));
    out.push_str(&format!(
        "{:<12} {:<37} {:>11} {:>11} {:>10} {:>8} {:>6} {:>10} {:>8}\n",
        "object",
        "window",
        "SF live",
        "WH live",
        "extracted",
        "changed",
        "files",
        "bytes",
        "seconds"
    ));
    for o in &outcome.objects {
        let mut window = crate::run::window_label(o.mode, o.since);
        if o.rest {
            window.push_str(" (REST)");
        }
        out.push_str(&format!(
            "{:<12} {:<37} {:>11} {:>11} {:>10} {:>8} {:>6} {:>10} {:>8.2}\n",
            o.object,
            window,
            o.salesforce_live,
            o.warehouse_live,
            o.extracted,
            o.changed,
            o.files,
            human_bytes(o.bytes),
            o.seconds
        ));
    }
    if let Some(checks) = &outcome.checks {
        let fields: u64 = checks.iter().map(|c| c.fields_checked).sum();
        let bad: Vec<&ObjectCheck> = checks.iter().filter(|c| !c.is_exact()).collect();
        if bad.is_empty() {
            out.push_str(&format!(
                "\nverified: the warehouse equals Salesforce ({fields} fields compared, every Id exactly once, deleted rows flagged)\n"
            ));
        } else {
            for check in bad {
                out.push_str(&format!(
                    "\nMISMATCH in {}: Salesforce {} rows ({} live), warehouse {} rows ({} live, {} distinct Ids), {} field differences\n",
                    check.object, check.salesforce_rows, check.salesforce_live, check.warehouse_rows,
                    check.warehouse_live, check.warehouse_distinct_ids, check.mismatch_count
                ));
                for m in &check.mismatches {
                    out.push_str(&format!("  {m}\n"));
                }
            }
        }
    }
    for dead in &outcome.dead_letters {
        out.push_str(&format!(
            "\ndead letter in {}: {}\n",
            dead.queue, dead.reason
        ));
    }
    out.push_str(&format!("\nwarehouse: {}\n", outcome.warehouse.display()));
    out.push_str("run the demo again to mutate the org and load only what changed\n");
    out
}
