//! REST query and queryAll, with their cursors and pages of JSON records.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::org::{Org, format_datetime_ms};
use crate::soql;
use crate::soql::Query as SoqlQuery;

use super::{Cursor, Shared, lock, read_org, sf_error};

/// The rows a query matches, in Id order; deleted rows only with `include_deleted`.
pub(super) fn matching_rows(org: &Org, query: &SoqlQuery, include_deleted: bool) -> Vec<u64> {
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
pub(super) struct QueryParams {
    q: String,
}

pub(super) async fn query(
    state: State<Shared>,
    path: Path<String>,
    headers: HeaderMap,
    params: Query<QueryParams>,
) -> Response {
    rest_query(state, path, headers, params, false).await
}

pub(super) async fn query_all(
    state: State<Shared>,
    path: Path<String>,
    headers: HeaderMap,
    params: Query<QueryParams>,
) -> Response {
    rest_query(state, path, headers, params, true).await
}

pub(super) fn batch_size(headers: &HeaderMap) -> usize {
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

pub(super) async fn rest_query(
    State(state): State<Shared>,
    Path(v): Path<String>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
    include_deleted: bool,
) -> Response {
    page_latency(&state).await;
    match first_page(&state, &v, &params.q, include_deleted, batch_size(&headers)) {
        Ok(body) => Json(body).into_response(),
        Err((status, code, message)) => sf_error(status, code, &message),
    }
}

/// A REST query page takes the org this long to assemble ([`crate::SimConfig::query_page_latency`]).
async fn page_latency(state: &Shared) {
    let latency = state.config.query_page_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// A query's first page (and its cursor, kept for the pages after it), or the error Salesforce
/// answers for it.
pub(super) fn first_page(
    state: &Shared,
    v: &str,
    q: &str,
    include_deleted: bool,
    page_size: usize,
) -> Result<Value, (StatusCode, &'static str, String)> {
    let org = read_org(state);
    let query = soql::parse(&org, q).map_err(|e| (StatusCode::BAD_REQUEST, e.code, e.message))?;
    let rows = Arc::new(matching_rows(&org, &query, include_deleted));
    let cursor = Cursor {
        query,
        rows,
        page_size,
    };
    let id = state.new_id("01g");
    let body = rest_page(&org, v, &id, &cursor, 0);
    drop(org);
    // A query whose first page holds every row leaves no cursor open.
    if body["done"] != json!(true) {
        lock(&state.cursors).insert(id, cursor);
    }
    Ok(body)
}

pub(super) async fn query_more(
    State(state): State<Shared>,
    Path((v, cursor)): Path<(String, String)>,
) -> Response {
    page_latency(&state).await;
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

pub(super) fn rest_page(org: &Org, v: &str, id: &str, cursor: &Cursor, offset: usize) -> Value {
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
pub(super) fn record_json(org: &Org, v: &str, query: &SoqlQuery, index: u64) -> Value {
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

pub(super) fn address_json(
    def: &crate::org::ObjectDef,
    values: &[Option<String>],
    compound: &str,
) -> Value {
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
