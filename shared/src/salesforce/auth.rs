//! Logging in: the OAuth 2.0 flows sfpipe supports, and the session they give.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::secret;
use super::errors::SalesforceError;

/// A logged-in session: the bearer token and the instance it is valid for.
pub struct Session {
    pub access_token: SecretString,
    pub instance_url: String,
}

/// How sfpipe logs in. Built from the Salesforce secret (JSON); `Debug` never shows a secret.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// OAuth 2.0 client credentials (a connected app with a run-as user; My Domain host).
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
    /// OAuth 2.0 username-password (being deprecated by Salesforce; the security token is
    /// appended to the password).
    Password {
        client_id: String,
        client_secret: SecretString,
        username: String,
        password: SecretString,
    },
}

#[derive(Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case")]
enum CredentialsJson {
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    Password {
        client_id: String,
        client_secret: String,
        username: String,
        password: String,
        #[serde(default)]
        security_token: String,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl Credentials {
    /// Parses the Salesforce secret: `{"flow": "client_credentials", "client_id": ..., ...}`.
    pub fn from_secret_json(json: &SecretString) -> Result<Self, SalesforceError> {
        let parsed: CredentialsJson = serde_json::from_str(json.expose_secret()).map_err(|e| {
            // serde's message can quote the input; keep only its position and category.
            SalesforceError::Config(format!(
                "the Salesforce secret is not valid credentials JSON (line {}, column {}, {:?}): \
                 expected {{\"flow\": \"client_credentials\"|\"password\", \"client_id\": ..., ...}}",
                e.line(),
                e.column(),
                e.classify()
            ))
        })?;
        Ok(match parsed {
            CredentialsJson::ClientCredentials {
                client_id,
                client_secret,
            } => Credentials::ClientCredentials {
                client_id,
                client_secret: secret(client_secret),
            },
            CredentialsJson::Password {
                client_id,
                client_secret,
                username,
                password,
                security_token,
            } => Credentials::Password {
                client_id,
                client_secret: secret(client_secret),
                username,
                password: secret(format!("{password}{security_token}")),
            },
        })
    }

    pub fn flow_name(&self) -> &'static str {
        match self {
            Credentials::ClientCredentials { .. } => "client_credentials",
            Credentials::Password { .. } => "password",
        }
    }

    pub(crate) async fn login(
        &self,
        http: &reqwest::Client,
        login_url: &str,
    ) -> Result<Session, SalesforceError> {
        let form: Vec<(&str, &str)> = match self {
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose_secret()),
            ],
            Credentials::Password {
                client_id,
                client_secret,
                username,
                password,
            } => vec![
                ("grant_type", "password"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose_secret()),
                ("username", username),
                ("password", password.expose_secret()),
            ],
        };
        let url = format!("{}/services/oauth2/token", login_url.trim_end_matches('/'));
        let response = http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(SalesforceError::transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(SalesforceError::transport)?;
        if !status.is_success() {
            let error: TokenError = serde_json::from_slice(&body).unwrap_or(TokenError {
                error: format!("HTTP {}", status.as_u16()),
                error_description: String::new(),
            });
            if status.is_server_error() {
                return Err(SalesforceError::Api {
                    status: status.as_u16(),
                    code: error.error,
                    message: error.error_description,
                });
            }
            return Err(SalesforceError::Auth {
                code: error.error,
                message: error.error_description,
            });
        }
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| SalesforceError::Decode {
                what: "token response",
                detail: e.to_string(),
            })?;
        Ok(Session {
            access_token: secret(token.access_token),
            instance_url: token.instance_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let json = secret(
            r#"{"flow":"password","client_id":"cid","client_secret":"S3cr3t-client","username":"u@x","password":"hunter2","security_token":"TOK"}"#,
        );
        let credentials = Credentials::from_secret_json(&json).unwrap();
        let debug = format!("{credentials:?}");
        for leaked in ["S3cr3t-client", "hunter2", "TOK"] {
            assert!(!debug.contains(leaked), "{debug}");
        }
        assert_eq!(credentials.flow_name(), "password");
    }

    #[test]
    fn malformed_secrets_are_reported_without_their_content() {
        let json = secret(r#"{"flow":"client_credentials","client_id":"x","client_secret":"#);
        let err = Credentials::from_secret_json(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid credentials JSON"), "{err}");
        let json = secret(r#"{"flow":"magic","token":"very-secret-value"}"#);
        let err = Credentials::from_secret_json(&json)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("very-secret-value"), "{err}");
    }
}
