//! Salesforce's answers and failures as [`SalesforceError`]s.

use reqwest::Response;

use crate::ports::SalesforceError;

/// Salesforce's REST error body: `[{"message": "...", "errorCode": "...", "fields": [...]}]`.
#[derive(Debug, Clone, serde::Deserialize)]
struct ApiErrorBody {
    #[serde(default)]
    message: String,
    #[serde(rename = "errorCode", default)]
    error_code: String,
}

/// A request that got no answer.
pub(crate) fn transport_error(error: reqwest::Error) -> SalesforceError {
    // reqwest's messages can include the URL; ours never carry credentials in URLs.
    SalesforceError::Transport(error.without_url().to_string())
}

/// A non-success answer, with Salesforce's error code when its body has one.
pub(crate) async fn api_error(response: Response) -> SalesforceError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    error_from_body(status, &text)
}

/// A non-success answer's status and body (a response's, or a composite subrequest's).
pub(crate) fn error_from_body(status: u16, text: &str) -> SalesforceError {
    let parsed: Option<ApiErrorBody> = serde_json::from_str::<Vec<ApiErrorBody>>(text)
        .ok()
        .and_then(|v| v.into_iter().next())
        .or_else(|| serde_json::from_str::<ApiErrorBody>(text).ok());
    match parsed {
        Some(body) => SalesforceError::Api {
            status,
            code: body.error_code,
            message: body.message,
        },
        None => SalesforceError::Api {
            status,
            code: String::new(),
            message: text.chars().take(300).collect(),
        },
    }
}
