//! The queue port's conformance suite, unchanged, against a real redis-server on 127.0.0.1.

use sfpipe_shared::brokers::{BrokerQueueConfig, RedisQueue};
use sfpipe_shared::conformance::queue;
use sfpipe_shared::ports::Queue;
use sfpipe_tests::broker_queues::BrokerQueues;
use sfpipe_tests::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_conforms() {
    let server = RedisServer::start().await;
    queue::run_all(&BrokerQueues::new(&server.url)).await;
}

/// Messages sent before a worker connects, and settled by another connection, are the same
/// queue: the state lives in Redis, not in the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_share_one_queue() {
    let server = RedisServer::start().await;
    let config = BrokerQueueConfig {
        visibility_timeout: std::time::Duration::from_secs(30),
        max_receives: 5,
        fifo: false,
    };
    let sender = RedisQueue::connect(&server.url, "shared", None, config.clone())
        .await
        .expect("sender");
    let worker = RedisQueue::connect(&server.url, "shared", None, config)
        .await
        .expect("worker");
    sender
        .send(sfpipe_shared::ports::OutgoingMessage::new(
            "work".into(),
            "w1".into(),
        ))
        .await
        .expect("send");
    let got = worker
        .receive(10, std::time::Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "work");
    assert_eq!(
        sender.depth().await.expect("depth").expect("a count"),
        1,
        "in flight still counts"
    );
    sender.delete(&got[0].receipt).await.expect("delete");
    assert_eq!(worker.depth().await.expect("depth").expect("a count"), 0);
    assert!(
        worker
            .receive(10, std::time::Duration::from_millis(200))
            .await
            .expect("receive")
            .is_empty()
    );
}

/// A server that answers late (here CLIENT PAUSE; in a fleet, a host whose cores the workers
/// saturate) has still run the script: a receive that gave up waiting would leave its message
/// in flight, unseen, until the visibility timeout (half an hour for upload's). The client waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_still_delivers_the_message() {
    let server = RedisServer::start().await;
    let config = BrokerQueueConfig {
        visibility_timeout: std::time::Duration::from_secs(1800),
        max_receives: 5,
        fifo: false,
    };
    let queue = RedisQueue::connect(&server.url, "late", None, config)
        .await
        .expect("queue");
    queue
        .send(sfpipe_shared::ports::OutgoingMessage::new(
            "work".into(),
            "w1".into(),
        ))
        .await
        .expect("send");
    // The server holds every client's commands for 1.5 s from its OK.
    let client = redis::Client::open(server.url.as_str()).expect("client");
    let mut pauser = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .query_async(&mut pauser)
        .await
        .expect("CLIENT PAUSE");
    let got = queue
        .receive(1, std::time::Duration::ZERO)
        .await
        .expect("a late answer is still an answer");
    assert_eq!(got.len(), 1, "the message was received and lost: {got:?}");
}
