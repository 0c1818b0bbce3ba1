//! The gate every data call passes: a valid session, an injected fault if one is armed, the
//! API usage header; and the endpoints that arm faults and expire sessions.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;

use super::{Fault, FiredFault, Shared, SimState, lock, sf_error};

/// Every data call: a valid session, a fault if one is set, and the API usage header.
pub(super) async fn api_gate(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
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
        Some(fault) if fault.error_code.is_empty() => edge_error(fault.status),
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

/// What the edge in front of an org answers on its own (routing, rate): a status and a line of
/// text, not Salesforce's JSON error list.
fn edge_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        format!("{status}"),
    )
        .into_response()
}

/// The response's headers and the first half of its body, then a broken connection.
pub(super) async fn truncated(response: Response) -> Response {
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

/// The first injected fault still armed whose path matches, used up by one.
pub(super) fn take_fault(state: &SimState, path: &str) -> Option<Fault> {
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

pub(super) async fn add_faults(
    State(state): State<Shared>,
    Json(faults): Json<Vec<Fault>>,
) -> StatusCode {
    state.add_faults(faults);
    StatusCode::NO_CONTENT
}

pub(super) async fn expire_sessions(State(state): State<Shared>) -> StatusCode {
    state.expire_sessions();
    StatusCode::NO_CONTENT
}
