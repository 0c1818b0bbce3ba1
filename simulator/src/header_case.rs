//! Header names as Salesforce writes them on HTTP/1.1. hyper writes names in lower case, or in
//! Title-Case when asked (`Sforce-Locator`, `Content-Type`); Salesforce's `Sforce-NumberOfRecords`
//! has an inner capital, which this stream wrapper restores as the response head is written.
//! Clients that index a plain map by the exact name (an unmodified Airbyte source) depend on it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Names hyper's Title-Case gets wrong, as written (with the line break before them, so a body
/// is not rewritten) and as Salesforce writes them: the same length, so a write's count holds.
const RENAMES: [(&[u8], &[u8]); 1] = [(
    b"\r\nSforce-Numberofrecords:",
    b"\r\nSforce-NumberOfRecords:",
)];

fn needs_renaming(bytes: &[u8]) -> bool {
    RENAMES
        .iter()
        .any(|(wrong, _)| memchr::memmem::find(bytes, wrong).is_some())
}

/// Renames in a copy of `bytes`, or `None` when nothing is to be renamed (the usual case).
fn renamed(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut copy: Option<Vec<u8>> = None;
    for (wrong, right) in RENAMES {
        let mut from = 0;
        while let Some(at) = memchr::memmem::find(&bytes[from..], wrong) {
            let start = from + at;
            copy.get_or_insert_with(|| bytes.to_vec())[start..start + right.len()]
                .copy_from_slice(right);
            from = start + wrong.len();
        }
    }
    copy
}

/// A connection whose response heads carry Salesforce's header names.
pub struct SalesforceHeaderCase<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for SalesforceHeaderCase<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SalesforceHeaderCase<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match renamed(buf) {
            Some(copy) => Pin::new(&mut self.0).poll_write(cx, &copy),
            None => Pin::new(&mut self.0).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Body chunks pass through without a copy; only a write holding a head is rewritten.
        if !bufs.iter().any(|b| needs_renaming(b)) {
            return Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        }
        let copies: Vec<Option<Vec<u8>>> = bufs.iter().map(|b| renamed(b)).collect();
        let slices: Vec<IoSlice<'_>> = bufs
            .iter()
            .zip(&copies)
            .map(|(buf, copy)| IoSlice::new(copy.as_deref().unwrap_or(buf)))
            .collect();
        Pin::new(&mut self.0).poll_write_vectored(cx, &slices)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Wraps the streams another acceptor gives (after TLS, so the head is seen in clear).
#[derive(Clone, Debug, Default)]
pub struct HeaderCaseAcceptor<A>(pub A);

impl<A, I, S> Accept<I, S> for HeaderCaseAcceptor<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
{
    type Stream = SalesforceHeaderCase<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.0.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((SalesforceHeaderCase(stream), service))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_in_a_head_are_renamed() {
        let head = b"HTTP/1.1 200 OK\r\nSforce-Numberofrecords: 5\r\nSforce-Locator: x\r\n\r\n";
        let renamed = renamed(head).expect("renamed");
        assert_eq!(
            String::from_utf8(renamed).unwrap(),
            "HTTP/1.1 200 OK\r\nSforce-NumberOfRecords: 5\r\nSforce-Locator: x\r\n\r\n"
        );
        assert_eq!(super::renamed(b"a body: Sforce-Numberofrecords"), None);
    }
}
