//! The four handlers end to end: the demo, duplicates, crashes at every step and redelivery, bad
//! messages and unknown objects.

use std::sync::{Arc, Mutex};

use sfpipe_cli::demo::{DemoOptions, DemoState, run_demo};
use sfpipe_cli::verify::compare;
use sfpipe_shared::contracts::Mode;
use sfpipe_shared::ports::{DEAD_LETTER_REASON, OutgoingMessage};
use sfpipe_shared::stages::Stage;
use sfpipe_simulator::{Fault, SimConfig};
use sfpipe_tests::faults::{FailWhen, FaultPlan, SendBehaviour};
use sfpipe_tests::harness::{Harness, HarnessOptions};

#[tokio::test]
async fn the_demo_run_twice_leaves_the_warehouse_equal_to_salesforce() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions::new(dir.path(), 400, 7);

    let first = run_demo(&options).await.unwrap();
    assert!(first.is_exact(), "first run: {first:#?}");
    assert!(first.objects.iter().all(|o| o.mode == Mode::Full));
    assert_eq!(first.objects.len(), 6);
    for object in &first.objects {
        assert_eq!(
            object.extracted, 400,
            "{}: a full run reads every row",
            object.object
        );
        assert_eq!(object.warehouse_live, object.salesforce_live);
    }

    let second = run_demo(&options).await.unwrap();
    assert!(second.is_exact(), "second run: {second:#?}");
    for object in &second.objects {
        assert_eq!(object.mode, Mode::Incremental, "{}", object.object);
        assert!(
            object.extracted > 0 && object.extracted < 100,
            "{}: read {} rows, not just the changes",
            object.object,
            object.extracted
        );
    }

    // The same check, made here from the state the demo left: warehouse and org, field for field.
    let org = DemoState::load(dir.path()).unwrap().unwrap().org();
    assert_eq!(org.rounds.len(), 1);
    for check in compare(&org, &dir.path().join("warehouse.sqlite")).unwrap() {
        assert!(check.is_exact(), "{check:#?}");
        assert_eq!(check.warehouse_rows, check.warehouse_distinct_ids);
        assert_eq!(check.warehouse_live, check.salesforce_live);
        assert!(
            check.salesforce_rows > check.salesforce_live,
            "{}: no deleted rows to flag",
            check.object
        );
    }
}

#[tokio::test]
async fn the_demo_refuses_a_directory_made_with_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    run_demo(&DemoOptions::new(dir.path(), 20, 1))
        .await
        .unwrap();
    let err = run_demo(&DemoOptions::new(dir.path(), 30, 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--fresh"), "{err}");
}

#[tokio::test]
async fn every_message_delivered_twice_still_gives_an_exact_warehouse() {
    let harness = Harness::start(HarnessOptions {
        sends: SendBehaviour {
            duplicate: true,
            ..SendBehaviour::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("first run, duplicated").await;
    harness.mutate();
    harness.run_exact("second run, duplicated").await;
}

#[tokio::test]
async fn replaying_every_message_of_a_finished_run_changes_nothing() {
    let record = Arc::new(Mutex::new(Vec::new()));
    let harness = Harness::start(HarnessOptions {
        sends: SendBehaviour {
            record: Some(record.clone()),
            ..SendBehaviour::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    harness.run().await;
    harness.assert_exact("before the replay");
    let before = harness.snapshot();
    let sent: Vec<(String, OutgoingMessage)> = record.lock().unwrap().drain(..).collect();
    assert!(sent.len() >= 8, "only {} messages were sent", sent.len());
    for (queue, message) in sent {
        let stage = match queue.as_str() {
            "extract" => Stage::Extract,
            "upload" => Stage::Upload,
            _ => Stage::Merge,
        };
        let late = OutgoingMessage {
            dedup_id: format!("{}-late", message.dedup_id),
            ..message
        };
        harness.pipeline.queue(stage).send(late).await.unwrap();
    }
    let dead = harness
        .pipeline
        .drain(Arc::new(sfpipe_shared::local::NoEvents))
        .await;
    assert!(
        dead.is_empty(),
        "late duplicates were dead-lettered: {dead:#?}"
    );
    assert_eq!(
        harness.snapshot(),
        before,
        "a replayed message changed the warehouse"
    );
}

/// Fails each port call of a run in turn, before and after its effect (a crash right after a
/// write), and checks that redelivery always ends in the same exact warehouse.
#[tokio::test]
async fn a_crash_at_any_step_then_redelivery_gives_an_exact_warehouse() {
    let counting = FaultPlan::new(0, FailWhen::Before);
    let clean = Harness::start(HarnessOptions {
        plan: Some(counting.clone()),
        // One object on each read path: Bulk (Account) and REST (Contact).
        rest_objects: vec!["Contact"],
        ..HarnessOptions::default()
    })
    .await;
    clean.run().await;
    clean.assert_exact("clean run");
    let calls = counting.calls();
    assert!(calls > 30, "only {calls} port calls in a run");

    let mut failures = 0;
    for when in [FailWhen::Before, FailWhen::After] {
        for fail_at in 1..=calls {
            let plan = FaultPlan::new(fail_at, when);
            let harness = Harness::start(HarnessOptions {
                plan: Some(plan.clone()),
                rest_objects: vec!["Contact"],
                ..HarnessOptions::default()
            })
            .await;
            let result = harness.run().await;
            let context = format!("{:?}", plan.failed());
            assert!(
                plan.failed().is_some(),
                "call {fail_at} ({when:?}) was never made"
            );
            assert!(
                result.dead_letters.is_empty(),
                "{context}: {:#?}",
                result.dead_letters
            );
            harness.assert_exact(&context);
            failures += 1;
        }
    }
    assert_eq!(failures, 2 * calls);
}

#[tokio::test]
async fn an_unknown_object_stops_that_object_not_the_run() {
    // Nope__c is not in the org; AggregateResult is, but no one may query it.
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account", "Nope__c", "AggregateResult", "Contact"],
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    harness.assert_exact("the known objects");
    assert_eq!(result.dead_letters.len(), 2, "{:#?}", result.dead_letters);
    for object in ["Nope__c", "AggregateResult"] {
        let dead = result
            .dead_letters
            .iter()
            .find(|d| d.reason.contains(object))
            .unwrap_or_else(|| panic!("no dead letter for {object}: {:#?}", result.dead_letters));
        assert_eq!(dead.queue, "extract-dlq");
        assert!(
            dead.reason
                .contains("does not exist in the org or is not queryable"),
            "{}",
            dead.reason
        );
    }
}

#[tokio::test]
async fn malformed_and_unknown_version_messages_reach_the_dead_letter_queue_with_a_reason() {
    let harness = Harness::start(HarnessOptions::default()).await;
    let upload = harness.pipeline.queue(Stage::Upload);
    upload
        .send(OutgoingMessage::new("{not json".into(), "bad-1".into()))
        .await
        .unwrap();
    let future = serde_json::json!({"v": 99, "run_id": "r", "object": "Account"}).to_string();
    upload
        .send(OutgoingMessage::new(future, "bad-2".into()))
        .await
        .unwrap();
    let merge = harness.pipeline.queue(Stage::Merge);
    let hostile = serde_json::json!({
        "v": 1, "run_id": "r1", "object": "Account\"; DROP TABLE x; --", "parts": 1,
        "schema_key": "runs/x/schema.json", "mode": "full", "window": {"until": "2026-01-01T00:00:00Z"}
    })
    .to_string();
    merge
        .send(OutgoingMessage::new(hostile, "bad-3".into()).in_group("x"))
        .await
        .unwrap();
    let mut dead = harness
        .pipeline
        .drain(Arc::new(sfpipe_shared::local::NoEvents))
        .await;
    dead.sort_by(|a, b| a.reason.cmp(&b.reason));
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("contract version 99")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("invalid Salesforce object name")),
        "{reasons:?}"
    );
    assert!(dead.iter().all(|d| !d.reason.is_empty()));
    let _ = DEAD_LETTER_REASON;
}

#[tokio::test]
async fn a_session_that_expires_mid_run_is_renewed_and_the_run_ends_exact() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 30,
            session_calls: Some(3),
            ..HarnessOptions::default().sim
        },
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("sessions expiring every 3 calls").await;
}

#[tokio::test]
async fn a_connection_dropped_mid_page_is_retried_and_the_run_ends_exact() {
    let harness = Harness::start(HarnessOptions::default()).await;
    harness.sim.inject(vec![Fault {
        path_contains: "/results".into(),
        drop_mid_body: true,
        status: 200,
        error_code: String::new(),
        message: String::new(),
        remaining: 2,
    }]);
    harness.run_exact("two pages cut short").await;
}

#[tokio::test]
async fn a_failed_bulk_job_stops_its_object_with_the_reason() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            failing_job_objects: vec!["Contact".into()],
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Contact"],
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    assert_eq!(result.dead_letters.len(), 1, "{:#?}", result.dead_letters);
    let reason = &result.dead_letters[0].reason;
    assert!(
        reason.contains("Contact")
            && reason.contains("ended Failed")
            && reason.contains("Failed to process query"),
        "{reason}"
    );
    let checks = harness.check();
    let account = checks.iter().find(|c| c.object == "Account").unwrap();
    assert!(account.is_exact(), "{account:#?}");
}

#[tokio::test]
async fn a_bulk_job_past_its_deadline_is_aborted_and_dead_lettered_naming_the_job() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            // Never complete: the job is stuck.
            bulk_polls_to_complete: u32::MAX,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account"],
        bulk_job_deadline: Some(std::time::Duration::ZERO),
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    assert_eq!(result.dead_letters.len(), 1, "{:#?}", result.dead_letters);
    let reason = &result.dead_letters[0].reason;
    assert!(
        reason.contains("Bulk API job 750")
            && reason.contains("for Account")
            && reason.contains("past its deadline")
            && reason.contains("SFPIPE_BULK_JOB_DEADLINE_MINUTES"),
        "{reason}"
    );
}

#[tokio::test]
async fn objects_the_bulk_api_refuses_or_configured_for_rest_are_read_with_the_rest_api() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 450,
            result_page_rows: 200,
            bulk_unsupported_objects: vec!["Case".into()],
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Case", "Lead"],
        rest_objects: vec!["Lead"],
        page_records: 200,
        ..HarnessOptions::default()
    })
    .await;
    let result = harness
        .run_exact("Case and Lead over REST, Account over Bulk")
        .await;
    let records = result
        .merged_records(harness.pipeline.blobs().as_ref())
        .await;
    for (object, parts) in [("Account", 3), ("Case", 1), ("Lead", 1)] {
        let record = records[&sfpipe_shared::contracts::ObjectName::new(object).unwrap()]
            .clone()
            .unwrap();
        assert_eq!(record.parts, parts, "{object}");
        assert_eq!(record.records, 450, "{object}: the manifest's count");
    }
    harness.mutate();
    harness.run_exact("the incremental run over REST").await;
}

#[tokio::test]
async fn configured_field_lists_shape_the_tables_and_unknown_fields_stop_the_object() {
    use sfpipe_shared::stages::extract::FieldSelection;
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account", "Contact", "Lead"],
        fields: vec![
            (
                "Account",
                FieldSelection {
                    exclude: vec!["Description".into(), "Website".into()],
                    ..FieldSelection::default()
                },
            ),
            (
                "Contact",
                FieldSelection {
                    include: vec!["FirstName".into(), "LastName".into()],
                    exclude: vec!["Id".into()],
                },
            ),
            (
                "Lead",
                FieldSelection {
                    include: vec!["Nope__c".into()],
                    ..FieldSelection::default()
                },
            ),
        ],
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    assert_eq!(result.dead_letters.len(), 1, "{:#?}", result.dead_letters);
    assert!(
        result.dead_letters[0]
            .reason
            .contains("Nope__c in the configured field list is not a field of Lead"),
        "{}",
        result.dead_letters[0].reason
    );
    let connection = rusqlite::Connection::open(&harness.warehouse_path).unwrap();
    let columns = |table: &str| -> Vec<String> {
        connection
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}') WHERE name NOT LIKE '\\_SFPIPE%' ESCAPE '\\'"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let account = columns("Account");
    assert!(
        account.contains(&"Name".to_string())
            && !account.contains(&"Description".to_string())
            && !account.contains(&"Website".to_string()),
        "{account:?}"
    );
    assert_eq!(
        columns("Contact"),
        ["Id", "IsDeleted", "SystemModstamp", "FirstName", "LastName"],
        "the merge's fields stay, whatever the list says"
    );
    let rows: i64 = connection
        .query_row("SELECT COUNT(*) FROM \"Contact\"", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 30);
}

#[tokio::test]
async fn sfpipe_run_loads_an_org_given_only_its_url_and_credentials() {
    let sim = sfpipe_tests::simulator(SimConfig {
        rows: 120,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("salesforce.json");
    let config = sim.config().clone();
    std::fs::write(
        &credentials,
        serde_json::json!({"flow": "refresh_token", "client_id": config.client_id, "client_secret": config.client_secret, "refresh_token": config.refresh_token}).to_string(),
    )
    .unwrap();
    // Any case, as Salesforce matches names: the run uses the org's spelling.
    let options = sfpipe_cli::run::RunOptions::sqlite(
        sim.url(),
        credentials,
        "account,INVOICE__C",
        dir.path().join("out"),
    );
    let outcome = sfpipe_cli::run::run(&options).await.unwrap();
    let summary = &outcome.summary;
    assert!(
        summary.contains("Invoice__c")
            && summary.contains("Account ")
            && summary.contains("120 rows"),
        "{summary}"
    );
    assert!(outcome.failures.is_empty(), "{summary}");
    assert!(!summary.contains("FAILED"), "{summary}");
    let org = sim.with_org(|org| org.clone());
    for check in sfpipe_cli::verify::compare_objects(
        &org,
        &dir.path().join("out/warehouse.sqlite"),
        &["Account", "Invoice__c"],
    )
    .unwrap()
    {
        assert!(check.is_exact(), "{check:#?}");
    }
}

/// An object the org does not have stops that object, not the run: the others merge, the summary
/// names it with its reason, `sfpipe run` would exit non-zero, and `sfpipe status` shows each run
/// with its stage, job and receipt, and the dead letter with its reason.
#[tokio::test]
async fn a_run_with_an_object_that_failed_says_which_and_why_and_status_shows_it() {
    let sim = sfpipe_tests::simulator(SimConfig {
        rows: 50,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let credentials =
        sfpipe_tests::client_credentials_file(&sim, &dir.path().join("salesforce.json"));
    let mut options = sfpipe_cli::run::RunOptions::sqlite(
        sim.url(),
        credentials,
        "Account,NoSuch__c",
        dir.path().join("out"),
    );
    options.formula_refresh = "off".parse().unwrap();
    options.reconcile = "off".parse().unwrap();
    let outcome = sfpipe_cli::run::run(&options).await.unwrap();
    assert_eq!(
        outcome
            .failures
            .iter()
            .map(|f| f.object.as_str())
            .collect::<Vec<_>>(),
        ["NoSuch__c"],
        "{}",
        outcome.summary
    );
    assert!(
        outcome.failures[0].reason.contains("NoSuch__c")
            && outcome
                .summary
                .contains("FAILED NoSuch__c: dead-lettered in extract"),
        "{}",
        outcome.summary
    );

    let status = sfpipe_cli::status::status(&sfpipe_cli::status::StatusOptions::for_dir(
        dir.path().join("out"),
    ))
    .await
    .unwrap();
    let account = status
        .objects
        .iter()
        .find(|o| o.object == "Account")
        .expect("Account");
    assert_eq!(account.runs.len(), 1);
    let run = &account.runs[0];
    assert_eq!(run.stage, "merged");
    assert!(
        run.job_id.as_deref().is_some_and(|j| j.starts_with("750")),
        "{run:?}"
    );
    assert_eq!(run.salesforce_records, Some(50));
    assert_eq!(run.records_in_parts, 50);
    assert_eq!(run.rows_read, Some(50));
    assert_eq!(run.rows_changed, Some(50));
    assert_eq!(run.problem, None);
    assert!(account.watermark.is_some(), "{account:?}");
    assert!(account.dead_letters.is_empty());
    let missing = status
        .objects
        .iter()
        .find(|o| o.object == "NoSuch__c")
        .expect("the failed object");
    assert_eq!(missing.dead_letters.len(), 1, "{missing:?}");
    assert!(
        missing.dead_letters[0].queue.starts_with("extract")
            && missing.dead_letters[0].reason.contains("NoSuch__c"),
        "{missing:?}"
    );
    assert_eq!(status.failures(), 1);
    let table = status.render();
    assert!(
        table.contains("dead letter in extract") && table.contains("merged"),
        "{table}"
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["objects"][0]["runs"][0]["stage"], "merged", "{json}");

    // A receipt whose counts disagree is a failure: here Salesforce's count is made one more
    // than the parts hold, as when a page is lost.
    let merged = dir.path().join(format!(
        "out/blobs/runs/Account/{}/_merged.json",
        run.run_id
    ));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    record["salesforce_records"] = serde_json::json!(51);
    std::fs::write(&merged, serde_json::to_vec(&record).unwrap()).unwrap();
    let status = sfpipe_cli::status::status(&sfpipe_cli::status::StatusOptions {
        objects: Some("Account".into()),
        ..sfpipe_cli::status::StatusOptions::for_dir(dir.path().join("out"))
    })
    .await
    .unwrap();
    assert_eq!(status.failures(), 1);
    assert!(
        status
            .render()
            .contains("FAILED: Salesforce reported 51 records but the parts hold 50"),
        "{}",
        status.render()
    );
}

/// Every row of every table of a SQLite warehouse, as text: what "unchanged" means for a replay.
fn warehouse_contents(path: &std::path::Path) -> Vec<(String, Vec<Vec<String>>)> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|table| {
            let mut statement = connection
                .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY rowid"))
                .unwrap();
            let width = statement.column_count();
            let rows = statement
                .query_map([], |row| {
                    (0..width)
                        .map(|i| {
                            row.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (table, rows)
        })
        .collect()
}

/// `sfpipe replay` of every run of a demo (a full run, then an incremental one after the org
/// changed) merges each again from its files, without Salesforce, and leaves every table exactly
/// as it was: a replay changes nothing a later run changed.
#[tokio::test]
async fn replaying_every_run_of_a_demo_leaves_the_warehouse_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = sfpipe_cli::demo::DemoOptions::new(dir.path(), 150, 11);
    options.verify = false;
    for _ in 0..2 {
        let outcome = sfpipe_cli::demo::run_demo(&options).await.unwrap();
        assert!(outcome.is_exact(), "{}", sfpipe_cli::demo::render(&outcome));
    }
    let warehouse = dir.path().join("warehouse.sqlite");
    let before = warehouse_contents(&warehouse);
    let status = sfpipe_cli::status::status(&sfpipe_cli::status::StatusOptions {
        last: usize::MAX,
        ..sfpipe_cli::status::StatusOptions::for_dir(dir.path().to_path_buf())
    })
    .await
    .unwrap();
    // Every merged run says what it cost: one extract, at least one upload and one merge
    // handling, and a merge's statements.
    for object in &status.objects {
        for run in object.runs.iter().filter(|r| r.stage == "merged") {
            let usage = run.usage.as_ref().expect("a merged run's usage");
            assert!(usage.invocations >= 3, "{usage:#?}");
            assert_eq!(usage.failed_invocations, 0, "{usage:#?}");
            assert!(usage.usage.salesforce_total() >= 1, "{usage:#?}");
            assert!(usage.usage.statement_total() >= 3, "{usage:#?}");
            assert!(usage.usage.s3_total() >= 3, "{usage:#?}");
        }
    }
    assert!(
        status.render().contains("    usage: "),
        "{}",
        status.render()
    );
    // `sfpipe cost` prices the same records: two triggers, every merged run, its rows once.
    let cost = sfpipe_cli::cost::cost(&sfpipe_cli::cost::CostOptions::for_dir(dir.path()))
        .await
        .unwrap();
    assert_eq!(cost.triggers, 2, "{}", cost.render(0));
    let merged: u64 = status
        .objects
        .iter()
        .flat_map(|o| &o.runs)
        .filter_map(|r| r.rows_changed)
        .sum();
    assert_eq!(cost.rows_changed, merged, "{}", cost.render(0));
    assert!(cost.warehouse.resumes >= 1 && cost.warehouse.billed_seconds >= 60.0);
    assert_eq!(
        cost.projection.api_calls_per_day,
        cost.usage.salesforce_total() as f64 * 48.0
    );
    assert!(cost.usd > 0.0 && cost.projection.usd_per_million_changed_rows.is_some());
    let mut replayed = 0;
    for object in &status.objects {
        for run in object.runs.iter().filter(|r| r.stage == "merged") {
            let outcome = sfpipe_cli::replay::replay(&sfpipe_cli::replay::ReplayOptions {
                object: object.object.clone(),
                run: run.run_id.clone(),
                dir: Some(dir.path().to_path_buf()),
                bucket: None,
                prefix: "sfpipe".into(),
                merge_queue_url: None,
            })
            .await
            .unwrap();
            match outcome {
                sfpipe_cli::replay::Replayed::Merged(record) => {
                    assert_eq!(
                        record.report.rows_changed, 0,
                        "{} {}",
                        object.object, run.run_id
                    );
                    assert_eq!(record.report.rows_read, run.records_in_parts);
                }
                other => panic!("{other:?}"),
            }
            replayed += 1;
        }
    }
    assert!(replayed >= 2 * status.objects.len(), "{}", status.render());
    assert_eq!(
        warehouse_contents(&warehouse),
        before,
        "a replay changed the warehouse"
    );

    // `sfpipe trace` of a row the second run changed: its run, window, job, part and record.
    let connection = rusqlite::Connection::open(&warehouse).unwrap();
    let (id, run, name): (String, String, Option<String>) = connection
        .query_row(
            "SELECT \"Id\", \"_SFPIPE_RUN_ID\", \"Name\" FROM \"Account\" ORDER BY \"_SFPIPE_LOADED_AT\" DESC, \"Id\" LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    let trace = sfpipe_cli::trace::trace(&sfpipe_cli::trace::TraceOptions {
        object: "Account".into(),
        id: id.clone(),
        dir: dir.path().to_path_buf(),
        json: false,
    })
    .await
    .unwrap();
    assert_eq!(trace.run_id.as_deref(), Some(run.as_str()));
    assert_eq!(trace.mode, Some(Mode::Incremental), "{trace:?}");
    assert!(trace.window.is_some_and(|w| w.since.is_some()), "{trace:?}");
    // The second run's change is a few rows: the loader's probe has it read over REST.
    assert_eq!(trace.job_id.as_deref(), Some("rest-query"), "{trace:?}");
    let (file, record) = (trace.file.clone().unwrap(), trace.record.unwrap());
    // The record it names holds the row's Id and the values the warehouse has.
    let part = std::fs::read(dir.path().join("blobs").join(&file)).unwrap();
    let mut csv = csv::Reader::from_reader(flate2::read::MultiGzDecoder::new(part.as_slice()));
    let headers = csv.headers().unwrap().clone();
    let found = csv.records().nth(record as usize - 1).unwrap().unwrap();
    let field = |name: &str| {
        found
            .get(headers.iter().position(|h| h == name).unwrap())
            .unwrap()
            .to_string()
    };
    assert_eq!(field("Id"), id);
    assert_eq!(Some(field("Name")).filter(|n| !n.is_empty()), name);
    assert!(
        trace.render().contains(&format!("{file}, record {record}")),
        "{}",
        trace.render()
    );
    // A run that is not stored says so.
    let error = sfpipe_cli::replay::replay(&sfpipe_cli::replay::ReplayOptions {
        object: "Account".into(),
        run: "nosuchrun".into(),
        dir: Some(dir.path().to_path_buf()),
        bucket: None,
        prefix: "sfpipe".into(),
        merge_queue_url: None,
    })
    .await
    .expect_err("no such run");
    assert!(error.to_string().contains("sfpipe status"), "{error}");
}

/// A Bulk job that failed dead-letters its extract; `sfpipe backfill` of the run's window starts
/// it again (a new run, a new job) and the object merges. Its printed event is one the job-loader
/// reads as that window.
#[tokio::test]
async fn a_failed_bulk_job_is_redriven_by_a_backfill_of_its_window() {
    let sim = sfpipe_tests::simulator(SimConfig {
        rows: 40,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let credentials =
        sfpipe_tests::client_credentials_file(&sim, &dir.path().join("salesforce.json"));
    let since: chrono::DateTime<chrono::Utc> = "2000-01-01T00:00:00Z".parse().unwrap();
    let backfill = sfpipe_cli::replay::BackfillOptions {
        objects: "Account".into(),
        since,
        until: None,
        print_event: false,
        login_url: Some(sim.url().to_string()),
        credentials: Some(credentials),
        dir: dir.path().join("out"),
        ca_cert: None,
        snowflake: Default::default(),
    };
    sim.fail_jobs("Account", 1);
    let failed =
        sfpipe_cli::run::run_window(&backfill.run_options().unwrap(), Some(since), None, None)
            .await
            .unwrap();
    assert_eq!(failed.failures.len(), 1, "{}", failed.summary);
    assert!(
        failed.failures[0].reason.contains("Failed"),
        "{}",
        failed.summary
    );
    let redriven =
        sfpipe_cli::run::run_window(&backfill.run_options().unwrap(), Some(since), None, None)
            .await
            .unwrap();
    assert!(redriven.failures.is_empty(), "{}", redriven.summary);
    let org = sim.with_org(|org| org.clone());
    for check in sfpipe_cli::verify::compare_objects(
        &org,
        &dir.path().join("out/warehouse.sqlite"),
        &["Account"],
    )
    .unwrap()
    {
        assert!(check.is_exact(), "{check:#?}");
    }
    let printed_at: chrono::DateTime<chrono::Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
    let event = sfpipe_cli::replay::backfill_event(
        &[sfpipe_shared::contracts::ObjectName::new("Account").unwrap()],
        since,
        Some("2026-01-01T00:00:00Z".parse().unwrap()),
        printed_at,
    );
    let trigger = sfpipe_shared::lambda::parse_trigger(&event, &[], chrono::Utc::now()).unwrap();
    // The printed event is dated: sent twice, it is one run.
    assert!(trigger.dated);
    assert_eq!(trigger.at, printed_at);
    assert_eq!(trigger.request.since, Some(since));
    assert_eq!(
        trigger.request.until,
        Some("2026-01-01T00:00:00Z".parse().unwrap())
    );
    assert_eq!(trigger.request.objects.len(), 1);
}

#[tokio::test]
async fn a_query_timeout_splits_the_window_until_each_half_succeeds() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 60,
            query_timeout_rows: Some(12),
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account"],
        // The simulator times out any query matching over 12 rows, and a reconciliation's Ids
        // query matches all 60 (refused, not split: see the test of that).
        reconcile: Some("off".parse().unwrap()),
        ..HarnessOptions::default()
    })
    .await;
    harness
        .run_exact("a full run split into windows of at most 12 rows")
        .await;
    let blobs = harness.pipeline.blobs();
    let holes = blobs.list("holes/Account/").await.unwrap();
    assert!(
        holes.is_empty(),
        "every half merged, yet holes remain: {holes:?}"
    );
    let merged = blobs
        .list("runs/Account/")
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.key.ends_with("_merged.json"))
        .count();
    assert!(
        merged >= 5,
        "60 rows at most 12 per query need at least 5 runs, got {merged}"
    );

    harness.mutate();
    harness
        .run_exact("the incremental run after the split")
        .await;
}

#[tokio::test]
async fn an_open_hole_moves_the_next_window_back_to_its_start() {
    use sfpipe_shared::contracts::{ObjectName, RunId, Window, hole_key};
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account"],
        ..HarnessOptions::default()
    })
    .await;
    harness.run().await;
    let hole_start = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let hole = Window {
        since: Some(hole_start),
        until: hole_start + chrono::Duration::days(30),
    };
    let object = ObjectName::new("Account").unwrap();
    harness
        .pipeline
        .blobs()
        .put(
            &hole_key(&object, &RunId::new("20260101T000000Z-failed-a").unwrap()),
            sfpipe_shared::ports::bytes_stream(serde_json::to_vec(&hole).unwrap()),
        )
        .await
        .unwrap();
    let result = harness.run().await;
    assert_eq!(
        result.report.queued[0].window.since,
        Some(hole_start),
        "the next window did not start at the hole"
    );
    harness.assert_exact("after re-reading from the hole");
}

/// 406, 420 and 429 come from the edge in front of an org (routing, rate), with no Salesforce
/// error in them: they pass, and the run loads as if they had not happened.
#[tokio::test]
async fn edge_answers_406_420_and_429_are_retried_not_dead_lettered() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account"],
        ..HarnessOptions::default()
    })
    .await;
    let edge = |path: &str, status: u16| Fault {
        path_contains: path.into(),
        drop_mid_body: false,
        status,
        error_code: String::new(),
        message: String::new(),
        remaining: 1,
    };
    harness.sim.inject(vec![
        edge("/describe", 406),
        edge("/jobs/query", 420),
        edge("/results", 429),
    ]);
    harness.run_exact("three edge answers").await;
    assert_eq!(
        harness.sim.take_fired_faults().len(),
        3,
        "each edge answer was given"
    );
}

#[tokio::test]
async fn permanent_salesforce_errors_dead_letter_with_their_code_the_object_and_what_to_do() {
    let cases = [
        (
            400,
            "INVALID_FIELD",
            "No such column 'Gone__c' on entity 'Account'.",
            "field-level security",
        ),
        (
            400,
            "MALFORMED_QUERY",
            "unexpected token",
            "report it as a bug",
        ),
        (
            400,
            "INVALID_TYPE",
            "sObject type 'Account' is not supported.",
            "object permissions",
        ),
        (
            403,
            "API_DISABLED_FOR_ORG",
            "The REST API is not enabled for this Organization.",
            "API Enabled",
        ),
        (
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            "daily API limit",
        ),
    ];
    for (status, code, message, advice) in cases {
        let harness = Harness::start(HarnessOptions {
            objects: vec!["Account"],
            ..HarnessOptions::default()
        })
        .await;
        harness.sim.inject(vec![Fault {
            path_contains: "/jobs/query".into(),
            drop_mid_body: false,
            status,
            error_code: code.into(),
            message: message.into(),
            remaining: 1,
        }]);
        let result = harness.run().await;
        assert_eq!(
            result.dead_letters.len(),
            1,
            "{code}: {:#?}",
            result.dead_letters
        );
        let reason = &result.dead_letters[0].reason;
        for expected in [code, "Account", "extract stage", advice] {
            assert!(
                reason.contains(expected),
                "{code}: {expected:?} missing from {reason:?}"
            );
        }
    }
}

#[tokio::test]
async fn without_result_pages_the_locator_chain_is_followed_part_by_part() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            without_result_pages: true,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Contact"],
        sends: SendBehaviour {
            duplicate: true,
            ..SendBehaviour::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let result = harness
        .run_exact("pages fetched along the locator chain, every message twice")
        .await;
    let records = result
        .merged_records(harness.pipeline.blobs().as_ref())
        .await;
    for record in records.values() {
        let record = record.clone().unwrap();
        assert_eq!(
            (record.parts, record.records),
            (3, 30),
            "30 rows at 12 per page"
        );
    }
}

#[tokio::test]
async fn short_pages_on_the_locator_chain_still_give_an_exact_warehouse() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            without_result_pages: true,
            short_pages: true,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Contact"],
        sends: SendBehaviour {
            duplicate: true,
            ..SendBehaviour::default()
        },
        ..HarnessOptions::default()
    })
    .await;
    let result = harness
        .run_exact("short pages along the locator chain")
        .await;
    let records = result
        .merged_records(harness.pipeline.blobs().as_ref())
        .await;
    for record in records.values() {
        let record = record.clone().unwrap();
        assert_eq!(
            (record.parts, record.records),
            (4, 30),
            "30 rows at 8 per page (12 asked for)"
        );
    }
}

#[tokio::test]
async fn salesforce_sizes_the_result_pages_whatever_max_records_asks() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            result_page_rows: 7,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account"],
        // Asks for 12 per page; Salesforce sends 7.
        page_records: 12,
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run_exact("pages of Salesforce's size").await;
    let records = result
        .merged_records(harness.pipeline.blobs().as_ref())
        .await;
    let record = records.values().next().cloned().flatten().expect("merged");
    assert_eq!(
        (record.parts, record.records),
        (5, 30),
        "30 rows at 7 per page"
    );
}

#[tokio::test]
async fn object_names_are_matched_in_any_case_as_salesforce_does() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["account", "CONTACT"],
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("objects named in another case").await;
    harness.mutate();
    harness.run_exact("the incremental run").await;
}

#[tokio::test]
async fn a_history_object_without_system_modstamp_is_read_incrementally_on_created_date() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            history_object: true,
            ..HarnessOptions::default().sim
        },
        objects: vec!["AccountHistory"],
        ..HarnessOptions::default()
    })
    .await;
    let first = harness.run().await;
    assert!(first.dead_letters.is_empty(), "{:#?}", first.dead_letters);
    assert_eq!(first.report.queued[0].mode, Mode::Full);
    harness.assert_exact("the first run of AccountHistory");

    harness.mutate();
    let second = harness.run().await;
    assert!(second.dead_letters.is_empty(), "{:#?}", second.dead_letters);
    assert_eq!(
        second.report.queued[0].mode,
        Mode::Incremental,
        "AccountHistory has no watermark after its first run, so it is read in full every time"
    );
    let merged = second
        .merged_records(harness.pipeline.blobs().as_ref())
        .await;
    let record = merged.values().next().cloned().flatten().expect("merged");
    assert!(
        record.report.rows_read < 30,
        "the incremental run read {} of 31 rows",
        record.report.rows_read
    );
    assert!(record.report.max_modstamp.is_some());
    harness.assert_exact("the incremental run of AccountHistory");
}

#[tokio::test]
async fn a_cross_object_formula_that_changed_without_system_modstamp_catches_up_at_its_refresh() {
    use sfpipe_shared::stages::loader::IntervalSchedule;
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 1000,
            cross_object_formula: true,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Contact"],
        page_records: 500,
        formula_refresh: Some("1h".parse::<IntervalSchedule>().unwrap()),
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("the first run").await;

    // Accounts change; their contacts' Account_Rating__c follows, their SystemModstamp does not.
    harness.mutate();
    let second = harness.run().await;
    assert!(second.dead_letters.is_empty(), "{:#?}", second.dead_letters);
    assert!(
        second
            .report
            .queued
            .iter()
            .all(|q| q.mode == Mode::Incremental),
        "a refresh within the hour: {:#?}",
        second.report.queued
    );
    let contact = harness
        .check()
        .into_iter()
        .find(|c| c.object == "Contact")
        .unwrap();
    assert!(
        contact.mismatch_count > 0
            && contact
                .mismatches
                .iter()
                .all(|m| m.contains("Account_Rating__c")),
        "the simulator's formula did not go stale in the warehouse: {contact:#?}"
    );

    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let third = harness.run_at(later).await;
    assert!(third.dead_letters.is_empty(), "{:#?}", third.dead_letters);
    let refreshes: Vec<_> = third
        .records(harness.pipeline.blobs().as_ref())
        .await
        .into_iter()
        .filter(|(q, _)| q.mode == Mode::FormulaRefresh)
        .collect();
    assert_eq!(
        refreshes.len(),
        2,
        "one refresh per object: {:#?}",
        third.report.queued
    );
    for (queued, record) in &refreshes {
        match queued.object.as_str() {
            // Account has no formula field: nothing to read, nothing merged.
            "Account" => assert!(record.is_none(), "{record:#?}"),
            _ => {
                let record = record.as_ref().expect("the Contact refresh merged");
                assert_eq!(record.report.rows_changed, contact.mismatch_count);
            }
        }
    }
    harness.assert_exact("after the formula refresh");

    // Refreshed an hour ago: not due again.
    let fourth = harness.run_at(later + chrono::Duration::minutes(30)).await;
    assert!(
        fourth
            .report
            .queued
            .iter()
            .all(|q| q.mode == Mode::Incremental),
        "{:#?}",
        fourth.report.queued
    );
}

/// Watches the merge requests a warehouse receives, and answers the first `fail_first` merges
/// with `failure` after doing them (as a merge killed or timed out after Snowflake committed).
struct RequestWatch {
    inner: Arc<dyn sfpipe_shared::ports::Warehouse>,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    failure: fn() -> sfpipe_shared::ports::WarehouseError,
    fail_first: usize,
}

#[async_trait::async_trait]
impl sfpipe_shared::ports::Warehouse for RequestWatch {
    async fn ensure_table(
        &self,
        schema: &sfpipe_shared::ports::TableSchema,
    ) -> Result<(), sfpipe_shared::ports::WarehouseError> {
        self.inner.ensure_table(schema).await
    }
    async fn merge(
        &self,
        batch: &sfpipe_shared::ports::MergeBatch,
    ) -> Result<sfpipe_shared::ports::MergeReport, sfpipe_shared::ports::WarehouseError> {
        let report = self.inner.merge(batch).await;
        let calls = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(batch.request_id.clone());
            seen.len()
        };
        if calls <= self.fail_first {
            return Err((self.failure)());
        }
        report
    }
    async fn lineage(
        &self,
        object: &sfpipe_shared::contracts::ObjectName,
        id: &str,
    ) -> Result<Option<sfpipe_shared::ports::RowLineage>, sfpipe_shared::ports::WarehouseError>
    {
        self.inner.lineage(object, id).await
    }
    async fn watermark(
        &self,
        object: &sfpipe_shared::contracts::ObjectName,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, sfpipe_shared::ports::WarehouseError> {
        self.inner.watermark(object).await
    }
}

fn watched(
    failure: fn() -> sfpipe_shared::ports::WarehouseError,
    fail_first: usize,
) -> (
    Arc<Mutex<Vec<Option<String>>>>,
    sfpipe_tests::harness::WarehouseWrapper,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watched = seen.clone();
    let wrap: sfpipe_tests::harness::WarehouseWrapper = Arc::new(move |inner| {
        Arc::new(RequestWatch {
            inner,
            seen: watched.clone(),
            failure,
            fail_first,
        })
    });
    (seen, wrap)
}

#[tokio::test]
async fn a_merge_whose_fate_is_unknown_is_redelivered_under_the_same_request_id() {
    let (seen, wrap) = watched(
        || sfpipe_shared::ports::WarehouseError::Service("timed out waiting".into()),
        2,
    );
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account"],
        wrap_warehouse: Some(wrap),
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("after two merges of unknown fate").await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].is_some(), "no request id: {seen:?}");
    assert!(
        seen.iter().all(|id| *id == seen[0]),
        "a redelivery sent a new request: {seen:?}"
    );
}

#[tokio::test]
async fn a_merge_refused_for_good_forgets_its_request() {
    let (seen, wrap) = watched(
        || sfpipe_shared::ports::WarehouseError::Rejected {
            object: "Account".into(),
            detail: "refused".into(),
        },
        1,
    );
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account"],
        wrap_warehouse: Some(wrap),
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    assert_eq!(result.dead_letters.len(), 1, "{:#?}", result.dead_letters);
    let layout = sfpipe_shared::contracts::RunLayout::new(
        &sfpipe_shared::contracts::ObjectName::new("Account").unwrap(),
        &result.report.run_id,
    );
    assert!(
        harness
            .pipeline
            .blobs()
            .head(&layout.merge_request())
            .await
            .unwrap()
            .is_none(),
        "the failed request is kept, so a redrive would be answered with its failure"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Rows hard-deleted in Salesforce (purged from the recycle bin) vanish from queryAll too, so no
/// incremental run can see them go. The reconciliation at the next due run compares the live Ids
/// with the table and flags exactly the vanished rows, with its own lineage, in one Ids-only Bulk
/// job per object; objects with nothing purged change nothing.
#[tokio::test]
async fn hard_deleted_rows_are_flagged_exactly_by_the_next_reconciliation() {
    use sfpipe_shared::stages::loader::IntervalSchedule;
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 80,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Contact"],
        reconcile: Some("1h".parse::<IntervalSchedule>().unwrap()),
        ..HarnessOptions::default()
    })
    .await;
    let started = chrono::Utc::now();
    harness.run_exact("the first run").await;
    let gone = harness.sim.hard_delete("Account", 5);
    assert_eq!(gone.len(), 5);
    let account = |h: &Harness| {
        h.check()
            .into_iter()
            .find(|c| c.object == "Account")
            .unwrap()
    };
    assert!(
        !account(&harness).is_exact(),
        "the purged rows are still live in the warehouse, and the check must say so"
    );
    // Those the warehouse holds live (a purged row may have been in the recycle bin, flagged).
    let live_before: Vec<String> = {
        let connection = rusqlite::Connection::open(&harness.warehouse_path).unwrap();
        let mut live = Vec::new();
        for id in &gone {
            let deleted: i64 = connection
                .query_row(
                    "SELECT \"IsDeleted\" FROM \"Account\" WHERE \"Id\" = ?1",
                    [id],
                    |row| row.get(0),
                )
                .unwrap();
            if deleted == 0 {
                live.push(id.clone());
            }
        }
        live
    };
    assert!(!live_before.is_empty());
    // Within the hour: no reconciliation, and nothing sees the rows go.
    let soon = harness.run().await;
    assert!(
        soon.report
            .queued
            .iter()
            .all(|q| q.mode == Mode::Incremental)
    );
    assert!(!account(&harness).is_exact());

    let later = harness.run_at(started + chrono::Duration::hours(2)).await;
    assert!(later.dead_letters.is_empty(), "{:#?}", later.dead_letters);
    let reconciled: Vec<_> = later
        .records(harness.pipeline.blobs().as_ref())
        .await
        .into_iter()
        .filter(|(q, _)| q.mode == Mode::Reconcile)
        .collect();
    assert_eq!(reconciled.len(), 2, "{:#?}", later.report.queued);
    for (queued, record) in &reconciled {
        let record = record.as_ref().expect("reconciliation merged");
        let expected = if queued.object.as_str() == "Account" {
            live_before.len() as u64
        } else {
            0
        };
        assert_eq!(record.report.rows_changed, expected, "{}", queued.object);
        assert_eq!(record.report.rows_read, record.records);
        assert_eq!(record.receipt_mismatch(), None);
    }
    harness.assert_exact("after the reconciliation");
    let run = &reconciled
        .iter()
        .find(|(q, _)| q.object.as_str() == "Account")
        .unwrap()
        .0
        .run_id;
    let connection = rusqlite::Connection::open(&harness.warehouse_path).unwrap();
    let mut flagged: Vec<String> = connection
        .prepare(
            "SELECT \"Id\" FROM \"Account\" WHERE \"_SFPIPE_RUN_ID\" = ?1 AND \"IsDeleted\" = 1",
        )
        .unwrap()
        .query_map([run.as_str()], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    flagged.sort();
    let mut live_before = live_before;
    live_before.sort();
    assert_eq!(
        flagged, live_before,
        "not exactly the purged live rows were flagged"
    );
}

/// A reconciliation whose Ids query times out is not split (the query has no window to halve):
/// it stops with what to do, and the object's incremental run merges as usual.
#[tokio::test]
async fn a_reconciliation_that_times_out_stops_with_what_to_do_and_is_not_split() {
    use sfpipe_shared::stages::loader::IntervalSchedule;
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 30,
            // Any query matching more than 20 rows times out: the full run is split into
            // windows, and the Ids query, which matches all 30, cannot be.
            query_timeout_rows: Some(20),
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account"],
        reconcile: Some("1h".parse::<IntervalSchedule>().unwrap()),
        ..HarnessOptions::default()
    })
    .await;
    let started = chrono::Utc::now();
    harness.run_exact("the first run, split").await;
    let later = harness.run_at(started + chrono::Duration::hours(2)).await;
    assert_eq!(later.dead_letters.len(), 1, "{:#?}", later.dead_letters);
    assert!(
        later.dead_letters[0].reason.contains("SFPIPE_RECONCILE"),
        "{}",
        later.dead_letters[0].reason
    );
    let blobs = harness.pipeline.blobs();
    let holes = blobs.list("holes/Account/").await.unwrap();
    assert!(holes.is_empty(), "the reconciliation was split: {holes:?}");
    harness.assert_exact("the incremental run beside it");
}
