//! extract, branch by branch.

use std::time::Duration;

use super::{ROWS, World, account, full_run};
use crate::contracts::{BulkJobRecord, Contract, ExtractMessage, Mode, RunLayout, hole_key};
use crate::fake::Call;
use crate::ports::BlobStore;
use crate::ports::salesforce::{JobState, SalesforceError};
use crate::stages::StageError;
use crate::stages::extract::{ExtractOutcome, FieldSelection, handle_extract};
use crate::stages::records::REST_QUERY_JOB;

async fn extract(world: &World, message: &ExtractMessage) -> Result<ExtractOutcome, StageError> {
    handle_extract(&world.extract_deps(), message).await
}

fn next_check(world: &World) -> (ExtractMessage, Duration) {
    let mut sent = world.extract_queue.take();
    assert_eq!(sent.len(), 1, "one check queued");
    let sent = sent.remove(0);
    (ExtractMessage::from_body(&sent.body).unwrap(), sent.delay)
}

fn layout() -> RunLayout {
    RunLayout::new(&account(), &super::run_id())
}

#[tokio::test]
async fn a_new_run_starts_one_job_and_queues_its_first_check() {
    let world = World::new();
    let outcome = extract(&world, &full_run()).await.unwrap();
    let jobs = world.salesforce.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        outcome,
        ExtractOutcome::Started {
            job_id: jobs[0].id.clone()
        }
    );
    let (check, delay) = next_check(&world);
    assert_eq!(delay, Duration::from_secs(5));
    assert_eq!(
        check.bulk_job.map(|p| (p.job_id, p.polls)),
        Some((jobs[0].id.clone(), 0))
    );
    let record: BulkJobRecord =
        serde_json::from_slice(&world.blobs.bytes(&layout().bulk_job()).unwrap()).unwrap();
    assert_eq!(record.job_id, jobs[0].id);
    assert_eq!(
        record.soql,
        "SELECT Id, Name, IsDeleted, SystemModstamp FROM Account WHERE SystemModstamp < 2026-01-02T00:00:00.000Z"
    );
    assert!(world.blobs.bytes(&layout().schema()).is_some());
}

#[tokio::test]
async fn a_stale_duplicate_of_the_first_message_starts_no_second_job() {
    let world = World::new();
    extract(&world, &full_run()).await.unwrap();
    let first = world.salesforce.jobs()[0].id.clone();
    let again = extract(&world, &full_run()).await.unwrap();
    assert_eq!(again, ExtractOutcome::Started { job_id: first });
    assert_eq!(
        world.salesforce.jobs().len(),
        1,
        "the run keeps its one job"
    );
}

#[tokio::test]
async fn a_running_job_is_checked_again_with_a_longer_delay() {
    let world = World::new();
    world.salesforce.polls_to_complete(3);
    extract(&world, &full_run()).await.unwrap();
    let (check, _) = next_check(&world);
    let outcome = extract(&world, &check).await.unwrap();
    assert!(
        matches!(outcome, ExtractOutcome::Waiting { polls: 1, .. }),
        "{outcome:?}"
    );
    let (check, delay) = next_check(&world);
    assert_eq!(delay, Duration::from_secs(10));
    assert!(matches!(
        extract(&world, &check).await.unwrap(),
        ExtractOutcome::Waiting { polls: 2, .. }
    ));
    assert!(world.upload_queue.take().is_empty());
}

#[tokio::test]
async fn a_complete_job_fans_out_one_upload_per_result_page() {
    let world = World::new();
    extract(&world, &full_run()).await.unwrap();
    let (check, _) = next_check(&world);
    let outcome = extract(&world, &check).await.unwrap();
    assert!(
        matches!(outcome, ExtractOutcome::FannedOut { parts: 3, .. }),
        "{outcome:?}"
    );
    let uploads: Vec<_> = world
        .upload_queue
        .take()
        .iter()
        .map(|m| crate::contracts::UploadMessage::from_body(&m.body).unwrap())
        .collect();
    assert_eq!(
        uploads
            .iter()
            .map(|u| (u.part, u.parts))
            .collect::<Vec<_>>(),
        [(1, 3), (2, 3), (3, 3)]
    );
    assert!(
        uploads
            .iter()
            .all(|u| !u.chain && u.job_records == Some(ROWS as u64))
    );
    assert!(world.blobs.bytes(&layout().extracted()).is_some());
}

#[tokio::test]
async fn without_result_pages_the_first_part_starts_the_locator_chain() {
    let world = World::new();
    world.salesforce.without_result_pages();
    let uploads = world.extract_to_uploads(&full_run()).await;
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].chain);
    assert_eq!(
        (uploads[0].part, uploads[0].parts),
        (1, 0),
        "the count is known at the end"
    );
}

#[tokio::test]
async fn configured_for_the_locator_chain_it_neither_lists_result_pages_nor_asks_twice() {
    let mut world = World::new();
    world.config.result_pages = false;
    world.config.page_records = 2;
    let uploads = world.extract_to_uploads(&full_run()).await;
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].chain);
    assert!(
        uploads[0].result_url.contains("maxRecords=2"),
        "{}",
        uploads[0].result_url
    );
    let calls = world.salesforce.calls();
    assert!(!calls.contains(&Call::ResultPages), "{calls:?}");
}

#[tokio::test]
async fn an_object_bulk_refuses_is_read_with_one_rest_part() {
    let world = World::new();
    world.salesforce.refuse_bulk("Account");
    let outcome = extract(&world, &full_run()).await.unwrap();
    assert_eq!(
        outcome,
        ExtractOutcome::FannedOut {
            job_id: REST_QUERY_JOB.into(),
            parts: 1
        }
    );
    assert!(world.salesforce.jobs().is_empty());
    let upload = &world.upload_queue.take()[0];
    assert!(upload.body.contains("queryAll"), "{}", upload.body);
}

#[tokio::test]
async fn a_query_that_times_out_at_creation_is_split_in_two_runs() {
    let world = World::new();
    world.salesforce.fail(
        Call::CreateQueryJob,
        1,
        SalesforceError::Api {
            status: 400,
            code: "QUERY_TIMEOUT".into(),
            message: "Your query request was running for too long.".into(),
        },
    );
    let message = ExtractMessage {
        window: crate::contracts::Window {
            since: Some(full_run().window.until - chrono::Duration::hours(2)),
            ..full_run().window
        },
        mode: Mode::Incremental,
        ..full_run()
    };
    assert_eq!(
        extract(&world, &message).await.unwrap(),
        ExtractOutcome::Split
    );
    let halves: Vec<_> = world
        .extract_queue
        .take()
        .iter()
        .map(|m| ExtractMessage::from_body(&m.body).unwrap())
        .collect();
    assert_eq!(halves.len(), 2);
    assert_eq!(halves[0].window.since, message.window.since);
    assert_eq!(halves[0].window.until, halves[1].window.since.unwrap());
    assert_eq!(halves[1].window.until, message.window.until);
    for half in &halves {
        assert!(
            world
                .blobs
                .bytes(&hole_key(&account(), &half.run_id))
                .is_some(),
            "a hole until merged"
        );
    }
}

#[tokio::test]
async fn a_job_that_timed_out_is_split_and_forgotten() {
    let world = World::new();
    world.salesforce.fail_jobs(
        "Account",
        "QUERY_TIMEOUT : Your query request was running for too long.",
    );
    extract(&world, &full_run()).await.unwrap();
    let (check, _) = next_check(&world);
    assert_eq!(
        extract(&world, &check).await.unwrap(),
        ExtractOutcome::Split
    );
    assert_eq!(world.extract_queue.take().len(), 2);
    assert!(
        world.salesforce.jobs().is_empty(),
        "the failed job is deleted"
    );
    assert!(
        world.blobs.bytes(&layout().bulk_job()).is_none(),
        "and forgotten"
    );
}

#[tokio::test]
async fn a_failed_job_goes_to_the_dead_letter_queue_with_its_message_and_is_forgotten() {
    let world = World::new();
    world
        .salesforce
        .fail_jobs("Account", "InvalidBatch : Failed to process query");
    extract(&world, &full_run()).await.unwrap();
    let (check, _) = next_check(&world);
    let error = extract(&world, &check).await.unwrap_err();
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(text.contains("ended Failed: InvalidBatch"), "{text}");
    assert!(world.salesforce.jobs().is_empty());
    assert!(
        world.blobs.bytes(&layout().bulk_job()).is_none(),
        "a re-run starts a new job"
    );
}

/// The run's record of a failed job is forgotten before the job: if the record cannot be deleted,
/// the check is retried and the job kept, or every later check of the run would find the record
/// naming a job that is gone.
#[tokio::test]
async fn a_failed_job_whose_record_cannot_be_forgotten_is_checked_again() {
    let world = World::new();
    world
        .salesforce
        .fail_jobs("Account", "InvalidBatch : Failed to process query");
    extract(&world, &full_run()).await.unwrap();
    let (check, _) = next_check(&world);
    world.blobs.fail_deletes(1);
    let error = extract(&world, &check).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(world.blobs.bytes(&layout().bulk_job()).is_some());
    assert_eq!(
        world.salesforce.jobs().len(),
        1,
        "the job is kept with its record"
    );
    // The retry forgets both and reports the failure.
    let error = extract(&world, &check).await.unwrap_err();
    assert!(error.to_string().contains("ended Failed"), "{error}");
    assert!(world.blobs.bytes(&layout().bulk_job()).is_none());
    assert!(world.salesforce.jobs().is_empty());
}

#[tokio::test]
async fn a_job_past_its_deadline_is_aborted_and_reported() {
    let world = World::new();
    world.salesforce.polls_to_complete(100);
    world
        .salesforce
        .jobs_created_ago(chrono::Duration::hours(7));
    extract(&world, &full_run()).await.unwrap();
    let (check, _) = next_check(&world);
    let error = extract(&world, &check).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("past its deadline"), "{error}");
    let calls = world.salesforce.calls();
    assert!(
        calls.contains(&Call::AbortJob) && calls.ends_with(&[Call::DeleteJob]),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_late_duplicate_after_the_merge_request_touches_nothing() {
    let world = World::new();
    world
        .blobs
        .put_if_absent(
            &layout().merge_requested(),
            bytes::Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(
        extract(&world, &full_run()).await.unwrap(),
        ExtractOutcome::AlreadyDone
    );
    assert!(world.salesforce.calls().is_empty());
}

#[tokio::test]
async fn a_job_gone_at_its_check_fails_the_run_unless_the_run_moved_on() {
    let world = World::new();
    extract(&world, &full_run()).await.unwrap();
    let (check, _) = next_check(&world);
    let job = world.salesforce.jobs()[0].id.clone();
    world.salesforce.expire_job(&job);
    let error = extract(&world, &check).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("vanished"), "{error}");
    // A stale check of a job the run no longer uses is done.
    world.blobs.delete(&layout().bulk_job()).await.unwrap();
    assert_eq!(
        extract(&world, &check).await.unwrap(),
        ExtractOutcome::AlreadyDone
    );
}

#[tokio::test]
async fn a_refresh_of_an_object_without_formulas_starts_no_job() {
    let world = World::new();
    let message = ExtractMessage {
        mode: Mode::FormulaRefresh,
        ..full_run()
    };
    assert_eq!(
        extract(&world, &message).await.unwrap(),
        ExtractOutcome::NothingToRefresh
    );
    assert!(world.salesforce.jobs().is_empty());
    // With a formula, it selects the formula with what identifies the row's version.
    let world_two = World::new();
    world_two.salesforce.make_formula("Account", "Name");
    extract(&world_two, &message).await.unwrap();
    let record: BulkJobRecord =
        serde_json::from_slice(&world_two.blobs.bytes(&layout().bulk_job()).unwrap()).unwrap();
    assert!(
        record
            .soql
            .starts_with("SELECT Id, Name, SystemModstamp FROM Account"),
        "{}",
        record.soql
    );
}

#[tokio::test]
async fn a_reconciliation_asks_for_the_ids_of_live_rows_only() {
    let world = World::new();
    let message = ExtractMessage {
        mode: Mode::Reconcile,
        ..full_run()
    };
    assert!(matches!(
        extract(&world, &message).await.unwrap(),
        ExtractOutcome::Started { .. }
    ));
    let record: BulkJobRecord =
        serde_json::from_slice(&world.blobs.bytes(&layout().bulk_job()).unwrap()).unwrap();
    assert_eq!(
        record.soql,
        "SELECT Id FROM Account WHERE IsDeleted = false"
    );
}

/// Each kind of failure keeps its class: what may pass is retried, the rest dead-lettered with
/// advice.
#[tokio::test]
async fn each_error_class_is_retried_or_dead_lettered_as_it_should() {
    let unavailable = SalesforceError::Api {
        status: 503,
        code: "SERVER_UNAVAILABLE".into(),
        message: "try later".into(),
    };
    type Inject = Box<dyn Fn(&mut World, &mut ExtractMessage)>;
    let cases: Vec<(&str, Inject, bool, &str)> = vec![
        (
            "a 503 on describe",
            Box::new(move |w: &mut World, _: &mut ExtractMessage| {
                w.salesforce.fail(Call::Describe, 1, unavailable.clone())
            }),
            true,
            "503",
        ),
        (
            "a dropped connection on create",
            Box::new(|w: &mut World, _: &mut ExtractMessage| {
                w.salesforce.fail(
                    Call::CreateQueryJob,
                    1,
                    SalesforceError::Transport("reset".into()),
                )
            }),
            true,
            "could not be reached",
        ),
        (
            "too many requests at once",
            Box::new(|w: &mut World, _: &mut ExtractMessage| {
                w.salesforce.fail(
                    Call::CreateQueryJob,
                    1,
                    SalesforceError::Api {
                        status: 403,
                        code: "REQUEST_LIMIT_EXCEEDED".into(),
                        message: "ConcurrentPerOrgLongTxn Limit exceeded.".into(),
                    },
                )
            }),
            true,
            "ConcurrentPerOrgLongTxn",
        ),
        (
            "the org's daily API limit",
            Box::new(|w: &mut World, _: &mut ExtractMessage| {
                w.salesforce.fail(
                    Call::Describe,
                    1,
                    SalesforceError::Api {
                        status: 403,
                        code: "REQUEST_LIMIT_EXCEEDED".into(),
                        message: "TotalRequests Limit exceeded.".into(),
                    },
                )
            }),
            false,
            "daily API limit is used up",
        ),
        (
            "a storage outage",
            Box::new(|w: &mut World, _: &mut ExtractMessage| w.blobs.fail_puts(1)),
            true,
            "unavailable",
        ),
        (
            "the API budget",
            Box::new(|w: &mut World, _: &mut ExtractMessage| w.salesforce.set_usage(90, 100)),
            false,
            "budget",
        ),
        (
            "an expired login",
            Box::new(|w: &mut World, _: &mut ExtractMessage| {
                w.salesforce.fail(
                    Call::Describe,
                    1,
                    SalesforceError::Auth {
                        code: "invalid_grant".into(),
                        message: "expired access/refresh token".into(),
                    },
                )
            }),
            false,
            "Check the credentials",
        ),
        (
            "a field list naming no field",
            Box::new(|w: &mut World, _: &mut ExtractMessage| {
                w.config.fields.insert(
                    "Account".into(),
                    FieldSelection {
                        include: vec!["NoSuchField__c".into()],
                        exclude: Vec::new(),
                    },
                );
            }),
            false,
            "NoSuchField__c",
        ),
        (
            "an object the org lacks",
            Box::new(|_: &mut World, message: &mut ExtractMessage| {
                message.object = crate::contracts::ObjectName::new("Invoice__c").unwrap();
            }),
            false,
            "does not exist in the org",
        ),
    ];
    for (case, inject, retryable, says) in cases {
        let mut world = World::new();
        let mut message = full_run();
        inject(&mut world, &mut message);
        let error = extract(&world, &message).await.expect_err(case);
        assert_eq!(error.is_retryable(), retryable, "{case}: {error}");
        assert!(error.to_string().contains(says), "{case}: {error}");
        assert_eq!(
            world
                .salesforce
                .jobs()
                .iter()
                .filter(|j| j.state != JobState::Aborted)
                .count(),
            0,
            "{case}: no job left running"
        );
    }
}

/// LoginHistory orders its rows by LoginTime only: no window bounds its query, so a timeout
/// cannot be split (each half would run the same whole query, a Bulk job each): it stops with
/// what to do, after one job.
#[tokio::test]
async fn a_timed_out_query_of_an_object_without_a_cursor_is_not_split() {
    let world = World::new();
    world.salesforce.add_object(
        "LoginHistory",
        &[("Id", "id"), ("UserId", "reference"), ("LoginTime", "datetime")],
        vec![serde_json::json!({"Id": "0Ya000000000001", "UserId": "005000000000001", "LoginTime": "2026-01-01T00:00:00.000Z"})],
    );
    world.salesforce.fail_jobs(
        "LoginHistory",
        "QUERY_TIMEOUT : Your query request was running for too long.",
    );
    let message = ExtractMessage {
        object: crate::contracts::ObjectName::new("LoginHistory").unwrap(),
        ..full_run()
    };
    extract(&world, &message).await.unwrap();
    let (check, _) = next_check(&world);
    let error = extract(&world, &check).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    let text = error.to_string();
    assert!(text.contains("cannot be split"), "{text}");
    assert!(text.contains("SFPIPE_FIELDS"), "{text}");
    assert!(world.extract_queue.take().is_empty(), "no halves queued");
    assert_eq!(
        world.salesforce.jobs().len(),
        1,
        "one Bulk job, not one per half"
    );
}

/// Salesforce matches object and field names in any case; so do the field lists
/// (`SFPIPE_FIELDS`) and `SFPIPE_REST_OBJECTS`: a case mismatch must not silently take every
/// Salesforce refuses a request whose URI and headers together pass 16,384 bytes (431), not only
/// a URI past it (414): a REST object whose query URI fits alone but leaves no room for the
/// headers is refused at extract, with what to do, before any upload sends it.
#[tokio::test]
async fn a_rest_query_that_leaves_no_room_for_its_headers_is_refused_with_what_to_do() {
    let mut world = World::new();
    let names: Vec<String> = (0..900).map(|n| format!("Field_{n:04}__c")).collect();
    let mut fields: Vec<(&str, &str)> = vec![
        ("Id", "id"),
        ("IsDeleted", "boolean"),
        ("SystemModstamp", "datetime"),
    ];
    fields.extend(names.iter().map(|n| (n.as_str(), "string")));
    world.salesforce.add_object("Wide__c", &fields, Vec::new());
    world.config.rest_objects = vec!["Wide__c".into()];
    let message = ExtractMessage {
        object: crate::contracts::ObjectName::new("Wide__c").unwrap(),
        ..full_run()
    };
    let error = extract(&world, &message).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    let text = error.to_string();
    let length: usize = text
        .split("-byte request URI")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no length in {text}"));
    assert!(
        length <= super::super::extract::MAX_REST_URI_BYTES,
        "the URI alone fits ({length} bytes): only its headers would not"
    );
    assert!(
        text.contains("headers") && text.contains("SFPIPE_FIELDS"),
        "{text}"
    );
    assert!(
        world.upload_queue.take().is_empty(),
        "nothing sent to upload"
    );
}

/// field, nor ignore the entry.
#[tokio::test]
async fn field_lists_and_rest_objects_match_names_in_any_case() {
    let mut world = World::new();
    world.config.fields.insert(
        "ACCOUNT".into(),
        FieldSelection {
            include: Vec::new(),
            exclude: vec!["name".into()],
        },
    );
    world.config.rest_objects = vec!["account".into()];
    let outcome = extract(&world, &full_run()).await.unwrap();
    assert_eq!(
        outcome,
        ExtractOutcome::FannedOut {
            job_id: REST_QUERY_JOB.into(),
            parts: 1
        },
        "read over REST as configured"
    );
    let schema: crate::ports::TableSchema =
        serde_json::from_slice(&world.blobs.bytes(&layout().schema()).unwrap()).unwrap();
    let columns: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        columns,
        ["Id", "IsDeleted", "SystemModstamp"],
        "Name excluded"
    );
}
