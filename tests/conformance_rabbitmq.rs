//! The queue port's conformance suite, unchanged, against a real RabbitMQ node on 127.0.0.1.

use std::time::Duration;

use sfpipe_shared::brokers::{BrokerQueueConfig, RabbitQueue};
use sfpipe_shared::conformance::queue;
use sfpipe_shared::ports::{OutgoingMessage, Queue};
use sfpipe_tests::broker_queues::BrokerQueues;
use sfpipe_tests::rabbitmq::RabbitServer;

fn config(fifo: bool) -> BrokerQueueConfig {
    BrokerQueueConfig {
        visibility_timeout: Duration::from_secs(30),
        max_receives: 5,
        fifo,
    }
}

/// One node for every check (it takes seconds to boot), stopped when the test ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_queue_conforms() {
    let mut server = RabbitServer::start().await;
    queue::run_all(&BrokerQueues::new(&server.url)).await;
    a_lost_connection_hands_its_messages_back(&server).await;
    deduplication_holds_across_processes(&server).await;
    a_restarted_broker_is_connected_to_again(&mut server).await;
}

/// A worker killed outright loses its connection; the broker hands back what it held at once,
/// counted as a receive, without waiting for the visibility timeout.
async fn a_lost_connection_hands_its_messages_back(server: &RabbitServer) {
    let sender = RabbitQueue::connect(&server.url, "lost", None, config(false))
        .await
        .expect("sender");
    sender
        .send(OutgoingMessage::new("work".into(), "w1".into()))
        .await
        .expect("send");
    let doomed = RabbitQueue::connect(&server.url, "lost", None, config(false))
        .await
        .expect("worker");
    let got = doomed
        .receive(10, Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert!(
        sender
            .receive(10, Duration::from_millis(300))
            .await
            .expect("receive")
            .is_empty(),
        "a held message is invisible"
    );
    drop(doomed);
    let again = sender
        .receive(10, Duration::from_secs(5))
        .await
        .expect("receive");
    assert_eq!(again.len(), 1, "the broker did not hand the message back");
    assert_eq!(again[0].body, "work");
    assert_eq!(again[0].receive_count, 2);
    sender.delete(&again[0].receipt).await.expect("delete");
    assert_eq!(sender.depth().await.expect("depth").expect("a count"), 0);
}

/// A FIFO queue's deduplication lives in the broker: a second process sending the same id
/// within the window sends nothing.
async fn deduplication_holds_across_processes(server: &RabbitServer) {
    let one = RabbitQueue::connect(&server.url, "dedup", None, config(true))
        .await
        .expect("one");
    let two = RabbitQueue::connect(&server.url, "dedup", None, config(true))
        .await
        .expect("two");
    for queue in [&one, &two] {
        queue
            .send(OutgoingMessage::new("merge".into(), "m-1".into()).in_group("Account"))
            .await
            .expect("send");
    }
    assert_eq!(one.depth().await.expect("depth").expect("a count"), 1);
}

/// A broker restarted under a worker (a clean stop and a start on the same data): the
/// queues' own connections come back by themselves, the FIFO consumer too, and the persistent
/// messages are all there.
async fn a_restarted_broker_is_connected_to_again(server: &mut RabbitServer) {
    let standard = RabbitQueue::connect(&server.url, "restarted", None, config(false))
        .await
        .expect("standard");
    let fifo = RabbitQueue::connect(&server.url, "restarted-fifo", None, config(true))
        .await
        .expect("fifo");
    // The FIFO queue's consumer is running before the restart.
    assert!(
        fifo.receive(1, Duration::from_millis(200))
            .await
            .expect("receive")
            .is_empty()
    );
    standard
        .send(OutgoingMessage::new("before".into(), "b".into()))
        .await
        .expect("send");
    fifo.send(OutgoingMessage::new("merge before".into(), "mb".into()).in_group("Account"))
        .await
        .expect("send");
    server.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    for queue in [&standard, &fifo] {
        loop {
            match queue.receive(1, Duration::from_millis(500)).await {
                Ok(mut messages) if !messages.is_empty() => {
                    let message = messages.remove(0);
                    queue.delete(&message.receipt).await.expect("delete");
                    got.push(message.body);
                    break;
                }
                // The first calls after the restart find the connection gone.
                Ok(_) | Err(_) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no message after the restart; so far {got:?}"
                    );
                }
            }
        }
    }
    assert_eq!(got, ["before", "merge before"]);
    standard
        .send(OutgoingMessage::new("after".into(), "a".into()))
        .await
        .expect("a send after the restart");
}
