//! The queue port on RabbitMQ (3.x), with nothing but what Debian's package ships: quorum queues,
//! per-queue TTLs and dead-letter exchanges. No plugin.
//!
//! How SQS's semantics map:
//! - **Visibility timeout.** RabbitMQ has none: a delivery stays with its channel until it is
//!   settled or the channel dies. The adapter keeps each received message's delivery and, at
//!   the end of its visibility timeout, hands it back (`basic.nack`, requeue). A worker killed
//!   outright loses its connection, and the broker hands back everything it held at once.
//!   The broker's `consumer_timeout` must outlast the longest visibility timeout, or it closes
//!   the channel under the worker (README).
//! - **Receive count.** Quorum queues count each hand-back in the `x-delivery-count` header.
//! - **Redrive.** A receive past the queue's maximum moves the message to the dead-letter
//!   queue with a reason, as SQS's redrive does; a dead letter sent by a handler carries its
//!   reason in the [`DEAD_LETTER_REASON`] header.
//! - **Delays.** A delayed message waits in a classic queue `<queue>.delay.<ms>ms` whose
//!   message TTL is the delay and whose dead-letter route is the queue (one queue per delay,
//!   because a TTL only expires messages at a queue's head). A release with a delay holds the
//!   delivery for the delay, then hands it back.
//! - **FIFO.** The queue has a single active consumer with a prefetch of one: one message at a
//!   time, in order, across every worker of the fleet. That keeps each group in order, but it
//!   also runs different groups one at a time (SQS runs them side by side).
//! - **Deduplication.** A FIFO send first publishes a marker to `<queue>.dedup.<hash of id>`, a
//!   classic queue of at most one message that refuses more (`reject-publish`) and forgets it
//!   after five minutes: the broker's own test-and-set, whichever process sends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
};
use sha2::Digest;
use tokio::sync::Mutex;

use super::BrokerQueueConfig;
use crate::ports::{
    DEAD_LETTER_REASON, MESSAGE_GROUP_ATTRIBUTE, OutgoingMessage, Queue, QueueDepth, QueueError,
    ReceivedMessage, check_outgoing,
};

/// How long a FIFO queue remembers a deduplication id (as SQS does).
const DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// How often an empty receive looks again while it waits (basic.get is a poll).
const POLL: Duration = Duration::from_millis(50);

/// The header of the message's deduplication id and of its group.
const DEDUP_HEADER: &str = "sfpipe-dedup-id";
const GROUP_HEADER: &str = "sfpipe-group";
/// Quorum queues count a message's hand-backs here.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// How long after it should have arrived a moving message (see [`Moving`]) is still counted
/// when this adapter does not receive it: the broker has surely shown it by then, or another
/// process took it.
const ARRIVAL_GRACE: Duration = Duration::from_secs(5);

/// A message received and not yet settled: its delivery, held until then, and the timer that
/// hands it back.
struct Held {
    acker: Acker,
    message_id: String,
    timer: tokio::task::AbortHandle,
    /// A FIFO delivery's consumer channel, kept open until the delivery is settled even if the
    /// consumer was cancelled meanwhile (closing it would hand the delivery back).
    _channel: Option<Channel>,
}

/// A FIFO queue's consumer: its deliveries, the task that forwards them, and its channel.
struct FifoConsumer {
    deliveries: Deliveries,
    task: tokio::task::AbortHandle,
    channel: Channel,
}

type Deliveries = tokio::sync::mpsc::UnboundedReceiver<Result<Delivery, QueueError>>;

/// Counts a delivery on its way from the queue to [`Held`] (a basic.get under way, a FIFO
/// delivery waiting for a receive), until dropped, so a depth read in between still sees it.
struct InTransit(Arc<AtomicU64>);

impl InTransit {
    fn start(count: &Arc<AtomicU64>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for InTransit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Messages this adapter set moving inside the broker, which the broker's counts may miss on
/// the way: one handed back (a `basic.nack` is applied by the queue after it is sent, and has
/// no reply) and one leaving a delay queue at the end of its TTL (dead-lettered into the queue
/// asynchronously). Each is counted from before it moves until this adapter receives it again,
/// or [`ARRIVAL_GRACE`] after it should have arrived. Keyed by message id (one per publish).
#[derive(Default)]
struct Moving(std::sync::Mutex<HashMap<String, tokio::time::Instant>>);

impl Moving {
    fn expect(&self, message_id: &str, arrives_by: tokio::time::Instant) {
        if let Ok(mut moving) = self.0.lock() {
            moving.insert(message_id.to_string(), arrives_by + ARRIVAL_GRACE);
        }
    }

    /// Received again, or never sent.
    fn forget(&self, message_id: &str) {
        if let Ok(mut moving) = self.0.lock() {
            moving.remove(message_id);
        }
    }

    fn count(&self) -> u64 {
        let now = tokio::time::Instant::now();
        self.0
            .lock()
            .map(|mut moving| {
                moving.retain(|_, until| *until > now);
                moving.len() as u64
            })
            .unwrap_or(0)
    }
}

/// A queue on RabbitMQ, with or without its own dead-letter queue.
pub struct RabbitQueue {
    name: String,
    dead_letters: Option<String>,
    config: BrokerQueueConfig,
    /// Where to connect again when the connection is lost (it holds the password: never
    /// logged, and left out of `Debug`).
    url: String,
    connection: Mutex<Arc<Connection>>,
    /// Publishes (with confirms), gets, settles.
    channel: Mutex<Channel>,
    /// A FIFO queue's deliveries from its single-active consumer, started by the first receive
    /// (a process that only sends never takes the queue's one delivery), and the task that
    /// forwards them.
    consumer: Mutex<Option<FifoConsumer>>,
    held: Arc<std::sync::Mutex<HashMap<String, Held>>>,
    /// Deliveries between the queue and `held` (see [`InTransit`]).
    in_transit: Arc<AtomicU64>,
    moving: Arc<Moving>,
    receipts: AtomicU64,
    /// Tells this adapter's receipts from another's.
    instance: String,
    /// Delay queues declared by this adapter, for [`RabbitQueue::depth`].
    delays: std::sync::Mutex<BTreeSet<u64>>,
}

impl std::fmt::Debug for RabbitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitQueue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn millis(duration: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(duration.as_millis().min(i64::MAX as u128) as i64)
}

/// The id a delivery was published under ([`RabbitQueue::publish_as`]).
fn message_id(delivery: &Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_string())
        .unwrap_or_default()
}

fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(&ShortString::from(key))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn header_count(headers: &FieldTable, key: &str) -> u32 {
    let count = match headers.inner().get(&ShortString::from(key)) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortShortUInt(n)) => i64::from(*n),
        _ => 0,
    };
    count.clamp(0, i64::from(u32::MAX - 1)) as u32
}

/// The queue's arguments: a quorum queue; a FIFO one has a single active consumer.
fn queue_arguments(fifo: bool) -> FieldTable {
    let mut arguments = vec![("x-queue-type", text("quorum"))];
    if fifo {
        arguments.push(("x-single-active-consumer", AMQPValue::Boolean(true)));
    }
    table(&arguments)
}

impl RabbitQueue {
    /// Connects to `url` (`amqp://user:password@host:port/vhost`) and declares the queue (and
    /// its dead-letter queue, when it has one).
    pub async fn connect(
        url: &str,
        name: &str,
        dead_letter_queue: Option<&str>,
        config: BrokerQueueConfig,
    ) -> Result<Self, QueueError> {
        let service = |e: lapin::Error| QueueError::Service {
            queue: name.to_string(),
            message: format!("RabbitMQ: {e}"),
        };
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .map_err(service)?;
        let channel = connection.create_channel().await.map_err(service)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(service)?;
        declare(&channel, name, config.fifo)
            .await
            .map_err(service)?;
        if let Some(dlq) = dead_letter_queue {
            declare(&channel, dlq, false).await.map_err(service)?;
        }
        Ok(Self {
            name: name.to_string(),
            dead_letters: dead_letter_queue.map(str::to_string),
            config,
            url: url.to_string(),
            connection: Mutex::new(Arc::new(connection)),
            channel: Mutex::new(channel),
            consumer: Mutex::new(None),
            held: Arc::default(),
            in_transit: Arc::default(),
            moving: Arc::default(),
            receipts: AtomicU64::new(0),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            delays: std::sync::Mutex::default(),
        })
    }

    fn service(&self, error: lapin::Error) -> QueueError {
        QueueError::Service {
            queue: self.name.clone(),
            message: format!("RabbitMQ: {error}"),
        }
    }

    /// The connection, made again if it was lost (a broker restarted, a network cut): what it
    /// held went back to the queues with it, and a worker goes on without a restart.
    async fn connection(&self) -> Result<Arc<Connection>, QueueError> {
        let mut connection = self.connection.lock().await;
        if !connection.status().connected() {
            tracing::warn!(queue = %self.name, "the connection to RabbitMQ was lost; connecting again");
            let fresh = Connection::connect(&self.url, ConnectionProperties::default())
                .await
                .map_err(|e| self.service(e))?;
            *connection = Arc::new(fresh);
        }
        Ok(connection.clone())
    }

    /// The channel, opened again if the broker closed it (its deliveries went back with it).
    async fn channel(&self) -> Result<Channel, QueueError> {
        let mut channel = self.channel.lock().await;
        if !channel.status().connected() {
            let fresh = self
                .connection()
                .await?
                .create_channel()
                .await
                .map_err(|e| self.service(e))?;
            fresh
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| self.service(e))?;
            *channel = fresh;
        }
        Ok(channel.clone())
    }

    /// Publishes to a queue through the default exchange and waits for the broker's confirm:
    /// `false` when the broker refused it.
    async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<bool, QueueError> {
        self.publish_as(&uuid::Uuid::new_v4().to_string(), queue, body, headers)
            .await
    }

    /// [`RabbitQueue::publish`] under a message id chosen by the caller.
    async fn publish_as(
        &self,
        message_id: &str,
        queue: &str,
        body: &[u8],
        headers: FieldTable,
    ) -> Result<bool, QueueError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(message_id))
            .with_headers(headers);
        let confirm = self
            .channel()
            .await?
            .basic_publish(
                ShortString::from(""),
                ShortString::from(queue),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .map_err(|e| self.service(e))?
            .await
            .map_err(|e| self.service(e))?;
        Ok(matches!(confirm, Confirmation::Ack(_)))
    }

    /// Whether this is the first send of `dedup_id` within the window, decided by the broker.
    async fn first_send(&self, dedup_id: &str) -> Result<bool, QueueError> {
        let hash = hex::encode(&sha2::Sha256::digest(dedup_id.as_bytes())[..16]);
        let marker = format!("{}.dedup.{hash}", self.name);
        let arguments = table(&[
            ("x-max-length", AMQPValue::LongLongInt(1)),
            ("x-overflow", text("reject-publish")),
            ("x-message-ttl", millis(DEDUP_WINDOW)),
            ("x-expires", millis(DEDUP_WINDOW)),
        ]);
        self.channel()
            .await?
            .queue_declare(
                ShortString::from(marker.as_str()),
                QueueDeclareOptions::default(),
                arguments,
            )
            .await
            .map_err(|e| self.service(e))?;
        self.publish(&marker, b"", FieldTable::default()).await
    }

    /// The delay queue of a delay, rounded up to a tenth of a second (a handful of queues for
    /// the few delays sfpipe uses).
    async fn delay_queue(&self, delay: Duration) -> Result<String, QueueError> {
        let ttl = rounded_delay(delay);
        let millis_rounded = ttl.as_millis() as u64;
        let name = delay_queue_name(&self.name, millis_rounded);
        let arguments = table(&[
            ("x-message-ttl", millis(ttl)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&self.name)),
            // Gone when unused for a while after its last message left.
            ("x-expires", millis(ttl + Duration::from_secs(600))),
        ]);
        self.channel()
            .await?
            .queue_declare(
                ShortString::from(name.as_str()),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(|e| self.service(e))?;
        if let Ok(mut delays) = self.delays.lock() {
            delays.insert(millis_rounded);
        }
        Ok(name)
    }

    /// The queue's ready messages, then those in the delay queues this adapter sent through,
    /// read by passive declares (delay queues first: the order messages move in, so one moving
    /// during the reading is counted at its next place).
    async fn broker_counts(&self) -> Result<(u64, u64), QueueError> {
        let delays: Vec<u64> = self
            .delays
            .lock()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default();
        let mut names: Vec<String> = delays
            .iter()
            .map(|ms| delay_queue_name(&self.name, *ms))
            .collect();
        names.push(self.name.clone());
        let (mut ready, mut delayed) = (0, 0);
        // One channel for the passive declares; a declare of a queue that is gone (an expired
        // delay queue) closes it, and only then is another opened.
        let mut channel: Option<Channel> = None;
        for name in names {
            let open = match channel.take() {
                Some(open) if open.status().connected() => open,
                _ => self
                    .connection()
                    .await?
                    .create_channel()
                    .await
                    .map_err(|e| self.service(e))?,
            };
            let declared = open
                .queue_declare(
                    ShortString::from(name.as_str()),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Ok(queue) if name == self.name => ready = u64::from(queue.message_count()),
                Ok(queue) => delayed += u64::from(queue.message_count()),
                // A delay queue expires when unused; the queue itself must answer.
                Err(error) if name == self.name => return Err(self.service(error)),
                Err(_) => {}
            }
            channel = Some(open);
        }
        if let Some(open) = channel.filter(|c| c.status().connected()) {
            let _ = open.close(200, ShortString::from("done")).await;
        }
        Ok((ready, delayed))
    }

    fn message(&self, delivery: &Delivery, receipt: String) -> ReceivedMessage {
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let mut attributes = BTreeMap::new();
        if let Some(group) = header_text(&headers, GROUP_HEADER) {
            attributes.insert(MESSAGE_GROUP_ATTRIBUTE.to_string(), group);
        }
        if let Some(reason) = header_text(&headers, DEAD_LETTER_REASON) {
            attributes.insert(DEAD_LETTER_REASON.to_string(), reason);
        }
        ReceivedMessage {
            body: String::from_utf8_lossy(&delivery.data).into_owned(),
            receipt,
            message_id: message_id(delivery),
            receive_count: header_count(&headers, DELIVERY_COUNT_HEADER) + 1,
            attributes,
        }
    }

    /// The next delivery, counted in transit until it is held: a FIFO queue's from its
    /// consumer (waiting up to `wait`), a standard queue's by basic.get.
    async fn next_delivery(
        &self,
        wait: Duration,
    ) -> Result<Option<(Delivery, InTransit, Option<Channel>)>, QueueError> {
        if !self.config.fifo {
            let transit = InTransit::start(&self.in_transit);
            let got = self
                .channel()
                .await?
                .basic_get(
                    ShortString::from(self.name.as_str()),
                    BasicGetOptions::default(),
                )
                .await
                .map_err(|e| self.service(e))?;
            return Ok(got.map(|g| (g.delivery, transit, None)));
        }
        let mut consumer = self.consumer.lock().await;
        // A consumer whose channel closed (a lost connection) delivers nothing more.
        if let Some(fifo) = consumer.as_ref()
            && !fifo.channel.status().connected()
        {
            fifo.task.abort();
            *consumer = None;
        }
        if consumer.is_none() {
            *consumer = Some(self.start_consumer().await?);
        }
        let Some(fifo) = consumer.as_mut() else {
            return Ok(None);
        };
        match tokio::time::timeout(wait, fifo.deliveries.recv()).await {
            Err(_) => Ok(None),
            // Counted by the forwarding task when it took the delivery.
            Ok(Some(Ok(delivery))) => Ok(Some((
                delivery,
                InTransit(self.in_transit.clone()),
                Some(fifo.channel.clone()),
            ))),
            Ok(Some(Err(error))) => {
                *consumer = None;
                Err(error)
            }
            Ok(None) => {
                *consumer = None;
                Err(QueueError::Service {
                    queue: self.name.clone(),
                    message: "the consumer stopped; the next receive starts another".into(),
                })
            }
        }
    }

    /// Starts the FIFO queue's consumer (prefetch one) and a task that forwards its deliveries,
    /// each counted in transit from the moment it arrives.
    async fn start_consumer(&self) -> Result<FifoConsumer, QueueError> {
        let channel = self
            .connection()
            .await?
            .create_channel()
            .await
            .map_err(|e| self.service(e))?;
        channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(|e| self.service(e))?;
        let mut stream: Consumer = channel
            .basic_consume(
                ShortString::from(self.name.as_str()),
                ShortString::from(format!("sfpipe-{}", self.instance)),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.service(e))?;
        let (forward, deliveries) = tokio::sync::mpsc::unbounded_channel();
        let in_transit = self.in_transit.clone();
        let queue = self.name.clone();
        let task = tokio::spawn(async move {
            while let Some(next) = stream.next().await {
                let next = next.map_err(|e| QueueError::Service {
                    queue: queue.clone(),
                    message: format!("RabbitMQ: {e}"),
                });
                let failed = next.is_err();
                if next.is_ok() {
                    in_transit.fetch_add(1, Ordering::SeqCst);
                }
                if forward.send(next).is_err() || failed {
                    return;
                }
            }
        });
        Ok(FifoConsumer {
            deliveries,
            task: task.abort_handle(),
            channel,
        })
    }

    /// Holds a delivery under a new receipt until it is settled or its visibility timeout ends.
    fn hold(&self, delivery: &Delivery, channel: Option<Channel>) -> String {
        let n = self.receipts.fetch_add(1, Ordering::Relaxed);
        let receipt = format!("{}:{n}", self.instance);
        let message_id = message_id(delivery);
        self.hold_as(
            receipt.clone(),
            delivery.acker.clone(),
            message_id,
            channel,
            self.config.visibility_timeout,
        );
        receipt
    }

    /// Holds `acker` under `receipt`; after `delay`, hands it back to the queue unless it was
    /// settled first.
    fn hold_as(
        &self,
        receipt: String,
        acker: Acker,
        message_id: String,
        channel: Option<Channel>,
        delay: Duration,
    ) {
        let held = self.held.clone();
        let moving = self.moving.clone();
        let key = receipt.clone();
        let Ok(mut all) = self.held.lock() else {
            return;
        };
        let timer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let taken = held.lock().ok().and_then(|mut h| h.remove(&key));
            if let Some(taken) = taken {
                hand_back(&taken, &moving).await;
            }
        });
        all.insert(
            receipt,
            Held {
                acker,
                message_id,
                timer: timer.abort_handle(),
                _channel: channel,
            },
        );
    }

    fn take(&self, receipt: &str) -> Result<Held, QueueError> {
        self.held
            .lock()
            .ok()
            .and_then(|mut held| held.remove(receipt))
            .inspect(|held| held.timer.abort())
            .ok_or_else(|| QueueError::InvalidReceipt {
                queue: self.name.clone(),
            })
    }

    /// Copies a message to the dead-letter queue with its group and a reason.
    async fn copy_to_dead_letters(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        let dlq = self
            .dead_letters
            .clone()
            .ok_or_else(|| QueueError::Service {
                queue: self.name.clone(),
                message: "this queue has no dead-letter queue".into(),
            })?;
        let mut headers = vec![(DEAD_LETTER_REASON, text(reason))];
        if let Some(group) = message.attributes.get(MESSAGE_GROUP_ATTRIBUTE) {
            headers.push((GROUP_HEADER, text(group)));
        }
        if self
            .publish(&dlq, message.body.as_bytes(), table(&headers))
            .await?
        {
            Ok(())
        } else {
            Err(QueueError::Service {
                queue: self.name.clone(),
                message: format!("RabbitMQ refused the dead letter for {dlq}"),
            })
        }
    }
}

impl Drop for RabbitQueue {
    /// Stops the consumer's task and the hand-back timers, so the connection closes and the
    /// broker takes back whatever this adapter held.
    fn drop(&mut self) {
        if let Ok(consumer) = self.consumer.try_lock()
            && let Some(fifo) = consumer.as_ref()
        {
            fifo.task.abort();
        }
        if let Ok(held) = self.held.lock() {
            for entry in held.values() {
                entry.timer.abort();
            }
        }
    }
}

/// A delay rounded up to a tenth of a second: the TTL of its delay queue.
fn rounded_delay(delay: Duration) -> Duration {
    Duration::from_millis(delay.as_millis().div_ceil(100) as u64 * 100)
}

fn delay_queue_name(queue: &str, millis: u64) -> String {
    format!("{queue}.delay.{millis}ms")
}

/// Hands a held delivery back to its queue, counted as moving from before it goes.
async fn hand_back(held: &Held, moving: &Moving) {
    moving.expect(&held.message_id, tokio::time::Instant::now());
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(error) = held.acker.nack(options).await {
        // The channel is gone, and the broker handed the delivery back with it.
        tracing::debug!(%error, "handing a delivery back");
    }
}

async fn declare(channel: &Channel, name: &str, fifo: bool) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            ShortString::from(name),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_arguments(fifo),
        )
        .await
        .map(|_| ())
}

#[async_trait]
impl Queue for RabbitQueue {
    fn name(&self) -> &str {
        &self.name
    }

    /// Messages in the queue as this process sees them: ready ones, delayed ones in the delay
    /// queues it sent through, the ones it set moving between them ([`Moving`]), and the ones it
    /// is receiving or holds (another process's are not counted). Never zero while one of them
    /// remains.
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        let (ready, delayed) = self.broker_counts().await?;
        // Read in the order a message passes them in this process (in transit, held, moving), so
        // one that passes on during the reading is seen at its next place.
        let in_transit = self.in_transit.load(Ordering::SeqCst);
        let held = self.held.lock().map(|h| h.len() as u64).unwrap_or(0);
        // Each moving message is in the broker's counts just read or on its way into them: at
        // least as many messages as the larger of the two (and never one counted twice).
        let total = (ready + delayed).max(self.moving.count()) + in_transit + held;
        Ok(Some(total))
    }

    /// Ready and delayed as the broker counts them; in flight: what this process holds (AMQP
    /// counts no other consumer's unsettled messages).
    async fn message_counts(&self) -> Result<Option<QueueDepth>, QueueError> {
        let (ready, delayed) = self.broker_counts().await?;
        let in_flight = self.in_transit.load(Ordering::SeqCst)
            + self.held.lock().map(|h| h.len() as u64).unwrap_or(0);
        Ok(Some(QueueDepth {
            visible: ready as usize,
            in_flight: in_flight as usize,
            delayed: delayed as usize,
        }))
    }

    /// Up to `max` of the queue's ready messages, looked into and handed back at once: what
    /// `sfpipe status` shows of a dead-letter queue. (Each look counts as a hand-back in the
    /// quorum queue's delivery count; a dead-letter queue has no redrive, so it changes nothing.)
    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        let channel = self
            .connection()
            .await?
            .create_channel()
            .await
            .map_err(|e| self.service(e))?;
        let mut out = Vec::new();
        while out.len() < max {
            let got = channel
                .basic_get(
                    ShortString::from(self.name.as_str()),
                    BasicGetOptions::default(),
                )
                .await
                .map_err(|e| self.service(e))?;
            let Some(got) = got else { break };
            out.push(self.message(&got.delivery, String::new()));
        }
        // Closing the channel hands every look back, in order.
        let _ = channel.close(200, ShortString::from("peeked")).await;
        Ok(Some(out))
    }

    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        check_outgoing(&self.name, &message)?;
        if self.config.fifo && !self.first_send(&message.dedup_id).await? {
            return Ok(());
        }
        let mut headers = vec![(DEDUP_HEADER, text(&message.dedup_id))];
        if let Some(group) = &message.group_id {
            headers.push((GROUP_HEADER, text(group)));
        }
        let message_id = uuid::Uuid::new_v4().to_string();
        let target = if message.delay.is_zero() {
            self.name.clone()
        } else {
            let delay_queue = self.delay_queue(message.delay).await?;
            self.moving.expect(
                &message_id,
                tokio::time::Instant::now() + rounded_delay(message.delay),
            );
            delay_queue
        };
        let confirmed = self
            .publish_as(
                &message_id,
                &target,
                message.body.as_bytes(),
                table(&headers),
            )
            .await;
        if !matches!(confirmed, Ok(true)) {
            self.moving.forget(&message_id);
        }
        if confirmed? {
            Ok(())
        } else {
            Err(QueueError::Service {
                queue: self.name.clone(),
                message: "RabbitMQ refused the message (negative publisher confirm)".into(),
            })
        }
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let started = tokio::time::Instant::now();
        let max = max.clamp(1, 10);
        let mut out = Vec::new();
        loop {
            let left = wait.saturating_sub(started.elapsed());
            let Some((delivery, _transit, channel)) = self
                .next_delivery(if out.is_empty() { left } else { Duration::ZERO })
                .await?
            else {
                if !out.is_empty() || started.elapsed() >= wait || self.config.fifo {
                    return Ok(out);
                }
                tokio::time::sleep(POLL.min(left)).await;
                continue;
            };
            self.moving.forget(&message_id(&delivery));
            if !delivery.acker.usable() {
                // Its channel closed since it arrived (a lost connection): the broker has
                // taken it back and will deliver it again.
                continue;
            }
            let mut message = self.message(&delivery, String::new());
            if message.receive_count > self.config.max_receives && self.dead_letters.is_some() {
                let reason = format!(
                    "received {} times without being deleted (maxReceiveCount {})",
                    message.receive_count - 1,
                    self.config.max_receives
                );
                self.copy_to_dead_letters(&message, &reason).await?;
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| self.service(e))?;
                continue;
            }
            message.receipt = self.hold(&delivery, channel);
            out.push(message);
            if out.len() >= max || self.config.fifo {
                return Ok(out);
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let held = self.take(receipt)?;
        // `false`: the channel closed meanwhile, and the broker took the message back.
        if held
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| self.service(e))?
        {
            Ok(())
        } else {
            Err(QueueError::InvalidReceipt {
                queue: self.name.clone(),
            })
        }
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let held = self.take(receipt)?;
        if delay.is_zero() {
            hand_back(&held, &self.moving).await;
        } else {
            self.hold_as(
                format!("{receipt}:released"),
                held.acker,
                held.message_id,
                held._channel,
                delay,
            );
        }
        Ok(())
    }

    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        let known = self
            .held
            .lock()
            .map(|h| h.contains_key(&message.receipt))
            .unwrap_or(false);
        if !known {
            return Err(QueueError::InvalidReceipt {
                queue: self.name.clone(),
            });
        }
        self.copy_to_dead_letters(message, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_any_integer_width_are_read() {
        let headers = table(&[(DELIVERY_COUNT_HEADER, AMQPValue::LongInt(3))]);
        assert_eq!(header_count(&headers, DELIVERY_COUNT_HEADER), 3);
        let headers = table(&[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(-1))]);
        assert_eq!(header_count(&headers, DELIVERY_COUNT_HEADER), 0);
        assert_eq!(
            header_count(&FieldTable::default(), DELIVERY_COUNT_HEADER),
            0
        );
    }
}
