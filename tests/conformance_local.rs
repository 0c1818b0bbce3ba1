//! The conformance suites against the local adapters.

use std::sync::Arc;

use async_trait::async_trait;
use sfpipe_shared::conformance::{blob, notify, queue, secrets, warehouse};
use sfpipe_shared::local::{
    FileNotifier, FsBlobStore, LocalQueue, LocalQueueConfig, SqliteWarehouse, StaticSecrets,
};
use sfpipe_shared::ports::{BlobStore, DeletedRows, Queue};

struct LocalQueues;

#[async_trait]
impl queue::QueueFactory for LocalQueues {
    async fn make(&self, spec: queue::QueueSpec) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let (queue, dlq) = LocalQueue::with_dead_letter_queue(
            "conformance",
            LocalQueueConfig {
                visibility_timeout: spec.visibility_timeout,
                max_receives: spec.max_receives,
                fifo: spec.fifo,
            },
        );
        (queue, dlq)
    }
}

#[tokio::test]
async fn local_queue_conforms() {
    queue::run_all(&LocalQueues).await;
}

#[tokio::test]
async fn filesystem_blob_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    blob::run_all(Arc::new(FsBlobStore::new(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn sqlite_warehouse_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(dir.path().join("blobs")).unwrap());
    let sqlite =
        Arc::new(SqliteWarehouse::open(dir.path().join("w.sqlite"), blobs.clone()).unwrap());
    warehouse::run_all(&warehouse::WarehouseUnderTest {
        warehouse: sqlite.clone(),
        blobs,
        inspector: sqlite,
    })
    .await;
}

#[tokio::test]
async fn sqlite_warehouse_removes_deleted_rows_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(dir.path().join("blobs")).unwrap());
    let sqlite = Arc::new(
        SqliteWarehouse::open(dir.path().join("w.sqlite"), blobs.clone())
            .unwrap()
            .with_deleted_rows(DeletedRows::Remove),
    );
    warehouse::deleted_rows_are_removed_when_asked(&warehouse::WarehouseUnderTest {
        warehouse: sqlite.clone(),
        blobs: blobs.clone(),
        inspector: sqlite.clone(),
    })
    .await;
    warehouse::a_reconciliation_removes_missing_rows_when_asked(&warehouse::WarehouseUnderTest {
        warehouse: sqlite.clone(),
        blobs,
        inspector: sqlite,
    })
    .await;
}

#[tokio::test]
async fn static_secrets_conform() {
    secrets::run_all(&StaticSecrets::new().with(secrets::NAME, secrets::VALUE)).await;
}

#[tokio::test]
#[allow(unsafe_code)]
async fn environment_secrets_conform() {
    // Only this test sets the variable, and it sets it before any read.
    unsafe {
        std::env::set_var(
            sfpipe_shared::local::EnvSecrets::variable_for(secrets::NAME),
            secrets::VALUE,
        );
    }
    secrets::run_all(&sfpipe_shared::local::EnvSecrets).await;
}

/// The notices appended to the file since the last look.
struct FileDelivered {
    path: std::path::PathBuf,
    seen: std::sync::Mutex<usize>,
}

#[async_trait]
impl notify::Delivered for FileDelivered {
    async fn delivered(&self, _at_least: usize) -> Vec<sfpipe_shared::ports::Notice> {
        // The file is written before `notify` returns: nothing is on its way.
        let lines = FileNotifier::read(&self.path).expect("read the notices");
        let mut seen = self.seen.lock().unwrap();
        let new = lines[*seen..]
            .iter()
            .map(|l| sfpipe_shared::ports::Notice {
                subject: l.subject.clone(),
                message: l.message.clone(),
            })
            .collect();
        *seen = lines.len();
        new
    }
}

#[tokio::test]
async fn file_notifier_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notices.jsonl");
    notify::run_all(
        &FileNotifier::new(&path),
        &FileDelivered {
            path,
            seen: std::sync::Mutex::new(0),
        },
    )
    .await;
}
