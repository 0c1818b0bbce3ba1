//! A moto server (a local AWS endpoint) on a free port of 127.0.0.1, stopped when dropped.
//! `scripts/test` installs moto and sets `SFPIPE_MOTO_SERVER`; without it these tests fail and say
//! how to get it. [`Moto::start_enforcing_iam`] starts one that checks every call against the
//! caller's IAM policies, as AWS does; `tests/iam/roles.py` gives it its users.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub url: String,
}

fn moto_server() -> String {
    if let Ok(path) = std::env::var("SFPIPE_MOTO_SERVER") {
        return path;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let default = format!("{home}/.cache/sfpipe/venv/bin/moto_server");
    if std::path::Path::new(&default).exists() {
        return default;
    }
    panic!(
        "moto_server was not found: run ./scripts/test (it installs moto with scripts/tools), \
         or set SFPIPE_MOTO_SERVER to a moto_server executable"
    );
}

/// An IAM access key of a moto user.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The IAM users `tests/iam/roles.py` made: an administrator for the test's own set-up, one user
/// per function holding exactly the policies SAM gives that function's role, and Snowflake's
/// stage reader.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TemplateRoles {
    pub admin: AccessKey,
    pub functions: std::collections::BTreeMap<String, AccessKey>,
    pub stage_reader: AccessKey,
}

impl Moto {
    pub async fn start() -> Self {
        Self::start_with(Command::new(moto_server()), &[]).await
    }

    /// A server on which only the first four calls go unchecked (`tests/iam/roles.py` spends them
    /// on an administrator); every later call needs an IAM user's key and a policy allowing it.
    /// SNS actions are checked against their topic, as AWS does (`tests/iam/moto_server.py`).
    pub async fn start_enforcing_iam() -> Self {
        let mut command = Command::new(crate::venv_python());
        command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/iam/moto_server.py"));
        Self::start_with(command, &[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]).await
    }

    /// Users for the roles `template.yaml` gives the functions, with its references bound to the
    /// resources in `bindings` (see `tests/iam/roles.py`).
    pub fn template_roles(&self, bindings: &serde_json::Value) -> TemplateRoles {
        let file = tempfile::NamedTempFile::new().expect("bindings file");
        std::fs::write(file.path(), bindings.to_string()).expect("write bindings");
        let output = Command::new(crate::venv_python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/iam/roles.py"))
            .args(["--endpoint", &self.url])
            .arg("--bindings")
            .arg(file.path())
            .output()
            .expect("run tests/iam/roles.py");
        assert!(
            output.status.success(),
            "tests/iam/roles.py failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("roles.py prints the users' keys")
    }

    async fn start_with(mut command: Command, env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(match std::env::var_os("SFPIPE_MOTO_LOG") {
                Some(path) => std::fs::File::create(path).map_or(Stdio::null(), Stdio::from),
                None => Stdio::null(),
            })
            .spawn()
            .expect("start moto_server");
        let url = format!("http://127.0.0.1:{port}");
        let moto = Self { child, url };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if client
                .get(format!("{}/moto-api/", moto.url))
                .send()
                .await
                .is_ok()
            {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SDK configuration pointing at this server, with test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_as(&AccessKey {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
        })
        .await
    }

    /// SDK configuration pointing at this server, signing with `key`.
    pub async fn sdk_config_as(&self, key: &AccessKey) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                &key.access_key_id,
                &key.secret_access_key,
                None,
                None,
                "moto",
            ))
            .load()
            .await
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (subject, message) of each SNS notice delivered to an SQS queue subscribed to a topic (in
/// SNS's JSON envelope), deleted as read; waits a little for `expected` of them.
pub async fn sns_notices(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    expected: usize,
) -> Vec<(String, String)> {
    let mut notices = Vec::new();
    for _ in 0..10 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive notices");
        for message in received.messages() {
            let envelope: serde_json::Value =
                serde_json::from_str(message.body().unwrap_or_default()).expect("SNS envelope");
            notices.push((
                envelope["Subject"].as_str().unwrap_or_default().to_string(),
                envelope["Message"].as_str().unwrap_or_default().to_string(),
            ));
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete a notice");
        }
        if notices.len() >= expected && received.messages().is_empty() {
            break;
        }
    }
    notices
}

/// An SNS topic named `topic` and an SQS queue subscribed to it, made with `config`: the topic's
/// ARN, and the queue's client and URL (for [`sns_notices`]).
pub async fn topic_with_subscriber(
    config: &aws_config::SdkConfig,
    topic: &str,
) -> (String, aws_sdk_sqs::Client, String) {
    let sns = aws_sdk_sns::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let arn = sns
        .create_topic()
        .name(topic)
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("topic arn")
        .to_string();
    let subscriber = format!("{topic}-subscriber");
    let url = sqs
        .create_queue()
        .queue_name(&subscriber)
        .send()
        .await
        .expect("subscriber queue")
        .queue_url()
        .expect("url")
        .to_string();
    let region = config.region().map(|r| r.to_string()).unwrap_or_default();
    sns.subscribe()
        .topic_arn(&arn)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:{region}:123456789012:{subscriber}"))
        .send()
        .await
        .expect("subscribe");
    (arn, sqs, url)
}
