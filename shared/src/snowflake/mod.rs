//! Snowflake through the SQL API v2: authentication, the HTTP client, the SQL sfpipe generates, the
//! warehouse adapter, and its settings.

pub mod auth;
pub mod client;
pub mod settings;
pub mod sql;
pub mod warehouse;

pub use auth::{KeyPairJwt, SnowflakeAuth};
pub use client::{ResultSet, SessionContext, SqlApiClient, SqlApiConfig};
pub use settings::SnowflakeSettings;
pub use warehouse::SnowflakeWarehouse;

#[derive(Debug, thiserror::Error)]
pub enum SnowflakeError {
    #[error("Snowflake configuration: {0}")]
    Config(String),
    #[error(
        "Snowflake refused the credentials (HTTP {status}): {message}. Check the account and user, and \
         that the user's RSA_PUBLIC_KEY matches the private key (DESC USER shows its fingerprint)"
    )]
    Unauthorized { status: u16, message: String },
    #[error("Snowflake SQL error {code} (SQL state {sql_state}): {message}")]
    Sql {
        code: String,
        sql_state: String,
        message: String,
    },
    #[error("Snowflake answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("Snowflake could not be reached: {0}")]
    Transport(String),
    #[error("Snowflake: {0}")]
    Protocol(String),
}
