//! Port wrappers that fail one chosen call, for crash-and-redelivery tests, and queue wrappers that
//! duplicate or record what is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sfpipe_shared::contracts::ObjectName;
use sfpipe_shared::ports::{
    BlobError, BlobMeta, BlobStore, ByteStream, MergeBatch, MergeReport, OutgoingMessage, Queue,
    QueueError, ReceivedMessage, StoredBlob, TableSchema, Warehouse, WarehouseError,
};

/// When the chosen call fails: before it has any effect, or after (a crash right after a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailWhen {
    Before,
    After,
}

/// Counts the calls of every wrapped port and fails call number `fail_at` (1-based; 0: none).
#[derive(Debug)]
pub struct FaultPlan {
    calls: AtomicU64,
    fail_at: AtomicU64,
    when: Mutex<FailWhen>,
    failed: Mutex<Option<String>>,
}

impl FaultPlan {
    pub fn new(fail_at: u64, when: FailWhen) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicU64::new(0),
            fail_at: AtomicU64::new(fail_at),
            when: Mutex::new(when),
            failed: Mutex::new(None),
        })
    }
    /// Starts counting again from zero, failing call `fail_at` (0: none).
    pub fn arm(&self, fail_at: u64, when: FailWhen) {
        *self.when.lock().unwrap() = when;
        *self.failed.lock().unwrap() = None;
        self.calls.store(0, Ordering::SeqCst);
        self.fail_at.store(fail_at, Ordering::SeqCst);
    }
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    /// Which call failed, if one did.
    pub fn failed(&self) -> Option<String> {
        self.failed.lock().unwrap().clone()
    }
    /// Call number of this call, and whether it is the one to fail.
    fn call(&self, what: &str) -> bool {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let hit = n == self.fail_at.load(Ordering::SeqCst);
        if hit {
            let when = *self.when.lock().unwrap();
            *self.failed.lock().unwrap() = Some(format!("call {n}: {what} ({when:?})"));
        }
        hit
    }
    async fn around<T, E>(
        &self,
        what: &str,
        fail: impl Fn() -> E,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let hit = self.call(what);
        let when = *self.when.lock().unwrap();
        if hit && when == FailWhen::Before {
            return Err(fail());
        }
        let result = op.await;
        if hit && result.is_ok() {
            return Err(fail());
        }
        result
    }
}

pub struct FaultyBlobs {
    pub inner: Arc<dyn BlobStore>,
    pub plan: Arc<FaultPlan>,
}

fn blob_fault(key: &str) -> BlobError {
    BlobError::Service {
        key: key.to_string(),
        message: "injected fault".into(),
    }
}

#[async_trait]
impl BlobStore for FaultyBlobs {
    async fn put(&self, key: &str, body: ByteStream) -> Result<StoredBlob, BlobError> {
        self.plan
            .around(
                &format!("put {key}"),
                || blob_fault(key),
                self.inner.put(key, body),
            )
            .await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, BlobError> {
        self.plan
            .around(
                &format!("put_if_absent {key}"),
                || blob_fault(key),
                self.inner.put_if_absent(key, body),
            )
            .await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        self.plan
            .around(
                &format!("get {key}"),
                || blob_fault(key),
                self.inner.get(key),
            )
            .await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        self.plan
            .around(
                &format!("list {prefix}"),
                || blob_fault(prefix),
                self.inner.list(prefix),
            )
            .await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.plan
            .around(
                &format!("head {key}"),
                || blob_fault(key),
                self.inner.head(key),
            )
            .await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.plan
            .around(
                &format!("delete {key}"),
                || blob_fault(key),
                self.inner.delete(key),
            )
            .await
    }
}

/// A blob store as far away as S3 is from a Lambda function, for the keys under `prefixes`:
/// every call waits `latency` first.
pub struct SlowBlobs {
    pub inner: Arc<dyn BlobStore>,
    pub latency: Duration,
    pub prefixes: Vec<&'static str>,
}

impl SlowBlobs {
    async fn wait(&self, key: &str) {
        if self.prefixes.iter().any(|p| key.starts_with(p)) {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait]
impl BlobStore for SlowBlobs {
    async fn put(&self, key: &str, body: ByteStream) -> Result<StoredBlob, BlobError> {
        self.wait(key).await;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, BlobError> {
        self.wait(key).await;
        self.inner.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, BlobError> {
        self.wait(key).await;
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>, BlobError> {
        self.wait(prefix).await;
        self.inner.list(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.wait(key).await;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.wait(key).await;
        self.inner.delete(key).await
    }
}

pub struct FaultyWarehouse {
    pub inner: Arc<dyn Warehouse>,
    pub plan: Arc<FaultPlan>,
}

fn warehouse_fault() -> WarehouseError {
    WarehouseError::Service("injected fault".into())
}

#[async_trait]
impl Warehouse for FaultyWarehouse {
    async fn ensure_table(&self, schema: &TableSchema) -> Result<(), WarehouseError> {
        self.plan
            .around(
                &format!("ensure_table {}", schema.object),
                warehouse_fault,
                self.inner.ensure_table(schema),
            )
            .await
    }
    async fn merge(&self, batch: &MergeBatch) -> Result<MergeReport, WarehouseError> {
        self.plan
            .around(
                &format!("merge {}", batch.schema.object),
                warehouse_fault,
                self.inner.merge(batch),
            )
            .await
    }
    async fn watermark(
        &self,
        object: &ObjectName,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        self.plan
            .around(
                &format!("watermark {object}"),
                warehouse_fault,
                self.inner.watermark(object),
            )
            .await
    }
    async fn lineage(
        &self,
        object: &ObjectName,
        id: &str,
    ) -> Result<Option<sfpipe_shared::ports::RowLineage>, WarehouseError> {
        self.inner.lineage(object, id).await
    }
}

/// Messages sent, with the name of the queue each went to.
pub type SentLog = Arc<Mutex<Vec<(String, OutgoingMessage)>>>;

/// What a wrapped queue does with each send besides passing it on.
#[derive(Clone, Default)]
pub struct SendBehaviour {
    /// Fail one send, counted with the other ports' calls.
    pub plan: Option<Arc<FaultPlan>>,
    /// Send every message twice; the copy with another deduplication id, as a copy delivered
    /// after a FIFO queue's deduplication window would be.
    pub duplicate: bool,
    /// Every message sent, for replaying later.
    pub record: Option<SentLog>,
    /// Duplicates and random delays switched on and off while running (chaos schedules).
    pub chaos: Option<Arc<ChaosSends>>,
}

/// Send faults a chaos schedule changes from run to run: duplicate every message, and delay each by
/// a random amount up to a bound, which reorders deliveries.
#[derive(Debug)]
pub struct ChaosSends {
    pub duplicate: std::sync::atomic::AtomicBool,
    pub max_delay_ms: AtomicU64,
    rng: Mutex<fastrand::Rng>,
}

impl ChaosSends {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            duplicate: std::sync::atomic::AtomicBool::new(false),
            max_delay_ms: AtomicU64::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        })
    }
    pub fn set(&self, duplicate: bool, max_delay_ms: u64) {
        self.duplicate.store(duplicate, Ordering::SeqCst);
        self.max_delay_ms.store(max_delay_ms, Ordering::SeqCst);
    }
    fn delay(&self) -> Duration {
        let max = self.max_delay_ms.load(Ordering::SeqCst);
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.rng.lock().unwrap().u64(0..=max))
    }
}

pub struct WrappedQueue {
    pub inner: Arc<dyn Queue>,
    pub behaviour: SendBehaviour,
}

#[async_trait]
impl Queue for WrappedQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        if let Some(record) = &self.behaviour.record {
            record
                .lock()
                .unwrap()
                .push((self.inner.name().to_string(), message.clone()));
        }
        let mut message = message;
        let mut duplicate = self.behaviour.duplicate;
        if let Some(chaos) = &self.behaviour.chaos {
            duplicate |= chaos.duplicate.load(Ordering::SeqCst);
            let delay = chaos.delay();
            // FIFO queues take no per-message delay; their order is the point anyway.
            if !delay.is_zero() && message.group_id.is_none() {
                let longest = message.delay.max(delay);
                message = message.delayed(longest);
            }
        }
        let copy = duplicate.then(|| OutgoingMessage {
            dedup_id: format!("{}-copy", message.dedup_id),
            ..message.clone()
        });
        let queue = self.inner.name().to_string();
        let send = self.inner.send(message);
        match &self.behaviour.plan {
            Some(plan) => {
                plan.around(
                    &format!("send to {queue}"),
                    || QueueError::Service {
                        queue: queue.clone(),
                        message: "injected fault".into(),
                    },
                    send,
                )
                .await?
            }
            None => send.await?,
        }
        if let Some(copy) = copy {
            self.inner.send(copy).await?;
        }
        Ok(())
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.inner.release(receipt, delay).await
    }
    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.inner.send_to_dead_letter(message, reason).await
    }
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        self.inner.dead_letter(message, reason).await
    }
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        self.inner.depth().await
    }
    async fn message_counts(&self) -> Result<Option<sfpipe_shared::ports::QueueDepth>, QueueError> {
        self.inner.message_counts().await
    }
    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        self.inner.peek(max).await
    }
}
