//! The bad-input catalogue: each test feeds sfpipe one kind of bad input and checks that it gives a
//! clear error naming what is wrong and what to do, that the input reaches a dead-letter queue with
//! that reason when it came through a queue, and that nothing partial is left behind.
//! (CSV edge cases, invalid UTF-8 and broken gzip are in the warehouse conformance suite, which
//! runs on SQLite and on Snowflake.)

use std::sync::Arc;

use secrecy::SecretString;
use sfpipe_shared::contracts::{Contract, MergeMessage, ObjectName, RunLayout};
use sfpipe_shared::local::pipeline::DeadLetter;
use sfpipe_shared::local::{EnvSecrets, NoEvents};
use sfpipe_shared::ports::{MAX_MESSAGE_BYTES, OutgoingMessage, Secrets, bytes_stream};
use sfpipe_shared::salesforce::{Credentials, SalesforceError};
use sfpipe_shared::snowflake::SnowflakeSettings;
use sfpipe_shared::stages::Stage;
use sfpipe_shared::stages::extract::FieldSelection;
use sfpipe_simulator::SimConfig;
use sfpipe_tests::harness::{Harness, HarnessOptions};

/// Sends raw bodies to a stage's queue, drains the pipeline, and returns the dead letters.
async fn dead_letters(harness: &Harness, stage: Stage, bodies: &[String]) -> Vec<DeadLetter> {
    let queue = harness.pipeline.queue(stage);
    for (n, body) in bodies.iter().enumerate() {
        let mut message = OutgoingMessage::new(body.clone(), format!("bad-{n}"));
        if stage == Stage::Merge {
            message = message.in_group("bad");
        }
        queue.send(message).await.expect("send");
    }
    harness.pipeline.drain(Arc::new(NoEvents)).await
}

fn extract_body(object: &str) -> String {
    serde_json::json!({
        "v": 1, "run_id": "20260101T000000Z-0badbad0", "object": object, "mode": "full",
        "window": {"until": "2026-01-01T00:00:00Z"}
    })
    .to_string()
}

fn tables(harness: &Harness) -> Vec<String> {
    let connection = rusqlite::Connection::open(&harness.warehouse_path).expect("open");
    let mut statement = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name")
        .expect("prepare");
    statement
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("names")
}

#[tokio::test]
async fn malformed_json_reaches_each_stages_dead_letter_queue() {
    let harness = Harness::start(HarnessOptions::default()).await;
    for stage in [Stage::Extract, Stage::Upload, Stage::Merge] {
        let dead = dead_letters(&harness, stage, &["{\"v\": 1, \"run_id\": ".into()]).await;
        let letter = dead
            .iter()
            .find(|d| {
                d.body.starts_with("{\"v\": 1, \"run_id\": ")
                    && d.queue.contains(&stage.to_string())
            })
            .unwrap_or_else(|| panic!("{stage}: {dead:#?}"));
        assert!(
            letter.reason.contains("not valid JSON"),
            "{}",
            letter.reason
        );
    }
}

#[tokio::test]
async fn an_oversized_message_is_refused_with_its_size_and_the_limit() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let body = format!("{{\"v\":1,\"pad\":\"{}\"}}", "x".repeat(MAX_MESSAGE_BYTES));
    let size = body.len();
    let error = harness
        .pipeline
        .queue(Stage::Upload)
        .send(OutgoingMessage::new(body, "big".into()))
        .await
        .expect_err("too large");
    let text = error.to_string();
    assert!(
        text.contains(&format!("{size} bytes"))
            && text.contains(&format!("{MAX_MESSAGE_BYTES}-byte limit")),
        "{text}"
    );
    assert!(harness.pipeline.pending(Stage::Upload).is_empty());
}

#[tokio::test]
async fn an_unknown_contract_version_is_dead_lettered_with_the_version() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let body = serde_json::json!({"v": 7, "run_id": "r", "object": "Account"}).to_string();
    let dead = dead_letters(&harness, Stage::Extract, &[body]).await;
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(
        dead[0].reason.contains("contract version 7"),
        "{}",
        dead[0].reason
    );
    assert!(tables(&harness).is_empty());
}

#[tokio::test]
async fn an_unknown_object_is_dead_lettered_with_what_to_do() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let dead = dead_letters(&harness, Stage::Extract, &[extract_body("NoSuchThing__c")]).await;
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let reason = &dead[0].reason;
    assert!(
        reason.contains("NoSuchThing__c") && reason.contains("remove it from the object list"),
        "{reason}"
    );
    assert!(tables(&harness).is_empty());
}

#[tokio::test]
async fn hostile_object_names_never_reach_soql_or_sql() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let hostile = [
        "Account\"; DROP TABLE Account; --",
        "Account WHERE Id != null",
        "Account'",
        "Account; DELETE FROM Contact",
        "Accöunt",
        "Account\u{202e}",
        "../../etc/passwd",
        "",
        &"A".repeat(300),
    ];
    let bodies: Vec<String> = hostile.iter().map(|o| extract_body(o)).collect();
    let dead = dead_letters(&harness, Stage::Extract, &bodies).await;
    assert_eq!(dead.len(), hostile.len(), "{dead:#?}");
    for letter in &dead {
        assert!(
            letter.reason.contains("invalid Salesforce object name"),
            "{}",
            letter.reason
        );
    }
    assert!(tables(&harness).is_empty());
    assert_eq!(
        harness.sim.api_calls(),
        0,
        "a hostile name reached Salesforce"
    );
}

#[tokio::test]
async fn hostile_field_names_in_the_configuration_stop_their_object() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account", "Contact"],
        fields: vec![(
            "Contact",
            FieldSelection {
                include: vec!["LastName".into(), "Name, (SELECT Id FROM Cases)".into()],
                exclude: vec![],
            },
        )],
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    assert_eq!(result.dead_letters.len(), 1, "{:#?}", result.dead_letters);
    let reason = &result.dead_letters[0].reason;
    assert!(
        reason.contains("Name, (SELECT Id FROM Cases)")
            && reason.contains("is not a field of Contact")
            && reason.contains("fix the list"),
        "{reason}"
    );
    assert_eq!(
        tables(&harness),
        ["Account"],
        "only the healthy object was loaded"
    );
    let account = harness
        .check()
        .into_iter()
        .find(|c| c.object == "Account")
        .expect("Account checked");
    assert!(account.is_exact(), "{account:#?}");
}

#[tokio::test]
async fn a_field_removed_between_runs_keeps_its_column_and_the_run_ends_exact() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account"],
        ..HarnessOptions::default()
    })
    .await;
    harness.run().await;
    assert!(harness.sim.remove_field("Account", "Website"));
    harness.mutate();
    let result = harness.run().await;
    assert!(result.dead_letters.is_empty(), "{:#?}", result.dead_letters);
    harness.assert_exact("after the field was removed");
    let connection = rusqlite::Connection::open(&harness.warehouse_path).expect("open");
    let kept: i64 = connection
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('Account') WHERE name = 'Website'",
            [],
            |row| row.get(0),
        )
        .expect("columns");
    assert_eq!(kept, 1, "a column was dropped");
}

/// A run whose stored part was cut short (a truncated page written by a broken writer, or a
/// damaged object): the merge fails naming the file, and the table is left as it was.
#[tokio::test]
async fn a_truncated_part_fails_its_merge_and_leaves_the_table_as_it_was() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account"],
        ..HarnessOptions::default()
    })
    .await;
    let first = harness.run().await;
    let before = harness.snapshot();
    let object = ObjectName::new("Account").unwrap();
    let run_id = first.report.run_id.clone();
    let blobs = harness.pipeline.blobs().clone();
    let layout = RunLayout::new(&object, &run_id);
    // A copy of the merged run under a new run id, with its first part cut in half.
    let copy = run_id.child('a').expect("child run id");
    let target = RunLayout::new(&object, &copy);
    let schema = blobs.get_bytes(&layout.schema()).await.expect("schema");
    blobs
        .put(&target.schema(), bytes_stream(schema))
        .await
        .expect("put schema");
    let part = blobs.get_bytes(&layout.part(1)).await.expect("part");
    let cut = part.slice(..part.len() / 2);
    blobs
        .put(&target.part(1), bytes_stream(cut))
        .await
        .expect("put part");
    let mut manifest: serde_json::Value = serde_json::from_slice(
        &blobs
            .get_bytes(&layout.manifest(1))
            .await
            .expect("manifest"),
    )
    .expect("manifest json");
    manifest["key"] = serde_json::Value::String(target.part(1));
    blobs
        .put(
            &target.manifest(1),
            bytes_stream(serde_json::to_vec(&manifest).expect("json")),
        )
        .await
        .expect("put manifest");
    let merge = MergeMessage {
        v: 1,
        run_id: copy.clone(),
        object: object.clone(),
        parts: 1,
        schema_key: target.schema(),
        mode: sfpipe_shared::contracts::Mode::Full,
        window: sfpipe_shared::contracts::Window {
            since: None,
            until: chrono::Utc::now(),
        },
    };
    let dead = dead_letters(&harness, Stage::Merge, &[merge.to_body()]).await;
    let letter = dead
        .iter()
        .find(|d| d.queue.contains("merge"))
        .unwrap_or_else(|| panic!("{dead:#?}"));
    assert!(
        letter.reason.contains(&target.part(1))
            && letter.reason.contains("not a valid gzipped CSV"),
        "{}",
        letter.reason
    );
    assert_eq!(
        harness.snapshot(),
        before,
        "a failed merge changed the warehouse"
    );
}

#[tokio::test]
async fn a_missing_secret_names_itself_and_what_to_do() {
    let error = EnvSecrets
        .get("sfpipe/does-not-exist")
        .await
        .expect_err("missing");
    let text = error.to_string();
    assert!(
        text.contains("sfpipe/does-not-exist") && text.contains("create it"),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_private_key_is_refused_without_being_echoed() {
    let salesforce = Credentials::from_secret_json(&SecretString::from(
        serde_json::json!({
            "flow": "jwt_bearer", "client_id": "c", "username": "u",
            "private_key": "-----BEGIN PRIVATE KEY-----\nNOT-A-KEY-SECRET-BYTES\n-----END PRIVATE KEY-----"
        })
        .to_string(),
    ))
    .expect_err("refused")
    .to_string();
    assert!(salesforce.contains("private_key"), "{salesforce}");
    assert!(
        !salesforce.contains("NOT-A-KEY-SECRET-BYTES"),
        "{salesforce}"
    );
    let snowflake = SnowflakeSettings::from_secret_json(
        &SecretString::from(
            serde_json::json!({
                "account": "a", "user": "u", "database": "d", "schema": "s", "stage": "d.s.st",
                "warehouse": "w",
                "private_key": "-----BEGIN PRIVATE KEY-----\nNOT-A-KEY-SECRET-BYTES\n-----END PRIVATE KEY-----"
            })
            .to_string(),
        ),
        |_| None,
    )
    .expect("settings")
    .client()
    .expect_err("refused")
    .to_string();
    assert!(snowflake.contains("openssl genrsa"), "{snowflake}");
    assert!(!snowflake.contains("NOT-A-KEY-SECRET-BYTES"), "{snowflake}");
}

/// Credentials of another org (a wrong client id or secret): the login fails, saying to check the
/// secret, and is not retried; the run's objects are dead-lettered with that reason rather than
/// retried forever, and nothing is written. (`sfpipe run` checks the login before it starts and
/// stops with the same advice: `cli/tests/exit_codes.rs`.)
#[tokio::test]
async fn credentials_for_another_org_fail_the_login_with_advice() {
    let sim = sfpipe_tests::simulator(Default::default()).await;
    let client = sfpipe_tests::client_with(
        &sim,
        Credentials::ClientCredentials {
            client_id: "someone-elses-app".into(),
            client_secret: SecretString::from("wrong"),
        },
    );
    let error = client.describe_global().await.expect_err("refused");
    assert!(matches!(error, SalesforceError::Auth { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("Check the credentials in the Salesforce secret"),
        "{error}"
    );
    assert!(!error.is_retryable());

    let harness = Harness::start(HarnessOptions {
        client_secret: Some("another-orgs-secret".into()),
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    let mut stopped: Vec<String> = result
        .dead_letters
        .iter()
        .map(|dead| {
            assert!(
                dead.reason
                    .contains("Check the credentials in the Salesforce secret"),
                "{}",
                dead.reason
            );
            dead.field("object")
                .expect("a dead letter names its object")
        })
        .collect();
    stopped.sort_unstable();
    assert_eq!(stopped, ["Account", "Contact"]);
    assert!(tables(&harness).is_empty());
}

#[tokio::test]
async fn pages_that_do_not_add_up_to_the_job_record_count_fail_the_run_loudly() {
    for (sim, what) in [
        (
            SimConfig {
                miscounted_jobs: true,
                ..HarnessOptions::default().sim
            },
            "numberRecordsProcessed",
        ),
        (
            SimConfig {
                without_record_counts: true,
                ..HarnessOptions::default().sim
            },
            "Sforce-NumberOfRecords",
        ),
    ] {
        let harness = Harness::start(HarnessOptions {
            sim,
            objects: vec!["Account"],
            ..HarnessOptions::default()
        })
        .await;
        let result = harness.run().await;
        // A miscounted job fails once, at its merge request; pages without a count each fail.
        assert!(!result.dead_letters.is_empty(), "{what}: nothing failed");
        for dead in &result.dead_letters {
            assert!(
                dead.reason.contains("Account") && dead.reason.contains(what),
                "{what}: {}",
                dead.reason
            );
        }
        let merged = result
            .merged_records(harness.pipeline.blobs().as_ref())
            .await;
        assert!(
            merged.values().all(Option::is_none),
            "{what}: a run whose counts disagree was merged"
        );
        assert!(
            tables(&harness).is_empty(),
            "{what}: {:?}",
            tables(&harness)
        );
    }
}

#[tokio::test]
async fn a_rest_query_over_the_uri_limit_stops_its_object_with_the_fix() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account", "Contact"],
        rest_objects: vec!["Contact"],
        ..HarnessOptions::default()
    })
    .await;
    // Wide enough that the SOQL in the URI passes Salesforce's 16,384 bytes.
    for n in 0..700 {
        let name: &'static str = Box::leak(format!("Wide_Custom_Field_{n:04}__c").into_boxed_str());
        assert!(harness.sim.add_field("Contact", name, chrono::Utc::now()));
    }
    let result = harness.run().await;
    assert_eq!(result.dead_letters.len(), 1, "{:#?}", result.dead_letters);
    let reason = &result.dead_letters[0].reason;
    assert!(
        reason.contains("Contact")
            && reason.contains("16384-byte limit")
            && reason.contains("SFPIPE_FIELDS"),
        "{reason}"
    );
    let checks = harness.check();
    let account = checks.iter().find(|c| c.object == "Account").unwrap();
    assert!(account.is_exact(), "{account:#?}");
    assert_eq!(tables(&harness), ["Account"], "a partial Contact table");
}

#[tokio::test]
async fn a_result_page_whose_header_is_not_the_run_schema_is_not_stored() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            reordered_result_columns: true,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account"],
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    assert!(!result.dead_letters.is_empty(), "the part was accepted");
    for dead in &result.dead_letters {
        assert!(
            dead.queue.contains("upload")
                && dead.reason.contains("Account")
                && dead.reason.contains("header"),
            "{}: {}",
            dead.queue,
            dead.reason
        );
    }
    let layout = RunLayout::new(&ObjectName::new("Account").unwrap(), &result.report.run_id);
    assert!(
        harness
            .pipeline
            .blobs()
            .head(&layout.manifest(1))
            .await
            .unwrap()
            .is_none(),
        "a part with another header counts as stored"
    );
    assert!(tables(&harness).is_empty(), "{:?}", tables(&harness));
}
