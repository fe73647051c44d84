//! The NATS backend: core NATS, one subject per topic, at most once, no history.
//!
//! `async-nats` reconnects and resubscribes by itself; messages published while a node was
//! disconnected, or dropped because it read too slowly (a slow consumer), are lost, and the
//! node says so with an [`Event::Gap`]. Each held topic has a small task that decodes its
//! subscription's messages into [`Events`], so each topic keeps its order.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::connection::State;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::envelope;
use super::error::{BrokerError, BrokerErrorKind};
use super::event::{Delivery, Event, Events, GapReason};
use super::membership::Change;
use super::queue::{self, Request};
use super::stats::{Counters, bump};
use super::{Backend, Broker, Parts};

/// Settings of the NATS backend.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    prefix: String,
    op_timeout: Duration,
    event_capacity: usize,
    subscription_capacity: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            prefix: String::from("tws"),
            op_timeout: Duration::from_secs(2),
            event_capacity: 1024,
            subscription_capacity: 16 * 1024,
        }
    }
}

impl NatsConfig {
    /// The first token of every subject (default `tws`): nodes sharing it share topics.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a publish waits for room in the client's queue (default 2 s).
    #[must_use]
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Events the [`Events`] stream holds before the topic tasks wait (default 1,024).
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Messages `async-nats` holds per topic before it drops them as a slow consumer
    /// (default 16,384).
    #[must_use]
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }
}

impl Broker {
    /// A node's connection to NATS at `url` (`nats://HOST:PORT`).
    ///
    /// Returns without waiting for the server: the client connects in the background and
    /// retries for as long as NATS is unreachable. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The URL does not parse.
    pub async fn nats(url: &str, config: NatsConfig) -> Result<(Broker, Events), BrokerError> {
        let (nats_events_tx, nats_events) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .subscription_capacity(config.subscription_capacity)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(50 * u64::try_from(attempts.min(20)).unwrap_or(20))
            })
            .event_callback(move |event| {
                let sender = nats_events_tx.clone();
                async move {
                    let _ = sender.send(event);
                }
            })
            .connect(url)
            .await
            .map_err(|e| {
                BrokerError::new(BrokerErrorKind::Unavailable, format!("NATS at {url:?}"))
                    .with_source(e)
            })?;
        let counters = Arc::new(Counters::default());
        let (events_tx, events_rx) = mpsc::channel(config.event_capacity);
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        let publisher = Publisher {
            client: client.clone(),
            config,
        };
        let node = Node {
            publisher: publisher.clone(),
            events: events_tx,
            counters: counters.clone(),
            topics: HashMap::new(),
        };
        tokio::spawn(run(node, changes_rx, nats_events));
        let (queue_tx, queue_rx) = mpsc::channel(queue::QUEUE_CAPACITY);
        tokio::spawn(publish_queued(publisher.clone(), queue_rx));
        let op_timeout = publisher.config.op_timeout;
        let broker = Broker::from_parts(Parts {
            changes: changes_tx,
            counters,
            backend: Backend::Nats(publisher),
            queue: queue_tx,
            op_timeout,
        });
        Ok((broker, Events::new(events_rx)))
    }
}

/// The subject of `topic`: `PREFIX.` and the topic with every byte NATS gives a meaning to
/// (whitespace, `.`, `*`, `>`), `%` and non-ASCII written as `%XX`; the empty topic is `%`.
fn subject(prefix: &str, topic: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + topic.len());
    out.push_str(prefix);
    out.push('.');
    if topic.is_empty() {
        out.push('%');
    }
    for byte in topic.bytes() {
        if byte.is_ascii_graphic() && !matches!(byte, b'.' | b'*' | b'>' | b'%') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[derive(Clone)]
pub(crate) struct Publisher {
    client: async_nats::Client,
    config: NatsConfig,
}

impl Publisher {
    /// A publish refused before it is queued: NATS is not connected.
    pub(crate) fn refuses(&self, topic: &str) -> Option<BrokerError> {
        (self.client.connection_state() != State::Connected).then(|| {
            BrokerError::new(
                BrokerErrorKind::Unavailable,
                format!("publish to {topic:?}: not connected to NATS"),
            )
        })
    }

    async fn publish(&self, request: &Request) -> Result<(), BrokerError> {
        let wire = envelope::encode_plain(&request.prefix, &request.payload);
        let subject = subject(&self.config.prefix, &request.topic);
        let sent =
            tokio::time::timeout(self.config.op_timeout, self.client.publish(subject, wire)).await;
        let topic = &request.topic;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BrokerError::new(
                BrokerErrorKind::Unavailable,
                format!("publish to {topic:?}"),
            )
            .with_source(e)),
            Err(_) => Err(BrokerError::new(
                BrokerErrorKind::Unavailable,
                format!(
                    "publish to {topic:?}: the NATS client's queue stayed full for {:?}",
                    self.config.op_timeout
                ),
            )),
        }
    }
}

/// The publish queue's task: hands each publish to the NATS client, in order.
async fn publish_queued(publisher: Publisher, mut queue: mpsc::Receiver<Request>) {
    while let Some(request) = queue.recv().await {
        // A caller that gave up was told the publish failed: it must not happen later.
        if request.reply.is_closed() {
            continue;
        }
        let answer = publisher.publish(&request).await.map(|()| None);
        let _ = request.reply.send(answer);
    }
}

struct Node {
    publisher: Publisher,
    events: mpsc::Sender<Event>,
    counters: Arc<Counters>,
    topics: HashMap<Arc<str>, JoinHandle<()>>,
}

async fn emit(events: &mpsc::Sender<Event>, counters: &Counters, event: Event) {
    match &event {
        Event::Message(_) => bump(&counters.delivered),
        Event::Gap { .. } => bump(&counters.gaps),
        Event::BadData { .. } => bump(&counters.bad_data),
        Event::Connected => bump(&counters.connects),
        Event::Disconnected => {}
    }
    let _ = events.send(event).await;
}

async fn run(
    mut node: Node,
    mut changes: mpsc::UnboundedReceiver<Change>,
    mut nats_events: mpsc::UnboundedReceiver<async_nats::Event>,
) {
    let mut was_connected = false;
    loop {
        tokio::select! {
            biased;
            change = changes.recv() => match change {
                Some(Change::Subscribe(topic)) => node.subscribe(topic).await,
                Some(Change::Unsubscribe(topic)) => {
                    if let Some(task) = node.topics.remove(&topic) {
                        // Dropping the subscriber (with its task) unsubscribes.
                        task.abort();
                        node.count_subscribed();
                    }
                }
                None => break,
            },
            Some(event) = nats_events.recv() => match event {
                async_nats::Event::Connected => {
                    emit(&node.events, &node.counters, Event::Connected).await;
                    if was_connected {
                        for topic in node.topics.keys() {
                            let gap = Event::Gap {
                                topic: Some(topic.clone()),
                                reason: GapReason::Disconnected,
                                resume: None,
                            };
                            emit(&node.events, &node.counters, gap).await;
                        }
                    }
                    was_connected = true;
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS connection lost; reconnecting");
                    emit(&node.events, &node.counters, Event::Disconnected).await;
                }
                async_nats::Event::SlowConsumer(_) => {
                    bump(&node.counters.lagged);
                    let gap = Event::Gap { topic: None, reason: GapReason::SlowConsumer, resume: None };
                    emit(&node.events, &node.counters, gap).await;
                }
                other => tracing::debug!(event = %other, "NATS event"),
            },
        }
    }
    for (_, task) in node.topics.drain() {
        task.abort();
    }
}

impl Node {
    async fn subscribe(&mut self, topic: Arc<str>) {
        let subject = subject(&self.publisher.config.prefix, &topic);
        // The client queues the subscription while disconnected and replays it on reconnect.
        let subscriber = match self.publisher.client.subscribe(subject).await {
            Ok(subscriber) => subscriber,
            Err(error) => {
                tracing::warn!(topic = %topic, %error, "NATS subscribe failed");
                return;
            }
        };
        let events = self.events.clone();
        let counters = self.counters.clone();
        let task_topic = topic.clone();
        let task = tokio::spawn(async move {
            let mut subscriber = subscriber;
            while let Some(message) = futures_util_next(&mut subscriber).await {
                bump(&counters.received);
                let event = decode(&task_topic, &message.payload);
                emit(&events, &counters, event).await;
            }
        });
        if let Some(old) = self.topics.insert(topic, task) {
            old.abort();
        }
        // On its way to the server, not left in the client's buffer, before it is counted.
        if let Err(error) = self.publisher.client.flush().await {
            tracing::debug!(%error, "NATS flush after subscribe failed");
        }
        self.count_subscribed();
    }

    /// Publishes how many topics this node is subscribed to
    /// ([`BrokerStats::subscribed`](super::BrokerStats::subscribed)).
    fn count_subscribed(&self) {
        self.counters
            .subscribed
            .store(self.topics.len() as u64, Ordering::Relaxed);
    }
}

fn decode(topic: &Arc<str>, wire: &Bytes) -> Event {
    match envelope::decode(wire) {
        Ok(envelope) => Event::Message(Delivery {
            topic: topic.clone(),
            message: envelope.message,
            origin: envelope.origin,
            except: envelope.except,
            position: None,
        }),
        Err(error) => {
            tracing::warn!(topic = %topic, %error, "bad data on a NATS subject");
            Event::BadData {
                topic: topic.clone(),
                error,
            }
        }
    }
}

/// The next item of a stream, without a `futures-util` dependency.
async fn futures_util_next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[cfg(test)]
mod tests {
    use super::subject;

    #[test]
    fn subjects_escape_what_nats_reads() {
        assert_eq!(subject("tws", "room-1_a"), "tws.room-1_a");
        assert_eq!(subject("tws", "a.b c*>%"), "tws.a%2Eb%20c%2A%3E%25");
        assert_eq!(subject("tws", ""), "tws.%");
        assert_eq!(subject("tws", "é"), "tws.%C3%A9");
    }
}
