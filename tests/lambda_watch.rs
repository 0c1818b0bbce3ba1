//! The four Lambda functions, unchanged, under `cargo lambda watch` (the local Lambda emulator):
//! invoked with the sample events in `events/`, against SQS and S3 on moto, the Salesforce
//! simulator and the Snowflake SQL API harness. The test plays the SQS event source mappings: it
//! receives from each queue, invokes the function with the batch, and deletes what succeeded.
//!
//! moto enforces IAM here: each function runs (in its own `cargo lambda watch`) with the key of
//! an IAM user holding exactly the policies SAM gives that function's role in `template.yaml`,
//! and the event source mapping plays with the same key, as Lambda uses the function's role. A
//! call the template does not allow fails the test.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use sfpipe_simulator::{Fault, SimConfig};
use sfpipe_tests::moto::Moto;
use sfpipe_tests::snowflake::{self, HarnessOptions, SnowflakeHarness};

const BUCKET: &str = "sfpipe-lambda-test";
/// The stack's alarm topic, which each dead letter reaches (a queue subscribed to it shows what).
const ALARM_TOPIC: &str = "sfpipe-alarms";
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
    fn start(function: &str, env: &BTreeMap<&str, String>, dir: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join(format!("cargo-lambda-watch-{function}.log"));
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

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log();
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

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The template's queues by logical id, with the names the test gives them and the stage (or dead
/// letters) they carry.
const QUEUES: [(&str, &str, &str, bool); 7] = [
    ("ExtractQueue", "sfpipe-extract", "extract", false),
    (
        "ExtractDeadLetterQueue",
        "sfpipe-extract-dlq",
        "extract-dlq",
        false,
    ),
    ("UploadQueue", "sfpipe-upload", "upload", false),
    (
        "UploadDeadLetterQueue",
        "sfpipe-upload-dlq",
        "upload-dlq",
        false,
    ),
    ("MergeQueue", "sfpipe-merge.fifo", "merge", true),
    (
        "MergeDeadLetterQueue",
        "sfpipe-merge-dlq.fifo",
        "merge-dlq",
        true,
    ),
    (
        "JobLoaderDeadLetterQueue",
        "sfpipe-job-loader-dlq",
        "job-loader-dlq",
        false,
    ),
];

/// What `template.yaml` refers to, bound to what this test creates on moto.
fn template_bindings(moto: &Moto) -> serde_json::Value {
    let mut resources = serde_json::Map::new();
    for (logical, name, _, _) in QUEUES {
        resources.insert(
            logical.into(),
            serde_json::json!({
                "Ref": format!("{}/{ACCOUNT}/{name}", moto.url),
                "Arn": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"),
                "QueueName": name,
            }),
        );
    }
    resources.insert(
        "DataBucket".into(),
        serde_json::json!({"Ref": BUCKET, "Arn": format!("arn:aws:s3:::{BUCKET}")}),
    );
    resources.insert(
        "AlarmTopic".into(),
        serde_json::json!({
            "Ref": format!("arn:aws:sns:{REGION}:{ACCOUNT}:{ALARM_TOPIC}"),
            "TopicName": ALARM_TOPIC,
        }),
    );
    resources.insert(
        "AlarmTopicKey".into(),
        serde_json::json!({
            "Ref": "0b0e0a1c-alarm-key",
            "Arn": format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/0b0e0a1c-alarm-key"),
        }),
    );
    serde_json::json!({
        "parameters": {
            "SalesforceSecretArn": format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:sfpipe/salesforce"),
            "SnowflakeSecretArn": format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:sfpipe/snowflake"),
            "SnowflakeStage": snowflake::STAGE,
        },
        "resources": resources,
    })
}

/// The alarm topic and a queue subscribed to it, made by the administrator.
struct AlarmTopic {
    arn: String,
    sqs: aws_sdk_sqs::Client,
    subscriber: String,
}

async fn alarm_topic_with_subscriber(admin: &aws_config::SdkConfig) -> AlarmTopic {
    let (arn, sqs, subscriber) =
        sfpipe_tests::moto::topic_with_subscriber(admin, ALARM_TOPIC).await;
    AlarmTopic {
        arn,
        sqs,
        subscriber,
    }
}

impl AlarmTopic {
    /// The (subject, message) of each notice, waiting a little for `expected` of them.
    async fn notices(&self, expected: usize) -> Vec<(String, String)> {
        sfpipe_tests::moto::sns_notices(&self.sqs, &self.subscriber, expected).await
    }
}

struct Queues {
    /// The test's own view (depths), as an administrator.
    admin: aws_sdk_sqs::Client,
    /// The event source mapping of each stage, with that function's role.
    mapping: BTreeMap<&'static str, aws_sdk_sqs::Client>,
    urls: BTreeMap<&'static str, String>,
}

impl Queues {
    async fn create(admin: aws_sdk_sqs::Client) -> Self {
        let mut urls = BTreeMap::new();
        for (_, name, queue, fifo) in QUEUES {
            let mut request = admin.create_queue().queue_name(name);
            if fifo {
                request = request.attributes(QueueAttributeName::FifoQueue, "true");
            }
            if !queue.ends_with("dlq") {
                request = request.attributes(QueueAttributeName::VisibilityTimeout, "10");
            }
            let url = request.send().await.expect("queue").queue_url.expect("url");
            urls.insert(queue, url);
        }
        Self {
            admin,
            mapping: BTreeMap::new(),
            urls,
        }
    }

    async fn depth(&self, stage: &str) -> u64 {
        let attributes = self
            .admin
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

    /// One batch from the queue as the SQS event Lambda would get, with its receipt handles,
    /// received with the function's role as the event source mapping does.
    async fn batch(&self, stage: &str) -> Option<(serde_json::Value, Vec<(String, String)>)> {
        let received = self.mapping[stage]
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
                    "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{stage}"),
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        Some((serde_json::json!({ "Records": records }), handles))
    }
}

/// Plays the event source mappings until every stage queue is empty; what each invocation did.
async fn drain(queues: &Queues, watches: &BTreeMap<&str, Watch>) -> Vec<String> {
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
                    watches[stage].port
                ))
                .json(&event)
                .send()
                .await
                .expect("invoke")
                .json()
                .await
                .unwrap_or_else(|e| panic!("{stage}: {e}\n{}", logs(watches)));
            let failed: Vec<&str> = response["batchItemFailures"]
                .as_array()
                .unwrap_or_else(|| panic!("{stage}: {response}\n{}", logs(watches)))
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect();
            invocations.push(format!(
                "{stage}: {} messages, {} failed",
                handles.len(),
                failed.len()
            ));
            // The mapping's delete, the only one: the function deletes nothing itself.
            for (id, receipt) in handles {
                if !failed.contains(&id.as_str()) {
                    queues.mapping[stage]
                        .delete_message()
                        .queue_url(&queues.urls[stage])
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{stage}: the mapping could not delete a message it was told was done: {e:?}")
                        });
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
                logs(watches)
            );
        }
    }

    invocations
}

fn logs(watches: &BTreeMap<&str, Watch>) -> String {
    watches
        .iter()
        .map(|(function, watch)| format!("--- {function} ---\n{}", watch.log_tail()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every line of a function's log where AWS (moto) refused a call for want of a permission.
fn denied_calls(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("AccessDenied") || line.contains("access denied"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_functions_run_under_cargo_lambda_watch_each_with_its_template_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start_enforcing_iam().await;
    let roles = moto.template_roles(&template_bindings(&moto));
    let admin = moto.sdk_config_as(&roles.admin).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&admin)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("bucket");
    // The scheduled objects are listed in the bucket, as a list of hundreds must be.
    s3.put_object()
        .bucket(BUCKET)
        .key(format!("{PREFIX}/config/objects.txt"))
        .body(b"# what the schedule loads\nAccount\n".to_vec().into())
        .send()
        .await
        .expect("object list");
    let mut queues = Queues::create(aws_sdk_sqs::Client::new(&admin)).await;
    let alarm_topic = alarm_topic_with_subscriber(&admin).await;
    let role = |function: &str| {
        roles
            .functions
            .get(function)
            .unwrap_or_else(|| panic!("template.yaml has no role for {function}"))
            .clone()
    };
    for stage in ["extract", "upload", "merge"] {
        let config = moto.sdk_config_as(&role(stage)).await;
        queues
            .mapping
            .insert(stage, aws_sdk_sqs::Client::new(&config));
    }
    let sim = sfpipe_tests::simulator(SimConfig {
        rows: 300,
        bulk_polls_to_complete: 0,
        // Uploads follow the locator chain, so upload sends to its own queue too.
        without_result_pages: true,
        ..SimConfig::default()
    })
    .await;
    // The stage reads the parts as Snowflake's storage integration would: with the stage role.
    let harness = SnowflakeHarness::start(
        &moto,
        BUCKET,
        PREFIX,
        HarnessOptions {
            s3_credentials: Some((
                roles.stage_reader.access_key_id.clone(),
                roles.stage_reader.secret_access_key.clone(),
            )),
            ..HarnessOptions::default()
        },
    )
    .await;

    let config = sim.config();
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    env.insert("AWS_ENDPOINT_URL", moto.url.clone());
    env.insert("AWS_REGION", REGION.into());
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
    env.insert("SFPIPE_OBJECTS", "@config/objects.txt".into());
    env.insert("SFPIPE_ALARM_TOPIC_ARN", alarm_topic.arn.clone());
    env.insert("SFPIPE_FIRST_POLL_SECONDS", "0".into());
    // Several pages a run, so the locator chain queues parts on the upload queue.
    env.insert("SFPIPE_PAGE_RECORDS", "100".into());
    // Retries a second apart, so a retried message does not hold the test up.
    env.insert("SFPIPE_RETRY_BASE_SECONDS", "1".into());
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
            "warehouse": "LOADING",
        })
        .to_string(),
    );
    env.insert("RUST_LOG", "info".into());
    // One emulator per function, each with that function's key (cargo lambda watch gives every
    // function it runs the same environment).
    let mut watches: BTreeMap<&str, Watch> = BTreeMap::new();
    for function in ["job-loader", "extract", "upload", "merge"] {
        let key = role(function);
        let mut function_env = env.clone();
        function_env.insert("AWS_ACCESS_KEY_ID", key.access_key_id);
        function_env.insert("AWS_SECRET_ACCESS_KEY", key.secret_access_key);
        watches.insert(function, Watch::start(function, &function_env, dir.path()));
    }

    let events = workspace_root().join("events");
    // The loader's triggers: a schedule, a full refresh, a backfill window, a formula refresh,
    // a reconciliation of Ids.
    for file in [
        "schedule.json",
        "full-refresh.json",
        "backfill.json",
        "formula-refresh.json",
        "reconcile.json",
    ] {
        let report = watches["job-loader"].invoke_file("job-loader", &events.join(file));
        assert!(
            report["run_id"].is_string() && report["queued"].is_array(),
            "{file}: {report}"
        );
        if file == "schedule.json" {
            assert_eq!(
                report["queued"][0]["object"], "Account",
                "the schedule loads the list in the bucket: {report}"
            );
        }
    }
    // The SQS samples: every function answers a batch response (the sample runs do not exist in
    // the simulator, so some of their messages fail or are dead-lettered; none may crash).
    for (function, file) in [
        ("extract", "extract-sqs.json"),
        ("upload", "upload-sqs.json"),
        ("merge", "merge-sqs.json"),
    ] {
        let response = watches[function].invoke_file(function, &events.join(file));
        assert!(
            response["batchItemFailures"].is_array(),
            "{function}: {response}"
        );
    }

    // Retryable failures with real receipts, so every function's back-off (ChangeMessageVisibility)
    // runs: Salesforce answers 503 to more attempts than the client makes on its own, first to
    // job creation (extract), then to result downloads (upload).
    for path in ["/jobs/query", "/results"] {
        sim.inject(vec![Fault {
            path_contains: path.into(),
            drop_mid_body: false,
            status: 503,
            error_code: "SERVER_UNAVAILABLE".into(),
            message: "injected outage".into(),
            remaining: 5,
        }]);
    }
    let mut invocations = drain(&queues, &watches).await;
    // A second scheduled-style run: the watermark now exists, so the loader reads the open holes.
    let incremental = dir.path().join("incremental.json");
    std::fs::write(&incremental, r#"{"objects": ["Account"]}"#).expect("event file");
    let report = watches["job-loader"].invoke_file("job-loader", &incremental);
    assert!(report["run_id"].is_string(), "{report}");
    invocations.extend(drain(&queues, &watches).await);
    let retried = invocations
        .iter()
        .filter(|i| !i.ends_with(" 0 failed"))
        .count();
    assert!(
        retried >= 2,
        "the injected outages caused no retry: {invocations:#?}"
    );

    // No function was refused a call: every permission the code uses is in the template.
    let denied: Vec<String> = watches
        .iter()
        .flat_map(|(function, watch)| {
            denied_calls(&watch.log())
                .into_iter()
                .map(|line| format!("{function}: {line}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        denied.is_empty(),
        "template.yaml does not allow calls the functions make:\n{}",
        denied.join("\n")
    );

    // Every live Account is in Snowflake exactly once.
    let client = harness.client();
    let counts = client
        .execute(
            "SELECT COUNT(*) AS \"ROWS\", COUNT(DISTINCT \"ID\") AS \"IDS\", \
             COUNT(CASE WHEN NOT \"ISDELETED\" THEN 1 END) AS \"LIVE\" FROM \"ACCOUNT\"",
            1,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&watches)));
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

    // `sfpipe status` on the stack: the bucket, the three dead-letter queues and Snowflake.
    let snowflake_secret = dir.path().join("snowflake.json");
    std::fs::write(&snowflake_secret, &env["SFPIPE_SNOWFLAKE_CREDENTIALS"]).expect("secret");
    let dead_letter_queues = ["extract-dlq", "upload-dlq", "merge-dlq"];
    let mut dead_letters = 0;
    for queue in dead_letter_queues {
        dead_letters += queues.depth(queue).await;
    }
    let status_options = sfpipe_cli::status::StatusOptions {
        prefix: PREFIX.into(),
        dlq_urls: dead_letter_queues
            .iter()
            .map(|q| queues.urls[*q].clone())
            .collect(),
        queue_urls: ["extract", "upload", "merge"]
            .iter()
            .map(|q| queues.urls[*q].clone())
            .collect(),
        snowflake_credentials: Some(snowflake_secret),
        last: 20,
        json: true,
        ..sfpipe_cli::status::StatusOptions::for_bucket(BUCKET)
    };
    let status = sfpipe_cli::status::status_with(&status_options, Some(admin.clone()))
        .await
        .expect("status of the stack");
    // The flow's queues, as SQS counts them: drained, and each dead-letter queue's count.
    let mut counted_dead_letters = 0;
    for (stage, queue) in ["extract", "upload", "merge"]
        .iter()
        .zip(dead_letter_queues)
    {
        let shown = status
            .queues
            .iter()
            .find(|q| q.stage == *stage)
            .unwrap_or_else(|| panic!("no {stage} queue: {}", status.render()));
        assert_eq!(
            shown.counts.map(|c| c.total()),
            Some(0),
            "{}",
            status.render()
        );
        assert_eq!(
            shown.dead_letters,
            Some(queues.depth(queue).await as usize),
            "{}",
            status.render()
        );
        counted_dead_letters += shown.dead_letters.unwrap_or(0) as u64;
    }
    assert_eq!(counted_dead_letters, dead_letters);
    let account = status
        .objects
        .iter()
        .find(|o| o.object == "Account")
        .unwrap_or_else(|| panic!("{}", status.render()));
    assert!(account.watermark.is_some(), "{}", status.render());
    let merged: Vec<_> = account
        .runs
        .iter()
        .filter(|r| r.stage == "merged")
        .collect();
    assert!(merged.len() >= 2, "{}", status.render());
    assert!(
        merged.iter().all(|r| r.problem.is_none()
            && r.job_id.is_some()
            && r.rows_read == Some(r.records_in_parts)),
        "{}",
        status.render()
    );
    // Each function kept its usage records under the role the template gives it: every merged
    // run says what it cost, and the job-loader's triggers are there for `sfpipe cost`.
    assert!(
        merged
            .iter()
            .all(|r| r.usage.as_ref().is_some_and(|u| u.invocations >= 3)),
        "{}",
        status.render()
    );
    let cost = sfpipe_cli::cost::cost_with(
        &sfpipe_cli::cost::CostOptions::for_bucket(BUCKET, PREFIX),
        Some(admin.clone()),
    )
    .await
    .expect("cost of the stack");
    assert!(
        cost.runs.iter().any(|r| r.object == "_job-loader")
            && cost.usage.salesforce_total() > 0
            && cost.warehouse.resumes > 0,
        "{}",
        cost.render(usize::MAX)
    );
    // Every dead letter of the samples is shown, with the reason the function gave it.
    assert!(dead_letters > 0, "the samples were meant to dead-letter");
    let shown: usize = status
        .objects
        .iter()
        .map(|o| o.dead_letters.len())
        .sum::<usize>()
        + status.unattributed.len();
    assert_eq!(shown as u64, dead_letters, "{}", status.render());
    assert!(
        status
            .objects
            .iter()
            .flat_map(|o| &o.dead_letters)
            .chain(&status.unattributed)
            .all(|d| !d.reason.is_empty() && d.reason != "(no reason recorded)"),
        "{}",
        status.render()
    );

    // The status page of the stack, served: the flow's queues, the objects, a run's parts.
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a free port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(sfpipe_cli::status_page::serve_with(
        listener,
        status_options.clone(),
        Some(admin.clone()),
    ));
    let page = reqwest::get(format!("{base}/"))
        .await
        .expect("GET /")
        .text()
        .await
        .expect("text");
    assert_eq!(status.queues.len(), 3);
    for queue in &status.queues {
        assert!(
            page.contains(&format!(
                "data-stage=\"{}\"><b>{}</b><span class=\"queue\" data-queue=\"{}\" \
                 data-visible=\"0\" data-in-flight=\"0\"",
                queue.stage, queue.stage, queue.queue
            )),
            "{} in the stack's flow: {page}",
            queue.queue
        );
    }
    assert!(page.contains("data-object=\"Account\""), "{page}");
    let run = merged.last().expect("a merged run");
    let run_page = reqwest::get(format!("{base}/object/Account/run/{}", run.run_id))
        .await
        .expect("GET a run");
    assert_eq!(run_page.status(), 200);
    let run_page = run_page.text().await.expect("text");
    assert!(!run.parts.is_empty());
    for part in &run.parts {
        assert!(
            run_page.contains(&format!("<tr data-part=\"{}\">", part.part))
                && run_page.contains(&part.crc64nvme),
            "{part:?}: {run_page}"
        );
    }
    server.abort();

    // Each dead letter reached the alarm topic at once, with its reason, sent by the function
    // under its template role.
    let notices = alarm_topic.notices(dead_letters as usize).await;
    assert_eq!(
        notices.len() as u64,
        dead_letters,
        "one notice per dead letter: {notices:#?}"
    );
    assert!(
        notices.iter().all(
            |(subject, message)| subject.starts_with("sfpipe dead letter: ")
                && message.contains("reason: ")
        ),
        "{notices:#?}"
    );

    // `sfpipe replay` on the stack: the first merged run's merge message, rebuilt from its files,
    // goes to the merge queue; the merge function merges it again and changes nothing.
    let first = merged[0];
    let replayed = sfpipe_cli::replay::replay_with(
        &sfpipe_cli::replay::ReplayOptions {
            object: "Account".into(),
            run: first.run_id.clone(),
            dir: None,
            bucket: Some(BUCKET.into()),
            prefix: PREFIX.into(),
            merge_queue_url: Some(queues.urls["merge"].clone()),
        },
        Some(admin.clone()),
    )
    .await
    .expect("replay on the stack");
    assert!(
        matches!(replayed, sfpipe_cli::replay::Replayed::Queued { .. }),
        "{replayed:?}"
    );
    let before = client
        .execute(
            "SELECT COUNT(*) AS \"N\", MAX(\"_SFPIPE_LOADED_AT\") AS \"LATEST\" FROM \"ACCOUNT\"",
            1,
        )
        .await
        .expect("before");
    let replay_invocations = drain(&queues, &watches).await;
    assert!(
        replay_invocations.iter().any(|i| i.starts_with("merge")),
        "the merge function did not run: {replay_invocations:?}"
    );
    let after = client
        .execute(
            "SELECT COUNT(*) AS \"N\", MAX(\"_SFPIPE_LOADED_AT\") AS \"LATEST\" FROM \"ACCOUNT\"",
            1,
        )
        .await
        .expect("after");
    assert_eq!(before[0].rows, after[0].rows, "the replay changed Account");
    assert_eq!(queues.depth("merge-dlq").await, 0);
    drop(watches);

    // A merge that fails for good forgets its warehouse request (no run above did): its role may
    // delete that record, and no other object of the run.
    let keys: Vec<String> = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(format!("{PREFIX}/runs/"))
        .send()
        .await
        .expect("list")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let request = keys
        .iter()
        .find(|k| k.ends_with("/_merge-request.json"))
        .unwrap_or_else(|| panic!("no merge request recorded: {keys:#?}"));
    let part = keys
        .iter()
        .find(|k| k.ends_with(".csv.gz"))
        .unwrap_or_else(|| panic!("no part: {keys:#?}"));
    let merge_config = moto.sdk_config_as(&role("merge")).await;
    let merge_s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&merge_config)
            .force_path_style(true)
            .build(),
    );
    merge_s3
        .delete_object()
        .bucket(BUCKET)
        .key(request)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the merge role may not forget its request: {e:?}"));
    let refused = merge_s3
        .delete_object()
        .bucket(BUCKET)
        .key(part)
        .send()
        .await
        .expect_err("the merge role deleted a part");
    assert_eq!(
        refused.into_service_error().meta().code(),
        Some("AccessDenied")
    );
}
