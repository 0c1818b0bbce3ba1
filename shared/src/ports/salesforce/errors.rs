//! What can go wrong talking to Salesforce, and whether trying again can help.

#[derive(Debug, Clone, thiserror::Error)]
pub enum SalesforceError {
    #[error(
        "Salesforce answered HTTP {status} {code}: {message}{}",
        advice(code, message)
    )]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error(
        "Salesforce login failed ({code}): {message}. Check the credentials in the Salesforce secret"
    )]
    Auth { code: String, message: String },
    #[error("Salesforce could not be reached: {0}")]
    Transport(String),
    #[error("Salesforce sent a response sfpipe cannot read ({what}): {detail}")]
    Decode { what: &'static str, detail: String },
    #[error(
        "object {object} does not exist in the org or is not queryable by this user: \
         remove it from the object list, or grant the integration user access"
    )]
    UnknownObject { object: String },
    #[error(
        "Bulk API job {job_id} for {object} ended {state}: {message}. The next scheduled run reads \
         the same window again (the watermark did not move); to load it sooner, invoke the \
         job-loader with {{\"objects\": [\"{object}\"]}}"
    )]
    JobFailed {
        job_id: String,
        object: String,
        state: String,
        message: String,
    },
    #[error(
        "the Salesforce API budget is reached: {used} of {max} daily requests used (budget \
         {budget_percent}%); no new extraction starts until usage falls. Wait for the 24-hour \
         window to roll, or raise the budget, then redrive this message"
    )]
    ApiBudget {
        used: u64,
        max: u64,
        budget_percent: u32,
    },
    #[error("configuration: {0}")]
    Config(String),
}

impl SalesforceError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            SalesforceError::Transport(_) => true,
            SalesforceError::Api {
                status,
                code,
                message,
            } => {
                *status >= 500
                    // The edge in front of the org: routing (406) and rate (420, 429) answers,
                    // transient by Salesforce's documentation; other clients retry them too.
                    || (matches!(status, 406 | 420 | 429) && !is_daily_limit(message))
                    || code == "SERVER_UNAVAILABLE"
                    || code == "QUERY_TIMEOUT"
                    || (code == "REQUEST_LIMIT_EXCEEDED" && !is_daily_limit(message))
            }
            _ => false,
        }
    }

    /// Whether the Bulk API refused the object itself (the REST API can still read it).
    pub fn is_bulk_unsupported(&self) -> bool {
        matches!(self, SalesforceError::Api { code, message, .. }
            if code == "INVALIDENTITY" || message.contains("not supported by the Bulk API"))
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            SalesforceError::Api { code, .. } | SalesforceError::Auth { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Whether a REQUEST_LIMIT_EXCEEDED is one of the org's daily limits (all API requests, or Bulk
/// API 2.0 query jobs): no retry within the day helps. The others are concurrency limits.
fn is_daily_limit(message: &str) -> bool {
    message.contains("TotalRequests") || is_daily_bulk_job_limit(message)
}

/// `Max bulk v2 query jobs (10000) per 24 hrs has been reached`.
fn is_daily_bulk_job_limit(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("bulk") && message.contains("24 hrs")
}

/// What to do about a Salesforce error, where it is not a passing one.
fn advice(code: &str, message: &str) -> &'static str {
    match code {
        "INVALID_FIELD" => {
            ". A field is gone or hidden: check the object's configured field list and the \
             integration user's field-level security"
        }
        "INVALID_TYPE" | "INVALIDENTITY" => {
            ". The object is unknown or hidden: check its name and the integration user's \
             object permissions"
        }
        "MALFORMED_QUERY" => ". Salesforce refused the query sfpipe built: report it as a bug",
        "API_DISABLED_FOR_ORG" => {
            ". Enable API access for the org and the integration user's profile ('API Enabled')"
        }
        "REQUEST_LIMIT_EXCEEDED" if is_daily_bulk_job_limit(message) => {
            ". The org's daily Bulk API query jobs (DailyBulkV2QueryJobs, 10,000 in a rolling 24 \
             hours) are used up: wait for the window to roll, lower the schedule's frequency, or \
             read small changes with the REST API (raise SFPIPE_REST_BELOW)"
        }
        "REQUEST_LIMIT_EXCEEDED" if message.contains("TotalRequests") => {
            ". The org's daily API limit is used up: wait for the 24-hour window to roll, lower \
             the schedule's frequency, or buy more API calls"
        }
        _ => "",
    }
}
