//! An org in memory behind the Salesforce port: objects with rows, Bulk query jobs that complete
//! after a number of polls, REST query pages, and faults a test scripts (an error on the next
//! calls of a kind, jobs that fail or time out, a refused object, a page cut short, a page
//! without its record count, an old API version without `resultPages`).
//!
//! Its SOQL is the little sfpipe writes: `SELECT f, ... FROM O [WHERE c op v AND ...]` with `>=`,
//! `<` and `=` on datetimes and booleans. Like Salesforce, it sizes result pages itself,
//! whatever `maxRecords` asks, and a job's rows are those at its creation.

mod query;

use query::*;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{Map, Value};

use crate::ports::salesforce::{
    ApiUsage, FieldDescribe, GlobalDescribe, JobInfo, JobState, ObjectDescribe,
    QUERIES_PER_COMPOSITE, QueryPage, ResultPage, ResultPageLinks, SObjectSummary, Salesforce,
    SalesforceError,
};

const API: &str = "/services/data/v62.0";

/// Links in one answer of `resultPages`, as Salesforce documents.
const LINKS_PER_ANSWER: usize = 5;

/// A call on the port, to script a fault on or to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    DescribeGlobal,
    Describe,
    CreateQueryJob,
    QueryJob,
    AbortJob,
    DeleteJob,
    ResultPages,
    DownloadResults,
    QueryPage,
    /// One composite request of up to five queries ([`Salesforce::first_query_pages`]).
    Composite,
}

pub struct FakeSalesforce {
    org: Mutex<Org>,
}

impl Default for FakeSalesforce {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
struct Org {
    objects: BTreeMap<String, FakeObject>,
    jobs: BTreeMap<String, Job>,
    /// REST query cursors: the rows of the query, by cursor id.
    cursors: BTreeMap<String, Vec<Map<String, Value>>>,
    next_id: u64,
    faults: Vec<(Call, u32, SalesforceError)>,
    calls: Vec<Call>,
    usage: Option<ApiUsage>,
    polls_to_complete: u32,
    page_rows: Option<usize>,
    rest_page_rows: Option<usize>,
    bulk_refused: BTreeSet<String>,
    failing_jobs: BTreeMap<String, String>,
    job_age: chrono::TimeDelta,
    without_result_pages: bool,
    without_record_counts: bool,
    cut_pages_after: Option<usize>,
    header_override: Option<Vec<String>>,
}

struct FakeObject {
    describe: ObjectDescribe,
    rows: Vec<Map<String, Value>>,
}

struct Job {
    info: JobInfo,
    fields: Vec<String>,
    rows: Vec<Map<String, Value>>,
    polls: u32,
}

fn lock(org: &Mutex<Org>) -> std::sync::MutexGuard<'_, Org> {
    org.lock().unwrap_or_else(|p| p.into_inner())
}

fn api_error(status: u16, code: &str, message: &str) -> SalesforceError {
    SalesforceError::Api {
        status,
        code: code.into(),
        message: message.into(),
    }
}

/// A REST cursor that does not exist (or expired, two days after its query).
fn invalid_locator() -> SalesforceError {
    api_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
}

fn not_found() -> SalesforceError {
    api_error(404, "NOT_FOUND", "The requested resource does not exist")
}

/// The usual budget share ([`crate::salesforce::SalesforceConfig`]'s default).
const API_BUDGET: f64 = 0.8;

impl FakeSalesforce {
    /// An org with no objects, whose jobs complete on their first poll.
    pub fn new() -> Self {
        Self {
            org: Mutex::new(Org {
                polls_to_complete: 1,
                ..Org::default()
            }),
        }
    }

    /// Adds an object with fields (name, describe type) and rows (JSON objects; a missing
    /// field is null).
    pub fn add_object(&self, name: &str, fields: &[(&str, &str)], rows: Vec<Value>) {
        let describe = ObjectDescribe {
            name: name.to_string(),
            queryable: true,
            fields: fields
                .iter()
                .map(|(field, field_type)| FieldDescribe {
                    name: field.to_string(),
                    field_type: field_type.to_string(),
                    length: 255,
                    precision: 0,
                    scale: 0,
                    digits: 0,
                    calculated: false,
                    nillable: true,
                    compound_field_name: None,
                })
                .collect(),
        };
        let rows = rows
            .into_iter()
            .filter_map(|row| match row {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect();
        lock(&self.org)
            .objects
            .insert(name.to_string(), FakeObject { describe, rows });
    }

    /// Marks a field calculated (a formula).
    pub fn make_formula(&self, object: &str, field: &str) {
        if let Some(f) = lock(&self.org)
            .objects
            .get_mut(object)
            .and_then(|o| o.describe.fields.iter_mut().find(|f| f.name == field))
        {
            f.calculated = true;
        }
    }

    /// The next `times` calls of `call` answer `error`.
    pub fn fail(&self, call: Call, times: u32, error: SalesforceError) {
        lock(&self.org).faults.push((call, times, error));
    }

    /// Jobs complete on this poll (`0`: already complete when created).
    pub fn polls_to_complete(&self, polls: u32) {
        lock(&self.org).polls_to_complete = polls;
    }

    /// Records per result page, as Salesforce chooses them on `resultPages` (default: what
    /// `maxRecords` asks).
    pub fn page_rows(&self, rows: usize) {
        lock(&self.org).page_rows = Some(rows.max(1));
    }

    /// Records per REST query page (default: the batch size asked, 200 to 2,000).
    pub fn rest_page_rows(&self, rows: usize) {
        lock(&self.org).rest_page_rows = Some(rows.max(1));
    }

    /// Bulk refuses the object (`INVALIDENTITY`), as it does objects it does not support.
    pub fn refuse_bulk(&self, object: &str) {
        lock(&self.org).bulk_refused.insert(object.to_string());
    }

    /// Jobs of the object end Failed with this message (one with "QUERY_TIMEOUT" is a timeout).
    pub fn fail_jobs(&self, object: &str, message: &str) {
        lock(&self.org)
            .failing_jobs
            .insert(object.to_string(), message.to_string());
    }

    /// Jobs are reported created this long ago.
    pub fn jobs_created_ago(&self, age: chrono::TimeDelta) {
        lock(&self.org).job_age = age;
    }

    /// `resultPages` answers 404, as API versions before it did.
    pub fn without_result_pages(&self) {
        lock(&self.org).without_result_pages = true;
    }

    /// Result pages come without `Sforce-NumberOfRecords`.
    pub fn without_record_counts(&self) {
        lock(&self.org).without_record_counts = true;
    }

    /// Result page bodies fail after this many bytes (a dropped connection).
    pub fn cut_pages_after(&self, bytes: usize) {
        lock(&self.org).cut_pages_after = Some(bytes);
    }

    /// Result pages come with this header instead of the query's fields.
    pub fn header_override(&self, header: &[&str]) {
        lock(&self.org).header_override = Some(header.iter().map(|h| h.to_string()).collect());
    }

    /// The API usage reported, as a `Sforce-Limit-Info` header would.
    pub fn set_usage(&self, used: u64, max: u64) {
        lock(&self.org).usage = Some(ApiUsage { used, max });
    }

    /// Deletes a job behind the stages' back (Salesforce deletes jobs after seven days).
    pub fn expire_job(&self, job_id: &str) {
        lock(&self.org).jobs.remove(job_id);
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.org).calls.clone()
    }

    /// The jobs that exist, with their states.
    pub fn jobs(&self) -> Vec<JobInfo> {
        lock(&self.org)
            .jobs
            .values()
            .map(|job| job.info.clone())
            .collect()
    }

    /// Counts the call and answers its scripted fault, if one is due.
    fn enter(&self, call: Call) -> Result<std::sync::MutexGuard<'_, Org>, SalesforceError> {
        let mut org = lock(&self.org);
        org.calls.push(call);
        if let Some(index) = org
            .faults
            .iter()
            .position(|(c, times, _)| *c == call && *times > 0)
        {
            let fault = &mut org.faults[index];
            fault.1 -= 1;
            return Err(fault.2.clone());
        }
        Ok(org)
    }
}

#[async_trait]
impl Salesforce for FakeSalesforce {
    fn check_budget(&self) -> Result<(), SalesforceError> {
        lock(&self.org)
            .usage
            .map_or(Ok(()), |usage| usage.check_budget(API_BUDGET))
    }

    async fn describe_global(&self) -> Result<GlobalDescribe, SalesforceError> {
        let org = self.enter(Call::DescribeGlobal)?;
        Ok(GlobalDescribe {
            sobjects: org
                .objects
                .keys()
                .map(|name| SObjectSummary {
                    name: name.clone(),
                    queryable: true,
                    custom: name.ends_with("__c"),
                    replicateable: true,
                })
                .collect(),
        })
    }

    async fn describe(&self, object: &str) -> Result<ObjectDescribe, SalesforceError> {
        let org = self.enter(Call::Describe)?;
        org.objects
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(object))
            .map(|(_, o)| o.describe.clone())
            .ok_or_else(|| SalesforceError::UnknownObject {
                object: object.to_string(),
            })
    }

    async fn create_query_job(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<JobInfo, SalesforceError> {
        let mut org = self.enter(Call::CreateQueryJob)?;
        let parsed = parse_soql(soql)?;
        if org.bulk_refused.contains(&parsed.object) {
            return Err(api_error(
                400,
                "INVALIDENTITY",
                &format!(
                    "Entity '{}' is not supported by the Bulk API.",
                    parsed.object
                ),
            ));
        }
        let rows = run(&org, &parsed)?
            .into_iter()
            .filter(|row| include_deleted || row.get("IsDeleted") != Some(&Value::Bool(true)))
            .collect();
        org.next_id += 1;
        let id = format!("750FAKE{:08}", org.next_id);
        let created = Utc::now() - org.job_age;
        let state = if org.polls_to_complete == 0 {
            JobState::JobComplete
        } else {
            JobState::UploadComplete
        };
        let info = JobInfo {
            id: id.clone(),
            state,
            object: parsed.object.clone(),
            number_records_processed: None,
            error_message: None,
            created_date: Some(created.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()),
        };
        org.jobs.insert(
            id,
            Job {
                info: info.clone(),
                fields: parsed.fields,
                rows,
                polls: 0,
            },
        );
        Ok(info)
    }

    async fn query_job(&self, job_id: &str) -> Result<JobInfo, SalesforceError> {
        let mut org = self.enter(Call::QueryJob)?;
        let polls_to_complete = org.polls_to_complete;
        let failure = org
            .jobs
            .get(job_id)
            .and_then(|job| org.failing_jobs.get(&job.info.object).cloned());
        let job = org.jobs.get_mut(job_id).ok_or_else(not_found)?;
        job.polls += 1;
        if !job.info.state.is_final() && job.polls >= polls_to_complete {
            match failure {
                Some(message) => {
                    job.info.state = JobState::Failed;
                    job.info.error_message = Some(message);
                }
                None => {
                    job.info.state = JobState::JobComplete;
                    job.info.number_records_processed = Some(job.rows.len() as u64);
                }
            }
        } else if !job.info.state.is_final() {
            job.info.state = JobState::InProgress;
        }
        Ok(job.info.clone())
    }

    async fn abort_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        let mut org = self.enter(Call::AbortJob)?;
        let job = org.jobs.get_mut(job_id).ok_or_else(not_found)?;
        if job.info.state.is_final() {
            return Err(api_error(
                400,
                "INVALIDJOBSTATE",
                "Aborting already Completed Job not allowed",
            ));
        }
        job.info.state = JobState::Aborted;
        Ok(())
    }

    async fn delete_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        let mut org = self.enter(Call::DeleteJob)?;
        // As Salesforce: only a job that is over (its generic code, not INVALIDJOBSTATE).
        if org
            .jobs
            .get(job_id)
            .is_some_and(|job| !job.info.state.is_final())
        {
            return Err(api_error(
                400,
                "API_ERROR",
                "Error encountered when deleting the job because the job is not terminated",
            ));
        }
        org.jobs.remove(job_id);
        Ok(())
    }

    async fn result_pages(
        &self,
        job_id: &str,
        from: Option<&str>,
    ) -> Result<ResultPageLinks, SalesforceError> {
        let org = self.enter(Call::ResultPages)?;
        if org.without_result_pages {
            return Err(not_found());
        }
        let job = org.jobs.get(job_id).ok_or_else(not_found)?;
        if job.info.state != JobState::JobComplete {
            return Err(api_error(412, "JOB_NOT_COMPLETE", "Job is not complete"));
        }
        // Salesforce sizes the pages, and answers five links at a time.
        let per_page = org.page_rows.unwrap_or(50_000);
        let pages = job.rows.len().div_ceil(per_page).max(1);
        let first: usize = from
            .and_then(|f| f.rsplit_once("locator=").and_then(|(_, n)| n.parse().ok()))
            .unwrap_or(0);
        let last = (first + LINKS_PER_ANSWER).min(pages);
        let links = (first..last)
            .map(|page| {
                let locator = (page > 0).then(|| (page * per_page).to_string());
                results_path(job_id, locator.as_deref(), per_page as u64)
            })
            .collect();
        let next =
            (last < pages).then(|| format!("{API}/jobs/query/{job_id}/resultPages?locator={last}"));
        Ok(ResultPageLinks { links, next })
    }

    fn results_path(&self, job_id: &str, locator: Option<&str>, max_records: u64) -> String {
        results_path(job_id, locator, max_records)
    }

    async fn download_results(&self, result_url: &str) -> Result<ResultPage, SalesforceError> {
        let org = self.enter(Call::DownloadResults)?;
        let job_id = result_url
            .split("/jobs/query/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        let job = org.jobs.get(job_id).ok_or_else(not_found)?;
        if job.info.state != JobState::JobComplete {
            return Err(api_error(412, "JOB_NOT_COMPLETE", "Job is not complete"));
        }
        let query = query_of(result_url);
        let start: usize = match query.get("locator") {
            None => 0,
            Some(locator) => locator
                .parse()
                .map_err(|_| api_error(400, "INVALID_LOCATOR", "invalid locator"))?,
        };
        let max: usize = query
            .get("maxRecords")
            .and_then(|m| m.parse().ok())
            .unwrap_or(50_000)
            .max(1);
        let start = start.min(job.rows.len());
        let end = (start + max).min(job.rows.len());
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let header = org.header_override.clone().unwrap_or(job.fields.clone());
        let mut rows = vec![header];
        rows.extend(job.rows[start..end].iter().map(|row| {
            job.fields
                .iter()
                .map(|f| csv_text(row.get(f)))
                .collect::<Vec<_>>()
        }));
        for row in rows {
            writer
                .write_record(&row)
                .map_err(|e| api_error(500, "UNKNOWN_EXCEPTION", &e.to_string()))?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| api_error(500, "UNKNOWN_EXCEPTION", &e.to_string()))?;
        let body: crate::ports::ByteStream = match org.cut_pages_after {
            Some(cut) if cut < bytes.len() => {
                let head = Bytes::copy_from_slice(&bytes[..cut]);
                Box::pin(futures::stream::iter([
                    Ok(head),
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "injected: connection reset mid-page",
                    )),
                ]))
            }
            _ => crate::ports::bytes_stream(bytes),
        };
        Ok(ResultPage {
            body,
            gzipped: false,
            records: (!org.without_record_counts).then_some((end - start) as u64),
            next_locator: (end < job.rows.len()).then(|| end.to_string()),
        })
    }

    fn query_all_path(&self, soql: &str) -> String {
        let query: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        format!("{API}/queryAll?q={query}")
    }

    async fn query_page(&self, path: &str, batch_size: u32) -> Result<QueryPage, SalesforceError> {
        let mut org = self.enter(Call::QueryPage)?;
        let per_page = org
            .rest_page_rows
            .unwrap_or(batch_size.clamp(200, 2000) as usize);
        let (cursor, start) = match query_of(path).get("q") {
            Some(soql) => (open_cursor(&mut org, soql)?, 0),
            None => {
                let next = path.rsplit('/').next().unwrap_or_default();
                let (cursor, start) = next.rsplit_once('-').ok_or_else(invalid_locator)?;
                let start = start.parse().map_err(|_| invalid_locator())?;
                (cursor.to_string(), start)
            }
        };
        page_of(&org, &cursor, start, per_page)
    }

    async fn first_query_pages(&self, soqls: &[String]) -> Vec<Result<QueryPage, SalesforceError>> {
        let mut pages = Vec::with_capacity(soqls.len());
        for chunk in soqls.chunks(QUERIES_PER_COMPOSITE) {
            let mut org = match self.enter(Call::Composite) {
                Ok(org) => org,
                Err(error) => {
                    pages.extend(chunk.iter().map(|_| Err(error.clone())));
                    continue;
                }
            };
            for soql in chunk {
                // A composite subrequest pages as a plain query does: 2,000 records at most.
                pages.push(
                    open_cursor(&mut org, soql).and_then(|cursor| page_of(&org, &cursor, 0, 2000)),
                );
            }
        }
        pages
    }
}

/// Runs a query and keeps its rows under a new cursor id.
fn open_cursor(org: &mut Org, soql: &str) -> Result<String, SalesforceError> {
    let parsed = parse_soql(soql)?;
    let rows = run(org, &parsed)?
        .into_iter()
        .map(|row| {
            let mut record = Map::new();
            record.insert(
                "attributes".into(),
                serde_json::json!({"type": parsed.object}),
            );
            for field in &parsed.fields {
                record.insert(
                    field.clone(),
                    row.get(field).cloned().unwrap_or(Value::Null),
                );
            }
            record
        })
        .collect();
    org.next_id += 1;
    let cursor = format!("01gFAKE{:08}", org.next_id);
    org.cursors.insert(cursor.clone(), rows);
    Ok(cursor)
}

/// The page of a cursor's rows from `start`.
fn page_of(
    org: &Org,
    cursor: &str,
    start: usize,
    per_page: usize,
) -> Result<QueryPage, SalesforceError> {
    let rows = org.cursors.get(cursor).ok_or_else(invalid_locator)?;
    let start = start.min(rows.len());
    let end = (start + per_page).min(rows.len());
    Ok(QueryPage {
        total_size: rows.len() as u64,
        done: end == rows.len(),
        next_records_url: (end < rows.len()).then(|| format!("{API}/query/{cursor}-{end}")),
        records: rows[start..end].to_vec(),
    })
}

fn results_path(job_id: &str, locator: Option<&str>, max_records: u64) -> String {
    let base = format!("{API}/jobs/query/{job_id}/results");
    match locator {
        None => format!("{base}?maxRecords={max_records}"),
        Some(locator) => {
            let locator: String =
                url::form_urlencoded::byte_serialize(locator.as_bytes()).collect();
            format!("{base}?locator={locator}&maxRecords={max_records}")
        }
    }
}
