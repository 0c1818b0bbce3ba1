//! OAuth: the token endpoint (client credentials, JWT bearer, refresh token, password) and the
//! generic login host.

use axum::Json;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Shared, SimState, lock};

pub(super) async fn versions() -> Json<Value> {
    Json(json!([{ "label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0" }]))
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
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
pub(super) struct JwtClaims {
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
pub(super) fn valid_assertion(state: &SimState, assertion: &str) -> bool {
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

pub(super) fn new_session(state: &SimState) -> String {
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
pub(super) async fn login_host_token(state: State<Shared>, form: Form<TokenForm>) -> Response {
    if form.grant_type == "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "request not supported on this domain"})),
        )
            .into_response();
    }
    token(state, form).await
}

pub(super) async fn token(State(state): State<Shared>, Form(form): Form<TokenForm>) -> Response {
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
