//! What a Lambda function reads at start: its settings from the environment, and the clients it
//! builds once per container.

use std::sync::Arc;
use std::time::Duration;

use crate::aws::{
    S3BlobStore, SecretsManagerSecrets, SnsNotifier, SqsQueue, s3_client, sdk_config,
};
use crate::contracts::ContractError;
use crate::dead_letters::NotifyingQueue;
use crate::lambda::{BatchPolicy, DEFAULT_RETRY_BASE, ObjectList};
use crate::ports::{Notifier, Secrets};
use crate::salesforce::client::DEFAULT_API_VERSION;
use crate::salesforce::{Credentials, SalesforceClient, SalesforceConfig, SalesforceError};
use crate::snowflake::{SnowflakeError, SnowflakeSettings, SnowflakeWarehouse};
use crate::stages::extract::ExtractConfig;
use crate::stages::loader::LoaderConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "environment variable {0} is not set: the SAM template sets it; set it by hand for a local run"
    )]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
    #[error("the Salesforce secret: {0}")]
    Secret(String),
    #[error(transparent)]
    Salesforce(#[from] SalesforceError),
    #[error(transparent)]
    Snowflake(#[from] SnowflakeError),
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    Ok(optional_number(name)?.unwrap_or(default))
}

fn optional_number(name: &'static str) -> Result<Option<u64>, ConfigError> {
    optional(name)
        .map(|v| {
            v.parse().map_err(|_| ConfigError::Invalid {
                name,
                why: format!("{v:?} is not a whole number"),
            })
        })
        .transpose()
}

/// A setting read with its type's parser (`FromStr` with a message for its error), if set.
fn parsed<T: std::str::FromStr<Err = String>>(
    name: &'static str,
) -> Result<Option<T>, ConfigError> {
    optional(name)
        .map(|v| v.parse())
        .transpose()
        .map_err(|why| ConfigError::Invalid { name, why })
}

/// The queues a function sends to (and, for its own queue, dead-letters into, with a notice to
/// the alarm topic, `SFPIPE_ALARM_TOPIC_ARN`, for each dead letter).
pub struct StageQueues {
    pub extract: Arc<NotifyingQueue<SqsQueue>>,
    pub upload: Arc<NotifyingQueue<SqsQueue>>,
    pub merge: Arc<NotifyingQueue<SqsQueue>>,
}

/// What every function builds once per container: queues, blob store, secrets, the object list.
/// Each function then builds the clients it needs: [`Runtime::salesforce`] (extract, upload),
/// [`Runtime::snowflake`] (job-loader, merge).
pub struct Runtime {
    pub queues: StageQueues,
    pub blobs: Arc<S3BlobStore>,
    pub secrets: SecretsManagerSecrets,
    pub objects: ObjectList,
}

impl Runtime {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let sdk = sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let notifier: Option<Arc<dyn Notifier>> = optional("SFPIPE_ALARM_TOPIC_ARN").map(|topic| {
            Arc::new(SnsNotifier::new(aws_sdk_sns::Client::new(&sdk), topic)) as Arc<dyn Notifier>
        });
        let queue = |url: &'static str,
                     dlq: &'static str|
         -> Result<Arc<NotifyingQueue<SqsQueue>>, ConfigError> {
            Ok(Arc::new(NotifyingQueue::new(
                SqsQueue::new(sqs.clone(), required(url)?, optional(dlq)),
                notifier.clone(),
            )))
        };
        let queues = StageQueues {
            extract: queue("SFPIPE_EXTRACT_QUEUE_URL", "SFPIPE_EXTRACT_DLQ_URL")?,
            upload: queue("SFPIPE_UPLOAD_QUEUE_URL", "SFPIPE_UPLOAD_DLQ_URL")?,
            merge: queue("SFPIPE_MERGE_QUEUE_URL", "SFPIPE_MERGE_DLQ_URL")?,
        };
        let mut blobs = S3BlobStore::new(
            s3_client(&sdk),
            required("SFPIPE_BUCKET")?,
            optional("SFPIPE_PREFIX").unwrap_or_else(|| "sfpipe".into()),
        );
        if optional("SFPIPE_S3_ENCRYPTION").as_deref() == Some("none") {
            blobs = blobs.with_encryption(None);
        }
        let secrets = SecretsManagerSecrets::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            Duration::from_secs(number("SFPIPE_SECRET_TTL_SECONDS", 300)?),
        );
        let objects = ObjectList::parse(&optional("SFPIPE_OBJECTS").unwrap_or_default()).map_err(
            |e: ContractError| ConfigError::Invalid {
                name: "SFPIPE_OBJECTS",
                why: e.to_string(),
            },
        )?;
        if let Some(stack) = optional("SFPIPE_STACK_NAME") {
            crate::metrics::enable(stack);
        }
        Ok(Self {
            queues,
            blobs: Arc::new(blobs),
            secrets,
            objects,
        })
    }

    /// A secret's JSON straight from the environment (`inline`, for local runs), else from
    /// Secrets Manager (`arn_variable` names the secret).
    async fn secret(
        &self,
        inline: &'static str,
        arn_variable: &'static str,
    ) -> Result<secrecy::SecretString, ConfigError> {
        match optional(inline) {
            Some(json) => Ok(secrecy::SecretString::from(json)),
            None => self
                .secrets
                .get(&required(arn_variable)?)
                .await
                .map_err(|e| ConfigError::Secret(format!("{arn_variable}: {e}"))),
        }
    }

    pub async fn salesforce(&self) -> Result<SalesforceClient, ConfigError> {
        let secret = self
            .secret("SFPIPE_SALESFORCE_CREDENTIALS", "SFPIPE_SALESFORCE_SECRET")
            .await?;
        let credentials = Credentials::from_secret_json(&secret)?;
        Ok(SalesforceClient::new(
            SalesforceConfig {
                api_version: optional("SFPIPE_SALESFORCE_API_VERSION")
                    .unwrap_or_else(|| DEFAULT_API_VERSION.into()),
                api_budget: number("SFPIPE_API_BUDGET_PERCENT", 80)? as f64 / 100.0,
                ..SalesforceConfig::new(required("SFPIPE_SALESFORCE_LOGIN_URL")?)
            },
            credentials,
        )?)
    }

    /// The warehouse: the Snowflake secret (or `SFPIPE_SNOWFLAKE_CREDENTIALS`), with
    /// `SFPIPE_SNOWFLAKE_{URL,DATABASE,SCHEMA,WAREHOUSE,ROLE,STAGE}` overriding its fields, and
    /// `SFPIPE_DELETED_ROWS` (`flag` or `remove`).
    pub async fn snowflake(&self) -> Result<SnowflakeWarehouse, ConfigError> {
        let secret = self
            .secret("SFPIPE_SNOWFLAKE_CREDENTIALS", "SFPIPE_SNOWFLAKE_SECRET")
            .await?;
        let mut settings = SnowflakeSettings::from_secret_and_variables(&secret, optional)?;
        // The merge function waits less than its own 15 minutes, then leaves the merge running
        // for its redelivery to attach to.
        settings.wait_limit =
            optional_number("SFPIPE_SNOWFLAKE_WAIT_SECONDS")?.map(Duration::from_secs);
        let deleted = parsed("SFPIPE_DELETED_ROWS")?.unwrap_or_default();
        Ok(settings.warehouse()?.with_deleted_rows(deleted))
    }

    /// How a function on a standard (`fifo = false`) or FIFO queue settles its batches, with
    /// `SFPIPE_RETRY_BASE_SECONDS` as the first retry delay (default 60 s, doubling per receive)
    /// and `SFPIPE_MAX_RECEIVES` as its queue's `maxReceiveCount` (default 6: five tries).
    pub fn batch_policy(fifo: bool) -> Result<BatchPolicy, ConfigError> {
        Ok(BatchPolicy {
            fifo,
            retry_base: Duration::from_secs(number(
                "SFPIPE_RETRY_BASE_SECONDS",
                DEFAULT_RETRY_BASE.as_secs(),
            )?),
            max_receives: number(
                "SFPIPE_MAX_RECEIVES",
                u64::from(crate::worker::DEFAULT_MAX_RECEIVES),
            )?
            .try_into()
            .map_err(|_| ConfigError::Invalid {
                name: "SFPIPE_MAX_RECEIVES",
                why: "too large".into(),
            })?,
            ..BatchPolicy::default()
        })
    }

    /// The job-loader's settings: `SFPIPE_FORMULA_REFRESH` and `SFPIPE_RECONCILE` (both
    /// default `24h`), and `SFPIPE_REST_BELOW` (default 2,000: a change of fewer rows is read
    /// with the REST API; 0 reads every change with a Bulk job).
    pub fn loader_config() -> Result<LoaderConfig, ConfigError> {
        let formula_refresh = parsed("SFPIPE_FORMULA_REFRESH")?.unwrap_or_default();
        let reconcile = parsed("SFPIPE_RECONCILE")?.unwrap_or_default();
        Ok(LoaderConfig {
            formula_refresh,
            reconcile,
            rest_below: number("SFPIPE_REST_BELOW", LoaderConfig::default().rest_below)?,
            ..LoaderConfig::default()
        })
    }

    pub fn extract_config() -> Result<ExtractConfig, ConfigError> {
        let fields = match optional("SFPIPE_FIELDS") {
            None => Default::default(),
            Some(json) => serde_json::from_str(&json).map_err(|e| ConfigError::Invalid {
                name: "SFPIPE_FIELDS",
                why: format!(
                    "{e}; expected {{\"Account\": {{\"include\": [...], \"exclude\": [...]}}}}"
                ),
            })?,
        };
        Ok(ExtractConfig {
            page_records: number("SFPIPE_PAGE_RECORDS", ExtractConfig::default().page_records)?,
            result_pages: match optional("SFPIPE_RESULT_PAGES").as_deref() {
                None | Some("parallel") => true,
                Some("chain") => false,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "SFPIPE_RESULT_PAGES",
                        why: format!("{other:?} is neither parallel nor chain"),
                    });
                }
            },
            rest_objects: optional("SFPIPE_REST_OBJECTS")
                .map(|list| {
                    list.split(',')
                        .map(|o| o.trim().to_string())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            fields,
            first_poll_delay: Duration::from_secs(number(
                "SFPIPE_FIRST_POLL_SECONDS",
                ExtractConfig::default().first_poll_delay.as_secs(),
            )?),
            bulk_job_deadline: Duration::from_secs(
                60 * number(
                    "SFPIPE_BULK_JOB_DEADLINE_MINUTES",
                    ExtractConfig::default().bulk_job_deadline.as_secs() / 60,
                )?,
            ),
            ..ExtractConfig::default()
        })
    }
}
