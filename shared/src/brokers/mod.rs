//! The queue port on message brokers other than SQS, for `sfpipe` stages run as worker
//! processes on any machines: Redis (7.x).

pub mod redis;

pub use self::redis::{RedisQueue, RedisQueueConfig};
