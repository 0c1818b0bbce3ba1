//! What every blob store adapter must do. Each check uses its own key prefix, so one store can
//! serve them all.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::checksum::crc64nvme;
use crate::ports::{BlobError, BlobStore, ByteStream, StoredBlob, bytes_stream};

fn chunked(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Deterministic, incompressible-looking bytes.
fn sample(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn read_all(store: &dyn BlobStore, key: &str) -> Vec<u8> {
    let mut stream = store.get(key).await.expect("get");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// What a put of `data` must report: its size and CRC-64/NVME.
fn stored(data: &[u8]) -> StoredBlob {
    StoredBlob {
        bytes: data.len() as u64,
        crc64nvme: crc64nvme(data),
    }
}

pub async fn put_get_head_round_trip(store: &dyn BlobStore) {
    // Three multipart parts on S3 (8 MiB each at most), sent in small chunks.
    let data = sample(17 * 1024 * 1024 + 123);
    let key = "conformance/roundtrip/data.bin";
    let written = store
        .put(key, chunked(&data, 64 * 1024))
        .await
        .expect("put");
    assert_eq!(written, stored(&data));
    assert_eq!(read_all(store, key).await, data);
    let head = store.head(key).await.expect("head").expect("exists");
    assert_eq!(head.size, data.len() as u64);
    let empty = "conformance/roundtrip/empty.bin";
    assert_eq!(
        store.put(empty, chunked(&[], 1)).await.expect("put empty"),
        stored(&[])
    );
    assert!(read_all(store, empty).await.is_empty());
}

pub async fn missing_objects_are_reported(store: &dyn BlobStore) {
    let key = "conformance/missing/nothing-here";
    assert!(matches!(
        store.get(key).await,
        Err(BlobError::NotFound { .. })
    ));
    assert_eq!(store.head(key).await.expect("head"), None);
    store
        .delete(key)
        .await
        .expect("deleting a missing object is fine");
}

pub async fn put_replaces(store: &dyn BlobStore) {
    let key = "conformance/replace/x";
    store.put(key, bytes_stream("first")).await.expect("put");
    assert_eq!(
        store.put(key, bytes_stream("second")).await.expect("put"),
        stored(b"second")
    );
    assert_eq!(read_all(store, key).await, b"second");
}

pub async fn put_if_absent_creates_once(store: &dyn BlobStore) {
    let key = "conformance/absent/marker";
    assert!(
        store
            .put_if_absent(key, Bytes::from("first"))
            .await
            .expect("create")
    );
    assert!(
        !store
            .put_if_absent(key, Bytes::from("second"))
            .await
            .expect("create again")
    );
    assert_eq!(read_all(store, key).await, b"first");
}

pub async fn concurrent_put_if_absent_has_one_winner(store: Arc<dyn BlobStore>) {
    let key = "conformance/race/marker";
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_if_absent(key, Bytes::from(format!("writer {i}")))
                .await
                .expect("create")
        }));
    }
    let mut winners = 0;
    for task in tasks {
        if task.await.expect("task") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one writer must create the marker");
}

pub async fn list_filters_by_prefix_in_key_order(store: &dyn BlobStore) {
    for key in [
        "conformance/list/run1/part-00002.csv.gz",
        "conformance/list/run1/part-00001.csv.gz",
        "conformance/list/run1/schema.json",
        "conformance/list/run10/part-00001.csv.gz",
    ] {
        store
            .put(key, bytes_stream(key.to_string()))
            .await
            .expect("put");
    }
    let listed: Vec<String> = store
        .list("conformance/list/run1/part-")
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(
        listed,
        [
            "conformance/list/run1/part-00001.csv.gz",
            "conformance/list/run1/part-00002.csv.gz"
        ]
    );
    let all = store.list("conformance/list/run1").await.expect("list");
    assert_eq!(all.len(), 4, "{all:?}");
    let sizes: Vec<u64> = all.iter().map(|b| b.size).collect();
    assert!(sizes.iter().all(|&s| s > 0));
    assert!(
        store
            .list("conformance/list/none/")
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn delete_removes(store: &dyn BlobStore) {
    let key = "conformance/delete/x";
    store.put(key, bytes_stream("x")).await.expect("put");
    store.delete(key).await.expect("delete");
    assert_eq!(store.head(key).await.expect("head"), None);
}

/// A body that fails midway stores nothing, and leaves an earlier object at the key intact.
pub async fn failed_writes_leave_nothing_behind(store: &dyn BlobStore) {
    let failing = || -> ByteStream {
        Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from(vec![7u8; 1024 * 1024])),
            Err(std::io::Error::other("connection reset mid-page")),
        ]))
    };
    let fresh = "conformance/atomic/fresh";
    assert!(store.put(fresh, failing()).await.is_err());
    assert_eq!(
        store.head(fresh).await.expect("head"),
        None,
        "a partial object was left behind"
    );
    let existing = "conformance/atomic/existing";
    store
        .put(existing, bytes_stream("good"))
        .await
        .expect("put");
    assert!(store.put(existing, failing()).await.is_err());
    assert_eq!(read_all(store, existing).await, b"good");
}

pub async fn run_all(store: Arc<dyn BlobStore>) {
    put_get_head_round_trip(store.as_ref()).await;
    missing_objects_are_reported(store.as_ref()).await;
    put_replaces(store.as_ref()).await;
    put_if_absent_creates_once(store.as_ref()).await;
    concurrent_put_if_absent_has_one_winner(store.clone()).await;
    list_filters_by_prefix_in_key_order(store.as_ref()).await;
    delete_removes(store.as_ref()).await;
    failed_writes_leave_nothing_behind(store.as_ref()).await;
}
