//! The queue port: SQS-shaped, at-least-once delivery.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

/// The message attribute under which a dead-lettered message carries why it was dead-lettered.
pub const DEAD_LETTER_REASON: &str = "sfpipe-dead-letter-reason";

/// The attribute of a [`ReceivedMessage`] that carries its FIFO message group (SQS's own system
/// attribute name), so a dead letter keeps its group.
pub const MESSAGE_GROUP_ATTRIBUTE: &str = "MessageGroupId";

/// A queue's messages by where they are: what `sfpipe status` shows between two stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: usize,
    /// Received and not yet deleted: a handler at work on each (or one that died, until its
    /// visibility timeout ends).
    pub in_flight: usize,
    /// Waiting out a delay (a retry's backoff, a release with a delay).
    pub delayed: usize,
}

impl QueueDepth {
    pub fn total(&self) -> usize {
        self.visible + self.in_flight + self.delayed
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Deterministic id of the work; FIFO queues deduplicate on it.
    pub dedup_id: String,
    /// FIFO message group (the object): messages of one group are handled one at a time, in order.
    pub group_id: Option<String>,
    pub delay: Duration,
}

impl OutgoingMessage {
    pub fn new(body: String, dedup_id: String) -> Self {
        Self {
            body,
            dedup_id,
            group_id: None,
            delay: Duration::ZERO,
        }
    }
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub body: String,
    /// Handle for delete/release; valid for this receive only.
    pub receipt: String,
    /// The queue's own id for the message.
    pub message_id: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue}: the receipt handle is not (or no longer) valid")]
    InvalidReceipt { queue: String },
    #[error("queue {queue}: message body of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        queue: String,
        size: usize,
        limit: usize,
    },
    #[error("queue {queue}: delay of {delay:?} exceeds the 900 s maximum")]
    DelayTooLong { queue: String, delay: Duration },
    #[error(
        "queue {queue}: access denied ({message}): the function's role lacks this SQS permission; \
         grant it in template.yaml and redeploy"
    )]
    AccessDenied { queue: String, message: String },
    #[error("queue {queue}: {message}")]
    Service { queue: String, message: String },
}

/// SQS-shaped queue: at-least-once delivery, visibility timeout, receive count, dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    fn name(&self) -> &str;
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError>;
    /// Up to `max` messages, waiting at most `wait` for the first one. Received messages are
    /// invisible to other receivers until deleted, released, or their visibility timeout ends.
    async fn receive(&self, max: usize, wait: Duration)
    -> Result<Vec<ReceivedMessage>, QueueError>;
    /// The message is done.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Make the message visible again after `delay` (zero: at once).
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;
    /// Send a copy of the message, with its group and a reason, to this queue's dead-letter
    /// queue, and leave the message itself to whoever settles it: on Lambda the event source
    /// mapping deletes every message the function reports done.
    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError>;
    /// Move the message to this queue's dead-letter queue, with a reason, and delete it here.
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        self.send_to_dead_letter(message, reason).await?;
        self.delete(&message.receipt).await
    }
    /// Messages in the queue, visible, delayed or in flight, as far as the adapter can count
    /// them; `None` when it cannot. A pipeline on a broker knows its run is done when its
    /// queues' depths are all zero.
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        Ok(None)
    }
    /// The queue's messages by where they are, as the service counts them (SQS's are
    /// approximate); `None` when the adapter cannot tell.
    async fn message_counts(&self) -> Result<Option<QueueDepth>, QueueError> {
        Ok(None)
    }
    /// Up to `max` messages, looked into and left in the queue: what `sfpipe status` shows of a
    /// dead-letter queue. `None` when the adapter cannot look.
    async fn peek(&self, _max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        Ok(None)
    }
}

/// A shared queue is a queue (so a wrapper such as [`crate::dead_letters::NotifyingQueue`] can
/// hold one).
#[async_trait]
impl<T: Queue + ?Sized> Queue for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        (**self).send(message).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        (**self).receive(max, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        (**self).delete(receipt).await
    }
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        (**self).release(receipt, delay).await
    }
    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        (**self).send_to_dead_letter(message, reason).await
    }
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        (**self).dead_letter(message, reason).await
    }
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        (**self).depth().await
    }
    async fn message_counts(&self) -> Result<Option<QueueDepth>, QueueError> {
        (**self).message_counts().await
    }
    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        (**self).peek(max).await
    }
}

/// The limits SQS puts on a message, checked before sending so every adapter refuses alike.
pub fn check_outgoing(queue: &str, message: &OutgoingMessage) -> Result<(), QueueError> {
    if message.body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::TooLarge {
            queue: queue.to_string(),
            size: message.body.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    if message.delay > MAX_DELAY {
        return Err(QueueError::DelayTooLong {
            queue: queue.to_string(),
            delay: message.delay,
        });
    }
    Ok(())
}

/// The largest message body SQS accepts.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The longest delay SQS accepts.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
