//! The Redis backend: pub/sub for fan-out, one Stream per topic for history.
//!
//! Two connections per node, both `redis` crate `ConnectionManager`s speaking RESP3: one for
//! commands (publish and history scripts), one for pub/sub, with the crate's automatic
//! resubscription and a push sender that feeds the node's bounded inbox. A background task
//! ([`follow`]) reads the inbox, orders each topic's messages by offset, and re-reads from
//! history whatever a reconnect or a lag made it miss.

mod follow;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, RedisError, Script};
use tokio::sync::mpsc;

use super::envelope;
use super::error::{BrokerError, BrokerErrorKind};
use super::event::{Delivery, Events};
use super::position::{Position, Recovery};
use super::queue::{self, Request};
use super::stats::Counters;
use super::{Backend, Broker, Parts, random_u64};

/// Settings of the Redis backend.
///
/// The defaults keep 1,000 messages or 5 minutes of history per topic, whichever is less.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) prefix: String,
    pub(crate) history_len: usize,
    pub(crate) history_age: Duration,
    pub(crate) meta_ttl: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) inbox_capacity: usize,
    pub(crate) event_capacity: usize,
    pub(crate) recover_batch: usize,
    pub(crate) recheck_every: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: String::from("tws"),
            history_len: 1000,
            history_age: Duration::from_secs(300),
            meta_ttl: Duration::from_secs(24 * 3600),
            op_timeout: Duration::from_secs(2),
            inbox_capacity: 16 * 1024,
            event_capacity: 1024,
            recover_batch: 1000,
            recheck_every: Duration::from_secs(10),
        }
    }
}

impl RedisConfig {
    /// The prefix of every key and channel (default `tws`): nodes sharing a prefix share topics.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Messages of history kept per topic (default 1,000; 0 keeps none, and then every gap is
    /// reported as [`GapReason::TooOld`](super::GapReason::TooOld)).
    #[must_use]
    pub fn history_len(mut self, len: usize) -> Self {
        self.history_len = len;
        self
    }

    /// How long a message stays in history (default 5 minutes; zero: no age bound).
    #[must_use]
    pub fn history_age(mut self, age: Duration) -> Self {
        self.history_age = age;
        self
    }

    /// How long a topic's epoch and offset outlive its last publish (default 24 hours). Past
    /// it the topic starts a new epoch, and clients holding old positions are told so.
    #[must_use]
    pub fn meta_ttl(mut self, ttl: Duration) -> Self {
        self.meta_ttl = ttl;
        self
    }

    /// How long a publish or history read waits for Redis before failing with
    /// [`BrokerErrorKind::Unavailable`] (default 2 s).
    #[must_use]
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Messages the node's inbox holds before it counts itself lagging and drops (to recover
    /// them from history); default 16,384.
    #[must_use]
    pub fn inbox_capacity(mut self, capacity: usize) -> Self {
        self.inbox_capacity = capacity.max(1);
        self
    }

    /// Events the [`Events`] stream holds before the background task waits for its reader
    /// (default 1,024).
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Messages read from history per round trip when the node fills a gap (default 1,000).
    #[must_use]
    pub fn recover_batch(mut self, batch: usize) -> Self {
        self.recover_batch = batch.max(1);
        self
    }

    /// How often a node checks each topic it follows against the top of the topic's stream
    /// (one small read per topic; default 10 s, zero: only for 2 s after each reconnection).
    ///
    /// A missed message is found when the next one arrives; this bounds how long one missed
    /// just before a topic falls quiet can stay undelivered. What the check finds missing is
    /// read from history if it has not arrived a second later.
    #[must_use]
    pub fn recheck_every(mut self, every: Duration) -> Self {
        self.recheck_every = every;
        self
    }
}

impl Broker {
    /// A node's connection to Redis 7 at `url` (`redis://HOST:PORT[/DB]`).
    ///
    /// Returns at once: the connections are made in the background and retried for as long
    /// as Redis is unreachable ([`Event::Connected`](super::Event::Connected) says when they
    /// are up). Must be called inside a Tokio runtime, which runs the background task.
    ///
    /// # Errors
    ///
    /// The URL does not parse.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use tower_ws::Message;
    /// use tower_ws::broker::{Broker, Event, RedisConfig};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let (broker, mut events) = Broker::redis("redis://127.0.0.1:6379", RedisConfig::default())?;
    /// broker.join("room");
    /// let position = broker.publish("room", &Message::text("hello")).await?;
    /// while let Some(event) = events.recv().await {
    ///     if let Event::Message(delivery) = event {
    ///         assert_eq!(delivery.position, position);
    ///         break;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// # fn main() { let _ = run; }
    /// ```
    pub fn redis(url: &str, config: RedisConfig) -> Result<(Broker, Events), BrokerError> {
        let info = url
            .into_connection_info()
            .map_err(|e| redis_error(format!("Redis URL {url:?}"), &e))?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client =
            redis::Client::open(info).map_err(|e| redis_error(format!("Redis URL {url:?}"), &e))?;

        let event_capacity = config.event_capacity;
        let counters = Arc::new(Counters::default());
        let (inbox, push_sender) = follow::inbox(config.inbox_capacity, counters.clone());
        let manager = |config: ConnectionManagerConfig| {
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| redis_error(format!("Redis at {url:?}"), &e))
        };
        let retries = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.op_timeout))
            .set_response_timeout(Some(config.op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let commands = manager(retries.clone())?;
        let pubsub = manager(
            retries
                .set_push_sender(push_sender)
                .set_automatic_resubscription(),
        )?;

        let publisher = Publisher {
            commands,
            publish: Arc::new(Script::new(scripts::PUBLISH)),
            history: Arc::new(Script::new(scripts::HISTORY)),
            config,
        };
        let (events_tx, events_rx) = mpsc::channel(event_capacity);
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        tokio::spawn(follow::run(follow::Follower::new(
            pubsub,
            publisher.clone(),
            inbox,
            changes_rx,
            events_tx,
            counters.clone(),
        )));
        let (queue_tx, queue_rx) = mpsc::channel(queue::QUEUE_CAPACITY);
        tokio::spawn(publish_queued(publisher.clone(), queue_rx));
        let op_timeout = publisher.config.op_timeout;
        let broker = Broker::from_parts(Parts {
            changes: changes_tx,
            counters,
            backend: Backend::Redis(publisher),
            queue: queue_tx,
            op_timeout,
        });
        Ok((broker, Events::new(events_rx)))
    }
}

/// The command side: publish and history scripts on the command connection.
#[derive(Clone)]
pub(crate) struct Publisher {
    commands: ConnectionManager,
    publish: Arc<Script>,
    history: Arc<Script>,
    config: RedisConfig,
}

impl Publisher {
    fn key(&self, kind: char, topic: &str) -> String {
        format!("{}:{kind}:{topic}", self.config.prefix)
    }

    /// The pub/sub channel of `topic`.
    pub(crate) fn channel(&self, topic: &str) -> String {
        self.key('c', topic)
    }

    fn age_ms(&self) -> u64 {
        u64::try_from(self.config.history_age.as_millis()).unwrap_or(u64::MAX)
    }

    fn meta_ttl_s(&self) -> u64 {
        self.config.meta_ttl.as_secs().max(1)
    }

    /// Sends `batch` in one pipeline and answers each request; drains `batch`.
    async fn publish_batch(&self, batch: &mut Vec<Request>) {
        let mut results = self.run_batch(batch).await;
        // After a Redis restart the script is gone: load it and send what bounced again.
        let bounced: Vec<usize> = match &results {
            Ok(results) => (0..results.len())
                .filter(|&i| is_noscript(&results[i]))
                .collect(),
            Err(_) => Vec::new(),
        };
        if !bounced.is_empty() {
            let mut connection = self.commands.clone();
            let load = self.publish.load_async(&mut connection);
            if let Ok(Ok(_)) = tokio::time::timeout(self.config.op_timeout, load).await {
                let mut again: Vec<Request> = Vec::with_capacity(bounced.len());
                let mut rest = Vec::with_capacity(batch.len());
                for (i, request) in batch.drain(..).enumerate() {
                    if bounced.binary_search(&i).is_ok() {
                        again.push(request);
                    } else {
                        rest.push(request);
                    }
                }
                let retried = self.run_batch(&again).await;
                if let (Ok(first), Ok(second)) = (&mut results, retried) {
                    let mut second = second.into_iter();
                    let mut merged_requests = Vec::with_capacity(first.len());
                    let mut merged = Vec::with_capacity(first.len());
                    let (mut again, mut rest) = (again.into_iter(), rest.into_iter());
                    for (i, result) in first.drain(..).enumerate() {
                        if bounced.binary_search(&i).is_ok() {
                            merged_requests.extend(again.next());
                            merged.push(second.next().unwrap_or(result));
                        } else {
                            merged_requests.extend(rest.next());
                            merged.push(result);
                        }
                    }
                    *first = merged;
                    *batch = merged_requests;
                } else {
                    batch.extend(again);
                    batch.extend(rest);
                }
            }
        }
        match results {
            Ok(results) => {
                for (request, result) in batch.drain(..).zip(results) {
                    let context = || format!("publish to {:?}", request.topic);
                    let answer = match result {
                        Ok(value) => scripts::parse_published(&value)
                            .map(|(epoch, offset)| Some(Position { epoch, offset }))
                            .ok_or_else(|| {
                                BrokerError::new(
                                    BrokerErrorKind::Server,
                                    format!("{}: unexpected answer {value:?}", context()),
                                )
                            }),
                        Err(error) => Err(redis_error(context(), &error)),
                    };
                    let _ = request.reply.send(answer);
                }
            }
            Err(error) => {
                for request in batch.drain(..) {
                    let context = format!("publish to {:?}", request.topic);
                    let answer = match &error {
                        BatchError::TimedOut => timed_out(&context, self.config.op_timeout),
                        BatchError::Redis(error) => redis_error(context, error),
                    };
                    let _ = request.reply.send(Err(answer));
                }
            }
        }
    }

    async fn run_batch(
        &self,
        batch: &[Request],
    ) -> Result<Vec<redis::RedisResult<redis::Value>>, BatchError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let hash = self.publish.get_hash();
        for request in batch {
            pipe.cmd("EVALSHA")
                .arg(hash)
                .arg(3)
                .arg(self.key('m', &request.topic))
                .arg(self.key('h', &request.topic))
                .arg(self.channel(&request.topic))
                .arg(&request.prefix[..])
                .arg(&request.payload[..])
                .arg(&scripts::epoch_bytes(random_u64())[..])
                .arg(self.config.history_len)
                .arg(self.age_ms())
                .arg(self.meta_ttl_s());
        }
        let mut connection = self.commands.clone();
        let query = pipe.query_async::<Vec<redis::RedisResult<redis::Value>>>(&mut connection);
        match tokio::time::timeout(self.config.op_timeout, query).await {
            Err(_) => Err(BatchError::TimedOut),
            Ok(Err(error)) => Err(BatchError::Redis(error)),
            Ok(Ok(results)) if results.len() == batch.len() => Ok(results),
            Ok(Ok(_)) => Err(BatchError::Redis(RedisError::from((
                redis::ErrorKind::Client,
                "pipeline answered with the wrong number of replies",
            )))),
        }
    }

    /// The raw history read: `(epoch, top, envelopes after since)`.
    async fn read(
        &self,
        topic: &str,
        expected: Option<u64>,
        since: u64,
        limit: usize,
    ) -> Result<(u64, u64, Vec<Bytes>), BrokerError> {
        let mut invocation = self.history.prepare_invoke();
        invocation
            .key(self.key('m', topic))
            .key(self.key('h', topic))
            .arg(&scripts::epoch_bytes(expected.unwrap_or(0))[..])
            .arg(since)
            .arg(limit)
            .arg(&scripts::epoch_bytes(random_u64())[..])
            .arg(self.meta_ttl_s())
            .arg(self.age_ms());
        let mut connection = self.commands.clone();
        let answer = tokio::time::timeout(
            self.config.op_timeout,
            invocation.invoke_async::<redis::Value>(&mut connection),
        )
        .await;
        let context = || format!("history of {topic:?}");
        let value = match answer {
            Err(_) => return Err(timed_out(&context(), self.config.op_timeout)),
            Ok(Err(e)) => return Err(redis_error(context(), &e)),
            Ok(Ok(value)) => value,
        };
        scripts::parse_history(value).ok_or_else(|| {
            BrokerError::new(
                BrokerErrorKind::Server,
                format!("{}: unexpected answer", context()),
            )
        })
    }

    pub(crate) async fn position(&self, topic: &str) -> Result<Position, BrokerError> {
        let (epoch, top, _) = self.read(topic, None, 0, 0).await?;
        Ok(Position { epoch, offset: top })
    }

    /// What came after `since`; envelopes that do not decode are skipped (and counted by the
    /// caller through the gap they leave).
    pub(crate) async fn history(
        &self,
        topic: &str,
        since: Position,
        limit: usize,
    ) -> Result<Recovery, BrokerError> {
        let (epoch, top, envelopes) = self
            .read(topic, Some(since.epoch), since.offset, limit)
            .await?;
        let top = Position { epoch, offset: top };
        if epoch != since.epoch || since.offset > top.offset {
            return Ok(Recovery::EpochChanged { top });
        }
        if since.offset == top.offset || limit == 0 {
            return Ok(Recovery::Messages {
                messages: Vec::new(),
                top,
            });
        }
        let topic: Arc<str> = Arc::from(topic);
        let messages: Vec<Delivery> = envelopes
            .into_iter()
            .filter_map(|wire| envelope::decode(&wire).ok())
            .filter_map(|envelope| {
                Some(Delivery {
                    topic: topic.clone(),
                    position: Some(envelope.position?),
                    message: envelope.message,
                    origin: envelope.origin,
                    except: envelope.except,
                })
            })
            .collect();
        match messages.first().and_then(|first| first.position) {
            Some(first) if first.offset == since.offset + 1 => {
                Ok(Recovery::Messages { messages, top })
            }
            _ => Ok(Recovery::TooOld { top }),
        }
    }
}

/// Why a whole pipeline failed.
enum BatchError {
    TimedOut,
    Redis(RedisError),
}

fn is_noscript(result: &redis::RedisResult<redis::Value>) -> bool {
    matches!(result, Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}

/// The publish queue's task: what queued up since the last round trip goes in the next one.
async fn publish_queued(publisher: Publisher, mut queue: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(queue::BATCH);
    while queue.recv_many(&mut batch, queue::BATCH).await > 0 {
        // A caller that gave up (timed out, or dropped its future) was told the publish
        // failed: it must not happen later behind its back.
        batch.retain(|request| !request.reply.is_closed());
        if !batch.is_empty() {
            publisher.publish_batch(&mut batch).await;
        }
    }
}

fn timed_out(context: &str, after: Duration) -> BrokerError {
    BrokerError::new(
        BrokerErrorKind::Unavailable,
        format!("{context}: no answer from Redis within {after:?}"),
    )
}

fn redis_error(context: String, error: &RedisError) -> BrokerError {
    let unavailable = error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error();
    let kind = if unavailable {
        BrokerErrorKind::Unavailable
    } else {
        BrokerErrorKind::Server
    };
    BrokerError::new(kind, context).with_source(error.to_string())
}
