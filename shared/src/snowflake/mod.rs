//! Snowflake through the SQL API v2: authentication, the HTTP client, the SQL sfpipe generates, the
//! warehouse adapter, and its settings.

pub mod auth;
pub mod client;
pub mod reconcile;
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
    #[error(
        "Snowflake statement {handle} still runs after {waited_seconds} s: left running; the next \
         delivery attaches to it with the same request id"
    )]
    StillRunning { handle: String, waited_seconds: u64 },
}

/// Snowflake error codes that name a passing condition: the same statement may succeed later.
/// 000630: the statement reached its statement or warehouse timeout and was canceled.
/// 000625: a lock held by another transaction was not released in time (LOCK_TIMEOUT).
/// 000604: SQL execution canceled (also after a timeout).
const TRANSIENT_CODES: [&str; 3] = ["000630", "000625", "000604"];

impl SnowflakeError {
    /// Whether a retry later may succeed: a timeout, a lock wait, a canceled statement (SQL state
    /// 57014), as opposed to an error in the SQL, the data or the setup (a missing warehouse,
    /// 000606, is SQL state 57P03 and stays permanent: it needs a person).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sql {
                code, sql_state, ..
            } => TRANSIENT_CODES.contains(&code.as_str()) || sql_state == "57014",
            Self::Http { .. }
            | Self::Transport(_)
            | Self::Protocol(_)
            | Self::StillRunning { .. } => true,
            Self::Config(_) | Self::Unauthorized { .. } => false,
        }
    }
}
