//! Running a stage handler on one received message, the way a queue-triggered Lambda does:
//! success deletes the message, a retryable failure leaves it for another try, a permanent one
//! sends it to the dead-letter queue with the reason. On Lambda the event source mapping deletes
//! what the function reports done, so there the worker deletes nothing itself.

use std::future::Future;
use std::time::Duration;

use crate::ports::{Queue, QueueError, ReceivedMessage};
use crate::stages::StageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Done,
    /// Released for another try after the given delay.
    Retried {
        delay: Duration,
        reason: String,
    },
    DeadLettered {
        reason: String,
    },
}

/// Who deletes a message once it is done (handled, or its copy sent to the dead-letter queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The worker itself (the local pipeline).
    Here,
    /// Lambda's event source mapping, for every message the function does not report failed:
    /// one delete per message, not two.
    ByEventSource,
}

/// The longest delay before a retry: a message that failed is invisible this long at most.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(900);

/// The delay before a failed message is tried again: `base` doubled with every receive, capped
/// at [`MAX_RETRY_DELAY`]. With the deployed base of 60 s and five tries, a message waits
/// 1 + 2 + 4 + 8 = 15 minutes in all before it is dead-lettered.
pub fn retry_delay(receive_count: u32, base: Duration) -> Duration {
    let factor = 1u32 << receive_count.saturating_sub(1).min(10);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// The receives a queue gives a message before it moves it to its dead-letter queue itself (SQS
/// `maxReceiveCount`; the template's `MaxReceiveCount`).
pub const DEFAULT_MAX_RECEIVES: u32 = 6;

/// The tries the worker gives a message when its queue redrives after `max_receives`: one fewer,
/// so that the worker, not the queue, dead-letters it, with its reason (and the notice a
/// [`crate::dead_letters::NotifyingQueue`] sends). The last receive is kept for a message whose
/// last try never settled (its function was stopped at its timeout): the worker dead-letters it
/// on arrival. The queue's own redrive remains for a function that cannot start at all.
pub fn tries(max_receives: u32) -> u32 {
    max_receives.saturating_sub(1).max(1)
}

/// Handles one message and settles it on `queue`. `handler` gets the body. A retryable failure
/// is retried (after [`retry_delay`]) until the message's last try ([`tries`] of
/// `max_receives`), then dead-lettered with the last failure as its reason.
pub async fn process<Q, F, Fut>(
    queue: &Q,
    message: &ReceivedMessage,
    retry_base: Duration,
    max_receives: u32,
    settlement: Settlement,
    handler: F,
) -> Result<Disposition, QueueError>
where
    Q: Queue + ?Sized,
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), StageError>>,
{
    let tries = tries(max_receives);
    if message.receive_count > tries {
        let reason = format!(
            "received {} times without an outcome: each receive was stopped before it settled \
             the message (the function's timeout, or its memory) or handed back unstarted (too \
             little time left in its batch); its logs for this message id say which",
            message.receive_count
        );
        tracing::error!(queue = queue.name(), receive_count = message.receive_count, error = %reason, "sent to the dead-letter queue");
        dead_letter(queue, message, &reason, settlement).await?;
        return Ok(Disposition::DeadLettered { reason });
    }
    match handler(message.body.clone()).await {
        Ok(()) => {
            if settlement == Settlement::Here {
                queue.delete(&message.receipt).await?;
            }
            Ok(Disposition::Done)
        }
        Err(error) if error.is_retryable() && message.receive_count < tries => {
            let delay = retry_delay(message.receive_count, retry_base);
            let reason = error.to_string();
            tracing::warn!(queue = queue.name(), stage = %error.stage, object = %error.object, receive_count = message.receive_count, error = %reason, "will retry");
            queue.release(&message.receipt, delay).await?;
            Ok(Disposition::Retried { delay, reason })
        }
        Err(error) => {
            let reason = if error.is_retryable() {
                format!("failed on each of its {tries} tries; the last: {error}")
            } else {
                error.to_string()
            };
            tracing::error!(queue = queue.name(), stage = %error.stage, object = %error.object, error = %reason, "sent to the dead-letter queue");
            dead_letter(queue, message, &reason, settlement).await?;
            Ok(Disposition::DeadLettered { reason })
        }
    }
}

async fn dead_letter<Q: Queue + ?Sized>(
    queue: &Q,
    message: &ReceivedMessage,
    reason: &str,
    settlement: Settlement,
) -> Result<(), QueueError> {
    match settlement {
        Settlement::Here => queue.dead_letter(message, reason).await,
        Settlement::ByEventSource => queue.send_to_dead_letter(message, reason).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(retry_delay(1, base), Duration::from_millis(100));
        assert_eq!(retry_delay(2, base), Duration::from_millis(200));
        assert_eq!(retry_delay(4, base), Duration::from_millis(800));
        assert_eq!(retry_delay(50, base), Duration::from_millis(102_400));
        assert_eq!(
            retry_delay(50, Duration::from_secs(1)),
            Duration::from_secs(900)
        );
        // The deployed schedule rides out a ten-minute outage before the fifth receive.
        let waited: Duration = (1..5)
            .map(|n| retry_delay(n, Duration::from_secs(60)))
            .sum();
        assert_eq!(waited, Duration::from_secs(15 * 60));
    }
}
