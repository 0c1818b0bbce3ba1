//! What a scheduled run costs when little or nothing changed: the job-loader probes each object's
//! window (five objects to a composite REST call) and runs nothing for an unchanged object, reads
//! a small change with the REST API and a large one with a Bulk job; a row that commits late
//! inside the overlap is still found. Counted on the simulator (API calls, Bulk jobs), and on the
//! blob store and warehouse ports (what S3 and Snowflake would be asked).

use chrono::Utc;
use sfpipe_simulator::SimConfig;
use sfpipe_tests::counting::CallLog;
use sfpipe_tests::harness::{Harness, HarnessOptions};

const DEMO_OBJECTS: [&str; 6] = [
    "Account",
    "Contact",
    "Opportunity",
    "Lead",
    "Case",
    "Invoice__c",
];

fn a_millisecond_ago() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::milliseconds(1)
}

#[tokio::test]
async fn an_idle_run_of_the_demo_objects_starts_no_bulk_job_asks_no_warehouse_and_costs_two_calls()
{
    let log = CallLog::default();
    let harness = Harness::start(HarnessOptions {
        objects: DEMO_OBJECTS.to_vec(),
        rest_below: 2_000,
        wrap_blobs: Some(log.blobs()),
        wrap_warehouse: Some(log.warehouse()),
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("the first, full run").await;
    log.take();
    let (calls, jobs) = (harness.sim.api_calls(), harness.sim.bulk_jobs_created());

    let result = harness.run_exact("an idle run").await;

    let api_calls = harness.sim.api_calls() - calls;
    let bulk_jobs = harness.sim.bulk_jobs_created() - jobs;
    let logged = log.take();
    let unchanged: Vec<&str> = result.report.unchanged.iter().map(|o| o.as_str()).collect();
    assert_eq!(unchanged, DEMO_OBJECTS, "{:#?}", result.report);
    assert!(result.report.queued.is_empty(), "{:#?}", result.report);
    assert_eq!(bulk_jobs, 0);
    // Every object was found complete up to this trigger: nothing is stale.
    assert_eq!(
        result.report.stalest.as_ref().map(|s| s.lag_seconds),
        Some(0),
        "{:#?}",
        result.report
    );
    // One composite request for five objects' probes, one for the sixth.
    assert_eq!(api_calls, 2);
    let warehouse: Vec<&String> = logged
        .iter()
        .filter(|c| {
            ["ensure_table", "merge", "watermark", "lineage"]
                .iter()
                .any(|verb| c.starts_with(verb))
        })
        .collect();
    assert!(warehouse.is_empty(), "{warehouse:#?}");
    let blobs: Vec<&String> = logged.iter().filter(|c| !warehouse.contains(c)).collect();
    assert!(
        blobs.len() <= 3 * DEMO_OBJECTS.len(),
        "more than 3 blob requests per object: {blobs:#?}"
    );
    let writes: Vec<&&String> = blobs
        .iter()
        .filter(|c| !(c.starts_with("get ") || c.starts_with("list ") || c.starts_with("head ")))
        .collect();
    let receipt = format!(
        "put receipts/_job-loader/{}/job-loader-",
        result.report.run_id
    );
    assert!(
        writes.len() == 1 && writes[0].starts_with(&receipt),
        "an idle run writes nothing but the job-loader's receipt: {writes:#?}"
    );

    // The receipt says the same as the counts above.
    let receipts = harness.receipts("_job-loader/").await;
    let receipt = receipts.last().expect("the idle run's receipt");
    assert_eq!(receipt.run_id, result.report.run_id.to_string());
    assert!(receipt.succeeded);
    assert_eq!(receipt.usage.salesforce_calls.get("composite"), Some(&2));
    assert_eq!(receipt.usage.salesforce_total(), 2);
    assert_eq!(receipt.usage.bulk_jobs, 0);
    assert_eq!(receipt.usage.snowflake_requests, 0);
    assert_eq!(receipt.usage.statement_total(), 0);
    assert_eq!(receipt.usage.s3_total(), blobs.len() as u64);
    assert_eq!(receipt.usage.s3_requests.get("PUT"), Some(&1));
    assert_eq!(receipt.usage.sqs_total(), 0, "nothing queued");
}

#[tokio::test]
async fn a_small_change_is_read_over_rest_and_a_large_one_with_a_bulk_job() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 60,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Contact"],
        rest_below: 5,
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("the first, full run").await;

    let at = a_millisecond_ago();
    assert_eq!(harness.sim.update_rows("Account", 1, at).len(), 1);
    assert_eq!(harness.sim.update_rows("Contact", 1, at).len(), 1);
    let jobs = harness.sim.bulk_jobs_created();
    let calls = harness.sim.api_calls();
    let result = harness.run_exact("one changed row in each object").await;
    assert_eq!(
        harness.sim.bulk_jobs_created(),
        jobs,
        "no Bulk job for a row"
    );
    // The run's receipts account for every API call the org counted, and no Bulk job.
    let usage = harness.usage_of(&result).await;
    assert_eq!(
        usage.salesforce_total(),
        harness.sim.api_calls() - calls,
        "{usage:#?}"
    );
    assert_eq!(usage.bulk_jobs, 0, "{usage:#?}");
    assert!(usage.salesforce_calls.contains_key("query"), "{usage:#?}");
    // One describe per changed object, no global describe: the object's own says whether it
    // exists and may be queried.
    assert_eq!(
        usage.salesforce_calls.get("describe"),
        Some(&2),
        "{usage:#?}"
    );
    assert!(
        !usage.salesforce_calls.contains_key("describe-global"),
        "{usage:#?}"
    );
    // A REST read has no Bulk job to delete or poll: no call may name one.
    assert!(
        usage
            .salesforce_calls
            .keys()
            .all(|k| !k.starts_with("bulk-")),
        "{usage:#?}"
    );
    assert_eq!(result.report.queued.len(), 2, "{:#?}", result.report);
    assert!(
        result.report.queued.iter().all(|q| q.rest),
        "{:#?}",
        result.report
    );

    let at = a_millisecond_ago();
    assert!(harness.sim.update_rows("Account", 10, at).len() >= 5);
    let jobs = harness.sim.bulk_jobs_created();
    let calls = harness.sim.api_calls();
    let result = harness.run_exact("many changed rows of Account").await;
    assert_eq!(harness.sim.bulk_jobs_created(), jobs + 1);
    let usage = harness.usage_of(&result).await;
    assert_eq!(
        usage.salesforce_total(),
        harness.sim.api_calls() - calls,
        "{usage:#?}"
    );
    assert_eq!(usage.bulk_jobs, 1, "{usage:#?}");
    let stages: std::collections::BTreeSet<String> = harness
        .receipts(&format!("Account/{}/", result.report.queued[0].run_id))
        .await
        .into_iter()
        .map(|r| r.stage)
        .collect();
    assert_eq!(
        stages,
        ["extract", "merge", "upload"].map(String::from).into()
    );
    let queued: Vec<(&str, bool)> = result
        .report
        .queued
        .iter()
        .map(|q| (q.object.as_str(), q.rest))
        .collect();
    assert_eq!(queued, [("Account", false)]);
    let unchanged: Vec<&str> = result.report.unchanged.iter().map(|o| o.as_str()).collect();
    assert_eq!(unchanged, ["Contact"]);
}

#[tokio::test]
async fn a_row_committed_late_with_the_stamp_of_a_merged_row_is_still_loaded() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account"],
        rest_below: 2_000,
        ..HarnessOptions::default()
    })
    .await;
    harness.run_exact("the first, full run").await;
    let at = a_millisecond_ago();
    harness.sim.update_rows("Account", 1, at);
    harness.run_exact("one changed row").await;

    // A transaction that committed after that run read its window, stamped as the row it
    // merged: inside the overlap, with a stamp already merged, but a new Id.
    let late = harness.sim.insert_row("Account", at).expect("insert");
    let result = harness.run_exact("after the late commit").await;
    assert!(result.report.unchanged.is_empty(), "{:#?}", result.report);
    let lineage = harness
        .check()
        .into_iter()
        .find(|c| c.object == "Account")
        .expect("Account checked");
    assert!(lineage.is_exact(), "{late} was not loaded: {lineage:#?}");

    let result = harness.run_exact("an idle run after it").await;
    assert_eq!(result.report.unchanged.len(), 1, "{:#?}", result.report);
}

#[tokio::test]
async fn past_the_daily_bulk_job_limit_an_object_stops_at_once_saying_why() {
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            daily_bulk_query_jobs: 1,
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account", "Contact"],
        ..HarnessOptions::default()
    })
    .await;
    let result = harness.run().await;
    assert_eq!(harness.sim.bulk_jobs_created(), 1);
    assert_eq!(result.dead_letters.len(), 1, "{:#?}", result.dead_letters);
    let reason = &result.dead_letters[0].reason;
    assert!(
        reason.contains("DailyBulkV2QueryJobs") && reason.contains("SFPIPE_REST_BELOW"),
        "the reason says which limit and what to do: {reason}"
    );
}

/// The job-loader's freshness lag (the metric the freshness alarm watches) is the time since the
/// stalest object was last known complete: merged up to a window's end, or found unchanged.
#[tokio::test]
async fn the_freshness_lag_is_measured_from_the_last_merged_window_or_an_unchanged_probe() {
    let harness = Harness::start(HarnessOptions {
        objects: vec!["Account", "Contact"],
        rest_below: 2_000,
        ..HarnessOptions::default()
    })
    .await;
    let first = harness.run_exact("the first, full run").await;
    let merged_until = first.report.queued[0].window.until;
    harness.sim.update_rows("Account", 1, a_millisecond_ago());

    // An hour later (as if the runs between had failed): Account changed and is an hour
    // behind; Contact is found unchanged, so it is current.
    let later = merged_until + chrono::Duration::hours(1);
    let result = harness.run_at(later).await;
    let stalest = result.report.stalest.clone().expect("a freshness lag");
    assert_eq!(stalest.object.as_str(), "Account", "{:#?}", result.report);
    assert_eq!(stalest.lag_seconds, 3_600);
    let receipt = harness.receipts("_job-loader/").await;
    let receipt = receipt
        .iter()
        .find(|r| r.run_id == result.report.run_id.to_string())
        .expect("the trigger's receipt");
    assert_eq!(receipt.freshness_lag_seconds, Some(3_600.0));
}
