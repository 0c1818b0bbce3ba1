//! What handling one message (or one job-loader trigger) cost, counted where the calls are made:
//! every adapter that calls a billed service (Salesforce, S3, SQS, the Snowflake SQL API) counts
//! its requests into the [`Usage`] of the handling it runs in, found through a task-local, so no
//! port and no handler signature carries a counter. Outside a [`metered`] scope nothing is
//! counted. The local adapters count what their AWS counterparts would be billed for, so a run on
//! one machine tells what it would cost deployed.
//!
//! Each metered handling ends as a [`UsageRecord`] in the blob store under `receipts/`, which
//! `sfpipe status` and `sfpipe cost` read.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::{BlobError, BlobStore};

tokio::task_local! {
    static CURRENT: Arc<Mutex<Usage>>;
}

/// Billable calls, by service and kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Salesforce requests that count against the org's daily API limit, by kind (`describe`,
    /// `query`, `composite`, `bulk-create`, `bulk-poll`, `bulk-result-pages`, `bulk-results`,
    /// `bulk-delete`, ...). OAuth token requests do not count and are not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub salesforce_calls: BTreeMap<String, u64>,
    /// The org's own count the last Salesforce answer reported (`Sforce-Limit-Info:
    /// api-usage=used/max`): every client of the org included, so it shows the share sfpipe
    /// competes for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_api_usage: Option<OrgApiUsage>,
    /// Bulk API 2.0 query jobs created (against `DailyBulkV2QueryJobs`).
    #[serde(default)]
    pub bulk_jobs: u64,
    /// S3 requests by billing class: `PUT` (PUT, POST, COPY, multipart parts), `LIST`, `GET`,
    /// `HEAD`, `DELETE`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub s3_requests: BTreeMap<String, u64>,
    /// SQS requests the handler made itself, by action (`send`, `change-visibility`, ...).
    /// Receiving and deleting a Lambda's messages is the event source mapping's, outside.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sqs_requests: BTreeMap<String, u64>,
    /// HTTP requests to the Snowflake SQL API.
    #[serde(default)]
    pub snowflake_requests: u64,
    /// Each SQL API request that ran statements: when it was submitted and how long until its
    /// last statement had finished (what keeps a warehouse running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<StatementSpan>,
}

/// The org's API calls in the last 24 hours and its daily limit, as Salesforce reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgApiUsage {
    pub used: u64,
    pub max: u64,
}

/// One SQL API request's statements, as the client saw them run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementSpan {
    pub submitted_at: DateTime<Utc>,
    pub elapsed_ms: u64,
    /// Statements in the request (a merge is one request of several).
    pub count: u32,
}

impl StatementSpan {
    pub fn finished_at(&self) -> DateTime<Utc> {
        self.submitted_at + chrono::TimeDelta::milliseconds(self.elapsed_ms as i64)
    }
}

impl Usage {
    pub fn salesforce_total(&self) -> u64 {
        self.salesforce_calls.values().sum()
    }
    pub fn s3_total(&self) -> u64 {
        self.s3_requests.values().sum()
    }
    pub fn sqs_total(&self) -> u64 {
        self.sqs_requests.values().sum()
    }
    pub fn statement_total(&self) -> u64 {
        self.statements.iter().map(|s| u64::from(s.count)).sum()
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Usage) {
        for (kind, n) in &other.salesforce_calls {
            *self.salesforce_calls.entry(kind.clone()).or_default() += n;
        }
        for (kind, n) in &other.s3_requests {
            *self.s3_requests.entry(kind.clone()).or_default() += n;
        }
        for (kind, n) in &other.sqs_requests {
            *self.sqs_requests.entry(kind.clone()).or_default() += n;
        }
        // The org's count only grows within a day: the larger is the later.
        self.org_api_usage = match (self.org_api_usage, other.org_api_usage) {
            (Some(a), Some(b)) => Some(if b.used >= a.used { b } else { a }),
            (a, b) => a.or(b),
        };
        self.bulk_jobs += other.bulk_jobs;
        self.snowflake_requests += other.snowflake_requests;
        self.statements.extend(other.statements.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// Counts into the current handling's usage, if any.
fn count(change: impl FnOnce(&mut Usage)) {
    let _ = CURRENT.try_with(|usage| change(&mut usage.lock().unwrap_or_else(|p| p.into_inner())));
}

/// One Salesforce request that counts against the daily API limit.
pub fn salesforce_call(kind: &str) {
    count(|u| *u.salesforce_calls.entry(kind.to_string()).or_default() += 1);
}

/// What the org's `Sforce-Limit-Info` header said.
pub fn org_api_usage(used: u64, max: u64) {
    count(|u| u.org_api_usage = Some(OrgApiUsage { used, max }));
}

/// One Bulk API 2.0 query job created.
pub fn bulk_job() {
    count(|u| u.bulk_jobs += 1);
}

/// One S3 request of billing class `class` (`PUT`, `GET`, `HEAD`, `LIST`, `DELETE`).
pub fn s3_request(class: &str) {
    count(|u| *u.s3_requests.entry(class.to_string()).or_default() += 1);
}

/// One SQS request (`send`, `change-visibility`, ...).
pub fn sqs_request(action: &str) {
    count(|u| *u.sqs_requests.entry(action.to_string()).or_default() += 1);
}

/// One HTTP request to the Snowflake SQL API.
pub fn snowflake_request() {
    count(|u| u.snowflake_requests += 1);
}

/// A SQL API request's statements ran from `submitted_at` for `elapsed`.
pub fn statements(submitted_at: DateTime<Utc>, elapsed: std::time::Duration, count_: usize) {
    count(|u| {
        u.statements.push(StatementSpan {
            submitted_at,
            elapsed_ms: elapsed.as_millis() as u64,
            count: count_ as u32,
        })
    });
}

/// Runs `work` as one warehouse request of `count` statements, recording its span: how the
/// local warehouse stands in for the SQL API requests Snowflake would bill.
pub async fn as_statements<F: Future>(count_: usize, work: F) -> F::Output {
    let submitted_at = Utc::now();
    let started = Instant::now();
    let output = work.await;
    statements(submitted_at, started.elapsed(), count_);
    output
}

/// Runs `work`, counting what it calls; returns its output, its usage and how long it took.
pub async fn metered<F: Future>(work: F) -> (F::Output, Usage, std::time::Duration) {
    let usage = Arc::new(Mutex::new(Usage::default()));
    let started = Instant::now();
    let output = CURRENT.scope(usage.clone(), work).await;
    let elapsed = started.elapsed();
    let usage = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (output, usage, elapsed)
}

/// Where usage records live in the blob store.
pub const RECEIPTS_PREFIX: &str = "receipts/";

/// The "object" under which a job-loader trigger's records are kept (no Salesforce object name
/// starts with an underscore).
pub const LOADER_RECEIPTS: &str = "_job-loader";

/// What one handling of one message (or one job-loader trigger) cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// `job-loader`, `extract`, `upload` or `merge`.
    pub stage: String,
    /// The object, or [`LOADER_RECEIPTS`] for a job-loader trigger.
    pub object: String,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    /// Wall time of the handling: what Lambda bills.
    pub duration_ms: u64,
    /// Whether the handling succeeded (a failed one was billed all the same).
    pub succeeded: bool,
    /// Rows the handling moved: records stored by upload, rows read by merge.
    #[serde(default)]
    pub rows: u64,
    /// Rows the merge inserted, updated or deleted in the warehouse.
    #[serde(default)]
    pub rows_changed: u64,
    /// The job-loader's: how long the stalest object has not been known complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_lag_seconds: Option<f64>,
    pub usage: Usage,
}

impl UsageRecord {
    /// One key per handling: a retried or duplicate message is billed again, so it is recorded
    /// again, never over the first.
    pub fn key(&self) -> String {
        format!(
            "{RECEIPTS_PREFIX}{}/{}/{}-{}-{:04x}.json",
            self.object,
            self.run_id,
            self.stage,
            self.started_at.timestamp_nanos_opt().unwrap_or_default(),
            fastrand::u16(..)
        )
    }

    /// Keeps the record. Its own PUT is counted in it first. A receipt that cannot be stored is
    /// logged, never a reason to fail the handling it describes.
    pub async fn keep<B: BlobStore + ?Sized>(mut self, blobs: &B) {
        *self.usage.s3_requests.entry("PUT".into()).or_default() += 1;
        crate::metrics::emit(&self);
        if let Err(error) = self.store(blobs).await {
            tracing::warn!(%error, stage = %self.stage, object = %self.object, run_id = %self.run_id, "could not keep a usage record");
        }
    }

    async fn store<B: BlobStore + ?Sized>(&self, blobs: &B) -> Result<(), BlobError> {
        let key = self.key();
        let body = serde_json::to_vec(self).map_err(|e| BlobError::Service {
            key: key.clone(),
            message: e.to_string(),
        })?;
        blobs.put(&key, crate::ports::bytes_stream(body)).await?;
        Ok(())
    }
}

/// The receipts of one object's run: `receipts/<object>/<run>/`.
pub fn run_receipts_prefix(object: &str, run_id: &str) -> String {
    format!("{RECEIPTS_PREFIX}{object}/{run_id}/")
}

/// A run's usage, summed over every handling of its messages (retries and duplicates included:
/// each was billed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUsage {
    pub invocations: u64,
    pub failed_invocations: u64,
    /// Wall time of every handling together.
    pub duration_ms: u64,
    pub usage: Usage,
}

impl RunUsage {
    pub fn of(records: &[UsageRecord]) -> Self {
        let mut total = Self::default();
        for record in records {
            total.invocations += 1;
            total.failed_invocations += u64::from(!record.succeeded);
            total.duration_ms += record.duration_ms;
            total.usage.add(&record.usage);
        }
        total
    }

    /// One line for people: `9 API calls (query 2, ...), 0 Bulk jobs, ...`.
    pub fn summary(&self) -> String {
        let by_kind = |counts: &BTreeMap<String, u64>| {
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            }
        };
        let u = &self.usage;
        let warehouse_ms: u64 = u.statements.iter().map(|s| s.elapsed_ms).sum();
        format!(
            "{} API calls{}, {} Bulk jobs, {} S3 requests{}, {} SQS requests, {} statements in {} SQL API requests ({:.1} s), {} invocations{} ({:.1} s)",
            u.salesforce_total(),
            by_kind(&u.salesforce_calls),
            u.bulk_jobs,
            u.s3_total(),
            by_kind(&u.s3_requests),
            u.sqs_total(),
            u.statement_total(),
            u.statements.len(),
            warehouse_ms as f64 / 1000.0,
            self.invocations,
            if self.failed_invocations > 0 {
                format!(", {} failed", self.failed_invocations)
            } else {
                String::new()
            },
            self.duration_ms as f64 / 1000.0,
        )
    }
}

/// Every usage record kept under `prefix` (`receipts/`, or one object's or run's part of it),
/// oldest first.
pub async fn kept_usage<B: BlobStore + ?Sized>(
    blobs: &B,
    prefix: &str,
) -> Result<Vec<UsageRecord>, BlobError> {
    kept_usage_since(blobs, prefix, None).await
}

/// As [`kept_usage`], of runs triggered at `since` or later only: the run id in each key says
/// when, so older records are not even read.
pub async fn kept_usage_since<B: BlobStore + ?Sized>(
    blobs: &B,
    prefix: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<UsageRecord>, BlobError> {
    use futures::{StreamExt, TryStreamExt};
    let keys: Vec<String> = blobs
        .list(prefix)
        .await?
        .into_iter()
        .map(|meta| meta.key)
        .filter(|key| since.is_none_or(|since| run_started(key).is_none_or(|at| at >= since)))
        .collect();
    let bodies: Vec<bytes::Bytes> = futures::stream::iter(keys)
        .map(|key| async move { blobs.get_bytes(&key).await })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let mut records: Vec<UsageRecord> = bodies
        .iter()
        .filter_map(|bytes| serde_json::from_slice(bytes).ok())
        .collect();
    records.sort_by_key(|r| r.started_at);
    Ok(records)
}

/// When the run of a receipt's key (`receipts/<object>/<run>/...`) was triggered: its id starts
/// with the trigger's time.
fn run_started(key: &str) -> Option<DateTime<Utc>> {
    let run = key.strip_prefix(RECEIPTS_PREFIX)?.split('/').nth(1)?;
    let stamp = run.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_only_inside_a_metered_scope_and_per_scope() {
        s3_request("GET");
        let ((), first, _) = metered(async {
            s3_request("GET");
            s3_request("GET");
            salesforce_call("describe");
            bulk_job();
        })
        .await;
        let ((), second, _) = metered(async { sqs_request("send") }).await;
        assert_eq!(first.s3_requests.get("GET"), Some(&2));
        assert_eq!(first.salesforce_total(), 1);
        assert_eq!(first.bulk_jobs, 1);
        assert_eq!(first.sqs_total(), 0);
        assert_eq!(second.sqs_requests.get("send"), Some(&1));
        assert_eq!(second.s3_total(), 0);
    }

    #[test]
    fn a_receipt_key_tells_when_its_run_was_triggered() {
        let at = |key: &str| run_started(key).map(|t| t.to_rfc3339());
        assert_eq!(
            at("receipts/Account/20261207T031455Z-38852621/merge-1-00ab.json").as_deref(),
            Some("2026-12-07T03:14:55+00:00")
        );
        assert_eq!(at("receipts/Account/backfill-x/merge-1-00ab.json"), None);
    }

    #[tokio::test]
    async fn concurrent_futures_of_one_handling_count_into_it() {
        let ((), usage, _) = metered(async {
            futures::future::join_all((0..5).map(|_| async {
                tokio::task::yield_now().await;
                s3_request("PUT");
            }))
            .await;
        })
        .await;
        assert_eq!(usage.s3_requests.get("PUT"), Some(&5));
    }
}
