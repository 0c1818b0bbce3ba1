//! The queue port on message brokers other than SQS, for `sfpipe` stages run as worker
//! processes on any machines: Redis (7.x) and RabbitMQ (3.x), chosen by the broker URL's scheme.

#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Queue, QueueError};

#[cfg(feature = "rabbitmq")]
pub use self::rabbitmq::RabbitQueue;
#[cfg(feature = "redis")]
pub use self::redis::RedisQueue;

/// A broker queue's settings.
#[derive(Debug, Clone)]
pub struct BrokerQueueConfig {
    pub visibility_timeout: Duration,
    /// Receives before a message moves to the dead-letter queue (SQS `maxReceiveCount`).
    pub max_receives: u32,
    /// One message at a time per group, in order, deduplicated by id for five minutes.
    pub fifo: bool,
}

/// The broker a URL names: `redis://` or `rediss://` (Redis), `amqp://` or `amqps://` (RabbitMQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Redis,
    RabbitMq,
}

impl BrokerKind {
    pub fn of(url: &str) -> Result<Self, QueueError> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "redis" | "rediss" => Ok(Self::Redis),
            "amqp" | "amqps" => Ok(Self::RabbitMq),
            _ => Err(QueueError::Service {
                queue: String::new(),
                message: format!(
                    "broker {url:?}: sfpipe's workers speak Redis (redis://host:port/) and \
                     RabbitMQ (amqp://user:password@host:port/vhost); Kafka has no adapter \
                     (README, \"Run it on your own brokers\")"
                ),
            }),
        }
    }
}

/// Connects to the queue `name` on the broker `url` names, with its dead-letter queue.
pub async fn connect(
    url: &str,
    name: &str,
    dead_letter_queue: Option<&str>,
    config: BrokerQueueConfig,
) -> Result<Arc<dyn Queue>, QueueError> {
    match BrokerKind::of(url)? {
        #[cfg(feature = "redis")]
        BrokerKind::Redis => Ok(Arc::new(
            RedisQueue::connect(url, name, dead_letter_queue, config).await?,
        )),
        #[cfg(feature = "rabbitmq")]
        BrokerKind::RabbitMq => Ok(Arc::new(
            RabbitQueue::connect(url, name, dead_letter_queue, config).await?,
        )),
        #[allow(unreachable_patterns)]
        kind => Err(QueueError::Service {
            queue: name.to_string(),
            message: format!("this build of sfpipe has no {kind:?} adapter"),
        }),
    }
}
