//! The HTTP side: the endpoints sfpipe (and other Salesforce clients) call, in Salesforce's shapes.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::org::{Org, format_datetime_ms};
use crate::soql::{self, Query as SoqlQuery};

/// Who may log in, and how the org behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub rows: u64,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    /// Password with the security token appended, as OAuth and SOAP logins send it.
    pub password: String,
    pub refresh_token: String,
    /// The connected app's certificate key: JWT bearer assertions must verify against it.
    pub jwt_public_key_pem: String,
    /// Status checks a Bulk job answers InProgress before it is JobComplete.
    pub bulk_polls_to_complete: u32,
    pub daily_api_limit: u64,
    /// A session stops working after this many API calls (Salesforce expires idle sessions;
    /// this makes expiry happen mid-run, deterministically).
    pub session_calls: Option<u64>,
    /// Added to every API call.
    pub latency: std::time::Duration,
    /// How Bulk result pages are paced: a time to first byte and a per-response rate, as a real
    /// org's downloads are ([`crate::bandwidth`]); unlimited by default.
    pub bandwidth: crate::bandwidth::Bandwidth,
    /// Bulk jobs on these objects end Failed.
    pub failing_job_objects: Vec<String>,
    /// The Bulk API refuses these objects (INVALIDENTITY), as it does some standard objects.
    pub bulk_unsupported_objects: Vec<String>,
    /// Answer 404 to `resultPages`, as API versions before it existed do: clients must follow
    /// the `Sforce-Locator` chain.
    pub without_result_pages: bool,
    /// Records per page of `resultPages`: Salesforce chooses the page size there and ignores the
    /// client's `maxRecords`.
    pub result_page_rows: u64,
    /// On the locator chain, pages hold fewer records than `maxRecords` asks ("still subject to
    /// the size limits"): a third fewer, so a client must not predict the page count.
    pub short_pages: bool,
    /// Jobs report one record more in `numberRecordsProcessed` than their pages hold.
    pub miscounted_jobs: bool,
    /// Result pages come without their `Sforce-NumberOfRecords` header.
    pub without_record_counts: bool,
    /// Bulk result pages carry their columns in reverse order of the query's field list.
    pub reordered_result_columns: bool,
    /// A Bulk query matching more rows than this times out, as a query over too wide a window of
    /// a huge object does: the job is created, then ends Failed ([`JOB_TIMEOUT_MESSAGE`]) when
    /// it would have completed.
    pub query_timeout_rows: Option<u64>,
    /// Mutation rounds to replay at start (their timestamps), so an org survives restarts.
    pub rounds: Vec<DateTime<Utc>>,
    /// Also serve `Bench__c`, a 50-field object, for `sfpipe bench`.
    pub bench_object: bool,
    /// Also serve `AccountHistory`, a field history object with no SystemModstamp.
    pub history_object: bool,
    /// Contact gets `Account_Rating__c`, a cross-object formula that changes without a new
    /// SystemModstamp ([`Org::add_cross_object_formula`]).
    pub cross_object_formula: bool,
    /// Mutation rounds also hard-delete rows ([`Org::purge`]): they vanish from queryAll too.
    pub hard_deletes: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            rows: 1000,
            client_id: "sfpipe-demo-client".into(),
            client_secret: "sfpipe-demo-secret".into(),
            username: "integration@sfpipe.demo".into(),
            password: "demo-password".into(),
            refresh_token: "5Aep861demo.refresh.token".into(),
            jwt_public_key_pem: crate::DEMO_PUBLIC_KEY_PEM.into(),
            bulk_polls_to_complete: 1,
            daily_api_limit: 100_000,
            session_calls: None,
            latency: std::time::Duration::ZERO,
            bandwidth: crate::bandwidth::Bandwidth::default(),
            failing_job_objects: Vec::new(),
            bulk_unsupported_objects: Vec::new(),
            query_timeout_rows: None,
            result_page_rows: DEFAULT_MAX_RECORDS,
            short_pages: false,
            miscounted_jobs: false,
            without_record_counts: false,
            reordered_result_columns: false,
            without_result_pages: false,
            rounds: Vec::new(),
            bench_object: false,
            history_object: false,
            cross_object_formula: false,
            hard_deletes: false,
        }
    }
}

/// An error the simulator answers with on a matching request, `remaining` times.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Fault {
    /// Requests whose path contains this are affected.
    pub path_contains: String,
    /// Instead of an error answer, send the start of the real body and then drop the connection.
    #[serde(default)]
    pub drop_mid_body: bool,
    pub status: u16,
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
    pub remaining: u32,
}

#[derive(Debug)]
struct Job {
    id: String,
    object: String,
    operation: String,
    query: SoqlQuery,
    /// The rows the job matched when it was created (Salesforce snapshots results too).
    rows: Arc<Vec<u64>>,
    state: &'static str,
    status_checks: u32,
    created: DateTime<Utc>,
    /// Matched more rows than `query_timeout_rows`: the job fails when it would have completed.
    times_out: bool,
    /// Why a Failed job failed.
    error_message: Option<&'static str>,
    /// Reports one record more than its pages hold ([`SimConfig::miscounted_jobs`]).
    miscounted: bool,
}

/// What a Bulk 2.0 query job that ran too long says when it fails: Salesforce retries the query's
/// internal batches and gives up. Creating the job never reports a timeout.
pub const JOB_TIMEOUT_MESSAGE: &str = "InternalServerError : Retried more than 15 times";
/// What the simulator's other failed jobs say.
pub const JOB_FAILURE_MESSAGE: &str =
    "InvalidBatch : Failed to process query: the query could not be completed";

#[derive(Debug)]
struct Cursor {
    query: SoqlQuery,
    rows: Arc<Vec<u64>>,
    page_size: usize,
}

pub(crate) struct SimState {
    pub(crate) config: SimConfig,
    pub(crate) org: RwLock<Org>,
    /// Live sessions and the API calls each has made.
    tokens: Mutex<HashMap<String, u64>>,
    jobs: Mutex<HashMap<String, Job>>,
    cursors: Mutex<HashMap<String, Cursor>>,
    faults: Mutex<Vec<Fault>>,
    /// The next this-many Bulk jobs of an object end Failed (set while running).
    failing_jobs: Mutex<HashMap<String, u32>>,
    api_calls: AtomicU64,
    next_id: AtomicU64,
    pub(crate) base_url: String,
    /// Result pages kept under the bandwidth model, as a real org keeps a job's results.
    stored_pages: Arc<crate::stored_pages::StoredPages>,
    /// Faults set while running that took effect, in order, until taken
    /// ([`crate::Simulator::take_fired_faults`]).
    fired: Mutex<Vec<FiredFault>>,
}

/// A fault set while running that took effect on a request or a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiredFault {
    /// An injected [`Fault`] answered a request (or cut its body short).
    Request(Fault),
    /// A Bulk job of this object ended Failed, as [`crate::Simulator::fail_jobs`] asked.
    JobFailed { object: String },
}

type Shared = Arc<SimState>;

impl SimState {
    pub(crate) fn new(config: SimConfig, base_url: String) -> Self {
        let mut org = Org::generate(config.seed, config.rows);
        if config.bench_object {
            org.add_object(crate::org::bench_object());
        }
        if config.history_object {
            org.add_object(crate::org::history_object());
        }
        if config.cross_object_formula {
            org.add_cross_object_formula();
        }
        org.hard_deletes = config.hard_deletes;
        // After the objects are added, so the rounds change them too.
        for at in &config.rounds {
            org.mutate(*at);
        }
        Self {
            config,
            org: RwLock::new(org),
            tokens: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            cursors: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            failing_jobs: Mutex::new(HashMap::new()),
            api_calls: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            base_url,
            stored_pages: Default::default(),
            fired: Mutex::new(Vec::new()),
        }
    }

    fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        crate::org::salesforce_id(prefix, n + (self.config.seed % 1000) * 1_000_000)
    }

    pub(crate) fn add_faults(&self, faults: Vec<Fault>) {
        lock(&self.faults).extend(faults);
    }

    pub(crate) fn fail_jobs(&self, object: &str, count: u32) {
        *lock(&self.failing_jobs)
            .entry(object.to_ascii_lowercase())
            .or_default() += count;
    }

    /// Whether a job of `object` finishing now fails: always for configured objects, else while
    /// failures set with [`SimState::fail_jobs`] remain.
    fn job_fails(&self, object: &str) -> bool {
        if self
            .config
            .failing_job_objects
            .iter()
            .any(|o| o.eq_ignore_ascii_case(object))
        {
            return true;
        }
        let mut failing = lock(&self.failing_jobs);
        match failing.get_mut(&object.to_ascii_lowercase()) {
            Some(remaining) if *remaining > 0 => {
                *remaining -= 1;
                lock(&self.fired).push(FiredFault::JobFailed {
                    object: object.to_string(),
                });
                true
            }
            _ => false,
        }
    }

    pub(crate) fn take_fired(&self) -> Vec<FiredFault> {
        std::mem::take(&mut *lock(&self.fired))
    }

    pub(crate) fn expire_sessions(&self) {
        lock(&self.tokens).clear();
    }

    pub(crate) fn api_calls(&self) -> u64 {
        self.api_calls.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_org(state: &SimState) -> std::sync::RwLockReadGuard<'_, Org> {
    state.org.read().unwrap_or_else(|p| p.into_inner())
}

fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{ "message": message, "errorCode": code }])),
    )
        .into_response()
}

pub(crate) fn router(state: Shared) -> Router {
    let data = Router::new()
        .route("/services/data/{v}/sobjects/", get(describe_global))
        .route("/services/data/{v}/sobjects", get(describe_global))
        .route(
            "/services/data/{v}/sobjects/{object}/describe",
            get(describe_object),
        )
        .route(
            "/services/data/{v}/sobjects/{object}/describe/",
            get(describe_object),
        )
        .route("/services/data/{v}/limits/", get(limits))
        .route("/services/data/{v}/limits", get(limits))
        .route("/services/data/{v}/query", get(query))
        .route("/services/data/{v}/query/", get(query))
        .route("/services/data/{v}/queryAll", get(query_all))
        .route("/services/data/{v}/queryAll/", get(query_all))
        .route("/services/data/{v}/query/{cursor}", get(query_more))
        .route("/services/data/{v}/queryAll/{cursor}", get(query_more))
        .route(
            "/services/data/{v}/jobs/query",
            post(create_job).get(list_jobs),
        )
        .route(
            "/services/data/{v}/jobs/query/",
            post(create_job).get(list_jobs),
        )
        .route(
            "/services/data/{v}/jobs/query/{id}",
            get(job_info).patch(update_job).delete(delete_job),
        )
        .route(
            "/services/data/{v}/jobs/query/{id}/results",
            get(job_results),
        )
        .route(
            "/services/data/{v}/jobs/query/{id}/resultPages",
            get(result_pages),
        )
        .layer(middleware::from_fn_with_state(state.clone(), api_gate));
    Router::new()
        .route("/services/oauth2/token", post(token))
        // The generic login host (login.salesforce.com), as opposed to the org's My Domain that
        // the simulator's own address plays: only the token endpoint, and no client credentials.
        .route(
            &format!("{LOGIN_HOST_PATH}/services/oauth2/token"),
            post(login_host_token),
        )
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/Soap/u/{v}", post(soap_login))
        .route("/__sim/faults", post(add_faults))
        .route("/__sim/expire-sessions", post(expire_sessions))
        .route("/__sim/health", get(|| async { "ok" }))
        .merge(data)
        .layer(middleware::from_fn(uri_limit))
        .with_state(state)
}

/// The longest request URI Salesforce's front end accepts.
pub const MAX_URI_BYTES: usize = 16_384;

/// Salesforce refuses a longer request line (a REST query of a wide object with its field list
/// in `?q=`) before it reaches the API: 414, no JSON error body.
async fn uri_limit(request: axum::extract::Request, next: middleware::Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return (
            StatusCode::URI_TOO_LONG,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>414 Request-URI Too Large</body></html>",
        )
            .into_response();
    }
    next.run(request).await
}

/// Every data call: a valid session, a fault if one is set, and the API usage header.
async fn api_gate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(str::to_string);
    let valid = token.is_some_and(|t| {
        let mut tokens = lock(&state.tokens);
        let Some(calls) = tokens.get_mut(&t) else {
            return false;
        };
        *calls += 1;
        if state
            .config
            .session_calls
            .is_some_and(|limit| *calls > limit)
        {
            tokens.remove(&t);
            return false;
        }
        true
    });
    if !state.config.latency.is_zero() {
        tokio::time::sleep(state.config.latency).await;
    }
    if !valid {
        return sf_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        );
    }
    let used = state.api_calls.fetch_add(1, Ordering::Relaxed) + 1;
    let path = request.uri().path().to_string();
    let fault = take_fault(&state, &path);
    let mut response = match fault {
        Some(fault) if fault.drop_mid_body => truncated(next.run(request).await).await,
        Some(fault) => sf_error(
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &fault.error_code,
            &fault.message,
        ),
        None if used > state.config.daily_api_limit => sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ),
        None => next.run(request).await,
    };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "api-usage={used}/{}",
        state.config.daily_api_limit
    )) {
        response.headers_mut().insert("Sforce-Limit-Info", value);
    }
    response
}

/// The response's headers and the first half of its body, then a broken connection.
async fn truncated(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    let stream = futures::stream::iter(vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped by the simulator",
        )),
    ]);
    Response::from_parts(parts, Body::from_stream(stream))
}

async fn versions() -> Json<Value> {
    Json(json!([{ "label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0" }]))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    assertion: String,
}

#[derive(Deserialize)]
struct JwtClaims {
    sub: String,
    /// Seconds since the epoch, as a number or as a string of digits: Salesforce takes both
    /// (simple-salesforce sends `"exp": "1732900000"`).
    exp: Value,
}

impl JwtClaims {
    fn expires_at(&self) -> Option<i64> {
        match &self.exp {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Checks a JWT bearer assertion: RS256 with the connected app's key, `iss` = consumer key,
/// `aud` = a login host, `sub` = the integration user, not expired.
fn valid_assertion(state: &SimState, assertion: &str) -> bool {
    let Ok(key) =
        jsonwebtoken::DecodingKey::from_rsa_pem(state.config.jwt_public_key_pem.as_bytes())
    else {
        return false;
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[&state.config.client_id]);
    // Salesforce accepts only its login hosts as the audience, even when the token is asked of
    // My Domain (or, for a site, the Experience Cloud URL, which the simulator does not serve).
    validation.set_audience(&[
        "https://login.salesforce.com",
        "https://test.salesforce.com",
    ]);
    // The expiry is checked below, in either of its spellings.
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "aud", "sub"]);
    jsonwebtoken::decode::<JwtClaims>(assertion, &key, &validation).is_ok_and(|data| {
        data.claims.sub == state.config.username
            && data
                .claims
                .expires_at()
                .is_some_and(|exp| exp > Utc::now().timestamp())
    })
}

fn new_session(state: &SimState) -> String {
    let token = format!(
        "00D000000000001!{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state.new_id("TOK").as_bytes())
    );
    lock(&state.tokens).insert(token.clone(), 0);
    token
}

/// Where the simulator plays `https://login.salesforce.com`: see [`crate::Simulator::login_host_url`].
pub const LOGIN_HOST_PATH: &str = "/__login-host";

/// The token endpoint of the generic login host: Salesforce serves the client credentials flow
/// only on the org's My Domain.
async fn login_host_token(state: State<Shared>, form: Form<TokenForm>) -> Response {
    if form.grant_type == "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "request not supported on this domain"})),
        )
            .into_response();
    }
    token(state, form).await
}

async fn token(State(state): State<Shared>, Form(form): Form<TokenForm>) -> Response {
    let config = &state.config;
    let client_ok =
        form.client_id == config.client_id && form.client_secret == config.client_secret;
    let ok = match form.grant_type.as_str() {
        "client_credentials" => client_ok,
        "password" => {
            client_ok && form.username == config.username && form.password == config.password
        }
        "refresh_token" => client_ok && form.refresh_token == config.refresh_token,
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => valid_assertion(&state, &form.assertion),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"})),
            )
                .into_response();
        }
    };
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "authentication failure"})),
        )
            .into_response();
    }
    let token = new_session(&state);
    Json(json!({
        "access_token": token,
        "instance_url": state.base_url,
        "id": format!("{}/id/00D000000000001/005000000000001", state.base_url),
        "token_type": "Bearer",
        "issued_at": Utc::now().timestamp_millis().to_string(),
        "signature": "c2ltdWxhdG9y",
        "scope": "api",
    }))
    .into_response()
}

/// The text of the first `username` and `password` elements of a SOAP login envelope.
fn soap_credentials(xml: &str) -> (Option<String>, Option<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut username, mut password) = (None, None);
    let mut current: Option<(bool, String)> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => {
                current = match start.local_name().into_inner() {
                    "username" => Some((true, String::new())),
                    "password" => Some((false, String::new())),
                    _ => None,
                };
            }
            Ok(Event::Text(text)) => {
                if let Some((_, value)) = current.as_mut() {
                    value.push_str(&text.xml10_content());
                }
            }
            Ok(Event::GeneralRef(reference)) => {
                if let Some((_, value)) = current.as_mut() {
                    if let Ok(Some(c)) = reference.resolve_char_ref() {
                        value.push(c);
                    } else if let Some(r) =
                        quick_xml::escape::resolve_predefined_entity(&reference.xml10_content())
                    {
                        value.push_str(r);
                    }
                }
            }
            Ok(Event::End(_)) => match current.take() {
                Some((true, value)) => username = username.or(Some(value)),
                Some((false, value)) => password = password.or(Some(value)),
                None => {}
            },
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    (username, password)
}

/// The first injected fault still armed whose path matches, used up by one.
fn take_fault(state: &SimState, path: &str) -> Option<Fault> {
    let mut faults = lock(&state.faults);
    let found = faults
        .iter_mut()
        .find(|f| f.remaining > 0 && path.contains(&f.path_contains));
    let fault = found.map(|f| {
        f.remaining -= 1;
        f.clone()
    })?;
    lock(&state.fired).push(FiredFault::Request(fault.clone()));
    Some(fault)
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A SOAP login fault as Salesforce sends every one of them, whatever its cause: HTTP 500 with
/// `sf:<CODE>` (INVALID_LOGIN, LOGIN_MUST_USE_SECURITY_TOKEN, API_DISABLED_FOR_ORG,
/// PASSWORD_EXPIRED, ...).
fn soap_fault(status: StatusCode, code: &str, message: &str) -> Response {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    xml(
        status,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#,
            code = escape(code),
            message = escape(message),
        ),
    )
}

async fn soap_login(
    State(state): State<Shared>,
    Path(v): Path<String>,
    uri: axum::http::Uri,
    body: String,
) -> Response {
    if let Some(fault) = take_fault(&state, uri.path()) {
        return soap_fault(
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &fault.error_code,
            &fault.message,
        );
    }
    let (username, password) = soap_credentials(&body);
    if username.as_deref() != Some(state.config.username.as_str())
        || password.as_deref() != Some(state.config.password.as_str())
    {
        return soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    }
    let session = new_session(&state);
    xml(
        StatusCode::OK,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{v}/00D000000000001</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/u/{v}/00D000000000001</serverUrl><sessionId>{session}</sessionId><userId>005000000000001AAA</userId><userInfo><organizationId>00D000000000001EAA</organizationId><sessionSecondsValid>7200</sessionSecondsValid><userName>{user}</userName></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#,
            base = state.base_url,
            user = state.config.username,
        ),
    )
}

async fn add_faults(State(state): State<Shared>, Json(faults): Json<Vec<Fault>>) -> StatusCode {
    state.add_faults(faults);
    StatusCode::NO_CONTENT
}

async fn expire_sessions(State(state): State<Shared>) -> StatusCode {
    state.expire_sessions();
    StatusCode::NO_CONTENT
}

async fn describe_global(State(state): State<Shared>, Path(v): Path<String>) -> Json<Value> {
    let org = read_org(&state);
    let mut sobjects: Vec<Value> = org
        .objects
        .iter()
        .map(|o| {
            json!({
                "name": o.name, "label": o.label, "keyPrefix": o.key_prefix, "custom": o.custom,
                // History objects cannot be replicated with getUpdated() nor created by a user.
                "queryable": true, "retrieveable": true, "replicateable": !o.append_only,
                "createable": !o.append_only,
                "urls": { "describe": format!("/services/data/{v}/sobjects/{}/describe", o.name) },
            })
        })
        .collect();
    sobjects.push(json!({
        "name": "AggregateResult", "label": "Aggregate Result", "keyPrefix": null, "custom": false,
        "queryable": false, "retrieveable": false, "replicateable": false, "createable": false,
    }));
    Json(json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects }))
}

fn soap_type(sf_type: &str) -> &'static str {
    match sf_type {
        "id" | "reference" => "tns:ID",
        "boolean" => "xsd:boolean",
        "int" => "xsd:int",
        "double" | "currency" | "percent" => "xsd:double",
        "date" => "xsd:date",
        "datetime" => "xsd:dateTime",
        "base64" => "xsd:base64Binary",
        "address" => "urn:address",
        "anyType" => "xsd:anyType",
        _ => "xsd:string",
    }
}

async fn describe_object(
    State(state): State<Shared>,
    Path((_v, object)): Path<(String, String)>,
) -> Response {
    let org = read_org(&state);
    let Some((_, def)) = org.object(&object) else {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    };
    let fields: Vec<Value> = def
        .visible_fields()
        .map(|(_, f)| {
            let reference_to: Vec<&str> = match f.generator {
                crate::org::Gen::Ref(prefix) => org
                    .objects
                    .iter()
                    .filter(|o| o.key_prefix == prefix)
                    .map(|o| o.name)
                    .collect(),
                crate::org::Gen::Owner => vec!["User"],
                _ => vec![],
            };
            let picklist: Vec<Value> = match f.generator {
                crate::org::Gen::Picklist(values) => values
                    .iter()
                    .map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": false}))
                    .collect(),
                _ => vec![],
            };
            json!({
                "name": f.name, "label": f.name, "type": f.sf_type, "soapType": soap_type(f.sf_type),
                "length": f.length, "byteLength": f.length * 3, "digits": 0,
                "precision": f.precision, "scale": f.scale, "nillable": f.nillable,
                "calculated": f.calculated,
                "calculatedFormula": f.formula,
                "compoundFieldName": f.compound_field_name, "custom": f.custom,
                "referenceTo": reference_to, "picklistValues": picklist,
                "createable": !f.calculated && f.name != "Id", "updateable": !f.calculated && f.name != "Id",
                "filterable": f.sf_type != "textarea", "sortable": f.sf_type != "textarea",
            })
        })
        .collect();
    Json(json!({
        "name": def.name, "label": def.label, "keyPrefix": def.key_prefix, "custom": def.custom,
        "queryable": true, "retrieveable": true, "replicateable": !def.append_only,
        "createable": !def.append_only, "fields": fields,
    }))
    .into_response()
}

async fn limits(State(state): State<Shared>) -> Json<Value> {
    let used = state.api_calls();
    let max = state.config.daily_api_limit;
    Json(json!({
        "DailyApiRequests": { "Max": max, "Remaining": max.saturating_sub(used) },
        "DailyBulkV2QueryJobs": { "Max": 10000, "Remaining": 10000u64.saturating_sub(lock(&state.jobs).len() as u64) },
    }))
}

/// The rows a query matches, in Id order; deleted rows only with `include_deleted`.
fn matching_rows(org: &Org, query: &SoqlQuery, include_deleted: bool) -> Vec<u64> {
    let object = query.object;
    let def = &org.objects[object];
    let state_only = query.conditions.iter().all(|c| {
        matches!(
            def.fields[c.field].name,
            "SystemModstamp" | "IsDeleted" | "CreatedDate"
        )
    });
    let mut rows = Vec::new();
    for index in 0..org.data[object].count {
        let state = org.row_state(object, index);
        if state.purged || (state.deleted && !include_deleted) {
            continue;
        }
        let ok = if state_only {
            query.conditions.iter().all(|c| {
                let value = match def.fields[c.field].name {
                    "IsDeleted" => state.deleted.to_string(),
                    "CreatedDate" => format_datetime_ms(state.created_ms),
                    _ => format_datetime_ms(state.modstamp_ms),
                };
                soql::matches(def.fields[c.field].sf_type, Some(&value), c.op, &c.value)
            })
        } else {
            let values = org.row_values(object, index);
            query.conditions.iter().all(|c| {
                soql::matches(
                    def.fields[c.field].sf_type,
                    values[c.field].as_deref(),
                    c.op,
                    &c.value,
                )
            })
        };
        if ok {
            rows.push(index);
        }
        if query.limit.is_some_and(|l| rows.len() as u64 >= l) {
            break;
        }
    }
    rows
}

#[derive(Deserialize)]
struct QueryParams {
    q: String,
}

async fn query(
    state: State<Shared>,
    path: Path<String>,
    headers: HeaderMap,
    params: Query<QueryParams>,
) -> Response {
    rest_query(state, path, headers, params, false).await
}

async fn query_all(
    state: State<Shared>,
    path: Path<String>,
    headers: HeaderMap,
    params: Query<QueryParams>,
) -> Response {
    rest_query(state, path, headers, params, true).await
}

fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().strip_prefix("batchSize="))
        })
        .and_then(|n| n.trim().parse::<usize>().ok())
        .map_or(2000, |n| n.clamp(200, 2000))
}

async fn rest_query(
    State(state): State<Shared>,
    Path(v): Path<String>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
    include_deleted: bool,
) -> Response {
    let org = read_org(&state);
    let query = match soql::parse(&org, &params.q) {
        Ok(q) => q,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let rows = Arc::new(matching_rows(&org, &query, include_deleted));
    let cursor = Cursor {
        query,
        rows,
        page_size: batch_size(&headers),
    };
    let id = state.new_id("01g");
    let body = rest_page(&org, &v, &id, &cursor, 0);
    drop(org);
    lock(&state.cursors).insert(id, cursor);
    Json(body).into_response()
}

async fn query_more(
    State(state): State<Shared>,
    Path((v, cursor)): Path<(String, String)>,
) -> Response {
    let Some((id, offset)) = cursor.rsplit_once('-') else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        );
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        );
    };
    let cursors = lock(&state.cursors);
    let Some(cursor) = cursors.get(id) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        );
    };
    let org = read_org(&state);
    Json(rest_page(&org, &v, id, cursor, offset)).into_response()
}

fn rest_page(org: &Org, v: &str, id: &str, cursor: &Cursor, offset: usize) -> Value {
    let end = (offset + cursor.page_size).min(cursor.rows.len());
    let records: Vec<Value> = cursor.rows[offset.min(end)..end]
        .iter()
        .map(|&index| record_json(org, v, &cursor.query, index))
        .collect();
    let done = end >= cursor.rows.len();
    let mut body = json!({ "totalSize": cursor.rows.len(), "done": done, "records": records });
    if !done {
        body["nextRecordsUrl"] = json!(format!("/services/data/{v}/query/{id}-{end}"));
    }
    body
}

/// A record as the REST API shows it: typed JSON values, compound addresses as objects.
fn record_json(org: &Org, v: &str, query: &SoqlQuery, index: u64) -> Value {
    let def = &org.objects[query.object];
    let values = org.row_values(query.object, index);
    let id = values.first().cloned().flatten().unwrap_or_default();
    let mut record = serde_json::Map::new();
    record.insert(
        "attributes".into(),
        json!({ "type": def.name, "url": format!("/services/data/{v}/sobjects/{}/{id}", def.name) }),
    );
    for &position in &query.fields {
        let field = &def.fields[position];
        let raw = values[position].as_deref();
        let value = match (field.sf_type, raw) {
            ("address", _) => address_json(def, &values, field.name),
            (_, None) => Value::Null,
            ("boolean", Some(r)) => json!(r == "true"),
            ("int", Some(r)) => r.parse::<i64>().map_or(Value::Null, |n| json!(n)),
            ("double" | "currency" | "percent", Some(r)) => {
                r.parse::<f64>().map_or(Value::Null, |n| json!(n))
            }
            ("datetime", Some(r)) => json!(r.replace('Z', "+0000")),
            ("base64", Some(_)) => json!(format!(
                "/services/data/{v}/sobjects/{}/{id}/{}",
                def.name, field.name
            )),
            (_, Some(r)) => json!(r),
        };
        record.insert(field.name.to_string(), value);
    }
    Value::Object(record)
}

fn address_json(def: &crate::org::ObjectDef, values: &[Option<String>], compound: &str) -> Value {
    let part = |suffix: &str| -> Value {
        def.fields
            .iter()
            .position(|f| f.compound_field_name == Some(compound) && f.name.ends_with(suffix))
            .and_then(|i| values[i].clone())
            .map_or(Value::Null, |s| {
                if suffix == "Latitude" || suffix == "Longitude" {
                    s.parse::<f64>().map_or(Value::Null, |n| json!(n))
                } else {
                    json!(s)
                }
            })
    };
    let address = json!({
        "street": part("Street"), "city": part("City"), "state": part("State"),
        "postalCode": part("PostalCode"), "country": part("Country"),
        "latitude": part("Latitude"), "longitude": part("Longitude"), "geocodeAccuracy": null,
    });
    if address
        .as_object()
        .is_some_and(|o| o.values().all(Value::is_null))
    {
        Value::Null
    } else {
        address
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateJob {
    operation: String,
    query: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    column_delimiter: Option<String>,
    #[serde(default)]
    line_ending: Option<String>,
}

fn job_json(v: &str, job: &Job, rows: usize) -> Value {
    json!({
        "id": job.id, "operation": job.operation, "object": job.object,
        "createdById": "005000000000001AAA", "createdDate": job.created.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "systemModstamp": job.created.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
        "state": job.state, "concurrencyMode": "Parallel", "contentType": "CSV",
        "apiVersion": v.trim_start_matches('v').parse::<f64>().unwrap_or(62.0),
        "jobType": "V2Query", "lineEnding": "LF", "columnDelimiter": "COMMA",
        "numberRecordsProcessed": if job.state == "JobComplete" { rows + usize::from(job.miscounted) } else { 0 },
        "retries": 0, "totalProcessingTime": 0,
        "errorMessage": job.error_message.filter(|_| job.state == "Failed"),
    })
}

async fn create_job(
    State(state): State<Shared>,
    Path(v): Path<String>,
    Json(request): Json<CreateJob>,
) -> Response {
    if request.operation != "query" && request.operation != "queryAll" {
        return sf_error(StatusCode::BAD_REQUEST, "INVALIDJOB", "Invalid operation");
    }
    if request.content_type.as_deref().is_some_and(|c| c != "CSV")
        || request
            .column_delimiter
            .as_deref()
            .is_some_and(|c| c != "COMMA")
        || request.line_ending.as_deref().is_some_and(|l| l != "LF")
    {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "The simulator supports CSV with COMMA delimiters and LF line endings",
        );
    }
    if request.query.to_ascii_uppercase().contains("FIELDS(") {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "FIELDS() is not supported in Bulk API queries",
        );
    }
    let org = read_org(&state);
    let query = match soql::parse(&org, &request.query) {
        Ok(q) => q,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let def = &org.objects[query.object];
    if state
        .config
        .bulk_unsupported_objects
        .iter()
        .any(|o| o.eq_ignore_ascii_case(def.name))
    {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDENTITY",
            &format!("Entity '{}' is not supported by the Bulk API.", def.name),
        );
    }
    if let Some(field) = query
        .fields
        .iter()
        .map(|&i| &def.fields[i])
        .find(|f| matches!(f.sf_type, "address" | "location"))
    {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!(
                "Selecting compound data not supported in Bulk Query: {}",
                field.name
            ),
        );
    }
    if let Some(field) = query
        .fields
        .iter()
        .map(|&i| &def.fields[i])
        .find(|f| f.sf_type == "base64")
    {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!(
                "Base64 fields are not supported in Bulk Query: {}",
                field.name
            ),
        );
    }
    let rows = Arc::new(matching_rows(&org, &query, request.operation == "queryAll"));
    let times_out = state
        .config
        .query_timeout_rows
        .is_some_and(|limit| rows.len() as u64 > limit);
    let object = def.name.to_string();
    drop(org);
    let job = Job {
        id: state.new_id("750"),
        object,
        operation: request.operation,
        query,
        rows: rows.clone(),
        state: "UploadComplete",
        status_checks: 0,
        created: Utc::now(),
        times_out,
        error_message: None,
        miscounted: state.config.miscounted_jobs,
    };
    let body = job_json(&v, &job, rows.len());
    lock(&state.jobs).insert(job.id.clone(), job);
    Json(body).into_response()
}

async fn list_jobs(State(state): State<Shared>, Path(v): Path<String>) -> Json<Value> {
    let jobs = lock(&state.jobs);
    let records: Vec<Value> = jobs
        .values()
        .map(|j| job_json(&v, j, j.rows.len()))
        .collect();
    Json(json!({ "done": true, "records": records, "nextRecordsUrl": null }))
}

fn job_not_found() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

async fn job_info(State(state): State<Shared>, Path((v, id)): Path<(String, String)>) -> Response {
    let mut jobs = lock(&state.jobs);
    let Some(job) = jobs.get_mut(&id) else {
        return job_not_found();
    };
    if matches!(job.state, "UploadComplete" | "InProgress") {
        job.status_checks += 1;
        job.state = if job.status_checks <= state.config.bulk_polls_to_complete {
            "InProgress"
        } else if job.times_out {
            job.error_message = Some(JOB_TIMEOUT_MESSAGE);
            "Failed"
        } else if state.job_fails(&job.object) {
            job.error_message = Some(JOB_FAILURE_MESSAGE);
            "Failed"
        } else {
            "JobComplete"
        };
    }
    let rows = job.rows.len();
    Json(job_json(&v, job, rows)).into_response()
}

#[derive(Deserialize)]
struct UpdateJob {
    state: String,
}

async fn update_job(
    State(state): State<Shared>,
    Path((v, id)): Path<(String, String)>,
    Json(update): Json<UpdateJob>,
) -> Response {
    let mut jobs = lock(&state.jobs);
    let Some(job) = jobs.get_mut(&id) else {
        return job_not_found();
    };
    if update.state != "Aborted" {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            "Only Aborted is allowed",
        );
    }
    if !matches!(job.state, "UploadComplete" | "InProgress") {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            &format!("Cannot abort a job in state {}", job.state),
        );
    }
    job.state = "Aborted";
    let rows = job.rows.len();
    Json(job_json(&v, job, rows)).into_response()
}

async fn delete_job(
    State(state): State<Shared>,
    Path((_v, id)): Path<(String, String)>,
) -> Response {
    let mut jobs = lock(&state.jobs);
    match jobs.get(&id) {
        None => job_not_found(),
        // What Salesforce answers for a job still running: a generic API_ERROR, not
        // INVALIDJOBSTATE, so clients cannot tell it from other 400s by its code.
        Some(job) if !matches!(job.state, "JobComplete" | "Aborted" | "Failed") => sf_error(
            StatusCode::BAD_REQUEST,
            "API_ERROR",
            "Deleting a job that is not in a final state is not supported",
        ),
        Some(_) => {
            jobs.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageParams {
    #[serde(default)]
    locator: Option<String>,
    #[serde(default)]
    max_records: Option<u64>,
}

const DEFAULT_MAX_RECORDS: u64 = 50_000;

fn encode_locator(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(offset.to_string())
}

fn decode_locator(locator: Option<&str>) -> Option<usize> {
    match locator {
        None | Some("") => Some(0),
        Some(l) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(l)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok()),
    }
}

/// Takes a finished job's rows and query, or the error Salesforce answers with.
fn finished_job(state: &SimState, id: &str) -> Result<(Arc<Vec<u64>>, SoqlQuery), Box<Response>> {
    let jobs = lock(&state.jobs);
    let Some(job) = jobs.get(id) else {
        return Err(Box::new(job_not_found()));
    };
    if job.state != "JobComplete" {
        return Err(Box::new(sf_error(
            StatusCode::PRECONDITION_FAILED,
            "JOB_NOT_COMPLETE",
            "Job is not complete",
        )));
    }
    Ok((job.rows.clone(), job.query.clone()))
}

async fn result_pages(
    State(state): State<Shared>,
    Path((v, id)): Path<(String, String)>,
    Query(params): Query<PageParams>,
) -> Response {
    if state.config.without_result_pages {
        return sf_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    }
    let (rows, _) = match finished_job(&state, &id) {
        Ok(job) => job,
        Err(response) => return *response,
    };
    let Some(start) = decode_locator(params.locator.as_deref()) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_LOCATOR",
            "invalid locator",
        );
    };
    // Salesforce decides how many records a page of resultPages holds, whatever maxRecords says.
    let max = state.config.result_page_rows.max(1) as usize;
    const LINKS_PER_RESPONSE: usize = 5;
    let mut links = Vec::new();
    let mut offset = start;
    // An empty result still has one (header-only) page.
    while links.len() < LINKS_PER_RESPONSE
        && (offset < rows.len() || (offset == 0 && links.is_empty()))
    {
        let locator = if offset == 0 {
            String::new()
        } else {
            format!("locator={}&", encode_locator(offset))
        };
        links.push(json!({
            "resultUrl": format!("/services/data/{v}/jobs/query/{id}/results?{locator}maxRecords={max}")
        }));
        offset += max;
    }
    let done = offset >= rows.len();
    Json(json!({
        "resultPages": links,
        "done": done,
        "nextRecordsUrl": if done { Value::Null } else {
            json!(format!("/services/data/{v}/jobs/query/{id}/resultPages?locator={}&maxRecords={max}", encode_locator(offset)))
        },
    }))
    .into_response()
}

async fn job_results(
    State(state): State<Shared>,
    Path((_v, id)): Path<(String, String)>,
    Query(params): Query<PageParams>,
    headers: HeaderMap,
) -> Response {
    let (rows, query) = match finished_job(&state, &id) {
        Ok(job) => job,
        Err(response) => return *response,
    };
    let Some(start) = decode_locator(params.locator.as_deref()) else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_LOCATOR",
            "invalid locator",
        );
    };
    let mut max = params.max_records.unwrap_or(DEFAULT_MAX_RECORDS).max(1) as usize;
    if state.config.short_pages && state.config.without_result_pages {
        max = (max * 2 / 3).max(1);
    }
    let start = start.min(rows.len());
    let end = (start + max).min(rows.len());
    let next = if end < rows.len() {
        encode_locator(end)
    } else {
        "null".to_string()
    };
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let bandwidth = state.config.bandwidth;
    let mut response = if bandwidth.is_unlimited() {
        Response::new(Body::from_stream(csv_page_stream(
            state.clone(),
            query,
            rows,
            start,
            end,
            gzip,
        )))
    } else {
        // The same page of the same query on an unchanged org is the same file.
        let key = format!(
            "{query:?}|{}|{}|{start}|{end}|{gzip}",
            read_org(&state).rounds.len(),
            rows.len()
        );
        match state.stored_pages.get(&key) {
            Some(stored) => Response::new(Body::from_stream(bandwidth.pace(stored))),
            None => {
                let body = csv_page_stream(state.clone(), query, rows, start, end, gzip);
                let kept = state.stored_pages.clone().keep(key, body);
                Response::new(Body::from_stream(bandwidth.pace(kept)))
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Ok(value) = HeaderValue::from_str(&(end - start).to_string())
        && !state.config.without_record_counts
    {
        headers.insert("Sforce-NumberOfRecords", value);
    }
    if let Ok(value) = HeaderValue::from_str(&next) {
        headers.insert("Sforce-Locator", value);
    }
    response
}

/// Rows rendered in chunks as they are sent, so a page of any size costs a chunk of memory.
/// A number as Bulk API CSV writes it: from ten million up, Salesforce prints doubles, currency
/// and percent values the way Java does, in scientific notation (`12345678.5` as
/// `1.23456785E7`, `100000000` as `1.0E8`).
fn bulk_csv_number<'a>(sf_type: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
    let numeric = matches!(sf_type, "double" | "currency" | "percent");
    match value.parse::<f64>() {
        Ok(number) if numeric && number.abs() >= 1.0e7 && number.is_finite() => {
            let text = format!("{number:E}");
            match text.split_once('E') {
                Some((mantissa, exponent)) if !mantissa.contains('.') => {
                    format!("{mantissa}.0E{exponent}").into()
                }
                _ => text.into(),
            }
        }
        _ => value.into(),
    }
}

fn csv_page_stream(
    state: Shared,
    query: SoqlQuery,
    rows: Arc<Vec<u64>>,
    start: usize,
    end: usize,
    gzip: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    const CHUNK_ROWS: usize = 500;
    struct Cursor {
        next: usize,
        header_sent: bool,
        encoder: Option<GzEncoder<Vec<u8>>>,
        finished: bool,
    }
    let cursor = Cursor {
        next: start,
        header_sent: false,
        encoder: gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
        finished: false,
    };
    futures::stream::unfold(cursor, move |mut cursor| {
        let state = state.clone();
        let query = query.clone();
        let rows = rows.clone();
        async move {
            if cursor.finished {
                return None;
            }
            let mut writer = csv::WriterBuilder::new()
                .quote_style(csv::QuoteStyle::Always)
                .from_writer(Vec::new());
            {
                let org = read_org(&state);
                let def = &org.objects[query.object];
                // Columns as selected, or (a fault mode) in reverse: a file consistent in itself
                // whose header is not the query's field list.
                let fields: Vec<usize> = if state.config.reordered_result_columns {
                    query.fields.iter().rev().copied().collect()
                } else {
                    query.fields.clone()
                };
                if !cursor.header_sent {
                    let header: Vec<&str> = fields.iter().map(|&i| def.fields[i].name).collect();
                    if let Err(e) = writer.write_record(&header) {
                        return Some((Err(std::io::Error::other(e)), cursor));
                    }
                    cursor.header_sent = true;
                }
                let chunk_end = (cursor.next + CHUNK_ROWS).min(end);
                for &index in &rows[cursor.next..chunk_end] {
                    let values = org.row_values(query.object, index);
                    let record = fields.iter().map(|&i| {
                        let value = values[i].as_deref().unwrap_or("");
                        bulk_csv_number(def.fields[i].sf_type, value).into_owned()
                    });
                    if let Err(e) = writer.write_record(record) {
                        return Some((Err(std::io::Error::other(e)), cursor));
                    }
                }
                cursor.next = chunk_end;
            }
            let plain = match writer.into_inner() {
                Ok(bytes) => bytes,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), cursor)),
            };
            let last = cursor.next >= end;
            let out = match cursor.encoder.as_mut() {
                None => plain,
                Some(encoder) => {
                    if let Err(e) = encoder.write_all(&plain) {
                        return Some((Err(e), cursor));
                    }
                    if last {
                        match cursor.encoder.take().map(GzEncoder::finish) {
                            Some(Ok(rest)) => rest,
                            Some(Err(e)) => return Some((Err(e), cursor)),
                            None => Vec::new(),
                        }
                    } else {
                        std::mem::take(encoder.get_mut())
                    }
                }
            };
            cursor.finished = last;
            Some((Ok(Bytes::from(out)), cursor))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{SimConfig, SimState, bulk_csv_number, valid_assertion};

    #[test]
    fn jwt_assertions_expire_whether_exp_is_a_number_or_a_string() {
        let config = SimConfig::default();
        let state = SimState::new(config.clone(), "http://127.0.0.1:1".into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(crate::DEMO_PRIVATE_KEY_PEM.as_bytes())
            .unwrap();
        let sign = |exp: serde_json::Value| {
            let claims = serde_json::json!({
                "iss": config.client_id, "sub": config.username,
                "aud": "https://login.salesforce.com", "exp": exp,
            });
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                &claims,
                &key,
            )
            .unwrap()
        };
        let now = chrono::Utc::now().timestamp();
        assert!(valid_assertion(&state, &sign((now + 180).into())));
        assert!(valid_assertion(
            &state,
            &sign((now + 180).to_string().into())
        ));
        assert!(!valid_assertion(&state, &sign((now - 10).into())));
        assert!(!valid_assertion(
            &state,
            &sign((now - 10).to_string().into())
        ));
        assert!(!valid_assertion(&state, &sign("soon".into())));
    }

    #[test]
    fn large_numbers_are_written_as_java_writes_them() {
        assert_eq!(bulk_csv_number("currency", "12345678.50"), "1.23456785E7");
        assert_eq!(bulk_csv_number("double", "100000000"), "1.0E8");
        assert_eq!(bulk_csv_number("currency", "9999999.99"), "9999999.99");
        assert_eq!(bulk_csv_number("int", "12345678"), "12345678");
        assert_eq!(bulk_csv_number("string", "12345678"), "12345678");
        assert_eq!(bulk_csv_number("currency", ""), "");
    }
}
