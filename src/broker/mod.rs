//! Topics across server nodes, through a broker (features `redis` and `nats`).
//!
//! A [`Broker`] connects one node to Redis or NATS. The node tells it which topics it holds
//! with [`join`](Broker::join) and [`leave`](Broker::leave), counted per node: the broker
//! channel of a topic is subscribed when its first local subscriber appears and left with the
//! last, so a node receives only the topics it holds. [`publish`](Broker::publish) sends a
//! message to every node that holds its topic, the publishing node included, and each node
//! reads what arrives from [`Events`], in order, and hands it to its local subscribers (one
//! encode per node). Going through the broker for local subscribers too gives every node the
//! same order per topic.
//!
//! # Backends
//!
//! | | Redis 7 (`redis`) | NATS (`nats`) |
//! |---|---|---|
//! | channel | one pub/sub channel per topic, `PREFIX:c:TOPIC` | one subject per topic, `PREFIX.TOPIC` (escaped) |
//! | delivery | exactly once, in order per topic, gaps refilled from history | at most once, in order per topic per publisher |
//! | history | per topic in a Redis Stream, bounded by length and age: [`Broker::history`] | none ([`BrokerErrorKind::Unsupported`]) |
//! | reconnect | the `redis` crate reconnects and resubscribes (RESP3); the node then re-reads what it missed from history, or reports a [`Event::Gap`] | `async-nats` reconnects and resubscribes; a [`Event::Gap`] per topic says messages may be lost |
//! | node lag | inbox full or Redis dropping the slow client: detected, recovered from history | `async-nats` drops and reports a slow consumer: a [`Event::Gap`] |
//!
//! # Positions and history (Redis)
//!
//! Each publish runs one Lua script that gives the message the next offset of its topic,
//! appends it to the topic's stream (trimmed to `history_len` entries and `history_age`) and
//! publishes it, atomically, so the offset every node sees is the one history holds. A
//! [`Position`] is an epoch and an offset; the epoch changes when the topic's history is lost
//! (the broker restarted without persistence, or the topic was idle past `meta_ttl`), so
//! [`Broker::history`] answers with what came after a position, or that it is too old, or that
//! the epoch changed ([`Recovery`]). What a client sends when it reconnects is the app's
//! choice; `examples/cluster_chat.rs` shows one that resumes and loses nothing.
//!
//! # The wire envelope
//!
//! Every message on a channel is `tws1` magic, opcode, flags, origin node id, the socket the
//! publisher excluded, epoch and offset (38 bytes, big-endian) followed by the payload; anything else is reported as
//! [`Event::BadData`] and dropped. See `src/broker/envelope.rs` for the layout.
//!
//! # Faults
//!
//! - Broker unreachable at start or for a while: the handle is created anyway and connects in
//!   the background; a publish waits at most `op_timeout` and then fails with
//!   [`BrokerErrorKind::Unavailable`]. Nothing is dropped silently: a publish either returns
//!   `Ok` (the broker took it) or an error.
//! - Broker restart: resubscribed on reconnect; with Redis the node reads back what it missed
//!   from history and delivers it in order, or reports a [`Event::Gap`] (history trimmed, or a
//!   new epoch when Redis came back without its data).
//! - Node lag: the node's inbox is bounded (`inbox_capacity`); past it, messages are dropped
//!   and counted, and the Redis backend re-reads them from history. Redis closing a slow
//!   pub/sub client is a reconnect like any other.
//! - Bad data on a channel: [`Event::BadData`], never a panic.

mod cluster;
mod envelope;
mod error;
mod event;
mod membership;
mod position;
mod queue;
#[cfg(feature = "redis")]
mod sequence;
mod stats;

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

pub use cluster::{Cluster, ClusterBuilder};
pub use error::{BadData, BrokerError, BrokerErrorKind};
pub use event::{Delivery, Event, Events, GapReason};
pub use position::{ParsePositionError, Position, Recovery};
pub use stats::BrokerStats;

#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::NatsConfig;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisConfig;

use crate::hub::SocketId;
use crate::proto::Message;
use membership::{Change, Membership};
use stats::Counters;

/// One node's connection to a broker: cheap to clone, every clone the same connection.
///
/// Built by [`Broker::redis`] or [`Broker::nats`], which also return the node's [`Events`].
/// When every clone is dropped the background task ends and [`Events`] closes.
#[derive(Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

struct Shared {
    node_id: u64,
    members: Membership,
    changes: mpsc::UnboundedSender<Change>,
    counters: Arc<Counters>,
    backend: Backend,
    queue: queue::Queue,
    op_timeout: Duration,
}

enum Backend {
    #[cfg(feature = "redis")]
    Redis(redis::Publisher),
    #[cfg(feature = "nats")]
    Nats(nats::Publisher),
}

impl Backend {
    /// An error for a publish the backend refuses before queueing it (NATS while disconnected).
    fn refuses(&self, topic: &str) -> Option<BrokerError> {
        match self {
            #[cfg(feature = "redis")]
            Backend::Redis(_) => {
                let _ = topic;
                None
            }
            #[cfg(feature = "nats")]
            Backend::Nats(publisher) => publisher.refuses(topic),
        }
    }
}

/// What a backend's constructor hands to [`Broker::from_parts`].
struct Parts {
    changes: mpsc::UnboundedSender<Change>,
    counters: Arc<Counters>,
    backend: Backend,
    queue: queue::Queue,
    op_timeout: Duration,
}

/// Two kinds of future as one, without a `futures-util` dependency.
mod futures_either {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pin_project_lite::pin_project! {
        #[project = EitherProj]
        pub(super) enum Either<L, R> {
            Left { #[pin] future: L },
            Right { #[pin] future: R },
        }
    }

    #[allow(non_snake_case, reason = "constructors named like the variants")]
    pub(super) fn Left<L, R>(future: L) -> Either<L, R> {
        Either::Left { future }
    }

    #[allow(non_snake_case, reason = "constructors named like the variants")]
    pub(super) fn Right<L, R>(future: R) -> Either<L, R> {
        Either::Right { future }
    }

    impl<L: Future, R: Future<Output = L::Output>> Future for Either<L, R> {
        type Output = L::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<L::Output> {
            match self.project() {
                EitherProj::Left { future } => future.poll(cx),
                EitherProj::Right { future } => future.poll(cx),
            }
        }
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.shared.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
            #[cfg(feature = "nats")]
            Backend::Nats(_) => "nats",
        };
        f.debug_struct("Broker")
            .field("backend", &backend)
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

impl Broker {
    fn from_parts(parts: Parts) -> Self {
        Self {
            shared: Arc::new(Shared {
                node_id: random_u64(),
                members: Membership::default(),
                changes: parts.changes,
                counters: parts.counters,
                backend: parts.backend,
                queue: parts.queue,
                op_timeout: parts.op_timeout,
            }),
        }
    }

    /// This node's id, random per broker handle; carried by every message it publishes.
    pub fn node_id(&self) -> u64 {
        self.shared.node_id
    }

    /// One more local subscriber of `topic`: at the first, the node subscribes the topic's
    /// broker channel (in the background; the subscription is retried until the broker takes
    /// it). Never blocks.
    pub fn join(&self, topic: &str) {
        let changes = &self.shared.changes;
        self.shared.members.join(topic, |change| {
            // The task ends only when every handle is dropped; `self` is one.
            let _ = changes.send(change);
        });
    }

    /// One local subscriber of `topic` fewer: with the last, the node leaves the broker
    /// channel. A leave without a join is ignored.
    pub fn leave(&self, topic: &str) {
        let changes = &self.shared.changes;
        self.shared.members.leave(topic, |change| {
            let _ = changes.send(change);
        });
    }

    /// The topics this node holds (at least one local subscriber).
    pub fn topics(&self) -> Vec<Arc<str>> {
        self.shared.members.topics()
    }

    /// Local subscribers of `topic` as counted by [`join`](Self::join) and
    /// [`leave`](Self::leave).
    pub fn local_subscribers(&self, topic: &str) -> usize {
        self.shared.members.count(topic)
    }

    /// Publishes `message` (text or binary) to every node holding `topic`, this one included.
    ///
    /// The publish is queued when this is called, before the future is polled, so publishes
    /// reach the broker in call order even when their futures are awaited later or elsewhere
    /// (a publisher need not wait for one before making the next; Redis receives what queued
    /// up meanwhile in one pipeline). The future answers with the message's [`Position`] with
    /// Redis, `None` with NATS.
    ///
    /// # Errors
    ///
    /// [`BrokerErrorKind::Unavailable`] when the broker cannot be reached in time (the queue
    /// holds 4,096 publishes at most; past it a publish fails at once),
    /// [`BrokerErrorKind::Server`] when it refuses, [`BrokerErrorKind::InvalidMessage`] for a
    /// control message. A failed publish is counted in [`BrokerStats::publish_failures`].
    pub fn publish(
        &self,
        topic: &str,
        message: &Message,
    ) -> impl Future<Output = Result<Option<Position>, BrokerError>> + Send + use<> {
        self.publish_envelope(topic, message, 0)
    }

    /// As [`publish`](Self::publish), but the socket `except` of this node does not receive
    /// it (the message is still delivered to every other socket, on every node).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_except(
        &self,
        topic: &str,
        message: &Message,
        except: SocketId,
    ) -> impl Future<Output = Result<Option<Position>, BrokerError>> + Send + use<> {
        self.publish_envelope(topic, message, except.get())
    }

    fn publish_envelope(
        &self,
        topic: &str,
        message: &Message,
        except: u64,
    ) -> impl Future<Output = Result<Option<Position>, BrokerError>> + Send + use<> {
        let shared = &self.shared;
        let refused = match envelope::prefix(shared.node_id, except, message) {
            Err(()) => BrokerError::new(
                BrokerErrorKind::InvalidMessage,
                format!("publish to {topic:?}: only text and binary messages cross nodes"),
            ),
            Ok(prefix) => {
                if let Some(error) = shared.backend.refuses(topic) {
                    error
                } else {
                    let payload = message.clone().into_payload();
                    return futures_either::Left(queue::enqueue(
                        &shared.queue,
                        &shared.counters,
                        shared.op_timeout,
                        topic,
                        prefix,
                        payload,
                    ));
                }
            }
        };
        let counters = shared.counters.clone();
        futures_either::Right(async move {
            stats::bump(&counters.publish_failures);
            Err(refused)
        })
    }

    /// What was published on `topic` after `since`, at most `limit` messages (Redis).
    ///
    /// # Errors
    ///
    /// [`BrokerErrorKind::Unsupported`] with NATS; [`BrokerErrorKind::Unavailable`] or
    /// [`BrokerErrorKind::Server`] when the read fails.
    #[cfg_attr(
        not(feature = "redis"),
        allow(
            clippy::unused_async,
            reason = "only the Redis backend has history to await"
        )
    )]
    pub async fn history(
        &self,
        topic: &str,
        since: Position,
        limit: usize,
    ) -> Result<Recovery, BrokerError> {
        match &self.shared.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(publisher) => publisher.history(topic, since, limit).await,
            #[cfg(feature = "nats")]
            Backend::Nats(_) => {
                let _ = (since, limit);
                Err(BrokerError::new(
                    BrokerErrorKind::Unsupported,
                    format!("history of {topic:?}: the NATS backend keeps none (use Redis)"),
                ))
            }
        }
    }

    /// The newest position of `topic` (Redis): where a new client starts. Creates the topic's
    /// history epoch if it has none yet, so that later publishes keep it.
    ///
    /// # Errors
    ///
    /// As [`history`](Self::history).
    #[cfg_attr(
        not(feature = "redis"),
        allow(
            clippy::unused_async,
            reason = "only the Redis backend has history to await"
        )
    )]
    pub async fn position(&self, topic: &str) -> Result<Position, BrokerError> {
        match &self.shared.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(publisher) => publisher.position(topic).await,
            #[cfg(feature = "nats")]
            Backend::Nats(_) => Err(BrokerError::new(
                BrokerErrorKind::Unsupported,
                format!("position of {topic:?}: the NATS backend keeps no history"),
            )),
        }
    }

    /// The node's broker counters.
    pub fn stats(&self) -> BrokerStats {
        self.shared.counters.snapshot()
    }
}

/// A random non-zero `u64` (node ids, epochs) from the standard library's per-process random
/// hasher keys, a counter and the clock: unique enough, with no extra dependency.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.finish().max(1)
}
