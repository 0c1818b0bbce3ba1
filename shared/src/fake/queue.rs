//! A queue that keeps what is sent to it, for a test to read back. Nothing is ever received from
//! it: a stage test hands the next stage its message itself.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{OutgoingMessage, Queue, QueueError, ReceivedMessage, check_outgoing};

pub struct RecordingQueue {
    name: String,
    sent: Mutex<Vec<OutgoingMessage>>,
}

impl RecordingQueue {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            sent: Mutex::new(Vec::new()),
        }
    }

    /// Takes what was sent since the last call.
    pub fn take(&self) -> Vec<OutgoingMessage> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl Queue for RecordingQueue {
    fn name(&self) -> &str {
        &self.name
    }
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        check_outgoing(&self.name, &message)?;
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
        Ok(())
    }
    async fn receive(
        &self,
        _max: usize,
        _wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _receipt: &str) -> Result<(), QueueError> {
        Err(QueueError::InvalidReceipt {
            queue: self.name.clone(),
        })
    }
    async fn release(&self, _receipt: &str, _delay: Duration) -> Result<(), QueueError> {
        Err(QueueError::InvalidReceipt {
            queue: self.name.clone(),
        })
    }
    async fn send_to_dead_letter(
        &self,
        _message: &ReceivedMessage,
        _reason: &str,
    ) -> Result<(), QueueError> {
        Err(QueueError::InvalidReceipt {
            queue: self.name.clone(),
        })
    }
}
