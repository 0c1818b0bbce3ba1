//! A real org computes a Bulk query's results before the job completes and serves stored files.
//! The simulator renders each page when it is downloaded, on the machine's own CPU, so under the
//! bandwidth model the simulator's CPU, not the modelled link, would limit a client that reads
//! pages in parallel. With the model on, each page rendered is kept, and a later download of the
//! same page of the same query on an unchanged org is served from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// Served in chunks this large, so pacing still starts with the time to first byte.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(crate) struct StoredPages {
    pages: Mutex<HashMap<String, Bytes>>,
}

impl StoredPages {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bytes>> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored page under `key`, in chunks.
    pub(crate) fn get(
        &self,
        key: &str,
    ) -> Option<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + use<>> {
        let page = self.lock().get(key)?.clone();
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..page.len())
            .step_by(CHUNK)
            .map(|at| Ok(page.slice(at..(at + CHUNK).min(page.len()))))
            .collect();
        Some(futures::stream::iter(chunks))
    }

    /// `body` as it is rendered, kept under `key` once it has all been sent.
    pub(crate) fn keep<S>(
        self: Arc<Self>,
        key: String,
        body: S,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send,
    {
        let kept = Arc::new(Mutex::new(Some(BytesMut::new())));
        let ending = kept.clone();
        body.map(move |chunk| {
            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            match &chunk {
                Ok(bytes) => {
                    if let Some(page) = kept.as_mut() {
                        page.extend_from_slice(bytes);
                    }
                }
                // A page that failed to render is not kept.
                Err(_) => *kept = None,
            }
            chunk
        })
        .chain(futures::stream::once(async move {
            let page = ending.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(page) = page {
                self.lock().insert(key, page.freeze());
            }
            Ok(Bytes::new())
        }))
        .filter(|chunk| std::future::ready(!matches!(chunk, Ok(b) if b.is_empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_page_is_kept_once_sent_and_served_again_in_chunks() {
        let store = Arc::new(StoredPages::default());
        assert!(store.get("q|0|10").is_none());
        let body = vec![0u8; CHUNK * 2 + 5];
        let rendered: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::copy_from_slice(&body[..100])),
            Ok(Bytes::copy_from_slice(&body[100..])),
        ];
        let sent: Vec<Bytes> = store
            .clone()
            .keep("q|0|10".into(), futures::stream::iter(rendered))
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        assert_eq!(sent.concat(), body);
        let again: Vec<Bytes> = store
            .get("q|0|10")
            .expect("kept")
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        assert_eq!(again.len(), 3);
        assert_eq!(again.concat(), body);
    }

    #[tokio::test]
    async fn a_page_that_failed_is_not_kept() {
        let store = Arc::new(StoredPages::default());
        let rendered: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"Id\n")),
            Err(std::io::Error::other("dropped")),
        ];
        let _: Vec<_> = store
            .clone()
            .keep("k".into(), futures::stream::iter(rendered))
            .collect()
            .await;
        assert!(store.get("k").is_none());
    }
}
