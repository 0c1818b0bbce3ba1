//! The Snowflake SQL API v2 client: statements submitted asynchronously with a `requestId`, polled
//! by handle, retried on 429, 5xx and lost connections with the same `requestId` (so a retried
//! request is never executed twice), multi-statement requests, SQL errors with their SQL state.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::SnowflakeError;
use super::auth::SnowflakeAuth;
use crate::retry::RetryPolicy;

/// Where statements run: the session context of every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionContext {
    pub database: String,
    pub schema: String,
    pub warehouse: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SqlApiConfig {
    /// `https://<account>.snowflakecomputing.com`, or a test harness.
    pub base_url: String,
    pub context: SessionContext,
    pub retry: RetryPolicy,
    /// Snowflake cancels a statement that runs longer.
    pub statement_timeout: Duration,
    /// The first wait between polls of a running statement; it doubles up to two seconds.
    pub poll_interval: Duration,
    /// How long one call waits for its request before leaving it running in Snowflake
    /// ([`SnowflakeError::StillRunning`]). The invocation's deadline ([`crate::deadline`])
    /// bounds every wait, poll and retry anyway; this can only shorten them.
    pub wait_limit: Option<Duration>,
}

impl SqlApiConfig {
    pub fn new(base_url: impl Into<String>, context: SessionContext) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            context,
            retry: RetryPolicy::default(),
            statement_timeout: Duration::from_secs(3600),
            poll_interval: Duration::from_millis(100),
            wait_limit: None,
        }
    }
}

/// One statement's result: column names and rows of values as text (NULL as `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// The value in the first row under `column` (case-insensitive).
    pub fn first(&self, column: &str) -> Option<&str> {
        let index = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        self.rows.first()?.get(index)?.as_deref()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementResponse {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    sql_state: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    statement_handle: Option<String>,
    #[serde(default)]
    statement_handles: Option<Vec<String>>,
    #[serde(default)]
    result_set_meta_data: Option<ResultSetMetaData>,
    #[serde(default)]
    data: Option<Vec<Vec<Option<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultSetMetaData {
    #[serde(default)]
    row_type: Vec<RowType>,
    #[serde(default)]
    partition_info: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RowType {
    name: String,
}

pub struct SqlApiClient {
    http: reqwest::Client,
    config: SqlApiConfig,
    auth: SnowflakeAuth,
}

impl std::fmt::Debug for SqlApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlApiClient")
            .field("base_url", &self.config.base_url)
            .field("context", &self.config.context)
            .field("auth", &self.auth)
            .finish()
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

impl SqlApiClient {
    pub fn new(config: SqlApiConfig, auth: SnowflakeAuth) -> Result<Self, SnowflakeError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("sfpipe/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SnowflakeError::Config(format!("HTTP client: {e}")))?;
        Ok(Self { http, config, auth })
    }

    pub fn context(&self) -> &SessionContext {
        &self.config.context
    }

    /// Runs `sql`, which holds `statements` statements separated by `;`, in one session, and
    /// returns each statement's result in order. Snowflake runs a multi-statement request in one
    /// session, so a transaction can span its statements.
    pub async fn execute(
        &self,
        sql: &str,
        statements: usize,
    ) -> Result<Vec<ResultSet>, SnowflakeError> {
        self.execute_request(sql, statements, None).await
    }

    /// [`Self::execute`] under a request id of the caller's: one sent before (by an earlier
    /// delivery) is resubmitted with `retry=true`, so Snowflake answers with that request's
    /// statement, still running or done, instead of running it again.
    pub async fn execute_request(
        &self,
        sql: &str,
        statements: usize,
        request_id: Option<&str>,
    ) -> Result<Vec<ResultSet>, SnowflakeError> {
        let attach = request_id.is_some();
        let request_id = request_id
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let context = &self.config.context;
        let mut body = json!({
            "statement": sql,
            "timeout": self.config.statement_timeout.as_secs(),
            "database": context.database,
            "schema": context.schema,
            "parameters": {
                "MULTI_STATEMENT_COUNT": statements.to_string(),
                "TIMEZONE": "UTC",
            },
        });
        if let Some(warehouse) = &context.warehouse {
            body["warehouse"] = json!(warehouse);
        }
        if let Some(role) = &context.role {
            body["role"] = json!(role);
        }
        let submitted_at = chrono::Utc::now();
        let started = Instant::now();
        let results = self
            .run_request(&request_id, &body, attach, statements)
            .await;
        // Billed whether it succeeded or not: the warehouse ran until it answered.
        crate::usage::statements(submitted_at, started.elapsed(), statements);
        results
    }

    async fn run_request(
        &self,
        request_id: &str,
        body: &serde_json::Value,
        attach: bool,
        statements: usize,
    ) -> Result<Vec<ResultSet>, SnowflakeError> {
        let first = self.submit(request_id, body, attach).await?;
        let done = self.wait(first).await?;
        match done.statement_handles.clone() {
            Some(handles) if statements != 1 => {
                let mut results = Vec::with_capacity(handles.len());
                for handle in handles {
                    let response = self.poll(&handle).await?;
                    let response = self.wait(response).await?;
                    results.push(self.result_set(&handle, response).await?);
                }
                Ok(results)
            }
            _ => {
                let handle = done.statement_handle.clone().unwrap_or_default();
                Ok(vec![self.result_set(&handle, done).await?])
            }
        }
    }

    /// POST the statement. Every attempt carries the same `requestId`; retries add `retry=true`,
    /// so Snowflake answers a retry of a request it already ran with that run's result.
    async fn submit(
        &self,
        request_id: &str,
        body: &serde_json::Value,
        retry_from_start: bool,
    ) -> Result<StatementResponse, SnowflakeError> {
        let url = format!("{}/api/v2/statements", self.config.base_url);
        let mut query = vec![("requestId", request_id), ("async", "true")];
        if retry_from_start {
            query.push(("retry", "true"));
        }
        let mut attempt = 0;
        loop {
            let outcome = self.send(Method::POST, &url, &query, Some(body)).await;
            match outcome {
                Ok(response) => return self.read(response, None).await,
                Err(e)
                    if e.retryable
                        && attempt + 1 < self.config.retry.max_attempts
                        && crate::deadline::allows(self.config.retry.delay(attempt)) =>
                {
                    tracing::warn!(request_id, attempt, error = %e.error, "retrying a Snowflake request");
                    tokio::time::sleep(self.config.retry.delay(attempt)).await;
                    attempt += 1;
                    if attempt == 1 && !retry_from_start {
                        query.push(("retry", "true"));
                    }
                }
                Err(e) => return Err(e.error),
            }
        }
    }

    /// GET a statement's status or result by handle (a GET is always safe to repeat).
    async fn poll(&self, handle: &str) -> Result<StatementResponse, SnowflakeError> {
        self.get(handle, None).await
    }

    async fn get(
        &self,
        handle: &str,
        partition: Option<usize>,
    ) -> Result<StatementResponse, SnowflakeError> {
        let url = format!("{}/api/v2/statements/{handle}", self.config.base_url);
        let partition_text = partition.map(|p| p.to_string());
        let query: Vec<(&str, &str)> = partition_text
            .as_deref()
            .map(|p| vec![("partition", p)])
            .unwrap_or_default();
        let mut attempt = 0;
        loop {
            match self.send(Method::GET, &url, &query, None).await {
                Ok(response) => return self.read(response, Some(handle)).await,
                Err(e)
                    if e.retryable
                        && attempt + 1 < self.config.retry.max_attempts
                        && crate::deadline::allows(self.config.retry.delay(attempt)) =>
                {
                    tokio::time::sleep(self.config.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.error),
            }
        }
    }

    /// Polls until the statement is no longer running (HTTP 202).
    async fn wait(
        &self,
        mut response: StatementResponse,
    ) -> Result<StatementResponse, SnowflakeError> {
        let started = Instant::now();
        let limit = self
            .config
            .wait_limit
            .unwrap_or(self.config.statement_timeout + Duration::from_secs(60));
        let mut interval = self.config.poll_interval;
        while response.code.as_deref() == Some(RUNNING) {
            let handle = response.statement_handle.clone().ok_or_else(|| {
                SnowflakeError::Protocol("a running statement without a handle".into())
            })?;
            // The invocation's deadline bounds the wait too: the next poll must leave time to
            // settle before the function is killed.
            if started.elapsed() > limit || !crate::deadline::allows(interval) {
                // Not cancelled: a redelivery with the same request id picks it up.
                return Err(SnowflakeError::StillRunning {
                    handle,
                    waited_seconds: started.elapsed().as_secs(),
                });
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(2));
            response = self.poll(&handle).await?;
        }
        Ok(response)
    }

    async fn result_set(
        &self,
        handle: &str,
        response: StatementResponse,
    ) -> Result<ResultSet, SnowflakeError> {
        let Some(meta) = response.result_set_meta_data else {
            return Ok(ResultSet::default());
        };
        let mut rows = response.data.unwrap_or_default();
        for partition in 1..meta.partition_info.len() {
            rows.extend(
                self.get(handle, Some(partition))
                    .await?
                    .data
                    .unwrap_or_default(),
            );
        }
        Ok(ResultSet {
            columns: meta.row_type.into_iter().map(|r| r.name).collect(),
            rows,
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Attempt> {
        let mut renewed = false;
        loop {
            let (token, token_type) = self.auth.token().map_err(Attempt::fatal)?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .query(query)
                .bearer_auth(token.expose_secret())
                .header("X-Snowflake-Authorization-Token-Type", token_type)
                .header(reqwest::header::ACCEPT, "application/json")
                // No answer is waited for past the invocation's reserve.
                .timeout(crate::deadline::bounded(REQUEST_TIMEOUT).max(Duration::from_millis(100)));
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => {
                    crate::usage::snowflake_request();
                    response
                }
                // With a requestId even a POST whose fate is unknown is safe to send again.
                Err(e) => {
                    return Err(Attempt::retry(SnowflakeError::Transport(
                        describe_transport(e),
                    )));
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                self.auth.invalidate();
                continue;
            }
            if is_retryable_status(status) {
                let body = response.text().await.unwrap_or_default();
                return Err(Attempt::retry(SnowflakeError::Http {
                    status: status.as_u16(),
                    body: truncate(&body),
                }));
            }
            return Ok(response);
        }
    }

    async fn read(
        &self,
        response: Response,
        handle: Option<&str>,
    ) -> Result<StatementResponse, SnowflakeError> {
        let status = response.status();
        let text = body_text(response).await?;
        match status {
            StatusCode::OK | StatusCode::ACCEPTED => {
                let mut parsed: StatementResponse = serde_json::from_str(&text).map_err(|e| {
                    SnowflakeError::Protocol(format!(
                        "unexpected response ({e}): {}",
                        truncate(&text)
                    ))
                })?;
                if status == StatusCode::ACCEPTED {
                    parsed.code = Some(RUNNING.into());
                    if parsed.statement_handle.is_none() {
                        parsed.statement_handle = handle.map(str::to_string);
                    }
                }
                Ok(parsed)
            }
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::REQUEST_TIMEOUT => {
                let parsed: Option<StatementResponse> = serde_json::from_str(&text).ok();
                let parsed = parsed.as_ref();
                Err(SnowflakeError::Sql {
                    code: parsed.and_then(|p| p.code.clone()).unwrap_or_default(),
                    sql_state: parsed.and_then(|p| p.sql_state.clone()).unwrap_or_default(),
                    message: parsed
                        .and_then(|p| p.message.clone())
                        .unwrap_or_else(|| truncate(&text)),
                })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SnowflakeError::Unauthorized {
                status: status.as_u16(),
                message: truncate(&text),
            }),
            _ => Err(SnowflakeError::Http {
                status: status.as_u16(),
                body: truncate(&text),
            }),
        }
    }
}

/// A response's body as text. Snowflake may send result partitions after the first gzipped
/// (`Content-Encoding: gzip`) whatever the request accepts.
async fn body_text(response: Response) -> Result<String, SnowflakeError> {
    let gzipped = response
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SnowflakeError::Transport(e.to_string()))?;
    if !gzipped {
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(bytes.as_ref()),
        &mut text,
    )
    .map_err(|e| {
        SnowflakeError::Protocol(format!("a gzipped response that does not inflate: {e}"))
    })?;
    Ok(text)
}

/// The longest one HTTP request to the SQL API is waited for (less, near the deadline).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The code this client gives a response that means "still running" (HTTP 202).
const RUNNING: &str = "333334";

struct Attempt {
    error: SnowflakeError,
    retryable: bool,
}

impl Attempt {
    fn retry(error: SnowflakeError) -> Self {
        Self {
            error,
            retryable: true,
        }
    }
    fn fatal(error: SnowflakeError) -> Self {
        Self {
            error,
            retryable: false,
        }
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 500;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A transport error with its causes (the top-level message alone is often just "error sending
/// request"). The URL is left out: it carries no secret, but it is noise in every log line.
fn describe_transport(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
