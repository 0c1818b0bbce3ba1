//! Where and as whom to connect: one JSON secret, with non-secret fields overridable by settings.
//!
//! ```json
//! {"account": "myorg-analytics", "user": "SFPIPE_LOADER", "private_key": "-----BEGIN PRIVATE KEY-----...",
//!  "database": "RAW", "schema": "SALESFORCE", "warehouse": "LOADING", "role": "SFPIPE_LOADER",
//!  "stage": "RAW.SALESFORCE.SFPIPE_STAGE"}
//! ```
//! `oauth_token` may replace `private_key`; `url` replaces `https://<account>.snowflakecomputing.com`.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::SnowflakeError;
use super::auth::{KeyPairJwt, SnowflakeAuth};
use super::client::{SessionContext, SqlApiClient, SqlApiConfig};
use super::warehouse::SnowflakeWarehouse;

#[derive(Deserialize)]
struct SecretFields {
    account: Option<String>,
    user: Option<String>,
    private_key: Option<String>,
    oauth_token: Option<String>,
    url: Option<String>,
    database: Option<String>,
    schema: Option<String>,
    warehouse: Option<String>,
    role: Option<String>,
    stage: Option<String>,
}

enum Credential {
    PrivateKey(SecretString),
    OAuthToken(SecretString),
}

pub struct SnowflakeSettings {
    pub url: String,
    pub account: String,
    pub user: String,
    credential: Credential,
    pub context: SessionContext,
    /// The external stage over the bucket's sfpipe prefix.
    pub stage: String,
    /// How long one request is waited for before it is left running (the calling function's
    /// time limit, less a margin); `None`: as long as the statement may run.
    pub wait_limit: Option<std::time::Duration>,
}

impl std::fmt::Debug for SnowflakeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnowflakeSettings")
            .field("url", &self.url)
            .field("account", &self.account)
            .field("user", &self.user)
            .field("context", &self.context)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// A stage name: up to three dot-separated unquoted identifiers.
fn valid_stage(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    (1..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

impl SnowflakeSettings {
    /// `setting(name)` overrides the secret's non-secret fields (`database`, `schema`,
    /// `warehouse`, `role`, `stage`, `url`); a deployment passes environment variables.
    /// As [`Self::from_secret_json`], each non-secret field overridden by its variable
    /// `SFPIPE_SNOWFLAKE_<FIELD>` (`SFPIPE_SNOWFLAKE_WAREHOUSE`, ...), read with `variable`: what
    /// the functions and the CLI both do.
    pub fn from_secret_and_variables(
        secret: &SecretString,
        variable: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SnowflakeError> {
        Self::from_secret_json(secret, |field| {
            variable(&format!("SFPIPE_SNOWFLAKE_{}", field.to_ascii_uppercase()))
        })
    }

    pub fn from_secret_json(
        secret: &SecretString,
        setting: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SnowflakeError> {
        let fields: SecretFields = serde_json::from_str(secret.expose_secret()).map_err(|e| {
            // serde's message names the field and position, never the secret's values.
            SnowflakeError::Config(format!(
                "the Snowflake secret is not the expected JSON ({e}); see the README's Snowflake section"
            ))
        })?;
        let pick = |name: &str, from_secret: Option<String>| {
            setting(name)
                .filter(|v| !v.trim().is_empty())
                .or(from_secret)
                .map(|v| v.trim().to_string())
        };
        let required = |name: &str, value: Option<String>| {
            value.filter(|v| !v.is_empty()).ok_or_else(|| {
                SnowflakeError::Config(format!(
                    "the Snowflake settings lack `{name}`: add it to the Snowflake secret"
                ))
            })
        };
        let account = required("account", fields.account.map(|a| a.trim().to_string()))?;
        let user = required("user", fields.user.map(|u| u.trim().to_string()))?;
        let credential = match (fields.private_key, fields.oauth_token) {
            (Some(key), _) => Credential::PrivateKey(SecretString::from(key)),
            (None, Some(token)) => Credential::OAuthToken(SecretString::from(token)),
            (None, None) => {
                return Err(SnowflakeError::Config(
                    "the Snowflake secret has neither `private_key` nor `oauth_token`".into(),
                ));
            }
        };
        let url = pick("url", fields.url).unwrap_or_else(|| account_url(&account));
        let stage = required("stage", pick("stage", fields.stage))?;
        if !valid_stage(&stage) {
            return Err(SnowflakeError::Config(format!(
                "the Snowflake stage {stage:?} is not a stage name such as DATABASE.SCHEMA.STAGE"
            )));
        }
        Ok(Self {
            url,
            account,
            user,
            credential,
            context: SessionContext {
                database: identifier(required("database", pick("database", fields.database))?),
                schema: identifier(required("schema", pick("schema", fields.schema))?),
                // Every merge is a multi-statement request, which Snowflake runs only on a
                // warehouse: without one the first merge would fail (000606), so start-up and
                // `sfpipe check` say so instead.
                warehouse: Some(identifier(pick("warehouse", fields.warehouse).ok_or_else(
                    || {
                        SnowflakeError::Config(
                            "the Snowflake settings lack `warehouse`: add it to the Snowflake \
                             secret (or set SFPIPE_SNOWFLAKE_WAREHOUSE); every merge is a \
                             multi-statement request, which Snowflake runs only on a warehouse"
                                .into(),
                        )
                    },
                )?)),
                role: pick("role", fields.role).map(identifier),
            },
            stage,
            wait_limit: None,
        })
    }

    pub fn client(&self) -> Result<SqlApiClient, SnowflakeError> {
        let auth = match &self.credential {
            Credential::PrivateKey(key) => {
                SnowflakeAuth::KeyPair(KeyPairJwt::new(&self.account, &self.user, key)?)
            }
            Credential::OAuthToken(token) => SnowflakeAuth::OAuth(token.clone()),
        };
        SqlApiClient::new(
            SqlApiConfig {
                wait_limit: self.wait_limit,
                ..SqlApiConfig::new(&self.url, self.context.clone())
            },
            auth,
        )
    }

    pub fn warehouse(&self) -> Result<SnowflakeWarehouse, SnowflakeError> {
        Ok(SnowflakeWarehouse::new(self.client()?, &self.stage))
    }
}

/// A name as the SQL API body must carry it: the SQL API takes it as written (case-sensitive),
/// while SQL upper-cases an unquoted name. `raw` names `RAW`; `"Mixed"` names `Mixed`.
fn identifier(name: String) -> String {
    let trimmed = name.trim();
    match trimmed
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => trimmed.to_ascii_uppercase(),
    }
}

/// The account's URL: `https://<account>.snowflakecomputing.com`, lower case, with the
/// underscores of an account name as hyphens (Snowflake's URLs do not take underscores). A
/// locator keeps its region (`xy12345.eu-west-1`).
fn account_url(account: &str) -> String {
    let host = account
        .trim()
        .trim_end_matches(".snowflakecomputing.com")
        .to_ascii_lowercase()
        .replace('_', "-");
    format!("https://{host}.snowflakecomputing.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_identifiers_give_the_url_snowflake_serves() {
        for (account, url) in [
            (
                "myorg-analytics",
                "https://myorg-analytics.snowflakecomputing.com",
            ),
            (
                "MYORG-DATA_LAKE",
                "https://myorg-data-lake.snowflakecomputing.com",
            ),
            (
                "xy12345.eu-west-1",
                "https://xy12345.eu-west-1.snowflakecomputing.com",
            ),
            (
                "xy12345.us-east-2.aws",
                "https://xy12345.us-east-2.aws.snowflakecomputing.com",
            ),
        ] {
            assert_eq!(account_url(account), url, "{account}");
        }
    }

    #[test]
    fn session_names_are_upper_cased_unless_quoted() {
        assert_eq!(identifier("raw".into()), "RAW");
        assert_eq!(identifier(" Salesforce ".into()), "SALESFORCE");
        assert_eq!(identifier("\"Mixed Case\"".into()), "Mixed Case");
    }

    const KEY: &str = include_str!("../../../simulator/keys/demo-connected-app.key.pem");

    fn secret(json: serde_json::Value) -> SecretString {
        SecretString::from(json.to_string())
    }

    #[test]
    fn a_complete_secret_gives_a_client_and_settings_override_it() {
        let s = secret(serde_json::json!({
            "account": "myorg-analytics", "user": "loader", "private_key": KEY,
            "database": "RAW", "schema": "SALESFORCE", "stage": "RAW.SALESFORCE.SFPIPE_STAGE",
            "warehouse": "LOADING"
        }));
        let settings = SnowflakeSettings::from_secret_json(&s, |name| {
            (name == "schema").then(|| "SF_TEST".to_string())
        })
        .expect("settings");
        assert_eq!(
            settings.url,
            "https://myorg-analytics.snowflakecomputing.com"
        );
        assert_eq!(settings.context.schema, "SF_TEST");
        assert!(settings.client().is_ok());
        assert!(!format!("{settings:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn missing_and_malformed_settings_say_what_to_fix() {
        let cases = [
            (
                serde_json::json!({"user": "u", "private_key": KEY}),
                "`account`",
            ),
            (
                serde_json::json!({"account": "a", "user": "u"}),
                "neither `private_key` nor `oauth_token`",
            ),
            (
                serde_json::json!({"account": "a", "user": "u", "oauth_token": "t", "database": "d", "schema": "s"}),
                "`stage`",
            ),
            (
                serde_json::json!({"account": "a", "user": "u", "oauth_token": "t", "database": "d", "schema": "s", "stage": "x; DROP TABLE y"}),
                "not a stage name",
            ),
            (
                serde_json::json!({"account": "a", "user": "u", "oauth_token": "t", "database": "d", "schema": "s", "stage": "D.S.ST"}),
                "lack `warehouse`",
            ),
        ];
        for (json, want) in cases {
            let error = SnowflakeSettings::from_secret_json(&secret(json), |_| None)
                .expect_err("rejected")
                .to_string();
            assert!(error.contains(want), "{error}");
        }
        let error = SnowflakeSettings::from_secret_json(
            &SecretString::from("{\"private_key\": \"secret-value"),
            |_| None,
        )
        .expect_err("rejected")
        .to_string();
        assert!(!error.contains("secret-value"), "{error}");
    }
}
