//! The HTTP side: the endpoints sfpipe (and other Salesforce clients) call, in Salesforce's shapes.
//! This module holds the org's state, the configuration and the router; each kind of endpoint
//! has a module of its own.

mod auth;
mod bulk;
mod composite;
mod describe;
mod gate;
mod rest;
mod soap;

use auth::*;
use bulk::*;
use composite::*;
use describe::*;
use gate::*;
use rest::*;
use soap::*;

pub(crate) use auth::LOGIN_HOST_PATH;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::org::Org;
use crate::soql::Query as SoqlQuery;

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
    /// Bulk API 2.0 query jobs the org may create in 24 hours (`DailyBulkV2QueryJobs`); past it,
    /// creating a job is refused.
    pub daily_bulk_query_jobs: u64,
    /// A session stops working after this many API calls (Salesforce expires idle sessions;
    /// this makes expiry happen mid-run, deterministically).
    pub session_calls: Option<u64>,
    /// Added to every API call.
    pub latency: std::time::Duration,
    /// Added to every REST query page (first page and `nextRecordsUrl`), on top of `latency`:
    /// a real org takes 0.3 to 2 s to assemble a page of 2,000 wide rows.
    pub query_page_latency: std::time::Duration,
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
    /// a huge object does: the job is created, then ends Failed (`JOB_TIMEOUT_MESSAGE`) when
    /// it would have completed.
    pub query_timeout_rows: Option<u64>,
    /// Mutation rounds to replay at start (their timestamps), so an org survives restarts.
    pub rounds: Vec<DateTime<Utc>>,
    /// Also serve `Bench__c`, a 50-field object, for `sfpipe bench`.
    pub bench_object: bool,
    /// Also serve `AccountHistory`, a field history object with no SystemModstamp.
    pub history_object: bool,
    /// Also serve this many small custom objects, `Extra000__c` on ([`crate::org::numbered_object`]),
    /// for orgs of hundreds of objects.
    pub extra_objects: u32,
    /// Contact gets `Account_Rating__c`, a cross-object formula that changes without a new
    /// SystemModstamp ([`Org::add_cross_object_formula`]).
    pub cross_object_formula: bool,
    /// Mutation rounds also hard-delete rows ([`Org::purge`]): they vanish from queryAll too.
    pub hard_deletes: bool,
    /// SOAP API `login()` is enabled for the org. Off by default, as in orgs created from
    /// Winter '26 on; an admin enables it in older ones. API 65.0 and later refuse it anyway.
    pub soap_login: bool,
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
            daily_bulk_query_jobs: 10_000,
            session_calls: None,
            latency: std::time::Duration::ZERO,
            query_page_latency: std::time::Duration::ZERO,
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
            extra_objects: 0,
            cross_object_formula: false,
            hard_deletes: false,
            soap_login: false,
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
    /// Salesforce's error code. Empty: the answer of the edge in front of the org (406, 420,
    /// 429, ... as routing and rate errors), a plain-text body with no Salesforce error in it.
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
    /// Bulk query jobs created, counted against [`SimConfig::daily_bulk_query_jobs`].
    bulk_jobs_created: AtomicU64,
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
        for n in 0..config.extra_objects {
            org.add_object(crate::org::numbered_object(n));
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
            bulk_jobs_created: AtomicU64::new(0),
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

    pub(crate) fn bulk_jobs_created(&self) -> u64 {
        self.bulk_jobs_created.load(Ordering::Relaxed)
    }

    /// Counts a new Bulk query job against the daily limit; `false` once the limit is reached.
    fn take_bulk_job(&self) -> bool {
        let limit = self.config.daily_bulk_query_jobs;
        self.bulk_jobs_created
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
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
        .route("/services/data/{v}/composite", post(composite))
        .route("/services/data/{v}/composite/", post(composite))
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
/// in `?q=`) before it reaches the API: 414, no JSON error body. The same front end refuses a
/// request whose URI and headers together pass the same size: 431.
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
    // Each header line as sent: `Name: value` and its line break.
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if length + headers > MAX_URI_BYTES {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>431 Request Header Fields Too Large</body></html>",
        )
            .into_response();
    }
    next.run(request).await
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
