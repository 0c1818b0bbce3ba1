//! job-loader: one extract message per object, with the window each object is due for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::object_state::{ProbeVerdict, judge_probe, probe_limit, probe_query, read_state};
use super::records::read_json;
use super::{Stage, StageError, StageResultExt};
use crate::contracts::{
    CONTRACT_VERSION, Contract, ExtractMessage, FormulaRefreshMarker, HOLES_PREFIX, Mode,
    ObjectName, RunId, Window, formula_refresh_key, reconcile_key, rfc3339,
};
use crate::ports::salesforce::{QueryPage, SalesforceError};
use crate::ports::{BlobStore, OutgoingMessage, Queue, Salesforce, Warehouse};
use crate::usage::{LOADER_RECEIPTS, UsageRecord, metered};

/// What to load: the scheduled objects, or a manual backfill/re-run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRequest {
    pub objects: Vec<ObjectName>,
    pub mode: Mode,
    /// Backfill start; incremental runs otherwise start at the object's watermark.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Backfill end; otherwise a little before the trigger time.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// How far before the watermark an incremental window starts: rows committed late with an
    /// older SystemModstamp are still found; the merge makes reading them twice harmless.
    pub overlap: Duration,
    /// How far before the trigger time a window ends, so transactions still committing are read
    /// by the next run rather than missed.
    pub until_lag: Duration,
    /// How often each object's formula fields are read again ([`Mode::FormulaRefresh`]).
    pub formula_refresh: IntervalSchedule,
    /// How often each object's Ids are reconciled to find hard deletes ([`Mode::Reconcile`]).
    pub reconcile: IntervalSchedule,
    /// A change of fewer rows than this (as the probe counts them) is read with the REST API,
    /// not a Bulk job; 0 reads every change with Bulk. Above 2,000 the probe's query leaves a
    /// query cursor open when it finds more than a page, until Salesforce expires it.
    pub rest_below: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            overlap: Duration::from_secs(10 * 60),
            until_lag: Duration::from_secs(2 * 60),
            formula_refresh: IntervalSchedule::default(),
            reconcile: IntervalSchedule::default(),
            rest_below: 2_000,
        }
    }
}

/// How often a periodic run (a formula refresh, a reconciliation) comes round: a default and
/// per-object exceptions (`None`: never).
///
/// Written `24h` or `24h, Account=6h, Case=off` (units m, h, d): the text of
/// `SFPIPE_FORMULA_REFRESH` and `SFPIPE_RECONCILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalSchedule {
    pub every: Option<Duration>,
    /// Object names in lower case.
    pub objects: std::collections::BTreeMap<String, Option<Duration>>,
}

impl Default for IntervalSchedule {
    fn default() -> Self {
        Self {
            every: Some(Duration::from_secs(24 * 3600)),
            objects: Default::default(),
        }
    }
}

impl IntervalSchedule {
    pub fn interval(&self, object: &ObjectName) -> Option<Duration> {
        self.objects
            .get(&object.as_str().to_ascii_lowercase())
            .copied()
            .unwrap_or(self.every)
    }
}

impl std::str::FromStr for IntervalSchedule {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        fn interval(text: &str) -> Result<Option<Duration>, String> {
            let text = text.trim();
            if text.eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            let unit = match text.chars().last() {
                Some('m') => 60,
                Some('h') => 3600,
                Some('d') => 86_400,
                _ => return Err(format!("{text:?} is not off or a number with m, h or d")),
            };
            let number: u64 = text[..text.len() - 1]
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not off or a number with m, h or d"))?;
            if number == 0 {
                return Err(format!("{text:?}: an interval of zero; say off instead"));
            }
            Ok(Some(Duration::from_secs(number * unit)))
        }
        let mut schedule = Self::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((object, every)) => {
                    let object = ObjectName::new(object.trim()).map_err(|e| e.to_string())?;
                    schedule
                        .objects
                        .insert(object.as_str().to_ascii_lowercase(), interval(every)?);
                }
                None => schedule.every = interval(item)?,
            }
        }
        Ok(schedule)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedExtract {
    pub object: ObjectName,
    /// The report's run, or its formula refresh run.
    pub run_id: RunId,
    pub mode: Mode,
    pub window: Window,
    /// Read with the REST API: the probe found a small change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rest: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    pub run_id: RunId,
    pub queued: Vec<QueuedExtract>,
    /// Objects whose window the probe found holding only rows already merged: no run, no Bulk
    /// job, no warehouse statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchanged: Vec<ObjectName>,
    /// The object longest without being known complete (merged up to a window's end, or found
    /// unchanged by this trigger's probe), and for how long: the freshness alarm's metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalest: Option<Stalest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stalest {
    pub object: ObjectName,
    pub lag_seconds: u64,
}

/// What the job-loader needs: Salesforce for the change probe, the queue it fills, the warehouse
/// for watermarks no object state records yet, the blob store for states, holes and markers.
pub struct LoaderDeps<'a, S: ?Sized, Q: ?Sized, W: ?Sized, B: ?Sized> {
    pub salesforce: &'a S,
    pub extract_queue: &'a Q,
    pub warehouse: &'a W,
    pub blobs: &'a B,
    pub config: &'a LoaderConfig,
}

/// One object's plan: its runs, and what the probe needs to judge its incremental run.
struct Planned {
    object: ObjectName,
    runs: Vec<QueuedExtract>,
    probe: Option<(String, Vec<crate::contracts::RowVersion>)>,
}

/// Queues one extract per object. Deterministic: the same request at the same trigger time over
/// the same stored state and org queues the same messages with the same ids.
///
/// A scheduled incremental run of an object merged before is probed first: one REST query of
/// the window's Ids and cursors, five objects to an API call. An object whose window holds only
/// row versions its last merges stored gets no run; a small change is read with the REST API;
/// a large one with a Bulk job. A probe that fails queues the run as if it had found a change.
///
/// The trigger's handling is metered; its usage record is kept under
/// [`crate::usage::LOADER_RECEIPTS`].
pub async fn run_loader<S, Q, W, B>(
    deps: &LoaderDeps<'_, S, Q, W, B>,
    request: &LoadRequest,
    triggered_at: DateTime<Utc>,
) -> Result<LoadReport, StageError>
where
    S: Salesforce + ?Sized,
    Q: Queue + ?Sized,
    W: Warehouse + ?Sized,
    B: BlobStore + ?Sized,
{
    let started_at = Utc::now();
    let (report, usage, elapsed) = metered(queue_extracts(deps, request, triggered_at)).await;
    let run_id = match &report {
        Ok(report) => report.run_id.clone(),
        Err(_) => RunId::for_trigger(triggered_at, "failed"),
    };
    UsageRecord {
        stage: Stage::Loader.to_string(),
        object: LOADER_RECEIPTS.to_string(),
        run_id: run_id.to_string(),
        started_at,
        duration_ms: elapsed.as_millis() as u64,
        succeeded: report.is_ok(),
        rows: 0,
        rows_changed: 0,
        freshness_lag_seconds: report
            .as_ref()
            .ok()
            .and_then(|r| r.stalest.as_ref())
            .map(|s| s.lag_seconds as f64),
        usage,
    }
    .keep(deps.blobs)
    .await;
    report
}

async fn queue_extracts<S, Q, W, B>(
    deps: &LoaderDeps<'_, S, Q, W, B>,
    request: &LoadRequest,
    triggered_at: DateTime<Utc>,
) -> Result<LoadReport, StageError>
where
    S: Salesforce + ?Sized,
    Q: Queue + ?Sized,
    W: Warehouse + ?Sized,
    B: BlobStore + ?Sized,
{
    let config = deps.config;
    let blobs = deps.blobs;
    let lag = chrono::Duration::from_std(config.until_lag).unwrap_or_default();
    let overlap = chrono::Duration::from_std(config.overlap).unwrap_or_default();
    let until = request.until.unwrap_or(triggered_at - lag);
    let objects: Vec<&str> = request.objects.iter().map(ObjectName::as_str).collect();
    let qualifier = format!(
        "{:?}|{}|{}|{}",
        request.mode,
        objects.join(","),
        request.since.map(rfc3339).unwrap_or_default(),
        rfc3339(until)
    );
    let run_id = RunId::for_trigger(triggered_at, &qualifier);
    // A formula refresh and a reconciliation are runs of their own beside the incremental one
    // (their files, their merge).
    let refresh_run_id = RunId::for_trigger(triggered_at, &format!("{qualifier}|formulas"));
    let reconcile_run_id = RunId::for_trigger(triggered_at, &format!("{qualifier}|ids"));
    // One listing finds every object's open holes (they are rare); then each object's state and
    // markers are read, several objects at a time, in the request's order.
    let holes = open_holes(blobs).await?;
    let context = PlanContext {
        request,
        triggered_at,
        until,
        overlap,
        run_id: &run_id,
        refresh_run_id: &refresh_run_id,
        reconcile_run_id: &reconcile_run_id,
        holes: &holes,
    };
    let mut plans = Vec::with_capacity(request.objects.len());
    let mut complete_until = Vec::with_capacity(request.objects.len());
    for objects in request.objects.chunks(LOADER_CONCURRENCY) {
        let planned = futures::future::join_all(
            objects
                .iter()
                .map(|object| plan_object(deps, &context, object)),
        )
        .await;
        for planned in planned {
            let (plan, merged_until) = planned?;
            plans.extend(plan);
            complete_until.push(merged_until);
        }
    }
    let unchanged = probe_changes(deps, &mut plans).await;
    let stalest = complete_until
        .into_iter()
        .filter_map(|(object, merged_until)| {
            // Found unchanged: complete up to this trigger's window end.
            let current = if unchanged.contains(&object) {
                Some(until)
            } else {
                merged_until
            }?;
            Some(Stalest {
                lag_seconds: (triggered_at - current).num_seconds().max(0) as u64,
                object,
            })
        })
        .max_by_key(|s| s.lag_seconds);
    let runs: Vec<QueuedExtract> = plans.into_iter().flat_map(|plan| plan.runs).collect();
    for runs in runs.chunks(LOADER_CONCURRENCY) {
        for sent in futures::future::join_all(runs.iter().map(|run| queue_run(deps, run))).await {
            sent?;
        }
    }
    let queued = runs;
    Ok(LoadReport {
        run_id,
        queued,
        unchanged,
        stalest,
    })
}

/// Objects planned, probe batches sent and messages queued at once by the job-loader: a run of
/// 500 objects takes seconds, not the sum of 500 objects' round trips.
const LOADER_CONCURRENCY: usize = 16;

/// What every object's plan shares.
struct PlanContext<'a> {
    request: &'a LoadRequest,
    triggered_at: DateTime<Utc>,
    until: DateTime<Utc>,
    overlap: chrono::Duration,
    run_id: &'a RunId,
    refresh_run_id: &'a RunId,
    reconcile_run_id: &'a RunId,
    /// Every object's open holes, by object name.
    holes: &'a std::collections::BTreeMap<String, Vec<String>>,
}

/// One object's runs (`None`: its window is empty), and how far it is known complete.
async fn plan_object<S, Q, W, B>(
    deps: &LoaderDeps<'_, S, Q, W, B>,
    context: &PlanContext<'_>,
    object: &ObjectName,
) -> Result<(Option<Planned>, (ObjectName, Option<DateTime<Utc>>)), StageError>
where
    S: Salesforce + ?Sized,
    Q: Queue + ?Sized,
    W: Warehouse + ?Sized,
    B: BlobStore + ?Sized,
{
    let config = deps.config;
    let blobs = deps.blobs;
    let PlanContext {
        request,
        triggered_at,
        until,
        overlap,
        ..
    } = *context;
    let state = read_state(blobs, object)
        .await
        .at(Stage::Loader, object)?
        .unwrap_or_default();
    let complete_until = (object.clone(), state.merged_until);
    let mut probe = None;
    let (mode, since) = match (request.mode, request.since) {
        (Mode::Full, _) => (Mode::Full, None),
        (Mode::FormulaRefresh, _) => (Mode::FormulaRefresh, None),
        (Mode::Reconcile, _) => (Mode::Reconcile, None),
        (Mode::Incremental, Some(since)) => (Mode::Incremental, Some(since)),
        (Mode::Incremental, None) => {
            let watermark = match state.watermark {
                Some(watermark) => Some(watermark),
                None => deps
                    .warehouse
                    .watermark(object)
                    .await
                    .at(Stage::Loader, object)?,
            };
            match watermark {
                Some(watermark) => {
                    let since = watermark - overlap;
                    let hole_keys = context
                        .holes
                        .get(object.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    match oldest_hole(blobs, object, hole_keys).await? {
                        // A half of a split window that is not merged yet: read it again.
                        Some(Window { since: None, .. }) => (Mode::Full, None),
                        Some(Window { since: Some(h), .. }) if h < since => {
                            (Mode::Incremental, Some(h))
                        }
                        _ => {
                            probe = state
                                .cursor_field
                                .clone()
                                .map(|cursor| (cursor, state.boundary.clone()));
                            (Mode::Incremental, Some(since))
                        }
                    }
                }
                // Never loaded: the first incremental run is a full one.
                None => (Mode::Full, None),
            }
        }
    };
    let window = Window { since, until };
    if window.validate().is_err() {
        tracing::info!(%object, since = ?since, until = %rfc3339(until), "nothing new to extract: window is empty");
        return Ok((None, complete_until));
    }
    let run = |run_id: &RunId, mode, window| QueuedExtract {
        object: object.clone(),
        run_id: run_id.clone(),
        mode,
        window,
        rest: false,
    };
    let mut runs = vec![run(context.run_id, mode, window)];
    let scheduled = mode == Mode::Incremental && request.since.is_none();
    let whole = Window { since: None, until };
    if scheduled
        && due(
            blobs,
            &config.formula_refresh,
            &formula_refresh_key(object),
            object,
            triggered_at,
            state.formulas_until,
        )
        .await?
    {
        runs.push(run(context.refresh_run_id, Mode::FormulaRefresh, whole));
    }
    if scheduled
        && due(
            blobs,
            &config.reconcile,
            &reconcile_key(object),
            object,
            triggered_at,
            state.reconciled_until,
        )
        .await?
    {
        runs.push(run(context.reconcile_run_id, Mode::Reconcile, whole));
    }
    Ok((
        Some(Planned {
            object: object.clone(),
            runs,
            probe: probe.filter(|_| scheduled),
        }),
        complete_until,
    ))
}

/// Sends one run's extract message.
async fn queue_run<S, Q, W, B>(
    deps: &LoaderDeps<'_, S, Q, W, B>,
    run: &QueuedExtract,
) -> Result<(), StageError>
where
    S: ?Sized,
    Q: Queue + ?Sized,
    W: ?Sized,
    B: ?Sized,
{
    let message = ExtractMessage {
        v: CONTRACT_VERSION,
        run_id: run.run_id.clone(),
        object: run.object.clone(),
        mode: run.mode,
        window: run.window,
        bulk_job: None,
        rest: run.rest,
    };
    deps.extract_queue
        .send(OutgoingMessage::new(
            message.to_body(),
            message.message_id(),
        ))
        .await
        .at(Stage::Loader, &run.object)?;
    tracing::info!(run_id = %run.run_id, object = %run.object, mode = ?run.mode, rest = run.rest, "queued extract");
    Ok(())
}

/// Every object's open holes (their keys), from one listing.
async fn open_holes<B: BlobStore + ?Sized>(
    blobs: &B,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, StageError> {
    let mut holes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for hole in blobs
        .list(HOLES_PREFIX)
        .await
        .at(Stage::Loader, &"(every object)")?
    {
        if let Some((object, _)) = hole.key[HOLES_PREFIX.len()..].split_once('/') {
            holes.entry(object.to_string()).or_default().push(hole.key);
        }
    }
    Ok(holes)
}

/// Probes the incremental windows of the planned objects that can be probed, all in as few
/// calls as Salesforce allows; drops the incremental run of each object found unchanged (and
/// returns those objects), and marks small changes for the REST API.
async fn probe_changes<S, Q, W, B>(
    deps: &LoaderDeps<'_, S, Q, W, B>,
    plans: &mut [Planned],
) -> Vec<ObjectName>
where
    S: Salesforce + ?Sized,
    Q: ?Sized,
    W: ?Sized,
    B: ?Sized,
{
    let rest_below = deps.config.rest_below;
    let limit = probe_limit(rest_below);
    let mut probed: Vec<(usize, String)> = Vec::new();
    for (index, plan) in plans.iter().enumerate() {
        if let Some((cursor, _)) = &plan.probe
            && let Some(soql) = probe_query(&plan.object, cursor, &plan.runs[0].window, limit)
        {
            probed.push((index, soql));
        }
    }
    if probed.is_empty() {
        return Vec::new();
    }
    let soqls: Vec<String> = probed.iter().map(|(_, soql)| soql.clone()).collect();
    let pages = probe_in_time(deps.salesforce, &soqls).await;
    let mut unchanged = Vec::new();
    for ((index, _), page) in probed.into_iter().zip(pages) {
        let plan = &mut plans[index];
        let Some((cursor, boundary)) = &plan.probe else {
            continue;
        };
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(object = %plan.object, %error, "the change probe failed; reading the window as a change");
                continue;
            }
        };
        match judge_probe(&page, cursor, boundary, rest_below) {
            ProbeVerdict::Unchanged => {
                tracing::info!(object = %plan.object, "unchanged since its last merge: no run");
                plan.runs.remove(0);
                unchanged.push(plan.object.clone());
            }
            ProbeVerdict::Small { rows } => {
                tracing::info!(object = %plan.object, rows, "a small change: read with the REST API");
                plan.runs[0].rest = true;
            }
            ProbeVerdict::Large { rows } => {
                tracing::info!(object = %plan.object, rows, "a large change: read with a Bulk job");
            }
        }
    }
    unchanged
}

/// The probes' first pages, a batch of calls at a time while the invocation's deadline leaves
/// time for another batch; past that, the rest are not sent and read as changed (their runs
/// cost a Bulk job each, but the loader is not killed with objects left unqueued).
async fn probe_in_time<S: Salesforce + ?Sized>(
    salesforce: &S,
    soqls: &[String],
) -> Vec<Result<QueryPage, SalesforceError>> {
    // Several composite calls of five queries at once.
    const PER_BATCH: usize = 5 * LOADER_CONCURRENCY / 2;
    let mut pages = Vec::with_capacity(soqls.len());
    let mut slowest = std::time::Duration::ZERO;
    for batch in soqls.chunks(PER_BATCH) {
        if !crate::deadline::allows(slowest * 2) {
            tracing::warn!(
                probed = pages.len(),
                not_probed = soqls.len() - pages.len(),
                "short of time: the rest of the objects are queued unprobed"
            );
            pages.extend(soqls[pages.len()..].iter().map(|_| {
                Err(SalesforceError::Config(
                    "not probed: the job-loader was short of time".into(),
                ))
            }));
            break;
        }
        let started = std::time::Instant::now();
        pages.extend(salesforce.first_query_pages(batch).await);
        slowest = slowest.max(started.elapsed());
    }
    pages
}

/// Whether a periodic run of the object (recorded under `key`) last ran longer ago than its
/// interval. Objects never loaded are not due: their first run is a full one, which reads
/// formulas too and has nothing to reconcile. `hint` is the object state's copy of the record,
/// never ahead of it: when it says not due, the record is not read.
async fn due<B: BlobStore + ?Sized>(
    blobs: &B,
    schedule: &IntervalSchedule,
    key: &str,
    object: &ObjectName,
    triggered_at: DateTime<Utc>,
    hint: Option<DateTime<Utc>>,
) -> Result<bool, StageError> {
    let Some(every) = schedule.interval(object) else {
        return Ok(false);
    };
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    if hint.is_some_and(|last| triggered_at.signed_duration_since(last) < every) {
        return Ok(false);
    }
    let last = read_json::<FormulaRefreshMarker, _>(blobs, key)
        .await
        .at(Stage::Loader, object)?;
    Ok(last.is_none_or(|last| triggered_at.signed_duration_since(last.until) >= every))
}

/// The open hole of `object` (at `keys`) that starts earliest.
async fn oldest_hole<B: BlobStore + ?Sized>(
    blobs: &B,
    object: &ObjectName,
    keys: &[String],
) -> Result<Option<Window>, StageError> {
    let mut oldest: Option<Window> = None;
    for key in keys {
        let bytes = blobs.get_bytes(key).await.at(Stage::Loader, object)?;
        let window: Window = serde_json::from_slice(&bytes).map_err(|e| {
            StageError::new(
                Stage::Loader,
                object,
                crate::stages::Cause::Inconsistent(format!("{key} is not a window: {e}")),
            )
        })?;
        let earlier = match (&oldest, window.since) {
            (None, _) => true,
            (Some(Window { since: None, .. }), _) => false,
            (Some(_), None) => true,
            (Some(Window { since: Some(o), .. }), Some(w)) => w < *o,
        };
        if earlier {
            oldest = Some(window);
        }
    }
    Ok(oldest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectName {
        ObjectName::new(name).unwrap()
    }

    #[test]
    fn formula_refresh_schedules_parse_with_per_object_exceptions() {
        let schedule: IntervalSchedule = "12h, account=30m, Case=off, Lead=2d".parse().unwrap();
        let hours = |h: u64| Some(Duration::from_secs(h * 3600));
        assert_eq!(schedule.interval(&object("Contact")), hours(12));
        assert_eq!(
            schedule.interval(&object("Account")),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(schedule.interval(&object("Case")), None);
        assert_eq!(schedule.interval(&object("Lead")), hours(48));
        let default = IntervalSchedule::default();
        assert_eq!(default.interval(&object("Contact")), hours(24));
        let off: IntervalSchedule = "off".parse().unwrap();
        assert_eq!(off.interval(&object("Contact")), None);
        for bad in ["12", "0h", "soon", "Account=", "bad name=1h"] {
            assert!(bad.parse::<IntervalSchedule>().is_err(), "{bad}");
        }
    }
}
