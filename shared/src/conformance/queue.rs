//! What every queue adapter must do, SQS semantics included. Each check takes fresh queues made by
//! the adapter's factory for the spec it asks for.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{
    DEAD_LETTER_REASON, MESSAGE_GROUP_ATTRIBUTE, OutgoingMessage, Queue, QueueDepth, QueueError,
    ReceivedMessage,
};

/// The queue a check needs. Visibility timeouts are whole seconds, as in SQS.
#[derive(Debug, Clone, Copy)]
pub struct QueueSpec {
    pub visibility_timeout: Duration,
    pub max_receives: u32,
    pub fifo: bool,
}

/// Makes a fresh queue and its dead-letter queue.
#[async_trait]
pub trait QueueFactory: Send + Sync {
    async fn make(&self, spec: QueueSpec) -> (Arc<dyn Queue>, Arc<dyn Queue>);
}

const PATIENCE: Duration = Duration::from_secs(8);

fn standard() -> QueueSpec {
    QueueSpec {
        visibility_timeout: Duration::from_secs(30),
        max_receives: 5,
        fifo: false,
    }
}

/// Receives until `n` messages came or `PATIENCE` passed.
async fn receive_n(queue: &dyn Queue, n: usize) -> Vec<ReceivedMessage> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let batch = queue
            .receive(n - out.len(), Duration::from_secs(1))
            .await
            .expect("receive");
        out.extend(batch);
    }
    out
}

async fn assert_empty(queue: &dyn Queue) {
    let got = queue
        .receive(10, Duration::from_millis(500))
        .await
        .expect("receive");
    assert!(
        got.is_empty(),
        "{}: expected no visible message, got {got:?}",
        queue.name()
    );
}

pub async fn send_receive_delete(factory: &dyn QueueFactory) {
    let (queue, _) = factory.make(standard()).await;
    for i in 0..3 {
        queue
            .send(OutgoingMessage::new(format!("body-{i}"), format!("id-{i}")))
            .await
            .expect("send");
    }
    let got = receive_n(queue.as_ref(), 3).await;
    let bodies: BTreeSet<String> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(
        bodies,
        ["body-0", "body-1", "body-2"].map(String::from).into()
    );
    assert!(got.iter().all(|m| m.receive_count == 1), "{got:?}");
    for message in &got {
        queue.delete(&message.receipt).await.expect("delete");
    }
    assert_empty(queue.as_ref()).await;
}

pub async fn unacknowledged_messages_come_back_after_the_visibility_timeout(
    factory: &dyn QueueFactory,
) {
    let (queue, _) = factory
        .make(QueueSpec {
            visibility_timeout: Duration::from_secs(1),
            ..standard()
        })
        .await;
    queue
        .send(OutgoingMessage::new("again".into(), "again".into()))
        .await
        .expect("send");
    let first = receive_n(queue.as_ref(), 1).await;
    assert_eq!(first.len(), 1);
    let invisible = queue.receive(1, Duration::ZERO).await.expect("receive");
    assert!(
        invisible.is_empty(),
        "a received message must be invisible: {invisible:?}"
    );
    let second = receive_n(queue.as_ref(), 1).await;
    assert_eq!(second.len(), 1, "the message did not come back");
    assert_eq!(second[0].body, "again");
    assert_eq!(second[0].receive_count, 2);
    queue.delete(&second[0].receipt).await.expect("delete");
}

pub async fn released_messages_are_received_again(factory: &dyn QueueFactory) {
    let (queue, _) = factory.make(standard()).await;
    queue
        .send(OutgoingMessage::new("retry me".into(), "r".into()))
        .await
        .expect("send");
    let first = receive_n(queue.as_ref(), 1).await;
    queue
        .release(&first[0].receipt, Duration::ZERO)
        .await
        .expect("release");
    let second = receive_n(queue.as_ref(), 1).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);
    queue.delete(&second[0].receipt).await.expect("delete");
}

pub async fn delayed_messages_arrive_later(factory: &dyn QueueFactory) {
    let (queue, _) = factory.make(standard()).await;
    queue
        .send(OutgoingMessage::new("later".into(), "later".into()).delayed(Duration::from_secs(1)))
        .await
        .expect("send");
    let now = queue.receive(1, Duration::ZERO).await.expect("receive");
    assert!(now.is_empty(), "a delayed message was visible at once");
    let later = receive_n(queue.as_ref(), 1).await;
    assert_eq!(later.len(), 1);
    queue.delete(&later[0].receipt).await.expect("delete");
    let too_long = queue
        .send(OutgoingMessage::new("x".into(), "x".into()).delayed(Duration::from_secs(901)))
        .await;
    assert!(too_long.is_err(), "a delay over 900 s must be refused");
}

pub async fn dead_lettered_messages_carry_their_reason(factory: &dyn QueueFactory) {
    let (queue, dlq) = factory.make(standard()).await;
    queue
        .send(OutgoingMessage::new("poison".into(), "poison".into()))
        .await
        .expect("send");
    let got = receive_n(queue.as_ref(), 1).await;
    queue
        .dead_letter(&got[0], "extract stage, object Nope: object does not exist")
        .await
        .expect("dead_letter");
    assert_empty(queue.as_ref()).await;
    let dead = receive_n(dlq.as_ref(), 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(
        dead[0]
            .attributes
            .get(DEAD_LETTER_REASON)
            .map(String::as_str),
        Some("extract stage, object Nope: object does not exist")
    );
}

pub async fn messages_received_too_often_are_redriven(factory: &dyn QueueFactory) {
    let (queue, dlq) = factory
        .make(QueueSpec {
            max_receives: 2,
            ..standard()
        })
        .await;
    queue
        .send(OutgoingMessage::new("flaky".into(), "flaky".into()))
        .await
        .expect("send");
    for attempt in 1..=2 {
        let got = receive_n(queue.as_ref(), 1).await;
        assert_eq!(got.len(), 1, "receive {attempt}");
        queue
            .release(&got[0].receipt, Duration::ZERO)
            .await
            .expect("release");
    }
    assert_empty(queue.as_ref()).await;
    let dead = receive_n(dlq.as_ref(), 1).await;
    assert_eq!(
        dead.len(),
        1,
        "the message was not redriven to the dead-letter queue"
    );
    assert_eq!(dead[0].body, "flaky");
}

pub async fn fifo_deduplicates_and_orders_each_group(factory: &dyn QueueFactory) {
    let (queue, _) = factory
        .make(QueueSpec {
            fifo: true,
            ..standard()
        })
        .await;
    for (body, id) in [("a1", "a1"), ("a1 again", "a1"), ("a2", "a2")] {
        queue
            .send(OutgoingMessage::new(body.into(), id.into()).in_group("Account"))
            .await
            .expect("send");
    }
    let first = receive_n(queue.as_ref(), 1).await;
    assert_eq!(first[0].body, "a1");
    let blocked = queue
        .receive(10, Duration::from_millis(500))
        .await
        .expect("receive");
    assert!(
        blocked.is_empty(),
        "a group's next message was delivered while one was in flight: {blocked:?}"
    );
    queue.delete(&first[0].receipt).await.expect("delete");
    let second = receive_n(queue.as_ref(), 1).await;
    assert_eq!(
        second[0].body, "a2",
        "the duplicate id was not deduplicated, or order was lost"
    );
    queue.delete(&second[0].receipt).await.expect("delete");
    assert_empty(queue.as_ref()).await;
}

/// Lambda's event source mapping deletes what the function reports done, so the function only
/// sends a dead letter's copy; on a FIFO queue the copy keeps its message group.
pub async fn dead_letter_copies_keep_their_group_and_leave_the_message(factory: &dyn QueueFactory) {
    let (queue, dlq) = factory
        .make(QueueSpec {
            fifo: true,
            ..standard()
        })
        .await;
    queue
        .send(OutgoingMessage::new("bad merge".into(), "m1".into()).in_group("Contact"))
        .await
        .expect("send");
    let got = receive_n(queue.as_ref(), 1).await;
    assert_eq!(
        got[0]
            .attributes
            .get(MESSAGE_GROUP_ATTRIBUTE)
            .map(String::as_str),
        Some("Contact"),
        "a received FIFO message names its group"
    );
    queue
        .send_to_dead_letter(&got[0], "merge stage, object Contact: bad file")
        .await
        .expect("send_to_dead_letter");
    let dead = receive_n(dlq.as_ref(), 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "bad merge");
    assert_eq!(
        dead[0]
            .attributes
            .get(MESSAGE_GROUP_ATTRIBUTE)
            .map(String::as_str),
        Some("Contact"),
        "the dead letter lost its message group"
    );
    assert_eq!(
        dead[0]
            .attributes
            .get(DEAD_LETTER_REASON)
            .map(String::as_str),
        Some("merge stage, object Contact: bad file")
    );
    // The original is still in flight on its receipt: deleting it is the caller's (the event
    // source mapping's) one delete.
    queue
        .delete(&got[0].receipt)
        .await
        .expect("the message was left for its one delete");
    assert_empty(queue.as_ref()).await;
}

pub async fn oversized_messages_are_refused(factory: &dyn QueueFactory) {
    let (queue, _) = factory.make(standard()).await;
    let result = queue
        .send(OutgoingMessage::new(
            "x".repeat(256 * 1024 + 1),
            "big".into(),
        ))
        .await;
    assert!(
        matches!(
            result,
            Err(QueueError::TooLarge { .. } | QueueError::Service { .. })
        ),
        "{result:?}"
    );
}

/// A drain ends when the depth reads zero, so a message is counted wherever it is until it is
/// deleted: waiting out a delay, in flight, handed back, released with a delay, or back after
/// its visibility timeout. (An adapter whose depth is unknown, `None`, is not asked.)
pub async fn depth_counts_a_message_until_it_is_deleted(factory: &dyn QueueFactory) {
    let (queue, _) = factory
        .make(QueueSpec {
            visibility_timeout: Duration::from_secs(1),
            max_receives: 100,
            fifo: false,
        })
        .await;
    let depth = || async { queue.depth().await.expect("depth") };
    if depth().await.is_none() {
        return;
    }
    assert_eq!(depth().await, Some(0), "{}: a new queue", queue.name());
    // Polls the depth until the message is received again; it must never read zero meanwhile.
    let counted_until_received = |moving: &'static str| {
        let queue = queue.clone();
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let seen = queue.depth().await.expect("depth");
                assert_ne!(
                    seen,
                    Some(0),
                    "{}: a message {moving} was not counted",
                    queue.name()
                );
                if let Some(message) = queue
                    .receive(1, Duration::ZERO)
                    .await
                    .expect("receive")
                    .pop()
                {
                    return message;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{}: the message {moving} never came back",
                    queue.name()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    queue
        .send(
            OutgoingMessage::new("counted".into(), "counted".into())
                .delayed(Duration::from_millis(300)),
        )
        .await
        .expect("send");
    let mut message = counted_until_received("waiting out its delay").await;
    for _ in 0..20 {
        assert_ne!(
            depth().await,
            Some(0),
            "a message in flight was not counted"
        );
        queue
            .release(&message.receipt, Duration::ZERO)
            .await
            .expect("release");
        message = counted_until_received("handed back").await;
    }
    queue
        .release(&message.receipt, Duration::from_millis(300))
        .await
        .expect("release");
    message = counted_until_received("released with a delay").await;
    // Not settled: back after its visibility timeout.
    let _ = message;
    message = counted_until_received("past its visibility timeout").await;
    queue.delete(&message.receipt).await.expect("delete");
    assert_eq!(
        depth().await,
        Some(0),
        "{}: a deleted message",
        queue.name()
    );
}

/// What `sfpipe status` shows between two stages: ready, in flight and delayed messages, as
/// the service counts them (SQS's counts are approximate, so each is awaited a while). An
/// adapter that cannot count (`None`) is not asked.
pub async fn message_counts_say_where_messages_are(factory: &dyn QueueFactory) {
    let (queue, _) = factory.make(standard()).await;
    if queue.message_counts().await.expect("counts").is_none() {
        return;
    }
    let counts_become = |want: QueueDepth, moment: &'static str| {
        let queue = queue.clone();
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let seen = queue.message_counts().await.expect("counts");
                if seen == Some(want) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{}: {moment}, counted {seen:?}, expected {want:?}",
                    queue.name()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    counts_become(QueueDepth::default(), "a new queue").await;
    queue
        .send(OutgoingMessage::new("now".into(), "now".into()))
        .await
        .expect("send");
    queue
        .send(OutgoingMessage::new("later".into(), "later".into()).delayed(Duration::from_secs(30)))
        .await
        .expect("send");
    counts_become(
        QueueDepth {
            visible: 1,
            in_flight: 0,
            delayed: 1,
        },
        "one sent, one delayed",
    )
    .await;
    let got = receive_n(queue.as_ref(), 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "now");
    counts_become(
        QueueDepth {
            visible: 0,
            in_flight: 1,
            delayed: 1,
        },
        "one received",
    )
    .await;
    queue.delete(&got[0].receipt).await.expect("delete");
    counts_become(
        QueueDepth {
            visible: 0,
            in_flight: 0,
            delayed: 1,
        },
        "the received one deleted",
    )
    .await;
}

/// Every check, in order.
pub async fn run_all(factory: &dyn QueueFactory) {
    send_receive_delete(factory).await;
    depth_counts_a_message_until_it_is_deleted(factory).await;
    message_counts_say_where_messages_are(factory).await;
    unacknowledged_messages_come_back_after_the_visibility_timeout(factory).await;
    released_messages_are_received_again(factory).await;
    delayed_messages_arrive_later(factory).await;
    dead_lettered_messages_carry_their_reason(factory).await;
    messages_received_too_often_are_redriven(factory).await;
    fifo_deduplicates_and_orders_each_group(factory).await;
    dead_letter_copies_keep_their_group_and_leave_the_message(factory).await;
    oversized_messages_are_refused(factory).await;
}
