//! The queue port on SQS. FIFO queues (URL ending in `.fifo`) get a message group and a
//! deterministic deduplication id; standard queues get per-message delays. Dead-lettering sends
//! the message to the queue's DLQ with the reason as a message attribute, then deletes it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};

use super::{describe, is_access_denied};
use crate::ports::{
    DEAD_LETTER_REASON, MESSAGE_GROUP_ATTRIBUTE as GROUP_ATTRIBUTE, OutgoingMessage, Queue,
    QueueDepth, QueueError, ReceivedMessage, check_outgoing,
};

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    name: String,
    url: String,
    dead_letter_url: Option<String>,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        let url = url.into();
        let name = url.rsplit('/').next().unwrap_or(&url).to_string();
        Self {
            client,
            name,
            url,
            dead_letter_url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn is_fifo(url: &str) -> bool {
        url.ends_with(".fifo")
    }

    fn error(&self, message: impl Into<String>) -> QueueError {
        QueueError::Service {
            queue: self.name.clone(),
            message: message.into(),
        }
    }

    /// An SQS call's error: a refused permission apart, since no retry can fix it.
    fn failed<E>(&self, error: &aws_sdk_sqs::error::SdkError<E>) -> QueueError
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        if is_access_denied(error) {
            QueueError::AccessDenied {
                queue: self.name.clone(),
                message: describe(error),
            }
        } else {
            self.error(describe(error))
        }
    }

    /// Up to `max` messages, at most 10 a call; `visibility`: how long they stay hidden (none:
    /// the queue's visibility timeout).
    async fn receive_with(
        &self,
        max: usize,
        wait: Duration,
        visibility: Option<i32>,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        crate::usage::sqs_request("receive");
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(output
            .messages()
            .iter()
            .map(|m| {
                let system = m.attributes();
                let mut attributes: BTreeMap<String, String> = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .filter_map(|(k, v)| {
                                v.string_value().map(|s| (k.clone(), s.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(group) =
                    system.and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                {
                    attributes.insert(GROUP_ATTRIBUTE.to_string(), group.clone());
                }
                ReceivedMessage {
                    body: m.body().unwrap_or_default().to_string(),
                    receipt: m.receipt_handle().unwrap_or_default().to_string(),
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receive_count: system
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1),
                    attributes,
                }
            })
            .collect())
    }

    async fn send_to(
        &self,
        url: &str,
        message: OutgoingMessage,
        attributes: BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        check_outgoing(&self.name, &message)?;
        let mut request = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(message.body);
        if Self::is_fifo(url) {
            let group = message
                .group_id
                .ok_or_else(|| self.error("a FIFO queue needs a message group id"))?;
            request = request
                .message_group_id(group)
                .message_deduplication_id(&message.dedup_id);
        } else if !message.delay.is_zero() {
            request = request.delay_seconds(message.delay.as_secs().min(900) as i32);
        }
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| self.error(e.to_string()))?;
            request = request.message_attributes(name, value);
        }
        crate::usage::sqs_request("send");
        request.send().await.map_err(|e| self.failed(&e))?;
        Ok(())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads up to `max` messages without taking them (each is visible again at once), for
    /// looking into a dead-letter queue. Approximate, as SQS sampling is: a message may be
    /// missed on a queue that holds more than `max`.
    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        let mut seen: BTreeMap<String, ReceivedMessage> = BTreeMap::new();
        let mut quiet_calls = 0;
        while seen.len() < max && quiet_calls < 3 {
            let batch = self.receive_with(10, Duration::ZERO, Some(0)).await?;
            let before = seen.len();
            for message in batch {
                seen.entry(message.message_id.clone()).or_insert(message);
            }
            quiet_calls = if seen.len() == before {
                quiet_calls + 1
            } else {
                0
            };
        }
        Ok(Some(seen.into_values().take(max).collect()))
    }

    /// SQS's approximate counts (`ApproximateNumberOfMessages`, `...NotVisible`, `...Delayed`):
    /// one GetQueueAttributes.
    async fn message_counts(&self) -> Result<Option<QueueDepth>, QueueError> {
        crate::usage::sqs_request("get-attributes");
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| self.failed(&e))?;
        let attributes = answer.attributes();
        let count = |name: QueueAttributeName| -> Result<usize, QueueError> {
            let value = attributes
                .and_then(|a| a.get(&name))
                .ok_or_else(|| self.error(format!("SQS answered no {}", name.as_str())))?;
            value
                .parse()
                .map_err(|_| self.error(format!("SQS answered {value:?} for {}", name.as_str())))
        };
        Ok(Some(QueueDepth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        }))
    }

    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        self.send_to(&self.url, message, BTreeMap::new()).await
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_with(max, wait, None).await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        crate::usage::sqs_request("delete");
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(())
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        if delay > Duration::from_secs(43_200) {
            return Err(QueueError::DelayTooLong {
                queue: self.name.clone(),
                delay,
            });
        }
        crate::usage::sqs_request("change-visibility");
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs() as i32)
            .send()
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(())
    }

    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        let dead_letter_url = self.dead_letter_url.clone().ok_or_else(|| {
            self.error("no dead-letter queue is configured; set the queue's DLQ URL")
        })?;
        let mut attributes: BTreeMap<String, String> = message
            .attributes
            .iter()
            .filter(|(k, _)| k.as_str() != GROUP_ATTRIBUTE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // SQS caps an attribute value with the message; keep reasons short enough to read.
        let reason: String = reason.chars().take(4000).collect();
        attributes.insert(DEAD_LETTER_REASON.to_string(), reason);
        let outgoing = OutgoingMessage {
            body: message.body.clone(),
            dedup_id: message.message_id.clone(),
            group_id: Some(
                message
                    .attributes
                    .get(GROUP_ATTRIBUTE)
                    .cloned()
                    .unwrap_or_else(|| "dead-letters".to_string()),
            ),
            delay: Duration::ZERO,
        };
        self.send_to(&dead_letter_url, outgoing, attributes).await
    }
}
