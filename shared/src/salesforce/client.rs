//! The HTTP client: session handling (log in lazily, renew once on INVALID_SESSION_ID), error
//! bodies, API usage from `Sforce-Limit-Info`, describe and Bulk API 2.0 query jobs.

use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, HeaderMap};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::auth::{Credentials, Session};
use super::errors::{api_error, error_from_body, transport_error};
use crate::ports::salesforce::{
    ApiUsage, GlobalDescribe, JobInfo, ObjectDescribe, QUERIES_PER_COMPOSITE, QueryPage,
    ResultPage, ResultPageLinks, Salesforce, SalesforceError,
};
pub use crate::retry::RetryPolicy;

pub const DEFAULT_API_VERSION: &str = "62.0";

#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    /// Where to log in: `https://login.salesforce.com`, `https://test.salesforce.com`, the org's
    /// My Domain, or the simulator.
    pub login_url: String,
    pub api_version: String,
    pub retry: RetryPolicy,
    /// No new extraction starts once this share of the daily API requests is used (0.8: 80%).
    pub api_budget: f64,
    /// Result pages downloaded at once by one client (an org allows 25 long requests at once).
    pub max_concurrent_downloads: usize,
    /// An extra certificate authority to trust (PEM), for a simulator's self-signed certificate.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl SalesforceConfig {
    pub fn new(login_url: impl Into<String>) -> Self {
        Self {
            login_url: login_url.into(),
            api_version: DEFAULT_API_VERSION.to_string(),
            retry: RetryPolicy::default(),
            api_budget: 0.8,
            max_concurrent_downloads: 4,
            extra_ca_pem: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompositeResponse {
    composite_response: Vec<CompositeSubresponse>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompositeSubresponse {
    #[serde(default)]
    body: serde_json::Value,
    http_status_code: u16,
    reference_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultPagesResponse {
    result_pages: Vec<ResultPageLink>,
    /// Salesforce's documentation spells it `nextRecordUrl` in one place: accept both.
    #[serde(default, alias = "nextRecordUrl")]
    next_records_url: Option<String>,
    #[serde(default)]
    done: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultPageLink {
    result_url: String,
}

pub struct SalesforceClient {
    http: reqwest::Client,
    config: SalesforceConfig,
    credentials: Credentials,
    session: RwLock<Option<Arc<Session>>>,
    usage: Mutex<Option<ApiUsage>>,
    downloads: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for SalesforceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceClient")
            .field("login_url", &self.config.login_url)
            .field("api_version", &self.config.api_version)
            .field("flow", &self.credentials.flow_name())
            .finish_non_exhaustive()
    }
}

impl SalesforceClient {
    pub fn new(
        config: SalesforceConfig,
        credentials: Credentials,
    ) -> Result<Self, SalesforceError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("sfpipe/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(120));
        if let Some(pem) = &config.extra_ca_pem {
            let certificate = reqwest::Certificate::from_pem(pem)
                .map_err(|e| SalesforceError::Config(format!("the extra CA certificate: {e}")))?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|e| SalesforceError::Config(format!("HTTP client: {e}")))?;
        let downloads = Arc::new(tokio::sync::Semaphore::new(
            config.max_concurrent_downloads.max(1),
        ));
        Ok(Self {
            http,
            config,
            credentials,
            session: RwLock::new(None),
            usage: Mutex::new(None),
            downloads,
        })
    }

    pub fn api_version(&self) -> &str {
        &self.config.api_version
    }

    /// The API usage Salesforce reported last.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses to start new work once the configured share of the daily API limit is used.
    pub fn check_budget(&self) -> Result<(), SalesforceError> {
        self.api_usage()
            .map_or(Ok(()), |usage| usage.check_budget(self.config.api_budget))
    }

    fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}/{rest}", self.config.api_version)
    }

    async fn session(&self) -> Result<Arc<Session>, SalesforceError> {
        if let Some(session) = self.session.read().await.as_ref() {
            return Ok(session.clone());
        }
        let mut slot = self.session.write().await;
        if let Some(session) = slot.as_ref() {
            return Ok(session.clone());
        }
        let session = Arc::new(
            self.credentials
                .login(&self.http, &self.config.login_url)
                .await?,
        );
        tracing::info!(instance = %session.instance_url, flow = self.credentials.flow_name(), "logged in to Salesforce");
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn drop_session(&self, stale: &Arc<Session>) {
        let mut slot = self.session.write().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *slot = None;
        }
    }

    fn record_usage(&self, headers: &HeaderMap) {
        if let Some(usage) = headers
            .get("Sforce-Limit-Info")
            .and_then(|v| v.to_str().ok())
            .and_then(ApiUsage::parse)
        {
            crate::usage::org_api_usage(usage.used, usage.max);
            *self.usage.lock().unwrap_or_else(|p| p.into_inner()) = Some(usage);
        }
    }

    /// Sends a request to the instance (`path` starts with `/services/`); on an expired session,
    /// logs in again once and repeats it; retries what may succeed later, with backoff.
    /// Non-success answers become [`SalesforceError::Api`].
    async fn request(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SalesforceError> {
        let mut attempt = 0;
        loop {
            match self.request_once(&method, path, &build).await {
                Err(error)
                    if error.is_retryable()
                        && attempt + 1 < self.config.retry.max_attempts
                        // A POST whose connection failed may have been carried out: leave it
                        // to the queue's redelivery, whose handler tolerates a duplicate job.
                        && !(method == Method::POST && matches!(error, SalesforceError::Transport(_))) =>
                {
                    let delay = self.config.retry.delay(attempt);
                    tracing::info!(path, attempt, ?delay, %error, "retrying a Salesforce request");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn request_once(
        &self,
        method: &Method,
        path: &str,
        build: &impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SalesforceError> {
        let mut renewed = false;
        loop {
            let session = self.session().await?;
            let url = format!("{}{}", session.instance_url.trim_end_matches('/'), path);
            let request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(session.access_token.expose_secret());
            let response = build(request).send().await.map_err(transport_error)?;
            crate::usage::salesforce_call(call_kind(method, path));
            self.record_usage(response.headers());
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let error = api_error(response).await;
            if status == StatusCode::UNAUTHORIZED && !renewed {
                tracing::info!(
                    code = error.code().unwrap_or(""),
                    "Salesforce session expired; logging in again"
                );
                self.drop_session(&session).await;
                renewed = true;
                continue;
            }
            return Err(error);
        }
    }

    async fn json<T: for<'de> Deserialize<'de>>(
        response: Response,
        what: &'static str,
    ) -> Result<T, SalesforceError> {
        let bytes = response.bytes().await.map_err(transport_error)?;
        serde_json::from_slice(&bytes).map_err(|e| SalesforceError::Decode {
            what,
            detail: e.to_string(),
        })
    }

    pub async fn describe_global(&self) -> Result<GlobalDescribe, SalesforceError> {
        let response = self
            .request(Method::GET, &self.data_path("sobjects/"), |r| r)
            .await?;
        Self::json(response, "global describe").await
    }

    pub async fn describe(&self, object: &str) -> Result<ObjectDescribe, SalesforceError> {
        let path = self.data_path(&format!("sobjects/{object}/describe"));
        match self.request(Method::GET, &path, |r| r).await {
            Ok(response) => Self::json(response, "object describe").await,
            Err(SalesforceError::Api { code, .. }) if code == "NOT_FOUND" => {
                Err(SalesforceError::UnknownObject {
                    object: object.to_string(),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Creates a Bulk API 2.0 query job (`queryAll` includes deleted rows).
    pub async fn create_query_job(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<JobInfo, SalesforceError> {
        let body = serde_json::json!({
            "operation": if include_deleted { "queryAll" } else { "query" },
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        let response = self
            .request(Method::POST, &self.data_path("jobs/query"), |r| {
                r.json(&body)
            })
            .await?;
        crate::usage::bulk_job();
        Self::json(response, "bulk job").await
    }

    pub async fn query_job(&self, job_id: &str) -> Result<JobInfo, SalesforceError> {
        let path = self.data_path(&format!("jobs/query/{job_id}"));
        let response = self.request(Method::GET, &path, |r| r).await?;
        Self::json(response, "bulk job").await
    }

    /// The result page links of a finished job, for downloading pages in parallel.
    pub async fn result_pages(
        &self,
        job_id: &str,
        from: Option<&str>,
    ) -> Result<ResultPageLinks, SalesforceError> {
        // No maxRecords: the resource takes none; Salesforce sizes its pages.
        let path = from.map_or_else(
            || self.data_path(&format!("jobs/query/{job_id}/resultPages")),
            str::to_string,
        );
        let response = self.request(Method::GET, &path, |r| r).await?;
        let page: ResultPagesResponse = Self::json(response, "result pages").await?;
        let links = page
            .result_pages
            .into_iter()
            .map(|l| l.result_url)
            .collect();
        if page.done {
            return Ok(ResultPageLinks { links, next: None });
        }
        match page.next_records_url {
            Some(next) => Ok(ResultPageLinks {
                links,
                next: Some(next),
            }),
            None => Err(SalesforceError::Decode {
                what: "result pages",
                detail: "done is false but no nextRecordsUrl".into(),
            }),
        }
    }

    /// The path of one page of a job's results (the first when `locator` is `None`).
    pub fn results_path(&self, job_id: &str, locator: Option<&str>, max_records: u64) -> String {
        let base = self.data_path(&format!("jobs/query/{job_id}/results"));
        match locator {
            None => format!("{base}?maxRecords={max_records}"),
            Some(locator) => {
                let locator: String =
                    url::form_urlencoded::byte_serialize(locator.as_bytes()).collect();
                format!("{base}?locator={locator}&maxRecords={max_records}")
            }
        }
    }

    /// Streams one result page, asking for gzip so the bytes can go to storage as they are.
    pub async fn download_results(&self, result_url: &str) -> Result<ResultPage, SalesforceError> {
        let permit = self
            .downloads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| SalesforceError::Config(e.to_string()))?;
        let response = self
            .request(Method::GET, result_url, |r| {
                r.header(ACCEPT_ENCODING, "gzip")
            })
            .await?;
        let headers = response.headers();
        let gzipped = headers
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        let records = headers
            .get("Sforce-NumberOfRecords")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let next_locator = headers
            .get("Sforce-Locator")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != "null")
            .map(str::to_string);
        // The permit lives as long as the body is read.
        let body = response
            .bytes_stream()
            .map_err(|e| std::io::Error::other(e.without_url()))
            .inspect(move |_| {
                let _ = &permit;
            });
        Ok(ResultPage {
            body: Box::pin(body),
            gzipped,
            records,
            next_locator,
        })
    }

    /// The path of a REST `queryAll` (deleted rows included) for `soql`.
    pub fn query_all_path(&self, soql: &str) -> String {
        let query: String = url::form_urlencoded::byte_serialize(soql.as_bytes()).collect();
        format!("{}?q={query}", self.data_path("queryAll"))
    }

    /// One page of a REST query: the first (`query_all_path`) or a `nextRecordsUrl`.
    pub async fn query_page(
        &self,
        path: &str,
        batch_size: u32,
    ) -> Result<QueryPage, SalesforceError> {
        let options = format!("batchSize={}", batch_size.clamp(200, 2000));
        let response = self
            .request(Method::GET, path, |r| {
                r.header("Sforce-Query-Options", options.as_str())
            })
            .await?;
        Self::json(response, "query page").await
    }

    /// The first page of each query's REST `queryAll`, [`QUERIES_PER_COMPOSITE`] to a
    /// composite request (one API call each).
    pub async fn first_query_pages(
        &self,
        soqls: &[String],
    ) -> Vec<Result<QueryPage, SalesforceError>> {
        // A few calls at once: each is short, far from the org's limit of 25 long-running ones.
        const CALLS_AT_ONCE: usize = 8;
        let mut pages = Vec::with_capacity(soqls.len());
        for calls in soqls.chunks(QUERIES_PER_COMPOSITE * CALLS_AT_ONCE) {
            let answers = futures::future::join_all(
                calls
                    .chunks(QUERIES_PER_COMPOSITE)
                    .map(|chunk| self.composite_answers(chunk)),
            )
            .await;
            pages.extend(answers.into_iter().flatten());
        }
        pages
    }

    /// One composite call's answers; a call that failed is every query's failure.
    async fn composite_answers(&self, soqls: &[String]) -> Vec<Result<QueryPage, SalesforceError>> {
        match self.composite_queries(soqls).await {
            Ok(answers) => answers,
            Err(error) => soqls.iter().map(|_| Err(error.clone())).collect(),
        }
    }

    async fn composite_queries(
        &self,
        soqls: &[String],
    ) -> Result<Vec<Result<QueryPage, SalesforceError>>, SalesforceError> {
        let subrequests: Vec<serde_json::Value> = soqls
            .iter()
            .enumerate()
            .map(|(i, soql)| {
                serde_json::json!({
                    "method": "GET",
                    "url": self.query_all_path(soql),
                    "referenceId": format!("q{i}"),
                })
            })
            .collect();
        let body = serde_json::json!({ "allOrNone": false, "compositeRequest": subrequests });
        let response = self
            .request(Method::POST, &self.data_path("composite"), |r| {
                r.json(&body)
            })
            .await?;
        let answer: CompositeResponse = Self::json(response, "composite response").await?;
        let mut by_reference: std::collections::HashMap<String, CompositeSubresponse> = answer
            .composite_response
            .into_iter()
            .map(|sub| (sub.reference_id.clone(), sub))
            .collect();
        Ok((0..soqls.len())
            .map(|i| {
                let sub = by_reference.remove(&format!("q{i}")).ok_or_else(|| {
                    SalesforceError::Decode {
                        what: "composite response",
                        detail: format!("no answer to subrequest q{i}"),
                    }
                })?;
                if (200..300).contains(&sub.http_status_code) {
                    serde_json::from_value(sub.body).map_err(|e| SalesforceError::Decode {
                        what: "query page",
                        detail: e.to_string(),
                    })
                } else {
                    Err(error_from_body(sub.http_status_code, &sub.body.to_string()))
                }
            })
            .collect())
    }

    pub async fn abort_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        let path = self.data_path(&format!("jobs/query/{job_id}"));
        let body = serde_json::json!({"state": "Aborted"});
        self.request(Method::PATCH, &path, |r| r.json(&body))
            .await?;
        Ok(())
    }

    /// Deletes a finished job. A job that is already gone counts as deleted.
    pub async fn delete_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        let path = self.data_path(&format!("jobs/query/{job_id}"));
        match self.request(Method::DELETE, &path, |r| r).await {
            Ok(_) => Ok(()),
            Err(SalesforceError::Api { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// What a request to the instance is, for the usage receipt (each counts against the daily API
/// limit, whatever it answered).
fn call_kind(method: &Method, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    if let Some(rest) = path.split("/jobs/query").nth(1) {
        let rest = rest.trim_matches('/');
        return match (method, rest) {
            (&Method::POST, "") => "bulk-create",
            (_, r) if r.ends_with("/resultPages") => "bulk-result-pages",
            (_, r) if r.ends_with("/results") => "bulk-results",
            (&Method::DELETE, _) => "bulk-delete",
            (&Method::PATCH, _) => "bulk-abort",
            _ => "bulk-poll",
        };
    }
    if path.ends_with("/composite") {
        "composite"
    } else if path.contains("/query") {
        "query"
    } else if path.ends_with("/describe") {
        "describe"
    } else if path.ends_with("/sobjects") || path.ends_with("/sobjects/") {
        "describe-global"
    } else if path.ends_with("/limits") || path.ends_with("/limits/") {
        "limits"
    } else {
        "other"
    }
}

/// The port, as the HTTP client: each method is the client's own.
#[async_trait::async_trait]
impl Salesforce for SalesforceClient {
    fn check_budget(&self) -> Result<(), SalesforceError> {
        SalesforceClient::check_budget(self)
    }
    async fn describe_global(&self) -> Result<GlobalDescribe, SalesforceError> {
        SalesforceClient::describe_global(self).await
    }
    async fn describe(&self, object: &str) -> Result<ObjectDescribe, SalesforceError> {
        SalesforceClient::describe(self, object).await
    }
    async fn create_query_job(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<JobInfo, SalesforceError> {
        SalesforceClient::create_query_job(self, soql, include_deleted).await
    }
    async fn query_job(&self, job_id: &str) -> Result<JobInfo, SalesforceError> {
        SalesforceClient::query_job(self, job_id).await
    }
    async fn abort_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        SalesforceClient::abort_job(self, job_id).await
    }
    async fn delete_job(&self, job_id: &str) -> Result<(), SalesforceError> {
        SalesforceClient::delete_job(self, job_id).await
    }
    async fn result_pages(
        &self,
        job_id: &str,
        from: Option<&str>,
    ) -> Result<ResultPageLinks, SalesforceError> {
        SalesforceClient::result_pages(self, job_id, from).await
    }
    fn results_path(&self, job_id: &str, locator: Option<&str>, max_records: u64) -> String {
        SalesforceClient::results_path(self, job_id, locator, max_records)
    }
    async fn download_results(&self, result_url: &str) -> Result<ResultPage, SalesforceError> {
        SalesforceClient::download_results(self, result_url).await
    }
    fn query_all_path(&self, soql: &str) -> String {
        SalesforceClient::query_all_path(self, soql)
    }
    async fn query_page(&self, path: &str, batch_size: u32) -> Result<QueryPage, SalesforceError> {
        SalesforceClient::query_page(self, path, batch_size).await
    }
    async fn first_query_pages(&self, soqls: &[String]) -> Vec<Result<QueryPage, SalesforceError>> {
        SalesforceClient::first_query_pages(self, soqls).await
    }
}

/// Never written out: a session token.
pub(crate) fn secret(value: impl Into<String>) -> SecretString {
    SecretString::from(value.into())
}

#[cfg(test)]
mod tests {
    use super::{Method, ResultPagesResponse, call_kind};

    #[test]
    fn each_request_is_receipted_by_what_it_is() {
        let v = "/services/data/v62.0";
        let cases = [
            (Method::GET, format!("{v}/sobjects/"), "describe-global"),
            (
                Method::GET,
                format!("{v}/sobjects/Account/describe"),
                "describe",
            ),
            (Method::POST, format!("{v}/jobs/query"), "bulk-create"),
            (Method::GET, format!("{v}/jobs/query/750x"), "bulk-poll"),
            (
                Method::GET,
                format!("{v}/jobs/query/750x/resultPages"),
                "bulk-result-pages",
            ),
            (
                Method::GET,
                format!("{v}/jobs/query/750x/results?locator=MTA"),
                "bulk-results",
            ),
            (
                Method::DELETE,
                format!("{v}/jobs/query/750x"),
                "bulk-delete",
            ),
            (Method::PATCH, format!("{v}/jobs/query/750x"), "bulk-abort"),
            (
                Method::GET,
                format!("{v}/queryAll?q=SELECT+Id+FROM+Account"),
                "query",
            ),
            (Method::GET, format!("{v}/query/01gx-2000"), "query"),
            (Method::POST, format!("{v}/composite"), "composite"),
            (Method::GET, format!("{v}/limits/"), "limits"),
        ];
        for (method, path, kind) in cases {
            assert_eq!(call_kind(&method, &path), kind, "{method} {path}");
        }
    }

    #[test]
    fn result_pages_accept_both_spellings_of_the_next_link() {
        for name in ["nextRecordsUrl", "nextRecordUrl"] {
            let body = format!(
                r#"{{"resultPages": [{{"resultUrl": "/r/1"}}], "{name}": "/next", "done": false}}"#
            );
            let page: ResultPagesResponse = serde_json::from_str(&body).unwrap();
            assert_eq!(page.next_records_url.as_deref(), Some("/next"), "{name}");
        }
    }
}
