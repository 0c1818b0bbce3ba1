//! `sfpipe run`'s exit code and logs, as a cron job or an orchestrator sees them: 1 when an object
//! did not merge (named, with why), 0 when all did; logs piped are plain text.

#![allow(clippy::expect_used)] // test support: a panic is a failure

use std::process::{Command, Output};

use sfpipe_simulator::{SimConfig, Simulator};

async fn sfpipe_run(sim: &Simulator, dir: &std::path::Path, objects: &str) -> Output {
    sfpipe_run_as(sim, dir, objects, &sim.config().client_secret).await
}

/// `sfpipe run` with the simulator's client id and the given secret.
async fn sfpipe_run_as(
    sim: &Simulator,
    dir: &std::path::Path,
    objects: &str,
    client_secret: &str,
) -> Output {
    let config = sim.config();
    let credentials = dir.join("salesforce.json");
    std::fs::write(
        &credentials,
        serde_json::json!({"flow": "client_credentials", "client_id": config.client_id,
                           "client_secret": client_secret})
        .to_string(),
    )
    .expect("credentials");
    let mut command = Command::new(env!("CARGO_BIN_EXE_sfpipe"));
    command
        .args(["run", "--login-url", sim.url(), "--objects", objects])
        .arg("--credentials")
        .arg(&credentials)
        .arg("--dir")
        .arg(dir.join("out"))
        .env("RUST_LOG", "info");
    // The simulator serves from this runtime: wait for the process off its threads.
    tokio::task::spawn_blocking(move || command.output().expect("run sfpipe"))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfpipe_run_exits_1_naming_the_object_that_did_not_merge() {
    let sim = Simulator::start_local(SimConfig {
        rows: 20,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");

    let failed = sfpipe_run(&sim, dir.path(), "Account,NoSuch__c").await;
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAILED NoSuch__c: dead-lettered in extract"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of the run's objects did not merge: NoSuch__c"),
        "{stderr}"
    );
    assert!(
        stderr.contains("INFO"),
        "no logs at RUST_LOG=info: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in piped logs: {stderr}"
    );

    let merged = sfpipe_run(&sim, dir.path(), "Account").await;
    assert_eq!(
        merged.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&merged.stdout),
        String::from_utf8_lossy(&merged.stderr)
    );
}

/// Credentials of another org: the run checks the login before anything else and stops at once
/// with the advice and exit code 1, without printing the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_another_org_stop_the_run_with_the_advice() {
    let sim = Simulator::start_local(SimConfig {
        rows: 5,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = sfpipe_run_as(&sim, dir.path(), "Account,Contact", "another-orgs-secret").await;
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("Salesforce login failed")
            && stderr.contains("Check the credentials in the Salesforce secret"),
        "{stderr}"
    );
    assert!(!stdout.contains("another-orgs-secret") && !stderr.contains("another-orgs-secret"));
}
