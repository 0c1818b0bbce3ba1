//! The queue port on Redis (7.x): SQS's semantics in a handful of keys per queue, each operation
//! one Lua script, so it is atomic however many workers share the queue.
//!
//! Keys of queue `Q` (all under `sfpipe:q:{Q}:`): `seq` numbers messages; `m:<n>` holds one
//! (body, dedup id, group, receives, attributes, current receipt); the sorted set `due` scores each
//! deliverable message by the time it becomes visible (a received one: the end of its visibility
//! timeout; a delayed or released one: its delay's end). On a FIFO queue only the head of each
//! group is in `due` (`g:<group>` lists the group in order), so a group is handled one message at
//! a time, in order, and `d:<dedup id>` remembers an id for five minutes. A receive past the
//! queue's maximum receives moves the message to the dead-letter queue, as SQS's redrive does.
//!
//! Why not Streams' consumer groups: their pending-entry list gives a visibility timeout and a
//! delivery count, but neither delays, nor one-at-a-time groups, nor a dead-letter move; each
//! would need these same keys beside the stream, in more round trips.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::BrokerQueueConfig;
use crate::ports::{
    DEAD_LETTER_REASON, MESSAGE_GROUP_ATTRIBUTE, OutgoingMessage, Queue, QueueDepth, QueueError,
    ReceivedMessage, check_outgoing,
};

/// How long a FIFO queue remembers a deduplication id (as SQS does).
const DEDUP_WINDOW: Duration = Duration::from_secs(300);

/// How long an answer may take: long past any script's run, short of a hung server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an empty receive looks again while it waits.
const POLL: Duration = Duration::from_millis(50);

/// The server's clock in milliseconds: every worker's deadlines on one clock, whatever its own.
const NOW: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"#;

/// Adds a message (shared by send and the dead-letter moves): its prefix, body, dedup id, group,
/// attributes (JSON), the time it becomes visible (ms), and whether its group gates it (FIFO).
const ADD: &str = r#"
local function add(p, body, dedup, group, attrs, visible, gated)
  local id = redis.call('INCR', p .. 'seq')
  redis.call('INCR', p .. 'count')
  redis.call('HSET', p .. 'm:' .. id, 'body', body, 'dedup', dedup, 'group', group,
    'receives', 0, 'attrs', attrs, 'receipt', '')
  if gated == '1' and group ~= '' then
    redis.call('RPUSH', p .. 'g:' .. group, id)
    if redis.call('LLEN', p .. 'g:' .. group) == 1 then
      redis.call('ZADD', p .. 'due', visible, id)
    end
  else
    redis.call('ZADD', p .. 'due', visible, id)
  end
  return id
end
"#;

/// Removes a message; on a FIFO queue its group's next message becomes deliverable.
const REMOVE: &str = r#"
local function remove(p, id, now)
  local key = p .. 'm:' .. id
  local group = redis.call('HGET', key, 'group')
  if redis.call('DEL', key) == 1 then redis.call('DECR', p .. 'count') end
  redis.call('ZREM', p .. 'due', id)
  if group and group ~= '' and redis.call('LINDEX', p .. 'g:' .. group, 0) == id then
    redis.call('LPOP', p .. 'g:' .. group)
    local next_id = redis.call('LINDEX', p .. 'g:' .. group, 0)
    if next_id then redis.call('ZADD', p .. 'due', now, next_id) end
  end
end
"#;

/// Copies a message to the dead-letter queue with a reason (under [`DEAD_LETTER_REASON`]).
const COPY_TO_DLQ: &str = r#"
local function copy_to_dlq(p, dlq, id, reason, now)
  local m = redis.call('HMGET', p .. 'm:' .. id, 'body', 'dedup', 'group', 'attrs')
  local attrs = cjson.decode(m[4])
  attrs['__REASON_ATTRIBUTE__'] = reason
  return add(dlq, m[1], m[2], m[3], cjson.encode(attrs), now, '0')
end
"#;

fn script(functions: &[&str], body: &str) -> redis::Script {
    let text = format!("{}\n{body}", functions.concat());
    redis::Script::new(&text.replace("__REASON_ATTRIBUTE__", DEAD_LETTER_REASON))
}

/// ARGV: prefix, body, dedup id, group, attributes, delay (ms), FIFO ("1"), dedup window (ms).
static SEND: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &[NOW, ADD],
        r#"
local p = ARGV[1]
if ARGV[7] == '1' then
  if not redis.call('SET', p .. 'd:' .. ARGV[3], '1', 'NX', 'PX', ARGV[8]) then return 0 end
end
return add(p, ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_ms() + tonumber(ARGV[6]), ARGV[7])
"#,
    )
});

/// ARGV: prefix, dead-letter prefix (or ""), max messages, visibility timeout (ms), max
/// receives. Returns (id, receipt, receives, body, group, attributes) of each message received.
static RECEIVE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &[NOW, ADD, REMOVE, COPY_TO_DLQ],
        r#"
local p, dlq, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local visibility, max_receives = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local out = {}
local ids = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'LIMIT', 0, max)
for _, id in ipairs(ids) do
  local key = p .. 'm:' .. id
  local receives = redis.call('HINCRBY', key, 'receives', 1)
  if receives > max_receives and dlq ~= '' then
    copy_to_dlq(p, dlq, id, 'received ' .. (receives - 1) ..
      ' times without being deleted (maxReceiveCount ' .. max_receives .. ')', now)
    remove(p, id, now)
  else
    local receipt = id .. ':' .. receives
    redis.call('HSET', key, 'receipt', receipt)
    redis.call('ZADD', p .. 'due', now + visibility, id)
    local m = redis.call('HMGET', key, 'body', 'group', 'attrs')
    table.insert(out, {id, receipt, receives, m[1], m[2], m[3]})
  end
end
return out
"#,
    )
});

/// ARGV: prefix, max. Each visible or waiting message's (id, receives, body, group, attributes),
/// changing nothing.
static PEEK: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &[],
        r#"
local p = ARGV[1]
local out = {}
for _, id in ipairs(redis.call('ZRANGE', p .. 'due', 0, tonumber(ARGV[2]) - 1)) do
  local m = redis.call('HMGET', p .. 'm:' .. id, 'receives', 'body', 'group', 'attrs')
  table.insert(out, {id, tonumber(m[1]), m[2], m[3], m[4]})
end
return out
"#,
    )
});

/// ARGV: prefix. The queue's messages as {visible, in flight, delayed}: a message in `due` is
/// visible once its time has come; before, in flight when it has a receipt, else delayed. A FIFO
/// message behind its group's head waits too, so it counts as visible.
static COUNTS: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &[NOW],
        r#"
local p = ARGV[1]
local now = now_ms()
local total = tonumber(redis.call('GET', p .. 'count') or '0')
local in_flight, delayed = 0, 0
local later = redis.call('ZRANGEBYSCORE', p .. 'due', '(' .. now, '+inf')
for _, id in ipairs(later) do
  if redis.call('HGET', p .. 'm:' .. id, 'receipt') ~= '' then
    in_flight = in_flight + 1
  else
    delayed = delayed + 1
  end
end
return {math.max(total - in_flight - delayed, 0), in_flight, delayed}
"#,
    )
});

/// ARGV: prefix, message, receipt. 0: not the message's current receipt.
static DELETE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &[NOW, REMOVE],
        r#"
local p, id, receipt = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'm:' .. id, 'receipt') ~= receipt then return 0 end
remove(p, id, now_ms())
return 1
"#,
    )
});

/// ARGV: prefix, message, receipt, delay (ms).
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &[NOW],
        r#"
local p, id, receipt = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'm:' .. id, 'receipt') ~= receipt then return 0 end
redis.call('ZADD', p .. 'due', 'XX', now_ms() + tonumber(ARGV[4]), id)
return 1
"#,
    )
});

/// ARGV: prefix, message, receipt, dead-letter prefix, reason. The message itself stays.
static COPY: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &[NOW, ADD, COPY_TO_DLQ],
        r#"
local p, id, receipt = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'm:' .. id, 'receipt') ~= receipt then return 0 end
copy_to_dlq(p, ARGV[4], id, ARGV[5], now_ms())
return 1
"#,
    )
});

/// A queue on Redis, with or without its own dead-letter queue.
pub struct RedisQueue {
    connection: ConnectionManager,
    name: String,
    prefix: String,
    dead_letters: Option<String>,
    config: BrokerQueueConfig,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn key_prefix(name: &str) -> String {
    format!("sfpipe:q:{{{name}}}:")
}

impl RedisQueue {
    /// Connects to `url` (`redis://host:port/db`). `dead_letter_queue`: the name of the queue
    /// dead letters go to (a queue of its own, read with a `RedisQueue` of that name).
    pub async fn connect(
        url: &str,
        name: &str,
        dead_letter_queue: Option<&str>,
        config: BrokerQueueConfig,
    ) -> Result<Self, QueueError> {
        let service = |e: redis::RedisError| QueueError::Service {
            queue: name.to_string(),
            message: format!("Redis at {url}: {e}"),
        };
        let client = redis::Client::open(url).map_err(service)?;
        // The crate's default gives up on an answer after 500 ms, but the server has run the
        // script by then: a receive given up on leaves its message in flight, unseen, until its
        // visibility timeout. A server slow to answer (its host's cores busy) is waited for.
        let patience = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = ConnectionManager::new_with_config(client, patience)
            .await
            .map_err(service)?;
        Ok(Self {
            connection,
            name: name.to_string(),
            prefix: key_prefix(name),
            dead_letters: dead_letter_queue.map(key_prefix),
            config,
        })
    }

    /// A message as the port gives it: its stored attributes, and its group's.
    fn message(
        &self,
        id: String,
        receipt: String,
        receive_count: u32,
        body: String,
        group: String,
        attrs: &str,
    ) -> Result<ReceivedMessage, QueueError> {
        let mut attributes: BTreeMap<String, String> =
            serde_json::from_str(attrs).map_err(|e| QueueError::Service {
                queue: self.name.clone(),
                message: format!("message {id}'s attributes: {e}"),
            })?;
        if !group.is_empty() {
            attributes.insert(MESSAGE_GROUP_ATTRIBUTE.into(), group);
        }
        Ok(ReceivedMessage {
            body,
            receipt,
            message_id: format!("{}-{id}", self.name),
            receive_count,
            attributes,
        })
    }

    fn service(&self, error: redis::RedisError) -> QueueError {
        QueueError::Service {
            queue: self.name.clone(),
            message: error.to_string(),
        }
    }

    /// The receipt's message: receipts are `<message>:<receive>`, valid for that receive only.
    fn message_of<'r>(&self, receipt: &'r str) -> Result<&'r str, QueueError> {
        receipt
            .split_once(':')
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| QueueError::InvalidReceipt {
                queue: self.name.clone(),
            })
    }

    fn dead_letter_prefix(&self) -> Result<&str, QueueError> {
        self.dead_letters
            .as_deref()
            .ok_or_else(|| QueueError::Service {
                queue: self.name.clone(),
                message: "this queue has no dead-letter queue".into(),
            })
    }

    /// Runs a script that checks a receipt first: 0 means the receipt is not the current one.
    async fn with_receipt(
        &self,
        script: &redis::Script,
        receipt: &str,
        args: &[String],
    ) -> Result<(), QueueError> {
        let id = self.message_of(receipt)?;
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix).arg(id).arg(receipt);
        for arg in args {
            invocation.arg(arg);
        }
        let done: i64 = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.service(e))?;
        if done == 1 {
            Ok(())
        } else {
            Err(QueueError::InvalidReceipt {
                queue: self.name.clone(),
            })
        }
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn name(&self) -> &str {
        &self.name
    }

    /// Messages in the queue, visible, delayed or in flight.
    async fn depth(&self) -> Result<Option<u64>, QueueError> {
        let count: Option<i64> = redis::cmd("GET")
            .arg(format!("{}count", self.prefix))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.service(e))?;
        Ok(Some(count.unwrap_or(0).max(0) as u64))
    }

    async fn message_counts(&self) -> Result<Option<QueueDepth>, QueueError> {
        let (visible, in_flight, delayed): (usize, usize, usize) = COUNTS
            .prepare_invoke()
            .arg(&self.prefix)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.service(e))?;
        Ok(Some(QueueDepth {
            visible,
            in_flight,
            delayed,
        }))
    }

    /// Up to `max` of the queue's messages, looked into and left as they are (no receive
    /// counted): what `sfpipe status` shows of a dead-letter queue.
    async fn peek(&self, max: usize) -> Result<Option<Vec<ReceivedMessage>>, QueueError> {
        type Row = (String, u32, String, String, String);
        let rows: Vec<Row> = PEEK
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(max.max(1) as i64)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.service(e))?;
        rows.into_iter()
            .map(|(id, receives, body, group, attrs)| {
                self.message(id, String::new(), receives, body, group, &attrs)
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        check_outgoing(&self.name, &message)?;
        let _: i64 = SEND
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(&message.body)
            .arg(&message.dedup_id)
            .arg(message.group_id.as_deref().unwrap_or(""))
            .arg("{}")
            .arg(message.delay.as_millis() as i64)
            .arg(if self.config.fifo { "1" } else { "0" })
            .arg(DEDUP_WINDOW.as_millis() as i64)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.service(e))?;
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let started = tokio::time::Instant::now();
        loop {
            type Row = (String, String, u32, String, String, String);
            let rows: Vec<Row> = RECEIVE
                .prepare_invoke()
                .arg(&self.prefix)
                .arg(self.dead_letters.as_deref().unwrap_or(""))
                .arg(max.clamp(1, 10) as i64)
                .arg(self.config.visibility_timeout.as_millis() as i64)
                .arg(self.config.max_receives)
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(|e| self.service(e))?;
            if !rows.is_empty() || started.elapsed() >= wait {
                return rows
                    .into_iter()
                    .map(|(id, receipt, receives, body, group, attrs)| {
                        self.message(id, receipt, receives, body, group, &attrs)
                    })
                    .collect();
            }
            tokio::time::sleep(POLL.min(wait.saturating_sub(started.elapsed()))).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.with_receipt(&DELETE, receipt, &[]).await
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.with_receipt(&RELEASE, receipt, &[delay.as_millis().to_string()])
            .await
    }

    async fn send_to_dead_letter(
        &self,
        message: &ReceivedMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        let dlq = self.dead_letter_prefix()?.to_string();
        self.with_receipt(&COPY, &message.receipt, &[dlq, reason.to_string()])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_queue_share_one_hash_slot_tag() {
        assert_eq!(key_prefix("sfpipe-upload"), "sfpipe:q:{sfpipe-upload}:");
    }
}
