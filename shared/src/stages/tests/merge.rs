//! merge, branch by branch, on the embedded SQLite warehouse (feature `local`).

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{World, account, full_run};
use crate::contracts::{Contract, MergeMessage, ObjectName, RunLayout};
use crate::local::SqliteWarehouse;
use crate::ports::{
    BlobStore, MergeBatch, MergeReport, RowLineage, TableSchema, Warehouse, WarehouseError,
};
use crate::stages::merge::{MergeDeps, MergedRecord, handle_merge};
use crate::stages::upload::handle_upload;

/// The SQLite warehouse, whose next merge can be made to fail.
struct Sqlite {
    inner: SqliteWarehouse,
    next_merge_fails: Mutex<Option<WarehouseError>>,
    /// Every batch asked for, in order.
    batches: Mutex<Vec<MergeBatch>>,
    _dir: tempfile::TempDir,
}

#[async_trait]
impl Warehouse for Sqlite {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<(), WarehouseError> {
        self.inner.ensure_table(schema).await
    }
    async fn merge(&self, batch: &MergeBatch) -> Result<MergeReport, WarehouseError> {
        self.batches.lock().unwrap().push(batch.clone());
        if let Some(error) = self.next_merge_fails.lock().unwrap().take() {
            return Err(error);
        }
        self.inner.merge(batch).await
    }
    async fn watermark(
        &self,
        object: &ObjectName,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        self.inner.watermark(object).await
    }
    async fn lineage(
        &self,
        object: &ObjectName,
        id: &str,
    ) -> Result<Option<RowLineage>, WarehouseError> {
        self.inner.lineage(object, id).await
    }
}

/// The world's blobs, shared with a SQLite warehouse that reads its parts from them.
struct Merging {
    world: World,
    warehouse: Sqlite,
}

impl Merging {
    fn new(world: World) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner =
            SqliteWarehouse::open(dir.path().join("warehouse.db"), world.blobs.clone()).unwrap();
        Self {
            world,
            warehouse: Sqlite {
                inner,
                next_merge_fails: Mutex::new(None),
                batches: Mutex::new(Vec::new()),
                _dir: dir,
            },
        }
    }

    async fn merge(
        &self,
        message: &MergeMessage,
    ) -> Result<MergedRecord, crate::stages::StageError> {
        let deps = MergeDeps {
            blobs: &*self.world.blobs,
            warehouse: &self.warehouse,
        };
        handle_merge(&deps, message).await
    }

    /// Extracts and uploads the run; its merge message.
    async fn uploaded(&self, message: &crate::contracts::ExtractMessage) -> MergeMessage {
        for upload in self.world.extract_to_uploads(message).await {
            handle_upload(&self.world.upload_deps(), &upload)
                .await
                .unwrap();
        }
        let mut merges = self.world.merge_queue.take();
        assert_eq!(merges.len(), 1);
        MergeMessage::from_body(&merges.remove(0).body).unwrap()
    }
}

fn layout() -> RunLayout {
    RunLayout::new(&account(), &super::run_id())
}

#[tokio::test]
async fn a_run_is_merged_with_a_receipt_that_agrees_and_a_watermark() {
    let merging = Merging::new(World::new());
    let message = merging.uploaded(&full_run()).await;
    let record = merging.merge(&message).await.unwrap();
    assert_eq!(
        (
            record.records,
            record.report.rows_read,
            record.report.rows_changed
        ),
        (5, 5, 5)
    );
    assert_eq!(record.salesforce_records, Some(5));
    assert_eq!(record.receipt_mismatch(), None);
    let watermark = merging.warehouse.watermark(&account()).await.unwrap();
    assert_eq!(watermark, Some("2026-01-01T05:00:00Z".parse().unwrap()));
    let row = merging
        .warehouse
        .lineage(&account(), "001FAKE00000000003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.run_id.as_deref(), Some(super::run_id().as_str()));
    assert!(merging.world.blobs.bytes(&layout().merged()).is_some());
}

#[tokio::test]
async fn a_duplicate_merge_changes_nothing_and_the_first_record_stays() {
    let merging = Merging::new(World::new());
    let message = merging.uploaded(&full_run()).await;
    merging.merge(&message).await.unwrap();
    let first = merging.world.blobs.bytes(&layout().merged()).unwrap();
    let again = merging.merge(&message).await.unwrap();
    assert_eq!(again.report.rows_changed, 0);
    assert_eq!(
        merging.world.blobs.bytes(&layout().merged()).unwrap(),
        first
    );
}

#[tokio::test]
async fn a_missing_part_is_waited_for() {
    let merging = Merging::new(World::new());
    let message = merging.uploaded(&full_run()).await;
    merging
        .world
        .blobs
        .delete(&layout().manifest(2))
        .await
        .unwrap();
    let error = merging.merge(&message).await.unwrap_err();
    assert!(error.is_retryable(), "a late part may still come: {error}");
    assert_eq!(
        merging.warehouse.watermark(&account()).await.unwrap(),
        None,
        "nothing merged"
    );
}

#[tokio::test]
async fn a_refresh_of_an_object_never_loaded_makes_no_table() {
    let world = World::new();
    world.salesforce.make_formula("Account", "Name");
    let merging = Merging::new(world);
    let refresh = crate::contracts::ExtractMessage {
        mode: crate::contracts::Mode::FormulaRefresh,
        ..full_run()
    };
    let message = merging.uploaded(&refresh).await;
    let record = merging.merge(&message).await.unwrap();
    assert_eq!(record.report, MergeReport::default());
    assert_eq!(
        merging
            .warehouse
            .lineage(&account(), "001FAKE00000000001")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_refused_merge_forgets_its_request_and_a_failed_one_keeps_it() {
    let merging = Merging::new(World::new());
    let message = merging.uploaded(&full_run()).await;
    let request = layout().merge_request();

    *merging.warehouse.next_merge_fails.lock().unwrap() =
        Some(WarehouseError::Service("connection reset".into()));
    let error = merging.merge(&message).await.unwrap_err();
    assert!(error.is_retryable());
    let kept = merging
        .world
        .blobs
        .bytes(&request)
        .expect("the request's fate is unknown: kept");

    *merging.warehouse.next_merge_fails.lock().unwrap() = Some(WarehouseError::Rejected {
        object: "Account".into(),
        detail: "SQL compilation error".into(),
    });
    let error = merging.merge(&message).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(
        merging.world.blobs.bytes(&request).is_none(),
        "a redrive sends a new request"
    );

    let record = merging.merge(&message).await.unwrap();
    assert_eq!(record.report.rows_changed, 5);
    assert_ne!(
        merging.world.blobs.bytes(&request),
        Some(kept),
        "with a new request id"
    );
}

/// A resubmission must be the same request (Snowflake's documentation): the redelivery of a
/// merge whose fate is unknown asks for the very batch the first delivery asked for, its load
/// time included, so the SQL sent under the request id is the same text.
#[tokio::test]
async fn a_redelivered_merge_asks_for_the_same_batch_under_the_same_request() {
    let merging = Merging::new(World::new());
    let message = merging.uploaded(&full_run()).await;
    *merging.warehouse.next_merge_fails.lock().unwrap() =
        Some(WarehouseError::Service("the answer was lost".into()));
    merging.merge(&message).await.unwrap_err();
    merging.merge(&message).await.unwrap();
    let batches = merging.warehouse.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 2);
    assert!(batches[0].request_id.is_some());
    assert!(batches[0].loaded_at.is_some());
    assert_eq!(batches[0], batches[1]);
}

#[tokio::test]
async fn merging_a_half_of_a_split_window_closes_its_hole() {
    let merging = Merging::new(World::new());
    let message = merging.uploaded(&full_run()).await;
    let hole = crate::contracts::hole_key(&account(), &super::run_id());
    merging
        .world
        .blobs
        .put(
            &hole,
            crate::ports::bytes_stream(serde_json::to_vec(&full_run().window).unwrap()),
        )
        .await
        .unwrap();
    merging.merge(&message).await.unwrap();
    assert!(merging.world.blobs.bytes(&hole).is_none());
    // A half that had an open hole read only part of the object: no reconciliation recorded.
    assert!(
        merging
            .world
            .blobs
            .bytes(&crate::contracts::reconcile_key(&account()))
            .is_none()
    );
}
