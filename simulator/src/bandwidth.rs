//! A real org's result downloads are not as fast as loopback: each response takes a while to
//! start (the time to first byte) and then arrives at a capped rate. Per response, so a client
//! that downloads pages in parallel gets more than one that reads them one by one, as from a real
//! org.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// How one response is paced: `None` fields pace nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bandwidth {
    /// Megabits per second per response.
    pub megabits_per_second: Option<f64>,
    pub first_byte: Duration,
}

impl Bandwidth {
    pub fn is_unlimited(&self) -> bool {
        self.megabits_per_second.is_none() && self.first_byte.is_zero()
    }

    /// When the byte ending a response's first `bytes` bytes may leave, counted from the
    /// request: the time to first byte, then the bytes at the capped rate.
    pub fn due_after(&self, bytes: u64) -> Duration {
        let transfer = self
            .megabits_per_second
            .filter(|rate| *rate > 0.0)
            .map_or(Duration::ZERO, |rate| {
                Duration::from_secs_f64(bytes as f64 * 8.0 / (rate * 1_000_000.0))
            });
        self.first_byte + transfer
    }

    /// The body, each chunk held back until it is due.
    pub fn pace<S, E>(self, body: S) -> impl Stream<Item = Result<Bytes, E>> + Send
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Send,
    {
        let started = Instant::now();
        let sent = Arc::new(AtomicU64::new(0));
        body.then(move |chunk| {
            let sent = sent.clone();
            async move {
                if let Ok(bytes) = &chunk {
                    let total =
                        sent.fetch_add(bytes.len() as u64, Ordering::Relaxed) + bytes.len() as u64;
                    tokio::time::sleep_until(started + self.due_after(total)).await;
                }
                chunk
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_waits_its_first_byte_then_arrives_at_the_rate() {
        let pace = Bandwidth {
            megabits_per_second: Some(8.0),
            first_byte: Duration::from_millis(400),
        };
        // 8 Mbit/s is a megabyte a second.
        assert_eq!(pace.due_after(0), Duration::from_millis(400));
        assert_eq!(pace.due_after(1_000_000), Duration::from_millis(1_400));
        assert_eq!(pace.due_after(250_000), Duration::from_millis(650));
        let unlimited = Bandwidth::default();
        assert!(unlimited.is_unlimited());
        assert_eq!(unlimited.due_after(u64::MAX), Duration::ZERO);
    }
}
