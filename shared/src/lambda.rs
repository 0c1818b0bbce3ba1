//! What the Lambda entry points share: turning an SQS batch into stage calls with partial batch
//! failures, and reading the loader's trigger (a scheduled rule or a manual event).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use bytes::Bytes;

use crate::contracts::{ContractError, Mode, ObjectName, rfc3339};
use crate::ports::{BlobStore, MESSAGE_GROUP_ATTRIBUTE, Salesforce, Warehouse};
use crate::ports::{Queue, ReceivedMessage};
use crate::stages::loader::{LoadReport, LoadRequest, LoaderDeps, run_loader};
use crate::stages::runner::{StageHandler, run_stage};
use crate::stages::{Cause, Stage, StageError, StageResultExt};
use crate::worker::{Disposition, Settlement, process};

/// How an SQS-triggered function settles a batch.
#[derive(Debug, Clone)]
pub struct BatchPolicy {
    /// FIFO queues: after the first failure, the rest of the batch is failed too, unprocessed, so
    /// a group's order holds.
    pub fifo: bool,
    /// Messages are not started when less than this is left before the function's deadline;
    /// they are handed back to the queue instead of timing out halfway.
    pub reserve: Duration,
    /// The first retry's delay; it doubles with every receive (see [`crate::worker::retry_delay`]).
    pub retry_base: Duration,
    /// The queue's `maxReceiveCount`: the worker dead-letters a message itself one receive
    /// earlier ([`crate::worker::tries`]).
    pub max_receives: u32,
}

/// The deployed first retry delay: 1, 2, 4 and 8 minutes between five receives ride out a
/// ten-minute Salesforce or Snowflake outage before a message is dead-lettered.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(60);

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            fifo: false,
            reserve: Duration::from_secs(30),
            retry_base: DEFAULT_RETRY_BASE,
            max_receives: crate::worker::DEFAULT_MAX_RECEIVES,
        }
    }
}

/// The record's system attribute that names its FIFO group, as the queue adapters report it, so
/// a dead letter keeps its group; and its string message attributes.
fn record_attributes(
    record: &aws_lambda_events::event::sqs::SqsMessage,
) -> BTreeMap<String, String> {
    let mut attributes: BTreeMap<String, String> = record
        .message_attributes
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.string_value.clone()?)))
        .collect();
    if let Some(group) = record.attributes.get(MESSAGE_GROUP_ATTRIBUTE) {
        attributes.insert(MESSAGE_GROUP_ATTRIBUTE.to_string(), group.clone());
    }
    attributes
}

/// Handles every message of the batch with `handler(body)`. Successes and permanent failures
/// (a copy sent to the dead-letter queue with their reason) are reported done, and the event
/// source mapping deletes them: the function deletes nothing itself. Retryable failures (made
/// invisible for their back-off), and messages not started, are reported as batch item failures.
pub async fn handle_sqs_batch<Q, F, Fut>(
    queue: &Q,
    event: SqsEvent,
    policy: &BatchPolicy,
    time_left: impl Fn() -> Duration,
    mut handler: F,
) -> SqsBatchResponse
where
    Q: Queue + ?Sized,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(), StageError>>,
{
    let mut response = SqsBatchResponse::default();
    let mut failing = false;
    let mut started = 0;
    for record in event.records {
        let Some(message_id) = record.message_id.clone() else {
            continue;
        };
        // The first message always starts, so a batch makes progress even under a short timeout
        // (every handler is idempotent; one cut short is simply redelivered).
        let left = time_left();
        if failing || (started > 0 && left < policy.reserve) {
            if !failing {
                tracing::info!(
                    time_left_ms = left.as_millis() as u64,
                    "handing a message back: too little time left"
                );
            }
            response.add_failure(message_id);
            continue;
        }
        started += 1;
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let message = ReceivedMessage {
            body: record.body.clone().unwrap_or_default(),
            receipt: record.receipt_handle.clone().unwrap_or_default(),
            message_id: message_id.clone(),
            receive_count,
            attributes: record_attributes(&record),
        };
        match process(
            queue,
            &message,
            policy.retry_base,
            policy.max_receives,
            Settlement::ByEventSource,
            &mut handler,
        )
        .await
        {
            Ok(Disposition::Done | Disposition::DeadLettered { .. }) => {}
            Ok(Disposition::Retried { .. }) => {
                response.add_failure(message_id);
                failing = policy.fifo;
            }
            Err(error) => {
                // Could not even settle it: let the event source retry it.
                tracing::error!(%error, "could not settle a message");
                response.add_failure(message_id);
                failing = policy.fifo;
            }
        }
    }
    response
}

/// Runs a stage over an SQS batch: every message read as the stage's and handled
/// ([`run_stage`]), each failure settled as [`handle_sqs_batch`] does. `deadline_ms` is the
/// invocation's (`Context::deadline`).
pub async fn run_stage_batch<Q, H>(
    queue: &Q,
    event: SqsEvent,
    policy: &BatchPolicy,
    deadline_ms: u64,
    handler: &H,
) -> SqsBatchResponse
where
    Q: Queue + ?Sized,
    H: StageHandler + ?Sized,
{
    handle_sqs_batch(
        queue,
        event,
        policy,
        || time_left(deadline_ms),
        |body| {
            crate::deadline::within_any(
                crate::deadline::Deadline::at_epoch_millis(deadline_ms),
                async move { run_stage(handler, &body).await.map(|_| ()) },
            )
        },
    )
    .await
}

/// Time left before an invocation's deadline (milliseconds since the epoch, as Lambda's
/// `Context::deadline` gives it).
pub fn time_left(deadline_ms: u64) -> Duration {
    let deadline = std::time::UNIX_EPOCH + Duration::from_millis(deadline_ms);
    deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
}

/// The loader's trigger: an EventBridge scheduled rule event, or a manual event for a backfill or
/// a re-run, `{"objects": [...], "mode": "full"|"incremental", "since": ..., "until": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub request: LoadRequest,
    /// When the trigger fired: the run id derives from it, so a retried invocation of the same
    /// event is the same run.
    pub at: DateTime<Utc>,
    /// Whether the event itself says when (a schedule's `time`, a manual event's
    /// `requested_at`); otherwise `at` is the time it was read, which a retry would not repeat.
    pub dated: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualEvent {
    #[serde(default)]
    objects: Option<Vec<ObjectName>>,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    since: Option<DateTime<Utc>>,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    /// When the backfill was requested; defaults to now.
    #[serde(default)]
    requested_at: Option<DateTime<Utc>>,
}

/// Reads the loader's event. `scheduled_objects` is the configured object list used by schedules
/// and by manual events that name no objects.
pub fn parse_trigger(
    event: &serde_json::Value,
    scheduled_objects: &[ObjectName],
    now: DateTime<Utc>,
) -> Result<Trigger, ContractError> {
    let scheduled = event.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event")
        && event.get("source").and_then(|v| v.as_str()) == Some("aws.events");
    if scheduled {
        let at = event
            .get("time")
            .and_then(|t| t.as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        return Ok(Trigger {
            dated: at.is_some(),
            request: LoadRequest {
                objects: scheduled_objects.to_vec(),
                mode: Mode::Incremental,
                since: None,
                until: None,
            },
            at: at.unwrap_or(now),
        });
    }
    let manual: ManualEvent =
        serde_json::from_value(event.clone()).map_err(|e| ContractError::Malformed {
            expected: "loader (scheduled or manual)",
            detail: e.to_string(),
        })?;
    let objects = manual
        .objects
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| scheduled_objects.to_vec());
    if objects.is_empty() {
        return Err(ContractError::Invalid(
            "no objects to load: name them in the event or configure SFPIPE_OBJECTS".into(),
        ));
    }
    if let (Some(since), Some(until)) = (manual.since, manual.until)
        && since >= until
    {
        return Err(ContractError::Invalid(format!(
            "since {since} is not before until {until}"
        )));
    }
    Ok(Trigger {
        request: LoadRequest {
            objects,
            mode: manual.mode.unwrap_or(Mode::Incremental),
            since: manual.since,
            until: manual.until,
        },
        at: manual.requested_at.unwrap_or(now),
        dated: manual.requested_at.is_some(),
    })
}

/// Where an undated trigger's first reading is kept, by the invocation's id.
pub const TRIGGERS_PREFIX: &str = "triggers/";

/// The time of an undated trigger (a manual event without `requested_at`), the same for every
/// retry of one invocation: Lambda retries an asynchronous invocation with its request id, so
/// the first reading's time is kept under that id, and each retry reads it back. Without this a
/// retry would be a new run, and every Bulk job of it would start again.
async fn pin_trigger_time<B: BlobStore + ?Sized>(
    blobs: &B,
    invocation_id: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, StageError> {
    let id: String = invocation_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let key = format!("{TRIGGERS_PREFIX}{id}.json");
    let body = serde_json::json!({ "at": rfc3339(now) }).to_string();
    if blobs
        .put_if_absent(&key, Bytes::from(body))
        .await
        .at(Stage::Loader, &"(trigger)")?
    {
        return Ok(now);
    }
    let kept = blobs
        .get_bytes(&key)
        .await
        .at(Stage::Loader, &"(trigger)")?;
    serde_json::from_slice::<serde_json::Value>(&kept)
        .ok()
        .and_then(|v| v["at"].as_str().map(str::to_string))
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            StageError::new(
                Stage::Loader,
                "(trigger)",
                Cause::Inconsistent(format!(
                    "{key} holds no trigger time: delete it, or give the event a requested_at"
                )),
            )
            .permanent()
        })
}

#[derive(Debug, thiserror::Error)]
pub enum LoaderEventError {
    #[error("job-loader: the event is not a schedule or a manual run: {0}")]
    Event(#[from] ContractError),
    #[error(transparent)]
    Stage(#[from] StageError),
}

/// The job-loader's handler: reads the trigger and queues one extract per object. A retried
/// invocation of the same event queues the same messages, which the queue deduplicates by id.
pub async fn handle_loader_event<S, Q, W, B>(
    deps: &LoaderDeps<'_, S, Q, W, B>,
    event: &serde_json::Value,
    scheduled_objects: &[ObjectName],
    now: DateTime<Utc>,
    invocation_id: Option<&str>,
) -> Result<LoadReport, LoaderEventError>
where
    S: Salesforce + ?Sized,
    Q: Queue + ?Sized,
    W: Warehouse + ?Sized,
    B: BlobStore + ?Sized,
{
    let mut trigger = parse_trigger(event, scheduled_objects, now)?;
    if let (false, Some(id)) = (trigger.dated, invocation_id) {
        trigger.at = pin_trigger_time(deps.blobs, id, now).await?;
    }
    let report = run_loader(deps, &trigger.request, trigger.at).await?;
    tracing::info!(run_id = %report.run_id, objects = report.queued.len(), unchanged = report.unchanged.len(), "queued extracts");
    Ok(report)
}

/// Parses an object list: names separated by commas or line breaks; `#` starts a comment to the
/// end of its line. A name listed twice (in any case, as Salesforce matches names) is refused:
/// it would be loaded twice under one run id.
pub fn parse_object_list(list: &str) -> Result<Vec<ObjectName>, ContractError> {
    let mut objects: Vec<ObjectName> = Vec::new();
    for line in list.lines() {
        let line = line.split('#').next().unwrap_or_default();
        for name in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let object = ObjectName::new(name)?;
            if objects
                .iter()
                .any(|o| o.as_str().eq_ignore_ascii_case(object.as_str()))
            {
                return Err(ContractError::Invalid(format!(
                    "{object} is listed twice; list each object once"
                )));
            }
            objects.push(object);
        }
    }
    Ok(objects)
}

/// Where the scheduled objects are listed: in `SFPIPE_OBJECTS` itself, or (for lists too long
/// for Lambda's 4 KB of environment variables: about a hundred names) in a file in the bucket,
/// named by `SFPIPE_OBJECTS=@<key>` (`@config/objects.txt`) and read at every trigger, so
/// editing it needs no deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectList {
    Listed(Vec<ObjectName>),
    InBucket { key: String },
}

impl ObjectList {
    /// The `SFPIPE_OBJECTS` setting.
    pub fn parse(setting: &str) -> Result<Self, ContractError> {
        match setting.trim().strip_prefix('@') {
            Some(key) if key.trim().is_empty() => Err(ContractError::Invalid(
                "@ must be followed by the key of the object list in the bucket, \
                 e.g. @config/objects.txt"
                    .into(),
            )),
            Some(key) => Ok(Self::InBucket {
                key: key.trim().to_string(),
            }),
            None => parse_object_list(setting).map(Self::Listed),
        }
    }

    /// The objects, read from the bucket if that is where they are listed.
    pub async fn objects<B: BlobStore + ?Sized>(
        &self,
        blobs: &B,
    ) -> Result<Vec<ObjectName>, StageError> {
        let key = match self {
            Self::Listed(objects) => return Ok(objects.clone()),
            Self::InBucket { key } => key,
        };
        let refused = |why: String| {
            StageError::new(Stage::Loader, "(object list)", Cause::Inconsistent(why)).permanent()
        };
        let bytes = match blobs.get_bytes(key).await {
            Ok(bytes) => bytes,
            Err(crate::ports::BlobError::NotFound { .. }) => {
                return Err(refused(format!(
                    "SFPIPE_OBJECTS names the object list {key} in the bucket, and there is none: \
                     upload one (names separated by commas or lines)"
                )));
            }
            Err(error) => return Err(error).at(Stage::Loader, &"(object list)"),
        };
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| refused(format!("the object list {key} is not UTF-8 text")))?;
        parse_object_list(&text).map_err(|e| refused(format!("the object list {key}: {e}")))
    }
}

#[cfg(test)]
#[cfg(feature = "local")]
mod tests {
    use super::*;
    use crate::contracts::{Contract, ExtractMessage, MergeMessage, UploadMessage};
    use crate::local::{LocalQueue, LocalQueueConfig};
    use crate::ports::{DEAD_LETTER_REASON, OutgoingMessage};
    use crate::stages::{Cause, Stage};
    use chrono::TimeZone;

    #[tokio::test]
    async fn a_retried_manual_event_without_a_date_is_the_same_run() {
        use crate::fake::{FakeSalesforce, MemoryBlobs, RecordingQueue};
        use crate::stages::loader::LoaderConfig;
        let dir = tempfile::tempdir().unwrap();
        let blobs = std::sync::Arc::new(MemoryBlobs::new());
        let warehouse =
            crate::local::SqliteWarehouse::open(dir.path().join("w.db"), blobs.clone()).unwrap();
        let (salesforce, queue) = (FakeSalesforce::new(), RecordingQueue::new("extract"));
        let config = LoaderConfig::default();
        let deps = LoaderDeps {
            salesforce: &salesforce,
            extract_queue: &queue,
            warehouse: &warehouse,
            blobs: blobs.as_ref(),
            config: &config,
        };
        let event = serde_json::json!({
            "objects": ["Account", "Contact"], "mode": "incremental",
            "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z",
        });
        let first_try = Utc.with_ymd_and_hms(2026, 1, 3, 8, 0, 0).unwrap();
        let load = async |at: DateTime<Utc>, invocation: &str| {
            let report = handle_loader_event(&deps, &event, &[], at, Some(invocation))
                .await
                .unwrap();
            let ids: Vec<String> = queue.take().iter().map(|m| m.dedup_id.clone()).collect();
            (report.run_id, ids)
        };
        let first = load(first_try, "req-1").await;
        // Lambda's retry, minutes later, with the same request id: the same run, the same
        // messages (so the same Bulk jobs, not new ones).
        let retry = load(first_try + chrono::Duration::minutes(3), "req-1").await;
        assert_eq!(retry, first);
        assert_eq!(first.1.len(), 2);
        // Another invocation of the same event is another run.
        let another = load(first_try + chrono::Duration::minutes(3), "req-2").await;
        assert_ne!(another.0, first.0);
    }

    fn event(file: &str) -> SqsEvent {
        let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn bodies(event: &SqsEvent) -> Vec<String> {
        event
            .records
            .iter()
            .map(|r| r.body.clone().unwrap())
            .collect()
    }

    #[test]
    fn the_sample_sqs_events_carry_valid_messages() {
        for body in bodies(&event("extract-sqs.json")) {
            ExtractMessage::from_body(&body).unwrap();
        }
        for body in bodies(&event("upload-sqs.json")) {
            UploadMessage::from_body(&body).unwrap();
        }
        for body in bodies(&event("merge-sqs.json")) {
            MergeMessage::from_body(&body).unwrap();
        }
    }

    #[tokio::test]
    async fn the_object_list_is_read_from_the_setting_or_from_a_file_in_the_bucket() {
        let blobs = crate::fake::MemoryBlobs::new();
        let names = |objects: Vec<ObjectName>| -> Vec<String> {
            objects.iter().map(|o| o.to_string()).collect()
        };
        let listed = ObjectList::parse("Account, Contact").unwrap();
        assert_eq!(
            names(listed.objects(&blobs).await.unwrap()),
            ["Account", "Contact"]
        );

        let in_bucket = ObjectList::parse(" @config/objects.txt").unwrap();
        assert_eq!(
            in_bucket,
            ObjectList::InBucket {
                key: "config/objects.txt".into()
            }
        );
        let missing = in_bucket.objects(&blobs).await.unwrap_err();
        assert!(!missing.is_retryable());
        assert!(
            missing.to_string().contains("config/objects.txt"),
            "{missing}"
        );
        // 500 names: far past what Lambda's 4 KB of environment variables holds.
        let mut file = String::from("# the scheduled objects\nAccount, Contact\n");
        for n in 0..498 {
            file.push_str(&format!("Extra_Object_Number_{n:03}__c  # a comment\n"));
        }
        assert!(file.len() > 4096);
        blobs
            .put_if_absent("config/objects.txt", Bytes::from(file))
            .await
            .unwrap();
        let objects = in_bucket.objects(&blobs).await.unwrap();
        assert_eq!(objects.len(), 500);
        assert_eq!(objects[2].as_str(), "Extra_Object_Number_000__c");

        assert!(ObjectList::parse("@").is_err());
        let twice = parse_object_list("Account\naccount").unwrap_err();
        assert!(twice.to_string().contains("twice"), "{twice}");
    }

    #[test]
    fn schedules_and_manual_events_become_load_requests() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let configured = parse_object_list("Account, Contact,Invoice__c").unwrap();
        let read = |file: &str| -> serde_json::Value {
            let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let scheduled = parse_trigger(&read("schedule.json"), &configured, now).unwrap();
        assert_eq!(scheduled.request.objects, configured);
        assert_eq!(scheduled.request.mode, Mode::Incremental);
        assert_eq!(
            scheduled.at,
            Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap()
        );

        let backfill = parse_trigger(&read("backfill.json"), &configured, now).unwrap();
        assert_eq!(backfill.request.objects.len(), 2);
        assert_eq!(
            backfill.request.since,
            Some(Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(backfill.at, now);

        let full = parse_trigger(&read("full-refresh.json"), &configured, now).unwrap();
        assert_eq!(full.request.mode, Mode::Full);

        let formulas = parse_trigger(&read("formula-refresh.json"), &configured, now).unwrap();
        assert_eq!(formulas.request.mode, Mode::FormulaRefresh);
        assert_eq!(formulas.request.objects.len(), 2);

        for bad in [
            serde_json::json!({"objects": ["Acc'ount"]}),
            serde_json::json!({"objcts": ["Account"]}),
            serde_json::json!({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
        ] {
            assert!(parse_trigger(&bad, &configured, now).is_err(), "{bad}");
        }
        assert!(parse_trigger(&serde_json::json!({}), &[], now).is_err());
        assert!(parse_object_list("Account,Bad Name").is_err());
    }

    /// Puts the sample event's bodies on a local queue and returns the event with the receipts
    /// that queue handed out, as Lambda's event source mapping would.
    async fn received(queue: &LocalQueue, file: &str, fifo: bool) -> SqsEvent {
        let mut sample = event(file);
        for (i, body) in bodies(&sample).into_iter().enumerate() {
            let mut message = OutgoingMessage::new(body, format!("d{i}"));
            if fifo {
                message = message.in_group("Account");
            }
            queue.send(message).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < sample.records.len() {
            got.extend(queue.receive(10, Duration::from_millis(100)).await.unwrap());
            if fifo {
                break;
            }
        }
        for (record, message) in sample.records.iter_mut().zip(got) {
            record.receipt_handle = Some(message.receipt);
        }
        sample
    }

    fn failure(retryable: bool) -> StageError {
        let cause = if retryable {
            Cause::Inconsistent("a part is still on its way".into())
        } else {
            Cause::Contract(ContractError::Invalid("bad".into()))
        };
        StageError::new(Stage::Upload, "Account", cause)
    }

    #[tokio::test]
    async fn retryable_failures_are_reported_and_permanent_ones_dead_lettered() {
        let (queue, dlq) =
            LocalQueue::with_dead_letter_queue("upload", LocalQueueConfig::default());
        let batch = received(&queue, "upload-sqs.json", false).await;
        let ids: Vec<String> = batch
            .records
            .iter()
            .map(|r| r.message_id.clone().unwrap())
            .collect();
        let mut calls = 0;
        let response = handle_sqs_batch(
            queue.as_ref(),
            batch,
            &BatchPolicy::default(),
            || Duration::from_secs(600),
            |_| {
                calls += 1;
                let result = if calls == 1 {
                    Err(failure(true))
                } else {
                    Err(failure(false))
                };
                async move { result }
            },
        )
        .await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, vec![ids[0].clone()]);
        let dead = dlq.messages();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].1[DEAD_LETTER_REASON].contains("upload stage, object Account"));
    }

    /// The worker, not SQS, dead-letters a message: on its last try's failure (one receive before
    /// the queue's maxReceiveCount), and on arrival once more after a try that never settled.
    /// Each dead letter carries its reason and sends a notice.
    #[tokio::test]
    async fn the_last_try_is_dead_lettered_with_its_reason_and_a_notice() {
        let (queue, dlq) =
            LocalQueue::with_dead_letter_queue("upload", LocalQueueConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let notices = dir.path().join("notices.jsonl");
        let queue = crate::dead_letters::NotifyingQueue::new(
            queue,
            Some(std::sync::Arc::new(crate::local::FileNotifier::new(
                &notices,
            ))),
        );
        let mut batch = received(queue.inner(), "upload-sqs.json", false).await;
        // The first on its fifth and last try; the second back after a sixth receive, its fifth
        // try stopped at the timeout.
        for (record, count) in batch.records.iter_mut().zip(["5", "6"]) {
            record
                .attributes
                .insert("ApproximateReceiveCount".into(), count.into());
        }
        let mut calls = 0;
        let response = handle_sqs_batch(
            &queue,
            batch,
            &BatchPolicy::default(),
            || Duration::from_secs(600),
            |_| {
                calls += 1;
                async { Err(failure(true)) }
            },
        )
        .await;
        assert_eq!(calls, 1, "a message past its tries was tried again");
        assert!(response.batch_item_failures.is_empty());
        let dead = dlq.messages();
        assert_eq!(dead.len(), 2);
        let reasons: Vec<&str> = dead
            .iter()
            .map(|(_, attributes)| attributes[DEAD_LETTER_REASON].as_str())
            .collect();
        assert!(
            reasons[0].starts_with(
                "failed on each of its 5 tries; the last: upload stage, object Account"
            ),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("received 6 times without an outcome"),
            "{reasons:?}"
        );
        let sent = crate::local::FileNotifier::read(&notices).unwrap();
        assert_eq!(sent.len(), 2, "one notice per dead letter");
        for (notice, reason) in sent.iter().zip(&reasons) {
            assert!(
                notice.subject.starts_with("sfpipe dead letter: "),
                "{notice:?}"
            );
            assert!(notice.subject.ends_with(" on upload"), "{notice:?}");
            assert!(notice.message.contains(reason), "{notice:?}");
        }
    }

    #[tokio::test]
    async fn the_event_source_deletes_and_dead_letters_keep_their_group() {
        let (queue, dlq) = LocalQueue::with_dead_letter_queue(
            "merge.fifo",
            LocalQueueConfig {
                fifo: true,
                ..LocalQueueConfig::default()
            },
        );
        let batch = received(&queue, "merge-sqs.json", true).await;
        let response = handle_sqs_batch(
            queue.as_ref(),
            batch,
            &BatchPolicy {
                fifo: true,
                ..BatchPolicy::default()
            },
            || Duration::from_secs(600),
            |_| async { Err(failure(false)) },
        )
        .await;
        assert!(
            response.batch_item_failures.is_empty(),
            "a dead-lettered message is reported done, for the event source to delete"
        );
        assert_eq!(
            queue.counts().in_flight,
            1,
            "the function deleted the message itself: the event source mapping deletes it again"
        );
        let dead = dlq.receive(10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            dead[0]
                .attributes
                .get(MESSAGE_GROUP_ATTRIBUTE)
                .map(String::as_str),
            Some("Account"),
            "the dead letter lost the record's message group"
        );

        let (queue, _dlq) =
            LocalQueue::with_dead_letter_queue("extract", LocalQueueConfig::default());
        let batch = received(&queue, "extract-sqs.json", false).await;
        let records = batch.records.len();
        let response = handle_sqs_batch(
            queue.as_ref(),
            batch,
            &BatchPolicy::default(),
            || Duration::from_secs(600),
            |_| async { Ok(()) },
        )
        .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            queue.counts().in_flight,
            records,
            "successes are the event source mapping's to delete"
        );
    }

    #[tokio::test]
    async fn fifo_batches_stop_at_the_first_failure_and_only_one_message_starts_near_the_deadline()
    {
        let (queue, _dlq) = LocalQueue::with_dead_letter_queue(
            "merge.fifo",
            LocalQueueConfig {
                fifo: true,
                ..LocalQueueConfig::default()
            },
        );
        let mut batch = received(&queue, "merge-sqs.json", true).await;
        let mut second = batch.records[0].clone();
        second.message_id = Some("second".into());
        batch.records.push(second);
        let mut calls = 0;
        let response = handle_sqs_batch(
            queue.as_ref(),
            batch,
            &BatchPolicy {
                fifo: true,
                ..BatchPolicy::default()
            },
            || Duration::from_secs(600),
            |_| {
                calls += 1;
                async { Err(failure(true)) }
            },
        )
        .await;
        assert_eq!(calls, 1, "a FIFO batch went on after a failure");
        assert_eq!(response.batch_item_failures.len(), 2);

        let (queue, _dlq) =
            LocalQueue::with_dead_letter_queue("extract", LocalQueueConfig::default());
        let batch = received(&queue, "extract-sqs.json", false).await;
        let mut started = 0;
        let response = handle_sqs_batch(
            queue.as_ref(),
            batch,
            &BatchPolicy::default(),
            || Duration::from_secs(5),
            |_| {
                started += 1;
                async { Ok(()) }
            },
        )
        .await;
        assert_eq!(
            started, 1,
            "with 5 s left only the first message may start (so a batch always progresses)"
        );
        assert_eq!(response.batch_item_failures.len(), 1);
    }
}
