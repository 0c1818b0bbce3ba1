//! The Composite resource (`POST /services/data/vXX.X/composite`): up to 25 subrequests, at most
//! 5 of them queries, in one request that counts as one API call. The simulator serves query and
//! queryAll subrequests, the ones a client that probes many objects at once sends.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::rest::first_page;
use super::{Shared, sf_error};

/// Subrequests one composite request may hold.
pub const MAX_SUBREQUESTS: usize = 25;
/// Query subrequests one composite request may hold.
pub const MAX_QUERY_SUBREQUESTS: usize = 5;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CompositeRequest {
    composite_request: Vec<Subrequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subrequest {
    method: String,
    url: String,
    reference_id: String,
}

pub(super) async fn composite(
    State(state): State<Shared>,
    Path(v): Path<String>,
    Json(request): Json<CompositeRequest>,
) -> Response {
    let subrequests = &request.composite_request;
    if subrequests.is_empty() || subrequests.len() > MAX_SUBREQUESTS {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            &format!("A composite request holds 1 to {MAX_SUBREQUESTS} subrequests"),
        );
    }
    let queries = subrequests
        .iter()
        .filter(|s| query_of(&s.url).is_some())
        .count();
    if queries > MAX_QUERY_SUBREQUESTS {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            &format!("A composite request holds at most {MAX_QUERY_SUBREQUESTS} query subrequests"),
        );
    }
    let mut responses = Vec::with_capacity(subrequests.len());
    for sub in subrequests {
        let (status, body) = match (sub.method.as_str(), query_of(&sub.url)) {
            ("GET", Some((sub_version, q, include_deleted))) if sub_version == v => {
                match first_page(&state, &v, &q, include_deleted, 2000) {
                    Ok(body) => (200, body),
                    Err((status, code, message)) => (
                        status.as_u16(),
                        json!([{ "message": message, "errorCode": code }]),
                    ),
                }
            }
            ("GET", Some(_)) => (
                400,
                json!([{ "message": "A subrequest's API version must be the composite request's", "errorCode": "INVALID_VERSION" }]),
            ),
            _ => (
                400,
                json!([{ "message": "The simulator serves query and queryAll subrequests only", "errorCode": "NOT_SUPPORTED" }]),
            ),
        };
        responses.push(json!({
            "body": body,
            "httpHeaders": {},
            "httpStatusCode": status,
            "referenceId": sub.reference_id,
        }));
    }
    Json(json!({ "compositeResponse": responses })).into_response()
}

/// `(version, soql, include_deleted)` of a `/services/data/vXX.X/query/?q=` or `queryAll` URL.
fn query_of(url: &str) -> Option<(String, String, bool)> {
    let rest = url.strip_prefix("/services/data/")?;
    let (version, rest) = rest.split_once('/')?;
    let (resource, query) = rest.split_once('?')?;
    let include_deleted = match resource.trim_end_matches('/') {
        "query" => false,
        "queryAll" => true,
        _ => return None,
    };
    let q = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())?;
    Some((version.to_string(), q, include_deleted))
}

#[cfg(test)]
mod tests {
    use super::query_of;

    #[test]
    fn query_urls_are_read_with_their_version_and_kind() {
        assert_eq!(
            query_of("/services/data/v62.0/queryAll/?q=SELECT+Id+FROM+Account"),
            Some(("v62.0".into(), "SELECT Id FROM Account".into(), true))
        );
        assert_eq!(
            query_of("/services/data/v62.0/query?q=SELECT%20Id%20FROM%20Case"),
            Some(("v62.0".into(), "SELECT Id FROM Case".into(), false))
        );
        assert_eq!(query_of("/services/data/v62.0/sobjects/Account"), None);
    }
}
