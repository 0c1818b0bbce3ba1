//! job-loader, branch by branch, on the embedded SQLite warehouse (feature `local`).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::account;
use crate::contracts::{Contract, ExtractMessage, Mode, Window, hole_key};
use crate::fake::{MemoryBlobs, RecordingQueue};
use crate::local::SqliteWarehouse;
use crate::ports::{BlobStore, ColumnSpec, MergeBatch, TableSchema, Warehouse};
use crate::stages::loader::{LoadRequest, LoaderConfig, LoaderDeps, run_loader};

struct Loading {
    salesforce: crate::fake::FakeSalesforce,
    blobs: Arc<MemoryBlobs>,
    warehouse: SqliteWarehouse,
    queue: RecordingQueue,
    _dir: tempfile::TempDir,
}

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, hour, 0, 0).unwrap()
}

impl Loading {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(MemoryBlobs::new());
        let warehouse = SqliteWarehouse::open(dir.path().join("w.db"), blobs.clone()).unwrap();
        Self {
            salesforce: crate::fake::FakeSalesforce::new(),
            blobs,
            warehouse,
            queue: RecordingQueue::new("extract"),
            _dir: dir,
        }
    }

    async fn load(
        &self,
        request: &LoadRequest,
        triggered_at: DateTime<Utc>,
    ) -> Vec<ExtractMessage> {
        let deps = LoaderDeps {
            salesforce: &self.salesforce,
            extract_queue: &self.queue,
            warehouse: &self.warehouse,
            blobs: &*self.blobs,
            config: &LoaderConfig::default(),
        };
        run_loader(&deps, request, triggered_at).await.unwrap();
        self.queue
            .take()
            .iter()
            .map(|m| ExtractMessage::from_body(&m.body).unwrap())
            .collect()
    }

    /// Merges one Account row changed at `modstamp`, so the watermark is there.
    async fn loaded_until(&self, modstamp: &str) {
        let column = |name: &str, sf_type: &str| ColumnSpec {
            name: name.into(),
            sf_type: sf_type.into(),
            length: 0,
            precision: 0,
            scale: 0,
        };
        let schema = TableSchema {
            object: account(),
            columns: vec![
                column("Id", "id"),
                column("IsDeleted", "boolean"),
                column("SystemModstamp", "datetime"),
            ],
        };
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut gzip,
            format!("Id,IsDeleted,SystemModstamp\n001A,false,{modstamp}\n").as_bytes(),
        )
        .unwrap();
        self.blobs
            .put(
                "part.csv.gz",
                crate::ports::bytes_stream(gzip.finish().unwrap()),
            )
            .await
            .unwrap();
        self.warehouse.ensure_table(&schema).await.unwrap();
        self.warehouse
            .merge(&MergeBatch {
                schema,
                run_id: super::run_id(),
                files: vec!["part.csv.gz".into()],
                extracted_at: at(0),
                update_only: false,
                reconcile_until: None,
                request_id: None,
                loaded_at: None,
            })
            .await
            .unwrap();
    }
}

fn scheduled() -> LoadRequest {
    LoadRequest {
        objects: vec![account()],
        mode: Mode::Incremental,
        since: None,
        until: None,
    }
}

#[tokio::test]
async fn an_object_never_loaded_gets_a_full_run_with_the_same_id_every_time() {
    let loading = Loading::new();
    let first = loading.load(&scheduled(), at(6)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].mode, Mode::Full);
    assert_eq!(first[0].window.since, None);
    assert_eq!(
        first[0].window.until,
        at(6) - chrono::Duration::minutes(2),
        "the lag"
    );
    let again = loading.load(&scheduled(), at(6)).await;
    assert_eq!(
        again, first,
        "a redelivered trigger queues the same messages"
    );
}

#[tokio::test]
async fn a_loaded_object_is_read_from_its_watermark_less_the_overlap_with_its_periodic_runs() {
    let loading = Loading::new();
    loading.loaded_until("2026-01-02T03:00:00Z").await;
    let runs = loading.load(&scheduled(), at(6)).await;
    let modes: Vec<Mode> = runs.iter().map(|r| r.mode).collect();
    assert_eq!(
        modes,
        [Mode::Incremental, Mode::FormulaRefresh, Mode::Reconcile],
        "never refreshed: both due"
    );
    assert_eq!(
        runs[0].window.since,
        Some(at(3) - chrono::Duration::minutes(10))
    );
    assert!(runs.iter().all(|r| r.window.until == runs[0].window.until));
}

#[tokio::test]
async fn an_open_hole_older_than_the_watermark_is_read_again() {
    let loading = Loading::new();
    loading.loaded_until("2026-01-02T03:00:00Z").await;
    let child = super::run_id().child('a').unwrap();
    let hole = Window {
        since: Some(at(1)),
        until: at(2),
    };
    loading
        .blobs
        .put(
            &hole_key(&account(), &child),
            crate::ports::bytes_stream(serde_json::to_vec(&hole).unwrap()),
        )
        .await
        .unwrap();
    let runs = loading.load(&scheduled(), at(6)).await;
    assert_eq!(runs[0].window.since, Some(at(1)));
}

#[tokio::test]
async fn a_window_that_would_be_empty_queues_nothing() {
    let loading = Loading::new();
    let backfill = LoadRequest {
        since: Some(at(5)),
        until: Some(at(5)),
        ..scheduled()
    };
    assert!(loading.load(&backfill, at(6)).await.is_empty());
}
