//! Each dead letter sfpipe writes also goes to the people who run it, at once and with its
//! reason: a queue wrapper that sends a notice after every dead letter. (A CloudWatch alarm on the
//! dead-letter queue notifies only when it changes state, so while one old letter sits there, new
//! ones would reach nobody.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{Notice, Notifier, OutgoingMessage, Queue, QueueError, ReceivedMessage};

/// A queue whose dead letters are also notices (none without a notifier).
pub struct NotifyingQueue<Q> {
    queue: Q,
    notifier: Option<Arc<dyn Notifier>>,
}

impl<Q> NotifyingQueue<Q> {
    pub fn new(queue: Q, notifier: Option<Arc<dyn Notifier>>) -> Self {
        Self { queue, notifier }
    }

    pub fn inner(&self) -> &Q {
        &self.queue
    }
}

/// The notice of a dead letter: its queue and object in the subject; the reason, the run, the
/// message and what to do in the message.
pub fn dead_letter_notice(queue: &str, message: &ReceivedMessage, reason: &str) -> Notice {
    let body: Option<serde_json::Value> = serde_json::from_str(&message.body).ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let object = field("object").unwrap_or_else(|| "a message".into());
    let run = field("run_id").unwrap_or_else(|| "-".into());
    Notice::new(
        &format!("sfpipe dead letter: {object} on {queue}"),
        &format!(
            "A message of {queue} was dead-lettered; its dead-letter queue keeps it with this \
             reason until it is redriven (README, \"Operating sfpipe\").\n\n\
             reason: {reason}\nobject: {object}\nrun: {run}\nmessage id: {}\nreceives: {}\n\n\
             message:\n{}\n",
            message.message_id, message.receive_count, message.body
        ),
    )
}

impl<Q: Queue> NotifyingQueue<Q> {
    /// The letter is safe in its queue whatever happens here: a notice that cannot be sent is
    /// logged, and the dead-letter queue's alarm remains.
    async fn notice(&self, message: &ReceivedMessage, reason: &str) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let notice = dead_letter_notice(self.queue.name(), message, reason);
        if let Err(error) = notifier.notify(&notice).await {
            tracing::error!(queue = self.queue.name(), %error, "could not send the notice of a dead letter");
        }
    }
}

#[async_trait]
impl<Q: Queue> Queue for NotifyingQueue<Q> {
    fn name(&self) -> &str {
        self.queue.name()
    }
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        self.queue.send(message).await
    }
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.queue.receive(max, wait).await
    }
    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.queue.delete(receipt).await
    }
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.queue.release(receipt, delay).await
    }
    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.queue.send_to_dead_letter(message, reason).await?;
        self.notice(message, reason).await;
        Ok(())
    }
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        self.queue.dead_letter(message, reason).await?;
        self.notice(message, reason).await;
        Ok(())
    }
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        self.queue.depth().await
    }
    async fn message_counts(&self) -> Result<Option<crate::ports::QueueDepth>, QueueError> {
        self.queue.message_counts().await
    }
    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        self.queue.peek(max).await
    }
}
