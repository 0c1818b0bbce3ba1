//! The SOAP partner login some clients still use.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::auth::new_session;
use super::gate::take_fault;

/// The text of the first `username` and `password` elements of a SOAP login envelope.
pub(super) fn soap_credentials(xml: &str) -> (Option<String>, Option<String>) {
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

pub(super) fn xml(status: StatusCode, body: String) -> Response {
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
pub(super) fn soap_fault(status: StatusCode, code: &str, message: &str) -> Response {
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

pub(super) async fn soap_login(
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
    // Salesforce's own words (quoted in its clients' issues) for the two refusals.
    if v.parse::<f64>().is_ok_and(|v| v >= 65.0) {
        return soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INVALID_OPERATION",
            &format!(
                "The SOAP Login operation is not available in the API version specified ({v}). \
                 Refer to the documentation for supported versions."
            ),
        );
    }
    if !state.config.soap_login {
        return soap_fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INVALID_OPERATION",
            "SOAP API login() is disabled by default in this org. Contact the org administrator \
             to enable SOAP API login().",
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
