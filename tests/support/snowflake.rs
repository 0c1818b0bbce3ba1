//! The SQL API v2 harness (`tests/snowflake_sql_api.py`: fakesnow behind Snowflake's HTTP API) on a
//! free port of 127.0.0.1, reading its stage from S3 on moto. It stops when dropped, or when the
//! test process ends (it exits when its standard input closes).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use secrecy::SecretString;
use sfpipe_shared::retry::RetryPolicy;
use sfpipe_shared::snowflake::{
    KeyPairJwt, SessionContext, SnowflakeAuth, SnowflakeWarehouse, SqlApiClient, SqlApiConfig,
};

use crate::moto::Moto;

pub const ACCOUNT: &str = "sfpipe_test.eu-west-1";
pub const USER: &str = "loader";
pub const STAGE: &str = "SFPIPE.RAW.SFPIPE_STAGE";
pub const PRIVATE_KEY: &str = include_str!("../../simulator/keys/demo-connected-app.key.pem");
const PUBLIC_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../simulator/keys/demo-connected-app.pub.pem"
);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/snowflake_sql_api.py");

pub struct SnowflakeHarness {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

/// Options beyond the defaults: result partitions of this many rows (to exercise partition
/// fetching), and an OAuth token the harness accepts.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    pub partition_rows: usize,
    pub oauth_token: Option<String>,
    /// The access key (id, secret) the stage reads S3 with, as Snowflake's storage integration
    /// would with its role; moto's default test key when none.
    pub s3_credentials: Option<(String, String)>,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            partition_rows: 2,
            oauth_token: None,
            s3_credentials: None,
        }
    }
}

impl SnowflakeHarness {
    /// Starts the harness with its stage `SFPIPE.RAW.SFPIPE_STAGE` at `s3://bucket/prefix/`.
    pub async fn start(moto: &Moto, bucket: &str, prefix: &str, options: HarnessOptions) -> Self {
        let mut command = Command::new(crate::venv_python());
        command
            .arg(SCRIPT)
            .args(["--moto", &moto.url, "--bucket", bucket, "--prefix", prefix])
            .args(["--account", "SFPIPE_TEST", "--user", USER])
            .args(["--public-key", PUBLIC_KEY_FILE])
            .args(["--partition-rows", &options.partition_rows.to_string()]);
        if let Some((key_id, secret)) = &options.s3_credentials {
            command.args(["--s3-key-id", key_id, "--s3-secret", secret]);
        }
        if let Some(token) = &options.oauth_token {
            command.args(["--oauth-token", token]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SQL API harness: ./scripts/tools installs fakesnow (or set SFPIPE_PYTHON)");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("join")
        .expect("read the harness's port");
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the SQL API harness did not start ({e}): {line:?}"));
        let port = ready["port"].as_u64().expect("port");
        let harness = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let client = harness.client();
        let bucket_url = if prefix.is_empty() {
            format!("s3://{bucket}/")
        } else {
            format!("s3://{bucket}/{}/", prefix.trim_matches('/'))
        };
        client
            .execute(
                &format!("CREATE STAGE IF NOT EXISTS {STAGE} URL = '{bucket_url}'"),
                1,
            )
            .await
            .expect("create the stage");
        harness
    }

    pub fn config(&self) -> SqlApiConfig {
        SqlApiConfig {
            retry: RetryPolicy {
                base_delay: std::time::Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            poll_interval: std::time::Duration::from_millis(5),
            ..SqlApiConfig::new(
                &self.url,
                SessionContext {
                    database: "SFPIPE".into(),
                    schema: "RAW".into(),
                    warehouse: Some("LOADING".into()),
                    role: None,
                },
            )
        }
    }

    pub fn key_pair() -> SnowflakeAuth {
        SnowflakeAuth::KeyPair(
            KeyPairJwt::new(ACCOUNT, USER, &SecretString::from(PRIVATE_KEY)).expect("demo key"),
        )
    }

    pub fn client(&self) -> SqlApiClient {
        SqlApiClient::new(self.config(), Self::key_pair()).expect("client")
    }

    pub fn warehouse(&self) -> SnowflakeWarehouse {
        SnowflakeWarehouse::new(self.client(), STAGE)
    }

    /// Every statement the harness received, in order, with its request id.
    pub async fn log(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/__harness/log", self.url))
            .send()
            .await
            .expect("harness log")
            .json()
            .await
            .expect("harness log json")
    }

    /// The statements received so far, as text.
    pub async fn statements(&self) -> Vec<String> {
        self.log().await["statements"]
            .as_array()
            .expect("statements")
            .iter()
            .map(|s| s["sql"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Faults: `{"kind": "status"|"lose_response"|"sql_error"|"slow", "match": "...", "times": N}`
    /// (`slow` takes `"polls": N`).
    pub async fn inject(&self, faults: serde_json::Value) {
        self.http
            .post(format!("{}/__harness/faults", self.url))
            .json(&serde_json::json!({ "faults": faults }))
            .send()
            .await
            .expect("inject faults")
            .error_for_status()
            .expect("faults accepted");
    }
}

impl Drop for SnowflakeHarness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
