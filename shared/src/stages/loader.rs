//! job-loader: one extract message per object, with the window each object is due for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::read_json;
use super::{Stage, StageError, StageResultExt};
use crate::contracts::{
    CONTRACT_VERSION, Contract, ExtractMessage, FormulaRefreshMarker, Mode, ObjectName, RunId,
    Window, formula_refresh_key, holes_prefix, reconcile_key, rfc3339,
};
use crate::ports::{BlobStore, OutgoingMessage, Queue, Warehouse};

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
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            overlap: Duration::from_secs(10 * 60),
            until_lag: Duration::from_secs(2 * 60),
            formula_refresh: IntervalSchedule::default(),
            reconcile: IntervalSchedule::default(),
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    pub run_id: RunId,
    pub queued: Vec<QueuedExtract>,
}

/// Queues one extract per object. Deterministic: the same request at the same trigger time over
/// the same warehouse state queues the same messages with the same ids.
pub async fn run_loader<Q, W, B>(
    extract_queue: &Q,
    warehouse: &W,
    blobs: &B,
    config: &LoaderConfig,
    request: &LoadRequest,
    triggered_at: DateTime<Utc>,
) -> Result<LoadReport, StageError>
where
    Q: Queue + ?Sized,
    W: Warehouse + ?Sized,
    B: BlobStore + ?Sized,
{
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
    let mut queued = Vec::new();
    for object in &request.objects {
        let (mode, since) = match (request.mode, request.since) {
            (Mode::Full, _) => (Mode::Full, None),
            (Mode::FormulaRefresh, _) => (Mode::FormulaRefresh, None),
            (Mode::Reconcile, _) => (Mode::Reconcile, None),
            (Mode::Incremental, Some(since)) => (Mode::Incremental, Some(since)),
            (Mode::Incremental, None) => {
                match warehouse
                    .watermark(object)
                    .await
                    .at(Stage::Loader, object)?
                {
                    Some(watermark) => {
                        let since = watermark - overlap;
                        match oldest_hole(blobs, object).await? {
                            // A half of a split window that is not merged yet: read it again.
                            Some(Window { since: None, .. }) => (Mode::Full, None),
                            Some(Window { since: Some(h), .. }) if h < since => {
                                (Mode::Incremental, Some(h))
                            }
                            _ => (Mode::Incremental, Some(since)),
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
            continue;
        }
        let mut runs = vec![(run_id.clone(), mode, window)];
        let scheduled = mode == Mode::Incremental && request.since.is_none();
        let whole = Window { since: None, until };
        if scheduled
            && due(
                blobs,
                &config.formula_refresh,
                &formula_refresh_key(object),
                object,
                triggered_at,
            )
            .await?
        {
            runs.push((refresh_run_id.clone(), Mode::FormulaRefresh, whole));
        }
        if scheduled
            && due(
                blobs,
                &config.reconcile,
                &reconcile_key(object),
                object,
                triggered_at,
            )
            .await?
        {
            runs.push((reconcile_run_id.clone(), Mode::Reconcile, whole));
        }
        for (run_id, mode, window) in runs {
            let message = ExtractMessage {
                v: CONTRACT_VERSION,
                run_id: run_id.clone(),
                object: object.clone(),
                mode,
                window,
                bulk_job: None,
            };
            extract_queue
                .send(OutgoingMessage::new(
                    message.to_body(),
                    message.message_id(),
                ))
                .await
                .at(Stage::Loader, object)?;
            tracing::info!(run_id = %run_id, %object, ?mode, "queued extract");
            queued.push(QueuedExtract {
                object: object.clone(),
                run_id,
                mode,
                window,
            });
        }
    }
    Ok(LoadReport { run_id, queued })
}

/// Whether a periodic run of the object (recorded under `key`) last ran longer ago than its
/// interval. Objects never loaded are not due: their first run is a full one, which reads
/// formulas too and has nothing to reconcile.
async fn due<B: BlobStore + ?Sized>(
    blobs: &B,
    schedule: &IntervalSchedule,
    key: &str,
    object: &ObjectName,
    triggered_at: DateTime<Utc>,
) -> Result<bool, StageError> {
    let Some(every) = schedule.interval(object) else {
        return Ok(false);
    };
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    let last = read_json::<FormulaRefreshMarker, _>(blobs, key)
        .await
        .at(Stage::Loader, object)?;
    Ok(last.is_none_or(|last| triggered_at.signed_duration_since(last.until) >= every))
}

/// The open hole of `object` that starts earliest.
async fn oldest_hole<B: BlobStore + ?Sized>(
    blobs: &B,
    object: &ObjectName,
) -> Result<Option<Window>, StageError> {
    let mut oldest: Option<Window> = None;
    for hole in blobs
        .list(&holes_prefix(object))
        .await
        .at(Stage::Loader, object)?
    {
        let bytes = blobs.get_bytes(&hole.key).await.at(Stage::Loader, object)?;
        let window: Window = serde_json::from_slice(&bytes).map_err(|e| {
            StageError::new(
                Stage::Loader,
                object,
                crate::stages::Cause::Inconsistent(format!("{} is not a window: {e}", hole.key)),
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
