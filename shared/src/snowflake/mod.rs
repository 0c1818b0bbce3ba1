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

/// The code of a multi-statement request one of whose statements failed (SQL state P0000). The
/// failing statement's own code is lost: only its message is embedded, in a JavaScript error
/// ("Submitting multiple SQL statements in a single request").
pub const MULTI_STATEMENT_FAILED: &str = "100132";

/// What the messages of the transient codes say, for a failure whose code is lost in a
/// multi-statement request's: a statement timeout (000630), a cancel (000604), a lock wait
/// (000625: "... this lock has not yet been released ...").
const TRANSIENT_MESSAGES: [&str; 4] = [
    "reached its statement or warehouse timeout",
    "SQL execution canceled",
    "this lock has not yet been released",
    "lock wait timed out",
];

/// What the messages of data errors say (SQL state 22xxx): a value the cast cannot read
/// ("Numeric value '...' is not recognized", which the merge's header check also raises), a
/// value too long, and a COPY's pointer to the file and line at fault.
const DATA_ERROR_MESSAGES: [&str; 4] = [
    "is not recognized",
    "is too long and would be truncated",
    "is not the run's columns",
    "\n  File '",
];

impl SnowflakeError {
    /// Whether a retry later may succeed: a timeout, a lock wait, a canceled statement (SQL state
    /// 57014), as opposed to an error in the SQL, the data or the setup (a missing warehouse,
    /// 000606, is SQL state 57P03 and stays permanent: it needs a person). In a multi-statement
    /// request only the failing statement's message tells.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sql {
                code,
                sql_state,
                message,
            } => {
                if code == MULTI_STATEMENT_FAILED {
                    let cause = failed_statement_message(message);
                    TRANSIENT_MESSAGES.iter().any(|m| cause.contains(m))
                } else {
                    TRANSIENT_CODES.contains(&code.as_str()) || sql_state == "57014"
                }
            }
            Self::Http { .. }
            | Self::Transport(_)
            | Self::Protocol(_)
            | Self::StillRunning { .. } => true,
            Self::Config(_) | Self::Unauthorized { .. } => false,
        }
    }

    /// Whether the data was at fault (SQL state class 22: a value, a file), not the SQL or the
    /// setup. In a multi-statement request only the failing statement's message tells.
    pub fn is_data_error(&self) -> bool {
        match self {
            Self::Sql { code, message, .. } if code == MULTI_STATEMENT_FAILED => {
                let cause = failed_statement_message(message);
                DATA_ERROR_MESSAGES.iter().any(|m| cause.contains(m))
            }
            Self::Sql { sql_state, .. } => sql_state.starts_with("22"),
            _ => false,
        }
    }
}

/// The failing statement's own message in a multi-statement request's error: what follows
/// "Uncaught Execution of multiple statements failed on statement "..." (at line N, position M)."
/// and precedes " in SYSTEM$MULTISTMT at", without the "Uncaught exception of type ... : " a
/// block adds. The whole message when it is not so shaped.
pub fn failed_statement_message(message: &str) -> &str {
    let after_place = message
        .find("failed on statement")
        .and_then(|start| {
            let rest = &message[start..];
            rest.find(").\n").map(|end| &rest[end + 3..])
        })
        .unwrap_or(message);
    let cause = after_place
        .rfind(" in SYSTEM$MULTISTMT at")
        .map_or(after_place, |end| &after_place[..end]);
    match cause.find("Uncaught exception of type ") {
        Some(0) => cause.find(" : ").map_or(cause, |at| &cause[at + 3..]),
        _ => cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(message: &str) -> SnowflakeError {
        SnowflakeError::Sql {
            code: MULTI_STATEMENT_FAILED.into(),
            sql_state: "P0000".into(),
            message: message.into(),
        }
    }

    /// Messages as Snowflake wrote them (quoted in public issues of its clients' users).
    #[test]
    fn a_multi_statement_failure_is_judged_by_the_failing_statement_s_message() {
        let privileges = "JavaScript execution error: Uncaught Execution of multiple statements failed on statement \"GRANT INSERT ON FUTURE TABLES ...\" (at line 2, position 0).\nSQL access control error:\nInsufficient privileges to operate on schema 'TEST' in SYSTEM$MULTISTMT at '    throw `Execution of multiple statements failed on statement {0} (at line {1}, position {2}).`.replace('{1}', LINES[i])' position 4\nstackstrace: \nSYSTEM$MULTISTMT line: 10";
        assert_eq!(
            failed_statement_message(privileges),
            "SQL access control error:\nInsufficient privileges to operate on schema 'TEST'"
        );
        assert!(!wrapped(privileges).is_transient());
        assert!(!wrapped(privileges).is_data_error());

        let timeout = "JavaScript execution error: Uncaught Execution of multiple statements failed on statement \"EXECUTE IMMEDIATE $$\nDECLARE\n ...\" (at line 3, position 0).\nUncaught exception of type 'STATEMENT_ERROR' on line 5 at position 4 : Statement reached its statement or warehouse timeout of 900 second(s) and was canceled. in SYSTEM$MULTISTMT at '    throw `Execution of multiple statements failed on statement {0} (at line {1}, position {2}).`.replace('{1}', LINES[i])' position 4\nstackstrace: \nSYSTEM$MULTISTMT line: 10";
        assert_eq!(
            failed_statement_message(timeout),
            "Statement reached its statement or warehouse timeout of 900 second(s) and was canceled."
        );
        assert!(wrapped(timeout).is_transient());

        let bad_value = timeout.replace(
            "Statement reached its statement or warehouse timeout of 900 second(s) and was canceled.",
            "Numeric value 'abc' is not recognized\n  File 'sfpipe/raw/Account/r1/part-00001.csv.gz', line 3, character 5",
        );
        assert!(wrapped(&bad_value).is_data_error());
        assert!(!wrapped(&bad_value).is_transient());
        // A statement's text shown in the message never decides: only its error does.
        let lock_in_text =
            privileges.replace("GRANT INSERT ON FUTURE TABLES", "SQL execution canceled");
        assert!(!wrapped(&lock_in_text).is_transient());
        // Not shaped as documented: the whole message is the cause.
        assert_eq!(failed_statement_message("odd"), "odd");
    }
}
