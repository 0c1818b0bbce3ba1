//! Every invocation ends inside its function's timeout. The local pipeline abandons a handler at
//! its timeout as Lambda kills it (the message comes back after its visibility timeout, and is
//! dead-lettered after five receives); these runs shrink one function's timeout and slow the
//! service it waits on, and the handlers must still load every object exactly, with no
//! invocation cut short.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sfpipe_shared::deadline::{FunctionLimits, StageLimits};
use sfpipe_shared::local::pipeline::{PipelineEvent, PipelineEvents, RunResult, WorkerCounts};
use sfpipe_shared::stages::Stage;
use sfpipe_shared::stages::merge::MergedRecord;
use sfpipe_shared::usage::LOADER_RECEIPTS;
use sfpipe_simulator::SimConfig;
use sfpipe_tests::faults::SlowBlobs;
use sfpipe_tests::harness::{BlobWrapper, Harness, HarnessOptions};

/// The template's limits, with one function's timeout (and its queue's visibility timeout, six
/// times it) set to `timeout`.
fn with_timeout(stage: Stage, timeout: Duration) -> StageLimits {
    let mut limits = StageLimits::TEMPLATE;
    let short = FunctionLimits {
        timeout,
        visibility_timeout: Some(timeout * 6),
    };
    match stage {
        Stage::Loader => limits.job_loader = short,
        Stage::Extract => limits.extract = short,
        Stage::Upload => limits.upload = short,
        Stage::Merge => limits.merge = short,
    }
    limits
}

/// Counts the invocations that ran into their timeout.
#[derive(Default)]
struct TimeOuts(Mutex<Vec<Stage>>);

impl PipelineEvents for TimeOuts {
    fn event(&self, event: PipelineEvent) {
        if let PipelineEvent::TimedOut { stage, .. } = event {
            self.0.lock().unwrap().push(stage);
        }
    }
}

/// One scheduled run of the harness's one object, which must end exact, with no dead letter
/// and no invocation killed at its timeout; its result and the object's merged record.
async fn run_one_object_unkilled(harness: &Harness, context: &str) -> (RunResult, MergedRecord) {
    let timed_out = Arc::new(TimeOuts::default());
    let result = harness
        .run_watched(chrono::Utc::now(), timed_out.clone())
        .await;
    assert!(
        result.dead_letters.is_empty(),
        "{context}: dead letters: {:?}",
        result.dead_letters
    );
    harness.assert_exact(context);
    assert_eq!(
        *timed_out.0.lock().unwrap(),
        [],
        "{context}: no invocation was killed"
    );
    let record = result
        .merged_records(harness.pipeline.blobs().as_ref())
        .await
        .into_values()
        .next()
        .flatten()
        .expect("merged");
    (result, record)
}

#[tokio::test]
async fn a_rest_object_larger_than_one_upload_can_page_is_read_in_chained_parts() {
    // 2,000 rows at 200 a page, each page 40 ms: 0.4 s of paging against an upload timeout of
    // 0.25 s (at the template's scale: a few hundred thousand rows against 300 s).
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 2000,
            query_page_latency: Duration::from_millis(40),
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account"],
        rest_objects: vec!["Account"],
        limits: Some(with_timeout(Stage::Upload, Duration::from_millis(250))),
        ..HarnessOptions::default()
    })
    .await;
    let (_, record) =
        run_one_object_unkilled(&harness, "a REST object read in chained parts").await;
    assert!(record.parts > 1, "read in {} parts", record.parts);
    assert_eq!(record.records, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_loader_queues_500_objects_well_inside_its_timeout() {
    let objects: Vec<&'static str> = (0..500)
        .map(|n| &*Box::leak(format!("Extra{n:03}__c").into_boxed_str()))
        .collect();
    // A sixth of the template's 60 s: "well inside" it, with every object probed on the
    // second run, each Salesforce call 20 ms away and each read of an object's state or holes
    // 20 ms, as S3 is from Lambda. (One object after another, the state reads and the
    // listings of holes alone take 20 s.)
    let loader_timeout = Duration::from_secs(10);
    let slow_state: BlobWrapper = Arc::new(|inner| {
        Arc::new(SlowBlobs {
            inner,
            latency: Duration::from_millis(20),
            prefixes: vec!["state/", "holes/"],
        })
    });
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 3,
            extra_objects: 500,
            latency: Duration::from_millis(20),
            ..HarnessOptions::default().sim
        },
        objects,
        wrap_blobs: Some(slow_state),
        limits: Some(with_timeout(Stage::Loader, loader_timeout)),
        workers: Some(WorkerCounts {
            extract: 8,
            upload: 8,
            merge: 4,
        }),
        ..HarnessOptions::default()
    })
    .await;
    let timed_out = Arc::new(TimeOuts::default());
    let first = harness
        .run_watched(chrono::Utc::now(), timed_out.clone())
        .await;
    assert!(first.dead_letters.is_empty(), "{:?}", first.dead_letters);
    harness.assert_exact("500 objects, first run");
    assert_eq!(first.report.queued.len(), 500);
    harness.mutate();
    let second = harness
        .run_watched(chrono::Utc::now(), timed_out.clone())
        .await;
    assert!(second.dead_letters.is_empty(), "{:?}", second.dead_letters);
    harness.assert_exact("500 objects, incremental");
    assert_eq!(*timed_out.0.lock().unwrap(), [], "no invocation was killed");
    let loader = harness.receipts(LOADER_RECEIPTS).await;
    assert_eq!(
        loader.len(),
        2,
        "one invocation each, none killed and retried"
    );
    let took: Vec<u64> = loader.iter().map(|r| r.duration_ms).collect();
    eprintln!("job-loader invocations for 500 objects took {took:?} ms");
    for receipt in &loader {
        assert!(receipt.succeeded);
        assert!(
            Duration::from_millis(receipt.duration_ms) < loader_timeout,
            "{receipt:?}"
        );
    }
    // The second run probed every object, five to a composite call.
    let probes = loader
        .iter()
        .map(|r| {
            r.usage
                .salesforce_calls
                .get("composite")
                .copied()
                .unwrap_or(0)
        })
        .max();
    assert_eq!(probes, Some(100));
    assert_eq!(
        second.report.queued.len() + second.report.unchanged.len(),
        500,
        "every object either queued or found unchanged"
    );
}

#[tokio::test]
async fn listing_thousands_of_result_pages_goes_on_in_the_next_extract_invocation() {
    // 600 rows in pages of 5: 120 pages, listed five links a call, each call 20 ms away: 0.5 s
    // of listing against an extract timeout of 0.3 s (at the template's scale: a 100-million-row
    // object's 2,000 pages, 400 calls, against 120 s).
    let harness = Harness::start(HarnessOptions {
        sim: SimConfig {
            rows: 600,
            result_page_rows: 5,
            latency: Duration::from_millis(20),
            ..HarnessOptions::default().sim
        },
        objects: vec!["Account"],
        limits: Some(with_timeout(Stage::Extract, Duration::from_millis(300))),
        workers: Some(WorkerCounts {
            extract: 1,
            upload: 8,
            merge: 1,
        }),
        ..HarnessOptions::default()
    })
    .await;
    let (result, record) = run_one_object_unkilled(
        &harness,
        "a job of 120 result pages, listed over several invocations",
    )
    .await;
    assert_eq!(record.parts, 120);
    let usage = harness.usage_of(&result).await;
    assert_eq!(usage.bulk_jobs, 1, "one Bulk job, however long the listing");
}
