//! The four Lambda functions, unchanged, under `cargo lambda watch` (the local Lambda emulator):
//! invoked with the sample events in `events/`, against SQS and S3 on moto, the Salesforce
//! simulator and the Snowflake SQL API harness. The test plays the SQS event source mappings: it
//! receives from each queue, invokes the function with the batch, and deletes what succeeded.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use sfpipe_simulator::SimConfig;
use sfpipe_tests::moto::Moto;
use sfpipe_tests::snowflake::{self, HarnessOptions, SnowflakeHarness};

const BUCKET: &str = "sfpipe-lambda-test";
const PREFIX: &str = "sfpipe";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn cargo_lambda() -> String {
    std::env::var("SFPIPE_CARGO_LAMBDA").unwrap_or_else(|_| {
        let python = sfpipe_tests::venv_python();
        Path::new(&python)
            .with_file_name("cargo-lambda")
            .to_string_lossy()
            .into_owned()
    })
}

/// `cargo lambda watch` in its own process group, stopped with every function it started.
struct Watch {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    fn start(env: &BTreeMap<&str, String>, dir: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("cargo-lambda-watch.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(cargo_lambda())
            .args(["lambda", "watch", "--ignore-changes", "--quiet"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(workspace_root())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start cargo lambda watch: ./scripts/tools installs cargo-lambda");
        let mut watch = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = watch.child.try_wait() {
                panic!(
                    "cargo lambda watch exited ({status}):\n{}",
                    watch.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen within 120 s:\n{}",
                watch.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        watch
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// `cargo lambda invoke <function> --data-file <file>`, as the README shows.
    fn invoke_file(&self, function: &str, file: &Path) -> serde_json::Value {
        let output = Command::new(cargo_lambda())
            .args(["lambda", "invoke", function, "--output-format", "json"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &self.port.to_string(),
            ])
            .arg("--data-file")
            .arg(file)
            .current_dir(workspace_root())
            .output()
            .expect("run cargo lambda invoke");
        assert!(
            output.status.success(),
            "cargo lambda invoke {function} {}: {}\n{}\n--- watch log ---\n{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{function} answered no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}

struct Queues {
    sqs: aws_sdk_sqs::Client,
    urls: BTreeMap<&'static str, String>,
}

impl Queues {
    async fn create(sqs: aws_sdk_sqs::Client) -> Self {
        let mut urls = BTreeMap::new();
        for (stage, fifo) in [("extract", false), ("upload", false), ("merge", true)] {
            let suffix = if fifo { ".fifo" } else { "" };
            let fifo_attributes = |mut attributes: Vec<(QueueAttributeName, String)>| {
                if fifo {
                    attributes.push((QueueAttributeName::FifoQueue, "true".into()));
                }
                attributes
            };
            let mut dlq = sqs
                .create_queue()
                .queue_name(format!("{stage}-dlq{suffix}"));
            for (k, v) in fifo_attributes(vec![]) {
                dlq = dlq.attributes(k, v);
            }
            let dlq_url = dlq.send().await.expect("dlq").queue_url.expect("url");
            let mut queue = sqs.create_queue().queue_name(format!("{stage}{suffix}"));
            for (k, v) in
                fifo_attributes(vec![(QueueAttributeName::VisibilityTimeout, "10".into())])
            {
                queue = queue.attributes(k, v);
            }
            let url = queue.send().await.expect("queue").queue_url.expect("url");
            urls.insert(stage, url);
            urls.insert(
                match stage {
                    "extract" => "extract-dlq",
                    "upload" => "upload-dlq",
                    _ => "merge-dlq",
                },
                dlq_url,
            );
        }
        Self { sqs, urls }
    }

    async fn depth(&self, stage: &str) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.urls[stage])
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("attributes")
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .filter_map(|name| attributes.get(name)?.parse::<u64>().ok())
        .sum()
    }

    /// One batch from the queue as the SQS event Lambda would get, with its receipt handles.
    async fn batch(&self, stage: &str) -> Option<(serde_json::Value, Vec<(String, String)>)> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.urls[stage])
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return None;
        }
        let mut handles = Vec::new();
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let id = m.message_id.clone().unwrap_or_default();
                let receipt = m.receipt_handle.clone().unwrap_or_default();
                handles.push((id.clone(), receipt.clone()));
                let attributes: serde_json::Map<String, serde_json::Value> = m
                    .attributes
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_string(), serde_json::Value::String(v)))
                    .collect();
                let message_attributes: serde_json::Map<String, serde_json::Value> = m
                    .message_attributes
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            serde_json::json!({
                                "stringValue": v.string_value,
                                "dataType": v.data_type,
                                "stringListValues": [],
                                "binaryListValues": [],
                            }),
                        )
                    })
                    .collect();
                serde_json::json!({
                    "messageId": id,
                    "receiptHandle": receipt,
                    "body": m.body.clone().unwrap_or_default(),
                    "attributes": attributes,
                    "messageAttributes": message_attributes,
                    "md5OfBody": m.md5_of_body.clone().unwrap_or_default(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{stage}"),
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        Some((serde_json::json!({ "Records": records }), handles))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_functions_run_under_cargo_lambda_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start().await;
    let sdk = moto.sdk_config().await;
    moto.s3()
        .await
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    let queues = Queues::create(aws_sdk_sqs::Client::new(&sdk)).await;
    let sim = sfpipe_tests::simulator(SimConfig {
        rows: 300,
        bulk_polls_to_complete: 0,
        ..SimConfig::default()
    })
    .await;
    let harness = SnowflakeHarness::start(&moto, BUCKET, PREFIX, HarnessOptions::default()).await;

    let config = sim.config();
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    env.insert("AWS_ENDPOINT_URL", moto.url.clone());
    env.insert("AWS_ACCESS_KEY_ID", "testing".into());
    env.insert("AWS_SECRET_ACCESS_KEY", "testing".into());
    env.insert("AWS_REGION", "us-east-1".into());
    for (variable, queue) in [
        ("SFPIPE_EXTRACT_QUEUE_URL", "extract"),
        ("SFPIPE_EXTRACT_DLQ_URL", "extract-dlq"),
        ("SFPIPE_UPLOAD_QUEUE_URL", "upload"),
        ("SFPIPE_UPLOAD_DLQ_URL", "upload-dlq"),
        ("SFPIPE_MERGE_QUEUE_URL", "merge"),
        ("SFPIPE_MERGE_DLQ_URL", "merge-dlq"),
    ] {
        env.insert(variable, queues.urls[queue].clone());
    }
    env.insert("SFPIPE_BUCKET", BUCKET.into());
    env.insert("SFPIPE_PREFIX", PREFIX.into());
    env.insert("SFPIPE_OBJECTS", "Account".into());
    env.insert("SFPIPE_FIRST_POLL_SECONDS", "0".into());
    env.insert("SFPIPE_SALESFORCE_LOGIN_URL", sim.url().to_string());
    env.insert(
        "SFPIPE_SALESFORCE_CREDENTIALS",
        serde_json::json!({
            "flow": "client_credentials",
            "client_id": config.client_id,
            "client_secret": config.client_secret,
        })
        .to_string(),
    );
    env.insert(
        "SFPIPE_SNOWFLAKE_CREDENTIALS",
        serde_json::json!({
            "account": snowflake::ACCOUNT,
            "user": snowflake::USER,
            "private_key": snowflake::PRIVATE_KEY,
            "url": harness.url,
            "database": "SFPIPE",
            "schema": "RAW",
            "stage": snowflake::STAGE,
        })
        .to_string(),
    );
    env.insert("RUST_LOG", "info".into());
    let watch = Watch::start(&env, dir.path());

    let events = workspace_root().join("events");
    // The loader's three triggers: a schedule, a full refresh, a backfill window.
    for file in ["schedule.json", "full-refresh.json", "backfill.json"] {
        let report = watch.invoke_file("job-loader", &events.join(file));
        assert!(
            report["run_id"].is_string() && report["queued"].is_array(),
            "{file}: {report}"
        );
    }
    // The SQS samples: every function answers a batch response (the sample runs do not exist in
    // the simulator, so some of their messages fail or are dead-lettered; none may crash).
    for (function, file) in [
        ("extract", "extract-sqs.json"),
        ("upload", "upload-sqs.json"),
        ("merge", "merge-sqs.json"),
    ] {
        let response = watch.invoke_file(function, &events.join(file));
        assert!(
            response["batchItemFailures"].is_array(),
            "{function}: {response}"
        );
    }

    // Play the event source mappings until every queue is empty.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut invocations: Vec<String> = Vec::new();
    loop {
        let mut idle = true;
        for stage in ["extract", "upload", "merge"] {
            let Some((event, handles)) = queues.batch(stage).await else {
                continue;
            };
            idle = false;
            let response: serde_json::Value = http
                .post(format!(
                    "http://127.0.0.1:{}/2015-03-31/functions/{stage}/invocations",
                    watch.port
                ))
                .json(&event)
                .send()
                .await
                .expect("invoke")
                .json()
                .await
                .unwrap_or_else(|e| panic!("{stage}: {e}\n{}", watch.log_tail()));
            let failed: Vec<&str> = response["batchItemFailures"]
                .as_array()
                .unwrap_or_else(|| panic!("{stage}: {response}\n{}", watch.log_tail()))
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect();
            invocations.push(format!(
                "{stage}: {} messages, {} failed",
                handles.len(),
                failed.len()
            ));
            for (id, receipt) in handles {
                if !failed.contains(&id.as_str()) {
                    queues
                        .sqs
                        .delete_message()
                        .queue_url(&queues.urls[stage])
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
        if idle {
            let mut pending = 0;
            for stage in ["extract", "upload", "merge"] {
                pending += queues.depth(stage).await;
            }
            if pending == 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            let mut depths = Vec::new();
            for queue in queues.urls.keys() {
                depths.push(format!("{queue}: {}", queues.depth(queue).await));
            }
            panic!(
                "queues not drained: {depths:?}\ninvocations: {invocations:#?}\n{}",
                watch.log_tail()
            );
        }
    }

    // Every live Account is in Snowflake exactly once.
    let client = harness.client();
    let counts = client
        .execute(
            "SELECT COUNT(*) AS \"ROWS\", COUNT(DISTINCT \"ID\") AS \"IDS\", \
             COUNT(CASE WHEN NOT \"ISDELETED\" THEN 1 END) AS \"LIVE\" FROM \"ACCOUNT\"",
            1,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", watch.log_tail()));
    let live = sim.with_org(|org| org.live_count(0));
    let sent: Vec<String> = harness.log().await["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| {
            let sql: String = s["sql"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(160)
                .collect();
            format!("{sql} => {}", s["error"].as_str().unwrap_or("ok"))
        })
        .collect();
    let counts_context = format!("{:?}\nstatements: {sent:#?}", counts[0]);
    assert_eq!(
        counts[0].first("ROWS"),
        counts[0].first("IDS"),
        "{counts_context}"
    );
    assert_eq!(
        counts[0].first("LIVE"),
        Some(live.to_string().as_str()),
        "{counts_context}"
    );
    assert!(live > 0);
    let watermark = client
        .execute(
            "SELECT COUNT(*) AS \"N\" FROM \"_SFPIPE_STATE\" WHERE \"OBJECT_NAME\" = 'Account'",
            1,
        )
        .await
        .expect("state");
    assert_eq!(watermark[0].first("N"), Some("1"));
    assert_eq!(
        queues.depth("merge-dlq").await,
        0,
        "a run failed to merge: {counts_context}"
    );
    drop(watch);
}
