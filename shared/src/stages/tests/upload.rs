//! upload, branch by branch.

use std::io::Read;
use std::time::Duration;

use super::{ROWS, World, full_run};
use crate::contracts::{Contract, MergeMessage, PartManifest, RunLayout, UploadMessage};
use crate::deadline::{Deadline, within};
use crate::fake::Call;
use crate::ports::salesforce::SalesforceError;
use crate::stages::StageError;
use crate::stages::upload::{UploadOutcome, handle_upload};

async fn upload(world: &World, message: &UploadMessage) -> Result<UploadOutcome, StageError> {
    handle_upload(&world.upload_deps(), message).await
}

fn layout() -> RunLayout {
    RunLayout::new(&super::account(), &super::run_id())
}

/// A stored part's CSV records (header first), found through its manifest.
fn part_rows(world: &World, part: u32) -> Vec<Vec<String>> {
    let manifest: PartManifest = serde_json::from_slice(
        &world
            .blobs
            .bytes(&layout().manifest(part))
            .expect("the part has a manifest"),
    )
    .unwrap();
    let gzipped = world
        .blobs
        .bytes(&manifest.key)
        .expect("the part is stored");
    let mut csv = String::new();
    flate2::read::MultiGzDecoder::new(&gzipped[..])
        .read_to_string(&mut csv)
        .unwrap();
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

fn merges(world: &World) -> Vec<MergeMessage> {
    world
        .merge_queue
        .take()
        .iter()
        .map(|m| MergeMessage::from_body(&m.body).unwrap())
        .collect()
}

#[tokio::test]
async fn each_page_is_stored_with_its_manifest_and_the_last_requests_the_merge_once() {
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    assert_eq!(uploads.len(), 3);
    let mut records = 0;
    for (index, message) in uploads.iter().enumerate() {
        let outcome = upload(&world, message).await.unwrap();
        assert_eq!(outcome.requested_merge, index == 2, "part {}", message.part);
        records += outcome.manifest.records;
        let rows = part_rows(&world, message.part);
        assert_eq!(rows[0], ["Id", "Name", "IsDeleted", "SystemModstamp"]);
        assert_eq!(rows.len() as u64 - 1, outcome.manifest.records);
        let manifest: PartManifest =
            serde_json::from_slice(&world.blobs.bytes(&layout().manifest(message.part)).unwrap())
                .unwrap();
        assert_eq!(manifest, outcome.manifest);
        assert_eq!(
            manifest.crc64nvme,
            crate::checksum::crc64nvme(&world.blobs.bytes(&layout().part(message.part)).unwrap())
        );
    }
    assert_eq!(records, ROWS as u64);
    let merge = merges(&world);
    assert_eq!(merge.len(), 1);
    assert_eq!(merge[0].parts, 3);
    assert!(
        world.salesforce.jobs().is_empty(),
        "the finished job is deleted"
    );
}

#[tokio::test]
async fn a_stale_duplicate_before_the_merge_stores_the_part_again_and_one_merge_is_sent() {
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    upload(&world, &uploads[0]).await.unwrap();
    let again = upload(&world, &uploads[0]).await.unwrap();
    assert!(!again.requested_merge);
    for message in &uploads[1..] {
        upload(&world, message).await.unwrap();
    }
    assert_eq!(merges(&world).len(), 1);
}

#[tokio::test]
async fn a_late_duplicate_after_the_merge_returns_the_stored_part_without_salesforce() {
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    let mut first = None;
    for message in &uploads {
        let outcome = upload(&world, message).await.unwrap();
        first.get_or_insert(outcome.manifest);
    }
    merges(&world);
    let calls = world.salesforce.calls().len();
    let late = upload(&world, &uploads[0]).await.unwrap();
    assert_eq!(Some(late.manifest), first);
    assert!(!late.requested_merge);
    assert_eq!(
        world.salesforce.calls().len(),
        calls,
        "Salesforce is not asked again"
    );
    assert!(merges(&world).is_empty());
}

#[tokio::test]
async fn the_locator_chain_queues_each_next_part_and_the_last_names_the_count() {
    let mut world = World::new();
    world.salesforce.without_result_pages();
    world.config.page_records = 2;
    let mut next = world.extract_to_uploads(&full_run()).await.remove(0);
    let mut parts = 0;
    loop {
        let outcome = upload(&world, &next).await.unwrap();
        parts += 1;
        let mut queued = world.upload_queue.take();
        if queued.is_empty() {
            assert!(outcome.requested_merge);
            break;
        }
        assert_eq!(queued.len(), 1);
        next = UploadMessage::from_body(&queued.remove(0).body).unwrap();
        assert_eq!(next.part, parts + 1);
        assert!(
            next.result_url.contains("maxRecords=2"),
            "{}",
            next.result_url
        );
    }
    assert_eq!(parts, 3);
    assert_eq!(merges(&world)[0].parts, 3);
}

#[tokio::test]
async fn a_rest_run_pages_through_its_query_into_one_part() {
    let world = World::new();
    world.salesforce.refuse_bulk("Account");
    world.salesforce.rest_page_rows(2);
    let uploads = world.extract_to_uploads(&full_run()).await;
    let outcome = upload(&world, &uploads[0]).await.unwrap();
    assert!(outcome.requested_merge);
    assert_eq!(outcome.manifest.records, ROWS as u64);
    let rows = part_rows(&world, 1);
    assert_eq!(rows.len(), ROWS + 1);
    assert_eq!(
        rows[1],
        [
            "001FAKE00000000001",
            "Account 1",
            "false",
            "2026-01-01T01:00:00.000Z"
        ]
    );
    let pages = world
        .salesforce
        .calls()
        .iter()
        .filter(|c| **c == Call::QueryPage)
        .count();
    assert_eq!(pages, 3, "five rows, two a page");
}

/// Uploads a REST run part by part, each under `deadline` (from the handling's start), following
/// the cursors the parts queue; the outcomes in order.
async fn upload_rest_chain(world: &World, deadline: Duration) -> Vec<UploadOutcome> {
    let mut next = world.extract_to_uploads(&full_run()).await.remove(0);
    let mut outcomes = Vec::new();
    loop {
        let outcome = within(Deadline::after(deadline), upload(world, &next))
            .await
            .unwrap();
        let done = outcome.requested_merge;
        outcomes.push(outcome);
        if done {
            return outcomes;
        }
        let queued = world.upload_queue.take();
        assert_eq!(queued.len(), 1, "one next part per part");
        next = UploadMessage::from_body(&queued[0].body).unwrap();
        assert_eq!(next.part as usize, outcomes.len() + 1);
    }
}

#[tokio::test]
async fn a_rest_run_short_of_time_stores_what_it_read_and_queues_the_rest_at_its_cursor() {
    let world = World::new();
    world.salesforce.refuse_bulk("Account");
    world.salesforce.rest_page_rows(2);
    // No time to spare: one page a part, the least progress an invocation makes.
    let outcomes = upload_rest_chain(&world, Duration::ZERO).await;
    let records: Vec<u64> = outcomes.iter().map(|o| o.manifest.records).collect();
    assert_eq!(records, [2, 2, 1]);
    let mut ids = Vec::new();
    for part in 1..=3 {
        let rows = part_rows(&world, part);
        assert_eq!(rows[0], ["Id", "Name", "IsDeleted", "SystemModstamp"]);
        ids.extend(rows[1..].iter().map(|r| r[0].clone()));
    }
    let expected: Vec<String> = (1..=ROWS).map(|n| format!("001FAKE{n:011}")).collect();
    assert_eq!(ids, expected, "every row once, in order");
    let merge = merges(&world);
    assert_eq!(merge.len(), 1);
    assert_eq!(merge[0].parts, 3);
}

#[tokio::test]
async fn a_duplicate_of_a_claimed_rest_part_keeps_the_claimed_bytes_and_queues_its_successor_once()
{
    let world = World::new();
    world.salesforce.refuse_bulk("Account");
    world.salesforce.rest_page_rows(2);
    let first = world.extract_to_uploads(&full_run()).await.remove(0);
    let claimed = within(Deadline::after(Duration::ZERO), upload(&world, &first))
        .await
        .unwrap();
    assert_eq!(claimed.manifest.records, 2);
    let successor = world.upload_queue.take();
    assert_eq!(successor.len(), 1);
    // Redelivered with all the time in the world: it would read every page, but the part is
    // claimed and its successor queued.
    let pages = world.salesforce.calls().len();
    let again = upload(&world, &first).await.unwrap();
    assert_eq!(again.manifest, claimed.manifest);
    assert!(world.upload_queue.take().is_empty());
    assert_eq!(
        world.salesforce.calls().len(),
        pages,
        "Salesforce not asked"
    );

    // A crash after the claim, before the manifest and the successor: the redelivery finishes
    // from the claim, with the claimed bytes.
    world.blobs.remove(&layout().manifest(1));
    world.blobs.remove(&layout().chain_link(1));
    let finished = upload(&world, &first).await.unwrap();
    assert_eq!(finished.manifest, claimed.manifest);
    let resent = world.upload_queue.take();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].body, successor[0].body);
    assert_eq!(
        part_rows(&world, 1).len(),
        3,
        "header and the claimed two rows"
    );
    let stored: Vec<String> = world
        .blobs
        .keys()
        .into_iter()
        .filter(|k| k.ends_with(".csv.gz"))
        .collect();
    assert_eq!(
        stored,
        std::slice::from_ref(&claimed.manifest.key),
        "no other delivery's bytes"
    );
}

#[tokio::test]
async fn a_page_cut_short_is_retried_and_leaves_no_part() {
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    world.salesforce.cut_pages_after(30);
    let error = upload(&world, &uploads[0]).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(world.blobs.bytes(&layout().part(1)).is_none());
    assert!(world.blobs.bytes(&layout().manifest(1)).is_none());
}

#[tokio::test]
async fn a_page_without_its_record_count_is_refused() {
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    world.salesforce.without_record_counts();
    let error = upload(&world, &uploads[0]).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains("Sforce-NumberOfRecords"),
        "{error}"
    );
    assert!(world.blobs.bytes(&layout().manifest(1)).is_none());
}

#[tokio::test]
async fn a_page_whose_columns_are_not_the_runs_is_refused_and_removed() {
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    world
        .salesforce
        .header_override(&["Name", "Id", "IsDeleted", "SystemModstamp"]);
    let error = upload(&world, &uploads[0]).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("wrong columns"), "{error}");
    assert!(world.blobs.bytes(&layout().part(1)).is_none());
}

#[tokio::test]
async fn a_job_gone_before_its_pages_were_stored_fails_the_run_for_good() {
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    world.salesforce.expire_job(&uploads[0].job_id);
    let error = upload(&world, &uploads[0]).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("vanished"), "{error}");
}

#[tokio::test]
async fn each_error_class_is_retried_or_dead_lettered_as_it_should() {
    let cases = [
        (
            SalesforceError::Api {
                status: 500,
                code: "UNKNOWN_EXCEPTION".into(),
                message: "An unexpected error occurred".into(),
            },
            true,
        ),
        (SalesforceError::Transport("connection reset".into()), true),
        (
            SalesforceError::Api {
                status: 400,
                code: "INVALID_LOCATOR".into(),
                message: "invalid locator".into(),
            },
            false,
        ),
        (
            SalesforceError::Auth {
                code: "invalid_grant".into(),
                message: "authentication failure".into(),
            },
            false,
        ),
    ];
    for (fault, retryable) in cases {
        let world = World::new();
        let uploads = world.extract_to_uploads(&full_run()).await;
        world
            .salesforce
            .fail(Call::DownloadResults, 1, fault.clone());
        let error = upload(&world, &uploads[0]).await.unwrap_err();
        assert_eq!(error.is_retryable(), retryable, "{fault}: {error}");
        assert!(
            world.blobs.bytes(&layout().manifest(1)).is_none(),
            "{fault}"
        );
        // Once the fault has passed, the same message stores the part.
        assert_eq!(upload(&world, &uploads[0]).await.unwrap().manifest.part, 1);
    }
    let world = World::new();
    let uploads = world.extract_to_uploads(&full_run()).await;
    world.blobs.fail_puts(1);
    assert!(
        upload(&world, &uploads[0])
            .await
            .unwrap_err()
            .is_retryable()
    );
    assert!(world.blobs.bytes(&layout().manifest(1)).is_none());
    assert!(upload(&world, &uploads[0]).await.is_ok());
}
