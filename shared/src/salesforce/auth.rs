//! Logging in: the OAuth 2.0 flows and the SOAP partner login, and the session they give.

use quick_xml::events::Event;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::secret;
use super::errors::transport_error;
use crate::ports::SalesforceError;

/// A logged-in session: the bearer token and the instance it is valid for.
pub struct Session {
    pub access_token: SecretString,
    pub instance_url: String,
}

/// How sfpipe logs in, chosen by the Salesforce secret's `flow`. `Debug` never shows a secret.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// OAuth 2.0 JWT bearer: the recommended server-to-server flow. The connected app holds the
    /// certificate; sfpipe signs an assertion with the private key.
    JwtBearer {
        client_id: String,
        username: String,
        private_key_pem: SecretString,
        /// `aud` claim; defaults to the login host Salesforce expects (see [`default_audience`]).
        audience: Option<String>,
    },
    /// OAuth 2.0 client credentials (a connected app with a run-as user; My Domain host).
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
    },
    /// OAuth 2.0 refresh token.
    RefreshToken {
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
    },
    /// OAuth 2.0 username-password (being deprecated by Salesforce; the security token is
    /// appended to the password).
    Password {
        client_id: String,
        client_secret: SecretString,
        username: String,
        password: SecretString,
    },
    /// The SOAP partner API login with username, password and security token.
    Soap {
        username: String,
        password: SecretString,
    },
}

#[derive(Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case", deny_unknown_fields)]
enum CredentialsJson {
    JwtBearer {
        client_id: String,
        username: String,
        private_key: String,
        #[serde(default)]
        audience: Option<String>,
    },
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    RefreshToken {
        client_id: String,
        client_secret: String,
        refresh_token: String,
    },
    Password {
        client_id: String,
        client_secret: String,
        username: String,
        password: String,
        #[serde(default)]
        security_token: String,
    },
    Soap {
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

#[derive(serde::Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// The SOAP partner API version used for the login call.
const SOAP_VERSION: &str = "62.0";

impl Credentials {
    /// Parses the Salesforce secret: `{"flow": "jwt_bearer"|"client_credentials"|
    /// "refresh_token"|"password"|"soap", ...}`.
    pub fn from_secret_json(json: &SecretString) -> Result<Self, SalesforceError> {
        let parsed: CredentialsJson = serde_json::from_str(json.expose_secret()).map_err(|e| {
            // serde's message can quote the input; keep only its position and category.
            SalesforceError::Config(format!(
                "the Salesforce secret is not valid credentials JSON (line {}, column {}, {:?}): \
                 expected {{\"flow\": \"jwt_bearer\"|\"client_credentials\"|\"refresh_token\"|\
                 \"password\"|\"soap\", ...}} with that flow's fields",
                e.line(),
                e.column(),
                e.classify()
            ))
        })?;
        Ok(match parsed {
            CredentialsJson::JwtBearer {
                client_id,
                username,
                private_key,
                audience,
            } => {
                // Checked now, so a malformed key is a configuration error at start, not a
                // failure on every message.
                jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|_| {
                    SalesforceError::Config(
                        "the Salesforce secret's private_key is not an RSA private key in PEM form"
                            .into(),
                    )
                })?;
                Credentials::JwtBearer {
                    client_id,
                    username,
                    private_key_pem: secret(private_key),
                    audience,
                }
            }
            CredentialsJson::ClientCredentials {
                client_id,
                client_secret,
            } => Credentials::ClientCredentials {
                client_id,
                client_secret: secret(client_secret),
            },
            CredentialsJson::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => Credentials::RefreshToken {
                client_id,
                client_secret: secret(client_secret),
                refresh_token: secret(refresh_token),
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
            CredentialsJson::Soap {
                username,
                password,
                security_token,
            } => Credentials::Soap {
                username,
                password: secret(format!("{password}{security_token}")),
            },
        })
    }

    pub fn flow_name(&self) -> &'static str {
        match self {
            Credentials::JwtBearer { .. } => "jwt_bearer",
            Credentials::ClientCredentials { .. } => "client_credentials",
            Credentials::RefreshToken { .. } => "refresh_token",
            Credentials::Password { .. } => "password",
            Credentials::Soap { .. } => "soap",
        }
    }

    pub(crate) async fn login(
        &self,
        http: &reqwest::Client,
        login_url: &str,
    ) -> Result<Session, SalesforceError> {
        let login_url = login_url.trim_end_matches('/');
        let assertion;
        let form: Vec<(&str, &str)> = match self {
            Credentials::Soap { username, password } => {
                return soap_login(http, login_url, username, password).await;
            }
            Credentials::JwtBearer {
                client_id,
                username,
                private_key_pem,
                audience,
            } => {
                let key = jsonwebtoken::EncodingKey::from_rsa_pem(
                    private_key_pem.expose_secret().as_bytes(),
                )
                .map_err(|_| {
                    SalesforceError::Config("the JWT private key is not an RSA PEM key".into())
                })?;
                let claims = JwtClaims {
                    iss: client_id,
                    sub: username,
                    aud: audience
                        .as_deref()
                        .unwrap_or_else(|| default_audience(login_url)),
                    exp: chrono::Utc::now().timestamp() + 180,
                };
                assertion = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                    &claims,
                    &key,
                )
                .map_err(|e| SalesforceError::Config(format!("signing the JWT: {e}")))?;
                vec![
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ]
            }
            Credentials::ClientCredentials { .. } if is_generic_login_host(login_url) => {
                return Err(client_credentials_need_my_domain());
            }
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose_secret()),
            ],
            Credentials::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => vec![
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose_secret()),
                ("refresh_token", refresh_token.expose_secret()),
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
        let url = format!("{login_url}/services/oauth2/token");
        let response = http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport_error)?;
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
            if error
                .error_description
                .contains("not supported on this domain")
            {
                return Err(client_credentials_need_my_domain());
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

async fn soap_login(
    http: &reqwest::Client,
    login_url: &str,
    username: &str,
    password: &SecretString,
) -> Result<Session, SalesforceError> {
    let envelope = format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
  <env:Body>
    <urn:login>
      <urn:username>{}</urn:username>
      <urn:password>{}</urn:password>
    </urn:login>
  </env:Body>
</env:Envelope>"#,
        quick_xml::escape::escape(username),
        quick_xml::escape::escape(password.expose_secret()),
    );
    let response = http
        .post(format!("{login_url}/services/Soap/u/{SOAP_VERSION}"))
        .header("Content-Type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "login")
        .body(envelope)
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status();
    let body = response.text().await.map_err(transport_error)?;
    let fields = xml_fields(
        &body,
        &["serverUrl", "sessionId", "faultcode", "faultstring"],
    );
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if !status.is_success() {
        let code = field("faultcode").unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let message = field("faultstring").unwrap_or_default();
        // Salesforce answers every login fault (INVALID_LOGIN, LOGIN_MUST_USE_SECURITY_TOKEN,
        // API_DISABLED_FOR_ORG, PASSWORD_EXPIRED, ...) with HTTP 500 and a SOAP fault: none goes
        // away by trying again, and repeated failed logins lock the user out. Only a server
        // error without a fault (a proxy, an outage) is worth another try.
        if status.is_server_error() && field("faultcode").is_none() {
            return Err(SalesforceError::Api {
                status: status.as_u16(),
                code,
                message,
            });
        }
        // INVALID_OPERATION: SOAP login() is disabled in the org (the default from Winter '26)
        // or absent from the API version; it is retired in every version from Summer '27.
        let message = if code.ends_with("INVALID_OPERATION") {
            format!(
                "{message} SOAP login() is off by default in orgs created from Winter '26, gone \
                 from API 65.0 and retired in Summer '27: log in with the jwt_bearer flow (or \
                 client_credentials) of an External Client App instead (README, \"The Salesforce \
                 secret\")"
            )
        } else {
            message
        };
        return Err(SalesforceError::Auth { code, message });
    }
    let (Some(server_url), Some(session_id)) = (field("serverUrl"), field("sessionId")) else {
        return Err(SalesforceError::Decode {
            what: "SOAP login response",
            detail: "no serverUrl or sessionId".into(),
        });
    };
    let instance_url = url::Url::parse(&server_url)
        .map(|u| u.origin().ascii_serialization())
        .map_err(|e| SalesforceError::Decode {
            what: "SOAP login serverUrl",
            detail: e.to_string(),
        })?;
    Ok(Session {
        access_token: secret(session_id),
        instance_url,
    })
}

/// The text of the first element with each wanted local name (entities resolved).
fn xml_fields(xml: &str, wanted: &[&str]) -> Vec<(String, String)> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => {
                let name = start.local_name().into_inner().to_string();
                current = (wanted.contains(&name.as_str()) && !out.iter().any(|(n, _)| *n == name))
                    .then(|| (name, String::new()));
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
                    } else if let Some(resolved) =
                        quick_xml::escape::resolve_predefined_entity(&reference.xml10_content())
                    {
                        value.push_str(resolved);
                    }
                }
            }
            Ok(Event::End(_)) => {
                if let Some(field) = current.take() {
                    out.push(field);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

/// `login.salesforce.com` or `test.salesforce.com`, rather than an org's own domain.
fn is_generic_login_host(login_url: &str) -> bool {
    url::Url::parse(login_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|host| host == "login.salesforce.com" || host == "test.salesforce.com")
}

/// Salesforce serves the client credentials flow only on the org's My Domain.
fn client_credentials_need_my_domain() -> SalesforceError {
    SalesforceError::Auth {
        code: "invalid_grant".into(),
        message: "the client credentials flow works only on the org's My Domain: set the login \
                  URL (SalesforceLoginUrl, SFPIPE_SALESFORCE_LOGIN_URL) to \
                  https://<your domain>.my.salesforce.com"
            .into(),
    }
}

/// The `aud` of a JWT bearer assertion: Salesforce accepts only its login hosts, even when the
/// token is asked of My Domain. Sandboxes (`test.salesforce.com`, `*.sandbox.my.salesforce.com`,
/// or a legacy `name--sandbox.my.salesforce.com`) use `https://test.salesforce.com`, everything
/// else `https://login.salesforce.com`. An Experience Cloud site sets `audience` in the secret.
pub fn default_audience(login_url: &str) -> &'static str {
    let host = url::Url::parse(login_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    let sandbox = host == "test.salesforce.com"
        || host.ends_with(".sandbox.my.salesforce.com")
        || (host.contains("--") && host.ends_with(".my.salesforce.com"));
    if sandbox {
        "https://test.salesforce.com"
    } else {
        "https://login.salesforce.com"
    }
}

#[cfg(test)]
mod tests {
    use super::default_audience;

    #[tokio::test]
    async fn client_credentials_on_a_generic_login_host_say_to_use_my_domain() {
        let credentials = super::Credentials::ClientCredentials {
            client_id: "id".into(),
            client_secret: "secret".to_string().into(),
        };
        // Refused before any request: nothing listens on these hosts here.
        for login_url in [
            "https://login.salesforce.com",
            "https://test.salesforce.com/",
        ] {
            let error = credentials
                .login(&reqwest::Client::new(), login_url)
                .await
                .err()
                .expect("refused");
            assert!(!error.is_retryable(), "{error}");
            assert!(error.to_string().contains("My Domain"), "{error}");
        }
    }

    #[test]
    fn the_jwt_audience_is_a_login_host_even_for_my_domain() {
        for (login_url, audience) in [
            (
                "https://login.salesforce.com",
                "https://login.salesforce.com",
            ),
            (
                "https://acme.my.salesforce.com",
                "https://login.salesforce.com",
            ),
            (
                "https://ACME.my.salesforce.com/",
                "https://login.salesforce.com",
            ),
            ("http://127.0.0.1:8443", "https://login.salesforce.com"),
            ("https://test.salesforce.com", "https://test.salesforce.com"),
            (
                "https://acme--uat.sandbox.my.salesforce.com",
                "https://test.salesforce.com",
            ),
            (
                "https://acme--uat.my.salesforce.com",
                "https://test.salesforce.com",
            ),
        ] {
            assert_eq!(default_audience(login_url), audience, "{login_url}");
        }
    }

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
        let json = secret(
            r#"{"flow":"jwt_bearer","client_id":"c","username":"u","private_key":"-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----"}"#,
        );
        let err = Credentials::from_secret_json(&json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an RSA private key"), "{err}");
        assert!(!err.contains("not-a-key"), "{err}");
    }

    #[test]
    fn soap_fields_are_read_from_a_login_response() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result><serverUrl>https://na1.salesforce.com/services/Soap/u/62.0/00D</serverUrl><sessionId>00D!AQ&amp;x</sessionId></result></loginResponse></soapenv:Body></soapenv:Envelope>"#;
        let fields = xml_fields(xml, &["serverUrl", "sessionId"]);
        assert_eq!(
            fields,
            vec![
                (
                    "serverUrl".to_string(),
                    "https://na1.salesforce.com/services/Soap/u/62.0/00D".to_string()
                ),
                ("sessionId".to_string(), "00D!AQ&x".to_string()),
            ]
        );
    }
}
