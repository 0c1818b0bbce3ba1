//! Stage tests on the in-memory doubles ([`crate::fake`]): one branch of a handler at a time,
//! with the fault that leads there injected.

// Test code: a panic is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod extract;
#[cfg(feature = "local")]
mod loader;
#[cfg(feature = "local")]
mod merge;
mod upload;

use std::time::Duration;

use chrono::TimeZone;
use serde_json::json;

use super::extract::{ExtractConfig, ExtractDeps};
use super::upload::UploadDeps;
use crate::contracts::{Contract, ExtractMessage, Mode, ObjectName, RunId, UploadMessage, Window};
use crate::fake::{FakeSalesforce, MemoryBlobs, RecordingQueue};

/// Rows in the fake org's Account.
const ROWS: usize = 5;

/// Everything a stage test runs on: an org of five Accounts, an empty blob store, queues that keep
/// what is sent.
struct World {
    salesforce: FakeSalesforce,
    /// Shared, for a warehouse that reads the parts.
    blobs: std::sync::Arc<MemoryBlobs>,
    extract_queue: RecordingQueue,
    upload_queue: RecordingQueue,
    merge_queue: RecordingQueue,
    config: ExtractConfig,
}

impl World {
    fn new() -> Self {
        let salesforce = FakeSalesforce::new();
        let rows = (1..=ROWS)
            .map(|n| {
                json!({"Id": format!("001FAKE{n:011}"), "Name": format!("Account {n}"),
                       "IsDeleted": false,
                       "SystemModstamp": format!("2026-01-01T0{n}:00:00.000Z")})
            })
            .collect();
        salesforce.add_object(
            "Account",
            &[
                ("Id", "id"),
                ("Name", "string"),
                ("IsDeleted", "boolean"),
                ("SystemModstamp", "datetime"),
            ],
            rows,
        );
        salesforce.page_rows(2);
        Self {
            salesforce,
            blobs: std::sync::Arc::new(MemoryBlobs::new()),
            extract_queue: RecordingQueue::new("extract"),
            upload_queue: RecordingQueue::new("upload"),
            merge_queue: RecordingQueue::new("merge"),
            config: ExtractConfig {
                first_poll_delay: Duration::from_secs(5),
                ..ExtractConfig::default()
            },
        }
    }

    fn extract_deps(&self) -> ExtractDeps<'_, FakeSalesforce, MemoryBlobs, RecordingQueue> {
        ExtractDeps {
            salesforce: &self.salesforce,
            blobs: &*self.blobs,
            extract_queue: &self.extract_queue,
            upload_queue: &self.upload_queue,
            merge_queue: &self.merge_queue,
            config: &self.config,
        }
    }

    fn upload_deps(&self) -> UploadDeps<'_, FakeSalesforce, MemoryBlobs, RecordingQueue> {
        UploadDeps {
            salesforce: &self.salesforce,
            blobs: &*self.blobs,
            upload_queue: &self.upload_queue,
            merge_queue: &self.merge_queue,
            rest_batch_size: 200,
        }
    }

    /// Runs extract from the run's first message until it fans out; the upload messages.
    async fn extract_to_uploads(&self, message: &ExtractMessage) -> Vec<UploadMessage> {
        let mut next = message.clone();
        for _ in 0..10 {
            super::extract::handle_extract(&self.extract_deps(), &next)
                .await
                .unwrap();
            let mut checks = self.extract_queue.take();
            if checks.is_empty() {
                return self
                    .upload_queue
                    .take()
                    .iter()
                    .map(|m| UploadMessage::from_body(&m.body).unwrap())
                    .collect();
            }
            next = ExtractMessage::from_body(&checks.remove(0).body).unwrap();
        }
        panic!("extract never fanned out");
    }
}

fn account() -> ObjectName {
    ObjectName::new("Account").unwrap()
}

fn run_id() -> RunId {
    RunId::new("20260102T000000Z-test").unwrap()
}

fn full_run() -> ExtractMessage {
    ExtractMessage {
        v: crate::contracts::CONTRACT_VERSION,
        run_id: run_id(),
        object: account(),
        mode: Mode::Full,
        window: Window {
            since: None,
            until: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
        },
        bulk_job: None,
        rest: false,
    }
}
