//! Bulk API 2.0 query jobs: create, check, abort, delete, and their CSV result pages.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;

use crate::soql;
use crate::soql::Query as SoqlQuery;

use super::rest::matching_rows;
use super::{
    JOB_FAILURE_MESSAGE, JOB_TIMEOUT_MESSAGE, Job, Shared, SimState, lock, read_org, sf_error,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateJob {
    operation: String,
    query: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    column_delimiter: Option<String>,
    #[serde(default)]
    line_ending: Option<String>,
}

pub(super) fn job_json(v: &str, job: &Job, rows: usize) -> Value {
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

pub(super) async fn create_job(
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
    // Word for word as Salesforce answers (clients compare the message for equality): no field
    // name in it, code API_ERROR (Bulk 2.0; Bulk 1.0 said FUNCTIONALITY_NOT_ENABLED).
    let selects = |types: &[&str]| {
        query
            .fields
            .iter()
            .any(|&i| types.contains(&def.fields[i].sf_type))
    };
    if selects(&["address", "location"]) {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "API_ERROR",
            "Selecting compound data not supported in Bulk Query",
        );
    }
    // Salesforce's wording for a base64 field is neither documented nor quoted by any client we
    // read: this one is ours, with the same code.
    if selects(&["base64"]) {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "API_ERROR",
            "Base64 fields are not supported in Bulk Query",
        );
    }
    if !state.take_bulk_job() {
        return sf_error(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            &format!(
                "Max bulk v2 query jobs ({}) per 24 hrs has been reached",
                state.config.daily_bulk_query_jobs
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

pub(super) async fn list_jobs(State(state): State<Shared>, Path(v): Path<String>) -> Json<Value> {
    let jobs = lock(&state.jobs);
    let records: Vec<Value> = jobs
        .values()
        .map(|j| job_json(&v, j, j.rows.len()))
        .collect();
    Json(json!({ "done": true, "records": records, "nextRecordsUrl": null }))
}

pub(super) fn job_not_found() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

pub(super) async fn job_info(
    State(state): State<Shared>,
    Path((v, id)): Path<(String, String)>,
) -> Response {
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
pub(super) struct UpdateJob {
    state: String,
}

pub(super) async fn update_job(
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

pub(super) async fn delete_job(
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
pub(super) struct PageParams {
    #[serde(default)]
    locator: Option<String>,
    #[serde(default)]
    max_records: Option<u64>,
}

pub(super) const DEFAULT_MAX_RECORDS: u64 = 50_000;

pub(super) fn encode_locator(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(offset.to_string())
}

pub(super) fn decode_locator(locator: Option<&str>) -> Option<usize> {
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
pub(super) fn finished_job(
    state: &SimState,
    id: &str,
) -> Result<(Arc<Vec<u64>>, SoqlQuery), Box<Response>> {
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

pub(super) async fn result_pages(
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
        // As the documentation shows them: the results resource and a locator, nothing else.
        let locator = if offset == 0 {
            String::new()
        } else {
            format!("?locator={}", encode_locator(offset))
        };
        links.push(json!({
            "resultUrl": format!("/services/data/{v}/jobs/query/{id}/results{locator}")
        }));
        offset += max;
    }
    let done = offset >= rows.len();
    Json(json!({
        "resultPages": links,
        "done": done,
        "nextRecordsUrl": if done { Value::Null } else {
            json!(format!("/services/data/{v}/jobs/query/{id}/resultPages?locator={}", encode_locator(offset)))
        },
    }))
    .into_response()
}

pub(super) async fn job_results(
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
    // A link of resultPages names no maxRecords: its page holds what Salesforce chose.
    let mut max = params
        .max_records
        .unwrap_or(state.config.result_page_rows)
        .max(1) as usize;
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
pub(super) fn bulk_csv_number<'a>(sf_type: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
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

pub(super) fn csv_page_stream(
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
