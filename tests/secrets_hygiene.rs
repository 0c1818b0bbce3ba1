//! Secrets never reach a log line or an error message. The pipeline runs with known secret values
//! (every Salesforce login flow, faults that make it log and fail), with every log event at TRACE
//! captured; then no secret value may appear in the logs, in any error's text or Debug output, or in
//! any dead-letter reason.

use std::io::Write;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;
use sfpipe_shared::salesforce::Credentials;
use sfpipe_shared::snowflake::{KeyPairJwt, SnowflakeAuth, SnowflakeSettings};
use sfpipe_simulator::{DEMO_PRIVATE_KEY_PEM, Fault, SimConfig};
use sfpipe_tests::harness::{Harness, HarnessOptions};

const CLIENT_SECRET: &str = "cs-7f3a9e-known-client-secret";
const PASSWORD: &str = "pw-known-password-91c2";
const REFRESH_TOKEN: &str = "rt-known-refresh-token-55d1";
const OAUTH_TOKEN: &str = "sf-oauth-known-token-0c44";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines of the private key's body: any of them in a log would leak the key.
fn key_fragments() -> Vec<String> {
    DEMO_PRIVATE_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_an_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let sim_config = SimConfig {
        client_secret: CLIENT_SECRET.into(),
        password: PASSWORD.into(),
        refresh_token: REFRESH_TOKEN.into(),
        rows: 40,
        session_calls: Some(12),
        ..HarnessOptions::default().sim
    };
    let mut texts: Vec<String> = Vec::new();

    // The pipeline, with sessions expiring, a 5xx, a dropped page and a failed job.
    let harness = Harness::start(HarnessOptions {
        sim: sim_config.clone(),
        objects: vec!["Account", "Contact", "Opportunity"],
        ..HarnessOptions::default()
    })
    .await;
    harness.sim.inject(vec![
        Fault {
            path_contains: "/jobs/query".into(),
            drop_mid_body: false,
            status: 503,
            error_code: "SERVER_UNAVAILABLE".into(),
            message: "try later".into(),
            remaining: 2,
        },
        Fault {
            path_contains: "/results".into(),
            drop_mid_body: true,
            status: 200,
            error_code: String::new(),
            message: String::new(),
            remaining: 1,
        },
    ]);
    harness.sim.fail_jobs("Opportunity", 1);
    let result = harness.run().await;
    assert!(
        !result.dead_letters.is_empty(),
        "the failed job was expected in a DLQ"
    );
    texts.extend(result.dead_letters.iter().map(|d| format!("{d:?}")));

    // Every login flow, right and wrong, through sfpipe's client.
    let sim = &harness.sim;
    let config = sim.config().clone();
    let flows = [
        Credentials::JwtBearer {
            client_id: config.client_id.clone(),
            username: config.username.clone(),
            private_key_pem: SecretString::from(DEMO_PRIVATE_KEY_PEM),
            audience: None,
        },
        Credentials::RefreshToken {
            client_id: config.client_id.clone(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
        },
        Credentials::Password {
            client_id: config.client_id.clone(),
            client_secret: SecretString::from(CLIENT_SECRET),
            username: config.username.clone(),
            password: SecretString::from(PASSWORD),
        },
        Credentials::Soap {
            username: config.username.clone(),
            password: SecretString::from(PASSWORD),
        },
        // Wrong ones: the secret is sent and refused.
        Credentials::Password {
            client_id: config.client_id.clone(),
            client_secret: SecretString::from(CLIENT_SECRET),
            username: "someone@else".into(),
            password: SecretString::from(PASSWORD),
        },
        Credentials::RefreshToken {
            client_id: "another-app".into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            refresh_token: SecretString::from(REFRESH_TOKEN),
        },
    ];
    for credentials in flows {
        texts.push(format!("{credentials:?}"));
        let client = sfpipe_tests::client_with(sim, credentials);
        texts.push(format!("{client:?}"));
        match client.describe_global().await {
            Ok(_) => {}
            Err(error) => texts.push(format!("{error} / {error:?}")),
        }
    }

    // Snowflake credentials: settings, clients and their errors. The client is pointed at a
    // closed port on 127.0.0.1: a signed JWT never leaves this machine, network or not.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let secret = SecretString::from(
        serde_json::json!({
            "account": "acct", "user": "u", "private_key": DEMO_PRIVATE_KEY_PEM,
            "database": "d", "schema": "s", "stage": "d.s.st", "warehouse": "w",
            "url": format!("http://127.0.0.1:{closed_port}")
        })
        .to_string(),
    );
    let settings = SnowflakeSettings::from_secret_json(&secret, |_| None).expect("settings");
    texts.push(format!("{settings:?}"));
    let client = settings.client().expect("client");
    texts.push(format!("{client:?}"));
    let unreachable = client
        .execute("SELECT 1", 1)
        .await
        .expect_err("no Snowflake here");
    assert!(
        format!("{unreachable:?}").contains("Connection refused"),
        "the client went elsewhere than the closed local port: {unreachable:?}"
    );
    texts.push(format!("{unreachable} / {unreachable:?}"));
    let jwt = KeyPairJwt::new("acct", "u", &SecretString::from(DEMO_PRIVATE_KEY_PEM)).expect("key");
    texts.push(format!("{:?}", SnowflakeAuth::KeyPair(jwt)));
    texts.push(format!(
        "{:?}",
        SnowflakeAuth::OAuth(SecretString::from(OAUTH_TOKEN))
    ));
    let broken = SnowflakeSettings::from_secret_json(
        &SecretString::from(format!(
            "{{\"oauth_token\": \"{OAUTH_TOKEN}\", \"account\": "
        )),
        |_| None,
    )
    .expect_err("malformed");
    texts.push(format!("{broken} / {broken:?}"));

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.lines().count() > 50,
        "too few log lines captured ({}): is logging on?",
        logs.lines().count()
    );
    let mut secrets = vec![
        CLIENT_SECRET.to_string(),
        PASSWORD.to_string(),
        REFRESH_TOKEN.to_string(),
        OAUTH_TOKEN.to_string(),
    ];
    secrets.extend(key_fragments());
    for secret in &secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("a secret reached a log line: {line}");
        }
        if let Some(text) = texts.iter().find(|t| t.contains(secret.as_str())) {
            panic!("a secret reached an error or Debug output: {text}");
        }
    }
}
