//! The queue conformance suite's factory for any broker URL (`redis://`, `amqp://`): each check
//! gets fresh queues, through the same `brokers::connect` the workers use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use sfpipe_shared::brokers::{BrokerQueueConfig, connect};
use sfpipe_shared::conformance::queue::{QueueFactory, QueueSpec};
use sfpipe_shared::ports::Queue;

pub struct BrokerQueues {
    url: String,
    next: AtomicU32,
}

impl BrokerQueues {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            next: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl QueueFactory for BrokerQueues {
    async fn make(&self, spec: QueueSpec) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("conformance-{n}");
        let dlq_name = format!("{name}-dlq");
        let config = BrokerQueueConfig {
            visibility_timeout: spec.visibility_timeout,
            max_receives: spec.max_receives,
            fifo: spec.fifo,
        };
        let queue = connect(&self.url, &name, Some(&dlq_name), config.clone())
            .await
            .expect("queue");
        let dead_letter_config = BrokerQueueConfig {
            fifo: false,
            ..config
        };
        let dlq = connect(&self.url, &dlq_name, None, dead_letter_config)
            .await
            .expect("dead-letter queue");
        (queue, dlq)
    }
}
