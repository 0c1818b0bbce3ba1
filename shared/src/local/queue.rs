//! An in-process queue with SQS semantics: at-least-once delivery, visibility timeout, receive
//! count, redrive to a dead-letter queue after N receives, per-message delay, and, for FIFO queues,
//! deduplication by id within five minutes and one message in flight per group.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ports::{
    DEAD_LETTER_REASON, MAX_DELAY, MESSAGE_GROUP_ATTRIBUTE, OutgoingMessage, Queue, QueueError,
    ReceivedMessage, check_outgoing,
};

/// How long a FIFO queue remembers a deduplication id (as SQS does).
const DEDUP_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct LocalQueueConfig {
    pub visibility_timeout: Duration,
    /// Redrive to the dead-letter queue once a message has been received this many times
    /// without being deleted (SQS `maxReceiveCount`).
    pub max_receives: u32,
    pub fifo: bool,
}

impl Default for LocalQueueConfig {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receives: crate::worker::DEFAULT_MAX_RECEIVES,
            fifo: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    message_id: String,
    body: String,
    group: Option<String>,
    attributes: BTreeMap<String, String>,
    visible_at: Instant,
    receive_count: u32,
    /// The receipt of the latest receive; `None` until first received.
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    /// Keyed by arrival order, which is also FIFO order.
    entries: BTreeMap<u64, Entry>,
    receipts: HashMap<String, u64>,
    dedup_seen: HashMap<String, Instant>,
}

pub use crate::ports::QueueDepth;

#[derive(Debug)]
pub struct LocalQueue {
    name: String,
    config: LocalQueueConfig,
    state: Mutex<State>,
    changed: Notify,
    dead_letter_queue: Option<Arc<LocalQueue>>,
}

impl LocalQueue {
    pub fn new(
        name: impl Into<String>,
        config: LocalQueueConfig,
        dead_letter_queue: Option<Arc<LocalQueue>>,
    ) -> Self {
        Self {
            name: name.into(),
            config,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            dead_letter_queue,
        }
    }

    /// A queue with its own dead-letter queue (named `<name>-dlq`, never redriving further).
    pub fn with_dead_letter_queue(name: &str, config: LocalQueueConfig) -> (Arc<Self>, Arc<Self>) {
        let dlq = Arc::new(Self::new(
            format!("{name}-dlq"),
            LocalQueueConfig {
                fifo: config.fifo,
                max_receives: u32::MAX,
                ..config.clone()
            },
            None,
        ));
        let queue = Arc::new(Self::new(name, config, Some(dlq.clone())));
        (queue, dlq)
    }

    pub fn dead_letter_queue(&self) -> Option<&Arc<LocalQueue>> {
        self.dead_letter_queue.as_ref()
    }

    pub fn counts(&self) -> QueueDepth {
        let state = self.lock();
        let now = Instant::now();
        let mut depth = QueueDepth::default();
        for entry in state.entries.values() {
            if entry.visible_at <= now {
                depth.visible += 1;
            } else if entry.receipt.is_some() {
                depth.in_flight += 1;
            } else {
                depth.delayed += 1;
            }
        }
        depth
    }

    /// Every message's body and attributes, without receiving them (for reports and tests).
    pub fn messages(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.lock()
            .entries
            .values()
            .map(|e| (e.body.clone(), e.attributes.clone()))
            .collect()
    }

    /// Resolves at the next send, release or delete on this queue.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the state itself is still consistent
        // because every mutation completes before any call that could panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(
        &self,
        message: OutgoingMessage,
        attributes: BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        check_outgoing(&self.name, &message)?;
        if self.config.fifo && message.group_id.is_none() {
            return Err(QueueError::Service {
                queue: self.name.clone(),
                message: "a FIFO queue needs a message group id".into(),
            });
        }
        if self.config.fifo && !message.delay.is_zero() {
            return Err(QueueError::Service {
                queue: self.name.clone(),
                message: "a FIFO queue does not accept per-message delays".into(),
            });
        }
        let now = Instant::now();
        let mut state = self.lock();
        if self.config.fifo {
            state
                .dedup_seen
                .retain(|_, first| now.duration_since(*first) < DEDUP_WINDOW);
            if state.dedup_seen.contains_key(&message.dedup_id) {
                return Ok(());
            }
            state.dedup_seen.insert(message.dedup_id.clone(), now);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.entries.insert(
            seq,
            Entry {
                message_id: format!("{}-{seq}", self.name),
                body: message.body,
                group: message.group_id,
                attributes,
                visible_at: now + message.delay,
                receive_count: 0,
                receipt: None,
            },
        );
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Takes what can be received now; moves over-received messages to the dead-letter queue.
    fn take_visible(&self, max: usize) -> (Vec<ReceivedMessage>, Option<Instant>) {
        let now = Instant::now();
        let mut state = self.lock();
        let mut busy_groups: Vec<String> = Vec::new();
        if self.config.fifo {
            for entry in state.entries.values() {
                if entry.receipt.is_some()
                    && entry.visible_at > now
                    && let Some(group) = &entry.group
                {
                    busy_groups.push(group.clone());
                }
            }
        }
        let mut taken = Vec::new();
        let mut redrive = Vec::new();
        let mut next_visible: Option<Instant> = None;
        let mut seen_groups: Vec<String> = Vec::new();
        let seqs: Vec<u64> = state.entries.keys().copied().collect();
        for seq in seqs {
            if taken.len() >= max {
                break;
            }
            let Some(entry) = state.entries.get_mut(&seq) else {
                continue;
            };
            if let Some(group) = &entry.group {
                // FIFO: only the oldest message of a group, and only when none of it is in flight.
                if busy_groups.contains(group) || seen_groups.contains(group) {
                    continue;
                }
                seen_groups.push(group.clone());
            }
            if entry.visible_at > now {
                next_visible =
                    Some(next_visible.map_or(entry.visible_at, |n| n.min(entry.visible_at)));
                continue;
            }
            if entry.receive_count >= self.config.max_receives {
                redrive.push(seq);
                continue;
            }
            entry.receive_count += 1;
            entry.visible_at = now + self.config.visibility_timeout;
            let receipt = format!("{}:{seq}:{}", self.name, entry.receive_count);
            if let Some(old) = entry.receipt.replace(receipt.clone()) {
                state.receipts.remove(&old);
            }
            let Some(entry) = state.entries.get(&seq) else {
                continue;
            };
            let mut attributes = entry.attributes.clone();
            if let Some(group) = &entry.group {
                attributes.insert(MESSAGE_GROUP_ATTRIBUTE.to_string(), group.clone());
            }
            let received = ReceivedMessage {
                body: entry.body.clone(),
                receipt: receipt.clone(),
                message_id: entry.message_id.clone(),
                receive_count: entry.receive_count,
                attributes,
            };
            state.receipts.insert(receipt, seq);
            taken.push(received);
        }
        let redriven: Vec<Entry> = redrive
            .into_iter()
            .filter_map(|seq| state.entries.remove(&seq))
            .collect();
        for entry in &redriven {
            if let Some(receipt) = &entry.receipt {
                state.receipts.remove(receipt);
            }
        }
        drop(state);
        for entry in redriven {
            let reason = format!(
                "received {} times without being processed (maxReceiveCount {})",
                entry.receive_count, self.config.max_receives
            );
            self.forward_to_dead_letter_queue(entry, &reason);
        }
        (taken, next_visible)
    }

    /// Dead-letters `entry` with `reason`, replacing any reason it carried.
    fn forward_with_reason(&self, mut entry: Entry, reason: &str) {
        entry
            .attributes
            .insert(DEAD_LETTER_REASON.to_string(), reason.to_string());
        self.forward_to_dead_letter_queue(entry, reason);
    }

    fn forward_to_dead_letter_queue(&self, entry: Entry, reason: &str) {
        let Some(dlq) = &self.dead_letter_queue else {
            tracing::error!(queue = %self.name, reason, "message dropped: no dead-letter queue");
            return;
        };
        let mut attributes = entry.attributes;
        attributes
            .entry(DEAD_LETTER_REASON.to_string())
            .or_insert_with(|| reason.to_string());
        let message = OutgoingMessage {
            body: entry.body,
            dedup_id: entry.message_id,
            group_id: entry.group,
            delay: Duration::ZERO,
        };
        if let Err(error) = dlq.enqueue(message, attributes) {
            tracing::error!(queue = %self.name, %error, "could not dead-letter a message");
        }
    }

    fn entry_for_receipt(&self, state: &State, receipt: &str) -> Result<u64, QueueError> {
        state
            .receipts
            .get(receipt)
            .copied()
            .ok_or_else(|| QueueError::InvalidReceipt {
                queue: self.name.clone(),
            })
    }
}

#[async_trait]
impl Queue for LocalQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        Ok(Some(self.counts().total() as u64))
    }

    async fn message_counts(&self) -> Result<Option<QueueDepth>, QueueError> {
        Ok(Some(self.counts()))
    }

    // Each action counts as the SQS request it stands for (see crate::usage).
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        crate::usage::sqs_request("send");
        self.enqueue(message, BTreeMap::new())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        crate::usage::sqs_request("receive");
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (taken, next_visible) = self.take_visible(max.clamp(1, 10));
            if !taken.is_empty() {
                return Ok(taken);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_visible.map_or(deadline, |n| n.min(deadline));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        crate::usage::sqs_request("delete");
        let mut state = self.lock();
        let seq = self.entry_for_receipt(&state, receipt)?;
        state.receipts.remove(receipt);
        state.entries.remove(&seq);
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        if delay > MAX_DELAY {
            return Err(QueueError::DelayTooLong {
                queue: self.name.clone(),
                delay,
            });
        }
        crate::usage::sqs_request("change-visibility");
        let mut state = self.lock();
        let seq = self.entry_for_receipt(&state, receipt)?;
        if let Some(entry) = state.entries.get_mut(&seq) {
            entry.visible_at = Instant::now() + delay;
        }
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        crate::usage::sqs_request("send");
        let state = self.lock();
        let seq = self.entry_for_receipt(&state, &message.receipt)?;
        let entry = state.entries.get(&seq).cloned();
        drop(state);
        if let Some(entry) = entry {
            self.forward_with_reason(entry, reason);
        }
        Ok(())
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        crate::usage::sqs_request("send");
        let mut state = self.lock();
        let seq = self.entry_for_receipt(&state, &message.receipt)?;
        state.receipts.remove(&message.receipt);
        let entry = state.entries.remove(&seq);
        drop(state);
        if let Some(entry) = entry {
            self.forward_with_reason(entry, reason);
        }
        self.changed.notify_waiters();
        Ok(())
    }
}
