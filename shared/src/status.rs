//! What the pipeline has done, read only from what it already stores: per object its runs (window,
//! stage reached, Salesforce job, counts, duration and receipt), its watermark and open holes, and
//! its dead letters with their reasons. The same reading serves a local directory and a deployed
//! stack: it takes the blob store, the warehouse and the dead letters as ports and values.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contracts::{
    BulkJobRecord, ExtractedRecord, Mode, ObjectName, PartManifest, RunLayout, Window,
    holes_prefix, rfc3339,
};
use crate::ports::{BlobError, BlobStore, DEAD_LETTER_REASON, Queue, QueueError, Warehouse};
use crate::stages::merge::MergedRecord;
use crate::usage::{RunUsage, kept_usage, run_receipts_prefix};

/// Where the local pipeline keeps its dead letters (its queues live in memory).
pub const DEAD_LETTERS_PREFIX: &str = "dead-letters/";

/// One key per message and queue, so keeping the same dead letter twice writes it once.
pub fn dead_letter_key(queue: &str, body: &str) -> String {
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    format!("{DEAD_LETTERS_PREFIX}{queue}/{}.json", &digest[..16])
}

/// A message that ended in a dead-letter queue, with the reason it was given: what the local
/// pipeline's queues hold and keep in the blob store, and what `sfpipe status` reads from there
/// or from an SQS dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub queue: String,
    pub body: String,
    pub reason: String,
}

impl DeadLetter {
    /// A text field of the message (`object`, `run_id`); `None` for an unreadable message.
    pub fn field(&self, name: &str) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .get(name)?
            .as_str()
            .map(str::to_string)
    }
}

/// Up to `max` dead letters in a dead-letter queue, looked into and left there (none from a
/// queue that cannot be looked into). A message without a reason gets `missing_reason`.
pub async fn peek_dead_letters(
    queue: &dyn Queue,
    max: usize,
    missing_reason: &str,
) -> Result<Vec<DeadLetter>, QueueError> {
    Ok(queue
        .peek(max)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|message| DeadLetter {
            queue: queue.name().to_string(),
            reason: message
                .attributes
                .get(DEAD_LETTER_REASON)
                .cloned()
                .unwrap_or_else(|| missing_reason.to_string()),
            body: message.body,
        })
        .collect())
}

/// Every dead letter kept in the blob store.
pub async fn kept_dead_letters(blobs: &dyn BlobStore) -> Result<Vec<DeadLetter>, BlobError> {
    let mut out = Vec::new();
    for meta in blobs.list(DEAD_LETTERS_PREFIX).await? {
        let bytes = blobs.get_bytes(&meta.key).await?;
        if let Ok(dead) = serde_json::from_slice::<DeadLetter>(&bytes) {
            out.push(dead);
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    pub run_id: String,
    pub mode: Option<Mode>,
    pub window: Option<Window>,
    /// `started`, `extracted`, `uploading`, `uploaded` or `merged`.
    pub stage: &'static str,
    pub job_id: Option<String>,
    pub parts_stored: u32,
    /// Known once Salesforce's job is complete (not on the locator chain until its last page).
    pub parts_expected: Option<u32>,
    pub salesforce_records: Option<u64>,
    pub records_in_parts: u64,
    pub rows_read: Option<u64>,
    pub rows_changed: Option<u64>,
    pub started_at: Option<DateTime<Utc>>,
    pub merged_at: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    /// What is wrong with the run: its receipt's counts disagree, or a dead letter stopped it.
    pub problem: Option<String>,
    /// What the run's handlings cost, from their usage records (`None`: none kept).
    pub usage: Option<RunUsage>,
    /// The manifests of the parts stored so far, by part number.
    pub parts: Vec<PartManifest>,
}

/// The queue in front of a stage, as its service counted it when the report was read.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueueStatus {
    /// `extract`, `upload` or `merge`.
    pub stage: String,
    pub queue: String,
    /// `None` when it could not be counted (see `problem`).
    pub counts: Option<crate::ports::QueueDepth>,
    /// Messages in its dead-letter queue, when that could be counted.
    pub dead_letters: Option<usize>,
    /// How many handlers may work at once (a local run's workers), when known.
    pub concurrency: Option<u32>,
    pub read_at: DateTime<Utc>,
    /// Why the counts are missing or old.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoleStatus {
    pub run_id: String,
    pub window: Option<Window>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterStatus {
    pub queue: String,
    pub run_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectStatus {
    pub object: String,
    pub watermark: Option<DateTime<Utc>>,
    /// Why the watermark could not be read (no warehouse given, or its error).
    pub watermark_unknown: Option<String>,
    pub holes: Vec<HoleStatus>,
    /// The newest runs last.
    pub runs: Vec<RunStatus>,
    pub dead_letters: Vec<DeadLetterStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub objects: Vec<ObjectStatus>,
    /// Dead letters naming no object (an unreadable message).
    pub unattributed: Vec<DeadLetterStatus>,
    /// The stage queues' counts, when the report's source can read them.
    pub queues: Vec<QueueStatus>,
}

impl StatusReport {
    /// Runs with a problem, plus every dead letter: what `sfpipe status` exits non-zero for.
    pub fn failures(&self) -> usize {
        self.objects
            .iter()
            .map(|o| o.runs.iter().filter(|r| r.problem.is_some()).count() + o.dead_letters.len())
            .sum::<usize>()
            + self.unattributed.len()
    }

    /// The report as a table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for queue in &self.queues {
            out.push_str(&format!("{}\n", queue.summary()));
        }
        if !self.queues.is_empty() {
            out.push('\n');
        }
        for object in &self.objects {
            let watermark = match (&object.watermark, &object.watermark_unknown) {
                (Some(at), _) => rfc3339(*at),
                (None, Some(why)) => format!("unknown ({why})"),
                (None, None) => "none yet".into(),
            };
            out.push_str(&format!("{}  watermark {watermark}", object.object));
            if object.holes.is_empty() {
                out.push_str("  no open holes\n");
            } else {
                let holes: Vec<String> = object
                    .holes
                    .iter()
                    .map(|h| match &h.window {
                        Some(w) => format!("{} ({})", h.run_id, window_text(Some(w))),
                        None => h.run_id.clone(),
                    })
                    .collect();
                out.push_str(&format!("  open holes: {}\n", holes.join(", ")));
            }
            out.push_str(&format!(
                "  {:<28} {:<54} {:<16} {:<20} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
                "run",
                "window",
                "stage",
                "job",
                "SF recs",
                "in parts",
                "read",
                "changed",
                "seconds"
            ));
            for run in &object.runs {
                let stage = match (run.stage, run.parts_expected) {
                    ("uploading", Some(n)) => format!("uploaded {} of {n}", run.parts_stored),
                    ("uploading", None) => format!("uploaded {} of ?", run.parts_stored),
                    (stage, _) => stage.to_string(),
                };
                let number = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
                out.push_str(&format!(
                    "  {:<28} {:<54} {:<16} {:<20} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
                    run.run_id,
                    window_label(run.mode, run.window.as_ref()),
                    stage,
                    run.job_id.as_deref().unwrap_or("-"),
                    number(run.salesforce_records),
                    run.records_in_parts,
                    number(run.rows_read),
                    number(run.rows_changed),
                    run.seconds.map_or("-".to_string(), |s| format!("{s:.1}")),
                ));
                if let Some(usage) = &run.usage {
                    out.push_str(&format!("    usage: {}\n", usage.summary()));
                }
                if let Some(problem) = &run.problem {
                    out.push_str(&format!("    FAILED: {problem}\n"));
                }
            }
            for dead in &object.dead_letters {
                out.push_str(&format!(
                    "  dead letter in {} (run {}): {}\n",
                    dead.queue,
                    dead.run_id.as_deref().unwrap_or("?"),
                    dead.reason
                ));
            }
            out.push('\n');
        }
        for dead in &self.unattributed {
            out.push_str(&format!("dead letter in {}: {}\n", dead.queue, dead.reason));
        }
        if self.objects.is_empty() && self.unattributed.is_empty() {
            out.push_str("no runs stored yet\n");
        }
        out
    }
}

fn window_text(window: Option<&Window>) -> String {
    match window {
        Some(Window {
            since: Some(since),
            until,
        }) => format!("{} to {}", rfc3339(*since), rfc3339(*until)),
        Some(Window { since: None, until }) => format!("all to {}", rfc3339(*until)),
        None => "?".into(),
    }
}

fn window_label(mode: Option<Mode>, window: Option<&Window>) -> String {
    match mode {
        Some(Mode::FormulaRefresh) => format!("formulas, {}", window_text(window)),
        Some(Mode::Reconcile) => format!("ids, {}", window_text(window)),
        Some(Mode::Full) => format!("full, {}", window_text(window)),
        _ => window_text(window),
    }
}

impl QueueStatus {
    /// One line for people: `extract queue sfpipe-extract: 3 visible, 1 in flight, ...`.
    pub fn summary(&self) -> String {
        let mut out = format!("{} queue {}: ", self.stage, self.queue);
        match &self.counts {
            Some(c) => out.push_str(&format!(
                "{} visible, {} in flight, {} delayed",
                c.visible, c.in_flight, c.delayed
            )),
            None => out.push_str("not counted"),
        }
        if let Some(dead) = self.dead_letters {
            out.push_str(&format!(", {dead} dead letters"));
        }
        if let Some(workers) = self.concurrency {
            out.push_str(&format!(", {workers} workers"));
        }
        out.push_str(&format!(" (read {})", rfc3339(self.read_at)));
        if let Some(problem) = &self.problem {
            out.push_str(&format!(" ({problem})"));
        }
        out
    }
}

/// A stage's queue as `sfpipe status` counts it: the queue, its dead-letter queue, and how many
/// handlers may work on it at once, where known.
pub struct StageQueueRef<'a> {
    pub queue: &'a dyn Queue,
    pub dead_letters: Option<&'a dyn Queue>,
    pub concurrency: Option<u32>,
}

/// The three stage queues' statuses, in stage order (extract, upload, merge).
pub async fn stage_queue_statuses(stages: [StageQueueRef<'_>; 3]) -> Vec<QueueStatus> {
    let mut out = Vec::new();
    for (stage, queue) in ["extract", "upload", "merge"].into_iter().zip(stages) {
        out.push(queue_status(stage, queue.queue, queue.dead_letters, queue.concurrency).await);
    }
    out
}

/// A stage queue's counts and its dead-letter queue's, read now; what could not be read is
/// said in `problem`, never an error of the whole report.
pub async fn queue_status(
    stage: &str,
    queue: &dyn Queue,
    dead_letters: Option<&dyn Queue>,
    concurrency: Option<u32>,
) -> QueueStatus {
    let mut problems = Vec::new();
    let mut count = async |queue: &dyn Queue| match queue.message_counts().await {
        Ok(Some(counts)) => Some(counts),
        Ok(None) => {
            problems.push(format!("{} cannot count its messages", queue.name()));
            None
        }
        Err(error) => {
            problems.push(format!("counting {}: {error}", queue.name()));
            None
        }
    };
    let counts = count(queue).await;
    let dead = match dead_letters {
        Some(dlq) => count(dlq).await.map(|c| c.total()),
        None => None,
    };
    QueueStatus {
        stage: stage.to_string(),
        queue: queue.name().to_string(),
        counts,
        dead_letters: dead,
        concurrency,
        read_at: Utc::now(),
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// Reads the status of every object with stored runs (`objects` empty) or of those given,
/// keeping each object's `last_runs` newest runs. `warehouse`: where watermarks are read (none:
/// shown as unknown).
pub async fn read_status(
    blobs: &dyn BlobStore,
    warehouse: Option<&dyn Warehouse>,
    dead_letters: &[DeadLetter],
    objects: &[ObjectName],
    last_runs: usize,
) -> Result<StatusReport, BlobError> {
    // runs/<object>/<run>/<file>, grouped by object and run.
    let mut runs: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for meta in blobs.list("runs/").await? {
        let mut parts = meta.key.splitn(4, '/');
        let (Some(_), Some(object), Some(run), Some(file)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        runs.entry(object.to_string())
            .or_default()
            .entry(run.to_string())
            .or_default()
            .push(file.to_string());
    }
    let mut names: Vec<String> = if objects.is_empty() {
        let mut names: Vec<String> = runs.keys().cloned().collect();
        names.extend(dead_letters.iter().filter_map(|d| d.field("object")));
        names
    } else {
        objects.iter().map(|o| o.to_string()).collect()
    };
    names.sort();
    names.dedup();

    let mut report = StatusReport {
        objects: Vec::new(),
        unattributed: dead_letters
            .iter()
            .filter(|d| d.field("object").is_none())
            .map(dead_letter_status)
            .collect(),
        queues: Vec::new(),
    };
    for name in names {
        let Ok(object) = ObjectName::new(&name) else {
            continue;
        };
        let object_dead: Vec<&DeadLetter> = dead_letters
            .iter()
            .filter(|d| d.field("object").as_deref() == Some(name.as_str()))
            .collect();
        let mut statuses = Vec::new();
        for (run, files) in runs.get(&name).into_iter().flatten() {
            let Ok(run_id) = crate::contracts::RunId::new(run) else {
                continue;
            };
            let dead = object_dead
                .iter()
                .find(|d| d.field("run_id").as_deref() == Some(run.as_str()));
            statuses.push(run_status(blobs, &object, &run_id, files, dead.copied()).await?);
        }
        statuses.sort_by_key(|r| (r.started_at.or(r.merged_at), r.run_id.clone()));
        let skip = statuses.len().saturating_sub(last_runs.max(1));
        let statuses = statuses.split_off(skip);
        let (watermark, watermark_unknown) = match warehouse {
            Some(w) => match w.watermark(&object).await {
                Ok(at) => (at, None),
                Err(error) => (None, Some(error.to_string())),
            },
            None => (None, Some("no warehouse given".into())),
        };
        let mut holes = Vec::new();
        for meta in blobs.list(&holes_prefix(&object)).await? {
            let run_id = meta
                .key
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".json")
                .to_string();
            let window = serde_json::from_slice(&blobs.get_bytes(&meta.key).await?).ok();
            holes.push(HoleStatus { run_id, window });
        }
        report.objects.push(ObjectStatus {
            object: name.clone(),
            watermark,
            watermark_unknown,
            holes,
            runs: statuses,
            dead_letters: object_dead.iter().map(|d| dead_letter_status(d)).collect(),
        });
    }
    Ok(report)
}

fn dead_letter_status(dead: &DeadLetter) -> DeadLetterStatus {
    DeadLetterStatus {
        queue: dead.queue.clone(),
        run_id: dead.field("run_id"),
        reason: dead.reason.clone(),
    }
}

async fn read<T: serde::de::DeserializeOwned>(
    blobs: &dyn BlobStore,
    key: &str,
) -> Result<Option<T>, BlobError> {
    match blobs.get_bytes(key).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(BlobError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// What a run stored about itself: its Salesforce job, its extraction and its merge (receipt).
#[derive(Debug, Clone, Default)]
pub struct StoredRun {
    pub job: Option<BulkJobRecord>,
    pub extracted: Option<ExtractedRecord>,
    pub merged: Option<MergedRecord>,
}

impl StoredRun {
    pub async fn read(blobs: &dyn BlobStore, layout: &RunLayout) -> Result<Self, BlobError> {
        Ok(Self {
            job: read(blobs, &layout.bulk_job()).await?,
            extracted: read(blobs, &layout.extracted()).await?,
            merged: read(blobs, &layout.merged()).await?,
        })
    }

    pub fn mode(&self) -> Option<Mode> {
        self.merged
            .as_ref()
            .map(|m| m.mode)
            .or(self.job.as_ref().and_then(|j| j.mode))
    }

    pub fn window(&self) -> Option<Window> {
        self.merged
            .as_ref()
            .map(|m| m.window)
            .or(self.job.as_ref().and_then(|j| j.window))
    }

    pub fn job_id(&self) -> Option<String> {
        self.extracted
            .as_ref()
            .map(|e| e.job_id.clone())
            .or(self.job.as_ref().map(|j| j.job_id.clone()))
    }
}

async fn run_status(
    blobs: &dyn BlobStore,
    object: &ObjectName,
    run_id: &crate::contracts::RunId,
    files: &[String],
    dead: Option<&DeadLetter>,
) -> Result<RunStatus, BlobError> {
    let layout = RunLayout::new(object, run_id);
    let stored = StoredRun::read(blobs, &layout).await?;
    let (job, extracted, merged) = (&stored.job, &stored.extracted, &stored.merged);
    let mut manifests = Vec::new();
    for file in files.iter().filter(|f| f.ends_with(".manifest.json")) {
        if let Some(manifest) =
            read::<PartManifest>(blobs, &format!("{}{file}", layout.prefix())).await?
        {
            manifests.push(manifest);
        }
    }
    manifests.sort_by_key(|m| m.part);
    let parts_stored = manifests.len() as u32;
    let parts_expected = merged
        .as_ref()
        .map(|m| m.parts)
        .or_else(|| extracted.as_ref().map(|e| e.parts).filter(|p| *p > 0))
        .or_else(|| manifests.iter().map(|m| m.parts).find(|p| *p > 0));
    let stage = if merged.is_some() {
        "merged"
    } else if parts_stored > 0 && Some(parts_stored) == parts_expected {
        "uploaded"
    } else if parts_stored > 0 {
        "uploading"
    } else if extracted.is_some() {
        "extracted"
    } else {
        "started"
    };
    let started_at = job.as_ref().and_then(|j| j.started_at);
    let merged_at = merged.as_ref().map(|m| m.merged_at);
    let problem = match (&merged, dead) {
        (Some(record), _) => record.receipt_mismatch(),
        (None, Some(dead)) => Some(format!("dead-lettered in {}: {}", dead.queue, dead.reason)),
        (None, None) => None,
    };
    Ok(RunStatus {
        run_id: run_id.to_string(),
        mode: stored.mode(),
        window: stored.window(),
        stage,
        job_id: stored.job_id(),
        parts_stored,
        parts_expected,
        salesforce_records: extracted.as_ref().and_then(|e| e.salesforce_records),
        records_in_parts: manifests.iter().map(|m| m.records).sum(),
        rows_read: merged.as_ref().map(|m| m.report.rows_read),
        rows_changed: merged.as_ref().map(|m| m.report.rows_changed),
        started_at,
        merged_at,
        seconds: match (started_at, merged_at) {
            (Some(start), Some(end)) => Some((end - start).num_milliseconds() as f64 / 1000.0),
            _ => None,
        },
        problem,
        usage: usage(blobs, object, run_id).await?,
        parts: manifests,
    })
}

async fn usage(
    blobs: &dyn BlobStore,
    object: &ObjectName,
    run_id: &crate::contracts::RunId,
) -> Result<Option<RunUsage>, BlobError> {
    let records = kept_usage(
        blobs,
        &run_receipts_prefix(object.as_str(), run_id.as_str()),
    )
    .await?;
    Ok((!records.is_empty()).then(|| RunUsage::of(&records)))
}
