//! The Salesforce port: what the stages ask of Salesforce (describe an object, start, poll, abort
//! and delete a Bulk API 2.0 query job, read its result pages, page through a REST query, keep
//! within the API budget), and the values they get back. `salesforce::SalesforceClient`
//! is the adapter; `crate::fake::FakeSalesforce` is the in-memory double the stage tests inject
//! faults with.

mod describe;
mod errors;

use async_trait::async_trait;
use serde::Deserialize;

pub use describe::{FieldDescribe, GlobalDescribe, ObjectDescribe, SObjectSummary};
pub use errors::SalesforceError;

use super::ByteStream;

#[async_trait]
pub trait Salesforce: Send + Sync {
    /// Refuses to start new work once the configured share of the daily API limit is used
    /// ([`SalesforceError::ApiBudget`]), by the usage Salesforce reported last.
    fn check_budget(&self) -> Result<(), SalesforceError>;
    /// The objects of the org.
    async fn describe_global(&self) -> Result<GlobalDescribe, SalesforceError>;
    /// One object's fields; [`SalesforceError::UnknownObject`] when the org has no such object.
    async fn describe(&self, object: &str) -> Result<ObjectDescribe, SalesforceError>;
    /// Creates a Bulk API 2.0 query job (`queryAll` when `include_deleted`): CSV, comma, LF.
    async fn create_query_job(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<JobInfo, SalesforceError>;
    /// A job's state. A job that is gone (deleted, expired) is an `Api` error with status 404.
    async fn query_job(&self, job_id: &str) -> Result<JobInfo, SalesforceError>;
    async fn abort_job(&self, job_id: &str) -> Result<(), SalesforceError>;
    /// Deletes a job and its results. A job that is already gone counts as deleted.
    async fn delete_job(&self, job_id: &str) -> Result<(), SalesforceError>;
    /// One answer of `resultPages` for a completed job: up to five page links to read in
    /// parallel, each page sized by Salesforce (the resource takes no `maxRecords`), and where
    /// the list goes on (`from`: the previous answer's `next`; `None` for the first). An `Api`
    /// 404 when the job is gone or the API version has no `resultPages`.
    async fn result_pages(
        &self,
        job_id: &str,
        from: Option<&str>,
    ) -> Result<ResultPageLinks, SalesforceError>;
    /// The link of one page of a job's results: the first when `locator` is `None`, else the
    /// page a previous page's `next_locator` names.
    fn results_path(&self, job_id: &str, locator: Option<&str>, max_records: u64) -> String;
    /// Streams one result page (a link from [`Salesforce::result_pages`] or
    /// [`Salesforce::results_path`]). An `Api` 404 when the job is gone.
    async fn download_results(&self, result_url: &str) -> Result<ResultPage, SalesforceError>;
    /// The link of the first page of a REST `queryAll` (deleted rows included) of `soql`.
    fn query_all_path(&self, soql: &str) -> String;
    /// One page of a REST query: the first ([`Salesforce::query_all_path`]) or a
    /// `next_records_url`.
    async fn query_page(&self, path: &str, batch_size: u32) -> Result<QueryPage, SalesforceError>;
    /// The first page of the REST `queryAll` of each SOQL, in order, sent
    /// [`QUERIES_PER_COMPOSITE`] to an API call (Salesforce's Composite resource, which counts
    /// as one call). A query's own failure is its entry's; a call that failed fails each of its
    /// queries.
    async fn first_query_pages(&self, soqls: &[String]) -> Vec<Result<QueryPage, SalesforceError>>;
}

/// Queries one composite request may carry: Salesforce's Composite resource takes up to 25
/// subrequests, at most 5 of them queries, and counts the whole request as one API call.
pub const QUERIES_PER_COMPOSITE: usize = 5;

/// API usage from the latest `Sforce-Limit-Info: api-usage=USED/MAX` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
}

impl ApiUsage {
    pub fn parse(header: &str) -> Option<Self> {
        let usage = header
            .split(';')
            .map(str::trim)
            .find_map(|part| part.strip_prefix("api-usage="))?;
        let (used, max) = usage.split_once('/')?;
        Some(Self {
            used: used.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        })
    }

    /// [`SalesforceError::ApiBudget`] once `budget` (a share: 0.8 is 80%) of the daily requests
    /// is used.
    pub fn check_budget(self, budget: f64) -> Result<(), SalesforceError> {
        if self.max > 0 && self.used as f64 >= budget * self.max as f64 {
            return Err(SalesforceError::ApiBudget {
                used: self.used,
                max: self.max,
                budget_percent: (budget * 100.0).round() as u32,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JobState {
    Open,
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::JobComplete | JobState::Failed | JobState::Aborted
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    pub id: String,
    pub state: JobState,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub number_records_processed: Option<u64>,
    #[serde(default)]
    pub error_message: Option<String>,
    /// When the job was created, as Salesforce writes it (`2026-01-01T06:00:00.000+0000`).
    #[serde(default)]
    pub created_date: Option<String>,
}

impl JobInfo {
    /// A Failed job whose query ran too long: Salesforce creates every query job at once and
    /// reports a timeout only later, as the job's failure (it retried the query's batches and
    /// gave up, or the query timed out). Narrower windows succeed where a wide one times out.
    pub fn timed_out(&self) -> bool {
        let message = self
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        self.state == JobState::Failed
            && [
                "retried more than",
                "query_timeout",
                "running for too long",
                "timed out",
            ]
            .iter()
            .any(|sign| message.contains(sign))
    }

    /// [`JobInfo::created_date`] as a time, if Salesforce gave one that parses.
    pub fn created_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.created_date.as_deref()?;
        chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
            .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// One page of a REST query's records.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage {
    pub total_size: u64,
    pub done: bool,
    #[serde(default)]
    pub next_records_url: Option<String>,
    pub records: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// One answer of `resultPages`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultPageLinks {
    pub links: Vec<String>,
    /// The path of the next answer; `None` when the list is done.
    pub next: Option<String>,
}

/// Every result page link of a completed job, one `resultPages` call after another.
pub async fn all_result_pages<S: Salesforce + ?Sized>(
    salesforce: &S,
    job_id: &str,
) -> Result<Vec<String>, SalesforceError> {
    let mut links = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let answer = salesforce.result_pages(job_id, from.as_deref()).await?;
        links.extend(answer.links);
        match answer.next {
            Some(next) => from = Some(next),
            None => return Ok(links),
        }
    }
}

/// One page of a Bulk API 2.0 query job's results, as a stream of the bytes Salesforce sent.
pub struct ResultPage {
    pub body: ByteStream,
    /// Whether `body` is gzip-compressed (Salesforce compresses when asked).
    pub gzipped: bool,
    /// `Sforce-NumberOfRecords`.
    pub records: Option<u64>,
    /// `Sforce-Locator` of the next page; `None` after the last.
    pub next_locator: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{JobInfo, JobState};

    #[test]
    fn a_failed_job_that_ran_too_long_is_a_timeout() {
        let job = |state: JobState, message: &str| JobInfo {
            id: "750x".into(),
            state,
            object: "Account".into(),
            number_records_processed: None,
            error_message: Some(message.into()),
            created_date: None,
        };
        for message in [
            "InternalServerError : Retried more than 15 times",
            "QUERY_TIMEOUT : Your query request was running for too long.",
            "the query timed out",
        ] {
            assert!(job(JobState::Failed, message).timed_out(), "{message}");
        }
        assert!(!job(JobState::Failed, "InvalidBatch : Failed to process query").timed_out());
        assert!(!job(JobState::Aborted, "Retried more than 15 times").timed_out());
    }
}
